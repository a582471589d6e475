//! Building a tailored delta: block map, literal segments, references, zstd.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::FileExt;

use rayon::prelude::*;
use zstd::zstd_safe::{CCtx, CParameter};

use crate::error::{Error, Result};
use crate::format::{
    BLOCK_SIZE, DELTA_FORMAT, DELTA_MAGIC, DeltaManifest, Op, Segment, Tables, hex,
};
use crate::similar::choose_references;

/// How `encode_delta` trades build time against size. The defaults are the measured choice
/// (see the crate docs); every limit here is also a memory bound on the device.
#[derive(Debug, Clone)]
pub struct EncodeOptions {
    /// zstd level for literal segments (1..=22).
    pub level: i32,
    /// Largest literal segment (decompressed), bytes. The device holds one at a time.
    pub segment_bytes: usize,
    /// Largest reference (base bytes) per segment. The device holds one at a time.
    pub max_reference_bytes: usize,
    /// Output verification window, bytes (a multiple of 4096).
    pub window_size: u32,
    /// Choose references by anchor voting (`true`), or compress literals with no reference.
    pub use_references: bool,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            level: 19,
            segment_bytes: 32 << 20,
            max_reference_bytes: 96 << 20,
            window_size: 1 << 20,
            use_references: true,
        }
    }
}

/// Encodes the delta that turns `old` into `new`, writes it to `out` and returns its manifest.
///
/// Both images are read whole into memory (this runs on the publisher).
pub fn encode_delta(
    old: &File,
    new: &File,
    out: &mut impl Write,
    opts: &EncodeOptions,
) -> Result<DeltaManifest> {
    let old = read_whole(old, "read base image")?;
    let new = read_whole(new, "read new image")?;
    encode_delta_bytes(&old, &new, out, opts)
}

