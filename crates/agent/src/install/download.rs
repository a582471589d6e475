//! The streaming download: network → zstd decode → SHA-256 → inactive slot, in one
//! pass, on every core, with memory bounded by a few frames whatever the image size.
//!
//! The network task cuts the byte stream into payload frames (the manifest gives
//! their lengths) and queues them; decode workers each take a frame, decode it,
//! check its digest, and write it at its place in the slot. Nothing unverified is
//! ever written. Once a second the slot is synced and the count of frames done in
//! order is made durable, so an interrupted download resumes from there. Every byte
//! received goes to the [`Spool`] first, so a killed agent loses at most the frame it
//! was still receiving (see [`crate::install::spool::recover`]).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_payload::Manifest;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::AgentError;
use crate::client::Client;
use crate::install::seal::LeafStore;
use crate::install::spool::Spool;
use crate::stop::{StopReason, StopToken};

/// The queue of compressed frames the decode workers share.
type WorkQueue = Arc<Mutex<mpsc::Receiver<(usize, Vec<u8>)>>>;

/// Frames in flight per decode worker: bounds memory to about
/// `workers × (QUEUE_PER_WORKER + 1) × 2 × frame_size`.
const QUEUE_PER_WORKER: usize = 1;

/// How often the slot is synced and progress made durable.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// What the download did.
#[derive(Debug, Clone, Default)]
pub struct DownloadStats {
    /// Payload bytes received over the network in this run.
    pub bytes_downloaded: u64,
    /// Frame the run started at (non-zero on a resume).
    pub start_frame: usize,
    /// Wall time.
    pub elapsed: Duration,
}

/// Called with (frames done in order, payload bytes received so far in total) at each
/// durable checkpoint; it persists the resume point.
pub type Checkpoint<'a> = &'a mut (dyn FnMut(usize) -> Result<(), AgentError> + Send);

/// What the stream tells progress: bytes arriving, or a wait for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEvent {
    /// The payload offset reached.
    Received(u64),
    /// No byte has arrived for this long (reported once a second from [`WAIT_REPORT_AFTER`]
    /// on): a network that dropped or stalled, which the read timeout may still outlast.
    Waiting(Duration),
}

/// Called often with what the stream did, for progress.
pub type OnStream<'a> = &'a mut (dyn FnMut(StreamEvent) + Send);

/// Silence after which the stream reports that it waits for the network.
pub const WAIT_REPORT_AFTER: Duration = Duration::from_secs(2);

