//! Building a tree by reading an image that is already on disk.

use std::cell::RefCell;
use std::fs::File;
use std::os::unix::fs::MetadataExt;

use ferry_types::RootHash;
use rayon::prelude::*;

use crate::error::{IoAction, SealError};
use crate::format::{
    BLOCK_LEN, BLOCK_SIZE, BlockDigest, HASHES_PER_BLOCK, Salt, hash_block, hash_of_digests,
    pack_hash_block,
};
use crate::io::{read_exact_at, truncated_as, write_all_at};
use crate::layout::TreeLayout;
use crate::superblock::Superblock;
use crate::tree::{check_hash_offset, levels_above, write_level};

/// Level-0 hash blocks handled by one parallel task: 8 hash blocks cover
/// 4 MiB of data, the most each worker thread holds at once.
pub(crate) const HASH_BLOCKS_PER_TASK: u64 = 8;

/// Data bytes covered by one level-0 hash block (512 KiB).
pub(crate) const DATA_PER_HASH_BLOCK: u64 = HASHES_PER_BLOCK as u64 * BLOCK_SIZE;

thread_local! {
    /// Each worker's data buffer, reused across tasks.
    pub(crate) static DATA_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Builds the hash tree of the first `data_size` bytes of `image` and writes
/// it, superblock first, at `hash_offset` in `tree_out`.
///
/// Reads the image with positioned reads on every core, holding at most
/// 4 MiB of data per thread plus the digests of level 1 upwards (1/16384 of
/// the image). `tree_out` may be `image` itself when `hash_offset` is at or
/// after `data_size` (`SealError::TreeOverlapsImage` otherwise). `data_size`
/// must be a non-zero multiple of 4096 and `hash_offset` a multiple of 4096.
/// The superblock gets a random UUID.
pub fn build_tree(
    image: &File,
    data_size: u64,
    salt: Salt,
    tree_out: &File,
    hash_offset: u64,
) -> Result<(RootHash, Superblock), SealError> {
    let layout = TreeLayout::new(data_size)?;
    check_hash_offset(hash_offset)?;
    if hash_offset < data_size && same_file(image, tree_out) {
        return Err(SealError::TreeOverlapsImage {
            hash_offset,
            data_size,
        });
    }
    let superblock = Superblock::new(salt, layout.data_blocks());
    let truncated = |error| truncated_as(error, data_size, layout.tree_size());

    let root = match layout.levels().first() {
        None => {
            let mut block = vec![0u8; BLOCK_LEN];
            read_exact_at(image, &mut block, 0, IoAction::ReadImage).map_err(truncated)?;
            RootHash::from_bytes(hash_block(&salt, &block))
        }
        Some(level_0) => {
            let level_0_offset = hash_offset + level_0.offset;
            let n_tasks = level_0.blocks.div_ceil(HASH_BLOCKS_PER_TASK);
            let level_1_entries: Vec<Vec<BlockDigest>> = (0..n_tasks)
                .into_par_iter()
                .map(|task_idx| {
                    hash_data_task(image, data_size, &salt, task_idx, tree_out, level_0_offset)
                })
                .collect::<Result<_, _>>()
                .map_err(truncated)?;
            let level_1_entries: Vec<BlockDigest> = level_1_entries.into_iter().flatten().collect();
            let mut upper = levels_above(&salt, &level_1_entries);
            upper.insert(0, level_1_entries);
            for (entries, level) in upper.iter().zip(&layout.levels()[1..]) {
                write_level(tree_out, hash_offset + level.offset, entries)?;
            }
            let top = upper.last().map_or(&[][..], Vec::as_slice);
            if layout.levels().len() == 1 {
                // Level 0 is the top: its one block's digest is the root.
                RootHash::from_bytes(top[0])
            } else {
                RootHash::from_bytes(hash_of_digests(&salt, top))
            }
        }
    };
    superblock.write_to(tree_out, hash_offset)?;
    Ok((root, superblock))
}

/// Whether two handles are the same file (same device and inode). Unknown
/// counts as different: the caller then gets what it asked for.
fn same_file(first: &File, second: &File) -> bool {
    match (first.metadata(), second.metadata()) {
        (Ok(first), Ok(second)) => first.dev() == second.dev() && first.ino() == second.ino(),
        _ => false,
    }
}

/// Hashes the data under level-0 hash blocks `task_idx * 8 ..` (up to 8),
/// writes those hash blocks, and returns their digests (level-1 entries).
fn hash_data_task(
    image: &File,
    data_size: u64,
    salt: &Salt,
    task_idx: u64,
    tree_out: &File,
    level_0_offset: u64,
) -> Result<Vec<BlockDigest>, SealError> {
    let data_start = task_idx * HASH_BLOCKS_PER_TASK * DATA_PER_HASH_BLOCK;
    let data_end = (data_start + HASH_BLOCKS_PER_TASK * DATA_PER_HASH_BLOCK).min(data_size);
    let n_data = (data_end - data_start) as usize;
    let n_hash_blocks = n_data.div_ceil(DATA_PER_HASH_BLOCK as usize);
    let mut hash_blocks = vec![0u8; n_hash_blocks * BLOCK_LEN];
    DATA_BUFFER.with_borrow_mut(|data| {
        data.resize(n_data, 0);
        read_exact_at(image, data, data_start, IoAction::ReadImage)?;
        let mut leaves = [[0u8; 32]; HASHES_PER_BLOCK];
        let digests = data
            .chunks(DATA_PER_HASH_BLOCK as usize)
            .zip(hash_blocks.chunks_exact_mut(BLOCK_LEN))
            .map(|(covered, hash_block_bytes)| {
                let n_leaves = covered.len() / BLOCK_LEN;
                for (leaf, block) in leaves.iter_mut().zip(covered.chunks_exact(BLOCK_LEN)) {
                    *leaf = hash_block(salt, block);
                }
                pack_hash_block(&leaves[..n_leaves], hash_block_bytes);
                hash_block(salt, hash_block_bytes)
            })
            .collect();
        let hash_blocks_offset = level_0_offset + task_idx * HASH_BLOCKS_PER_TASK * BLOCK_SIZE;
        write_all_at(tree_out, &hash_blocks, hash_blocks_offset)?;
        Ok(digests)
    })
}
