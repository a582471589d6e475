//! `ferry list` and `ferry install`: pick the offer, then download, verify and apply.
//!
//! Order of durable effects, so that a crash between any two leaves a bootable device
//! and a resumable install:
//! 1. the target (inactive) slot is invalidated in boot control and its metadata
//!    removed — the running slot is never touched;
//! 2. frames are written and, once a second, the slot synced and the count of frames
//!    done recorded in `cache/install.json`;
//! 3. the whole slot is verified against the manifest;
//! 4. receipt, slot metadata, then boot control: the slot boots next with N tries.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use ferry_boot::Slot;
use ferry_payload::Manifest;
use ferry_types::{Sha256, Version};
use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::device::{CACHE_DIR, Device, Receipt, SlotInfo};
use crate::offer::{self, Offer};
use crate::progress::{self, Phase, ProgressSink};
use crate::{AgentError, download, durable, scan};

/// Namespace of update UUIDs (v5 of device id and build id).
pub const UPDATE_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x6b9f_0a3c_1d2e_4f50_8a6b_7c8d_9e0f_1a2b);

/// The update's UUID: the same device installing the same build always gets the same one.
pub fn update_id(device: &Device, build_id: &str) -> uuid::Uuid {
    uuid::Uuid::new_v5(
        &UPDATE_NAMESPACE,
        format!("{}/{build_id}", device.identity.device_id).as_bytes(),
    )
}

/// The resume record of an install in progress (`cache/install.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InstallProgress {
    /// Update UUID.
    pub update_id: uuid::Uuid,
    /// Version being installed.
    pub version: Version,
    /// Digest of the manifest being followed.
    pub manifest_sha256: Sha256,
    /// Slot being written.
    pub slot: Slot,
    /// Frames written and synced, in order.
    pub frames_done: usize,
    /// Payload bytes fetched so far, over all attempts.
    pub bytes_downloaded: u64,
}

/// What an install did.
#[derive(Debug, Clone, Serialize)]
pub struct InstallOutcome {
    /// Update UUID.
    pub update_id: uuid::Uuid,
    /// Version installed.
    pub version: Version,
    /// Slot it went into (boots next).
    pub slot: Slot,
    /// Payload bytes fetched in this run.
    pub bytes_downloaded: u64,
    /// Frame the download resumed from (0: a fresh start).
    pub resumed_from_frame: usize,
    /// Image size.
    pub image_size: u64,
    /// Seconds downloading (decode and write included).
    pub download_secs: f64,
    /// Seconds verifying the written slot.
    pub verify_secs: f64,
    /// Receipt file.
    pub receipt: String,
}

/// Scans (refreshes the signed catalog: a scan the user asked for always runs, see
/// [`scan::scan_due`]) and returns the offer for this device, recording the scan.
pub async fn list(device: &Device) -> Result<Vec<Offer>, AgentError> {
    let catalog = scan::refresh(device).await?;
    let offers = offer::offers(
        catalog.releases(),
        |name| catalog.target(name),
        &device.identity.device_class,
        &device.config.audience,
        &device.running_version()?,
    );
    scan::record(device, Ok(offers.len()));
    Ok(offers)
}

/// Every full image for the device's class and audience (`list-full`), from a fresh scan.
pub async fn list_full(device: &Device) -> Result<Vec<Offer>, AgentError> {
    let catalog = scan::refresh(device).await?;
    let n_offers = offer::offers(
        catalog.releases(),
        |name| catalog.target(name),
        &device.identity.device_class,
        &device.config.audience,
        &device.running_version()?,
    )
    .len();
    scan::record(device, Ok(n_offers));
    Ok(offer::full_images(
        catalog.releases(),
        |name| catalog.target(name),
        &device.identity.device_class,
        &device.config.audience,
    ))
}

