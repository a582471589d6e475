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
//!
//! A connection that stalls past the read timeout or is cut is asked for again in the
//! same run, from the byte it reached (a `Range` request; the frame being received stays
//! in memory and in the spool), after a back-off of up to 1, 2, 4… s, at least half of it
//! ([`Retry::backoff`]): up to `download_retries` times in a row, the count starting
//! afresh once a retry brought a whole frame. The wait, its reason and its countdown go to
//! the progress stream ([`Flow::retry`]). A stream slower than its overall deadline is not
//! retried.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_payload::Manifest;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::AgentError;
use crate::client::Client;
use crate::install::seal::LeafStore;
use crate::install::spool::Spool;
use crate::progress::Retry;
use crate::stop::{StopReason, StopToken};

/// The queue of compressed frames the decode workers share.
type WorkQueue = Arc<Mutex<mpsc::Receiver<(usize, Vec<u8>)>>>;

/// Frames in flight per decode worker: bounds memory to about
/// `workers × (QUEUE_PER_WORKER + 1) × 2 × frame_size`.
const QUEUE_PER_WORKER: usize = 1;

/// How long the stream may be silent before where it stands is reported again.
const IDLE_REPORT: Duration = Duration::from_millis(300);

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

/// Where the download stands, for progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// The payload offset reached.
    pub received: u64,
    /// Image bytes decoded and written to the slot (this run's and earlier runs').
    pub written: u64,
    /// The stream now waits on the slot (the decode workers' queue is full, or the final
    /// writes and sync) rather than on the network.
    pub slot_busy: bool,
    /// The connection was lost and the download waits to ask again (or is asking).
    pub retry: Option<Retry>,
}

/// Called often with where the download stands.
pub type OnBytes<'a> = &'a mut (dyn FnMut(Flow) + Send);