/// [`encode_delta`] over images already in memory.
pub fn encode_delta_bytes(
    old: &[u8],
    new: &[u8],
    out: &mut impl Write,
    opts: &EncodeOptions,
) -> Result<DeltaManifest> {
    assert!(
        (opts.window_size as usize).is_multiple_of(BLOCK_SIZE) && opts.window_size > 0,
        "window_size must be a positive multiple of 4096"
    );
    let ops = block_map(old, new);
    let literal_blocks: Vec<u64> = ops_blocks(&ops)
        .filter_map(|(op, block)| matches!(op, Op::Literal { .. }).then_some(block))
        .collect();
    let literal_len = |block: u64| block_len(new.len(), block);
    // Cut the literal sequence into segments of at most segment_bytes.
    let mut segment_ranges: Vec<Range<usize>> = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (ordinal, &block) in literal_blocks.iter().enumerate() {
        let len = literal_len(block);
        if bytes + len > opts.segment_bytes && ordinal > start {
            segment_ranges.push(start..ordinal);
            start = ordinal;
            bytes = 0;
        }
        bytes += len;
    }
    if start < literal_blocks.len() {
        segment_ranges.push(start..literal_blocks.len());
    }
    let references = if opts.use_references {
        choose_references(
            old,
            new,
            &literal_blocks,
            &segment_ranges,
            opts.max_reference_bytes,
        )
    } else {
        vec![Vec::new(); segment_ranges.len()]
    };

    let frames: Vec<(Segment, Vec<u8>)> = segment_ranges
        .par_iter()
        .zip(references.par_iter())
        .map(|(range, reference)| {
            let mut literal = Vec::new();
            for &block in &literal_blocks[range.clone()] {
                let start = block as usize * BLOCK_SIZE;
                literal.extend_from_slice(&new[start..start + literal_len(block)]);
            }
            let mut prefix = Vec::new();
            for &(offset, len) in reference {
                prefix.extend_from_slice(&old[offset as usize..(offset + len) as usize]);
            }
            let frame = compress_segment(&literal, &prefix, opts.level)?;
            let segment = Segment {
                raw_len: literal.len() as u64,
                compressed_len: frame.len() as u64,
                digest: *blake3::hash(&frame).as_bytes(),
                reference: reference.clone(),
            };
            Ok((segment, frame))
        })
        .collect::<Result<_>>()?;

    // Base extents: every base byte the apply reads (copy sources and references).
    let mut base_extents: Vec<(u64, u64)> = Vec::new();
    for (op, _) in ops_blocks(&ops) {
        if let Op::Copy { n, old_block } = op {
            base_extents.push((old_block * BLOCK_SIZE as u64, n * BLOCK_SIZE as u64));
        }
    }
    for (segment, _) in &frames {
        base_extents.extend_from_slice(&segment.reference);
    }
    let base_extents = merge_extents(base_extents);
    let mut base_hasher = blake3::Hasher::new();
    let mut base_bytes = 0;
    for &(offset, len) in &base_extents {
        base_hasher.update(&old[offset as usize..(offset + len) as usize]);
        base_bytes += len;
    }
    let window_digests: Vec<[u8; 32]> = new
        .par_chunks(opts.window_size as usize)
        .map(|window| *blake3::hash(window).as_bytes())
        .collect();

    let mut manifest = DeltaManifest {
        format: DELTA_FORMAT.to_owned(),
        block_size: BLOCK_SIZE as u32,
        old_size: old.len() as u64,
        new_size: new.len() as u64,
        new_digest: blake3::Hasher::new()
            .update_rayon(new)
            .finalize()
            .to_hex()
            .to_string(),
        base_digest: base_hasher.finalize().to_hex().to_string(),
        base_bytes,
        window_size: opts.window_size,
        tables_len: 0,
        tables_raw_len: 0,
        tables_digest: String::new(),
        n_segments: frames.len() as u64,
        max_segment_bytes: frames.iter().map(|(s, _)| s.raw_len).max().unwrap_or(0),
        max_reference_bytes: frames
            .iter()
            .map(|(s, _)| s.reference.iter().map(|e| e.1).sum::<u64>())
            .max()
            .unwrap_or(0),
        copy_blocks: 0,
        zero_blocks: 0,
        literal_blocks: literal_blocks.len() as u64,
        literal_compressed_bytes: frames.iter().map(|(s, _)| s.compressed_len).sum(),
    };
    for op in &ops {
        match *op {
            Op::Copy { n, .. } => manifest.copy_blocks += n,
            Op::Zero { n } => manifest.zero_blocks += n,
            Op::Literal { .. } => {}
        }
    }
    let (segments, frames): (Vec<Segment>, Vec<Vec<u8>>) = frames.into_iter().unzip();
    let tables = Tables {
        base_extents,
        window_digests,
        ops,
        segments,
    };
    let raw_tables = tables.encode();
    let tables_frame = zstd::bulk::compress(&raw_tables, 19).map_err(|e| Error::Compression {
        operation: "compress",
        detail: e.to_string(),
    })?;
    manifest.tables_len = tables_frame.len() as u64;
    manifest.tables_raw_len = raw_tables.len() as u64;
    manifest.tables_digest = hex(blake3::hash(&tables_frame).as_bytes());

    let json = manifest.to_json();
    out.write_all(DELTA_MAGIC)
        .map_err(Error::io("write delta"))?;
    out.write_all(&(json.len() as u32).to_le_bytes())
        .map_err(Error::io("write delta"))?;
    out.write_all(&json).map_err(Error::io("write delta"))?;
    out.write_all(blake3::hash(&json).as_bytes())
        .map_err(Error::io("write delta"))?;
    out.write_all(&tables_frame)
        .map_err(Error::io("write delta"))?;
    for frame in &frames {
        out.write_all(frame).map_err(Error::io("write delta"))?;
    }
    out.flush().map_err(Error::io("write delta"))?;
    Ok(manifest)
}

/// Reads a whole file with positioned reads.
pub(crate) fn read_whole(file: &File, operation: &'static str) -> Result<Vec<u8>> {
    let len = file.metadata().map_err(Error::io(operation))?.len();
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, 0)
        .map_err(Error::io(operation))?;
    Ok(bytes)
}

/// Length of new block `block` (the last one may be short).
fn block_len(image_len: usize, block: u64) -> usize {
    (image_len - block as usize * BLOCK_SIZE).min(BLOCK_SIZE)
}

/// 128-bit block key for the block map (collisions are ruled out by comparing bytes).
pub(crate) fn block_key(block: &[u8]) -> u128 {
    let hash = blake3::hash(block);
    u128::from_le_bytes(hash.as_bytes()[..16].try_into().expect("16 bytes"))
}

pub(crate) fn is_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

