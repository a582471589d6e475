//! Deltas below a compressed filesystem's compression, as update_engine's puffin does for
//! deflate: squashfs (zstd) hides what stayed the same inside compressed blocks, so a
//! byte-level delta of two squashfs images costs about a third of the full image.
//!
//! Publish finds the image's zstd frames (a squashfs data, fragment or metadata block is
//! one frame), keeps those that re-compress bit-exactly at one level, and diffs the
//! *expanded* images (each frame decompressed, each piece starting on a 4 KiB boundary so
//! file blocks line up for block copies). The device reads its running slot through an
//! [`ExpandedView`] (blocks decompressed on demand, a few cached) and re-compresses the
//! expanded output into the slot ([`Recompressor`]); the full manifest and the seal then
//! check every byte, and a block that does not re-compress to its published length stops
//! the apply (`DELTA_CORRUPT`).
//!
//! ```text
//! "FERRYDZ1" | u32 LE len | header JSON | blake3(header) | ferry-delta-2 of the expanded images
//! ```
//!
//! Bit-exact re-compression needs the libzstd the image was built with: the workspace pins
//! 1.5.4 (Debian bookworm's mksquashfs); frames that do not reproduce stay raw bytes.

use std::collections::HashSet;
use std::io::{self, Read, Write};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use zstd::zstd_safe;

mod device;

pub use device::ExpandedView;
use device::Recompressor;

use crate::apply::{apply_pinned, check_pin};
use crate::error::{Error, Result};
use crate::format::MAX_MANIFEST_BYTES;
use crate::format::{BLOCK_SIZE, DELTA_MAGIC};
use crate::{
    ApplyOptions, ApplyReport, DeltaManifest, EncodeOptions, Reference, SlotSink, apply_delta,
    encode_delta_bytes,
};

/// Magic of an expanded delta.
pub const EXPANDED_MAGIC: &[u8; 8] = b"FERRYDZ1";

/// Format name in the header.
const EXPANDED_FORMAT: &str = "ferry-expanded-1";

/// Largest block expanded (squashfs blocks are at most 1 MiB).
const MAX_RAW: u64 = 1 << 20;

/// Largest header accepted (a layout entry is about 30 bytes of JSON).
const MAX_HEADER: u32 = 64 << 20;

/// Levels tried, in order, to find the one an image was compressed with (mksquashfs's
/// default is 15).
const LEVELS: [i32; 22] = [
    15, 19, 22, 3, 1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 18, 20, 21,
];

/// The zstd frames of an image that re-compress bit-exactly at `level`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// Size of the image.
    pub image_size: u64,
    /// Compression level every listed frame reproduces at.
    pub level: i32,
    /// `[offset, compressed length, decompressed length]`, in offset order.
    pub frames: Vec<(u64, u32, u32)>,
}

/// One stretch of an image and where it sits in the expanded image.
#[derive(Debug, Clone, Copy)]
struct Piece {
    image_offset: u64,
    image_len: u64,
    expanded_offset: u64,
    /// Decompressed length for a frame; `None` for raw bytes.
    raw_len: Option<u64>,
}

impl Piece {
    fn expanded_len(&self) -> u64 {
        self.raw_len.unwrap_or(self.image_len)
    }
}

impl Layout {
    /// Bytes of the image inside listed frames.
    pub fn framed_bytes(&self) -> u64 {
        self.frames.iter().map(|f| f.1 as u64).sum()
    }

    /// The image as pieces, each starting on a 4 KiB boundary of the expanded image.
    fn pieces(&self) -> Result<Vec<Piece>> {
        let mut pieces = Vec::with_capacity(self.frames.len() * 2 + 1);
        let mut image_at = 0u64;
        let mut expanded_at = 0u64;
        let mut push = |image_offset: u64, image_len: u64, raw_len: Option<u64>| {
            let piece = Piece {
                image_offset,
                image_len,
                expanded_offset: expanded_at,
                raw_len,
            };
            expanded_at = (expanded_at + piece.expanded_len()).next_multiple_of(BLOCK_SIZE as u64);
            pieces.push(piece);
        };
        for &(offset, comp, raw) in &self.frames {
            if offset < image_at || offset + comp as u64 > self.image_size || raw as u64 > MAX_RAW {
                return Err(Error::corrupt(
                    "layout",
                    format!("frame at {offset} is out of order or too large"),
                ));
            }
            if offset > image_at {
                push(image_at, offset - image_at, None);
            }
            push(offset, comp as u64, Some(raw as u64));
            image_at = offset + comp as u64;
        }
        if image_at < self.image_size {
            push(image_at, self.image_size - image_at, None);
        }
        Ok(pieces)
    }
}

