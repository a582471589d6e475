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
use std::sync::Mutex;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use zstd::zstd_safe;

use crate::error::{Error, Result};
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
    let old_frames: HashSet<blake3::Hash> = old_layout
        .frames
        .par_iter()
        .map(|&(offset, comp, _)| {
            blake3::hash(&old[offset as usize..offset as usize + comp as usize])
        })
        .collect();
    let new_layout = scan_with(new, Keep::Reproducible(&old_frames));
    // Expanding pays only when most of the new image is compressed blocks.
    if new_layout.framed_bytes() * 2 < new.len() as u64 || old_layout.frames.is_empty() {
        return Ok((encode_delta_bytes(old, new, out, opts)?, false));
    }
    let old_x = expand(old, &old_layout)?;
    let new_x = expand(new, &new_layout)?;
    let same = same_frames(&old_layout, old, &new_layout, new);
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

/// New frames whose compressed bytes equal an old frame's: the device copies those.
fn same_frames(old: &Layout, old_image: &[u8], new: &Layout, new_image: &[u8]) -> Vec<(u32, u32)> {
    let digests = |layout: &Layout, image: &[u8]| -> Vec<blake3::Hash> {
        layout
            .frames
            .par_iter()
            .map(|&(offset, comp, _)| {
                blake3::hash(&image[offset as usize..offset as usize + comp as usize])
            })
            .collect()
    };
    let by_digest: std::collections::HashMap<blake3::Hash, u32> = digests(old, old_image)
        .into_iter()
        .enumerate()
        .map(|(i, h)| (h, i as u32))
        .collect();
    digests(new, new_image)
        .into_iter()
        .enumerate()
        .filter_map(|(i, h)| by_digest.get(&h).map(|&o| (i as u32, o)))
        .collect()
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
    let report = apply_delta(&view, delta, &mut out, opts).map_err(|e| match e {
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

/// A reference seen expanded: frames decompressed on demand, the last few kept.
pub struct ExpandedView<'a, R> {
    inner: &'a R,
    pieces: Vec<Piece>,
    cache: Mutex<Vec<(usize, Vec<u8>)>>,
}

/// Decompressed frames kept by a view (at most 1 MiB each).
const VIEW_CACHE: usize = 8;

impl<'a, R: Reference> ExpandedView<'a, R> {
    /// A view of `inner` with `layout`'s frames decompressed.
    pub fn new(inner: &'a R, layout: &Layout) -> Result<Self> {
        Ok(ExpandedView {
            inner,
            pieces: layout.pieces()?,
            cache: Mutex::new(Vec::with_capacity(VIEW_CACHE)),
        })
    }

    fn frame(&self, idx: usize, out: &mut [u8], from: usize) -> io::Result<()> {
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| io::Error::other("view cache poisoned"))?;
        if let Some(pos) = cache.iter().position(|(i, _)| *i == idx) {
            let (_, data) = &cache[pos];
            out.copy_from_slice(&data[from..from + out.len()]);
            return Ok(());
        }
        let p = self.pieces[idx];
        let mut comp = vec![0u8; p.image_len as usize];
        self.inner.read_exact_at(&mut comp, p.image_offset)?;
        let raw_len = p.raw_len.unwrap_or(0) as usize;
        let mut data = Vec::with_capacity(raw_len);
        let bad = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the block at {} of the running slot does not decompress to {raw_len} bytes",
                    p.image_offset
                ),
            )
        };
        let n = zstd_safe::DCtx::create()
            .decompress(&mut data, &comp)
            .map_err(|_| bad())?;
        if n != raw_len {
            return Err(bad());
        }
        out.copy_from_slice(&data[from..from + out.len()]);
        if cache.len() == VIEW_CACHE {
            cache.remove(0);
        }
        cache.push((idx, data));
        Ok(())
    }
}

impl<R: Reference> Reference for ExpandedView<'_, R> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let idx = self
                .pieces
                .partition_point(|p| p.expanded_offset <= at)
                .saturating_sub(1);
            let Some(p) = self.pieces.get(idx) else {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "read past the view",
                ));
            };
            let within = at - p.expanded_offset;
            let piece_end = p.expanded_offset + p.expanded_len();
            let next_start = self
                .pieces
                .get(idx + 1)
                .map_or(piece_end, |n| n.expanded_offset);
            let n = if at < piece_end {
                let n = ((piece_end - at) as usize).min(buf.len() - done);
                let dst = &mut buf[done..done + n];
                match p.raw_len {
                    None => self.inner.read_exact_at(dst, p.image_offset + within)?,
                    Some(_) => self.frame(idx, dst, within as usize)?,
                }
                n
            } else if at < next_start {
                // Alignment padding reads as zeros.
                let n = ((next_start - at) as usize).min(buf.len() - done);
                buf[done..done + n].fill(0);
                n
            } else {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "read past the view",
                ));
            };
            done += n;
        }
        Ok(())
    }

    fn binding_size(&self) -> io::Result<Option<u64>> {
        Ok(None)
    }
}

