//! Installing by chunk reuse, for a device with no tailored delta for its version: the
//! signed index of the release's chunked payload says what every chunk holds; the
//! running slot (read-only) already holds many of them, anywhere in it; only the rest is
//! downloaded, in batches of byte ranges ([`crate::install::ranges`]), into a sparse cache file at
//! payload offsets. Then `ferry-delta`'s assembler writes the inactive slot in order,
//! every extent checked against its digest, and the caller verifies the whole slot
//! against the full manifest and the seal as it does after a delta.
//!
//! Resumable within a batch: after each batch, and every [`CHECKPOINT_BYTES`] of the batch
//! written in order, the cache file is synced and the point reached recorded
//! ([`ChunkProgress`]: batches done and bytes of the next one, in `cache/install.json`),
//! so a cut or killed download re-fetches at most [`CHECKPOINT_BYTES`] plus the network
//! read in hand (under one 1 MiB frame), however large the batch. A chunk whose bytes fail their digest is
//! fetched once more; a second failure is `CHUNK_CORRUPT` and the caller falls back to
//! the full payload.

use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ferry_delta::{PayloadIndex, PlanOptions, ReusePlan};
use ferry_types::Sha256;
use serde::{Deserialize, Serialize};

use crate::AgentError;
use crate::client::Client;
use crate::install::ranges::{self, BatchSink, RangeMode};
use crate::offer::ChunkedPayload;

/// Most byte ranges asked in one request (servers and CDNs cap multi-range requests).
pub const MAX_RANGES_PER_REQUEST: usize = 16;

/// Bytes of a batch written in order between two checkpoints. A kill loses at most this
/// plus the network read in hand (hyper reads at most about 400 KiB at once): under one
/// 1 MiB payload frame, the bound the full payload's spool gives.
pub const CHECKPOINT_BYTES: u64 = 512 << 10;

/// The durable state of a chunk-reuse attempt (part of the install record).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChunkProgress {
    /// Digest of the index the plan was made from (another index restarts the attempt).
    pub index_sha256: Sha256,
    /// Request batches in the plan.
    pub n_batches: usize,
    /// Batches fetched, verified and synced into the cache file, in order.
    pub batches_done: usize,
    /// Bytes of batch `batches_done` (its ranges in order) written and synced into the
    /// cache file: a resume asks only for the rest. Not yet verified (the whole batch is,
    /// once complete).
    #[serde(default)]
    pub batch_bytes_done: u64,
    /// Bytes received, over all runs: the index each time it was fetched, chunk ranges,
    /// refused answers and re-fetches.
    pub bytes_downloaded: u64,
    /// False once the server refused a multi-range request: then one range per request.
    pub multi_range: bool,
    /// Set when the attempt failed for good: the install uses the full payload.
    pub abandoned: bool,
}

impl ChunkProgress {
    /// A fresh attempt for the index with digest `index_sha256`.
    pub fn new(index_sha256: Sha256) -> ChunkProgress {
        ChunkProgress {
            index_sha256,
            n_batches: 0,
            batches_done: 0,
            batch_bytes_done: 0,
            bytes_downloaded: 0,
            multi_range: true,
            abandoned: false,
        }
    }
}

/// What the attempt's caller records as it goes (the journal, the install record).
pub trait ChunkHooks: Send {
    /// The plan is made: its batches, of which the first `batches_done` (`done` bytes)
    /// were fetched by an earlier run. An error ends the attempt before anything is
    /// fetched (the cache does not fit: `INSUFFICIENT_SPACE`).
    fn planned(
        &mut self,
        plan: &ReusePlan,
        batches_done: usize,
        done: u64,
    ) -> Result<(), AgentError>;
    /// A batch is durable: persist `progress`.
    fn checkpoint(&mut self, progress: &ChunkProgress) -> Result<(), AgentError>;
    /// Chunk `chunk` failed its digest and is fetched once more.
    fn refetch(&mut self, chunk: usize, error: &AgentError) -> Result<(), AgentError>;
    /// `n` more bytes arrived (the index, ranges, re-fetches).
    fn bytes(&mut self, n: u64);
    /// The image (`image_size` bytes) is being assembled into the slot.
    fn assembling(&mut self, image_size: u64) -> Result<(), AgentError>;
    /// `written` image bytes of the assembly are in the slot (`last`: all of them, synced).
    fn written(&mut self, written: u64, last: bool);
}

/// What a chunk-reuse install did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkOutcome {
    /// Bytes received in this run (index and chunk ranges).
    pub bytes_downloaded: u64,
    /// Image bytes taken from the running slot.
    pub bytes_reused: u64,
    /// Batch this run started at (non-zero on a resume).
    pub resumed_from_batch: usize,
}