/// Finds the frames of `image` that re-compress bit-exactly (see the module docs). An
/// image with no such frame gets an empty layout.
pub fn scan_layout(image: &[u8]) -> Layout {
    scan_with(image, Keep::Reproducible(&HashSet::new()))
}

/// Which frames a layout keeps.
enum Keep<'a> {
    /// Those that decompress: enough for the base, which is only ever decompressed.
    Decompressible,
    /// Those that re-compress bit-exactly, or whose compressed bytes (by digest) are in
    /// the set: the base has them, so the device copies them instead.
    Reproducible(&'a HashSet<blake3::Hash>),
}

fn scan_with(image: &[u8], keep: Keep<'_>) -> Layout {
    let candidates = find_frames(image);
    let bytes = |&(offset, comp, _): &(u64, u32, u32)| {
        &image[offset as usize..offset as usize + comp as usize]
    };
    let level = candidates.iter().take(8).find_map(|f| {
        let frame = bytes(f);
        let raw = zstd::bulk::decompress(frame, MAX_RAW as usize).ok()?;
        LEVELS
            .iter()
            .copied()
            .find(|&l| zstd::bulk::compress(&raw, l).is_ok_and(|c| c == frame))
    });
    let frames = match (&keep, level) {
        (Keep::Reproducible(_), None) => Vec::new(),
        _ => candidates
            .into_par_iter()
            .filter(|f| {
                let frame = bytes(f);
                let Ok(raw) = zstd::bulk::decompress(frame, MAX_RAW as usize) else {
                    return false;
                };
                match (&keep, level) {
                    (Keep::Decompressible, _) => true,
                    (Keep::Reproducible(known), Some(level)) => {
                        known.contains(&blake3::hash(frame))
                            || zstd::bulk::compress(&raw, level).is_ok_and(|c| c == frame)
                    }
                    (Keep::Reproducible(_), None) => false,
                }
            })
            .collect(),
    };
    Layout {
        image_size: image.len() as u64,
        level: level.unwrap_or(0),
        frames,
    }
}

/// Every well-formed zstd frame with a declared size of at most [`MAX_RAW`], scanning
/// from each magic number and skipping over frames found.
fn find_frames(image: &[u8]) -> Vec<(u64, u32, u32)> {
    const MAGIC: [u8; 4] = 0xFD2F_B528u32.to_le_bytes();
    let mut found = Vec::new();
    let mut at = 0usize;
    while at + MAGIC.len() <= image.len() {
        if image[at..at + 4] != MAGIC {
            at += 1;
            continue;
        }
        let rest = &image[at..];
        let sizes = zstd_safe::find_frame_compressed_size(rest)
            .ok()
            .zip(zstd_safe::get_frame_content_size(rest).ok().flatten());
        match sizes {
            Some((comp, raw)) if raw > 0 && raw <= MAX_RAW && comp <= u32::MAX as usize => {
                found.push((at as u64, comp as u32, raw as u32));
                at += comp;
            }
            _ => at += 1,
        }
    }
    found
}

