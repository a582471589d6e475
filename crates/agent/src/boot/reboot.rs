//! `ferry reboot` (what the bootloader does) and `ferry boot-check` (what the booted
//! system does before it commits to the new slot).

use chrono::Utc;
use ferry_boot::{BootControl, BootState, Slot};
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
    /// The committed slot that failed its check at this boot, when the device fell back
    /// from it to the other slot.
    pub fell_back: Option<FallBack>,
}

/// A committed slot that failed its check at boot (its bytes changed since it was
/// written: a disk fault or tampering, what dm-verity refuses on a real device); the
/// device fell back to the other slot, which is good and verified.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct FallBack {
    /// The slot abandoned; no longer good, so the next install rewrites it.
    pub from: Slot,
    /// Why, with its code.
    pub failure: ferry_types::Report,
}

/// Simulates a restart: the bootloader picks a slot (a trial slot spends one try),
/// then the booted system checks it ([`boot_check`]); a slot that fails is abandoned
/// and the device runs the previous one again. A committed slot is checked too, every
/// block against its seal, as dm-verity reads it on a real device ([`boot_primary`]): one
/// whose bytes changed is abandoned for the other slot when that one is good, and when
/// neither can boot the reboot stops with `BOOT_REFLASH_REQUIRED`.
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
    mut journal: Option<&mut crate::journal::Journal>,
) -> Result<RebootOutcome, AgentError> {
    let boot = device.boot_control();
    let state = boot.load()?;
    let (booted, after) = state.select_for_boot(Utc::now());
    boot.store(&after)?;
    // A trial with no tries left: the bootloader abandoned it and booted the old slot.
    if let Some(trial) = state.trial().filter(|t| t.tries_left == 0) {
        let message = after
            .last_failure()
            .map(|f| f.message.clone())
            .unwrap_or_default();
        record_boot(
            device,
            trial.slot,
            Some(&ferry_types::Report {
                code: ferry_boot::BOOT_TRIES_EXHAUSTED.into(),
                cause: message,
                fix: "Install the update again or a newer one once its cause is found (the device runs its previous version: the new one never reached its boot check)".into(),
            }),
            journal.as_deref_mut(),
        )?;
    }
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
            fell_back: None,
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
    // A slot just committed was verified whole by its boot check; any other boot is of
    // the primary, checked now.
    let (state, fell_back) = if good.is_some() {
        (state, None)
    } else {
        boot_primary(device, boot.as_ref(), state)?
    };
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
        fell_back,
    })
}

/// The bootloader boots the primary, whose blocks are checked against its seal as they are
/// read (dm-verity; here all of them, as `boot-check` does). A primary that fails falls
/// back to the other slot if that one is good and passes the same check, recorded in boot
/// control (the failed slot is no longer good); if neither can boot, the reboot stops with
/// `BOOT_REFLASH_REQUIRED` and boot control is left as it was.
fn boot_primary(
    device: &Device,
    boot: &dyn BootControl,
    state: BootState,
) -> Result<(BootState, Option<FallBack>), AgentError> {
    let primary = state.primary();
    let Err(error) = verify_seal(device, primary) else {
        return Ok((state, None));
    };
    let failure = error.report();
    tracing::warn!(slot = %primary, code = failure.code, "the committed slot failed its check at boot");
    let other = !primary;
    let other_verified = if state.is_good(other) {
        verify_seal(device, other)
    } else {
        Err(AgentError::SlotVerifyFailed {
            slot: other.to_string(),
            version: slot_version(device, other),
            reason: "it is not a good slot (being written, abandoned or never installed)".into(),
        })
    };
    if let Err(other_error) = other_verified {
        return Err(AgentError::NoBootableSlot {
            slot: primary.to_string(),
            reason: failure.cause,
            other: other.to_string(),
            other_reason: other_error.to_string(),
        });
    }
    let fallen = state.fall_back(&failure.code, &failure.cause, Utc::now())?;
    boot.store(&fallen)?;
    Ok((
        fallen,
        Some(FallBack {
            from: primary,
            failure,
        }),
    ))
}

/// Checks every block of `slot` against its seal (slots written before seals existed:
/// frame by frame against their manifest). No ticket and no health checks: what a boot
/// enforces on a slot already committed.
fn verify_seal(device: &Device, slot: Slot) -> Result<(), AgentError> {
    let info = slot_info(device, slot)?;
    match &info.seal {
        Some(seal) => crate::install::seal::verify(
            &device.slot_path(slot),
            info.image_size,
            seal,
            &device.dir,
        ),
        None => verify_by_manifest(device, slot, &info),
    }
}

/// The metadata of `slot`, which a slot that boots must have.
fn slot_info(device: &Device, slot: Slot) -> Result<crate::device::SlotInfo, AgentError> {
    device
        .slot_info(slot)?
        .ok_or_else(|| AgentError::SlotVerifyFailed {
            slot: slot.to_string(),
            version: "unknown".into(),
            reason: "the slot has no metadata".into(),
        })
}

fn slot_version(device: &Device, slot: Slot) -> String {
    device
        .slot_info(slot)
        .ok()
        .flatten()
        .map_or_else(|| "unknown".into(), |info| info.version.to_string())
}

/// What the booted system checks before it commits to `slot`: the slot's ticket
/// (present, signed by the pinned key, for this device, this nonce and this root hash),
/// the slot's seal (every block against the dm-verity tree and its root hash), then the
/// device's health checks.
pub fn boot_check(device: &Device, slot: Slot) -> Result<(), AgentError> {
    let info = slot_info(device, slot)?;
    crate::trust::personalize::check_ticket(device, slot, &info)?;
    verify_seal(device, slot)?;
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

/// Moves the slot's `update[uuid]` machine on: Booted (committed) or BootFailed (the
/// booted system refused the slot, or the bootloader ran out of tries); its event report
/// follows from the transition. A commit starts the post-commit health watch when
/// `config.toml` asks for one ([`crate::boot::watch::begin`]).
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
        None => update.fire(
            update::Event::Booted,
            serde_json::json!({ "slot": slot, "receipt": info.receipt }),
        ),
        Some(report) => update.fire(
            update::Event::BootFailed,
            serde_json::json!({ "slot": slot, "receipt": info.receipt, "error": report }),
        ),
    };
    if let Err(e) = &recorded {
        let _ = update.fire(
            update::Event::Fail,
            serde_json::json!({ "error": e.report() }),
        );
    }
    recorded?;
    if failure.is_none() {
        crate::boot::watch::begin(
            device,
            journal,
            update_id,
            &info.version,
            slot,
            &info.receipt,
        )?;
    }
    Ok(())
}
