//! `ferry reboot` (what the bootloader does) and `ferry boot-check` (what the booted
//! system does before it commits to the new slot).

use chrono::Utc;
use ferry_boot::Slot;
use ferry_payload::Manifest;
use serde::Serialize;

use crate::AgentError;
use crate::device::Device;
use crate::install::download;
use crate::journal::Instance;
use crate::machines::update;
use ferry_types::Diagnose;

/// What a simulated reboot did.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RebootOutcome {
    /// Slot the device booted and kept.
    pub running: Slot,
    /// Version it runs.
    pub version: String,
    /// Whether a new slot was tried.
    pub tried: Option<Slot>,
    /// Why the new slot was abandoned, if it was.
    pub failure: Option<ferry_types::Report>,
}

/// Simulates a restart: the bootloader picks a slot (a trial slot spends one try),
/// then the booted system checks it ([`boot_check`]); a slot that fails is abandoned
/// and the device runs the previous one again.
///
/// `crash`: the new system dies before its boot check runs (a kernel panic, a hang
/// the watchdog resets): the bootloader has spent a try and nothing is committed.
pub fn reboot(device: &Device, crash: bool) -> Result<RebootOutcome, AgentError> {
    reboot_in(device, crash, None)
}

/// [`reboot`], recording the boot on the update machine through `journal` when given (a
/// process that holds the device's journal open, as the daemon does, passes it: one
/// journal per device and process hands out the records' sequence numbers).
pub fn reboot_in(
    device: &Device,
    crash: bool,
    journal: Option<&mut crate::journal::Journal>,
) -> Result<RebootOutcome, AgentError> {
    let boot = device.boot_control();
    let state = boot.load()?;
    let (booted, after) = state.select_for_boot(Utc::now());
    boot.store(&after)?;
    let tried = after.trial().map(|t| t.slot).filter(|s| *s == booted);
    if crash && tried.is_some() {
        let version = device
            .slot_info(booted)?
            .map(|i| i.version.to_string())
            .unwrap_or_else(|| "unknown".into());
        return Ok(RebootOutcome {
            running: booted,
            version,
            tried,
            failure: Some(ferry_types::Report {
                code: "BOOT_CRASHED".into(),
                cause: format!("slot {booted} crashed before its boot check; {} tries left", after.trial().map_or(0, |t| t.tries_left)),
                fix: "restart again: the slot gets its remaining tries, then the device falls back on its own".into(),
            }),
        });
    }
    finish_boot(device, &after, tried, journal)
}

/// What the booted system does when the agent starts after a real restart: a slot on
/// trial whose bootloader has spent a try (fewer left than `boot_tries`) is the slot
/// that booted, so it is checked ([`boot_check`]) and committed, or abandoned with the
/// code. `None`: no slot was on trial, or its restart has not happened yet.
pub fn check_booted(
    device: &Device,
    journal: Option<&mut crate::journal::Journal>,
) -> Result<Option<RebootOutcome>, AgentError> {
    let state = device.boot_state()?;
    let Some(trial) = state.trial() else {
        return Ok(None);
    };
    if trial.tries_left >= device.config.boot_tries {
        return Ok(None);
    }
    finish_boot(device, &state, Some(trial.slot), journal).map(Some)
}