/// The expanded image: every listed frame decompressed, each piece 4 KiB-aligned.
pub fn expand(image: &[u8], layout: &Layout) -> Result<Vec<u8>> {
    let pieces = layout.pieces()?;
    let size = pieces
        .last()
        .map_or(0, |p| p.expanded_offset + p.expanded_len());
    let mut out = vec![0u8; size as usize];
    let chunks: Vec<(&Piece, &mut [u8])> = {
        let mut rest = out.as_mut_slice();
        let mut at = 0u64;
        let mut v = Vec::with_capacity(pieces.len());
        for p in &pieces {
            let (_, tail) = rest.split_at_mut((p.expanded_offset - at) as usize);
            let (here, tail) = tail.split_at_mut(p.expanded_len() as usize);
            v.push((p, here));
            rest = tail;
            at = p.expanded_offset + p.expanded_len();
        }
        v
    };
    chunks.into_par_iter().try_for_each(|(p, dst)| {
        let src = &image[p.image_offset as usize..(p.image_offset + p.image_len) as usize];
        match p.raw_len {
            None => dst.copy_from_slice(src),
            Some(_) => {
                let n = zstd_safe::DCtx::create()
                    .decompress(dst, src)
                    .map_err(|_| {
                        Error::corrupt(
                            "layout",
                            format!("frame at {} does not decompress", p.image_offset),
                        )
                    })?;
                if n != dst.len() {
                    return Err(Error::corrupt(
                        "layout",
                        "a frame decompresses to another size",
                    ));
                }
            }
        }
        Ok(())
    })?;
    Ok(out)
}

/// The header of an expanded delta.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    format: String,
    /// libzstd the layouts were checked with.
    zstd: String,
    old: Layout,
    new: Layout,
    /// `(new frame, old frame)` pairs with the same decompressed bytes: the device copies
    /// the old compressed frame instead of re-compressing (same bytes, same level, same
    /// output), which is most of a release's blocks.
    #[serde(default)]
    same: Vec<(u32, u32)>,
}

/// Builds the smallest delta from `old` to `new`: an expanded delta when both images are
/// mostly zstd frames that re-compress bit-exactly (squashfs), else a plain one. Returns
/// the inner delta's manifest and whether it was expanded.
pub fn encode_expanded(
    old: &[u8],
    new: &[u8],
    out: &mut impl Write,
    opts: &EncodeOptions,
) -> Result<(DeltaManifest, bool)> {
    let old_layout = scan_with(old, Keep::Decompressible);
    let old_digests = frame_digests(&old_layout, old);
    let old_frames: HashSet<blake3::Hash> = old_digests.iter().copied().collect();
    let new_layout = scan_with(new, Keep::Reproducible(&old_frames));
    // Expanding pays only when most of the new image is compressed blocks.
    if new_layout.framed_bytes() * 2 < new.len() as u64 || old_layout.frames.is_empty() {
        return Ok((encode_delta_bytes(old, new, out, opts)?, false));
    }
    let old_x = expand(old, &old_layout)?;
    let new_x = expand(new, &new_layout)?;
    let same = same_frames(&old_digests, &frame_digests(&new_layout, new));
    let header = serde_json::to_vec(&Header {
        format: EXPANDED_FORMAT.into(),
        zstd: zstd_safe::version_string().into(),
        old: old_layout,
        new: new_layout,
        same,
    })
    .map_err(|e| Error::corrupt("header", e.to_string()))?;
    let io = Error::io("write delta");
    out.write_all(EXPANDED_MAGIC).map_err(io)?;
    out.write_all(&(header.len() as u32).to_le_bytes())
        .map_err(Error::io("write delta"))?;
    out.write_all(&header).map_err(Error::io("write delta"))?;
    out.write_all(blake3::hash(&header).as_bytes())
        .map_err(Error::io("write delta"))?;
    let manifest = encode_delta_bytes(&old_x, &new_x, out, opts)?;
    Ok((manifest, true))
}

/// The blake3 of each listed frame's compressed bytes, in layout order.
fn frame_digests(layout: &Layout, image: &[u8]) -> Vec<blake3::Hash> {
    layout
        .frames
        .par_iter()
        .map(|&(offset, comp, _)| {
            blake3::hash(&image[offset as usize..offset as usize + comp as usize])
        })
        .collect()
}

/// `(new frame, old frame)` pairs with the same compressed bytes: the device copies those.
fn same_frames(old: &[blake3::Hash], new: &[blake3::Hash]) -> Vec<(u32, u32)> {
    let by_digest: std::collections::HashMap<blake3::Hash, u32> = old
        .iter()
        .enumerate()
        .map(|(i, h)| (*h, i as u32))
        .collect();
    new.iter()
        .enumerate()
        .filter_map(|(i, h)| by_digest.get(h).map(|&o| (i as u32, o)))
        .collect()
}