/// Where the chunk attempt works.
#[derive(Debug, Clone)]
pub struct ChunkPaths {
    /// The running slot (read only).
    pub running: PathBuf,
    /// The inactive slot being written.
    pub slot: PathBuf,
    /// The sparse cache file of downloaded ranges, at payload offsets.
    pub cache: PathBuf,
}

/// Installs the image of `chunked` (whose image is `image_size` bytes) into
/// `paths.slot` by chunk reuse, resuming from `progress`.
pub async fn install(
    client: &Client,
    chunked: &ChunkedPayload,
    image_size: u64,
    paths: &ChunkPaths,
    progress: &mut ChunkProgress,
    hooks: &mut dyn ChunkHooks,
) -> Result<ChunkOutcome, AgentError> {
    if progress.index_sha256 != chunked.index.sha256 {
        *progress = ChunkProgress::new(chunked.index.sha256);
    }
    // The index counts as downloaded, each time it is fetched.
    let index_bytes = client.artifact(&chunked.index, "the chunk index").await?;
    progress.bytes_downloaded += index_bytes.len() as u64;
    let mut received = index_bytes.len() as u64;
    hooks.bytes(received);
    let index = PayloadIndex::from_bytes(&index_bytes)?;
    if index.image_size != image_size || index.payload_len() != chunked.payload.size {
        return Err(AgentError::ChunkIndexMismatch {
            index_image_size: index.image_size,
            index_payload_len: index.payload_len(),
            image_size,
            payload_size: chunked.payload.size,
        });
    }
    let (index, plan) = plan(index, &paths.running).await?;
    if progress.n_batches != plan.requests.len() {
        // Another plan (first run, or the running slot changed): start the batches over.
        progress.n_batches = plan.requests.len();
        progress.batches_done = 0;
        progress.batch_bytes_done = 0;
    }
    let resumed_from_batch = progress.batches_done;
    let done_bytes: u64 = plan.requests[..resumed_from_batch]
        .iter()
        .flatten()
        .map(|r| r.end - r.start)
        .sum::<u64>()
        + progress.batch_bytes_done;
    hooks.planned(&plan, resumed_from_batch, done_bytes)?;
    hooks.checkpoint(progress)?;

    let cache = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&paths.cache)
        .map_err(AgentError::io("opening the chunk cache", &paths.cache))?;
    let dest = ranges::Destination {
        file: &cache,
        path: &paths.cache,
    };
    let mut mode = if progress.multi_range {
        RangeMode::Multi
    } else {
        RangeMode::Single
    };
    for batch_idx in resumed_from_batch..plan.requests.len() {
        let batch = &plan.requests[batch_idx];
        let batch_len: u64 = batch.iter().map(|r| r.end - r.start).sum();
        let skipped = progress.batch_bytes_done.min(batch_len);
        let rest = skip_bytes(batch, skipped);
        let before = progress.bytes_downloaded;
        let mut sink = CheckpointingSink {
            hooks: &mut *hooks,
            progress: &mut *progress,
            cache: &cache,
            cache_path: &paths.cache,
            fill: BatchFill::new(&rest),
            skipped,
            checkpointed: skipped,
            before,
            received: 0,
        };
        let fetched = ranges::fetch_batch(
            client,
            &chunked.payload.url,
            chunked.payload.size,
            &rest,
            &mut mode,
            dest,
            &mut sink,
        )
        .await;
        // Bytes that arrived count, even those of a batch cut short.
        let batch_bytes = sink.received;
        received += batch_bytes;
        progress.bytes_downloaded = before + batch_bytes;
        progress.multi_range = mode == RangeMode::Multi;
        fetched?;
        // Every chunk of the batch checked; a bad one is fetched once more.
        for &chunk_idx in plan.missing.iter().filter(|&&c| {
            let chunk = &index.chunks[c];
            batch.iter().any(|r| {
                r.start <= chunk.payload_offset
                    && chunk.payload_offset + chunk.compressed_len <= r.end
            })
        }) {
            if let Err(first) = check_chunk(&cache, &paths.cache, &index, chunk_idx) {
                hooks.refetch(chunk_idx, &first)?;
                let chunk = &index.chunks[chunk_idx];
                let range = chunk.payload_offset..chunk.payload_offset + chunk.compressed_len;
                let mut single = RangeMode::Single;
                let mut sink = CountingSink {
                    hooks: &mut *hooks,
                    received: 0,
                };
                let again = ranges::fetch_batch(
                    client,
                    &chunked.payload.url,
                    chunked.payload.size,
                    std::slice::from_ref(&range),
                    &mut single,
                    dest,
                    &mut sink,
                )
                .await;
                let again_bytes = sink.received;
                received += again_bytes;
                progress.bytes_downloaded += again_bytes;
                again?;
                check_chunk(&cache, &paths.cache, &index, chunk_idx)?;
            }
        }
        cache
            .sync_data()
            .map_err(AgentError::io("syncing the chunk cache", &paths.cache))?;
        progress.batches_done = batch_idx + 1;
        progress.batch_bytes_done = 0;
        hooks.checkpoint(progress)?;
    }

    hooks.assembling(image_size)?;
    let written = Arc::new(AtomicU64::new(0));
    let bytes_reused = {
        let assembly = assemble(index, plan, paths.clone(), written.clone());
        tokio::pin!(assembly);
        // The hooks are told from here (the blocking assembly cannot borrow them).
        let mut every = tokio::time::interval(std::time::Duration::from_millis(100));
        loop {
            tokio::select! {
                outcome = &mut assembly => break outcome,
                _ = every.tick() => hooks.written(written.load(Ordering::Relaxed), false),
            }
        }
    }?;
    hooks.written(written.load(Ordering::Relaxed), true);
    Ok(ChunkOutcome {
        bytes_downloaded: received,
        bytes_reused,
        resumed_from_batch,
    })
}

