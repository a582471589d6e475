//! The full payload and its index, for devices with no tailored delta.
//!
//! The new image is cut into extents (runs of 4 KiB blocks). Runs of zero blocks need no
//! payload. Runs the publisher found in a hint image (an earlier release) become one chunk
//! each, so a device holding them anywhere reuses them; blocks found in no hint are grouped
//! into large "fresh" chunks, which compress far better than small ones. Each chunk is one
//! independent zstd frame in the payload.
//!
//! Index layout: `"FERRYIX1"`, u64 LE body length, the zstd-compressed body, blake3(body).
//! Body: image size, image digest, the chunks (compressed length, raw length, blake3 of the
//! compressed frame; payload offsets are cumulative in chunk order), then the extents in
//! image order (block count, chunk number + 1 or 0 for zero, first-block key, blake3 of the
//! extent's bytes).

use std::fs::File;
use std::io::Write;

use rayon::prelude::*;

use crate::encode::{block_key, compress_segment, is_zero, read_whole};
use crate::error::{Error, Result};
use crate::format::{BLOCK_SIZE, Reader, hex, put_varint};

/// Magic bytes opening every payload index.
pub const INDEX_MAGIC: &[u8; 8] = b"FERRYIX1";

/// How `build_payload` cuts and compresses the image.
#[derive(Debug, Clone)]
pub struct IndexOptions {
    /// zstd level of every chunk.
    pub level: i32,
    /// Largest fresh chunk (decompressed), bytes; the assembler holds one at a time.
    pub fresh_chunk_bytes: usize,
    /// Longest extent, in blocks: shorter extents let devices on other releases reuse more.
    pub max_extent_blocks: u32,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions {
            level: 19,
            fresh_chunk_bytes: 32 << 20,
            max_extent_blocks: 64,
        }
    }
}

/// One independently compressed zstd frame of the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Where the frame starts in the payload.
    pub payload_offset: u64,
    /// Length of the frame.
    pub compressed_len: u64,
    /// Decompressed length (the sum of its extents).
    pub raw_len: u64,
    /// blake3 of the frame, checked before decompressing.
    pub digest: [u8; 32],
}

/// A run of blocks of the new image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extent {
    /// Offset in the new image.
    pub offset: u64,
    /// Length in bytes (a multiple of 4096 except at the image's end).
    pub len: u64,
    /// The chunk carrying it, `None` for zeros.
    pub chunk: Option<usize>,
    /// Key of its first block (first 8 bytes of its blake3), to find it in a slot.
    pub first_block_key: u64,
    /// blake3 of the extent's bytes, checked before they reach the sink.
    pub digest: [u8; 32],
}

/// The index of a full payload: what every chunk holds and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadIndex {
    /// Size of the image.
    pub image_size: u64,
    /// blake3 of the whole image.
    pub image_digest: [u8; 32],
    /// Chunks, in payload order.
    pub chunks: Vec<Chunk>,
    /// Extents, in image order, covering it exactly.
    pub extents: Vec<Extent>,
}

impl PayloadIndex {
    /// Length of the payload file.
    pub fn payload_len(&self) -> u64 {
        self.chunks
            .last()
            .map_or(0, |c| c.payload_offset + c.compressed_len)
    }