/// The pin of an expanded delta: blake3 of its header's blake3 followed by its inner
/// manifest's, so the layouts that drive re-compression are as pinned as the manifest.
fn expanded_pin(header_digest: &[u8; 32], manifest_digest: &[u8; 32]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(header_digest);
    hasher.update(manifest_digest);
    *hasher.finalize().as_bytes()
}

/// The digest a signed catalog pins for the delta that `delta` begins with (plain or
/// expanded), read from its head only: the manifest's blake3 ([`DeltaManifest::digest`]) for a
/// plain delta, [`expanded_pin`] for an expanded one. Pass it to the apply as
/// [`ApplyOptions::expected_manifest_digest`]: a delta whose head differs is refused with
/// `MANIFEST_MISMATCH` before anything is written.
pub fn pinned_digest(mut delta: impl Read) -> Result<[u8; 32]> {
    let mut magic = [0u8; 8];
    delta
        .read_exact(&mut magic)
        .map_err(|_| Error::corrupt("header", "the delta stream ends early"))?;
    if &magic == DELTA_MAGIC {
        return read_manifest_digest(&mut delta);
    }
    if &magic != EXPANDED_MAGIC {
        return Err(Error::corrupt("header", "not a ferry delta (bad magic)"));
    }
    let header = read_framed(&mut delta, MAX_HEADER, "header")?;
    let mut inner_magic = [0u8; 8];
    delta
        .read_exact(&mut inner_magic)
        .map_err(|_| Error::corrupt("header", "the delta stream ends early"))?;
    if &inner_magic != DELTA_MAGIC {
        return Err(Error::corrupt("header", "not a ferry delta (bad magic)"));
    }
    Ok(expanded_pin(&header, &read_manifest_digest(&mut delta)?))
}

/// Reads `u32 LE len | bytes | blake3(bytes)` and returns the checked blake3.
fn read_framed(delta: &mut impl Read, max: u32, what: &'static str) -> Result<[u8; 32]> {
    let early = || Error::corrupt(what, "the delta stream ends early");
    let mut len = [0u8; 4];
    delta.read_exact(&mut len).map_err(|_| early())?;
    let len = u32::from_le_bytes(len);
    if len > max {
        return Err(Error::corrupt(what, format!("length {len} is implausible")));
    }
    let mut bytes = vec![0u8; len as usize];
    let mut stored = [0u8; 32];
    delta
        .read_exact(&mut bytes)
        .and_then(|()| delta.read_exact(&mut stored))
        .map_err(|_| early())?;
    let digest = *blake3::hash(&bytes).as_bytes();
    if digest != stored {
        return Err(Error::corrupt(
            what,
            format!("{what} digest does not match"),
        ));
    }
    Ok(digest)
}

fn read_manifest_digest(delta: &mut impl Read) -> Result<[u8; 32]> {
    read_framed(delta, MAX_MANIFEST_BYTES, "manifest")
}

