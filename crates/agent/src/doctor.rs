//! `ferry doctor`: each known cause of failure checked on its own and named, with
//! its code and fix, instead of one "the update failed".

use ferry_boot::Slot;
use ferry_types::{Diagnose, Report};
use serde::Serialize;

use crate::AgentError;
use crate::device::Device;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Fine.
    Ok,
    /// Worth knowing, not broken.
    Warn,
    /// Broken: `problem` says what and how to fix it.
    Fail,
}

/// One check's result.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// How it came out.
    pub outcome: Outcome,
    /// What was found, for people.
    pub detail: String,
    /// The problem, with its code and fix, when not ok.
    pub problem: Option<Report>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            outcome: Outcome::Ok,
            detail: detail.into(),
            problem: None,
        }
    }
    fn failed(
        name: &'static str,
        outcome: Outcome,
        detail: impl Into<String>,
        problem: Report,
    ) -> Check {
        Check {
            name,
            outcome,
            detail: detail.into(),
            problem: Some(problem),
        }
    }
    fn from_error(name: &'static str, e: &AgentError) -> Check {
        Check::failed(name, Outcome::Fail, e.to_string(), e.report())
    }
}

/// Runs every check; none stops the others.
pub async fn run(device: &Device) -> Vec<Check> {
    let mut checks = Vec::new();
    let state = match device.boot_state() {
        Ok(state) => {
            checks.push(Check::ok(
                "boot control",
                format!(
                    "{}; slot {} is primary",
                    device.boot_control().describe(),
                    state.primary()
                ),
            ));
            Some(state)
        }
        Err(e) => {
            checks.push(Check::from_error("boot control", &e));
            None
        }
    };
    if let Some(state) = &state {
        let running = state.primary();
        checks.push(seal_check("running slot seal", device, running));
        if let Some(trial) = state.trial() {
            checks.push(seal_check("new slot seal", device, trial.slot));
        }
        if let Some(f) = state.last_failure() {
            checks.push(Check::failed(
                "last boot",
                Outcome::Warn,
                format!("slot {} was abandoned at {}", f.slot, f.at),
                Report {
                    code: f.code.clone(),
                    cause: f.message.clone(),
                    fix: "the device runs its previous version; install the update again once the cause is fixed".into(),
                },
            ));
        }
    }
    checks.push(server_check(device).await);
    checks
}

fn seal_check(name: &'static str, device: &Device, slot: Slot) -> Check {
    let info = match device.slot_info(slot) {
        Ok(Some(info)) => info,
        Ok(None) => {
            return Check::failed(
                name,
                Outcome::Fail,
                format!("slot {slot} has no metadata"),
                Report {
                    code: "SLOT_UNKNOWN".into(),
                    cause: format!("nothing records what slot {slot} holds"),
                    fix: "reinstall the update into the slot".into(),
                },
            );
        }
        Err(e) => return Check::from_error(name, &e),
    };
    let Some(seal) = &info.seal else {
        return Check::failed(
            name,
            Outcome::Warn,
            format!("slot {slot} ({}) has no seal", info.version),
            Report {
                code: "SEAL_MISSING".into(),
                cause: format!("slot {slot} was written without a dm-verity tree"),
                fix: "install a sealed release to get boot-time verification".into(),
            },
        );
    };
    match crate::install::seal::verify(&device.slot_path(slot), info.image_size, seal, &device.dir)
    {
        Ok(()) => Check::ok(
            name,
            format!(
                "slot {slot} ({}) matches root hash {}",
                info.version, seal.root_hash
            ),
        ),
        Err(e) => Check::from_error(name, &e),
    }
}

async fn server_check(device: &Device) -> Check {
    let result = match crate::client::Client::for_device(device) {
        Ok(client) => client.healthz().await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Check::ok("update server", format!("{} answers", device.config.server)),
        Err(e) => Check::from_error("update server", &e),
    }
}
