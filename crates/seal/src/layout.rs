//! Where each level of a tree lives, computed as `veritysetup` computes it.

use crate::error::SealError;
use crate::format::{BLOCK_SIZE, HASHES_PER_BLOCK};

/// log2 of `HASHES_PER_BLOCK`.
const HASHES_PER_BLOCK_BITS: u32 = HASHES_PER_BLOCK.trailing_zeros();

/// One level of hash blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelLayout {
    /// Byte offset of the level's first hash block, counted from the hash
    /// offset (where the superblock starts).
    pub offset: u64,
    /// Number of 4096-byte hash blocks in the level.
    pub blocks: u64,
}

/// The shape of the hash tree for an image: the superblock in the first
/// 4096-byte block, then the levels, top level first.
///
/// Level 0 holds the digests of the data blocks; level `i + 1` holds the
/// digests of level `i`'s hash blocks; the last level is a single block whose
/// digest is the root hash. An image of one block has no levels: its root
/// hash is the digest of that block, as with veritysetup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeLayout {
    data_blocks: u64,
    levels: Vec<LevelLayout>,
    tree_size: u64,
}

impl TreeLayout {
    /// The layout for an image of `data_size` bytes.
    ///
    /// `data_size` must be a whole, non-zero number of 4096-byte blocks
    /// (ferry pads images to whole blocks before sealing them); anything else
    /// is `SealError::ImageUnaligned` or `SealError::ImageEmpty`.
    pub fn new(data_size: u64) -> Result<Self, SealError> {
        if data_size == 0 {
            return Err(SealError::ImageEmpty);
        }
        if !data_size.is_multiple_of(BLOCK_SIZE) {
            return Err(SealError::ImageUnaligned { data_size });
        }
        Ok(Self::for_blocks(data_size / BLOCK_SIZE))
    }

    /// The layout for `data_blocks` data blocks (at least one).
    pub(crate) fn for_blocks(data_blocks: u64) -> Self {
        let mut n_levels = 0u32;
        while HASHES_PER_BLOCK_BITS * n_levels < 64
            && (data_blocks.saturating_sub(1) >> (HASHES_PER_BLOCK_BITS * n_levels)) != 0
        {
            n_levels += 1;
        }
        let mut levels = vec![
            LevelLayout {
                offset: 0,
                blocks: 0
            };
            n_levels as usize
        ];
        // The superblock takes the first hash block.
        let mut position = 1u64;
        for (level_idx, level) in levels.iter_mut().enumerate().rev() {
            let shift = HASHES_PER_BLOCK_BITS * (level_idx as u32 + 1);
            let blocks = if shift >= 64 {
                1
            } else {
                data_blocks.div_ceil(1u64 << shift)
            };
            *level = LevelLayout {
                offset: position * BLOCK_SIZE,
                blocks,
            };
            position += blocks;
        }
        Self {
            data_blocks,
            levels,
            tree_size: position * BLOCK_SIZE,
        }
    }

    /// Number of 4096-byte data blocks.
    pub fn data_blocks(&self) -> u64 {
        self.data_blocks
    }

    /// The levels, level 0 (digests of data blocks) first.
    pub fn levels(&self) -> &[LevelLayout] {
        &self.levels
    }

    /// Size in bytes of the whole tree, superblock included.
    pub fn tree_size(&self) -> u64 {
        self.tree_size
    }
}

/// Size in bytes of the tree (superblock included) for an image of
/// `data_size` bytes, for reserving space before the image exists.
///
/// A size that is not a whole number of blocks is rounded up, as ferry pads
/// images to whole blocks; an empty image needs only the superblock block.
pub fn tree_size(data_size: u64) -> u64 {
    let data_blocks = data_size.div_ceil(BLOCK_SIZE);
    if data_blocks == 0 {
        return BLOCK_SIZE;
    }
    TreeLayout::for_blocks(data_blocks).tree_size()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_types::Diagnose;

    #[test]
    fn one_gibibyte_has_three_levels() {
        let layout = TreeLayout::new(1 << 30).expect("aligned");
        assert_eq!(layout.data_blocks(), 262_144);
        let blocks: Vec<u64> = layout.levels().iter().map(|level| level.blocks).collect();
        assert_eq!(blocks, [2048, 16, 1]);
        // Top level first, right after the superblock.
        assert_eq!(layout.levels()[2].offset, BLOCK_SIZE);
        assert_eq!(layout.levels()[1].offset, 2 * BLOCK_SIZE);
        assert_eq!(layout.levels()[0].offset, 18 * BLOCK_SIZE);
        assert_eq!(layout.tree_size(), (1 + 1 + 16 + 2048) * BLOCK_SIZE);
    }

    #[test]
    fn level_counts_at_the_edges() {
        let n_levels = |blocks: u64| TreeLayout::for_blocks(blocks).levels().len();
        assert_eq!(n_levels(1), 0);
        assert_eq!(n_levels(2), 1);
        assert_eq!(n_levels(128), 1);
        assert_eq!(n_levels(129), 2);
        assert_eq!(n_levels(128 * 128), 2);
        assert_eq!(n_levels(128 * 128 + 1), 3);
        assert_eq!(n_levels(u64::MAX / BLOCK_SIZE), 8);
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert_eq!(
            TreeLayout::new(0).map_err(|e| e.code()),
            Err("SEAL_IMAGE_EMPTY")
        );
        assert_eq!(
            TreeLayout::new(4097).map_err(|e| e.code()),
            Err("SEAL_IMAGE_UNALIGNED")
        );
        assert_eq!(tree_size(1), BLOCK_SIZE);
        assert_eq!(tree_size(3 * BLOCK_SIZE), 2 * BLOCK_SIZE);
    }
}
