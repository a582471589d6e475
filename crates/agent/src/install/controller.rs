//! The controller's executor: an install (or a download-only run) is the
//! `controller[uuid]` machine run as a table: each action below returns the event that
//! moves the machine on, the engine makes the new state durable before the action runs,
//! and after a crash the controller resumes through LOADING_PERSISTED, which re-derives
//! where to continue from durable device state. [`crate::install::update`] starts runs.
//!
//! Order of durable effects, so a crash between any two leaves a bootable device and
//! a resumable install:
//! 1. the target (inactive) slot is invalidated in boot control and its metadata
//!    removed — the running slot is never touched;
//! 2. sizing (PURGING): the cache purged if the install does not fit, then the slot
//!    image preallocated ([`sizing`]) — still nothing downloaded;
//! 3. the ticket is stored beside the slot (`boot/ticket-<slot>.json`) before a byte
//!    is downloaded;
//! 4. a payload attempt writes the slot ([`attempts`]): for the full payload, frames
//!    are written and, about once a second, the slot synced and the count of frames
//!    done recorded in the install record (and the journal); a delta or chunk reuse
//!    records its own resume point there;
//! 5. the seal is finished and its root hash checked (frames written by an earlier,
//!    interrupted run are re-read and re-verified, never re-downloaded);
//! 6. receipt, slot metadata, then boot control: the slot boots next with N tries.
//!
//! A download-only run stops after step 5 (Hold): the install record then holds the seal
//! (`sealed`), and a later install goes from LOADING_PERSISTED through the preconditions
//! (and a fresh ticket when the stored one is older than the policy allows) to step 6.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use ferry_boot::Slot;
use ferry_payload::Manifest;
use ferry_types::Version;
use serde::Serialize;
use serde_json::json;

use crate::AgentError;
use crate::client::Client;
use crate::device::{Device, PayloadKind, Receipt, SlotInfo, SlotSeal};
use crate::install::attempts::{self, Attempts};
use crate::install::download;
use crate::install::purge::Keep;
use crate::install::record::InstallProgress;
use crate::install::seal::LeafStore;
use crate::install::sizing;
use crate::journal::{Instance, Journal};
use crate::layout;
use crate::machines::{controller, downloader};
use crate::offer::Offer;
use crate::policy::{self, Step};
use crate::progress::{self, Phase, ProgressSink};
use crate::stop::{StopReason, StopToken};

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

/// What an install did.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
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
    pub payload_kind: PayloadKind,
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
    /// Receipt file (empty for a download-only run).
    pub receipt: String,
    /// A download-only run: the slot is written, verified and sealed, not applied.
    pub staged: bool,
    /// A staged update's ticket was older than the policy allows and was replaced.
    pub ticket_refreshed: bool,
    /// Staged or parked updates this run dropped (a newer release superseded them).
    #[serde(default)]
    pub dropped: Vec<Dropped>,
    /// Warnings met on the way (a torn journal tail, a corrupt state file), with codes.
    pub warnings: Vec<ferry_types::Report>,
}

/// An update dropped: its staged or partly downloaded data is no longer wanted.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Dropped {
    /// Its UUID.
    pub update_id: uuid::Uuid,
    /// Its version.
    pub version: Version,
    /// Why: SUPERSEDED (a newer release is offered) or the server's refusal (NOT_SIGNED:
    /// its signing window closed), with cause and fix.
    pub reason: ferry_types::Report,
}

/// What a run is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Download, verify, seal and apply: the slot boots next (`ferry install`).
    Install,
    /// Download, verify and seal, then stop: staged for a later install (`ferry download`).
    Download,
}

/// How a run ends when nothing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// Applied: the slot boots next (COMPLETED).
    Applied,
    /// Staged: written, verified and sealed, not applied (PREPARED, Hold).
    Held,
}

/// One install run: what the controller's actions share.
pub(crate) struct Run<'a> {
    device: &'a Device,
    offer: &'a Offer,
    id: uuid::Uuid,
    sink: &'a dyn ProgressSink,
    mode: Mode,
    stop: StopToken,
    /// LOADING_PERSISTED found the slot staged (written, verified, sealed).
    staged: bool,
    /// The ticket was refreshed (a staged update's stale ticket).
    pub(crate) ticket_refreshed: bool,
    pub(crate) target: Slot,
    manifest: Option<(Arc<Manifest>, Vec<u8>)>,
    record: Option<InstallProgress>,
    leaves: Option<Arc<LeafStore>>,
    seal: Option<SlotSeal>,
    bytes_downloaded: u64,
    start_frame: usize,
    start_batch: usize,
    download_secs: f64,
    verify_secs: f64,
    pub(crate) receipt: String,
}

