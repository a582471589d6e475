//! How a failed command reaches the terminal: its report (code, cause, fix), the data
//! behind it, and whether to print JSON. Every command module returns [`Failure`];
//! `main` renders it once.

use ferry_types::{Diagnose, Report};

/// A failure on its way to the terminal: the rendered report, the data behind it (a
/// personalization refusal's times, limits, ids) and whether to print JSON.
pub struct Failure {
    pub(crate) report: Report,
    pub(crate) data: Option<serde_json::Value>,
    pub(crate) json: bool,
    /// What the doctor found when it ran after the failure (`ferry install`).
    pub(crate) diagnosis: Option<Box<ferry_agent::doctor::DoctorReport>>,
}

impl<E: Diagnose> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure {
            report: e.report(),
            data: None,
            json: false,
            diagnosis: None,
        }
    }
}

/// An agent error with its data: a refusal's `data` member travels with it.
pub fn agent_failure(e: ferry_agent::AgentError) -> Failure {
    let data = match &e {
        ferry_agent::AgentError::Refused(refusal) => Some(refusal.data()),
        _ => None,
    };
    let mut failure = Failure::from(e);
    failure.data = data;
    failure
}

impl Failure {
    /// Marks the failure for JSON output.
    pub fn json(mut self, json: bool) -> Failure {
        self.json = json;
        self
    }

    /// A failure that no library error describes.
    pub fn new(code: &str, cause: impl Into<String>, fix: impl Into<String>) -> Failure {
        Failure {
            report: Report {
                code: code.into(),
                cause: cause.into(),
                fix: fix.into(),
            },
            data: None,
            json: false,
            diagnosis: None,
        }
    }

    /// The failure with what the doctor found after it.
    pub fn diagnosed(mut self, report: ferry_agent::doctor::DoctorReport) -> Failure {
        self.diagnosis = Some(Box::new(report));
        self
    }
}
