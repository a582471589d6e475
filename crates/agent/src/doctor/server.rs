//! The server check: how the update server answered the health probe (`GET /healthz`
//! through the device's client): fine, overloaded (503 or 429, with its `Retry-After`),
//! another error status, or no answer; and how many of the doctor's own requests failed.

use ferry_types::Diagnose;
use serde_json::json;

use crate::AgentError;
use crate::client::Probe;
use crate::doctor::check::{Check, Finding};

/// Name of the check.
pub const SERVER: &str = "server";

/// Judges the probe; `errors` is (requests that failed, requests made) by the doctor.
pub fn judge(probe: &Result<Probe, AgentError>, errors: (usize, usize)) -> Check {
    let (failed, total) = errors;
    let probe = match probe {
        Ok(p) => p,
        // No HTTP answer at all: the network check says at which step it failed.
        Err(e) if e.code() == "SERVER_UNREACHABLE" || e.code().starts_with("TLS_") => {
            return Check::skipped(
                SERVER,
                format!("no answer ({}): see the network check", e.code()),
            );
        }
        Err(e) => {
            return Check::fail(SERVER, e, json!({ "requests": total, "failed": failed }));
        }
    };
    let evidence = json!({
        "url": probe.url,
        "status": probe.status,
        "retry_after_seconds": probe.retry_after_secs,
        "elapsed_ms": probe.elapsed.as_millis() as u64,
        "requests": total,
        "failed": failed,
    });
    match probe.status {
        200..=299 if failed == 0 => Check::ok(
            SERVER,
            format!(
                "answers in {} ms; {total} requests, none failed",
                probe.elapsed.as_millis()
            ),
            evidence,
        ),
        200..=299 => Check::warn(SERVER, &Finding::ServerErrors { failed, total }, evidence),
        429 | 503 => Check::fail(
            SERVER,
            &Finding::Overloaded {
                url: probe.url.clone(),
                status: probe.status,
                retry_after_secs: probe.retry_after_secs,
            },
            evidence,
        ),
        status => Check::fail(
            SERVER,
            &AgentError::ServerRefused {
                url: probe.url.clone(),
                status,
                code: None,
            },
            evidence,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn probe(status: u16, retry_after_secs: Option<u64>) -> Result<Probe, AgentError> {
        Ok(Probe {
            url: "https://s/healthz".into(),
            status,
            retry_after_secs,
            elapsed: Duration::from_millis(3),
        })
    }

    #[test]
    fn overloaded_names_retry_after_and_errors_warn() {
        let check = judge(&probe(503, Some(120)), (1, 3));
        assert_eq!(check.code(), Some("OVERLOADED"));
        assert!(check.problem.unwrap().fix.contains("120 s"));
        assert!(!judge(&probe(200, None), (0, 3)).failed());
        let warned = judge(&probe(200, None), (1, 3));
        assert_eq!(warned.code(), Some("SERVER_ERRORS"));
        assert!(!warned.failed());
        assert_eq!(
            judge(&probe(500, None), (0, 1)).code(),
            Some("SERVER_REFUSED")
        );
    }
}
