//! The install's payload attempts, run by one runner: a tailored delta (when the offer
//! has one from the running version), chunk reuse (when the release has a chunked
//! payload), then the full payload. Every attempt is recorded the same way, in the same
//! order: `Begin` on the `downloader` machine, a `DOWNLOADING_UPDATE` progress phase
//! measured in the attempt's own bytes, the install record (`cache/install.json`) as it
//! goes, then `Done` or `Fail`.
//!
//! # What falls back and what ends the install
//!
//! One rule, for every attempt ([`Failure::of`]):
//!
//! - **The environment ends the install**: the network (unreachable, timed out, cut
//!   short, a TLS failure, a server error or rate limit), the disk (I/O), the device's
//!   own journal. Another payload would meet the same network and the same disk, so the
//!   record keeps the attempt and the next run resumes it: a delta from its start, chunk
//!   reuse from its last batch, the full payload from its last checkpoint.
//! - **The content falls back to the next payload**: a digest that does not match, a
//!   delta made for another base, a corrupt delta or chunk, an index or an answer that
//!   does not describe the release, an artifact the server does not have, a chunk cache
//!   that does not fit beside the reserve (the full payload needs none). The fallback
//!   is recorded: `fallback` and `fallback_from` in the record (then in the receipt and
//!   `history --json`), and a `Fail` record carrying `fallback` in the journal.
//!
//! The full payload is the last: any failure of it ends the install. Bytes that arrived
//! count in the record's `bytes_downloaded` whatever became of the attempt.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ferry_boot::Slot;
use ferry_delta::ReusePlan;
use ferry_payload::Manifest;
use ferry_types::Diagnose;
use serde::Serialize;
use serde_json::json;

use crate::AgentError;
use crate::client::Client;
use crate::device::{Device, PayloadKind};
use crate::install::chunks::{self, ChunkHooks, ChunkPaths, ChunkProgress};
use crate::install::meter::Meter;
use crate::install::record::InstallProgress;
use crate::install::seal::LeafStore;
use crate::install::{delta, download, sizing};
use crate::journal::Instance;
use crate::machines::downloader::{self, Event};
use crate::offer::Offer;
use crate::progress::ProgressSink;
use crate::stop::{StopReason, StopToken};

/// A payload the install can try, in the order it tries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Payload {
    /// The tailored delta from the running version.
    Delta,
    /// Chunk reuse.
    Chunks,
    /// The full payload.
    Full,
}

impl From<Payload> for PayloadKind {
    fn from(payload: Payload) -> PayloadKind {
        match payload {
            Payload::Delta => PayloadKind::Delta,
            Payload::Chunks => PayloadKind::Chunks,
            Payload::Full => PayloadKind::Full,
        }
    }
}

impl Payload {
    /// What the attempt's progress says it does.
    fn action(self) -> &'static str {
        match self {
            Payload::Delta => "Downloading update (tailored delta)…",
            Payload::Chunks => "Downloading update (chunk reuse)…",
            Payload::Full => "Downloading update…",
        }
    }
}

impl std::fmt::Display for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        PayloadKind::from(*self).fmt(f)
    }
}

/// Why an attempt failed, as the fallback rule sees it (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The network, the disk, the journal: the install ends and the next run resumes.
    Environment,
    /// The payload itself: the next payload is tried.
    Content,
}

