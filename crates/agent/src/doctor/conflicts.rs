//! What stands in the way besides the update itself: another process holding the device
//! (its pid and command line), a health check failing now, and an earlier install stuck on
//! the same failure; and, from the journal, scan record and boot control, the device's
//! current failure (the one the doctor's top cause should explain).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use crate::AgentError;
use crate::device::{SlotInfo, read_json};
use crate::doctor::check::{Check, Finding};
use crate::doctor::subject::{LockState, Subject};
use crate::install::record::InstallProgress;
use crate::machines::{controller, update};

/// Name of the lock check.
pub const LOCK: &str = "lock";
/// Name of the health-check check.
pub const HEALTH: &str = "health_checks";
/// Name of the earlier-install check.
pub const EARLIER_INSTALL: &str = "earlier_install";

/// Longest a health check may run under the doctor.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);

/// Failures of one install after which it counts as stuck.
pub const STUCK_AFTER: usize = 3;

/// The device lock.
pub fn lock(subject: &Subject) -> Check {
    match &subject.lock {
        // `ferry agent` holding its device is how a device runs, not a conflict.
        LockState::Held {
            pid: Some(pid),
            command: Some(command),
        } if command.split_whitespace().any(|word| word == "agent")
            && crate::layout::Layout::new(&subject.dir)
                .agent_socket()
                .exists() =>
        {
            Check::ok(
                LOCK,
                format!("the agent (process {pid}) holds the device"),
                json!({ "pid": pid, "command": command }),
            )
        }
        LockState::Held { pid, command } => {
            let e = AgentError::DeviceBusy {
                dir: subject.dir.clone(),
            };
            let holder = match (pid, command) {
                (Some(pid), Some(cmd)) => format!("process {pid} ({cmd})"),
                (Some(pid), None) => format!("process {pid}"),
                _ => "another process".to_owned(),
            };
            Check::fail(LOCK, &e, json!({ "pid": pid, "command": command }))
                .with_summary(format!("{holder} holds the device lock"))
        }
        LockState::Ours => Check::ok(LOCK, "this command holds the device lock", json!(null)),
        LockState::Free => Check::ok(LOCK, "no other process holds the device", json!(null)),
    }
}

/// The device's health checks, run now as they run at boot (blocking: off the async
/// threads).
pub fn health(
    subject: &Subject,
    running: Option<&SlotInfo>,
    slot: Option<ferry_boot::Slot>,
) -> Check {
    let Some(config) = subject.config() else {
        return Check::skipped(HEALTH, "config.toml cannot be read (see the config check)");
    };
    if config.health_checks.is_empty() {
        return Check::ok(HEALTH, "none configured", json!({ "commands": [] }));
    }
    let evidence = json!({ "commands": config.health_checks });
    let version = running.map_or("unknown".to_owned(), |i| i.version.to_string());
    let slot = slot.map_or("unknown".to_owned(), |s| s.to_string());
    match crate::boot::health::run_checks_within(
        &config.health_checks,
        &slot,
        &version,
        &subject.dir,
        HEALTH_TIMEOUT,
    ) {
        Ok(()) => Check::ok(
            HEALTH,
            format!("{} check(s) pass", config.health_checks.len()),
            evidence,
        ),
        Err(e) => Check::fail(HEALTH, &e, evidence),
    }
}

/// What the device last failed with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CurrentFailure {
    /// `install`, `scan` or `boot`.
    pub source: &'static str,
    /// Its code.
    pub code: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The machine state it failed in, for an install.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// The device's last failure, if its latest event was one (a later success clears it),
/// and the earlier-install check.
pub fn history(subject: &Subject) -> (Option<CurrentFailure>, Check) {
    let layout = subject.layout();
    let records = ferry_fsm::read_journal(layout.journal_dir())
        .map(|j| j.records)
        .unwrap_or_default();
    let update_name = crate::machines::UPDATE.name;
    let controller_name = crate::machines::CONTROLLER.name;
    let (update_fail, boot_failed, controller_fail) = (
        update::Event::Fail.name(),
        update::Event::BootFailed.name(),
        controller::Event::Fail.name(),
    );
    let code_of = |data: &serde_json::Value| data["error"]["code"].as_str().map(str::to_owned);
    let mut latest: Vec<CurrentFailure> = Vec::new();
    let mut install_ok_at: Option<DateTime<Utc>> = None;
    if let Some(last) = records.iter().rev().find(|r| r.fsm == update_name) {
        match code_of(&last.data) {
            Some(code) if last.e == update_fail || last.e == boot_failed => {
                let state = records
                    .iter()
                    .rev()
                    .find(|r| r.fsm == controller_name && r.id == last.id && r.e == controller_fail)
                    .map(|r| r.s.clone());
                latest.push(CurrentFailure {
                    source: if last.e == boot_failed {
                        "boot"
                    } else {
                        "install"
                    },
                    code,
                    at: last.t,
                    state,
                });
            }
            _ => install_ok_at = Some(last.t),
        }
    }
    if let Some(scan) = crate::trust::catalog::last_scan(&subject.dir)
        && scan.result != crate::trust::catalog::SCAN_OK
        && install_ok_at.is_none_or(|t| t < scan.at)
    {
        latest.push(CurrentFailure {
            source: "scan",
            code: scan.result,
            at: scan.at,
            state: None,
        });
    }
    let current = latest.into_iter().max_by_key(|f| f.at);

    // The install in progress, and how often it failed.
    let record: Option<InstallProgress> = read_json(&layout.install_record()).ok();
    let check = match &record {
        None => Check::ok(EARLIER_INSTALL, "no install in progress", json!(null)),
        Some(record) => {
            let id = record.update_id.to_string();
            let failures: Vec<&ferry_fsm::Record> = records
                .iter()
                .filter(|r| r.fsm == controller_name && r.id == id && r.e == controller_fail)
                .collect();
            let evidence = json!({
                "version": record.version,
                "slot": record.slot,
                "frames_done": record.frames_done,
                "failures": failures.len(),
            });
            match failures.last() {
                Some(last) if failures.len() >= STUCK_AFTER => {
                    let finding = Finding::InstallStuck {
                        version: record.version.to_string(),
                        failures: failures.len(),
                        code: code_of(&last.data).unwrap_or_else(|| "unknown".into()),
                        state: last.s.clone(),
                    };
                    Check::fail(EARLIER_INSTALL, &finding, evidence)
                }
                Some(last) => Check::ok(
                    EARLIER_INSTALL,
                    format!(
                        "an install of {} is in progress (failed {} time(s), last with {}); the next install resumes it",
                        record.version,
                        failures.len(),
                        code_of(&last.data).unwrap_or_else(|| "unknown".into())
                    ),
                    evidence,
                ),
                None => Check::ok(
                    EARLIER_INSTALL,
                    format!(
                        "an install of {} is in progress; the next install resumes it",
                        record.version
                    ),
                    evidence,
                ),
            }
        }
    };
    (current, check)
}
