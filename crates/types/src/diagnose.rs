//! The error contract of DESIGN §7: a stable code, a cause, a fix.

use serde::Serialize;

/// What every ferry error can say about itself.
///
/// `Display` is the cause: one sentence, no trailing period. [`Diagnose::code`] is
/// stable across releases (scripts and dashboards match on it), and
/// [`Diagnose::fix`] tells the person reading it what to do next.
pub trait Diagnose: std::error::Error {
    /// Stable code, e.g. `PAYLOAD_TRUNCATED`.
    fn code(&self) -> &'static str;
    /// One sentence: what to do about it.
    fn fix(&self) -> String;
    /// Everything at once, ready for `--json` output or an event report.
    fn report(&self) -> Report {
        Report {
            code: self.code().to_owned(),
            cause: self.to_string(),
            fix: self.fix(),
        }
    }
}

/// A rendered error: what scripts see under `--json` and what event reports carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Report {
    /// Stable code.
    pub code: String,
    /// One-sentence cause.
    pub cause: String,
    /// One-sentence fix.
    pub fix: String,
}

impl Report {
    /// Where this report breaks the contract every rendered error keeps (a stable
    /// upper-case code, a cause without a trailing period, a fix that is one imperative
    /// sentence starting upper-case without a trailing period); `None` when it keeps it.
    /// The error tests of every crate check their errors with it.
    pub fn breach(&self) -> Option<String> {
        let Report { code, cause, fix } = self;
        if code.is_empty() || !code.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            return Some(format!("code {code:?} is not upper-case words joined by _"));
        }
        if cause.is_empty() || cause.ends_with('.') {
            return Some(format!(
                "{code}: cause {cause:?} is empty or ends with a period"
            ));
        }
        if !fix.chars().next().is_some_and(char::is_uppercase) || fix.ends_with('.') {
            return Some(format!(
                "{code}: fix {fix:?} does not start upper-case or ends with a period"
            ));
        }
        if fix.contains(". ") {
            return Some(format!("{code}: fix {fix:?} is more than one sentence"));
        }
        None
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "error[{}]: {}\n  fix: {}",
            self.code, self.cause, self.fix
        )
    }
}

#[cfg(test)]
mod tests {
    use super::Report;

    fn report(code: &str, cause: &str, fix: &str) -> Report {
        Report {
            code: code.into(),
            cause: cause.into(),
            fix: fix.into(),
        }
    }

    #[test]
    fn a_report_that_breaks_the_contract_says_where() {
        assert_eq!(
            report("DISK_FULL", "the disk is full", "Free space").breach(),
            None
        );
        let breach = |r: Report| r.breach().unwrap_or_default();
        assert!(breach(report("disk_full", "c", "Fix")).contains("upper-case"));
        assert!(breach(report("DISK_FULL", "the disk is full.", "Fix")).contains("period"));
        assert!(breach(report("DISK_FULL", "c", "free space")).contains("upper-case"));
        assert!(breach(report("DISK_FULL", "c", "Free space.")).contains("period"));
        assert!(breach(report("DISK_FULL", "c", "Free it. Then retry")).contains("one sentence"));
    }
}