impl Failure {
    /// How the rule classifies `error`.
    pub fn of(error: &AgentError) -> Failure {
        use ferry_catalog::CatalogError;
        match error {
            // Reading the running slot or writing the target is the disk's trouble.
            AgentError::Delta(ferry_delta::Error::Io { .. }) => Failure::Environment,
            AgentError::Delta(_) => Failure::Content,
            AgentError::DigestMismatch { .. }
            | AgentError::DeltaNotPinned { .. }
            | AgentError::ChunkIndexMismatch { .. }
            | AgentError::RangesUnsupported { .. }
            | AgentError::ChunkCorrupt { .. }
            | AgentError::ServerInvalid { .. }
            // Only chunk reuse's cache can be short here: the full payload needs none.
            | AgentError::InsufficientSpace { .. }
            | AgentError::Payload(_)
            | AgentError::Catalog(
                CatalogError::TargetMismatch { .. } | CatalogError::TargetTooLong { .. },
            ) => Failure::Content,
            // The server has no such artifact or will not serve it; a timeout or a rate
            // limit is the environment.
            AgentError::ServerRefused { status, .. }
                if (400..500).contains(status) && !matches!(status, 408 | 429) =>
            {
                Failure::Content
            }
            _ => Failure::Environment,
        }
    }
}

/// The payloads left to try for `offer`, in order, given what `record` made durable: a
/// slot that holds frames of the full payload resumes the full payload; payloads up to
/// and including the one fallen back from are not tried again; once chunk reuse has
/// begun the delta is behind it.
pub fn remaining(offer: &Offer, record: &InstallProgress) -> Vec<Payload> {
    if record.frames_done > 0 {
        return vec![Payload::Full];
    }
    let chunks_abandoned = record.chunks.as_ref().is_some_and(|c| c.abandoned);
    let past_delta = record.fallback_from.is_some() || record.chunks.is_some();
    let past_chunks = record.fallback_from == Some(PayloadKind::Chunks) || chunks_abandoned;
    let mut kinds = Vec::with_capacity(3);
    if offer.delta.is_some() && !past_delta {
        kinds.push(Payload::Delta);
    }
    if offer.chunks.is_some() && !past_chunks {
        kinds.push(Payload::Chunks);
    }
    kinds.push(Payload::Full);
    kinds
}

/// Whether the next attempt resumes frames of the full payload in the slot (the spool
/// and the frames written after the last checkpoint are then worth recovering); a delta
/// or chunk reuse under way writes the slot its own way and starts its own resume.
pub fn resumes_frames(offer: &Offer, record: &InstallProgress) -> bool {
    remaining(offer, record).first() == Some(&Payload::Full)
}

/// What the attempt that wrote the slot did, for the controller.
#[derive(Debug)]
pub struct Downloaded {
    /// The record, with the slot written (`frames_done` all frames, `payload_kind`).
    pub record: InstallProgress,
    /// Bytes fetched in this run, over every attempt.
    pub bytes_downloaded: u64,
    /// Seconds the successful attempt took.
    pub secs: f64,
    /// Frame the full payload resumed from (0: a fresh start, or another payload).
    pub resumed_from_frame: usize,
    /// Chunk-reuse batch the attempt resumed from (0: a fresh start, or another payload).
    pub resumed_from_batch: usize,
    /// Leaf hashes the full payload computed while writing (none: Prepare reads the
    /// whole slot back and checks every frame against the manifest and the seal).
    pub leaves: Option<Arc<LeafStore>>,
}

/// What an attempt that succeeded reports to the runner.
struct Wrote {
    bytes: u64,
    bytes_reused: u64,
    resumed_from_frame: usize,
    resumed_from_batch: usize,
    leaves: Option<Arc<LeafStore>>,
}

/// The runner's inputs: one install's payloads and where they go.
pub struct Attempts<'a> {
    /// The device.
    pub device: &'a Device,
    /// The offer being installed.
    pub offer: &'a Offer,
    /// The inactive slot being written.
    pub target: Slot,
    /// Where progress goes.
    pub sink: &'a dyn ProgressSink,
    /// The full payload's manifest: every attempt's result is checked against it.
    pub manifest: Arc<Manifest>,
    /// Stops the download part-way (what arrived is kept).
    pub stop: StopToken,
}