    /// The serialized index (what the catalog lists and the device downloads first).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut body = Vec::new();
        put_varint(&mut body, self.image_size);
        body.extend_from_slice(&self.image_digest);
        put_varint(&mut body, self.chunks.len() as u64);
        for chunk in &self.chunks {
            put_varint(&mut body, chunk.compressed_len);
            put_varint(&mut body, chunk.raw_len);
            body.extend_from_slice(&chunk.digest);
        }
        put_varint(&mut body, self.extents.len() as u64);
        for extent in &self.extents {
            put_varint(&mut body, extent.len.div_ceil(BLOCK_SIZE as u64));
            put_varint(&mut body, extent.chunk.map_or(0, |c| c as u64 + 1));
            if extent.chunk.is_some() {
                body.extend_from_slice(&extent.first_block_key.to_le_bytes());
                body.extend_from_slice(&extent.digest);
            }
        }
        let compressed = zstd::bulk::compress(&body, 19).expect("in-memory zstd");
        let mut out = Vec::with_capacity(compressed.len() + 56);
        out.extend_from_slice(INDEX_MAGIC);
        out.extend_from_slice(&(compressed.len() as u64).to_le_bytes());
        out.extend_from_slice(&compressed);
        out.extend_from_slice(blake3::hash(&body).as_bytes());
        out
    }

    /// Parses and checks a serialized index.
    pub fn from_bytes(bytes: &[u8]) -> Result<PayloadIndex> {
        let invalid = |detail: &str| Error::IndexInvalid {
            detail: detail.to_owned(),
        };
        if bytes.len() < 48 || &bytes[..8] != INDEX_MAGIC {
            return Err(invalid("not a ferry payload index"));
        }
        let body_len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
        if body_len != (bytes.len() - 48) as u64 {
            return Err(invalid("length does not match"));
        }
        let compressed = &bytes[16..bytes.len() - 32];
        let body = zstd::bulk::decompress(compressed, 256 << 20)
            .map_err(|e| invalid(&format!("body does not decompress: {e}")))?;
        if blake3::hash(&body).as_bytes() != &bytes[bytes.len() - 32..] {
            return Err(invalid("digest does not match"));
        }
        let map = |e: Error| invalid(&e.to_string());
        let mut reader = Reader {
            bytes: &body,
            pos: 0,
        };
        let image_size = reader.varint().map_err(map)?;
        let image_digest = reader.array().map_err(map)?;
        let n_chunks = reader.count("chunks", 34).map_err(map)?;
        let mut chunks = Vec::with_capacity(n_chunks);
        let mut payload_offset = 0u64;
        for _ in 0..n_chunks {
            let compressed_len = reader.varint().map_err(map)?;
            let raw_len = reader.varint().map_err(map)?;
            let digest = reader.array().map_err(map)?;
            chunks.push(Chunk {
                payload_offset,
                compressed_len,
                raw_len,
                digest,
            });
            payload_offset = payload_offset
                .checked_add(compressed_len)
                .ok_or_else(|| invalid("payload offsets overflow"))?;
        }
        let n_extents = reader.count("extents", 2).map_err(map)?;
        let mut extents = Vec::with_capacity(n_extents);
        let mut offset = 0u64;
        let mut chunk_fill = vec![0u64; chunks.len()];
        for _ in 0..n_extents {
            let n_blocks = reader.varint().map_err(map)?;
            let chunk = match reader.varint().map_err(map)? {
                0 => None,
                c if c as usize <= chunks.len() => Some(c as usize - 1),
                _ => return Err(invalid("extent names a chunk that does not exist")),
            };
            let len = n_blocks
                .checked_mul(BLOCK_SIZE as u64)
                .ok_or_else(|| invalid("extent too long"))?
                .min(image_size.saturating_sub(offset));
            if n_blocks == 0 || len == 0 {
                return Err(invalid("empty extent"));
            }
            let (first_block_key, digest) = match chunk {
                Some(c) => {
                    chunk_fill[c] += len;
                    (
                        u64::from_le_bytes(reader.array().map_err(map)?),
                        reader.array().map_err(map)?,
                    )
                }
                None => (0, [0; 32]),
            };
            extents.push(Extent {
                offset,
                len,
                chunk,
                first_block_key,
                digest,
            });
            offset += len;
        }
        if offset != image_size || reader.pos != body.len() {
            return Err(invalid("extents do not cover the image exactly"));
        }
        if chunks
            .iter()
            .zip(&chunk_fill)
            .any(|(c, &fill)| c.raw_len != fill)
        {
            return Err(invalid("chunk lengths do not match their extents"));
        }
        Ok(PayloadIndex {
            image_size,
            image_digest,
            chunks,
            extents,
        })
    }

    /// Hex of the image digest.
    pub fn image_digest_hex(&self) -> String {
        hex(&self.image_digest)
    }
}

/// Key of a block for finding it in a slot: the first 8 bytes of its blake3.
pub(crate) fn block_key64(block: &[u8]) -> u64 {
    block_key(block) as u64
}

/// Cuts `new` into extents and chunks, writes the payload to `out` and returns its index.
/// `hints` are earlier releases devices are likely to run: blocks found in them (anywhere)
/// become small reusable chunks, the rest is grouped into large fresh chunks.
pub fn build_payload(
    new: &File,
    hints: &[File],
    out: &mut impl Write,
    opts: &IndexOptions,
) -> Result<PayloadIndex> {
    let new = read_whole(new, "read new image")?;
    let hints = hints
        .iter()
        .map(|hint| read_whole(hint, "read hint image"))
        .collect::<Result<Vec<_>>>()?;
    build_payload_bytes(&new, &hints, out, opts)
}

