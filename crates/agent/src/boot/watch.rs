//! The post-commit health watch: a release that boots, passes its checks and is committed
//! can still go unwell minutes later. For `post_commit_watch` after each commit the daemon
//! runs the device's health checks every `post_commit_check_every`; the first failure is
//! reported (`health_failed`, `HEALTH_WATCH_FAILED`, blamed on the release) and counts
//! against the release's rollout, a watch that runs out ends silently.
//!
//! The watch is the `health_watch[update uuid]` machine (its Begin, Pass and Unhealthy are
//! journaled, the Unhealthy transition queues the report) plus its deadline in
//! `boot/health-watch.json`, written through the one crash-safe write before Begin is
//! fired: a daemon that restarts (or a power cut) continues the same watch to the same
//! deadline. The decision of each check is [`verdict`], pure.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_boot::Slot;
use ferry_types::{Diagnose, Report, Version};
use serde::{Deserialize, Serialize};

use crate::AgentError;
use crate::device::Device;
pub use crate::device::Span;
use crate::journal::{Instance, Journal};
use crate::machines::health_watch::{Event, Names, State};

/// How often checks run during a watch unless `post_commit_check_every` says otherwise.
pub const DEFAULT_CHECK_EVERY: Duration = Duration::from_secs(30);

/// A watch under way, as `boot/health-watch.json` holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watch {
    /// The update committed (the `health_watch` instance's id).
    pub update: uuid::Uuid,
    /// Its release.
    pub version: Version,
    /// The slot it was committed in.
    pub slot: Slot,
    /// When it was committed.
    pub committed_at: DateTime<Utc>,
    /// When the watch ends if no check failed.
    pub until: DateTime<Utc>,
    /// Seconds between two checks.
    pub every_secs: u64,
    /// The install's receipt (its file name in `receipts/`): the report of a failure names
    /// the payload and the version the update came from (absent in watches begun before it
    /// was recorded).
    #[serde(default)]
    pub receipt: Option<String>,
}

/// What one turn of a watch decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Check again at this time.
    Again(DateTime<Utc>),
    /// The watch ran out without a failure: Pass.
    Passed,
    /// A check failed inside the watch: Unhealthy, reported with this error.
    Unhealthy(Report),
    /// The device no longer runs the watched slot (a newer commit, a fall-back): Pass.
    NotRunning,
}

/// The decision after a check at `now` (`check`: its result, `None` when none ran because
/// the watch was already over), with `running` the slot the device runs.
pub fn verdict(
    watch: &Watch,
    now: DateTime<Utc>,
    running: Slot,
    check: Option<Result<(), AgentError>>,
) -> Verdict {
    if running != watch.slot {
        return Verdict::NotRunning;
    }
    match check {
        Some(Err(error)) => {
            let after_secs = (now - watch.committed_at).num_seconds().max(0) as u64;
            Verdict::Unhealthy(
                AgentError::HealthWatchFailed {
                    version: watch.version.to_string(),
                    after_secs,
                    check: error.to_string(),
                }
                .report(),
            )
        }
        _ if now >= watch.until => Verdict::Passed,
        _ => {
            let next = now + chrono::Duration::seconds(watch.every_secs.max(1) as i64);
            Verdict::Again(next.min(watch.until))
        }
    }
}

fn path(device: &Device) -> PathBuf {
    device.layout().boot_dir().join("health-watch.json")
}

/// The watch under way, if any (a file that cannot be read as one is removed, with a
/// warning: the watch it held is lost, never the device's updates).
pub fn pending(device: &Device) -> Result<Option<Watch>, AgentError> {
    let path = path(device);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AgentError::io("reading the health watch", &path)(e)),
    };
    match serde_json::from_slice(&bytes) {
        Ok(watch) => Ok(Some(watch)),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "the health watch file is damaged; the watch is dropped");
            ferry_durable::remove(&path)
                .map_err(AgentError::io("removing the health watch", &path))?;
            Ok(None)
        }
    }
}

/// At a commit of `update` (release `version` in `slot`, installed as `receipt`): starts
/// its watch when
/// `config.toml` asks for one and names health checks. The deadline is durable before the
/// watch's Begin is journaled; a watch of an earlier update still running ends (Pass).
pub fn begin(
    device: &Device,
    journal: &mut Journal,
    update: uuid::Uuid,
    version: &Version,
    slot: Slot,
    receipt: &str,
) -> Result<Option<Watch>, AgentError> {
    let Some(span) = device.config.post_commit_watch else {
        return Ok(None);
    };
    if device.config.health_checks.is_empty() || span.0.is_zero() {
        return Ok(None);
    }
    if let Some(old) = pending(device)?
        && old.update != update
    {
        end(device, journal, &old, Verdict::NotRunning)?;
    }
    let now = Utc::now();
    let every = device
        .config
        .post_commit_check_every
        .map_or(DEFAULT_CHECK_EVERY, |s| s.0);
    let watch = Watch {
        update,
        version: version.clone(),
        slot,
        committed_at: now,
        until: now + chrono::Duration::from_std(span.0).unwrap_or(chrono::Duration::MAX),
        every_secs: every.as_secs().max(1),
        receipt: Some(receipt.to_owned()),
    };
    let path = path(device);
    ferry_durable::write_json(&path, &watch)
        .map_err(AgentError::io("writing the health watch", &path))?;
    resume(device, journal, &watch)?;
    Ok(Some(watch))
}