/// A sink taking the expanded new image in order and writing the real one: raw pieces
/// as they are; each frame copied from the reference when it is an unchanged old frame
/// (the same compressed bytes, checked by decompressing them), else re-compressed and
/// checked against its length.
pub struct Recompressor<'a, S, R> {
    sink: &'a mut S,
    pieces: Vec<Piece>,
    level: i32,
    next: usize,
    position: u64,
    frame: Vec<u8>,
    reference: &'a R,
    /// New frame number → the old compressed frame (offset, length) with its bytes.
    same: std::collections::HashMap<u32, (u64, u64)>,
    frame_no: u32,
    /// Writes waiting for the batch's frames to be re-compressed on every core.
    queue: Vec<Pending>,
    /// Bytes held by `queue` (raw pieces and frames to re-compress).
    queued_raw: usize,
}

/// Re-compressed together, in parallel (bounds the apply's extra memory to about twice this).
const BATCH_BYTES: usize = 8 << 20;

/// A write of the real image, in order.
enum Pending {
    /// Bytes as they are (raw pieces, copied frames).
    Ready { offset: u64, bytes: Vec<u8> },
    /// A frame to re-compress, and the length it must have.
    Compress { offset: u64, len: u64, raw: Vec<u8> },
}

impl<'a, S: SlotSink, R: Reference> Recompressor<'a, S, R> {
    /// A recompressor writing `layout`'s image into `sink`.
    fn new(
        sink: &'a mut S,
        layout: &Layout,
        reference: &'a R,
        same: std::collections::HashMap<u32, (u64, u64)>,
    ) -> Result<Self> {
        Ok(Recompressor {
            sink,
            pieces: layout.pieces()?,
            level: layout.level,
            next: 0,
            position: 0,
            frame: Vec::new(),
            reference,
            same,
            frame_no: 0,
            queue: Vec::new(),
            queued_raw: 0,
        })
    }

    /// Re-compresses the queued frames on every core and writes the queue in order.
    fn flush(&mut self) -> io::Result<()> {
        let level = self.level;
        let done: Vec<io::Result<(u64, Vec<u8>)>> = std::mem::take(&mut self.queue)
            .into_par_iter()
            .map(|pending| match pending {
                Pending::Ready { offset, bytes } => Ok((offset, bytes)),
                Pending::Compress { offset, len, raw } => {
                    let comp = zstd::bulk::compress(&raw, level)?;
                    if comp.len() as u64 != len {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!(
                                "the block at {offset} re-compresses to {} bytes, not {len}",
                                comp.len()
                            ),
                        ));
                    }
                    Ok((offset, comp))
                }
            })
            .collect();
        self.queued_raw = 0;
        for write in done {
            let (offset, bytes) = write?;
            self.sink.write_at(offset, &bytes)?;
        }
        Ok(())
    }

    /// The write for the frame just completed: the old compressed frame when it holds
    /// the same bytes, else the frame queued for re-compression.
    fn complete_frame(&mut self, p: &Piece) -> io::Result<Pending> {
        let raw = std::mem::take(&mut self.frame);
        if let Some(&(offset, len)) = self.same.get(&self.frame_no)
            && len == p.image_len
        {
            let mut comp = vec![0u8; len as usize];
            self.reference.read_exact_at(&mut comp, offset)?;
            let mut check = Vec::with_capacity(raw.len());
            if zstd_safe::DCtx::create()
                .decompress(&mut check, &comp)
                .is_ok()
                && check == raw
            {
                return Ok(Pending::Ready {
                    offset: p.image_offset,
                    bytes: comp,
                });
            }
        }
        self.queued_raw += raw.len();
        Ok(Pending::Compress {
            offset: p.image_offset,
            len: p.image_len,
            raw,
        })
    }

    /// Checks that every piece was written.
    pub fn finish(mut self) -> Result<()> {
        self.flush().map_err(Error::io("write sink"))?;
        if self.next < self.pieces.len() {
            return Err(Error::corrupt(
                "layout",
                "the expanded image ended before its last block",
            ));
        }
        Ok(())
    }
}

impl<S: SlotSink, R: Reference> SlotSink for Recompressor<'_, S, R> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        if offset != self.position {
            return Err(io::Error::other("expanded bytes out of order"));
        }
        self.position += data.len() as u64;
        let mut data = data;
        let mut at = offset;
        while !data.is_empty() {
            let Some(p) = self.pieces.get(self.next).copied() else {
                // Padding after the last piece.
                return Ok(());
            };
            if at < p.expanded_offset {
                let skip = ((p.expanded_offset - at) as usize).min(data.len());
                data = &data[skip..];
                at += skip as u64;
                continue;
            }
            let within = at - p.expanded_offset;
            let take = ((p.expanded_len() - within) as usize).min(data.len());
            match p.raw_len {
                None => {
                    self.queued_raw += take;
                    self.queue.push(Pending::Ready {
                        offset: p.image_offset + within,
                        bytes: data[..take].to_vec(),
                    });
                }
                Some(raw_len) => {
                    self.frame.extend_from_slice(&data[..take]);
                    if self.frame.len() as u64 == raw_len {
                        let write = self.complete_frame(&p)?;
                        self.queue.push(write);
                        self.frame_no += 1;
                    }
                }
            }
            if self.queued_raw >= BATCH_BYTES {
                self.flush()?;
            }
            data = &data[take..];
            at += take as u64;
            if within + take as u64 == p.expanded_len() {
                self.next += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(ferry_types_code(&err), "BASE_MISMATCH", "{err}");
    }

    fn ferry_types_code(e: &Error) -> &'static str {
        e.code()
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
