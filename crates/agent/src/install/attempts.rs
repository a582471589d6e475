//! The install's payload attempts before the full payload: a tailored delta, then chunk
//! reuse. Each returns the controller's next event when it wrote the slot, `None` to go
//! on to the next payload (its failure recorded in `cache/install.json` and the journal),
//! or an error that ends the install (the network: the next run resumes).

use std::time::Instant;

use ferry_payload::Manifest;
use ferry_types::Diagnose;
use serde_json::json;

use super::controller::Run;
use super::record::InstallProgress;
use crate::client::Client;
use crate::device::PayloadKind;
use crate::journal::Instance;
use crate::machines::{controller, downloader};
use crate::progress::Phase;
use crate::{AgentError, durable};

/// The controller's next event and its journal data.
type Next = Option<(controller::Event, serde_json::Value)>;

impl Run<'_> {
    /// A tailored delta, when there is one from the running version and nothing of the
    /// full payload is in the slot yet; any failure falls back, recorded.
    pub(super) async fn try_delta(
        &mut self,
        downloader: &mut Instance<downloader::Names>,
        record: &mut InstallProgress,
        manifest: &Manifest,
        client: &Client,
    ) -> Result<Next, AgentError> {
        let slot_path = self.device.slot_path(self.target);
        let path = self.progress_path();
        if let Some(delta) = self.offer.delta.clone()
            && record.frames_done == 0
            && record.fallback.is_none()
            && record.chunks.is_none()
        {
            downloader.fire(
                downloader::Event::Begin,
                json!({ "payload": "delta", "size": delta.size }),
            )?;
            let mut phase = Phase::new(
                "DOWNLOADING_UPDATE",
                "Downloading update (tailored delta)…",
                delta.size,
                0,
            );
            let sink = self.sink;
            let mut on_bytes = |n: u64| {
                crate::journal::bytes_received(n);
                if let Some(p) = phase.at(n, false) {
                    sink.report(&p);
                }
            };
            let running = self.device.slot_path(!self.target);
            let started = Instant::now();
            match crate::install::delta::apply(client, &delta, &running, &slot_path, &mut on_bytes)
                .await
            {
                Ok(outcome) => {
                    record.frames_done = manifest.frames.len();
                    record.payload_kind = PayloadKind::Delta;
                    record.bytes_downloaded += outcome.bytes_downloaded;
                    record.bytes_reused = outcome.bytes_reused;
                    durable::write_json(&path, &*record)
                        .map_err(AgentError::io("writing install progress", &path))?;
                    self.record = Some(record.clone());
                    self.bytes_downloaded = outcome.bytes_downloaded;
                    self.download_secs = started.elapsed().as_secs_f64();
                    self.start_frame = manifest.frames.len();
                    // No leaves were hashed: Prepare re-reads the slot and checks every
                    // frame against the full manifest and the seal.
                    self.leaves = None;
                    downloader.fire(downloader::Event::Done,
                        json!({ "payload": "delta", "bytes": outcome.bytes_downloaded, "reused": outcome.bytes_reused }),
                    )?;
                    return Ok(Some((
                        controller::Event::Downloaded,
                        json!({ "payload": "delta", "bytes": outcome.bytes_downloaded }),
                    )));
                }
                Err(e) => {
                    let report = e.report();
                    tracing::warn!(
                        code = report.code,
                        "the tailored delta failed; falling back to the full image"
                    );
                    record.fallback = Some(report.clone());
                    record.fallback_from = Some(PayloadKind::Delta);
                    durable::write_json(&path, &*record)
                        .map_err(AgentError::io("writing install progress", &path))?;
                    let next = if self.offer.chunks.is_some() {
                        "chunks"
                    } else {
                        "full"
                    };
                    downloader.fire(
                        downloader::Event::Fail,
                        json!({ "payload": "delta", "error": report, "fallback": next }),
                    )?;
                }
            }
        }

        Ok(None)
    }

    /// Chunk reuse, when the release has a chunked payload and no frame of the full
    /// payload is in the slot; a failure that is not the network's falls back to the full
    /// payload, recorded.
    pub(super) async fn try_chunks(
        &mut self,
        downloader: &mut Instance<downloader::Names>,
        record: &mut InstallProgress,
        manifest: &Manifest,
        client: &Client,
    ) -> Result<Next, AgentError> {
        let slot_path = self.device.slot_path(self.target);
        let path = self.progress_path();
        if let Some(chunked) = self.offer.chunks.clone()
            && record.frames_done == 0
            && !record.chunks.as_ref().is_some_and(|c| c.abandoned)
        {
            let started = Instant::now();
            let mut progress = record.chunks.clone().unwrap_or_else(|| {
                crate::install::chunks::ChunkProgress::new(chunked.index.sha256)
            });
            let paths = crate::install::chunks::ChunkPaths {
                running: self.device.slot_path(!self.target),
                slot: slot_path.clone(),
                cache: self.device.layout().chunk_cache(),
            };
            downloader.fire(downloader::Event::Begin,
                json!({ "payload": "chunks", "size": chunked.payload.size, "batches_done": progress.batches_done }),
            )?;
            let base_downloaded =
                record.bytes_downloaded - record.chunks.as_ref().map_or(0, |c| c.bytes_downloaded);
            let result = {
                let mut hooks = crate::install::chunks::JournalHooks::new(
                    base_downloaded,
                    downloader,
                    record,
                    &path,
                    self.sink,
                );
                crate::install::chunks::install(
                    client,
                    &chunked,
                    manifest.image_size,
                    &paths,
                    &mut progress,
                    &mut hooks,
                )
                .await
            };
            match result {
                Ok(outcome) => {
                    record.frames_done = manifest.frames.len();
                    record.payload_kind = PayloadKind::Chunks;
                    record.bytes_downloaded = base_downloaded + progress.bytes_downloaded;
                    record.bytes_reused = outcome.bytes_reused;
                    record.chunks = Some(progress);
                    durable::write_json(&path, &*record)
                        .map_err(AgentError::io("writing install progress", &path))?;
                    durable::remove(&paths.cache)
                        .map_err(AgentError::io("removing the chunk cache", &paths.cache))?;
                    self.record = Some(record.clone());
                    self.bytes_downloaded = outcome.bytes_downloaded;
                    self.download_secs = started.elapsed().as_secs_f64();
                    self.start_frame = manifest.frames.len();
                    self.start_batch = outcome.resumed_from_batch;
                    // No leaves were hashed: Prepare re-reads the slot and checks every
                    // frame against the full manifest and the seal.
                    self.leaves = None;
                    downloader.fire(downloader::Event::Done,
                        json!({ "payload": "chunks", "bytes": outcome.bytes_downloaded, "reused": outcome.bytes_reused }),
                    )?;
                    return Ok(Some((
                        controller::Event::Downloaded,
                        json!({ "payload": "chunks", "bytes": outcome.bytes_downloaded }),
                    )));
                }
                Err(e) if crate::install::chunks::is_transient(&e) => {
                    // The network or the disk: the install stops here and the next run
                    // resumes from the last batch made durable.
                    record.bytes_downloaded = base_downloaded + progress.bytes_downloaded;
                    record.chunks = Some(progress);
                    durable::write_json(&path, &*record)
                        .map_err(AgentError::io("writing install progress", &path))?;
                    // The caller records the downloader's Fail.
                    return Err(e);
                }
                Err(e) => {
                    let report = e.report();
                    tracing::warn!(
                        code = report.code,
                        "chunk reuse failed; falling back to the full image"
                    );
                    record.bytes_downloaded = base_downloaded + progress.bytes_downloaded;
                    progress.abandoned = true;
                    record.chunks = Some(progress);
                    record.fallback = Some(report.clone());
                    record.fallback_from = Some(PayloadKind::Chunks);
                    durable::write_json(&path, &*record)
                        .map_err(AgentError::io("writing install progress", &path))?;
                    durable::remove(&paths.cache)
                        .map_err(AgentError::io("removing the chunk cache", &paths.cache))?;
                    downloader.fire(
                        downloader::Event::Fail,
                        json!({ "payload": "chunks", "error": report, "fallback": "full" }),
                    )?;
                }
            }
        }

        Ok(None)
    }
}
