//! `ferry doctor`: every check run on its own (the network ones side by side, the slot
//! reads off the async threads, none stopping another), and at the top the one cause
//! that explains the device's current failure.
//!
//! # Which cause comes first
//!
//! A failing check whose code is the device's current failure (its last install, scan or
//! boot failed with it) explains that failure, so it comes first. Otherwise the first
//! failing check in [`PRECEDENCE`]: a cause comes before the causes it can bring about,
//! so what is named first is what to fix first — another process holding the device,
//! then its own files (config, identity, trust), the clock (which breaks TLS, catalog
//! expiry and personalization), the way to the server, the server, the catalog, the
//! enrollment and signing, then what the install itself needs (space, its cache), and
//! last the slots, boot and health. A warning is never the cause.

use std::path::PathBuf;
use std::time::Instant;

use chrono::{DateTime, Utc};
use ferry_payload::Manifest;
use ferry_types::Diagnose;
use serde::Serialize;

use crate::AgentError;
use crate::doctor::boot::{self, BOOT, OTHER_SEAL, RUNNING_SEAL};
use crate::doctor::cache::{self, CACHE};
use crate::doctor::catalog::{self, CATALOG};
use crate::doctor::check::{Check, Outcome};
use crate::doctor::clock::{self, CLOCK};
use crate::doctor::config::{self, CONFIG};
use crate::doctor::conflicts::{self, CurrentFailure, EARLIER_INSTALL, HEALTH, LOCK};
use crate::doctor::enrollment::{self, ENROLLMENT, SIGNING};
use crate::doctor::identity::{self, IDENTITY};
use crate::doctor::net::Net;
use crate::doctor::network::{self, NETWORK};
use crate::doctor::server::{self, SERVER};
use crate::doctor::space::{self, SPACE};
use crate::doctor::subject::Subject;
use crate::doctor::trust::{self, KEY_SET, PINNED_CA, PINNED_ROOT};

/// Every check, in the order a failing one is named first (see the [module docs](self)).
pub const PRECEDENCE: &[&str] = &[
    LOCK,
    CONFIG,
    IDENTITY,
    PINNED_ROOT,
    PINNED_CA,
    KEY_SET,
    CLOCK,
    NETWORK,
    SERVER,
    CATALOG,
    ENROLLMENT,
    SIGNING,
    SPACE,
    CACHE,
    RUNNING_SEAL,
    BOOT,
    HEALTH,
    OTHER_SEAL,
    EARLIER_INSTALL,
];

/// The one cause named at the top.
#[derive(Debug, Clone, Serialize)]
pub struct Cause {
    /// The check that found it.
    pub check: &'static str,
    /// Its code.
    pub code: String,
    /// One sentence: what is wrong.
    pub cause: String,
    /// One sentence: what to do.
    pub fix: String,
    /// Whether it is the code the device last failed with.
    pub explains_current_failure: bool,
    /// Whether `--fix` can repair it.
    pub fixable: bool,
}

/// What `--fix` did about one check.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Fixed {
    /// The check.
    pub check: std::borrow::Cow<'static, str>,
    /// Whether the repair was made.
    pub done: bool,
    /// What was done, or why not.
    pub what: String,
}

/// Everything the doctor found (`ferry doctor --json`; also what an event report of the
/// doctor's result carries).
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    /// The device directory.
    pub device: PathBuf,
    /// When the doctor ran.
    pub at: DateTime<Utc>,
    /// No check failed.
    pub ok: bool,
    /// The one cause, when a check failed.
    pub cause: Option<Cause>,
    /// What the device last failed with, if its latest event was a failure.
    pub current_failure: Option<CurrentFailure>,
    /// Every check, in [`PRECEDENCE`] order.
    pub checks: Vec<Check>,
    /// What `--fix` did (empty without it).
    pub fixes: Vec<Fixed>,
    /// How long the checks took.
    pub elapsed_ms: u64,
    /// What `--fix` removes from the cache (corrupt or stale items the cache check found).
    #[serde(skip)]
    pub cache_to_purge: Vec<crate::install::purge::Purgeable>,
}

impl DoctorReport {
    /// The check named `name`, if it ran.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// Which checks to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every check (`ferry doctor`).
    All,
    /// The checks that can explain a failure with this code (`ferry install` after it
    /// failed): slots are not read whole and health checks not run unless they can.
    Failure(String),
}

