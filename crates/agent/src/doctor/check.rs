//! What every doctor check returns ([`Check`]: its outcome, its evidence, the problem with
//! its code and fix) and the causes only the doctor names ([`Finding`]).

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use ferry_types::{Diagnose, Report};
use serde::Serialize;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Fine.
    Ok,
    /// Not checked: what it needs is missing (named in the summary).
    Skipped,
    /// Worth knowing, not what stops the device.
    Warn,
    /// Broken: the problem says what, with its code and fix.
    Fail,
}

/// The result of one check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Stable name (`clock`, `network`, `pinned_root`, …): see [`crate::doctor::PRECEDENCE`].
    pub name: &'static str,
    /// How it came out.
    pub outcome: Outcome,
    /// What was found, in one line for people.
    pub summary: String,
    /// What was found, for scripts.
    pub evidence: serde_json::Value,
    /// The problem, with its code, cause and fix, unless the outcome is ok or skipped.
    pub problem: Option<Report>,
    /// Whether `ferry doctor --fix` can repair it.
    pub fixable: bool,
}

impl Check {
    /// A check that passed.
    pub fn ok(
        name: &'static str,
        summary: impl Into<String>,
        evidence: serde_json::Value,
    ) -> Check {
        Check {
            name,
            outcome: Outcome::Ok,
            summary: summary.into(),
            evidence,
            problem: None,
            fixable: false,
        }
    }

    /// A check that could not run, and why.
    pub fn skipped(name: &'static str, why: impl Into<String>) -> Check {
        Check {
            name,
            outcome: Outcome::Skipped,
            summary: why.into(),
            evidence: serde_json::Value::Null,
            problem: None,
            fixable: false,
        }
    }

    /// A check that failed with `problem`.
    pub fn fail(name: &'static str, problem: &dyn Diagnose, evidence: serde_json::Value) -> Check {
        Check::fail_report(name, problem.report(), evidence)
    }

    /// A check that failed with a problem already rendered (a refusal the server sent).
    pub fn fail_report(name: &'static str, problem: Report, evidence: serde_json::Value) -> Check {
        Check {
            name,
            outcome: Outcome::Fail,
            summary: problem.cause.clone(),
            evidence,
            problem: Some(problem),
            fixable: false,
        }
    }

    /// A warning with `problem`.
    pub fn warn(name: &'static str, problem: &dyn Diagnose, evidence: serde_json::Value) -> Check {
        Check {
            outcome: Outcome::Warn,
            ..Check::fail(name, problem, evidence)
        }
    }

    /// The same check, repairable by `--fix`.
    pub fn fixable(mut self) -> Check {
        self.fixable = true;
        self
    }

    /// The same check with `summary` as its one line.
    pub fn with_summary(mut self, summary: impl Into<String>) -> Check {
        self.summary = summary.into();
        self
    }

    /// Whether it failed.
    pub fn failed(&self) -> bool {
        self.outcome == Outcome::Fail
    }

    /// The code of its problem, if any.
    pub fn code(&self) -> Option<&str> {
        self.problem.as_ref().map(|p| p.code.as_str())
    }
}

