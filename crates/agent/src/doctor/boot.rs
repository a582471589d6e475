//! The boot checks: boot control's state (which slot runs, which is on trial with how many
//! tries left, the last rollback and its reason) and the seal of both slots (every block
//! against the dm-verity tree and its root hash, naming the first that differs).

use ferry_boot::{BootState, Slot};
use serde_json::json;

use crate::AgentError;
use crate::device::{SlotInfo, read_json};
use crate::doctor::check::{Check, Finding};
use crate::doctor::subject::Subject;

/// Name of the boot-state check.
pub const BOOT: &str = "boot";
/// Name of the running slot's seal check.
pub const RUNNING_SEAL: &str = "running_slot_seal";
/// Name of the other slot's seal check.
pub const OTHER_SEAL: &str = "other_slot_seal";

/// Boot control's state.
pub fn boot(subject: &Subject) -> (Check, Option<BootState>) {
    let Some(boot) = subject.boot_control() else {
        return (
            Check::skipped(BOOT, "config.toml cannot be read (see the config check)"),
            None,
        );
    };
    let state = match boot.load() {
        Ok(state) => state,
        Err(e) => {
            return (
                Check::fail(
                    BOOT,
                    &AgentError::Boot(e),
                    json!({ "backend": boot.describe() }),
                ),
                None,
            );
        }
    };
    let trial = state.trial();
    let evidence = json!({
        "backend": boot.describe(),
        "primary": state.primary(),
        "next_boot": state.next_boot(),
        "good": Slot::ALL.iter().filter(|s| state.is_good(**s)).collect::<Vec<_>>(),
        "trial": trial.map(|t| json!({ "slot": t.slot, "tries_left": t.tries_left })),
        "last_failure": state.last_failure(),
    });
    let mut summary = format!("slot {} runs", state.primary());
    if let Some(t) = trial {
        summary.push_str(&format!(
            "; slot {} is on trial with {} tries left",
            t.slot, t.tries_left
        ));
    }
    let check = match state.last_failure() {
        Some(f) => Check::warn(
            BOOT,
            &Finding::RolledBack {
                slot: f.slot.to_string(),
                at: f.at,
                code: f.code.clone(),
                message: f.message.clone(),
            },
            evidence,
        ),
        None => Check::ok(BOOT, summary, evidence),
    };
    (check, Some(state))
}

/// The seal of both slots (reads every block of each: run it off the async threads).
pub fn seals(subject: &Subject, state: &BootState) -> Vec<Check> {
    let running = state.primary();
    let other = !running;
    let on_trial = state.trial().is_some_and(|t| t.slot == other);
    vec![
        seal(subject, RUNNING_SEAL, running, true),
        seal(subject, OTHER_SEAL, other, on_trial),
    ]
}

fn seal(subject: &Subject, name: &'static str, slot: Slot, must_boot: bool) -> Check {
    let (Some(path), Some(_)) = (subject.slot_path(slot), subject.config()) else {
        return Check::skipped(name, "config.toml cannot be read (see the config check)");
    };
    let info_path = subject.layout().slot_info(slot);
    let info: Option<SlotInfo> = if info_path.exists() {
        match read_json(&info_path) {
            Ok(info) => Some(info),
            Err(e) => return Check::fail(name, &e, json!({ "slot": slot })),
        }
    } else {
        None
    };
    let Some(info) = info else {
        if must_boot {
            return Check::fail(
                name,
                &Finding::SlotUnknown {
                    slot: slot.to_string(),
                },
                json!({ "slot": slot }),
            );
        }
        return Check::ok(
            name,
            format!("slot {slot} holds nothing installed"),
            json!({ "slot": slot }),
        );
    };
    let evidence = json!({ "slot": slot, "version": info.version, "path": path });
    let Some(seal) = &info.seal else {
        let finding = Finding::SealMissing {
            slot: slot.to_string(),
            version: info.version.to_string(),
        };
        return Check::warn(name, &finding, evidence);
    };
    match crate::install::seal::verify(&path, info.image_size, seal, &subject.dir) {
        Ok(()) => Check::ok(
            name,
            format!(
                "slot {slot} ({}) matches root hash {}",
                info.version, seal.root_hash
            ),
            evidence,
        ),
        Err(e) if must_boot => Check::fail(name, &e, evidence),
        // The previous version, kept to fall back to: worth knowing, not what stops the device.
        Err(e) => Check::warn(name, &e, evidence),
    }
}