impl Scope {
    /// Whether `check` runs in this scope.
    pub fn includes(&self, check: &str) -> bool {
        let code = match self {
            Scope::All => return true,
            Scope::Failure(code) => code.as_str(),
        };
        let relevant: &[&str] = match code {
            "CLOCK_SKEW" => &[CLOCK],
            "NOT_SIGNED" => &[SIGNING, ENROLLMENT],
            "REVOKED_DEVICE" | "UNKNOWN_DEVICE" | "NOT_ENROLLED" | "BAD_IDENTITY" => {
                &[IDENTITY, ENROLLMENT, CONFIG]
            }
            "DEVICE_BUSY" => &[LOCK],
            "INSUFFICIENT_SPACE" | "DISK_FULL" | "DEVICE_IO" | "STATE_IO" | "JOURNAL_IO"
            | "BOOT_IO" => &[SPACE, CACHE, CONFIG],
            "DEVICE_CORRUPT" | "FACTS_CORRUPT" => &[CONFIG, BOOT, CACHE],
            "DIGEST_MISMATCH" | "CHUNK_CORRUPT" | "PAYLOAD_FRAME_CORRUPT" => &[CACHE, SERVER],
            "SEAL_MISMATCH" | "SLOT_VERIFY_FAILED" => &[RUNNING_SEAL, OTHER_SEAL, BOOT],
            "HEALTH_CHECK_FAILED" => &[HEALTH, BOOT],
            "KEYSET_MISSING" => &[KEY_SET, CATALOG, NETWORK],
            c if c.starts_with("CATALOG_") || c.starts_with("ROOT_") => {
                &[CLOCK, NETWORK, SERVER, CATALOG, PINNED_ROOT]
            }
            c if c.starts_with("TLS_") => &[NETWORK, PINNED_CA, CLOCK],
            c if c.starts_with("TICKET_") => &[KEY_SET, CLOCK, IDENTITY],
            c if c.starts_with("BOOT_") => &[BOOT, CONFIG, SPACE],
            "SERVER_UNREACHABLE" | "NETWORK_TIMEOUT" | "PAYLOAD_TRUNCATED" | "OVERLOADED"
            | "SERVER_REFUSED" | "SERVER_INVALID" | "RATE_LIMITED" => &[NETWORK, SERVER, CLOCK],
            _ => {
                return !matches!(check, RUNNING_SEAL | OTHER_SEAL | HEALTH);
            }
        };
        relevant.contains(&check)
    }
}

/// Runs the checks of `scope` on `subject`; none stops another.
pub async fn run(subject: &Subject, scope: &Scope) -> DoctorReport {
    let started = Instant::now();
    let mut checks: Vec<Check> = vec![
        conflicts::lock(subject),
        config::check(subject),
        trust::pinned_root(subject),
        trust::pinned_ca(subject),
    ];
    let (boot_check, boot_state) = boot::boot(subject);
    checks.push(boot_check);

    // The slow local reads, off the async threads, while the network is asked.
    let owned = subject.clone();
    let read_slots = scope.includes(RUNNING_SEAL) || scope.includes(OTHER_SEAL);
    let run_health = scope.includes(HEALTH);
    let slow = tokio::task::spawn_blocking(move || {
        let mut found = Vec::new();
        if read_slots && let Some(state) = &boot_state {
            found.extend(boot::seals(&owned, state));
        }
        if run_health {
            let running = catalog::running(&owned);
            found.push(conflicts::health(
                &owned,
                running.as_ref().map(|(_, info)| info),
                running.as_ref().map(|(slot, _)| *slot),
            ));
        }
        found
    });

    let net = Net::new(subject);
    let (probe, reading, found) = match &net {
        Ok(net) => {
            let (probe, reading, found) = tokio::join!(
                net.call("/healthz", |c| c.probe("/healthz")),
                clock::read(subject, net),
                catalog::check(subject, Some(net)),
            );
            (Some(probe), Some(reading), found)
        }
        Err(_) => (None, None, catalog::check(subject, None).await),
    };
    let offer = found.offer.clone();
    let manifest: Option<Result<Manifest, AgentError>> = match (&net, &offer) {
        (Ok(net), Some(offer)) => Some(
            net.call(&offer.release.manifest.url, |c| {
                c.artifact(&offer.release.manifest, "the payload manifest")
            })
            .await
            .and_then(|bytes| Ok(Manifest::from_json(&bytes)?)),
        ),
        _ => None,
    };
    let manifest = manifest.and_then(Result::ok);
    let preflight = match &net {
        Ok(net) => Some(
            enrollment::preflight(
                subject,
                net,
                offer.as_ref().zip(manifest.as_ref()),
                found.running.as_ref().map(|(_, info)| info),
            )
            .await,
        ),
        Err(_) => None,
    };
    let no_client = |name: &'static str| {
        let why = net.as_ref().err().map_or(String::new(), |e| e.to_string());
        Check::skipped(name, format!("the device has no usable client: {why}"))
    };
    checks.push(identity::check(subject, preflight.as_ref()));
    checks.push(trust::key_set(subject, found.catalog.as_ref()));
    let limit = preflight
        .as_ref()
        .and_then(|p| p.as_ref().ok())
        .map(|p| p.clock_skew_limit_seconds);
    checks.push(match &reading {
        Some(reading) => clock::judge(reading, limit),
        None => no_client(CLOCK),
    });
    match (&net, &probe) {
        (Ok(net), Some(probe)) => {
            checks.push(network::check(subject, net, probe).await);
            checks.push(server::judge(probe, net.errors()));
        }
        _ => {
            checks.push(no_client(NETWORK));
            checks.push(no_client(SERVER));
        }
    }
    checks.push(found.check);
    match &preflight {
        Some(preflight) => {
            checks.push(enrollment::enrollment(preflight));
            checks.push(enrollment::signing(offer.as_ref(), preflight));
        }
        None => {
            checks.push(no_client(ENROLLMENT));
            checks.push(no_client(SIGNING));
        }
    }
    checks.push(space::check(
        subject,
        offer.as_ref(),
        found.running.as_ref(),
    ));
    let mut cache_to_purge = Vec::new();
    if scope.includes(CACHE) {
        let inspection = cache::inspect(subject, offer.as_ref(), manifest.as_ref());
        cache_to_purge = inspection.remove;
        checks.push(inspection.check);
    }
    let (current_failure, earlier) = conflicts::history(subject);
    checks.push(earlier);
    checks.extend(slow.await.unwrap_or_default());

    checks.retain(|c| scope.includes(c.name));
    checks.sort_by_key(|c| rank(c.name));
    let cause = choose(&checks, current_failure.as_ref());
    DoctorReport {
        device: subject.dir.clone(),
        at: Utc::now(),
        ok: !checks.iter().any(Check::failed),
        cause,
        current_failure,
        checks,
        fixes: Vec::new(),
        elapsed_ms: started.elapsed().as_millis() as u64,
        cache_to_purge,
    }
}

