//! The device side of chunk reuse: plan what the running slot already holds, fetch the
//! rest by byte ranges, assemble the new image in order.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;

use rayon::prelude::*;

use crate::SlotSink;
use crate::apply::decompress;
use crate::error::{Error, Result};
use crate::format::{BLOCK_SIZE, hex};
use crate::index::{PayloadIndex, block_key64};

/// How the planner batches byte ranges.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Ranges closer than this are merged (the gap is downloaded too).
    pub merge_gap: u64,
    /// Most ranges in one request (servers and CDNs limit multi-range requests).
    pub max_ranges_per_request: usize,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            merge_gap: 64 << 10,
            max_ranges_per_request: 16,
        }
    }
}

/// What the device reuses from its running slot and what it downloads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReusePlan {
    /// For each extent of the index: the slot offset holding its bytes, if reused.
    pub sources: Vec<Option<u64>>,
    /// Chunks to download, in payload order.
    pub missing: Vec<usize>,
    /// Payload byte ranges to fetch, in batches of at most `max_ranges_per_request`.
    pub requests: Vec<Vec<Range<u64>>>,
    /// Number of chunks in the index.
    pub n_chunks: usize,
}

impl ReusePlan {
    /// Bytes the requests fetch (gaps merged into ranges included).
    pub fn download_bytes(&self) -> u64 {
        self.requests
            .iter()
            .flatten()
            .map(|range| range.end - range.start)
            .sum()
    }

    /// Number of chunks taken from the slot.
    pub fn reused_chunks(&self) -> usize {
        self.n_chunks - self.missing.len()
    }
}

/// Scans `slot` (hashing every 4 KiB block), finds each extent of `index` anywhere in it,
/// and plans the downloads of the chunks it cannot rebuild from the slot.
pub fn plan_reuse(slot: &File, index: &PayloadIndex, opts: &PlanOptions) -> Result<ReusePlan> {
    // First-block keys we look for.
    let mut wanted: HashMap<u64, Vec<u64>> = HashMap::new();
    for extent in &index.extents {
        if extent.chunk.is_some() && extent.len >= BLOCK_SIZE as u64 {
            wanted.entry(extent.first_block_key).or_default();
        }
    }
    let slot_len = slot.metadata().map_err(Error::io("stat slot"))?.len();
    const PIECE: usize = 8 << 20;
    let mut buf = vec![0u8; PIECE];
    let mut offset = 0u64;
    while offset + BLOCK_SIZE as u64 <= slot_len {
        let n = ((slot_len - offset) as usize).min(PIECE) / BLOCK_SIZE * BLOCK_SIZE;
        slot.read_exact_at(&mut buf[..n], offset)
            .map_err(Error::io("read slot"))?;
        let keys: Vec<u64> = buf[..n]
            .par_chunks_exact(BLOCK_SIZE)
            .map(block_key64)
            .collect();
        for (block_idx, key) in keys.into_iter().enumerate() {
            if let Some(places) = wanted.get_mut(&key)
                && places.len() < 4
            {
                places.push(offset + (block_idx * BLOCK_SIZE) as u64);
            }
        }
        offset += n as u64;
    }
    drop(buf);
    // Confirm each extent by its digest at a candidate place.
    let sources: Vec<Option<u64>> = index
        .extents
        .par_iter()
        .map(|extent| {
            if extent.chunk.is_none() {
                return Ok(None);
            }
            let Some(places) = wanted.get(&extent.first_block_key) else {
                return Ok(None);
            };
            let mut bytes = vec![0u8; extent.len as usize];
            for &place in places {
                if place + extent.len > slot_len {
                    continue;
                }
                slot.read_exact_at(&mut bytes, place)
                    .map_err(Error::io("read slot"))?;
                if blake3::hash(&bytes).as_bytes() == &extent.digest {
                    return Ok(Some(place));
                }
            }
            Ok(None)
        })
        .collect::<Result<_>>()?;
    let mut chunk_missing = vec![false; index.chunks.len()];
    for (extent, source) in index.extents.iter().zip(&sources) {
        if let (Some(chunk), None) = (extent.chunk, source) {
            chunk_missing[chunk] = true;
        }
    }
    let missing: Vec<usize> = (0..index.chunks.len())
        .filter(|&c| chunk_missing[c])
        .collect();
    // A chunk downloaded whole serves all its extents: forget their slot sources.
    let sources = index
        .extents
        .iter()
        .zip(sources)
        .map(|(extent, source)| match extent.chunk {
            Some(chunk) if chunk_missing[chunk] => None,
            _ => source,
        })
        .collect();
    let requests = batch_ranges(
        missing.iter().map(|&c| {
            let chunk = &index.chunks[c];
            chunk.payload_offset..chunk.payload_offset + chunk.compressed_len
        }),
        opts,
    );
    Ok(ReusePlan {
        sources,
        missing,
        requests,
        n_chunks: index.chunks.len(),
    })
}

