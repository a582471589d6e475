//! Tailored deltas between OS images, and chunk reuse for devices with no tailored delta.
//!
//! A device streams an update into its inactive slot while the running slot stays intact.
//! When the catalog has a delta from the exact version the device runs, [`apply_delta`]
//! rebuilds the new image from the running slot (read-only, positioned reads) and the delta as
//! it arrives. Otherwise [`plan_reuse`] finds which chunks of the full payload the running slot
//! already holds, at any 4 KiB offset, returns the payload byte ranges to fetch, and
//! [`assemble`] writes the image from reused and downloaded chunks.
//!
//! # The delta format (`ferry-delta-2`)
//!
//! The new image is a sequence of 4 KiB blocks, each either *copied* from any 4 KiB-aligned
//! block of the base (found by hash), *zero*, or *literal*. Literal blocks are concatenated in
//! image order and cut into segments (32 MiB by default); each segment is one zstd frame whose
//! *reference prefix* is a set of base extents that resemble it, found by content-defined
//! anchors (a gear hash, one anchor per ~64 bytes) voting for base blocks. That is
//! `zstd --patch-from` with a reference chosen per segment instead of the whole base, so the
//! device never holds the base in memory.
//!
//! ```text
//! "FERRYDL1" | u32 LE len | manifest JSON | blake3(manifest) | tables (zstd) | segment frames…
//! tables: base extents read (digest in manifest) | blake3 per 1 MiB output window |
//!         ops (copy n from block b | zero n | literal n) | segments (lengths, blake3, reference extents)
//! ```
//!
//! Before the first byte reaches the sink, the apply checks the manifest digest (and the one
//! the catalog pins, [`ApplyOptions::expected_manifest_digest`], which [`pinned_digest`] reads
//! from a delta's head), the tables digest, every
//! memory limit, and the blake3 of all base bytes the delta will read: a delta for another
//! base fails with `BASE_MISMATCH` and nothing written. Every 1 MiB output window is checked
//! against its digest before it is handed to the [`SlotSink`], so a corrupted delta byte ends
//! in `DELTA_CORRUPT` or `DIGEST_MISMATCH`, never in wrong bytes in the slot.
//!
//! Memory bound of the apply: one output window (1 MiB), one decompressed segment (≤ 32 MiB),
//! its compressed frame (≤ 32 MiB), its reference (≤ 96 MiB) and the tables (≤ 16 MiB):
//! [`ApplyOptions::memory_bound`], about 210 MiB with the default limits, whatever the image size; the report's
//! `peak_buffer_bytes` says what an apply really held.
//!
//! # Below the compression (squashfs)
//!
//! [`encode_expanded`] diffs a compressed filesystem's decompressed blocks and
//! [`apply_any`] re-compresses them on the device, copying unchanged blocks; see
//! [`ExpandedView`] and the `expand` module docs. Memory beyond the plain apply: eight
//! decompressed blocks cached and one block being re-compressed (≤ 9 MiB).
//!
//! # The payload index (chunk reuse)
//!
//! See [`PayloadIndex`]: the image is cut into extents; runs of blocks found in a *hint*
//! image (the releases devices run now) are one chunk each, blocks found nowhere are grouped
//! into large "fresh" chunks (32 MiB), each chunk one zstd frame in the payload, fresh chunks
//! first so that a device on the hinted release fetches one contiguous range.
//!
//! # Example
//!
//! ```
//! use ferry_delta::{ApplyOptions, EncodeOptions, apply_delta, encode_delta_bytes};
//! # fn main() -> Result<(), ferry_delta::Error> {
//! let old: Vec<u8> = (0..64 * 4096u32).map(|i| (i * 7 % 251) as u8).collect();
//! let mut new = old.clone();
//! new[5000..5100].fill(42); // one block changed
//! let mut delta = Vec::new();
//! let manifest = encode_delta_bytes(&old, &new, &mut delta, &EncodeOptions::default())?;
//! assert_eq!(manifest.copy_blocks, 63);
//!
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("slot-a.img");
//! # std::fs::write(&path, &old).unwrap();
//! let running_slot = std::fs::File::open(&path).unwrap();
//! let mut inactive_slot = Vec::new(); // any SlotSink: a File, a hashing writer, …
//! let opts = ApplyOptions { expected_manifest_digest: Some(manifest.digest()), ..Default::default() };
//! apply_delta(&running_slot, &delta[..], &mut inactive_slot, &opts)?;
//! assert_eq!(inactive_slot, new);
//! # Ok(()) }
//! ```
//!
//! # Tests
//!
//! `cargo test --release` runs unit tests, proptest round trips over synthetic images
//! (insertions, moved runs, flipped blocks; `tests/delta_round_trip.rs`), wrong-base and
//! corruption tests that assert nothing wrong reaches the sink (`tests/base_mismatch.rs`,
//! `tests/corrupt_delta.rs`) and planner/assembler round trips with resume
//! (`tests/chunk_reuse.rs`). `bench/deltas` measures sizes and times on the real corpus.
#![deny(missing_docs)]

mod apply;
mod encode;
mod error;
mod expand;
mod format;
mod index;
mod reuse;
mod similar;

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

pub use apply::{ApplyOptions, ApplyReport, apply_delta};
pub use encode::{EncodeOptions, encode_delta, encode_delta_bytes};
pub use error::{Error, Result};
pub use expand::{
    EXPANDED_MAGIC, ExpandedView, Layout, apply_any, encode_expanded, pinned_digest, scan_layout,
};
pub use format::{BLOCK_SIZE, DELTA_FORMAT, DELTA_MAGIC, DeltaManifest};
pub use index::{
    Chunk, Extent, INDEX_MAGIC, IndexOptions, PayloadIndex, build_payload, build_payload_bytes,
};
pub use reuse::{
    AssembleReport, ChunkSource, PlanOptions, RangeFile, ReusePlan, assemble, plan_reuse,
};

/// What a delta is applied against: the running slot, or a view of it
/// ([`ExpandedView`] shows a compressed filesystem with its blocks decompressed).
pub trait Reference {
    /// Fills `buf` with the bytes at `offset`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// The size when it binds: a regular file's length. `None` for a block device (whose
    /// slot is usually larger than the image it holds) or a view.
    fn binding_size(&self) -> io::Result<Option<u64>>;
}

impl Reference for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }

    fn binding_size(&self) -> io::Result<Option<u64>> {
        let meta = self.metadata()?;
        Ok(meta.is_file().then_some(meta.len()))
    }
}

/// Where rebuilt image bytes go: the caller hashes, seals or writes the slot its own way.
///
/// Every producer in this crate calls `write_at` with verified bytes, in increasing offset
/// order, each offset written once.
pub trait SlotSink {
    /// Writes `data` at `offset` of the new slot.
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
}

impl SlotSink for File {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.write_all_at(data, offset)
    }
}

impl SlotSink for Vec<u8> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let end = offset as usize + data.len();
        if self.len() < end {
            self.resize(end, 0);
        }
        self[offset as usize..end].copy_from_slice(data);
        Ok(())
    }
}