/// The booted system's part of a restart, once the bootloader chose a slot and stored
/// `after`: check the slot `tried` (if a trial booted), commit or abandon it, record it.
fn finish_boot(
    device: &Device,
    after: &ferry_boot::BootState,
    tried: Option<Slot>,
    journal: Option<&mut crate::journal::Journal>,
) -> Result<RebootOutcome, AgentError> {
    let boot = device.boot_control();
    let failure = if let Some(booted) = tried {
        boot_check(device, booted).err().map(|e| {
            let report = e.report();
            tracing::warn!(slot = %booted, code = report.code, "new slot failed its boot check");
            report
        })
    } else {
        None
    };
    let state = boot.load()?;
    let good = failure.is_none().then_some(tried).flatten();
    let state = match (&failure, tried) {
        (None, Some(slot)) => state.mark_good(slot)?,
        (Some(report), Some(slot)) => {
            state.abandon(slot, &report.code, &report.cause, Utc::now())?
        }
        _ => state,
    };
    boot.store(&state)?;
    if let Some(slot) = good {
        crate::trust::personalize::consume_nonce(device, slot)?;
    }
    if let Some(slot) = tried {
        record_boot(device, slot, failure.as_ref(), journal)?;
    }
    let running = state.primary();
    let version = device
        .slot_info(running)?
        .map(|i| i.version.to_string())
        .unwrap_or_else(|| "unknown".into());
    let tried = tried.or_else(|| {
        // A trial that ran out of tries was abandoned by the bootloader itself.
        state
            .last_failure()
            .filter(|f| {
                f.code == ferry_boot::BOOT_TRIES_EXHAUSTED
                    && after.trial().is_none()
                    && state.trial().is_none()
            })
            .map(|f| f.slot)
    });
    Ok(RebootOutcome {
        running,
        version,
        tried,
        failure,
    })
}

/// What the booted system checks before it commits to `slot`: the slot's ticket
/// (present, signed by the pinned key, for this device, this nonce and this root hash),
/// the slot's seal (every block against the dm-verity tree and its root hash), then the
/// device's health checks.
pub fn boot_check(device: &Device, slot: Slot) -> Result<(), AgentError> {
    let info = device
        .slot_info(slot)?
        .ok_or_else(|| AgentError::SlotVerifyFailed {
            slot: slot.to_string(),
            version: "unknown".into(),
            reason: "the slot has no metadata".into(),
        })?;
    crate::trust::personalize::check_ticket(device, slot, &info)?;
    match &info.seal {
        Some(seal) => crate::install::seal::verify(
            &device.slot_path(slot),
            info.image_size,
            seal,
            &device.dir,
        )?,
        None => verify_by_manifest(device, slot, &info)?,
    }
    crate::boot::health::run_checks(
        &device.config.health_checks,
        &slot.to_string(),
        info.version.as_str(),
        &device.dir,
    )
}

/// Slots written before seals existed: check them frame by frame.
fn verify_by_manifest(
    device: &Device,
    slot: Slot,
    info: &crate::device::SlotInfo,
) -> Result<(), AgentError> {
    let manifest_path = device.layout().slot_manifest(slot);
    let bytes = std::fs::read(&manifest_path)
        .map_err(AgentError::io("reading the slot manifest", &manifest_path))?;
    let manifest = Manifest::from_json(&bytes)?;
    if manifest.image_sha256 != info.image_sha256 || manifest.image_size != info.image_size {
        return Err(AgentError::SlotVerifyFailed {
            slot: slot.to_string(),
            version: info.version.to_string(),
            reason: "the manifest stored beside the slot is for another image".into(),
        });
    }
    download::verify_slot(&device.slot_path(slot), &manifest, &|_| {})
}

/// Moves the slot's `update[uuid]` machine on: Booted (committed) or BootFailed.
fn record_boot(
    device: &Device,
    slot: Slot,
    failure: Option<&ferry_types::Report>,
    journal: Option<&mut crate::journal::Journal>,
) -> Result<(), AgentError> {
    let Some(info) = device.slot_info(slot)? else {
        return Ok(());
    };
    let Some(update_id) = device
        .receipts()?
        .into_iter()
        .find(|r| r.file_name() == info.receipt)
        .and_then(|r| r.update_id)
    else {
        return Ok(());
    };
    let mut opened = None;
    let journal = match journal {
        Some(journal) => journal,
        None => opened.insert(crate::journal::Journal::open(device)?),
    };
    let mut update: Instance<update::Names> = journal.instance(&update_id.to_string(), false)?;
    if !update.is_in(update::State::STAGED) {
        return Ok(());
    }
    let recorded = match failure {
        None => update.fire(update::Event::Booted, serde_json::json!({ "slot": slot })),
        Some(report) => update.fire(
            update::Event::BootFailed,
            serde_json::json!({ "slot": slot, "error": report }),
        ),
    };
    if let Err(e) = &recorded {
        let _ = update.fire(
            update::Event::Fail,
            serde_json::json!({ "error": e.report() }),
        );
    }
    recorded.map(|_| ())
}
