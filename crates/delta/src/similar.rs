//! Finding the base regions that resemble the new image's literal blocks, so that each
//! literal segment is compressed against a small, relevant reference instead of the
//! whole base image.
//!
//! Method: a gear rolling hash (64-byte window) marks content-defined anchors, about one
//! every 64 bytes. The anchors of every literal block go into a table; one pass over the
//! base looks each base anchor up and votes for (literal block, base block) pairs. Each
//! segment's reference is the best-voted base blocks of its literal blocks, capped.

use std::collections::HashMap;
use std::ops::Range;

use rayon::prelude::*;

use crate::format::BLOCK_SIZE;

/// Anchor when the top `ANCHOR_BITS` bits of the gear hash are zero.
const ANCHOR_BITS: u32 = 6;
/// Anchors shared by more literal blocks than this carry no information.
const MAX_BLOCKS_PER_ANCHOR: usize = 4;
/// Base blocks kept per literal block.
const CANDIDATES_PER_BLOCK: usize = 3;
/// The gear hash covers the last 64 bytes.
const WINDOW: usize = 64;

fn gear_table() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for entry in &mut table {
        // splitmix64
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        *entry = z ^ (z >> 31);
    }
    table
}

/// Calls `found(position, key)` for every anchor of `bytes` whose full 64-byte window lies at
/// or after `from` (positions are indices into `bytes`).
fn anchors(gear: &[u64; 256], bytes: &[u8], from: usize, mut found: impl FnMut(usize, u64)) {
    let mut hash = 0u64;
    for (position, &byte) in bytes.iter().enumerate() {
        hash = (hash << 1).wrapping_add(gear[byte as usize]);
        if hash >> (64 - ANCHOR_BITS) == 0 && position + 1 >= from + WINDOW {
            let window = &bytes[position + 1 - WINDOW..=position];
            // Runs of one byte value (zero fill, padding) match everywhere: skip them.
            if window.iter().all(|&b| b == window[0]) {
                continue;
            }
            found(position, hash);
        }
    }
}

/// For each segment (a range of `literal_blocks`), the base extents (offset, len), sorted and
/// merged, to use as its zstd reference prefix; at most `max_reference` bytes each.
pub(crate) fn choose_references(
    old: &[u8],
    new: &[u8],
    literal_blocks: &[u64],
    segments: &[Range<usize>],
    max_reference: usize,
) -> Vec<Vec<(u64, u64)>> {
    let gear = gear_table();
    // Anchors of the literal blocks: key -> literal ordinals.
    let per_block: Vec<Vec<u64>> = literal_blocks
        .par_iter()
        .map(|&block| {
            let start = block as usize * BLOCK_SIZE;
            let end = (start + BLOCK_SIZE).min(new.len());
            let mut keys = Vec::new();
            anchors(&gear, &new[start..end], 0, |_, key| keys.push(key));
            keys.sort_unstable();
            keys.dedup();
            keys
        })
        .collect();
    let mut table: HashMap<u64, Vec<u32>> = HashMap::new();
    for (ordinal, keys) in per_block.iter().enumerate() {
        for &key in keys {
            let entry = table.entry(key).or_default();
            if entry.len() <= MAX_BLOCKS_PER_ANCHOR {
                entry.push(ordinal as u32);
            }
        }
    }
    table.retain(|_, ordinals| ordinals.len() <= MAX_BLOCKS_PER_ANCHOR);
    drop(per_block);

    // One pass over the base, in parallel parts: votes (literal ordinal, base block).
    const PART: usize = 4 << 20;
    let n_parts = old.len().div_ceil(PART);
    let mut votes: Vec<(u32, u32)> = (0..n_parts)
        .into_par_iter()
        .flat_map_iter(|part_idx| {
            let start = part_idx * PART;
            let end = (start + PART).min(old.len());
            let warm = start.saturating_sub(WINDOW - 1);
            let mut part_votes = Vec::new();
            anchors(&gear, &old[warm..end], start - warm, |position, key| {
                if let Some(ordinals) = table.get(&key) {
                    let old_block = ((warm + position) / BLOCK_SIZE) as u32;
                    part_votes.extend(ordinals.iter().map(|&ordinal| (ordinal, old_block)));
                }
            });
            part_votes
        })
        .collect();
    votes.par_sort_unstable();

    // Best base blocks per literal ordinal.
    let mut best: Vec<Vec<(u32, u32)>> = vec![Vec::new(); literal_blocks.len()]; // (votes, block)
    let mut idx = 0;
    while idx < votes.len() {
        let (ordinal, block) = votes[idx];
        let mut count = 0u32;
        while idx < votes.len() && votes[idx] == (ordinal, block) {
            count += 1;
            idx += 1;
        }
        best[ordinal as usize].push((count, block));
    }
    for candidates in &mut best {
        candidates.sort_unstable_by(|a, b| b.cmp(a));
        candidates.truncate(CANDIDATES_PER_BLOCK);
    }

    segments
        .par_iter()
        .map(|range| {
            let mut weight: HashMap<u32, u32> = HashMap::new();
            for candidates in &best[range.clone()] {
                for &(count, block) in candidates {
                    *weight.entry(block).or_default() += count;
                }
            }
            let mut blocks: Vec<(u32, u32)> = weight.into_iter().map(|(b, w)| (w, b)).collect();
            blocks.sort_unstable_by(|a, b| b.cmp(a));
            blocks.truncate(max_reference / BLOCK_SIZE);
            let mut chosen: Vec<u64> = blocks.into_iter().map(|(_, b)| u64::from(b)).collect();
            chosen.sort_unstable();
            let mut extents: Vec<(u64, u64)> = Vec::new();
            for block in chosen {
                let offset = block * BLOCK_SIZE as u64;
                let len = (BLOCK_SIZE as u64).min(old.len() as u64 - offset);
                match extents.last_mut() {
                    Some(last) if last.0 + last.1 == offset => last.1 += len,
                    _ => extents.push((offset, len)),
                }
            }
            extents
        })
        .collect()
}