impl<'a> Run<'a> {
    pub(crate) fn new(
        device: &'a Device,
        offer: &'a Offer,
        id: uuid::Uuid,
        sink: &'a dyn ProgressSink,
        mode: Mode,
        stop: StopToken,
    ) -> Run<'a> {
        Run {
            device,
            offer,
            id,
            sink,
            mode,
            stop,
            staged: false,
            ticket_refreshed: false,
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
        self.device.layout().install_record()
    }

    /// Runs the controller's table to COMPLETED (or to PREPARED for a download-only
    /// run): fire, run the action, fire what it returns. A fresh or failed controller
    /// starts; any other state resumes. A shutdown stops it between two steps with no
    /// transition (the next start resumes, as after a crash); a cancel or a suspension
    /// stops the download and is the caller's to record.
    pub(crate) async fn drive(
        &mut self,
        journal: &mut Journal,
        ctl: &mut Instance<controller::Names>,
    ) -> Result<Finished, AgentError> {
        use controller::{Action, Event, State};
        let mut event = if ctl.is_in(State::ACCEPTED) || ctl.is_in(State::FAILED) {
            Event::Start
        } else {
            Event::Resume
        };
        let mut data = json!({ "update": self.id, "version": self.offer.version });
        loop {
            if self.stop.reason() == Some(StopReason::Shutdown) {
                return Err(self.stopped(StopReason::Shutdown, ctl.state_name()));
            }
            let action = ctl.fire(event, data)?;
            self.sink.report(&progress::mark(
                state_name(ctl.state_name()),
                action_text(action),
            ));
            (event, data) = match action {
                Action::StartUp => (Event::Started, json!({})),
                Action::LoadPersisted => self.load_persisted().await?,
                Action::SizeAndPurge => self.size()?,
                Action::Ready => (Event::Go, json!({})),
                Action::CheckPrerequisites => self.check_prerequisites()?,
                Action::Personalize => {
                    let data = self.personalize().await?;
                    (Event::Personalized, data)
                }
                Action::RefreshTicket => {
                    let data = self.personalize().await?;
                    self.ticket_refreshed = true;
                    (Event::Refreshed, data)
                }
                Action::Download => self.download(journal).await?,
                Action::MarkDownloaded => (Event::Go, json!({})),
                Action::Prepare => self.prepare()?,
                Action::Hold => {
                    self.hold()?;
                    ctl.complete_action()?;
                    return Ok(Finished::Held);
                }
                Action::Apply => self.apply()?,
                Action::Complete => {
                    ctl.complete_action()?;
                    return Ok(Finished::Applied);
                }
                Action::Park | Action::RecordFailure => {
                    return Err(AgentError::NoAction {
                        action: format!("{} (on {event})", action.name()),
                    });
                }
            };
        }
    }

    /// Whether the run was refreshing (or had refreshed) a staged update's ticket, which
    /// is where a closed signing window drops the staged update.
    pub(crate) fn ticket_refreshed_or_refreshing(&self, ctl: &Instance<controller::Names>) -> bool {
        self.staged
            && (self.ticket_refreshed || ctl.is_in(controller::State::PREFLIGHT_PERSONALIZE))
    }

    /// The error of a run stopped for `reason` in `state`.
    pub(crate) fn stopped(&self, reason: StopReason, state: &'static str) -> AgentError {
        AgentError::Stopped {
            reason,
            what: format!(
                "{} of {}",
                match self.mode {
                    Mode::Install => "install",
                    Mode::Download => "download",
                },
                self.offer.version
            ),
            state,
        }
    }