impl Attempts<'_> {
    /// Runs the attempts left (see [`remaining`]) until one writes the slot, falling back
    /// or ending the install by the rule of the [module docs](self). Any error it returns
    /// is recorded as the downloader's `Fail`.
    pub async fn run(
        &self,
        dl: &mut Instance<downloader::Names>,
        mut record: InstallProgress,
    ) -> Result<Downloaded, AgentError> {
        let mut current = None;
        let mut bytes_this_run = 0;
        let result = self
            .run_attempts(dl, &mut record, &mut current, &mut bytes_this_run)
            .await;
        match result {
            Ok((wrote, secs)) => Ok(Downloaded {
                record,
                bytes_downloaded: bytes_this_run,
                secs,
                resumed_from_frame: wrote.resumed_from_frame,
                resumed_from_batch: wrote.resumed_from_batch,
                leaves: wrote.leaves,
            }),
            Err(error) => {
                // The original error matters more than a failure to record it. A stop
                // parks the downloader; a shutdown leaves it where it is (the next start
                // resumes, as after a crash).
                let event = match &error {
                    AgentError::Stopped {
                        reason: StopReason::Shutdown,
                        ..
                    } => None,
                    AgentError::Stopped { .. } => Some(Event::Cancel),
                    _ => Some(Event::Fail),
                };
                if let Some(event) = event {
                    let _ = dl.fire(
                        event,
                        json!({ "payload": current, "error": error.report() }),
                    );
                }
                Err(error)
            }
        }
    }

    async fn run_attempts(
        &self,
        dl: &mut Instance<downloader::Names>,
        record: &mut InstallProgress,
        current: &mut Option<Payload>,
        bytes_this_run: &mut u64,
    ) -> Result<(Wrote, f64), AgentError> {
        let client = Client::for_device(self.device)?;
        let path = self.device.layout().install_record();
        let n_frames = self.manifest.frames.len();
        let kinds = remaining(self.offer, record);
        for (idx, &kind) in kinds.iter().enumerate() {
            *current = Some(kind);
            // A full payload whose frames are all in the slot only finishes the books of
            // the attempt that wrote them (a crash before Downloaded).
            let written_before = record.frames_done >= n_frames;
            let base = record.bytes_downloaded;
            dl.fire(Event::Begin, self.begin_data(kind, record))?;
            let started = Instant::now();
            let mut meter = Meter::new(self.sink, kind.action(), self.stop.clone());
            let result = match kind {
                // A delta or chunk reuse stopped part-way is dropped at an await point:
                // it resumes as after a crash (a delta from its start, chunks from the
                // last batch recorded).
                Payload::Delta => {
                    let stop = self.stop.clone();
                    tokio::select! {
                        result = self.delta(&client, &mut meter) => result,
                        reason = stop.stopped() => Err(download::stopped(reason)),
                    }
                }
                Payload::Chunks => {
                    let stop = self.stop.clone();
                    tokio::select! {
                        result = self.chunks(&client, dl, record, &path, &mut meter) => result,
                        reason = stop.stopped() => Err(download::stopped(reason)),
                    }
                }
                Payload::Full => self.full(&client, dl, record, &path, &mut meter).await,
            };
            let received = result.as_ref().map_or(meter.received, |w| w.bytes);
            record.bytes_downloaded = base + received;
            *bytes_this_run += received;
            match result {
                Ok(wrote) => {
                    record.frames_done = n_frames;
                    if !written_before {
                        record.payload_kind = kind.into();
                        record.bytes_reused = wrote.bytes_reused;
                    }
                    save(&path, record)?;
                    // Only now, with the slot recorded as written, is the chunk cache
                    // garbage (left too by a cut between the record and this removal).
                    let cache = self.device.layout().chunk_cache();
                    ferry_durable::remove(&cache)
                        .map_err(AgentError::io("removing the chunk cache", &cache))?;
                    let secs = started.elapsed().as_secs_f64();
                    dl.fire(
                        Event::Done,
                        json!({
                            "payload": kind,
                            "bytes": wrote.bytes,
                            "reused": wrote.bytes_reused,
                            "secs": secs,
                        }),
                    )?;
                    return Ok((wrote, secs));
                }
                Err(error) => {
                    let next = kinds.get(idx + 1).copied();
                    let Some(next) = next.filter(|_| Failure::of(&error) == Failure::Content)
                    else {
                        // The install ends here; the next run resumes this attempt.
                        save(&path, record)?;
                        return Err(error);
                    };
                    let report = error.report();
                    tracing::warn!(
                        code = report.code,
                        payload = %kind,
                        fallback = %next,
                        "the payload failed; falling back to the next"
                    );
                    if kind == Payload::Chunks {
                        self.abandon_chunks(record)?;
                    }
                    record.fallback = Some(report.clone());
                    record.fallback_from = Some(kind.into());
                    save(&path, record)?;
                    dl.fire(
                        Event::Fail,
                        json!({ "payload": kind, "error": report, "fallback": next }),
                    )?;
                }
            }
        }
        // `remaining` always ends with the full payload, which returns either way.
        Err(AgentError::NoPayload {
            what: "another payload after the full one".into(),
        })
    }

    /// The journal data of an attempt's `Begin`.
    fn begin_data(&self, kind: Payload, record: &InstallProgress) -> serde_json::Value {
        match kind {
            Payload::Delta => json!({
                "payload": kind,
                "size": self.offer.delta.as_ref().map_or(0, |d| d.size),
            }),
            Payload::Chunks => json!({
                "payload": kind,
                "size": self.offer.chunks.as_ref().map_or(0, |c| c.payload.size),
                "batches_done": record.chunks.as_ref().map_or(0, |c| c.batches_done),
            }),
            Payload::Full => json!({
                "payload": kind,
                "from_frame": record.frames_done,
                "offset": self
                    .manifest
                    .frames
                    .get(record.frames_done)
                    .map_or(self.manifest.payload_size, |f| f.offset),
            }),
        }
    }

    /// The tailored delta, applied from the running slot as it streams; restarted from
    /// its first byte when an earlier run was cut.
    async fn delta(&self, client: &Client, meter: &mut Meter<'_>) -> Result<Wrote, AgentError> {
        let artifact = self
            .offer
            .delta
            .as_ref()
            .ok_or_else(|| missing("a delta"))?;
        // No signed pin of its manifest, no delta (a content failure: the next payload).
        let url = artifact.url.clone();
        let pin = self
            .offer
            .delta_manifest_digest
            .ok_or(AgentError::DeltaNotPinned { url })?;
        // Measured in image bytes written: the download is small, the apply is the work.
        meter.action = "Applying update (tailored delta)…";
        meter.begin(self.manifest.image_size, 0);
        let running = self.device.slot_path(!self.target);
        let slot = self.device.slot_path(self.target);
        let received = AtomicU64::new(0);
        let written = AtomicU64::new(0);
        let mut on_bytes = |n| received.store(n, Ordering::Relaxed);
        let mut on_written = |n| written.store(n, Ordering::Relaxed);
        let outcome = {
            let apply = delta::apply(
                client,
                artifact,
                pin,
                &running,
                &slot,
                &mut on_bytes,
                &mut on_written,
            );
            tokio::pin!(apply);
            // The meter is told from here (the callbacks cannot borrow it too).
            let mut every = tokio::time::interval(std::time::Duration::from_millis(100));
            loop {
                tokio::select! {
                    outcome = &mut apply => break outcome,
                    _ = every.tick() => {
                        meter.count(received.load(Ordering::Relaxed));
                        meter.work(written.load(Ordering::Relaxed));
                    }
                }
            }
        };
        meter.count(received.load(Ordering::Relaxed));
        let outcome = outcome?;
        Ok(Wrote {
            bytes: outcome.bytes_downloaded,
            bytes_reused: outcome.bytes_reused,
            resumed_from_frame: 0,
            resumed_from_batch: 0,
            leaves: None,
        })
    }

    /// Chunk reuse, resumed from the last batch an earlier run made durable. Its
    /// progress is in the record whatever the outcome; the chunk cache goes once the
    /// slot is written.
    async fn chunks(
        &self,
        client: &Client,
        dl: &mut Instance<downloader::Names>,
        record: &mut InstallProgress,
        path: &Path,
        meter: &mut Meter<'_>,
    ) -> Result<Wrote, AgentError> {
        let chunked = self
            .offer
            .chunks
            .as_ref()
            .ok_or_else(|| missing("chunks"))?;
        let mut progress = record
            .chunks
            .clone()
            .unwrap_or_else(|| ChunkProgress::new(chunked.index.sha256));
        let paths = ChunkPaths {
            running: self.device.slot_path(!self.target),
            slot: self.device.slot_path(self.target),
            cache: self.device.layout().chunk_cache(),
        };
        let result = {
            let mut hooks = ChunkJournal {
                base: record.bytes_downloaded,
                cache: &paths.cache,
                dl,
                record: &mut *record,
                path,
                meter: &mut *meter,
            };
            chunks::install(
                client,
                chunked,
                self.manifest.image_size,
                &paths,
                &mut progress,
                &mut hooks,
            )
            .await
        };
        record.chunks = Some(progress);
        let outcome = result?;
        // The cache stays until the slot is recorded as written (`run_attempts`): removed
        // before that, a cut in between would resume chunk reuse from an empty cache,
        // find every chunk corrupt and fall back to the whole payload.
        Ok(Wrote {
            bytes: outcome.bytes_downloaded,
            bytes_reused: outcome.bytes_reused,
            resumed_from_frame: 0,
            resumed_from_batch: outcome.resumed_from_batch,
            leaves: None,
        })
    }

    /// Chunk reuse failed for good: marked abandoned, its cache removed.
    fn abandon_chunks(&self, record: &mut InstallProgress) -> Result<(), AgentError> {
        if let Some(progress) = record.chunks.as_mut() {
            progress.abandoned = true;
        }
        let cache = self.device.layout().chunk_cache();
        ferry_durable::remove(&cache).map_err(AgentError::io("removing the chunk cache", &cache))
    }

    /// The full payload, streamed into the slot from the last checkpoint: frames are
    /// decoded, checked and hashed into the seal's leaves as they are written, and about
    /// once a second the slot is synced and the frames done recorded.
    async fn full(
        &self,
        client: &Client,
        dl: &mut Instance<downloader::Names>,
        record: &mut InstallProgress,
        path: &Path,
        meter: &mut Meter<'_>,
    ) -> Result<Wrote, AgentError> {
        let manifest = &self.manifest;
        let start_frame = record.frames_done;
        let start_offset = manifest
            .frames
            .get(start_frame)
            .map_or(manifest.payload_size, |f| f.offset);
        meter.begin(manifest.payload_size, start_offset);
        let base = record.bytes_downloaded;
        let received = AtomicU64::new(0);
        let mut checkpoint = |frames_done: usize| -> Result<(), AgentError> {
            record.frames_done = frames_done;
            record.bytes_downloaded = base + received.load(Ordering::Relaxed);
            save(path, record)?;
            dl.fire(
                Event::Checkpoint,
                json!({ "frames_done": frames_done, "bytes": record.bytes_downloaded }),
            )?;
            Ok(())
        };
        let image_size = manifest.image_size;
        let mut on_bytes = |flow: download::Flow| {
            let n = flow.received - start_offset;
            received.store(n, Ordering::Relaxed);
            meter.slot_busy(flow.slot_busy);
            meter.retry(flow.retry);
            meter.written = (flow.written, image_size);
            meter.reach(n);
        };
        let leaves = LeafStore::new(manifest).map(Arc::new);
        let stats = download::stream_into_slot(
            client,
            &self.offer.release.payload.url,
            self.device.config.download_retries,
            manifest.clone(),
            leaves.clone(),
            &self.device.slot_path(self.target),
            &self.device.layout().spool_dir(),
            start_frame,
            &mut checkpoint,
            &mut on_bytes,
            &self.stop,
        )
        .await?;
        Ok(Wrote {
            bytes: stats.bytes_downloaded,
            bytes_reused: 0,
            resumed_from_frame: start_frame,
            resumed_from_batch: 0,
            leaves,
        })
    }
}

