//! Warnings the device reports as they happen: something found wrong and dealt with on
//! its own (a torn journal tail cut off, a corrupt state file given up, a damaged catalog
//! file fetched again, a clock that stepped back), reported once, by the code that dealt
//! with it, through the reporter the binary sets (the CLI prints `warning[CODE]`), or as
//! a log line when none is set (a library caller, a daemon).

use std::sync::OnceLock;

use ferry_types::Report;

static REPORTER: OnceLock<fn(&Report)> = OnceLock::new();

/// Sets how warnings are shown, once per process (a second call changes nothing).
pub fn set_reporter(reporter: fn(&Report)) {
    let _ = REPORTER.set(reporter);
}

/// Shows `warning` through the reporter, else logs it at WARN with its code and fix.
pub fn report(warning: &Report) {
    match REPORTER.get() {
        Some(reporter) => reporter(warning),
        None => tracing::warn!(code = warning.code, fix = warning.fix, "{}", warning.cause),
    }
}
