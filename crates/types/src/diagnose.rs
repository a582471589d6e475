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

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "error[{}]: {}\n  fix: {}",
            self.code, self.cause, self.fix
        )
    }
}