/// Streams frames `start_frame..` of the payload at `url` into `slot`, spooling what
/// arrives in `spool_dir` until it is in the slot. A stop asked on `stop` ends the stream
/// at once; the frames already queued are written, the slot synced and the checkpoint
/// recorded before it returns [`AgentError::Stopped`].
#[allow(clippy::too_many_arguments)]
pub async fn stream_into_slot(
    client: &Client,
    url: &str,
    manifest: Arc<Manifest>,
    leaves: Option<Arc<LeafStore>>,
    slot: &Path,
    spool_dir: &Path,
    start_frame: usize,
    checkpoint: Checkpoint<'_>,
    on_stream: OnStream<'_>,
    stop: &StopToken,
) -> Result<DownloadStats, AgentError> {
    let started = Instant::now();
    let n_frames = manifest.frames.len();
    let mut stats = DownloadStats {
        start_frame,
        ..Default::default()
    };
    if start_frame >= n_frames {
        return Ok(stats);
    }
    let file = Arc::new(
        OpenOptions::new()
            .write(true)
            .open(slot)
            .map_err(AgentError::io("opening the inactive slot", slot))?,
    );
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8);
    let (work_tx, work_rx) = mpsc::channel::<(usize, Vec<u8>)>(workers * QUEUE_PER_WORKER);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Result<usize, AgentError>>();
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            spawn_worker(
                manifest.clone(),
                leaves.clone(),
                file.clone(),
                slot.to_owned(),
                work_rx.clone(),
                done_tx.clone(),
            )
        })
        .collect();
    drop(done_tx);
    drop(work_rx);

    let mut spool = Spool::create(spool_dir);
    let result = drive(
        client,
        url,
        &manifest,
        &mut spool,
        start_frame,
        work_tx,
        &mut done_rx,
        &file,
        slot,
        checkpoint,
        on_stream,
        &mut stats,
        stop,
    )
    .await;
    // Workers end when the queue closes (drive dropped the sender); wait so no write
    // is still running when the caller decides what the slot holds.
    for h in handles {
        let _ = tokio::task::spawn_blocking(move || h.join()).await;
    }
    stats.elapsed = started.elapsed();
    if result.is_ok() {
        spool.finish();
    }
    result.map(|()| stats)
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    client: &Client,
    url: &str,
    manifest: &Manifest,
    spool: &mut Spool,
    start_frame: usize,
    work_tx: mpsc::Sender<(usize, Vec<u8>)>,
    done_rx: &mut mpsc::UnboundedReceiver<Result<usize, AgentError>>,
    file: &Arc<File>,
    slot: &Path,
    checkpoint: Checkpoint<'_>,
    on_stream: OnStream<'_>,
    stats: &mut DownloadStats,
    stop: &StopToken,
) -> Result<(), AgentError> {
    let n_frames = manifest.frames.len();
    let start_offset = manifest.frames[start_frame].offset;
    if let Some(reason) = stop.reason() {
        return Err(stopped(reason));
    }
    let stream_bytes = manifest.payload_size.saturating_sub(start_offset);
    let stream_started = Instant::now();
    let (response, body_offset) = tokio::select! {
        answer = client.stream_from(url, start_offset, stream_bytes) => answer?,
        reason = stop.stopped() => return Err(stopped(reason)),
    };
    let mut skip = start_offset - body_offset;
    let mut stream = response.bytes_stream();

    let mut done = vec![false; n_frames];
    let mut watermark = start_frame; // frames before this are written, in order
    let mut next_frame = start_frame; // next frame to cut from the stream
    let mut buf: Vec<u8> = Vec::with_capacity(manifest.frames[start_frame].len as usize);
    let mut received_offset = start_offset;
    let mut last_checkpoint = Instant::now();
    let mut work_tx = Some(work_tx);
    let mut stream_error: Option<String> = None;
    let mut timed_out = false;
    let mut stopped_by: Option<StopReason> = None;
    let mut pending_sync: Option<(tokio::task::JoinHandle<std::io::Result<()>>, usize)> = None;
    // When the last byte arrived, and when the next "waiting" report is due.
    let mut last_byte = Instant::now();
    let mut wait_report_at = last_byte + WAIT_REPORT_AFTER;

    'stream: while watermark < n_frames {
        // Take whatever decode results are ready without waiting.
        while let Ok(msg) = done_rx.try_recv() {
            mark_done(msg?, &mut done, &mut watermark);
        }
        spool.release_below(
            manifest
                .frames
                .get(watermark)
                .map_or(u64::MAX, |f| f.offset),
        );
        // Checkpoints overlap the stream: the slot syncs in the background, and the
        // watermark captured when the sync started is recorded once it is done.
        if pending_sync.as_ref().is_some_and(|(h, _)| h.is_finished())
            && let Some((handle, synced_watermark)) = pending_sync.take()
        {
            finish_sync(handle, slot).await?;
            checkpoint(synced_watermark)?;
        }
        if pending_sync.is_none() && last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
            let f = file.clone();
            pending_sync = Some((
                tokio::task::spawn_blocking(move || f.sync_data()),
                watermark,
            ));
            last_checkpoint = Instant::now();
        }
        if next_frame < n_frames {
            let next = tokio::select! {
                next = stream.next() => next,
                reason = stop.stopped() => {
                    stopped_by = Some(reason);
                    break 'stream;
                }
                () = tokio::time::sleep_until(wait_report_at.into()) => {
                    let silent = last_byte.elapsed();
                    if wait_report_at == last_byte + WAIT_REPORT_AFTER {
                        tracing::info!(received_offset, "no payload byte for 2 s: waiting for the network");
                    }
                    on_stream(StreamEvent::Waiting(silent));
                    wait_report_at += Duration::from_secs(1);
                    continue 'stream;
                }
            };
            let Some(chunk) = next else {
                stream_error.get_or_insert_with(|| "the connection closed".into());
                break 'stream;
            };
            let mut chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    timed_out = e.is_timeout();
                    stream_error = Some(e.to_string());
                    break 'stream;
                }
            };
            stats.bytes_downloaded += chunk.len() as u64;
            let silent = last_byte.elapsed();
            if silent >= WAIT_REPORT_AFTER {
                tracing::info!(
                    received_offset,
                    silent_secs = silent.as_secs_f64(),
                    "payload bytes arrive again"
                );
            }
            last_byte = Instant::now();
            wait_report_at = last_byte + WAIT_REPORT_AFTER;
            if skip > 0 {
                let n = skip.min(chunk.len() as u64) as usize;
                skip -= n as u64;
                let _ = chunk.split_to(n);
            }
            // Spooled before anything else, so a kill from here on costs nothing
            // that arrived.
            spool.append(received_offset, &chunk);
            received_offset += chunk.len() as u64;
            on_stream(StreamEvent::Received(received_offset));
            let mut rest: &[u8] = &chunk;
            while !rest.is_empty() && next_frame < n_frames {
                let want = manifest.frames[next_frame].len as usize - buf.len();
                let take = want.min(rest.len());
                buf.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if buf.len() == manifest.frames[next_frame].len as usize {
                    let next_len = manifest
                        .frames
                        .get(next_frame + 1)
                        .map_or(0, |f| f.len as usize);
                    let frame = std::mem::replace(&mut buf, Vec::with_capacity(next_len));
                    let Some(tx) = work_tx.as_ref() else {
                        break 'stream;
                    };
                    if tx.send((next_frame, frame)).await.is_err() {
                        // Every worker has stopped: one of them reported why.
                        stream_error = Some("the decode workers stopped".into());
                        break 'stream;
                    }
                    next_frame += 1;
                }
            }
            if next_frame == n_frames {
                work_tx = None; // close the queue: workers finish what is queued
            }
        } else {
            match done_rx.recv().await {
                Some(msg) => mark_done(msg?, &mut done, &mut watermark),
                None => break 'stream,
            }
        }
    }
    drop(work_tx);
    // Collect what the workers finished (or the error that stopped them).
    while let Some(msg) = done_rx.recv().await {
        mark_done(msg?, &mut done, &mut watermark);
    }
    if let Some((handle, _)) = pending_sync.take() {
        finish_sync(handle, slot).await?;
    }
    sync_and_checkpoint(file, slot, watermark, checkpoint).await?;
    if let Some(reason) = stopped_by.filter(|_| watermark < n_frames) {
        tracing::info!(?reason, watermark, "the download stopped as asked");
        return Err(stopped(reason));
    }
    if watermark < n_frames {
        let expected = manifest.payload_size;
        tracing::warn!(
            received_offset,
            expected,
            reason = stream_error.as_deref().unwrap_or("?"),
            "payload stream ended early"
        );
        if timed_out {
            return Err(client.stream_failed(
                url,
                stream_started,
                stream_bytes,
                received_offset,
                expected,
            ));
        }
        return Err(AgentError::PayloadTruncated {
            received: received_offset,
            expected,
        });
    }
    Ok(())
}

