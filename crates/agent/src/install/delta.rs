//! Installing through a tailored delta: the delta streams from the server and is
//! applied as it arrives, reading the running slot as its reference (read-only) and
//! writing the inactive slot in order. `ferry-delta` checks the delta's head against the
//! pin the catalog signs (MANIFEST_MISMATCH) and the base (BASE_MISMATCH) before it writes a
//! byte, and every output window before it is written; the caller then verifies the whole slot
//! against the full manifest and the seal, so a delta can never produce a bootable slot
//! the release did not name.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use ferry_types::{DeltaDigest, Sha256, Sha256Hasher};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::AgentError;
use crate::client::{Artifact, Client};
use crate::install::pace::CountedSlot;

/// What a delta install did.
#[derive(Debug, Clone, Copy)]
pub struct DeltaOutcome {
    /// Delta bytes fetched.
    pub bytes_downloaded: u64,
    /// Bytes of the running slot reused.
    pub bytes_reused: u64,
}

/// Streams the delta at `artifact` and applies it from `reference` into `slot`, refusing
/// (`MANIFEST_MISMATCH`, nothing written) a delta whose head is not the one `pin` names.
pub async fn apply(
    client: &Client,
    artifact: &Artifact,
    pin: DeltaDigest,
    reference: &Path,
    slot: &Path,
    on_bytes: &mut (dyn FnMut(u64) + Send),
    on_written: &mut (dyn FnMut(u64) + Send),
) -> Result<DeltaOutcome, AgentError> {
    let started = std::time::Instant::now();
    let (response, start) = client.stream_from(&artifact.url, 0, artifact.size).await?;
    if start != 0 {
        return Err(AgentError::ServerInvalid {
            url: artifact.url.clone(),
            reason: "the delta did not start at byte 0".into(),
        });
    }
    let reference_file =
        File::open(reference).map_err(AgentError::io("opening the running slot", reference))?;
    let slot_file = OpenOptions::new()
        .write(true)
        .open(slot)
        .map_err(AgentError::io("opening the inactive slot", slot))?;
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let written = Arc::new(AtomicU64::new(0));
    let counted = written.clone();
    let mut apply = tokio::task::spawn_blocking(move || {
        let mut sink = CountedSlot::new(slot_file, counted);
        let reader = ChannelReader {
            rx,
            current: Bytes::new(),
        };
        let report = ferry_delta::apply_any(
            &reference_file,
            reader,
            &mut sink,
            &ferry_delta::ApplyOptions {
                expected_manifest_digest: Some(pin.0),
                ..ferry_delta::ApplyOptions::default()
            },
        );
        let synced = sink.file().sync_data();
        (report, synced)
    });
    let mut hasher = Sha256Hasher::new();
    let mut received = 0u64;
    let mut stream = response.bytes_stream();
    let mut stream_error = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => {
                received += chunk.len() as u64;
                hasher.update(&chunk);
                on_bytes(received);
                on_written(written.load(Ordering::Relaxed));
                if tx.send(chunk).await.is_err() {
                    break; // the apply stopped early; its error says why
                }
            }
            Err(e) => {
                stream_error = Some(e.is_timeout());
                break;
            }
        }
    }
    drop(tx);
    // The apply goes on after the last byte arrived (a tailored delta is small, the
    // image is not): its bytes written are the measured work until it ends.
    let mut every = tokio::time::interval(std::time::Duration::from_millis(250));
    let joined = loop {
        tokio::select! {
            joined = &mut apply => break joined,
            _ = every.tick() => on_written(written.load(Ordering::Relaxed)),
        }
    };
    on_written(written.load(Ordering::Relaxed));
    let (report, synced) = joined.map_err(|e| AgentError::Io {
        op: "applying the delta",
        path: slot.to_owned(),
        source: std::io::Error::other(e),
    })?;
    let report = report.map_err(AgentError::Delta);
    if let Some(timed_out) = stream_error {
        // A cut stream surfaces in the apply as a short read; name it for what it is.
        if timed_out {
            return Err(client.stream_failed(
                &artifact.url,
                started,
                artifact.size,
                received,
                artifact.size,
            ));
        }
        return Err(AgentError::PayloadTruncated {
            received,
            expected: artifact.size,
        });
    }
    let report = report?;
    if received < artifact.size {
        return Err(AgentError::PayloadTruncated {
            received,
            expected: artifact.size,
        });
    }
    synced.map_err(AgentError::io("syncing the inactive slot", slot))?;
    let actual: Sha256 = hasher.finish();
    if actual != artifact.sha256 {
        return Err(AgentError::DigestMismatch {
            what: "the delta".into(),
            expected: artifact.sha256,
            actual,
        });
    }
    Ok(DeltaOutcome {
        bytes_downloaded: received,
        bytes_reused: report.reference_bytes_read,
    })
}

/// A blocking `Read` over chunks sent from the async side.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}
