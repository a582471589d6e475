//! ferry's payload format: a system image cut into fixed-size frames, each frame
//! compressed as an independent zstd frame, plus a [`Manifest`] that lists every
//! frame's place in the payload and the SHA-256 of its decoded bytes.
//!
//! Concatenated zstd frames are one valid zstd stream, so `zstd -d payload.zst`
//! gives back the image; ferry departs from a plain `.zst` only by adding the
//! manifest beside it. Independent frames are what make the rest possible:
//!
//! - encoding uses every core (frames compress in parallel);
//! - a device decodes frames on every core as bytes arrive and verifies each one
//!   against its digest before it is written, so nothing unverified reaches a slot;
//! - an interrupted download resumes at the first frame not yet in the slot, with
//!   an HTTP range request starting at that frame's offset.
//!
//! ```
//! use ferry_payload::{encode, decode_frame, EncodeOptions};
//! let image = vec![7u8; 3 * 4096];
//! let mut payload = Vec::new();
//! let manifest = encode(&image[..], &mut payload, &EncodeOptions { frame_size: 4096, level: 3 }).unwrap();
//! assert_eq!(manifest.frames.len(), 3);
//! let f = &manifest.frames[1];
//! let bytes = &payload[f.offset as usize..(f.offset + f.len as u64) as usize];
//! let mut out = Vec::new();
//! decode_frame(&manifest, 1, bytes, &mut out).unwrap();
//! assert_eq!(out, vec![7u8; 4096]);
//! ```
//!
//! Tests: `cargo test -p ferry-payload` (round trips, tampering, manifest checks).
#![deny(missing_docs)]

mod encode;
mod error;
mod manifest;

pub use encode::{EncodeOptions, decode_frame, encode};
pub use error::PayloadError;
pub use manifest::{FORMAT, Frame, Manifest, PayloadKind, SealRef};
