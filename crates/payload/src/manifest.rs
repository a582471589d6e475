use ferry_types::{Sha256, Version};
use serde::{Deserialize, Serialize};

use crate::PayloadError;

/// Format tag written into every manifest.
pub const FORMAT: &str = "ferry-payload/1";

/// The largest frame size a manifest may declare (bounds decoder memory).
const MAX_FRAME_SIZE: u32 = 64 << 20;

/// What a payload rebuilds the image from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PayloadKind {
    /// The whole image; needs nothing on the device.
    Full,
}

/// One frame: where its compressed bytes sit in the payload, and what they decode to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// Byte offset of the compressed frame in the payload.
    pub offset: u64,
    /// Compressed length.
    pub len: u32,
    /// SHA-256 of the decoded bytes.
    pub sha256: Sha256,
}

/// The dm-verity seal of the image a payload rebuilds: its root hash and salt (the
/// tree itself is rebuilt on the device, in the pass that writes the slot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealRef {
    /// Root hash of the image's dm-verity tree.
    pub root_hash: ferry_types::RootHash,
    /// The salt it was built with.
    pub salt: ferry_seal::Salt,
}

/// Everything a device needs to fetch, decode and verify a payload frame by frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The release this payload installs.
    pub version: Version,
    /// How the image is rebuilt.
    #[serde(flatten)]
    pub kind: PayloadKind,
    /// Decoded bytes per frame (the last frame may be shorter).
    pub frame_size: u32,
    /// Size of the image.
    pub image_size: u64,
    /// SHA-256 of the whole image.
    pub image_sha256: Sha256,
    /// Size of the payload.
    pub payload_size: u64,
    /// SHA-256 of the whole payload.
    pub payload_sha256: Sha256,
    /// The frames, in image order.
    pub frames: Vec<Frame>,
    /// The image's seal, when the publisher sealed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<SealRef>,
}

impl Manifest {
    /// Parses and checks a manifest that came from outside the process.
    pub fn from_json(bytes: &[u8]) -> Result<Manifest, PayloadError> {
        let manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| PayloadError::ManifestInvalid(e.to_string()))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Checks the manifest is consistent: frames contiguous, sizes adding up.
    pub fn validate(&self) -> Result<(), PayloadError> {
        let bad = |why: String| Err(PayloadError::ManifestInvalid(why));
        if self.format != FORMAT {
            return bad(format!("format is {:?}, expected {FORMAT:?}", self.format));
        }
        if self.frame_size == 0 || self.frame_size > MAX_FRAME_SIZE {
            return bad(format!(
                "frame size {} is outside 1..={MAX_FRAME_SIZE}",
                self.frame_size
            ));
        }
        let expected_frames = self.image_size.div_ceil(self.frame_size as u64);
        if self.frames.len() as u64 != expected_frames {
            return bad(format!(
                "{} frames listed, {expected_frames} needed for the image size",
                self.frames.len()
            ));
        }
        let bound = zstd::zstd_safe::compress_bound(self.frame_size as usize) as u64;
        let mut offset = 0u64;
        for (idx, frame) in self.frames.iter().enumerate() {
            if frame.offset != offset {
                return bad(format!(
                    "frame {idx} starts at {} instead of {offset}",
                    frame.offset
                ));
            }
            if frame.len == 0 || frame.len as u64 > bound {
                return bad(format!(
                    "frame {idx} has an impossible length {}",
                    frame.len
                ));
            }
            offset += frame.len as u64;
        }
        if self.seal.is_some()
            && (!(self.frame_size as u64).is_multiple_of(ferry_seal::BLOCK_SIZE)
                || !self.image_size.is_multiple_of(ferry_seal::BLOCK_SIZE))
        {
            return bad("a sealed image needs whole 4096-byte blocks in every frame".into());
        }
        if offset != self.payload_size {
            return bad(format!(
                "frames add up to {offset} bytes, payload size says {}",
                self.payload_size
            ));
        }
        Ok(())
    }

    /// Decoded length of frame `idx`.
    pub fn frame_len(&self, idx: usize) -> usize {
        let start = idx as u64 * self.frame_size as u64;
        (self.image_size - start).min(self.frame_size as u64) as usize
    }

    /// Where frame `idx` lands in the image.
    pub fn frame_image_offset(&self, idx: usize) -> u64 {
        idx as u64 * self.frame_size as u64
    }

    /// Manifest as pretty JSON (what the server stores).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}