    /// LOADING_PERSISTED: where to continue, from durable device state only.
    async fn load_persisted(
        &mut self,
    ) -> Result<(controller::Event, serde_json::Value), AgentError> {
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
        let client = Client::for_device(self.device)?;
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
            ferry_durable::remove(&self.progress_path()).map_err(AgentError::io(
                "removing install progress",
                self.progress_path(),
            ))?;
            return Ok((
                controller::Event::AlreadyStaged,
                json!({ "slot": self.target }),
            ));
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
        // Staged by a download-only run: written, verified and sealed; nothing to fetch.
        if let Some(record) = resumable
            .as_ref()
            .filter(|p| !target_bootable && p.frames_done == manifest.frames.len())
            .filter(|p| p.sealed.is_some())
        {
            self.seal = record.sealed.clone();
            self.record = Some(record.clone());
            self.staged = true;
            return Ok((
                controller::Event::Prestaged,
                json!({ "slot": self.target, "ticket_at": record.ticket_at }),
            ));
        }
        if let Some(mut record) = resumable.filter(|_| !target_bootable) {
            // Frames written after the last checkpoint are still in the slot: re-verify
            // them instead of downloading them again.
            // Frames that had arrived but were not yet written come from the spool.
            // (A delta or chunk reuse under way writes the slot its own way: it resumes
            // by its own means, see `attempts`.)
            let slot = self.device.slot_path(self.target);
            let spool = self.device.layout().spool_dir();
            let found = if !attempts::resumes_frames(self.offer, &record) {
                crate::install::spool::Recovered {
                    frames_done: record.frames_done,
                    ..Default::default()
                }
            } else {
                crate::install::spool::recover(&spool, &slot, &manifest, record.frames_done)?
            };
            record.frames_done = found.frames_done;
            ferry_durable::write_json(&path, &record)
                .map_err(AgentError::io("writing install progress", &path))?;
            crate::install::spool::clear(&spool)
                .map_err(AgentError::io("clearing the spool", &spool))?;
            self.record = Some(record);
            return Ok((
                controller::Event::Resumable,
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
            payload_kind: PayloadKind::Full,
            bytes_reused: 0,
            fallback: None,
            fallback_from: None,
            chunks: None,
            ticket_at: None,
            sealed: None,
        };
        ferry_durable::write_json(&path, &fresh)
            .map_err(AgentError::io("writing install progress", &path))?;
        self.record = Some(fresh);
        Ok((controller::Event::Fresh, json!({ "slot": self.target })))
    }

    /// PURGING: the install sized against the free space of every filesystem it writes,
    /// the stale cache purged if it does not fit, the slot image preallocated
    /// ([`sizing`]); `INSUFFICIENT_SPACE` before anything is downloaded when it still does
    /// not fit. The resume state of this install (its record, a chunk cache under way) is
    /// kept; the spool was already taken in LOADING_PERSISTED.
    fn size(&mut self) -> Result<(controller::Event, serde_json::Value), AgentError> {
        let (manifest, manifest_bytes) = self.manifest()?;
        let slot_path = self.device.slot_path(self.target);
        let keep = Keep {
            spool: false,
            ..Keep::for_record(self.record.as_ref())
        };
        let sizing = sizing::size_install(
            &self.device.layout(),
            &sizing::Update {
                slot_path: &slot_path,
                image_size: manifest.image_size,
                payload_size: manifest.payload_size,
                manifest_len: manifest_bytes.len() as u64,
            },
            keep,
        )?;
        let data = serde_json::to_value(&sizing).unwrap_or_default();
        Ok((controller::Event::Sized, data))
    }

    /// PREFLIGHT_PERSONALIZE: a ticket for this device, a fresh nonce (stored before the
    /// request) and the release's seal root hash, stored beside the target slot
    /// (`boot/ticket-<slot>.json`) before anything is downloaded, so a refusal costs
    /// nothing and Apply finds the ticket in place.
    async fn personalize(&mut self) -> Result<serde_json::Value, AgentError> {
        let (manifest, _) = self.manifest()?;
        let release = &self.offer.release;
        let seal = manifest
            .seal
            .as_ref()
            .ok_or_else(|| AgentError::ServerInvalid {
                url: release.manifest.url.clone(),
                reason: "the release is not sealed, so it cannot be personalized".into(),
            })?;
        let client = Client::for_device(self.device)?;
        let (ticket, nonce) = crate::trust::personalize::request_ticket(
            self.device,
            &client,
            &release.build_id,
            crate::trust::personalize::components(&seal.root_hash),
        )
        .await?;
        let path = self.device.layout().ticket(self.target);
        ferry_durable::write_atomic(&path, &ticket.to_json())
            .map_err(AgentError::io("storing the ticket", &path))?;
        if let Some(record) = self.record.as_mut() {
            record.ticket_at = Some(Utc::now());
            let record_path = self.device.layout().install_record();
            ferry_durable::write_json(&record_path, record)
                .map_err(AgentError::io("writing install progress", &record_path))?;
        }
        Ok(json!({
            "build_id": release.build_id,
            "nonce_sha256": nonce.sha256().to_string(),
            "key_id": ticket.key_id.to_string(),
            "ticket": path.strip_prefix(&self.device.dir).unwrap_or(&path),
        }))
    }

    /// PREFLIGHT_PREREQUISITE: the preconditions of the `policy` for what comes next
    /// (a download, or applying a staged update), each refusal with its own code. A
    /// staged update goes on to Apply, or to a fresh ticket when its own is older than
    /// the policy allows; a download-only run of a staged update has nothing left to do.
    fn check_prerequisites(
        &mut self,
    ) -> Result<(controller::Event, serde_json::Value), AgentError> {
        use controller::Event;
        let policy = &self.device.config.policy;
        if self.staged && self.mode == Mode::Download {
            return Ok((Event::Held, json!({ "staged": true })));
        }
        let facts = self.device.facts()?;
        let seen = json!({
            "battery_level": facts.power.battery_level,
            "on_ac": facts.power.on_ac,
            "low_power_mode": facts.power.low_power_mode,
            "metered_network": facts.metered_network,
            "data_fs_free": facts.data_fs.free,
        });
        if self.staged {
            policy::check(Step::Install, &facts, policy)?;
            let ticket_at = self.record.as_ref().and_then(|r| r.ticket_at);
            let age = ticket_at.map(|at| Utc::now().signed_duration_since(at).num_seconds());
            let stale = age.is_none_or(|age| age < 0 || age as u64 >= policy.ticket_max_age_secs);
            let event = if stale {
                Event::Stale
            } else {
                Event::Prestaged
            };
            return Ok((event, json!({ "facts": seen, "ticket_age_secs": age })));
        }
        let bytes = self.offer.download_size;
        // Space is not a precondition here: PURGING has sized this install on every
        // filesystem, purging and preallocating.
        let step = Step::Download { bytes };
        policy::check(step, &facts, policy)?;
        if self.mode == Mode::Install {
            policy::check(Step::Install, &facts, policy)?;
        }
        Ok((Event::Go, json!({ "facts": seen, "download_bytes": bytes })))
    }

    /// PREPARED by a download-only run (Hold): the seal goes into the install record, so
    /// a later install applies the slot without fetching or verifying it again.
    fn hold(&mut self) -> Result<(), AgentError> {
        let mut record = self.record()?;
        record.sealed = Some(self.seal.clone().ok_or_else(|| missing("the seal"))?);
        let path = self.progress_path();
        ferry_durable::write_json(&path, &record)
            .map_err(AgentError::io("writing install progress", &path))?;
        self.record = Some(record);
        self.sink.report(&progress::mark(
            controller::State::PREPARED.name(),
            "Update downloaded and verified: install to apply it",
        ));
        Ok(())
    }

    /// DOWNLOADING_UPDATE, 16% → 54% by payload bytes, through `downloader[uuid]`: the
    /// payload attempts ([`Attempts`]) until one writes the slot.
    async fn download(
        &mut self,
        journal: &mut Journal,
    ) -> Result<(controller::Event, serde_json::Value), AgentError> {
        let (manifest, _) = self.manifest()?;
        let record = self.record()?;
        let mut dl: Instance<downloader::Names> = journal.instance(&self.id.to_string(), true)?;
        let attempts = Attempts {
            device: self.device,
            offer: self.offer,
            target: self.target,
            sink: self.sink,
            manifest,
            stop: self.stop.clone(),
        };
        let done = attempts.run(&mut dl, record).await?;
        self.bytes_downloaded = done.bytes_downloaded;
        self.download_secs = done.secs;
        self.start_frame = done.resumed_from_frame;
        self.start_batch = done.resumed_from_batch;
        self.leaves = done.leaves;
        let payload = done.record.payload_kind;
        self.record = Some(done.record);
        Ok((
            controller::Event::Downloaded,
            json!({ "payload": payload, "bytes": done.bytes_downloaded }),
        ))
    }

    /// PREPARING_UPDATE, 60% → 99%: finish the seal (or re-check every frame of an
    /// unsealed release) and compare the root hash with the release's.
    fn prepare(&mut self) -> Result<(controller::Event, serde_json::Value), AgentError> {
        let (manifest, _) = self.manifest()?;
        let slot_path = self.device.slot_path(self.target);
        let started = Instant::now();
        let phase = std::sync::Mutex::new(Phase::new(
            controller::State::PREPARING_UPDATE.name(),
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
        let tree_rel = layout::slot_tree(self.target);
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
                    &self.device.layout().resolve(&tree_rel),
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
        let event = match self.mode {
            Mode::Install => controller::Event::Sealed,
            Mode::Download => controller::Event::Held,
        };
        Ok((
            event,
            json!({ "root_hash": self.seal.as_ref().map(|s| s.root_hash.to_string()) }),
        ))
    }

    /// PREPARED: receipt, slot metadata, then boot control.
    fn apply(&mut self) -> Result<(controller::Event, serde_json::Value), AgentError> {
        let (manifest, manifest_bytes) = self.manifest()?;
        let release = &self.offer.release;
        let record = self.record()?;
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
                payload_kind: record.payload_kind,
                payload_sha256: manifest.payload_sha256,
                payload_size: manifest.payload_size,
                bytes_downloaded: record.bytes_downloaded,
                bytes_reused: record.bytes_reused,
                fallback: record.fallback.clone(),
                fallback_from: record.fallback_from,
                installed_at: now,
                from_version: Some(from_version),
                update_id: Some(self.id),
            })?,
        };
        let manifest_path = self.device.layout().slot_manifest(self.target);
        ferry_durable::write_atomic(&manifest_path, &manifest_bytes)
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
        ferry_durable::remove(&path).map_err(AgentError::io("removing install progress", &path))?;
        self.sink.report(&progress::mark(
            controller::State::COMPLETED.name(),
            "Update installed: restart to use it",
        ));
        Ok((
            controller::Event::Applied,
            json!({ "slot": self.target, "receipt": self.receipt }),
        ))
    }

    /// The release's manifest and its bytes, fetched in FETCHING_MANIFEST.
    fn manifest(&self) -> Result<(Arc<Manifest>, Vec<u8>), AgentError> {
        self.manifest.clone().ok_or_else(|| missing("the manifest"))
    }

    /// The install record, made in PURGING.
    fn record(&self) -> Result<InstallProgress, AgentError> {
        self.record
            .clone()
            .ok_or_else(|| missing("the install progress"))
    }

    pub(crate) fn outcome(&self) -> Result<InstallOutcome, AgentError> {
        let (manifest, _) = self.manifest()?;
        Ok(InstallOutcome {
            update_id: self.id,
            version: self.offer.release.version.clone(),
            slot: self.target,
            bytes_downloaded: self.bytes_downloaded,
            resumed_from_frame: self.start_frame,
            payload_kind: self
                .record
                .as_ref()
                .map_or(PayloadKind::Full, |r| r.payload_kind),
            bytes_reused: self.record.as_ref().map_or(0, |r| r.bytes_reused),
            resumed_from_batch: self.start_batch,
            image_size: manifest.image_size,
            download_secs: self.download_secs,
            verify_secs: self.verify_secs,
            receipt: self.receipt.clone(),
            staged: self.mode == Mode::Download,
            ticket_refreshed: self.ticket_refreshed,
            dropped: Vec::new(),
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

fn action_text(action: controller::Action) -> &'static str {
    use controller::Action;
    match action {
        Action::StartUp => "Starting",
        Action::LoadPersisted => "Loading saved state",
        Action::SizeAndPurge => "Checking free space…",
        Action::Ready => "Ready to download",
        Action::CheckPrerequisites => "Checking power, network and space…",
        Action::Personalize => "Personalizing update…",
        Action::RefreshTicket => "Refreshing the staged update's ticket…",
        Action::Download => "Downloading update…",
        Action::MarkDownloaded => "Downloaded",
        Action::Prepare => "Verifying system image…",
        Action::Hold => "Update downloaded and verified: install to apply it",
        Action::Park => "Stopped",
        Action::Apply => "Applying update…",
        Action::Complete => "Update installed: restart to use it",
        Action::RecordFailure => "Failed",
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
