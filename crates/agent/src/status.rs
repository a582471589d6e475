//! `ferry status` and `ferry history`: what the device runs, what each slot holds.

use ferry_boot::Slot;
use ferry_types::Identity;
use serde::{Deserialize, Serialize};

use crate::AgentError;
use crate::device::{Device, Receipt, SlotInfo};

/// One slot in `status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlotStatus {
    /// Which.
    pub slot: Slot,
    /// Image path.
    pub path: String,
    /// What it holds (none: empty or being written).
    pub content: Option<SlotInfo>,
    /// Known good.
    pub good: bool,
    /// The running slot.
    pub running: bool,
    /// Tries left when it is on trial.
    pub tries_left: Option<u8>,
}

/// `ferry status --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// Identity.
    pub identity: Identity,
    /// Update server.
    pub server: String,
    /// Audience.
    pub audience: String,
    /// Running version.
    pub version: String,
    /// Running slot.
    pub running_slot: Slot,
    /// Slot that boots next.
    pub next_boot: Slot,
    /// Both slots.
    pub slots: Vec<SlotStatus>,
    /// Last boot failure, with its code.
    pub last_boot_failure: Option<ferry_boot::BootFailure>,
    /// An install in progress (resumable).
    pub install_in_progress: Option<crate::install::InstallProgress>,
    /// The outbox of event reports: queued, dropped when full, delivery and its back-off.
    pub events: ferry_events::OutboxStatus,
}

/// The device's status.
pub fn status(device: &Device) -> Result<Status, AgentError> {
    let state = device.boot_state()?;
    let running = state.primary();
    let mut slots = Vec::new();
    for slot in Slot::ALL {
        slots.push(SlotStatus {
            slot,
            path: device.slot_path(slot).display().to_string(),
            content: device.slot_info(slot)?,
            good: state.is_good(slot),
            running: slot == running,
            tries_left: state
                .trial()
                .filter(|t| t.slot == slot)
                .map(|t| t.tries_left),
        });
    }
    Ok(Status {
        identity: device.identity.clone(),
        server: device.config.server.clone(),
        audience: device.config.audience.clone(),
        version: device.running_version()?.to_string(),
        running_slot: running,
        next_boot: state.next_boot(),
        slots,
        last_boot_failure: state.last_failure().cloned(),
        install_in_progress: crate::device::read_json(&device.layout().install_record()).ok(),
        events: device.outbox().status(),
    })
}

/// Every install, oldest first.
pub fn history(device: &Device) -> Result<Vec<Receipt>, AgentError> {
    device.receipts()
}