/// Applies a plain or an expanded delta (by its magic) from `reference` into `sink`.
pub fn apply_any<R: Reference + Sync>(
    reference: &R,
    mut delta: impl Read,
    sink: &mut impl SlotSink,
    opts: &ApplyOptions,
) -> Result<ApplyReport> {
    let mut magic = [0u8; 8];
    delta
        .read_exact(&mut magic)
        .map_err(|_| Error::corrupt("header", "the delta stream ends early"))?;
    if &magic == DELTA_MAGIC {
        return apply_delta(reference, io::Cursor::new(magic).chain(delta), sink, opts);
    }
    if &magic != EXPANDED_MAGIC {
        return Err(Error::corrupt("header", "not a ferry delta (bad magic)"));
    }
    let mut len = [0u8; 4];
    delta
        .read_exact(&mut len)
        .map_err(|_| Error::corrupt("header", "the delta stream ends early"))?;
    let len = u32::from_le_bytes(len);
    if len > MAX_HEADER {
        return Err(Error::corrupt(
            "header",
            format!("header length {len} is implausible"),
        ));
    }
    let mut header = vec![0u8; len as usize];
    let mut digest = [0u8; 32];
    delta
        .read_exact(&mut header)
        .and_then(|()| delta.read_exact(&mut digest))
        .map_err(|_| Error::corrupt("header", "the delta stream ends early"))?;
    if blake3::hash(&header).as_bytes() != &digest {
        return Err(Error::corrupt("header", "header digest does not match"));
    }
    let header: Header =
        serde_json::from_slice(&header).map_err(|e| Error::corrupt("header", e.to_string()))?;
    if header.format != EXPANDED_FORMAT {
        return Err(Error::corrupt(
            "header",
            format!("unknown format {}", header.format),
        ));
    }
    let view = ExpandedView::new(reference, &header.old)?;
    let old_frames: Vec<Piece> = header
        .old
        .pieces()?
        .into_iter()
        .filter(|p| p.raw_len.is_some())
        .collect();
    let mut same = std::collections::HashMap::with_capacity(header.same.len());
    for &(new_idx, old_idx) in &header.same {
        let old = old_frames
            .get(old_idx as usize)
            .ok_or_else(|| Error::corrupt("header", "a reused frame is not in the old layout"))?;
        same.insert(new_idx, (old.image_offset, old.image_len));
    }
    let mut out = Recompressor::new(sink, &header.new, reference, same)?;
    let pinned = |manifest_digest: &[u8; 32]| {
        check_pin(
            opts.expected_manifest_digest,
            expanded_pin(&digest, manifest_digest),
        )
    };
    let report = apply_pinned(&view, delta, &mut out, opts, pinned).map_err(|e| match e {
        Error::Io {
            operation: "read reference",
            source,
        } if source.kind() == io::ErrorKind::InvalidData => Error::BaseMismatch {
            what: "compressed blocks of the running slot",
            expected: "the blocks of the release the delta was built from".into(),
            found: source.to_string(),
        },
        other => other,
    })?;
    out.finish()?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_types::Diagnose;

    /// An image like squashfs: a raw header, then zstd frames back to back, some of
    /// them file blocks shared between versions.
    fn image(files: &[Vec<u8>], header: &[u8]) -> Vec<u8> {
        let mut img = header.to_vec();
        for f in files {
            for block in f.chunks(128 << 10) {
                img.extend_from_slice(&zstd::bulk::compress(block, 15).unwrap());
            }
        }
        img.extend_from_slice(&[0u8; 100]);
        img
    }

    fn file(seed: u64, len: usize) -> Vec<u8> {
        let mut s = seed;
        (0..len)
            .map(|i| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                // Text-like: compressible, different per seed.
                b"abcdefgh ijk\n"[((s >> 59) as usize + i % 3) % 13]
            })
            .collect()
    }

    #[test]
    fn an_expanded_delta_rebuilds_the_image_and_is_small() {
        let a = file(1, 600 << 10);
        let b = file(2, 300 << 10);
        let mut b2 = b.clone();
        b2[1000..1100].fill(b'Z');
        let c = file(3, 200 << 10);
        let old = image(&[a.clone(), b], b"HSQS-header-v1..");
        let new = image(&[a, b2, c], b"HSQS-header-v2..");
        let layout = scan_layout(&new);
        assert_eq!(layout.level, 15);
        assert_eq!(layout.frames.len(), 5 + 3 + 2);

        let mut delta = Vec::new();
        let opts = EncodeOptions::default();
        let (_, expanded) = encode_expanded(&old, &new, &mut delta, &opts).unwrap();
        assert!(expanded);
        let mut plain = Vec::new();
        encode_delta_bytes(&old, &new, &mut plain, &opts).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old");
        std::fs::write(&path, &old).unwrap();
        let reference = std::fs::File::open(&path).unwrap();
        let mut out = Vec::new();
        apply_any(&reference, &delta[..], &mut out, &ApplyOptions::default()).unwrap();
        assert_eq!(out, new);
        assert!(
            delta.len() < plain.len(),
            "expanded {} B vs plain {} B",
            delta.len(),
            plain.len()
        );

        // Another base: refused before the slot is written wrongly.
        let other = image(&[file(9, 600 << 10)], b"HSQS-header-v1..");
        std::fs::write(&path, &other).unwrap();
        let reference = std::fs::File::open(&path).unwrap();
        let err = apply_any(
            &reference,
            &delta[..],
            &mut Vec::new(),
            &ApplyOptions::default(),
        )
        .unwrap_err();
        assert_eq!(err.code(), "BASE_MISMATCH", "{err}");
    }

    /// The pin covers the expanded header too: a header rewritten with a matching blake3 (the
    /// layouts that drive re-compression) is refused before a byte reaches the sink, and the
    /// pin `pinned_digest` reads from a plain delta is its manifest's digest.
    #[test]
    fn the_pin_covers_an_expanded_deltas_header_and_a_plain_deltas_manifest() {
        let a = file(1, 600 << 10);
        let b = file(2, 300 << 10);
        let mut b2 = b.clone();
        b2[1000..1100].fill(b'Z');
        let old = image(&[a.clone(), b], b"HSQS-header-v1..");
        let new = image(&[a, b2], b"HSQS-header-v2..");
        let mut delta = Vec::new();
        let opts = EncodeOptions::default();
        let (_, expanded) = encode_expanded(&old, &new, &mut delta, &opts).unwrap();
        assert!(expanded);
        let pin = pinned_digest(&delta[..]).unwrap();
        let pinned = ApplyOptions {
            expected_manifest_digest: Some(pin),
            ..ApplyOptions::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old");
        std::fs::write(&path, &old).unwrap();
        let reference = std::fs::File::open(&path).unwrap();
        let mut out = Vec::new();
        apply_any(&reference, &delta[..], &mut out, &pinned).unwrap();
        assert_eq!(out, new);

        // Rewrite the header (no frame reused from the old image) with a fresh blake3.
        let len = u32::from_le_bytes(delta[8..12].try_into().unwrap()) as usize;
        let mut header: serde_json::Value = serde_json::from_slice(&delta[12..12 + len]).unwrap();
        header["same"] = serde_json::json!([]);
        let header = serde_json::to_vec(&header).unwrap();
        let mut forged = Vec::new();
        forged.extend_from_slice(EXPANDED_MAGIC);
        forged.extend_from_slice(&(header.len() as u32).to_le_bytes());
        forged.extend_from_slice(&header);
        forged.extend_from_slice(blake3::hash(&header).as_bytes());
        forged.extend_from_slice(&delta[12 + len + 32..]);
        assert_ne!(pinned_digest(&forged[..]).unwrap(), pin);
        let mut out = Vec::new();
        let err = apply_any(&reference, &forged[..], &mut out, &pinned).unwrap_err();
        assert_eq!(err.code(), "MANIFEST_MISMATCH", "{err}");
        assert!(out.is_empty(), "nothing reached the sink");

        let mut plain = Vec::new();
        let manifest = encode_delta_bytes(&old, &new, &mut plain, &opts).unwrap();
        assert_eq!(pinned_digest(&plain[..]).unwrap(), manifest.digest());
        assert_eq!(
            pinned_digest(&b"not a delta at all"[..])
                .unwrap_err()
                .code(),
            "DELTA_CORRUPT"
        );
    }

    #[test]
    fn a_plain_image_gets_a_plain_delta() {
        let old = file(1, 256 << 10);
        let mut new = old.clone();
        new[5000] ^= 1;
        let mut delta = Vec::new();
        let (_, expanded) =
            encode_expanded(&old, &new, &mut delta, &EncodeOptions::default()).unwrap();
        assert!(!expanded);
        assert_eq!(&delta[..8], DELTA_MAGIC);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old");
        std::fs::write(&path, &old).unwrap();
        let mut out = Vec::new();
        apply_any(
            &std::fs::File::open(&path).unwrap(),
            &delta[..],
            &mut out,
            &ApplyOptions::default(),
        )
        .unwrap();
        assert_eq!(out, new);
    }

    #[test]
    fn a_view_reads_across_pieces_and_padding() {
        let blocks = [file(4, 5000), file(5, 7000)];
        let img = image(&blocks, b"raw-head");
        let layout = scan_layout(&img);
        let expanded = expand(&img, &layout).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        std::fs::write(&path, &img).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        let view = ExpandedView::new(&f, &layout).unwrap();
        for (off, len) in [(0u64, 8usize), (3, 9000), (4090, 12_000), (8192, 7000)] {
            let mut buf = vec![1u8; len];
            view.read_exact_at(&mut buf, off).unwrap();
            assert_eq!(buf, &expanded[off as usize..off as usize + len], "at {off}");
        }
    }
}