/// Causes only the doctor names (every other cause is the error the failing operation
/// itself returns, with its own code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Finding {
    /// The server's name does not resolve.
    #[error("the server's name {host} does not resolve: {reason}")]
    NameResolution {
        /// The name.
        host: String,
        /// What the resolver said.
        reason: String,
    },
    /// TCP connects but TLS does not complete, for a reason other than the certificate.
    #[error("TLS to {server} did not complete: {reason}")]
    TlsHandshake {
        /// Where.
        server: String,
        /// What failed.
        reason: String,
    },
    /// The server answers 503 (or 429), with how long to wait.
    #[error("the update server at {url} is overloaded: it answered {status}{}", retry_after_secs.map(|s| format!(" with Retry-After {s} s")).unwrap_or_default())]
    Overloaded {
        /// What was asked for.
        url: String,
        /// HTTP status.
        status: u16,
        /// Seconds it asks devices to wait.
        retry_after_secs: Option<u64>,
    },
    /// Some of the doctor's requests failed although the server answered its health
    /// probe.
    #[error("{failed} of the doctor's {total} requests to the update server failed")]
    ServerErrors {
        /// Requests that failed.
        failed: usize,
        /// Requests made.
        total: usize,
    },
    /// The identity differs from the one enrolled: other hardware answers for this id.
    #[error("the device's identity differs from the one enrolled in {}: another board answers for device {device_id} (a replaced logic board?)", fields.join(", "))]
    IdentityMismatch {
        /// The device id.
        device_id: String,
        /// The fields that differ.
        fields: Vec<String>,
    },
    /// The device was enrolled again since this credential was issued.
    #[error(
        "the device was enrolled again after its credential was issued, so the server no longer accepts it"
    )]
    CredentialSuperseded,
    /// The last good catalog expired and the server cannot be reached to refresh it.
    #[error("the device's catalog expired at {expired_at} ({role} metadata) and the server has not been reached since {}", refreshed_at.map_or("the device was made".to_owned(), |t| t.to_rfc3339()))]
    CatalogStale {
        /// The role that expired first.
        role: String,
        /// When it expired.
        expired_at: DateTime<Utc>,
        /// When the last refresh succeeded.
        refreshed_at: Option<DateTime<Utc>>,
    },
    /// Downloaded bytes in the cache do not match the payload's digests.
    #[error("the update cache is corrupt: {what} ({}) {reason}", path.display())]
    CacheCorrupt {
        /// What: `the spool`, `the install record`, `the chunk cache`.
        what: String,
        /// Where.
        path: PathBuf,
        /// What does not match.
        reason: String,
    },
    /// Leftovers no install needs take space.
    #[error("{n_items} leftover item{} in the cache and temp files take {bytes} bytes that no install needs", if *n_items == 1 { "" } else { "s" })]
    CacheStale {
        /// How many.
        n_items: usize,
        /// Bytes they occupy.
        bytes: u64,
    },
    /// The pinned CA certificate is outside its validity.
    #[error("the pinned CA {subject} is valid from {not_before} to {not_after}, not now ({now})")]
    CaNotValid {
        /// Its subject.
        subject: String,
        /// Start of validity.
        not_before: DateTime<Utc>,
        /// End of validity.
        not_after: DateTime<Utc>,
        /// The device's time.
        now: DateTime<Utc>,
    },
    /// The same install failed again and again.
    #[error("the install of {version} failed {failures} times, the last with {code} in {state}")]
    InstallStuck {
        /// The version.
        version: String,
        /// Failures recorded.
        failures: usize,
        /// The last failure's code.
        code: String,
        /// The controller state it failed in.
        state: String,
    },
    /// A slot with no record of what it holds.
    #[error("nothing records what slot {slot} holds")]
    SlotUnknown {
        /// The slot.
        slot: String,
    },
    /// A slot written without a dm-verity tree.
    #[error("slot {slot} ({version}) was written without a dm-verity tree")]
    SealMissing {
        /// The slot.
        slot: String,
        /// What it holds.
        version: String,
    },
    /// The last boot of an update failed and the device fell back.
    #[error("slot {slot} was abandoned at {at}: {message} ({code})")]
    RolledBack {
        /// The slot.
        slot: String,
        /// When.
        at: DateTime<Utc>,
        /// The failure's code.
        code: String,
        /// What happened.
        message: String,
    },
}

