//! The install record, `cache/install.json`: what an install in progress has made
//! durable, so the next run resumes it (the controller reads it in LOADING_PERSISTED,
//! the payload attempts update it as they go).

use ferry_boot::Slot;
use ferry_types::{Sha256, Version};
use serde::{Deserialize, Serialize};

use crate::device::PayloadKind;
use crate::install::chunks::ChunkProgress;

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
    pub payload_kind: PayloadKind,
    /// Bytes of the running slot the delta or chunk reuse reused.
    #[serde(default)]
    pub bytes_reused: u64,
    /// Why the tailored delta or chunk reuse was abandoned, if it was: the install then
    /// uses the next payload (chunks, then full), and says so.
    #[serde(default)]
    pub fallback: Option<ferry_types::Report>,
    /// Which payload the fallback left (`delta` or `chunks`).
    #[serde(default)]
    pub fallback_from: Option<PayloadKind>,
    /// The chunk-reuse attempt, once begun: batches done, bytes, whether abandoned.
    #[serde(default)]
    pub chunks: Option<ChunkProgress>,
}

impl InstallProgress {
    /// Whether a chunk-reuse attempt is under way (begun, not finished, not abandoned):
    /// the slot then holds nothing of the full payload's frames to resume from.
    pub fn chunks_in_progress(&self) -> bool {
        self.frames_done == 0 && self.chunks.as_ref().is_some_and(|c| !c.abandoned)
    }
}

fn full() -> PayloadKind {
    PayloadKind::Full
}