/// The watch's instance, started (Begin) if the crash came between its file and its
/// journal record; `None` when it already ended (its file is then removed).
pub fn resume(
    device: &Device,
    journal: &mut Journal,
    watch: &Watch,
) -> Result<Option<Instance<Names>>, AgentError> {
    let mut instance: Instance<Names> = journal.instance(&watch.update.to_string(), false)?;
    if instance.is_in(State::IDLE) {
        instance.fire(
            Event::Begin,
            serde_json::json!({
                "version": watch.version,
                "slot": watch.slot,
                "until": watch.until,
                "every_secs": watch.every_secs,
            }),
        )?;
        instance.complete_action()?;
    }
    if instance.is_in(State::WATCHING) {
        return Ok(Some(instance));
    }
    remove(device)?;
    Ok(None)
}

/// Ends `watch` as `verdict` says (Pass, or Unhealthy with its report queued) and removes
/// its file; `Again` changes nothing.
pub fn end(
    device: &Device,
    journal: &mut Journal,
    watch: &Watch,
    verdict: Verdict,
) -> Result<(), AgentError> {
    let Some(mut instance) = resume(device, journal, watch)? else {
        return Ok(());
    };
    let (event, data) = match verdict {
        Verdict::Again(_) => return Ok(()),
        Verdict::Passed => (Event::Pass, serde_json::json!({ "version": watch.version })),
        Verdict::NotRunning => (
            Event::Pass,
            serde_json::json!({ "version": watch.version, "reason": "the device no longer runs the watched slot" }),
        ),
        Verdict::Unhealthy(error) => (
            Event::Unhealthy,
            serde_json::json!({
                "version": watch.version,
                "slot": watch.slot,
                "receipt": watch.receipt,
                "error": error,
            }),
        ),
    };
    instance.fire(event, data)?;
    instance.complete_action()?;
    remove(device)
}

fn remove(device: &Device) -> Result<(), AgentError> {
    let path = path(device);
    ferry_durable::remove(&path).map_err(AgentError::io("removing the health watch", &path))
}

/// Runs the device's health checks against the watched slot (blocking: call it off the
/// async runtime).
pub fn check(device: &Device, watch: &Watch) -> Result<(), AgentError> {
    crate::boot::health::run_checks(
        &device.config.health_checks,
        &watch.slot.to_string(),
        watch.version.as_str(),
        &device.dir,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch() -> Watch {
        let at = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        Watch {
            update: uuid::Uuid::nil(),
            version: "2.0".parse().unwrap(),
            slot: Slot::B,
            committed_at: at,
            until: at + chrono::Duration::seconds(600),
            every_secs: 30,
            receipt: None,
        }
    }

    fn failed() -> AgentError {
        AgentError::HealthCheckFailed {
            command: "false".into(),
            outcome: "exited with 1".into(),
            stderr: String::new(),
        }
    }

    #[test]
    fn the_verdicts_of_a_watch() {
        let w = watch();
        let at = |secs| w.committed_at + chrono::Duration::seconds(secs);
        // (now, running slot, check result) -> verdict
        type Row = (i64, Slot, Option<Result<(), AgentError>>, Verdict);
        let table: Vec<Row> = vec![
            (0, Slot::B, Some(Ok(())), Verdict::Again(at(30))),
            (590, Slot::B, Some(Ok(())), Verdict::Again(at(600))),
            (600, Slot::B, Some(Ok(())), Verdict::Passed),
            (700, Slot::B, None, Verdict::Passed),
            (60, Slot::A, Some(Err(failed())), Verdict::NotRunning),
        ];
        for (secs, running, check, expected) in table {
            assert_eq!(
                verdict(&w, at(secs), running, check),
                expected,
                "at {secs} s"
            );
        }
        let Verdict::Unhealthy(report) = verdict(&w, at(120), Slot::B, Some(Err(failed()))) else {
            panic!("a failed check inside the watch is not Unhealthy");
        };
        assert_eq!(report.code, "HEALTH_WATCH_FAILED");
        assert!(
            report.cause.contains("2.0 was committed 120 s ago"),
            "{}",
            report.cause
        );
        assert!(
            report.cause.contains("`false` exited with 1"),
            "{}",
            report.cause
        );
        assert_eq!(
            ferry_events::blame(&report.code),
            Some(ferry_events::Blame::Release)
        );
    }

    #[test]
    fn spans_read_as_config_writes_them() {
        let secs = |text: &str| text.parse::<Span>().map(|s| s.0.as_secs());
        assert_eq!(secs("10m"), Ok(600));
        assert_eq!(secs("90s"), Ok(90));
        assert_eq!(secs("2h"), Ok(7200));
        assert_eq!(secs("1d"), Ok(86_400));
        assert_eq!(secs("45"), Ok(45));
        assert!(secs("10 minutes").is_err());
        assert!(secs("m").is_err());
        let config: toml::Value = toml::from_str("w = \"10m\"").unwrap();
        let span: Span = config["w"].clone().try_into().unwrap();
        assert_eq!(span.0.as_secs(), 600);
    }

    #[test]
    fn the_table_walks_begin_then_pass_or_unhealthy() {
        let machine = ferry_fsm::Machine::new(&crate::machines::HEALTH_WATCH).unwrap();
        let next = |state: &str, event: &str| machine.row(state, event).map(|r| r.next);
        assert_eq!(next("IDLE", "Begin"), Some("WATCHING"));
        assert_eq!(next("WATCHING", "Pass"), Some("PASSED"));
        assert_eq!(next("WATCHING", "Unhealthy"), Some("UNHEALTHY"));
        assert_eq!(next("IDLE", "Unhealthy"), None);
        assert_eq!(next("PASSED", "Unhealthy"), None);
        assert_eq!(next("UNHEALTHY", "Begin"), None);
    }
}
