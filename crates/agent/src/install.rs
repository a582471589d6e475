//! `ferry list` and `ferry install`. An install is the `controller[uuid]` machine run
//! as a table: each action below returns the event that moves the machine on, the
//! engine makes the new state durable before the action runs, and after a crash the
//! controller resumes through LOADING_PERSISTED, which re-derives where to continue
//! from durable device state.
//!
//! Order of durable effects, so a crash between any two leaves a bootable device and
//! a resumable install:
//! 1. the target (inactive) slot is invalidated in boot control and its metadata
//!    removed — the running slot is never touched;
//! 2. frames are written and, about once a second, the slot synced and the count of
//!    frames done recorded in `cache/install.json` (and the journal);
//! 3. the seal is finished and its root hash checked (frames written by an earlier,
//!    interrupted run are re-read and re-verified, never re-downloaded);
//! 4. receipt, slot metadata, then boot control: the slot boots next with N tries.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use ferry_boot::Slot;
use ferry_fsm::Instance;
use ferry_payload::Manifest;
use ferry_types::{Diagnose, Sha256, Version};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::device::{CACHE_DIR, Device, Receipt, SLOTS_DIR, SlotInfo};
use crate::journal::{Journal, fire, machine};
use crate::machines::{CONTROLLER, DOWNLOADER, UPDATE};
use crate::offer::{self, Offer};
use crate::progress::{self, Phase, ProgressSink};
use crate::seal::{LeafStore, SlotSeal};
use crate::{AgentError, catalog, download, durable};

#[path = "install_attempts.rs"]
mod attempts;

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
    /// `delta` or `chunks` once a tailored delta or chunk reuse has written the slot,
    /// else `full`.
    #[serde(default = "full")]
    pub payload_kind: String,
    /// Bytes of the running slot the delta or chunk reuse reused.
    #[serde(default)]
    pub bytes_reused: u64,
    /// Why the tailored delta or chunk reuse was abandoned, if it was: the install then
    /// uses the next payload (chunks, then full), and says so.
    #[serde(default)]
    pub fallback: Option<ferry_types::Report>,
    /// Which payload the fallback left (`delta` or `chunks`).
    #[serde(default)]
    pub fallback_from: Option<String>,
    /// The chunk-reuse attempt, once begun: batches done, bytes, whether abandoned.
    #[serde(default)]
    pub chunks: Option<crate::chunks::ChunkProgress>,
}

impl InstallProgress {
    /// Whether a chunk-reuse attempt is under way (begun, not finished, not abandoned):
    /// the slot then holds nothing of the full payload's frames to resume from.
    fn chunks_in_progress(&self) -> bool {
        self.frames_done == 0 && self.chunks.as_ref().is_some_and(|c| !c.abandoned)
    }
}

fn full() -> String {
    "full".into()
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
    /// The payload that wrote the slot: `full`, `delta` or `chunks`.
    pub payload_kind: String,
    /// Bytes of the running slot reused (delta or chunk reuse).
    pub bytes_reused: u64,
    /// Chunk-reuse batch the download resumed from (0: a fresh start).
    pub resumed_from_batch: usize,
    /// Image size.
    pub image_size: u64,
    /// Seconds downloading (decode and write included).
    pub download_secs: f64,
    /// Seconds finishing the seal and verifying.
    pub verify_secs: f64,
    /// Receipt file.
    pub receipt: String,
    /// Warnings met on the way (a torn journal tail, a corrupt state file), with codes.
    pub warnings: Vec<ferry_types::Report>,
}

/// The offers for this device (a journaled scan).
pub async fn list(device: &Device) -> Result<Vec<Offer>, AgentError> {
    let mut journal = Journal::open(device)?;
    Ok(crate::scan::scan(device, &mut journal).await?.offers)
}