/// Counts what arrives for the caller's progress, checkpointing nothing (a chunk fetched
/// once more).
struct CountingSink<'h> {
    hooks: &'h mut dyn ChunkHooks,
    received: u64,
}

impl BatchSink for CountingSink<'_> {
    fn received(&mut self, n: u64) {
        self.received += n;
        self.hooks.bytes(n);
    }

    fn written(&mut self, _offset: u64, _len: u64) -> Result<(), AgentError> {
        Ok(())
    }
}

/// The sink of a batch: counts what arrives and, every [`CHECKPOINT_BYTES`] of the batch
/// written in order, syncs the cache file and records how far the batch got.
struct CheckpointingSink<'a> {
    hooks: &'a mut dyn ChunkHooks,
    progress: &'a mut ChunkProgress,
    cache: &'a File,
    cache_path: &'a Path,
    /// What of the ranges asked (the batch without its first `skipped` bytes) is written.
    fill: BatchFill,
    /// Bytes of the batch an earlier run had made durable.
    skipped: u64,
    /// Bytes of the batch the last checkpoint recorded.
    checkpointed: u64,
    /// `progress.bytes_downloaded` before this batch.
    before: u64,
    received: u64,
}

impl BatchSink for CheckpointingSink<'_> {
    fn received(&mut self, n: u64) {
        self.received += n;
        self.hooks.bytes(n);
    }

    fn written(&mut self, offset: u64, len: u64) -> Result<(), AgentError> {
        self.fill.written(offset, len);
        let done = self.skipped + self.fill.prefix();
        if done < self.checkpointed + CHECKPOINT_BYTES {
            return Ok(());
        }
        self.cache
            .sync_data()
            .map_err(AgentError::io("syncing the chunk cache", self.cache_path))?;
        self.progress.batch_bytes_done = done;
        self.progress.bytes_downloaded = self.before + self.received;
        self.hooks.checkpoint(self.progress)?;
        self.checkpointed = done;
        Ok(())
    }
}

/// Which bytes of a list of ranges have been written: each range from its start, in order
/// within it (a part's bytes arrive in order; parts may come in any order).
#[derive(Debug)]
struct BatchFill {
    ranges: Vec<Range<u64>>,
    /// Bytes written from the start of each range.
    filled: Vec<u64>,
}

impl BatchFill {
    fn new(ranges: &[Range<u64>]) -> BatchFill {
        BatchFill {
            ranges: ranges.to_vec(),
            filled: vec![0; ranges.len()],
        }
    }

    /// Notes `len` bytes written at `offset`: they extend the range whose next byte that is.
    fn written(&mut self, offset: u64, len: u64) {
        for (range, filled) in self.ranges.iter().zip(self.filled.iter_mut()) {
            if range.start + *filled == offset && offset < range.end {
                *filled = (*filled + len).min(range.end - range.start);
                return;
            }
        }
    }

    /// Bytes written from the start of the ranges, in order, without a gap.
    fn prefix(&self) -> u64 {
        let mut prefix = 0;
        for (range, filled) in self.ranges.iter().zip(&self.filled) {
            prefix += filled;
            if *filled < range.end - range.start {
                break;
            }
        }
        prefix
    }
}

