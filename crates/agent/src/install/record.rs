//! The install record, `cache/install.json`: what an install in progress has made
//! durable, so the next run resumes it (the controller reads it in LOADING_PERSISTED,
//! the payload attempts update it as they go). A staged update (`ferry download`) is a
//! record whose slot is complete and sealed (`sealed`), waiting for an install.

use ferry_boot::Slot;
use ferry_types::{Sha256, Version};
use serde::{Deserialize, Serialize};

use chrono::{DateTime, Utc};

use crate::device::{PayloadKind, SlotSeal};
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
    /// When the ticket stored beside the slot was obtained (a staged update's ticket is
    /// refreshed once older than the policy allows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_at: Option<DateTime<Utc>>,
    /// Set once a download-only run has verified and sealed the slot (the update is
    /// staged): the seal Apply records, when an install applies it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<SlotSeal>,
}

fn full() -> PayloadKind {
    PayloadKind::Full
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_install_record_written_with_string_kinds_still_parses() {
        let old = r#"{"update_id":"6f1c9a52-3b0e-5d7a-8c11-2e4f90ab7d33","version":"2.0",
            "manifest_sha256":"0000000000000000000000000000000000000000000000000000000000000000",
            "slot":"b","frames_done":0,"bytes_downloaded":4096,"payload_kind":"full",
            "bytes_reused":0,"fallback":{"code":"CHUNK_CORRUPT","cause":"c","fix":"f"},
            "fallback_from":"chunks","chunks":{"index_sha256":
            "0000000000000000000000000000000000000000000000000000000000000000","n_batches":2,
            "batches_done":1,"bytes_downloaded":4096,"multi_range":true,"abandoned":true}}"#;
        let record: InstallProgress = serde_json::from_str(old).unwrap();
        assert_eq!(record.payload_kind, PayloadKind::Full);
        assert_eq!(record.fallback_from, Some(PayloadKind::Chunks));
        let again = serde_json::to_value(&record).unwrap();
        assert_eq!(
            (&again["payload_kind"], &again["fallback_from"]),
            (&serde_json::json!("full"), &serde_json::json!("chunks"))
        );
        // Records from before the kinds existed.
        let older = old
            .replace(r#""payload_kind":"full","#, "")
            .replace(r#""fallback_from":"chunks","#, "");
        let record: InstallProgress = serde_json::from_str(&older).unwrap();
        assert_eq!(
            (record.payload_kind, record.fallback_from),
            (PayloadKind::Full, None)
        );
    }
}
