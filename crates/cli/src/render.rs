//! Output for people and for scripts: errors, progress, tables.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ferry_agent::progress::{Progress, ProgressSink};
use ferry_types::Report;
use indicatif::{ProgressBar, ProgressStyle};

/// Prints an error once: `error[CODE]: cause` and `fix: …` (and `data: …` when the
/// error has data), or JSON with `--json`.
///
/// `diagnosis`: what the doctor found after the failure (`ferry install`): beside `error`
/// in the same JSON object, or the cause it names on stderr.
pub fn error(
    report: &Report,
    data: Option<&serde_json::Value>,
    diagnosis: Option<&ferry_agent::doctor::DoctorReport>,
    json: bool,
) {
    if json {
        let mut error = serde_json::json!(report);
        if let Some(data) = data {
            error["data"] = data.clone();
        }
        let mut out = serde_json::json!({ "error": error });
        if let Some(diagnosis) = diagnosis {
            out["diagnosis"] = serde_json::json!(diagnosis);
        }
        println!("{out}");
        return;
    }
    eprintln!("{report}");
    if let Some(data) = data {
        eprintln!("  data: {data}");
    }
    if let Some(diagnosis) = diagnosis {
        match &diagnosis.cause {
            Some(cause) => eprintln!(
                "doctor: the cause found is [{}] {}\n  fix: {}",
                cause.code, cause.cause, cause.fix
            ),
            None => eprintln!(
                "doctor: no check explains it now ({} checks passed); run `ferry doctor` for all of them",
                diagnosis.checks.len()
            ),
        }
    }
}

/// `ferry doctor`'s report for people: the cause first, then every check with its
/// evidence, then what `--fix` did.
pub fn doctor(report: &ferry_agent::doctor::DoctorReport) {
    use ferry_agent::doctor::Outcome;
    match &report.cause {
        Some(cause) => {
            println!("Cause: [{}] {}", cause.code, cause.cause);
            println!("  fix: {}", cause.fix);
            let mut notes = vec![format!("found by the {} check", cause.check)];
            if let Some(f) = &report.current_failure {
                if cause.explains_current_failure {
                    notes.push(format!(
                        "it explains the last {} failure ({})",
                        f.source, f.code
                    ));
                } else {
                    notes.push(format!("the last {} failed with {}", f.source, f.code));
                }
            }
            if cause.fixable {
                notes.push("`ferry doctor --fix` repairs it".into());
            }
            println!("  ({})", notes.join("; "));
        }
        None => match &report.current_failure {
            Some(f) => println!(
                "No problem found now (the last {} failed with {} at {}: it may have passed).",
                f.source,
                f.code,
                f.at.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            None => println!("No problem found."),
        },
    }
    println!();
    for c in &report.checks {
        let mark = match c.outcome {
            Outcome::Ok => "ok  ",
            Outcome::Skipped => "skip",
            Outcome::Warn => "warn",
            Outcome::Fail => "FAIL",
        };
        println!("[{mark}] {:<18} {}", c.name, c.summary);
        if let Some(p) = &c.problem
            && c.outcome != Outcome::Ok
        {
            println!("       [{}] fix: {}", p.code, p.fix);
        }
    }
    for f in &report.fixes {
        println!(
            "{} {}: {}",
            if f.done { "fixed" } else { "not fixed" },
            f.check,
            f.what
        );
    }
    println!("Checked in {:.2} s.", report.elapsed_ms as f64 / 1000.0);
}

/// A warning: something the device found wrong and dealt with on its own, on stderr as
/// `warning[CODE]: cause` and `  fix: …` (also with `--json`: stdout stays the answer).
pub fn warning(report: &Report) {
    eprintln!(
        "warning[{}]: {}\n  fix: {}",
        report.code, report.cause, report.fix
    );
}

/// Bytes for people ("3.1 GB"): the agent's one rendering.
pub fn bytes(n: u64) -> String {
    ferry_agent::progress::bytes_text(n)
}

/// Progress on stderr: a bar on a terminal, plain lines (at least one a second while
/// work goes on, one per checkpoint) otherwise.
pub struct ProgressUi {
    bar: Option<ProgressBar>,
    verbose: bool,
    last: Mutex<(Instant, &'static str, bool)>,
}

impl ProgressUi {
    /// Chooses the form from whether stderr is a terminal.
    pub fn new(verbose: bool) -> ProgressUi {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(1000);
            bar.set_style(
                ProgressStyle::with_template("{bar:40.cyan/blue} {percent_precise:>6}% {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        ProgressUi {
            bar,
            verbose,
            last: Mutex::new((Instant::now() - Duration::from_secs(10), "", false)),
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The bar's message: the action text with its units, then the waiting reason or the
/// rate, then the time remaining ("about 4–6 min left").
fn describe(p: &Progress) -> String {
    let mut s = p.action.clone();
    if p.total > 0 && !p.action.contains(" of ") {
        // An untracked sample (an older agent): the units from the numbers.
        s.push_str(&format!(
            " {}",
            ferry_agent::progress::of_text(p.done, p.total)
        ));
    }
    match &p.waiting {
        Some(waiting) => s.push_str(&format!(" — {waiting}")),
        None if p.total > 0 && p.rate > 0.0 && p.state == "DOWNLOADING_UPDATE" => {
            s.push_str(&format!(", {}/s", bytes(p.rate as u64)));
        }
        None => {}
    }
    if let Some(left) = p.remaining_text().filter(|_| p.percent < 100.0) {
        s.push_str(&format!(" · {left}"));
    }
    s
}

impl ProgressSink for ProgressUi {
    fn report(&self, p: &Progress) {
        if let Some(bar) = &self.bar {
            bar.set_position((p.percent * 10.0).round() as u64);
            bar.set_message(describe(p));
            if let Some(note) = &p.note {
                bar.println(format!("note: {note}"));
            }
            return;
        }
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        let state_changed = last.1 != p.state || last.2 != p.waiting.is_some();
        if state_changed
            || self.verbose
            || p.note.is_some()
            || last.0.elapsed() >= Duration::from_secs(1)
        {
            eprintln!(
                "[{:5.1}%] {:<20} {}  (fixed-checkpoint bar: {:.1}%)",
                p.percent,
                p.state,
                describe(p),
                p.fixed_percent
            );
            if let Some(note) = &p.note {
                eprintln!("  note: {note}");
            }
            *last = (Instant::now(), p.state, p.waiting.is_some());
        }
    }
}

/// An offer's (as JSON) `why_not_now`: the hold's code and cause, when the policy holds it.
pub fn why_not_now(offer: &serde_json::Value) -> Option<(&str, &str)> {
    let hold = offer["why_not_now"].as_object()?;
    let text = |k: &str| hold.get(k).and_then(|c| c.as_str()).unwrap_or_default();
    Some((text("code"), text("cause")))
}