/// `ranges` without their first `n` bytes (in order).
fn skip_bytes(ranges: &[Range<u64>], mut n: u64) -> Vec<Range<u64>> {
    let mut rest = Vec::with_capacity(ranges.len());
    for range in ranges {
        let len = range.end - range.start;
        if n >= len {
            n -= len;
            continue;
        }
        rest.push(range.start + n..range.end);
        n = 0;
    }
    rest
}

/// Scans the running slot for the chunks it holds (on a blocking thread: it hashes the
/// whole slot).
async fn plan(
    index: PayloadIndex,
    running: &Path,
) -> Result<(PayloadIndex, ReusePlan), AgentError> {
    let running = running.to_owned();
    tokio::task::spawn_blocking(move || {
        let slot =
            File::open(&running).map_err(AgentError::io("opening the running slot", &running))?;
        let opts = PlanOptions {
            max_ranges_per_request: MAX_RANGES_PER_REQUEST,
            ..PlanOptions::default()
        };
        let plan = ferry_delta::plan_reuse(&slot, &index, &opts)?;
        Ok((index, plan))
    })
    .await
    .map_err(|e| AgentError::Io {
        op: "planning chunk reuse",
        path: PathBuf::new(),
        source: std::io::Error::other(e),
    })?
}

/// Writes the image into the slot from the running slot and the cache file, then syncs
/// it. Returns the bytes reused from the running slot.
async fn assemble(
    index: PayloadIndex,
    plan: ReusePlan,
    paths: ChunkPaths,
    written: Arc<AtomicU64>,
) -> Result<u64, AgentError> {
    tokio::task::spawn_blocking(move || {
        let running = File::open(&paths.running)
            .map_err(AgentError::io("opening the running slot", &paths.running))?;
        let mut cache = File::open(&paths.cache)
            .map_err(AgentError::io("opening the chunk cache", &paths.cache))?;
        let slot = OpenOptions::new()
            .write(true)
            .open(&paths.slot)
            .map_err(AgentError::io("opening the inactive slot", &paths.slot))?;
        let mut slot = crate::install::pace::CountedSlot::new(slot, written);
        let report =
            ferry_delta::assemble(&running, &index, &plan, &mut cache, &[], &mut slot, |_| {})?;
        slot.file()
            .sync_data()
            .map_err(AgentError::io("syncing the inactive slot", &paths.slot))?;
        Ok(report.bytes_reused)
    })
    .await
    .map_err(|e| AgentError::Io {
        op: "assembling the image",
        path: PathBuf::new(),
        source: std::io::Error::other(e),
    })?
}

/// Reads chunk `chunk_idx` back from the cache file and checks its blake3.
fn check_chunk(
    cache: &File,
    cache_path: &Path,
    index: &PayloadIndex,
    chunk_idx: usize,
) -> Result<(), AgentError> {
    let chunk = &index.chunks[chunk_idx];
    let mut frame = vec![0u8; chunk.compressed_len as usize];
    cache
        .read_exact_at(&mut frame, chunk.payload_offset)
        .map_err(AgentError::io("reading the chunk cache", cache_path))?;
    let actual = blake3::hash(&frame);
    if actual.as_bytes() == &chunk.digest {
        return Ok(());
    }
    Err(AgentError::ChunkCorrupt {
        chunk: chunk_idx,
        start: chunk.payload_offset,
        end: chunk.payload_offset + chunk.compressed_len,
        expected: hex(&chunk.digest),
        actual: actual.to_hex().to_string(),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_of_a_batch_grows_only_without_gaps() {
        let mut fill = BatchFill::new(&[10..20, 30..40, 50..60]);
        assert_eq!(fill.prefix(), 0);
        fill.written(10, 4);
        assert_eq!(fill.prefix(), 4);
        // The second range's part arrives first: no gap may be skipped.
        fill.written(30, 10);
        assert_eq!(fill.prefix(), 4);
        fill.written(14, 6);
        assert_eq!(fill.prefix(), 20);
        // A write that is not the next byte of any range changes nothing.
        fill.written(55, 1);
        assert_eq!(fill.prefix(), 20);
        fill.written(50, 10);
        assert_eq!(fill.prefix(), 30);
    }

    #[test]
    fn a_resumed_batch_asks_only_for_what_is_left() {
        let batch = [10..20, 30..40, 50..60];
        assert_eq!(skip_bytes(&batch, 0), batch.to_vec());
        assert_eq!(skip_bytes(&batch, 4), vec![14..20, 30..40, 50..60]);
        assert_eq!(skip_bytes(&batch, 10), vec![30..40, 50..60]);
        assert_eq!(skip_bytes(&batch, 25), vec![55..60]);
        assert_eq!(skip_bytes(&batch, 30), Vec::<Range<u64>>::new());
    }
}
