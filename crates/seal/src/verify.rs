//! Checking an image against its tree and an expected root hash.

use std::fs::File;

use rayon::prelude::*;

use crate::build::{DATA_BUFFER, DATA_PER_HASH_BLOCK, HASH_BLOCKS_PER_TASK};
use crate::error::{IoAction, SealError};
use ferry_types::RootHash;

use crate::format::{BLOCK_LEN, BLOCK_SIZE, DIGEST_SIZE, Salt, hash_block};
use crate::io::{read_exact_at, truncated_as};
use crate::layout::TreeLayout;
use crate::superblock::Superblock;
use crate::tree::check_hash_offset;

/// Checks the first `data_size` bytes of `image` against the tree at
/// `hash_offset` in `tree` and the root hash the caller trusts.
///
/// The superblock must be valid and cover exactly the image's blocks
/// (`SealError::SuperblockInvalid`, `SealError::SuperblockMismatch`); the
/// tree's top must hash to `expected_root` (`SealError::RootMismatch`, which
/// is also what a tree of another release with another salt gives); every
/// hash block must match its parent (`SealError::HashBlockCorrupt`); and every
/// data block its digest (`SealError::Mismatch`, naming the first bad block).
///
/// The upper levels (1/16384 of the image) are read into memory and checked
/// first; then the image and level 0 are read together on every core, at
/// most 4 MiB of data per thread.
pub fn verify(
    image: &File,
    data_size: u64,
    tree: &File,
    hash_offset: u64,
    expected_root: &RootHash,
) -> Result<(), SealError> {
    let layout = TreeLayout::new(data_size)?;
    check_hash_offset(hash_offset)?;
    let truncated = |error| truncated_as(error, data_size, layout.tree_size());
    let superblock = Superblock::read_from(tree, hash_offset).map_err(truncated)?;
    if superblock.data_blocks != layout.data_blocks() {
        return Err(SealError::SuperblockMismatch {
            expected: layout.data_blocks(),
            found: superblock.data_blocks,
        });
    }
    let salt = superblock.salt;
    let levels = layout.levels();
    if levels.is_empty() {
        // One data block: its digest is the root hash.
        let mut block = vec![0u8; BLOCK_LEN];
        read_exact_at(image, &mut block, 0, IoAction::ReadImage).map_err(truncated)?;
        if hash_block(&salt, &block) != *expected_root.as_bytes() {
            return Err(SealError::Mismatch {
                first_bad_block: 0,
                offset: 0,
            });
        }
        return Ok(());
    }

    // Check levels from the top down to level 1, in memory. `parent` holds
    // the digests of the current level's blocks, entry i at i * 32.
    let mut parent: Vec<u8> = expected_root.as_bytes().to_vec();
    let n_levels = levels.len();
    let hash_block_check = HashBlockCheck {
        salt: &salt,
        n_levels,
        expected_root,
    };
    for level_idx in (1..n_levels).rev() {
        let level = levels[level_idx];
        let level_offset = hash_offset + level.offset;
        let mut bytes = vec![0u8; (level.blocks * BLOCK_SIZE) as usize];
        read_exact_at(tree, &mut bytes, level_offset, IoAction::ReadTree).map_err(truncated)?;
        for (block_idx, block) in bytes.chunks_exact(BLOCK_LEN).enumerate() {
            hash_block_check.check(block, &parent, level_idx, block_idx as u64, level_offset)?;
        }
        parent = bytes;
    }

    // Level 0 and the data, in parallel; the first failure in image order wins.
    let level_0_offset = hash_offset + levels[0].offset;
    let n_tasks = levels[0].blocks.div_ceil(HASH_BLOCKS_PER_TASK);
    let first_failure = (0..n_tasks)
        .into_par_iter()
        .map(|task_idx| {
            let hash_blocks_start = task_idx * HASH_BLOCKS_PER_TASK;
            let n_hash_blocks = HASH_BLOCKS_PER_TASK.min(levels[0].blocks - hash_blocks_start);
            let mut hash_blocks = vec![0u8; (n_hash_blocks * BLOCK_SIZE) as usize];
            let hash_blocks_offset = level_0_offset + hash_blocks_start * BLOCK_SIZE;
            read_exact_at(
                tree,
                &mut hash_blocks,
                hash_blocks_offset,
                IoAction::ReadTree,
            )?;
            let data_start = hash_blocks_start * DATA_PER_HASH_BLOCK;
            let data_end = (data_start + n_hash_blocks * DATA_PER_HASH_BLOCK).min(data_size);
            DATA_BUFFER.with_borrow_mut(|data| {
                data.resize((data_end - data_start) as usize, 0);
                read_exact_at(image, data, data_start, IoAction::ReadImage)?;
                let covered_by_block = data.chunks(DATA_PER_HASH_BLOCK as usize);
                for (block_in_task, (hash_block_bytes, covered)) in hash_blocks
                    .chunks_exact(BLOCK_LEN)
                    .zip(covered_by_block)
                    .enumerate()
                {
                    let block_idx = hash_blocks_start + block_in_task as u64;
                    hash_block_check.check(
                        hash_block_bytes,
                        &parent,
                        0,
                        block_idx,
                        level_0_offset,
                    )?;
                    let first_data_block = block_idx * (DATA_PER_HASH_BLOCK / BLOCK_SIZE);
                    for (leaf_idx, (data_block, digest)) in covered
                        .chunks_exact(BLOCK_LEN)
                        .zip(hash_block_bytes.chunks_exact(DIGEST_SIZE))
                        .enumerate()
                    {
                        if hash_block(&salt, data_block) != digest {
                            let data_block_idx = first_data_block + leaf_idx as u64;
                            return Err(SealError::Mismatch {
                                first_bad_block: data_block_idx,
                                offset: data_block_idx * BLOCK_SIZE,
                            });
                        }
                    }
                }
                Ok(())
            })
        })
        .find_first(Result::is_err);
    match first_failure {
        Some(Err(error)) => Err(truncated(error)),
        _ => Ok(()),
    }
}

/// What every hash-block check needs besides the block.
struct HashBlockCheck<'a> {
    salt: &'a Salt,
    n_levels: usize,
    expected_root: &'a RootHash,
}

impl HashBlockCheck<'_> {
    /// Checks hash block `block_idx` of level `level_idx` against its entry
    /// in `parent` (the next level's bytes, or the expected root for the top).
    fn check(
        &self,
        block: &[u8],
        parent: &[u8],
        level_idx: usize,
        block_idx: u64,
        level_offset: u64,
    ) -> Result<(), SealError> {
        let (salt, n_levels, expected_root) = (self.salt, self.n_levels, self.expected_root);
        let found = hash_block(salt, block);
        let entry_at = block_idx as usize * DIGEST_SIZE;
        let expected = parent.get(entry_at..entry_at + DIGEST_SIZE);
        if expected == Some(&found[..]) {
            return Ok(());
        }
        if level_idx + 1 == n_levels {
            return Err(SealError::RootMismatch {
                expected: *expected_root,
                found: RootHash::from_bytes(found),
            });
        }
        Err(SealError::HashBlockCorrupt {
            level: level_idx,
            block_idx,
            offset: level_offset + block_idx * BLOCK_SIZE,
        })
    }
}