/// The download's error when it was stopped for `reason`.
pub fn stopped(reason: StopReason) -> AgentError {
    AgentError::Stopped {
        reason,
        what: "download".into(),
        state: crate::machines::controller::State::DOWNLOADING_UPDATE.name(),
    }
}

fn mark_done(idx: usize, done: &mut [bool], watermark: &mut usize) {
    done[idx] = true;
    while *watermark < done.len() && done[*watermark] {
        *watermark += 1;
    }
}

async fn finish_sync(
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
    slot: &Path,
) -> Result<(), AgentError> {
    handle
        .await
        .map_err(|e| AgentError::Io {
            op: "syncing the slot",
            path: slot.to_owned(),
            source: std::io::Error::other(e),
        })?
        .map_err(AgentError::io("syncing the slot", slot))
}

async fn sync_and_checkpoint(
    file: &Arc<File>,
    slot: &Path,
    watermark: usize,
    checkpoint: Checkpoint<'_>,
) -> Result<(), AgentError> {
    let f = file.clone();
    let path: PathBuf = slot.to_owned();
    tokio::task::spawn_blocking(move || f.sync_data())
        .await
        .map_err(|e| AgentError::Io {
            op: "syncing the slot",
            path: path.clone(),
            source: std::io::Error::other(e),
        })?
        .map_err(AgentError::io("syncing the slot", path))?;
    checkpoint(watermark)
}