fn rank(name: &str) -> usize {
    PRECEDENCE
        .iter()
        .position(|n| *n == name)
        .unwrap_or(PRECEDENCE.len())
}

/// The cause named first (see the [module docs](self)).
pub fn choose(checks: &[Check], current: Option<&CurrentFailure>) -> Option<Cause> {
    let failed: Vec<&Check> = checks
        .iter()
        .filter(|c| c.outcome == Outcome::Fail)
        .collect();
    let matching = current.and_then(|f| failed.iter().find(|c| c.code() == Some(f.code.as_str())));
    let chosen = matching.or_else(|| failed.iter().min_by_key(|c| rank(c.name)))?;
    let problem = chosen.problem.clone()?;
    Some(Cause {
        check: chosen.name,
        explains_current_failure: current.is_some_and(|f| f.code == problem.code),
        code: problem.code,
        cause: problem.cause,
        fix: problem.fix,
        fixable: chosen.fixable,
    })
}

/// Queues `report`'s outcome as the device's `doctor_result` event report.
pub fn queue_result(
    device: &crate::device::Device,
    report: &DoctorReport,
) -> Result<(), AgentError> {
    let cause = report.cause.as_ref().map(|c| {
        (
            c.check,
            ferry_types::Report {
                code: c.code.clone(),
                cause: c.cause.clone(),
                fix: c.fix.clone(),
            },
        )
    });
    crate::report::build::Reporter::for_device(device)
        .doctor_result(report.ok, cause.as_ref().map(|(check, r)| (*check, r)))
}

/// After `error` ended a command on `device` (whose lock this process holds): the checks
/// that can explain it, run now.
pub async fn after_failure(device: &crate::device::Device, error: &AgentError) -> DoctorReport {
    let subject = Subject::of_device(device);
    run(&subject, &Scope::Failure(error.code().to_owned())).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn failing(name: &'static str, code: &str) -> Check {
        Check::fail_report(
            name,
            ferry_types::Report {
                code: code.into(),
                cause: "c".into(),
                fix: "F".into(),
            },
            json!(null),
        )
    }

    #[test]
    fn the_first_failure_by_precedence_is_named_unless_one_explains_the_current_failure() {
        let checks = vec![
            Check::ok(LOCK, "fine", json!(null)),
            failing(CACHE, "CACHE_CORRUPT"),
            failing(SIGNING, "NOT_SIGNED"),
            Check::warn(
                BOOT,
                &crate::doctor::check::Finding::SlotUnknown { slot: "b".into() },
                json!(null),
            ),
        ];
        let cause = choose(&checks, None).unwrap();
        assert_eq!((cause.check, cause.code.as_str()), (SIGNING, "NOT_SIGNED"));
        assert!(!cause.explains_current_failure);
        let current = CurrentFailure {
            source: "install",
            code: "CACHE_CORRUPT".into(),
            at: Utc::now(),
            state: None,
        };
        let cause = choose(&checks, Some(&current)).unwrap();
        assert_eq!(cause.check, CACHE);
        assert!(cause.explains_current_failure);
        assert!(
            choose(&checks[3..], None).is_none(),
            "a warning is never the cause"
        );
    }

    #[test]
    fn every_check_has_a_place_and_a_failure_scope_is_narrow() {
        let mut sorted = PRECEDENCE.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), PRECEDENCE.len());
        let clock = Scope::Failure("CLOCK_SKEW".into());
        assert!(clock.includes(CLOCK) && !clock.includes(RUNNING_SEAL));
        let other = Scope::Failure("SOMETHING_NEW".into());
        assert!(other.includes(NETWORK) && !other.includes(HEALTH));
        assert!(Scope::All.includes(HEALTH));
    }
}