/// The block map: for each new block, copy from anywhere in the base, zero, or literal.
fn block_map(old: &[u8], new: &[u8]) -> Vec<Op> {
    let n_old_full = old.len() / BLOCK_SIZE;
    let old_block = |i: usize| &old[i * BLOCK_SIZE..(i + 1) * BLOCK_SIZE];
    let old_keys: Vec<Option<u128>> = (0..n_old_full)
        .into_par_iter()
        .map(|i| (!is_zero(old_block(i))).then(|| block_key(old_block(i))))
        .collect();
    let mut index: HashMap<u128, u64> = HashMap::with_capacity(old_keys.len());
    for (i, key) in old_keys.iter().enumerate() {
        if let Some(key) = key {
            index.entry(*key).or_insert(i as u64);
        }
    }
    let n_new = new.len().div_ceil(BLOCK_SIZE);
    let new_block = |i: usize| &new[i * BLOCK_SIZE..(i * BLOCK_SIZE + BLOCK_SIZE).min(new.len())];
    let new_keys: Vec<Option<u128>> = (0..n_new)
        .into_par_iter()
        .map(|i| {
            let block = new_block(i);
            (block.len() == BLOCK_SIZE && !is_zero(block)).then(|| block_key(block))
        })
        .collect();

    let mut ops: Vec<Op> = Vec::new();
    for (i, key) in new_keys.iter().enumerate() {
        let block = new_block(i);
        let op = if is_zero(block) {
            Op::Zero { n: 1 }
        } else if let Some(key) = key {
            // Prefer continuing the previous copy run, then any base block with this content.
            let continued = match ops.last() {
                Some(Op::Copy {
                    n,
                    old_block: start,
                }) => {
                    let next = (start + n) as usize;
                    (next < n_old_full && old_block(next) == block).then_some(next as u64)
                }
                _ => None,
            };
            match continued.or_else(|| {
                index
                    .get(key)
                    .copied()
                    .filter(|&b| old_block(b as usize) == block)
            }) {
                Some(source) => Op::Copy {
                    n: 1,
                    old_block: source,
                },
                None => Op::Literal { n: 1 },
            }
        } else {
            Op::Literal { n: 1 }
        };
        push_op(&mut ops, op);
    }
    ops
}

fn push_op(ops: &mut Vec<Op>, op: Op) {
    match (ops.last_mut(), op) {
        (Some(Op::Zero { n }), Op::Zero { n: m })
        | (Some(Op::Literal { n }), Op::Literal { n: m }) => *n += m,
        (
            Some(Op::Copy { n, old_block }),
            Op::Copy {
                n: m,
                old_block: next,
            },
        ) if *old_block + *n == next => *n += m,
        _ => ops.push(op),
    }
}

/// Each op with the first new block it covers, expanded to one item per block.
fn ops_blocks(ops: &[Op]) -> impl Iterator<Item = (Op, u64)> + '_ {
    let mut next_block = 0u64;
    ops.iter().flat_map(move |&op| {
        let n = match op {
            Op::Copy { n, .. } | Op::Zero { n } | Op::Literal { n } => n,
        };
        let first = next_block;
        next_block += n;
        let per_block = match op {
            Op::Copy { old_block, .. } => (0..n)
                .map(|i| {
                    (
                        Op::Copy {
                            n: 1,
                            old_block: old_block + i,
                        },
                        first + i,
                    )
                })
                .collect::<Vec<_>>(),
            Op::Zero { .. } => (0..n).map(|i| (Op::Zero { n: 1 }, first + i)).collect(),
            Op::Literal { .. } => (0..n).map(|i| (Op::Literal { n: 1 }, first + i)).collect(),
        };
        per_block.into_iter()
    })
}

/// Sorts and merges overlapping or touching extents.
pub(crate) fn merge_extents(mut extents: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    extents.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(extents.len());
    for (offset, len) in extents {
        if len == 0 {
            continue;
        }
        match merged.last_mut() {
            Some(last) if last.0 + last.1 >= offset => {
                last.1 = last.1.max(offset + len - last.0);
            }
            _ => merged.push((offset, len)),
        }
    }
    merged
}

/// Compresses one literal segment with `prefix` as zstd reference, tables sized to cover it.
pub(crate) fn compress_segment(literal: &[u8], prefix: &[u8], level: i32) -> Result<Vec<u8>> {
    let total = (literal.len() + prefix.len()).max(1 << 10);
    let window_log = (usize::BITS - (total - 1).leading_zeros()).clamp(10, 30);
    let zstd_err = |code: usize| Error::Compression {
        operation: "compress",
        detail: zstd::zstd_safe::get_error_name(code).to_owned(),
    };
    let mut cctx = CCtx::create();
    for param in [
        CParameter::CompressionLevel(level),
        CParameter::WindowLog(window_log),
        CParameter::HashLog((window_log - 1).min(26)),
        CParameter::ChainLog(window_log.min(27)),
        CParameter::ContentSizeFlag(true),
        CParameter::ChecksumFlag(false),
        CParameter::DictIdFlag(false),
    ] {
        cctx.set_parameter(param).map_err(zstd_err)?;
    }
    cctx.ref_prefix(prefix).map_err(zstd_err)?;
    let mut frame = Vec::with_capacity(zstd::zstd_safe::compress_bound(literal.len()));
    cctx.compress2(&mut frame, literal).map_err(zstd_err)?;
    Ok(frame)
}