/// Every full image for the device's class and audience (`list-full`), from a fresh scan.
pub async fn list_full(device: &Device) -> Result<Vec<Offer>, AgentError> {
    let catalog = catalog::refresh(device).await?;
    let n_offers = offer::offers(
        catalog.releases(),
        |name| catalog.target(name),
        device.identity.device_class.as_str(),
        &device.config.audience,
        &device.running_version()?,
    )
    .len();
    catalog::record(device, Ok(n_offers));
    Ok(offer::full_images(
        catalog.releases(),
        |name| catalog.target(name),
        device.identity.device_class.as_str(),
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
    let mut journal = Journal::open(device)?;
    let offers = crate::scan::scan(device, &mut journal).await?.offers;
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
    let id = update_id(device, &offer.release.build_id);
    let id_text = id.to_string();
    let mut update = journal.instance(machine(&UPDATE)?, &id_text, true)?;
    if let Err(e) = fire(
        &mut update,
        "Install",
        json!({ "label": offer.label, "version": offer.version }),
    ) {
        let _ = fire(&mut update, "Fail", json!({ "error": e.report() }));
        return Err(e);
    }
    let mut controller = journal.instance(machine(&CONTROLLER)?, &id_text, true)?;
    let mut run = Run::new(device, &offer, id, sink);
    match run.drive(&mut journal, &mut controller).await {
        Ok(()) => {
            fire(
                &mut update,
                "Installed",
                json!({ "slot": run.target, "receipt": run.receipt }),
            )?;
            let mut outcome = run.outcome()?;
            outcome.warnings = journal.warnings.clone();
            Ok(Some(outcome))
        }
        Err(e) => {
            let report = e.report();
            // Record the failure; if even that fails, the original error matters more.
            let _ = fire(&mut controller, "Fail", json!({ "error": report }));
            let _ = fire(&mut update, "Fail", json!({ "error": report }));
            Err(e)
        }
    }
}

/// One install run: what the controller's actions share.
struct Run<'a> {
    device: &'a Device,
    offer: &'a Offer,
    id: uuid::Uuid,
    sink: &'a dyn ProgressSink,
    target: Slot,
    manifest: Option<(Arc<Manifest>, Vec<u8>)>,
    record: Option<InstallProgress>,
    leaves: Option<Arc<LeafStore>>,
    seal: Option<SlotSeal>,
    bytes_downloaded: u64,
    start_frame: usize,
    start_batch: usize,
    download_secs: f64,
    verify_secs: f64,
    receipt: String,
}

impl<'a> Run<'a> {
    fn new(
        device: &'a Device,
        offer: &'a Offer,
        id: uuid::Uuid,
        sink: &'a dyn ProgressSink,
    ) -> Run<'a> {
        Run {
            device,
            offer,
            id,
            sink,
            target: Slot::B,
            manifest: None,
            record: None,
            leaves: None,
            seal: None,
            bytes_downloaded: 0,
            start_frame: 0,
            start_batch: 0,
            download_secs: 0.0,
            verify_secs: 0.0,
            receipt: String::new(),
        }
    }

    fn progress_path(&self) -> PathBuf {
        self.device.dir.join(CACHE_DIR).join("install.json")
    }

    fn spool_dir(&self) -> PathBuf {
        self.device.dir.join(crate::spool::SPOOL_DIR)
    }

    /// Runs the controller's table to COMPLETED: fire, run the action, fire what it
    /// returns. A fresh or failed controller starts; any other state resumes.
    async fn drive(&mut self, journal: &mut Journal, ctl: &mut Instance) -> Result<(), AgentError> {
        let mut event = if matches!(ctl.state(), "ACCEPTED" | "FAILED") {
            "Start"
        } else {
            "Resume"
        };
        let mut data = json!({ "update": self.id, "version": self.offer.version });
        loop {
            let action = fire(ctl, event, data)?;
            self.sink.report(&progress::mark(
                state_name(ctl.state()),
                action_text(action),
            ));
            (event, data) = match action {
                "StartUp" => ("Started", json!({})),
                "LoadPersisted" => self.load_persisted().await?,
                "Ready" => ("Go", json!({})),
                "Personalize" => self.personalize().await?,
                "Download" => self.download(journal).await?,
                "MarkDownloaded" => ("Go", json!({})),
                "Prepare" => self.prepare()?,
                "Apply" => self.apply()?,
                "Complete" => {
                    ctl.complete_action()?;
                    return Ok(());
                }
                other => {
                    return Err(AgentError::NoAction {
                        action: other.to_owned(),
                    });
                }
            };
        }
    }

    /// LOADING_PERSISTED: where to continue, from durable device state only.
    async fn load_persisted(&mut self) -> Result<(&'static str, serde_json::Value), AgentError> {
        let release = &self.offer.release;
        let boot = self.device.boot_control();
        let state = boot.load()?;
        self.target = !state.primary();
        let capacity = self.device.config.slots.capacity;
        if release.image_size > capacity {
            return Err(AgentError::SlotTooSmall {
                slot: self.target.to_string(),
                needed: release.image_size,
                capacity,
            });
        }
        let client = self.device.client()?;
        let manifest_bytes = client
            .artifact(&release.manifest, "the payload manifest")
            .await?;
        let manifest = Manifest::from_json(&manifest_bytes)?;
        check_manifest(&manifest, self.offer)?;
        let manifest = Arc::new(manifest);
        self.manifest = Some((manifest.clone(), manifest_bytes.to_vec()));

        // Already applied (a crash after boot control was told): finish the bookkeeping.
        let staged = self.device.slot_info(self.target)?;
        if state.trial().is_some_and(|t| t.slot == self.target)
            && staged.as_ref().is_some_and(|i| {
                i.version == release.version && i.image_sha256 == release.image_sha256
            })
        {
            self.receipt = staged.map(|i| i.receipt).unwrap_or_default();
            durable::remove(&self.progress_path()).map_err(AgentError::io(
                "removing install progress",
                self.progress_path(),
            ))?;
            return Ok(("AlreadyStaged", json!({ "slot": self.target })));
        }

        let path = self.progress_path();
        let resumable = crate::device::read_json::<InstallProgress>(&path)
            .ok()
            .filter(|p| {
                p.manifest_sha256 == release.manifest.sha256
                    && p.slot == self.target
                    && p.frames_done <= manifest.frames.len()
            });
        let target_bootable =
            state.is_good(self.target) || state.trial().is_some_and(|t| t.slot == self.target);
        if let Some(mut record) = resumable.filter(|_| !target_bootable) {
            // Frames written after the last checkpoint are still in the slot: re-verify
            // them instead of downloading them again.
            // Frames that had arrived but were not yet written come from the spool.
            // (A chunk-reuse attempt resumes by its batches: the slot is written last.)
            let slot = self.device.slot_path(self.target);
            let spool = self.spool_dir();
            let found = if record.chunks_in_progress() {
                crate::spool::Recovered {
                    frames_done: record.frames_done,
                    ..Default::default()
                }
            } else {
                crate::spool::recover(&spool, &slot, &manifest, record.frames_done)?
            };
            record.frames_done = found.frames_done;
            durable::write_json(&path, &record)
                .map_err(AgentError::io("writing install progress", &path))?;
            crate::spool::clear(&spool).map_err(AgentError::io("clearing the spool", &spool))?;
            self.record = Some(record);
            return Ok((
                "Resumable",
                json!({
                    "frames_done": found.frames_done,
                    "from_spool": found.from_spool,
                    "frames": manifest.frames.len(),
                }),
            ));
        }
        // A fresh start: make sure nothing boots the slot about to be overwritten.
        if target_bootable {
            boot.store(&state.invalidate(self.target)?)?;
        }
        self.device.set_slot_info(self.target, None)?;
        let fresh = InstallProgress {
            update_id: self.id,
            version: release.version.clone(),
            manifest_sha256: release.manifest.sha256,
            slot: self.target,
            frames_done: 0,
            bytes_downloaded: 0,
            payload_kind: full(),
            bytes_reused: 0,
            fallback: None,
            fallback_from: None,
            chunks: None,
        };
        durable::write_json(&path, &fresh)
            .map_err(AgentError::io("writing install progress", &path))?;
        self.record = Some(fresh);
        Ok(("Fresh", json!({ "slot": self.target })))
    }

    /// PREFLIGHT_PERSONALIZE: a ticket for this device, a fresh nonce (stored before the
    /// request) and the release's seal root hash, stored beside the target slot
    /// (`boot/ticket-<slot>.json`) before anything is downloaded, so a refusal costs
    /// nothing and Apply finds the ticket in place.
    async fn personalize(&mut self) -> Result<(&'static str, serde_json::Value), AgentError> {
        let (manifest, _) = self
            .manifest
            .clone()
            .ok_or_else(|| missing("the manifest"))?;
        let release = &self.offer.release;
        let seal = manifest
            .seal
            .as_ref()
            .ok_or_else(|| AgentError::ServerInvalid {
                url: release.manifest.url.clone(),
                reason: "the release is not sealed, so it cannot be personalized".into(),
            })?;
        let client = self.device.client()?;
        let (ticket, nonce) = crate::personalize::request_ticket(
            self.device,
            &client,
            &release.build_id,
            crate::personalize::components(&seal.root_hash),
        )
        .await?;
        let path = crate::personalize::ticket_path(self.device, self.target);
        durable::write_atomic(&path, &ticket.to_json())
            .map_err(AgentError::io("storing the ticket", &path))?;
        Ok((
            "Personalized",
            json!({
                "build_id": release.build_id,
                "nonce_sha256": nonce.sha256().to_string(),
                "key_id": ticket.key_id.to_string(),
                "ticket": path.strip_prefix(&self.device.dir).unwrap_or(&path),
            }),
        ))
    }

    /// DOWNLOADING_UPDATE, 16% → 54% by payload bytes, through `downloader[uuid]`.
    async fn download(
        &mut self,
        journal: &mut Journal,
    ) -> Result<(&'static str, serde_json::Value), AgentError> {
        let (manifest, _) = self
            .manifest
            .clone()
            .ok_or_else(|| missing("the manifest"))?;
        let record = self
            .record
            .clone()
            .ok_or_else(|| missing("the install progress"))?;
        self.start_frame = record.frames_done;
        let mut downloader = journal.instance(machine(&DOWNLOADER)?, &self.id.to_string(), true)?;
        let result = self.download_with(&mut downloader, manifest, record).await;
        if let Err(e) = &result {
            let _ = fire(&mut downloader, "Fail", json!({ "error": e.report() }));
        }
        result
    }

    /// The download itself; any error it returns is recorded as the downloader's Fail.
    async fn download_with(
        &mut self,
        downloader: &mut Instance,
        manifest: Arc<Manifest>,
        mut record: InstallProgress,
    ) -> Result<(&'static str, serde_json::Value), AgentError> {
        let release = &self.offer.release;
        let client = self.device.client()?;
        let slot_path = self.device.slot_path(self.target);
        let path = self.progress_path();
        let start_offset = manifest
            .frames
            .get(self.start_frame)
            .map_or(manifest.payload_size, |f| f.offset);

        // A tailored delta first, then chunk reuse, then the full payload: each failure
        // that is not the network's falls back to the next, recorded.
        if let Some(done) = self
            .try_delta(downloader, &mut record, &manifest, &client)
            .await?
        {
            return Ok(done);
        }
        if let Some(done) = self
            .try_chunks(downloader, &mut record, &manifest, &client)
            .await?
        {
            return Ok(done);
        }

        fire(
            downloader,
            "Begin",
            json!({ "from_frame": self.start_frame, "offset": start_offset }),
        )?;

        let mut phase = Phase::new(
            "DOWNLOADING_UPDATE",
            "Downloading update…",
            manifest.payload_size,
            start_offset,
        );
        if let Some(p) = phase.at(start_offset, true) {
            self.sink.report(&p);
        }
        let base_downloaded = record.bytes_downloaded;
        let received = std::sync::atomic::AtomicU64::new(0);
        let mut checkpoint = |frames_done: usize| -> Result<(), AgentError> {
            record.frames_done = frames_done;
            record.bytes_downloaded =
                base_downloaded + received.load(std::sync::atomic::Ordering::Relaxed);
            durable::write_json(&path, &record)
                .map_err(AgentError::io("writing install progress", &path))?;
            fire(
                downloader,
                "Checkpoint",
                json!({ "frames_done": frames_done, "bytes": record.bytes_downloaded }),
            )?;
            Ok(())
        };
        let sink = self.sink;
        let mut on_bytes = |offset: u64| {
            received.store(offset - start_offset, std::sync::atomic::Ordering::Relaxed);
            crate::journal::bytes_received(offset - start_offset);
            if let Some(p) = phase.at(offset, false) {
                sink.report(&p);
            }
        };
        self.leaves = LeafStore::new(&manifest).map(Arc::new);
        let stats = download::stream_into_slot(
            &client,
            &release.payload.url,
            manifest.clone(),
            self.leaves.clone(),
            &slot_path,
            &self.spool_dir(),
            self.start_frame,
            &mut checkpoint,
            &mut on_bytes,
        )
        .await?;
        self.bytes_downloaded = stats.bytes_downloaded;
        self.download_secs = stats.elapsed.as_secs_f64();
        let mut done: InstallProgress = crate::device::read_json(&path)?;
        done.bytes_downloaded = base_downloaded + stats.bytes_downloaded;
        durable::write_json(&path, &done)
            .map_err(AgentError::io("writing install progress", &path))?;
        self.record = Some(done);
        fire(
            downloader,
            "Done",
            json!({ "bytes": stats.bytes_downloaded, "secs": self.download_secs }),
        )?;
        Ok(("Downloaded", json!({ "bytes": stats.bytes_downloaded })))
    }

    /// PREPARING_UPDATE, 60% → 99%: finish the seal (or re-check every frame of an
    /// unsealed release) and compare the root hash with the release's.
    fn prepare(&mut self) -> Result<(&'static str, serde_json::Value), AgentError> {
        let (manifest, _) = self
            .manifest
            .clone()
            .ok_or_else(|| missing("the manifest"))?;
        let slot_path = self.device.slot_path(self.target);
        let started = Instant::now();
        let phase = std::sync::Mutex::new(Phase::new(
            "PREPARING_UPDATE",
            "Verifying system image…",
            manifest.image_size,
            0,
        ));
        let sink = self.sink;
        let report = |done: u64, total: u64| {
            if let Ok(mut ph) = phase.lock()
                && let Some(p) = ph.at(done * manifest.image_size / total.max(1), false)
            {
                sink.report(&p);
            }
        };
        let tree_rel = PathBuf::from(SLOTS_DIR).join(format!("{}.verity", self.target));
        // A store filled by this run's download, or an empty one (every frame re-read).
        let leaves = self
            .leaves
            .take()
            .and_then(Arc::into_inner)
            .or_else(|| LeafStore::new(&manifest));
        self.seal = match leaves {
            Some(leaves) => {
                let seal = leaves.finish(
                    &slot_path,
                    &manifest,
                    &self.device.dir.join(&tree_rel),
                    &report,
                )?;
                Some(SlotSeal {
                    tree: tree_rel,
                    ..seal
                })
            }
            None => {
                download::verify_slot(&slot_path, &manifest, &|v| report(v, manifest.image_size))?;
                None
            }
        };
        self.verify_secs = started.elapsed().as_secs_f64();
        Ok((
            "Sealed",
            json!({ "root_hash": self.seal.as_ref().map(|s| s.root_hash.to_string()) }),
        ))
    }

    /// PREPARED: receipt, slot metadata, then boot control.
    fn apply(&mut self) -> Result<(&'static str, serde_json::Value), AgentError> {
        let (manifest, manifest_bytes) = self
            .manifest
            .clone()
            .ok_or_else(|| missing("the manifest"))?;
        let release = &self.offer.release;
        let record = self
            .record
            .clone()
            .ok_or_else(|| missing("the install progress"))?;
        let now = Utc::now();
        let from_version = self.device.running_version()?;
        // A crash after the receipt was written must not leave two receipts.
        let existing = self
            .device
            .receipts()?
            .into_iter()
            .find(|r| r.update_id == Some(self.id) && r.slot == self.target);
        self.receipt = match existing {
            Some(r) => r.file_name(),
            None => self.device.write_receipt(&Receipt {
                component: "system".into(),
                version: release.version.clone(),
                build_id: release.build_id.clone(),
                slot: self.target,
                image_sha256: manifest.image_sha256,
                image_size: manifest.image_size,
                payload_kind: record.payload_kind.clone(),
                payload_sha256: manifest.payload_sha256,
                payload_size: manifest.payload_size,
                bytes_downloaded: record.bytes_downloaded,
                bytes_reused: record.bytes_reused,
                fallback: record.fallback.clone(),
                fallback_from: record.fallback_from.clone(),
                installed_at: now,
                from_version: Some(from_version),
                update_id: Some(self.id),
            })?,
        };
        let manifest_path = self
            .device
            .dir
            .join(SLOTS_DIR)
            .join(format!("{}.manifest.json", self.target));
        durable::write_atomic(&manifest_path, &manifest_bytes)
            .map_err(AgentError::io("storing the manifest", &manifest_path))?;
        self.device.set_slot_info(
            self.target,
            Some(&SlotInfo {
                version: release.version.clone(),
                build_id: release.build_id.clone(),
                image_size: manifest.image_size,
                image_sha256: manifest.image_sha256,
                installed_at: now,
                receipt: self.receipt.clone(),
                seal: self.seal.clone(),
            }),
        )?;
        let boot = self.device.boot_control();
        let state = boot.load()?;
        boot.store(&state.set_trial(self.target, self.device.config.boot_tries)?)?;
        let path = self.progress_path();
        durable::remove(&path).map_err(AgentError::io("removing install progress", &path))?;
        self.sink.report(&progress::mark(
            "COMPLETED",
            "Update installed: restart to use it",
        ));
        Ok((
            "Applied",
            json!({ "slot": self.target, "receipt": self.receipt }),
        ))
    }

    fn outcome(&self) -> Result<InstallOutcome, AgentError> {
        let (manifest, _) = self
            .manifest
            .clone()
            .ok_or_else(|| missing("the manifest"))?;
        Ok(InstallOutcome {
            update_id: self.id,
            version: self.offer.release.version.clone(),
            slot: self.target,
            bytes_downloaded: self.bytes_downloaded,
            resumed_from_frame: self.start_frame,
            payload_kind: self
                .record
                .as_ref()
                .map_or_else(full, |r| r.payload_kind.clone()),
            bytes_reused: self.record.as_ref().map_or(0, |r| r.bytes_reused),
            resumed_from_batch: self.start_batch,
            image_size: manifest.image_size,
            download_secs: self.download_secs,
            verify_secs: self.verify_secs,
            receipt: self.receipt.clone(),
            warnings: Vec::new(),
        })
    }
}

fn missing(needs: &'static str) -> AgentError {
    AgentError::StepOutOfOrder { needs }
}

/// The checkpoint name a controller state reports (FAILED has none: keep the last).
fn state_name(state: &'static str) -> &'static str {
    if progress::CHECKPOINTS.iter().any(|(_, s)| *s == state) {
        state
    } else {
        "READY"
    }
}

fn action_text(action: &str) -> &'static str {
    match action {
        "StartUp" => "Starting",
        "LoadPersisted" => "Loading saved state",
        "Ready" => "Ready to download",
        "Personalize" => "Personalizing update…",
        "Download" => "Downloading update…",
        "MarkDownloaded" => "Downloaded",
        "Prepare" => "Verifying system image…",
        "Apply" => "Applying update…",
        "Complete" => "Update installed: restart to use it",
        _ => "Working…",
    }
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