/// Merges sorted ranges closer than `merge_gap` and splits them into request batches.
fn batch_ranges(
    ranges: impl Iterator<Item = Range<u64>>,
    opts: &PlanOptions,
) -> Vec<Vec<Range<u64>>> {
    let mut merged: Vec<Range<u64>> = Vec::new();
    for range in ranges {
        match merged.last_mut() {
            Some(last) if range.start <= last.end + opts.merge_gap => last.end = range.end,
            _ => merged.push(range),
        }
    }
    merged
        .chunks(opts.max_ranges_per_request.max(1))
        .map(<[Range<u64>]>::to_vec)
        .collect()
}

/// Where the assembler reads downloaded payload bytes, addressed by payload offset.
pub trait ChunkSource {
    /// Fills `buf` with the payload bytes at `offset`; `NotFound` if they were not fetched.
    fn read_payload(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

/// A cache file holding downloaded ranges at their payload offsets (sparse elsewhere).
impl ChunkSource for File {
    fn read_payload(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.read_exact_at(buf, offset)
    }
}

/// Downloaded ranges kept in memory (tests, and the example's stand-in for HTTP).
#[derive(Debug, Default, Clone)]
pub struct RangeFile {
    ranges: BTreeMap<u64, Vec<u8>>,
}

impl RangeFile {
    /// Records bytes fetched for `offset..offset + bytes.len()`.
    pub fn insert(&mut self, offset: u64, bytes: Vec<u8>) {
        self.ranges.insert(offset, bytes);
    }

    /// Copies `range` of a local payload file, as an HTTP range request would.
    pub fn fetch_from(&mut self, payload: &File, range: Range<u64>) -> Result<()> {
        let mut bytes = vec![0u8; (range.end - range.start) as usize];
        payload
            .read_exact_at(&mut bytes, range.start)
            .map_err(Error::io("read payload"))?;
        self.insert(range.start, bytes);
        Ok(())
    }
}

impl ChunkSource for RangeFile {
    fn read_payload(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let found = self.ranges.range(..=offset).next_back();
        match found {
            Some((&start, bytes)) if offset + buf.len() as u64 <= start + bytes.len() as u64 => {
                let at = (offset - start) as usize;
                buf.copy_from_slice(&bytes[at..at + buf.len()]);
                Ok(())
            }
            _ => Err(io::Error::new(io::ErrorKind::NotFound, "range not fetched")),
        }
    }
}

/// What [`assemble`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssembleReport {
    /// Bytes handed to the sink.
    pub bytes_written: u64,
    /// Of those, bytes read from the running slot.
    pub bytes_reused: u64,
    /// Of those, bytes decompressed from downloaded chunks.
    pub bytes_from_payload: u64,
    /// Chunks skipped because the caller said they were done.
    pub chunks_skipped: usize,
    /// Largest decompressed chunk held at once, bytes.
    pub peak_chunk_bytes: u64,
}

/// Writes the new image to `sink` in increasing offset order: reused extents from `slot`,
/// the rest from downloaded chunks, every extent checked against its digest first.
///
/// `done` lists chunks already written by an earlier, interrupted run: their extents are
/// skipped (zero extents are always rewritten). `on_chunk_done` is called once a chunk's
/// last extent has been written, so the caller can record progress durably.
pub fn assemble(
    slot: &File,
    index: &PayloadIndex,
    plan: &ReusePlan,
    source: &mut impl ChunkSource,
    done: &[usize],
    sink: &mut impl SlotSink,
    mut on_chunk_done: impl FnMut(usize),
) -> Result<AssembleReport> {
    if plan.sources.len() != index.extents.len() {
        return Err(Error::IndexInvalid {
            detail: "the plan was made for another index".into(),
        });
    }
    let mut is_done = vec![false; index.chunks.len()];
    for &chunk in done {
        if let Some(flag) = is_done.get_mut(chunk) {
            *flag = true;
        }
    }
    // Extents left per chunk, and each extent's position inside its chunk.
    let mut left = vec![0usize; index.chunks.len()];
    let mut position_in_chunk = vec![0u64; index.extents.len()];
    let mut fill = vec![0u64; index.chunks.len()];
    for (extent_idx, extent) in index.extents.iter().enumerate() {
        if let Some(chunk) = extent.chunk {
            left[chunk] += 1;
            position_in_chunk[extent_idx] = fill[chunk];
            fill[chunk] += extent.len;
        }
    }
    let mut report = AssembleReport::default();
    let mut open: HashMap<usize, Vec<u8>> = HashMap::new();
    let zeros = vec![0u8; 1 << 20];
    let mut buf = Vec::new();
    for (extent_idx, extent) in index.extents.iter().enumerate() {
        let Some(chunk) = extent.chunk else {
            let mut written = 0;
            while written < extent.len {
                let n = (extent.len - written).min(zeros.len() as u64) as usize;
                sink.write_at(extent.offset + written, &zeros[..n])
                    .map_err(Error::io("write sink"))?;
                written += n as u64;
            }
            report.bytes_written += extent.len;
            continue;
        };
        if is_done[chunk] {
            left[chunk] -= 1;
            if left[chunk] == 0 {
                report.chunks_skipped += 1;
            }
            continue;
        }
        let bytes: &[u8] = if let Some(place) = plan.sources[extent_idx] {
            buf.resize(extent.len as usize, 0);
            slot.read_exact_at(&mut buf, place)
                .map_err(Error::io("read slot"))?;
            report.bytes_reused += extent.len;
            &buf
        } else {
            if !open.contains_key(&chunk) {
                let data = load_chunk(index, chunk, extent.offset, source)?;
                report.peak_chunk_bytes = report
                    .peak_chunk_bytes
                    .max(data.len() as u64 + open.values().map(|d| d.len() as u64).sum::<u64>());
                open.insert(chunk, data);
            }
            let data = &open[&chunk];
            let at = position_in_chunk[extent_idx] as usize;
            report.bytes_from_payload += extent.len;
            &data[at..at + extent.len as usize]
        };
        let found = blake3::hash(bytes);
        if found.as_bytes() != &extent.digest {
            return Err(Error::DigestMismatch {
                what: "extent",
                offset: extent.offset,
                expected: hex(&extent.digest),
                found: found.to_hex().to_string(),
            });
        }
        sink.write_at(extent.offset, bytes)
            .map_err(Error::io("write sink"))?;
        report.bytes_written += extent.len;
        left[chunk] -= 1;
        if left[chunk] == 0 {
            open.remove(&chunk);
            on_chunk_done(chunk);
        }
    }
    Ok(report)
}

fn load_chunk(
    index: &PayloadIndex,
    chunk_idx: usize,
    needed_at: u64,
    source: &mut impl ChunkSource,
) -> Result<Vec<u8>> {
    let chunk = &index.chunks[chunk_idx];
    let mut frame = vec![0u8; chunk.compressed_len as usize];
    source
        .read_payload(chunk.payload_offset, &mut frame)
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::UnexpectedEof => Error::ChunkMissing {
                chunk: chunk_idx,
                offset: needed_at,
            },
            _ => Error::Io {
                operation: "read downloaded chunk",
                source: e,
            },
        })?;
    let found = blake3::hash(&frame);
    if found.as_bytes() != &chunk.digest {
        return Err(Error::DigestMismatch {
            what: "downloaded chunk",
            offset: needed_at,
            expected: hex(&chunk.digest),
            found: found.to_hex().to_string(),
        });
    }
    decompress(&frame, &[], chunk.raw_len as usize, 27)
}