impl Diagnose for Finding {
    fn code(&self) -> &'static str {
        match self {
            Finding::NameResolution { .. } => "NAME_RESOLUTION_FAILED",
            Finding::TlsHandshake { .. } => "TLS_HANDSHAKE_FAILED",
            Finding::Overloaded { .. } => "OVERLOADED",
            Finding::ServerErrors { .. } => "SERVER_ERRORS",
            Finding::IdentityMismatch { .. } => "IDENTITY_MISMATCH",
            Finding::CredentialSuperseded => "CREDENTIAL_SUPERSEDED",
            Finding::CatalogStale { .. } => "CATALOG_STALE",
            Finding::CacheCorrupt { .. } => "CACHE_CORRUPT",
            Finding::CacheStale { .. } => "CACHE_STALE",
            Finding::CaNotValid { .. } => "CA_NOT_VALID",
            Finding::InstallStuck { .. } => "INSTALL_STUCK",
            Finding::SlotUnknown { .. } => "SLOT_UNKNOWN",
            Finding::SealMissing { .. } => "SEAL_MISSING",
            Finding::RolledBack { .. } => "ROLLED_BACK",
        }
    }

    fn fix(&self) -> String {
        match self {
            Finding::NameResolution { host, .. } => format!(
                "Check the device's DNS settings (/etc/resolv.conf) and that {host} is the server's name in config.toml"
            ),
            Finding::TlsHandshake { .. } => {
                "Check that the server in config.toml speaks HTTPS on that port and that no middlebox cuts TLS connections".into()
            }
            Finding::Overloaded {
                retry_after_secs, ..
            } => match retry_after_secs {
                Some(secs) => format!(
                    "Wait at least {secs} s before trying again (nothing on the device needs fixing)"
                ),
                None => "Try again later (nothing on the device needs fixing)".into(),
            },
            Finding::ServerErrors { .. } => {
                "Check the server's log for failing requests (the device itself is fine)".into()
            }
            Finding::IdentityMismatch { .. } => {
                "If the hardware was replaced, have an operator revoke the old enrollment and enroll this device again; otherwise restore identity.json".into()
            }
            Finding::CredentialSuperseded => {
                "Enroll this device again with a new token (ferry server token), or revoke the other enrollment of its id".into()
            }
            Finding::CatalogStale { .. } => {
                "Restore the device's network path to the server and scan (`ferry list` or `ferry doctor --fix`)".into()
            }
            Finding::CacheCorrupt { .. } => {
                "Run `ferry doctor --fix` (or `ferry purge-cache --all`) to remove it: the install fetches those bytes again".into()
            }
            Finding::CacheStale { .. } => {
                "Run `ferry doctor --fix` or `ferry purge-cache` to free the space".into()
            }
            Finding::CaNotValid { .. } => {
                "Set the device's clock right if it is wrong, else pin the server's current CA (DATA/pki/ca.pem) in trust/ca.pem".into()
            }
            Finding::InstallStuck { .. } => {
                "Fix the cause the other checks name, then run the install again (it resumes)".into()
            }
            Finding::SlotUnknown { .. } => "Install the update again into that slot".into(),
            Finding::SealMissing { .. } => {
                "Install a sealed release to get boot-time verification".into()
            }
            Finding::RolledBack { .. } => {
                "Fix the cause of the failed boot, then install the update again (the device runs its previous version meanwhile)".into()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn findings_keep_the_error_contract() {
        let now = Utc::now();
        let findings = [
            Finding::NameResolution {
                host: "h".into(),
                reason: "r".into(),
            },
            Finding::TlsHandshake {
                server: "s".into(),
                reason: "r".into(),
            },
            Finding::Overloaded {
                url: "u".into(),
                status: 503,
                retry_after_secs: Some(120),
            },
            Finding::ServerErrors {
                failed: 1,
                total: 4,
            },
            Finding::IdentityMismatch {
                device_id: "d".into(),
                fields: vec!["board_id".into()],
            },
            Finding::CredentialSuperseded,
            Finding::CatalogStale {
                role: "targets".into(),
                expired_at: now,
                refreshed_at: None,
            },
            Finding::CacheCorrupt {
                what: "the spool".into(),
                path: "p".into(),
                reason: "r".into(),
            },
            Finding::CacheStale {
                n_items: 2,
                bytes: 10,
            },
            Finding::CaNotValid {
                subject: "s".into(),
                not_before: now,
                not_after: now,
                now,
            },
            Finding::InstallStuck {
                version: "2.0".into(),
                failures: 3,
                code: "C".into(),
                state: "S".into(),
            },
            Finding::SlotUnknown { slot: "b".into() },
            Finding::SealMissing {
                slot: "b".into(),
                version: "1".into(),
            },
            Finding::RolledBack {
                slot: "b".into(),
                at: now,
                code: "C".into(),
                message: "m".into(),
            },
        ];
        for finding in &findings {
            let Report { code, cause, fix } = finding.report();
            assert!(
                code.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "{code}"
            );
            assert!(!cause.ends_with('.'), "{code}: {cause}");
            assert!(
                fix.chars().next().is_some_and(char::is_uppercase) && !fix.ends_with('.'),
                "{code}: {fix}"
            );
            assert!(!fix.contains(". "), "{code}: {fix}");
        }
        assert!(findings[2].to_string().contains("Retry-After 120 s"));
        assert!(findings[2].fix().contains("120 s"));
    }
}