/// Streams frames `start_frame..` of the payload at `url` into `slot`, spooling what
/// arrives in `spool_dir` until it is in the slot; a lost connection is asked for again up
/// to `retries` times in a row (see the module docs). A stop asked on `stop` ends the
/// stream at once; the frames already queued are written, the slot synced and the
/// checkpoint recorded before it returns [`AgentError::Stopped`].
#[allow(clippy::too_many_arguments)]
pub async fn stream_into_slot(
    client: &Client,
    url: &str,
    retries: u32,
    manifest: Arc<Manifest>,
    leaves: Option<Arc<LeafStore>>,
    slot: &Path,
    spool_dir: &Path,
    start_frame: usize,
    checkpoint: Checkpoint<'_>,
    on_bytes: OnBytes<'_>,
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
    let written = Arc::new(AtomicU64::new(manifest.frame_image_offset(start_frame)));
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            spawn_worker(
                manifest.clone(),
                leaves.clone(),
                file.clone(),
                slot.to_owned(),
                work_rx.clone(),
                (done_tx.clone(), written.clone()),
            )
        })
        .collect();
    drop(done_tx);
    drop(work_rx);

    let mut spool = Spool::create(spool_dir);
    let result = drive(
        client,
        (url, retries),
        &manifest,
        &mut spool,
        start_frame,
        work_tx,
        &mut done_rx,
        &file,
        slot,
        checkpoint,
        &mut |received, slot_busy, retry| {
            on_bytes(Flow {
                received,
                written: written.load(Ordering::Relaxed),
                slot_busy,
                retry,
            });
        },
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
    (url, retries): (&str, u32),
    manifest: &Manifest,
    spool: &mut Spool,
    start_frame: usize,
    work_tx: mpsc::Sender<(usize, Vec<u8>)>,
    done_rx: &mut mpsc::UnboundedReceiver<Result<usize, AgentError>>,
    file: &Arc<File>,
    slot: &Path,
    checkpoint: Checkpoint<'_>,
    on_bytes: &mut (dyn FnMut(u64, bool, Option<Retry>) + Send),
    stats: &mut DownloadStats,
    stop: &StopToken,
) -> Result<(), AgentError> {
    let n_frames = manifest.frames.len();
    let start_offset = manifest.frames[start_frame].offset;
    if let Some(reason) = stop.reason() {
        return Err(stopped(reason));
    }
    let mut stream_bytes = manifest.payload_size.saturating_sub(start_offset);
    let mut stream_started = Instant::now();
    let (response, body_offset) = tokio::select! {
        answer = client.stream_from(url, start_offset, stream_bytes) => answer?,
        reason = stop.stopped() => return Err(stopped(reason)),
    };
    let mut skip = start_offset - body_offset;
    let mut stream = Some(response.bytes_stream());
    // Waiting to ask again after a lost connection, the retries in a row so far, and the
    // frame the last retry started from (a whole frame since starts the count afresh).
    let mut retry: Option<Retry> = None;
    let mut in_row = 0u32;
    let mut retried_at_frame = start_frame;
    let mut reopen_error: Option<AgentError> = None;

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
            let Some(body) = stream.as_mut() else {
                // The connection was lost: wait out the back-off, then ask again.
                let Some(wait) = retry.clone() else {
                    break 'stream;
                };
                let now = Instant::now();
                if let Some(at) = wait.at.filter(|at| *at > now) {
                    on_bytes(received_offset, false, Some(wait));
                    tokio::select! {
                        () = tokio::time::sleep((at - now).min(Duration::from_millis(250))) => {}
                        reason = stop.stopped() => {
                            stopped_by = Some(reason);
                            break 'stream;
                        }
                    }
                    continue 'stream;
                }
                on_bytes(received_offset, false, Some(Retry { at: None, ..wait }));
                let bytes = manifest.payload_size.saturating_sub(received_offset);
                let answer = tokio::select! {
                    answer = client.stream_from(url, received_offset, bytes) => answer,
                    reason = stop.stopped() => {
                        stopped_by = Some(reason);
                        break 'stream;
                    }
                };
                match answer {
                    Ok((response, body_offset)) => {
                        tracing::info!(received_offset, "the download asked again and goes on");
                        skip = received_offset - body_offset;
                        stream = Some(response.bytes_stream());
                        stream_started = Instant::now();
                        stream_bytes = bytes;
                        retry = None;
                        on_bytes(received_offset, false, None);
                    }
                    Err(e) if retriable(&e) && in_row < retries => {
                        in_row += 1;
                        tracing::warn!(received_offset, error = %e, retry = in_row, "asking for the download again failed");
                        retry = Some(Retry {
                            reason: short_reason(&e),
                            attempt: in_row,
                            of: retries,
                            at: Some(Instant::now() + Retry::backoff(in_row)),
                        });
                    }
                    Err(e) => {
                        reopen_error = Some(e);
                        break 'stream;
                    }
                }
                continue 'stream;
            };
            let next = tokio::select! {
                next = body.next() => next,
                reason = stop.stopped() => {
                    stopped_by = Some(reason);
                    break 'stream;
                }
                // No byte for a while: say where the download stands (the last bytes may
                // have come within the meter's rate limit, unreported) and keep the
                // checkpoints going.
                () = tokio::time::sleep(IDLE_REPORT) => {
                    on_bytes(received_offset, false, None);
                    continue 'stream;
                }
            };
            let lost = match &next {
                None => Some((false, "the connection closed".to_owned())),
                Some(Err(e)) => Some((e.is_timeout(), e.to_string())),
                Some(Ok(_)) => None,
            };
            if let Some((timeout, error)) = lost {
                // A stream past its overall deadline is too slow to be worth asking again.
                let too_slow =
                    timeout && stream_started.elapsed() >= client.stream_deadline(stream_bytes);
                if next_frame > retried_at_frame {
                    in_row = 0;
                }
                if !too_slow && in_row < retries {
                    in_row += 1;
                    retried_at_frame = next_frame;
                    let reason = if timeout {
                        format!(
                            "the connection timed out after {} s without a byte",
                            client.read_timeout().as_secs()
                        )
                    } else {
                        error.clone()
                    };
                    tracing::warn!(received_offset, %error, retry = in_row, "the download lost its connection; asking again");
                    retry = Some(Retry {
                        reason,
                        attempt: in_row,
                        of: retries,
                        at: Some(Instant::now() + Retry::backoff(in_row)),
                    });
                    stream = None;
                    continue 'stream;
                }
                timed_out = timeout;
                stream_error = Some(error);
                break 'stream;
            }
            let Some(Ok(mut chunk)) = next else {
                break 'stream;
            };
            stats.bytes_downloaded += chunk.len() as u64;
            if skip > 0 {
                let n = skip.min(chunk.len() as u64) as usize;
                skip -= n as u64;
                let _ = chunk.split_to(n);
            }
            // Spooled before anything else, so a kill from here on costs nothing
            // that arrived.
            spool.append(received_offset, &chunk);
            received_offset += chunk.len() as u64;
            on_bytes(received_offset, false, None);
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
                    let sent = match tx.try_send((next_frame, frame)) {
                        Ok(()) => Ok(()),
                        Err(mpsc::error::TrySendError::Full(item)) => {
                            // The slot is the bottleneck now, not the network.
                            on_bytes(received_offset, true, None);
                            tx.send(item).await.map_err(|_| ())
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
                    };
                    if sent.is_err() {
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
                Some(msg) => {
                    mark_done(msg?, &mut done, &mut watermark);
                    on_bytes(received_offset, true, None);
                }
                None => break 'stream,
            }
        }
    }
    drop(work_tx);
    let failed = stream_error.is_some() || reopen_error.is_some();
    if stopped_by.is_none() && !failed {
        on_bytes(received_offset, true, None); // the last frames are written, then the slot synced
    }
    // Collect what the workers finished (or the error that stopped them).
    while let Some(msg) = done_rx.recv().await {
        mark_done(msg?, &mut done, &mut watermark);
        on_bytes(received_offset, !failed, None);
    }
    if let Some((handle, _)) = pending_sync.take() {
        finish_sync(handle, slot).await?;
    }
    sync_and_checkpoint(file, slot, watermark, checkpoint).await?;
    if let Some(reason) = stopped_by.filter(|_| watermark < n_frames) {
        tracing::info!(?reason, watermark, "the download stopped as asked");
        return Err(stopped(reason));
    }
    if let Some(e) = reopen_error.filter(|_| watermark < n_frames) {
        tracing::warn!(received_offset, error = %e, "the download could not be asked for again");
        return Err(e);
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

/// Whether asking for the payload again failed in a way the network may mend (the server
/// unreachable, a timeout, a server error or rate limit), so it is worth another wait.
fn retriable(error: &AgentError) -> bool {
    match error {
        AgentError::ServerUnreachable { .. }
        | AgentError::NetworkTimeout { .. }
        | AgentError::Overloaded { .. } => true,
        AgentError::ServerRefused { status, .. } => *status >= 500 || matches!(status, 408 | 429),
        _ => false,
    }
}

/// What stopped a retry from reaching the server, short enough for the bar.
fn short_reason(error: &AgentError) -> String {
    match error {
        AgentError::ServerRefused { status, .. } | AgentError::Overloaded { status, .. } => {
            format!("asking again, the server answered {status}")
        }
        AgentError::NetworkTimeout { .. } => "asking again, no answer came".into(),
        _ => "asking again, the server could not be reached".into(),
    }
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
    (done_tx, written): (
        mpsc::UnboundedSender<Result<usize, AgentError>>,
        Arc<AtomicU64>,
    ),
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
                        .map_err(AgentError::io("writing the inactive slot", &slot))?;
                    crate::install::pace::slot_io(out.len() as u64);
                    written.fetch_add(out.len() as u64, Ordering::Relaxed);
                    Ok(())
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
                            crate::install::pace::slot_io(len as u64);
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