fn spawn_worker(
    manifest: Arc<Manifest>,
    leaves: Option<Arc<LeafStore>>,
    file: Arc<File>,
    slot: PathBuf,
    work_rx: WorkQueue,
    done_tx: mpsc::UnboundedSender<Result<usize, AgentError>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut out = Vec::with_capacity(manifest.frame_size as usize + 1);
        loop {
            let next = match work_rx.lock() {
                Ok(mut rx) => rx.blocking_recv(),
                Err(_) => None,
            };
            let Some((idx, compressed)) = next else {
                return;
            };
            let result = ferry_payload::decode_frame(&manifest, idx, &compressed, &mut out)
                .map_err(AgentError::from)
                .and_then(|()| {
                    if let Some(leaves) = &leaves {
                        leaves.record(idx, &out);
                    }
                    file.write_all_at(&out, manifest.frame_image_offset(idx))
                        .map_err(AgentError::io("writing the inactive slot", &slot))
                });
            let failed = result.is_err();
            if done_tx.send(result.map(|()| idx)).is_err() || failed {
                return;
            }
        }
    })
}

/// Checks the first `manifest.image_size` bytes of `slot` frame by frame against the
/// manifest, on every core. Returns the first bad frame's error.
pub fn verify_slot(
    slot: &Path,
    manifest: &Manifest,
    on_progress: &(dyn Fn(u64) + Sync),
) -> Result<(), AgentError> {
    let file = File::open(slot).map_err(AgentError::io("opening a slot", slot))?;
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8);
    let n_frames = manifest.frames.len();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let verified = std::sync::atomic::AtomicU64::new(0);
    let first_error: Mutex<Option<(usize, AgentError)>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let mut buf = vec![0u8; manifest.frame_size as usize];
                loop {
                    let idx = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if idx >= n_frames || first_error.lock().map(|e| e.is_some()).unwrap_or(true) {
                        return;
                    }
                    let len = manifest.frame_len(idx);
                    let result = file
                        .read_exact_at(&mut buf[..len], manifest.frame_image_offset(idx))
                        .map_err(AgentError::io("reading a slot", slot))
                        .and_then(|()| {
                            let actual = ferry_types::Sha256::of(&buf[..len]);
                            let expected = manifest.frames[idx].sha256;
                            if actual == expected {
                                Ok(())
                            } else {
                                Err(AgentError::DigestMismatch {
                                    what: format!(
                                        "block range {idx} of the slot (bytes {}..)",
                                        manifest.frame_image_offset(idx)
                                    ),
                                    expected,
                                    actual,
                                })
                            }
                        });
                    match result {
                        Ok(()) => {
                            let v = verified
                                .fetch_add(len as u64, std::sync::atomic::Ordering::Relaxed)
                                + len as u64;
                            on_progress(v);
                        }
                        Err(e) => {
                            if let Ok(mut slot_err) = first_error.lock()
                                && slot_err.as_ref().is_none_or(|(i, _)| idx < *i)
                            {
                                *slot_err = Some((idx, e));
                            }
                            return;
                        }
                    }
                }
            });
        }
    });
    match first_error.into_inner() {
        Ok(Some((_, e))) => Err(e),
        Ok(None) => Ok(()),
        Err(_) => Err(AgentError::Io {
            op: "verifying a slot",
            path: slot.to_owned(),
            source: std::io::Error::other("a verifier thread panicked"),
        }),
    }
}