/// Writes the install record durably.
fn save(path: &Path, record: &InstallProgress) -> Result<(), AgentError> {
    ferry_durable::write_json(path, record)
        .map_err(AgentError::io("writing install progress", path))
}

fn missing(what: &str) -> AgentError {
    AgentError::NoPayload {
        what: what.to_owned(),
    }
}

/// Chunk reuse's hooks: each batch made durable in the record and journaled on the
/// downloader, re-fetches journaled, bytes to the meter.
struct ChunkJournal<'r, 'a> {
    /// What the record counted before this attempt's bytes.
    base: u64,
    cache: &'r Path,
    dl: &'r mut Instance<downloader::Names>,
    record: &'r mut InstallProgress,
    path: &'r Path,
    meter: &'r mut Meter<'a>,
}

impl ChunkHooks for ChunkJournal<'_, '_> {
    fn planned(
        &mut self,
        plan: &ReusePlan,
        batches_done: usize,
        done: u64,
    ) -> Result<(), AgentError> {
        let total = plan.download_bytes();
        self.dl.fire(
            Event::Checkpoint,
            json!({
                "payload": Payload::Chunks,
                "plan": {
                    "chunks": plan.n_chunks,
                    "missing": plan.missing.len(),
                    "batches": plan.requests.len(),
                    "download_bytes": total,
                    "max_batch_bytes": plan
                        .requests
                        .iter()
                        .map(|batch| batch.iter().map(|r| r.end - r.start).sum::<u64>())
                        .max()
                        .unwrap_or(0),
                    "done_bytes": done,
                },
            }),
        )?;
        self.meter.begin(total.max(1), done);
        // What is still to fetch must fit beside the reserve (else: the full payload).
        let remaining = plan.requests.get(batches_done..).unwrap_or_default();
        sizing::reserve_chunk_cache(self.cache, remaining)
    }