/// [`build_payload`] over images already in memory.
pub fn build_payload_bytes(
    new: &[u8],
    hints: &[Vec<u8>],
    out: &mut impl Write,
    opts: &IndexOptions,
) -> Result<PayloadIndex> {
    // Where each hinted block lives: key -> (hint, block), to follow contiguous runs.
    let mut known: std::collections::HashMap<u128, (usize, u64)> = Default::default();
    for (hint_idx, hint) in hints.iter().enumerate() {
        let keys: Vec<u128> = hint.par_chunks_exact(BLOCK_SIZE).map(block_key).collect();
        for (block, key) in keys.into_iter().enumerate() {
            known.entry(key).or_insert((hint_idx, block as u64));
        }
    }
    let n_blocks = new.len().div_ceil(BLOCK_SIZE);
    let block = |i: usize| &new[i * BLOCK_SIZE..(i * BLOCK_SIZE + BLOCK_SIZE).min(new.len())];
    // Class of each block: 0 zero, 1 fresh, 2 known at (hint, block).
    let classes: Vec<(u8, usize, u64)> = (0..n_blocks)
        .into_par_iter()
        .map(|i| {
            let bytes = block(i);
            if is_zero(bytes) {
                (0, 0, 0)
            } else if let Some(&(hint, at)) = known.get(&block_key(bytes)) {
                (2, hint, at)
            } else {
                (1, 0, 0)
            }
        })
        .collect();
    let hinted = !hints.is_empty();
    // Extents: (first block, n blocks, class).
    let mut runs: Vec<(usize, usize, u8)> = Vec::new();
    for (i, &(class, hint, at)) in classes.iter().enumerate() {
        let class = if hinted { class } else { class.min(1) * 2 };
        let extends = match runs.last() {
            Some(&(start, n, last_class)) if last_class == class => {
                let full = class != 0 && n >= opts.max_extent_blocks as usize;
                let contiguous = class != 2
                    || !hinted
                    || (classes[start + n - 1].1 == hint && classes[start + n - 1].2 + 1 == at);
                !full && contiguous && (class != 1 || n < opts.max_extent_blocks as usize)
            }
            _ => false,
        };
        match runs.last_mut() {
            Some(run) if extends => run.1 += 1,
            _ => runs.push((i, 1, class)),
        }
    }
    // Chunks: each known extent alone; fresh extents grouped in image order.
    let mut chunk_members: Vec<Vec<usize>> = Vec::new(); // extent indices
    let mut extent_chunk: Vec<Option<usize>> = vec![None; runs.len()];
    let mut fresh_chunks: Vec<usize> = Vec::new();
    let mut fresh_fill = 0usize;
    for (extent_idx, &(_, n, class)) in runs.iter().enumerate() {
        match class {
            0 => {}
            1 => {
                if fresh_chunks.is_empty() || fresh_fill + n * BLOCK_SIZE > opts.fresh_chunk_bytes {
                    fresh_chunks.push(chunk_members.len());
                    chunk_members.push(Vec::new());
                    fresh_fill = 0;
                }
                let chunk = *fresh_chunks.last().expect("pushed above");
                chunk_members[chunk].push(extent_idx);
                extent_chunk[extent_idx] = Some(chunk);
                fresh_fill += n * BLOCK_SIZE;
            }
            _ => {
                extent_chunk[extent_idx] = Some(chunk_members.len());
                chunk_members.push(vec![extent_idx]);
            }
        }
    }
    let extent_bytes = |(start, n, _): (usize, usize, u8)| {
        &new[start * BLOCK_SIZE..((start + n) * BLOCK_SIZE).min(new.len())]
    };
    let frames: Vec<(u64, Vec<u8>)> = chunk_members
        .par_iter()
        .map(|members| {
            let mut raw = Vec::new();
            for &extent_idx in members {
                raw.extend_from_slice(extent_bytes(runs[extent_idx]));
            }
            let frame = compress_segment(&raw, &[], opts.level)?;
            Ok((raw.len() as u64, frame))
        })
        .collect::<Result<_>>()?;
    // Payload order: fresh chunks first (what hinted devices download, in one range).
    let mut order: Vec<usize> = fresh_chunks.clone();
    order.extend((0..chunk_members.len()).filter(|c| !fresh_chunks.contains(c)));
    let mut renumber = vec![0usize; chunk_members.len()];
    let mut chunks = Vec::with_capacity(order.len());
    let mut payload_offset = 0u64;
    for (new_number, &old_number) in order.iter().enumerate() {
        renumber[old_number] = new_number;
        let (raw_len, frame) = &frames[old_number];
        out.write_all(frame).map_err(Error::io("write payload"))?;
        chunks.push(Chunk {
            payload_offset,
            compressed_len: frame.len() as u64,
            raw_len: *raw_len,
            digest: *blake3::hash(frame).as_bytes(),
        });
        payload_offset += frame.len() as u64;
    }
    out.flush().map_err(Error::io("write payload"))?;
    let extents = runs
        .par_iter()
        .zip(extent_chunk.par_iter())
        .map(|(&run, &chunk)| {
            let bytes = extent_bytes(run);
            Extent {
                offset: (run.0 * BLOCK_SIZE) as u64,
                len: bytes.len() as u64,
                chunk: chunk.map(|c| renumber[c]),
                first_block_key: block_key64(&bytes[..bytes.len().min(BLOCK_SIZE)]),
                digest: *blake3::hash(bytes).as_bytes(),
            }
        })
        .collect();
    Ok(PayloadIndex {
        image_size: new.len() as u64,
        image_digest: *blake3::hash(new).as_bytes(),
        chunks,
        extents,
    })
}