/// Installs the offer labelled `label`, or the recommended one when `label` is `None`.
/// `Ok(None)`: nothing to install.
pub async fn install(
    device: &Device,
    label: Option<&str>,
    sink: &dyn ProgressSink,
) -> Result<Option<InstallOutcome>, AgentError> {
    sink.report(&progress::mark("ACCEPTED", "Accepted"));
    sink.report(&progress::mark("STARTUP", "Starting"));
    let offers = list(device).await?;
    let chosen = match label {
        None => offers.iter().find(|o| o.recommended).cloned(),
        Some(l) => Some(
            offers
                .iter()
                .find(|o| o.label == l)
                .cloned()
                .ok_or_else(|| AgentError::NoSuchLabel {
                    label: l.to_owned(),
                    available: offers.iter().map(|o| o.label.clone()).collect(),
                })?,
        ),
    };
    let Some(offer) = chosen else { return Ok(None) };
    install_offer(device, &offer, sink).await.map(Some)
}

async fn install_offer(
    device: &Device,
    offer: &Offer,
    sink: &dyn ProgressSink,
) -> Result<InstallOutcome, AgentError> {
    let release = &offer.release;
    let client = Client::new(&device.config.server)?;
    let boot = device.boot_control();
    let state = boot.load()?;
    let running = state.primary();
    let target = !running;
    let from_version = device.running_version()?;
    let capacity = device.config.slots.capacity;
    if release.image_size > capacity {
        return Err(AgentError::SlotTooSmall {
            slot: target.to_string(),
            needed: release.image_size,
            capacity,
        });
    }
    let update_id = update_id(device, &release.build_id);

    sink.report(&progress::mark("LOADING_PERSISTED", "Loading saved state"));
    let manifest_bytes = client
        .artifact(&release.manifest, "the payload manifest")
        .await?;
    let manifest = Manifest::from_json(&manifest_bytes)?;
    check_manifest(&manifest, offer)?;
    let manifest = Arc::new(manifest);

    let progress_path = device.dir.join(CACHE_DIR).join("install.json");
    let resumable = crate::device::read_json::<InstallProgress>(&progress_path)
        .ok()
        .filter(|p| {
            p.manifest_sha256 == release.manifest.sha256
                && p.slot == target
                && p.frames_done <= manifest.frames.len()
        });
    let mut record = match resumable {
        Some(p) if !state.is_good(target) && state.trial().is_none_or(|t| t.slot != target) => {
            tracing::info!(frames_done = p.frames_done, "resuming the install");
            p
        }
        _ => {
            // The target slot is about to be overwritten: make sure nothing boots it.
            if state.trial().is_some_and(|t| t.slot == target) || state.is_good(target) {
                boot.store(&state.invalidate(target)?)?;
            }
            device.set_slot_info(target, None)?;
            let fresh = InstallProgress {
                update_id,
                version: release.version.clone(),
                manifest_sha256: release.manifest.sha256,
                slot: target,
                frames_done: 0,
                bytes_downloaded: 0,
            };
            durable::write_json(&progress_path, &fresh)
                .map_err(AgentError::io("writing install progress", &progress_path))?;
            fresh
        }
    };
    sink.report(&progress::mark("READY", "Ready to download"));

    // Download: 16% → 54%, measured in payload bytes.
    let slot_path = device.slot_path(target);
    let start_frame = record.frames_done;
    let payload_size = manifest.payload_size;
    let start_offset = manifest
        .frames
        .get(start_frame)
        .map_or(payload_size, |f| f.offset);
    let mut phase = Phase::new(
        "DOWNLOADING_UPDATE",
        "Downloading update…",
        payload_size,
        start_offset,
    );
    if let Some(p) = phase.at(start_offset, true) {
        sink.report(&p);
    }
    let base_downloaded = record.bytes_downloaded;
    let mut checkpoint = |frames_done: usize| -> Result<(), AgentError> {
        record.frames_done = frames_done;
        durable::write_json(&progress_path, &record)
            .map_err(AgentError::io("writing install progress", &progress_path))
    };
    let mut on_bytes = |offset: u64| {
        if let Some(p) = phase.at(offset, false) {
            sink.report(&p);
        }
    };
    let result = download::stream_into_slot(
        &client,
        &release.payload.url,
        manifest.clone(),
        &slot_path,
        start_frame,
        &mut checkpoint,
        &mut on_bytes,
    )
    .await;
    let stats = match result {
        Ok(stats) => stats,
        Err(e) => return Err(e),
    };
    let mut record: InstallProgress = crate::device::read_json(&progress_path)?;
    record.bytes_downloaded = base_downloaded + stats.bytes_downloaded;
    durable::write_json(&progress_path, &record)
        .map_err(AgentError::io("writing install progress", &progress_path))?;
    sink.report(&progress::mark("DOWNLOADED_UPDATE", "Downloaded"));

    // Prepare: 60% → 99%, re-read every written byte and check it.
    let verify_started = Instant::now();
    let verify_phase = std::sync::Mutex::new(Phase::new(
        "PREPARING_UPDATE",
        "Verifying system image…",
        manifest.image_size,
        0,
    ));
    {
        let manifest = manifest.clone();
        let slot_path = slot_path.clone();
        let on_progress = |v: u64| {
            if let Ok(mut ph) = verify_phase.lock()
                && let Some(p) = ph.at(v, false)
            {
                sink.report(&p);
            }
        };
        download::verify_slot(&slot_path, &manifest, &on_progress)?;
    }
    let verify_secs = verify_started.elapsed().as_secs_f64();

    // Apply: receipt, slot metadata, manifest beside the slot, then boot control.
    let now = Utc::now();
    let receipt = Receipt {
        component: "system".into(),
        version: release.version.clone(),
        build_id: release.build_id.clone(),
        slot: target,
        image_sha256: manifest.image_sha256,
        image_size: manifest.image_size,
        payload_kind: release.kind.clone(),
        payload_sha256: manifest.payload_sha256,
        payload_size: manifest.payload_size,
        bytes_downloaded: record.bytes_downloaded,
        installed_at: now,
        from_version: Some(from_version),
        update_id: Some(update_id),
    };
    let receipt_name = device.write_receipt(&receipt)?;
    let manifest_path = device
        .dir
        .join(crate::device::SLOTS_DIR)
        .join(format!("{target}.manifest.json"));
    durable::write_atomic(&manifest_path, &manifest_bytes)
        .map_err(AgentError::io("storing the manifest", &manifest_path))?;
    device.set_slot_info(
        target,
        Some(&SlotInfo {
            version: release.version.clone(),
            build_id: release.build_id.clone(),
            image_size: manifest.image_size,
            image_sha256: manifest.image_sha256,
            installed_at: now,
            receipt: receipt_name.clone(),
        }),
    )?;
    let state = boot.load()?;
    boot.store(&state.set_trial(target, device.config.boot_tries)?)?;
    durable::remove(&progress_path)
        .map_err(AgentError::io("removing install progress", &progress_path))?;
    sink.report(&progress::mark("PREPARED", "Ready to restart"));
    sink.report(&progress::mark(
        "COMPLETED",
        "Update installed: restart to use it",
    ));

    Ok(InstallOutcome {
        update_id,
        version: release.version.clone(),
        slot: target,
        bytes_downloaded: stats.bytes_downloaded,
        resumed_from_frame: stats.start_frame,
        image_size: manifest.image_size,
        download_secs: stats.elapsed.as_secs_f64(),
        verify_secs,
        receipt: receipt_name,
    })
}

/// The manifest must describe exactly the release that was offered.
fn check_manifest(manifest: &Manifest, offer: &Offer) -> Result<(), AgentError> {
    let r = &offer.release;
    let mismatch = |what: &str| AgentError::ServerInvalid {
        url: r.manifest.url.clone(),
        reason: format!("the manifest's {what} does not match the release"),
    };
    if manifest.version != r.version {
        return Err(mismatch("version"));
    }
    if manifest.image_size != r.image_size || manifest.image_sha256 != r.image_sha256 {
        return Err(mismatch("image"));
    }
    if manifest.payload_size != r.payload.size || manifest.payload_sha256 != r.payload.sha256 {
        return Err(mismatch("payload"));
    }
    Ok(())
}