    fn checkpoint(&mut self, progress: &ChunkProgress) -> Result<(), AgentError> {
        self.record.chunks = Some(progress.clone());
        self.record.bytes_downloaded = self.base + self.meter.received;
        save(self.path, self.record)?;
        self.dl.fire(
            Event::Checkpoint,
            json!({
                "payload": Payload::Chunks,
                "batches_done": progress.batches_done,
                "batch_bytes_done": progress.batch_bytes_done,
                "batches": progress.n_batches,
                "bytes": self.record.bytes_downloaded,
                "multi_range": progress.multi_range,
            }),
        )?;
        Ok(())
    }

    fn refetch(&mut self, chunk: usize, error: &AgentError) -> Result<(), AgentError> {
        tracing::warn!(
            chunk,
            code = error.code(),
            "a chunk failed its digest; fetching it once more"
        );
        self.dl.fire(
            Event::Refetch,
            json!({ "payload": Payload::Chunks, "chunk": chunk, "error": error.report() }),
        )?;
        Ok(())
    }

    fn bytes(&mut self, n: u64) {
        self.meter.add(n);
    }

    /// The assembly is the attempt's last work, measured in image bytes written: a new
    /// measure of the same phase, so the bar moves while the slot is written.
    fn assembling(&mut self, image_size: u64) -> Result<(), AgentError> {
        self.dl
            .fire(Event::Assemble, json!({ "payload": Payload::Chunks }))?;
        self.meter.action = "Assembling update (chunk reuse)…";
        self.meter.begin(image_size.max(1), 0);
        Ok(())
    }

    fn written(&mut self, written: u64, last: bool) {
        if last {
            self.meter.finish(written);
        } else {
            self.meter.work(written);
        }
    }
}

#[cfg(test)]
mod tests;
