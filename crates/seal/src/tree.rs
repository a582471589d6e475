//! Building a tree from leaf digests computed elsewhere: the path for a
//! device that hashes each chunk as it writes it to the slot.

use std::fs::File;

use ferry_types::RootHash;
use rayon::prelude::*;
use uuid::Uuid;

use crate::error::SealError;
use crate::format::{
    BLOCK_LEN, BLOCK_SIZE, BlockDigest, HASHES_PER_BLOCK, Salt, hash_of_digests, hash_padded_block,
    pack_hash_block,
};
use crate::layout::TreeLayout;
use crate::superblock::Superblock;

/// Hash blocks serialized per write in [`Tree::write_to`] (1 MiB).
const HASH_BLOCKS_PER_WRITE: usize = 256;

/// Digests of the 4096-byte blocks of `data`, in order.
///
/// `data` should start on a block boundary of the image. A last partial
/// block is hashed as if padded with zeros to 4096 bytes, which is what the
/// slot holds once the padded image is written. Blocks are hashed in
/// parallel.
pub fn hash_leaves(salt: &Salt, data: &[u8]) -> Vec<[u8; 32]> {
    data.par_chunks(BLOCK_LEN)
        .with_min_len(16)
        .map(|block| hash_padded_block(salt, block))
        .collect()
}

/// Collects leaf digests from data arriving in chunks of any size, so a
/// device can seal a slot in the same pass that writes it.
///
/// Holds only the leaf digests (8 MiB per GiB of image) and at most one
/// partial block.
#[derive(Debug, Clone)]
pub struct LeafHasher {
    salt: Salt,
    leaves: Vec<BlockDigest>,
    pending: Vec<u8>,
}

impl LeafHasher {
    /// A hasher for an image sealed with `salt`.
    pub fn new(salt: Salt) -> Self {
        Self {
            salt,
            leaves: Vec::new(),
            pending: Vec::with_capacity(BLOCK_LEN),
        }
    }

    /// A hasher with room reserved for the leaves of a `data_size`-byte image.
    pub fn with_data_size(salt: Salt, data_size: u64) -> Self {
        let mut hasher = Self::new(salt);
        let n_leaves = usize::try_from(data_size.div_ceil(BLOCK_SIZE)).unwrap_or(0);
        hasher.leaves.reserve_exact(n_leaves);
        hasher
    }

    /// Hashes the next `data` of the image.
    pub fn update(&mut self, mut data: &[u8]) {
        if !self.pending.is_empty() {
            let n_needed = BLOCK_LEN - self.pending.len();
            let n_taken = n_needed.min(data.len());
            self.pending.extend_from_slice(&data[..n_taken]);
            data = &data[n_taken..];
            if self.pending.len() < BLOCK_LEN {
                return;
            }
            self.leaves
                .push(hash_padded_block(&self.salt, &self.pending));
            self.pending.clear();
        }
        let n_whole = data.len() / BLOCK_LEN * BLOCK_LEN;
        let (whole, tail) = data.split_at(n_whole);
        self.leaves.par_extend(
            whole
                .par_chunks(BLOCK_LEN)
                .with_min_len(16)
                .map(|block| hash_padded_block(&self.salt, block)),
        );
        self.pending.extend_from_slice(tail);
    }

    /// Bytes hashed so far.
    pub fn data_size(&self) -> u64 {
        self.leaves.len() as u64 * BLOCK_SIZE + self.pending.len() as u64
    }

    /// The leaf digests, a last partial block hashed zero-padded.
    pub fn into_leaves(mut self) -> Vec<[u8; 32]> {
        if !self.pending.is_empty() {
            self.leaves
                .push(hash_padded_block(&self.salt, &self.pending));
        }
        self.leaves
    }

    /// The tree over everything hashed, a last partial block zero-padded.
    pub fn finish(self) -> Result<Tree, SealError> {
        let salt = self.salt;
        let leaves = self.into_leaves();
        Tree::from_leaves(salt, leaves.len() as u64, leaves)
    }
}

/// A whole hash tree in memory: the leaf digests and every level above them.
///
/// Upper levels take 1/128 of the leaves' memory, so a tree for a 1 GiB
/// image holds about 8.1 MiB.
#[derive(Debug, Clone)]
pub struct Tree {
    superblock: Superblock,
    layout: TreeLayout,
    /// Entries of each level, level 0 (the leaves) first; empty for a
    /// one-block image.
    levels: Vec<Vec<BlockDigest>>,
    root: RootHash,
}

impl Tree {
    /// Builds the levels above `leaves`, the digests of `data_blocks` data
    /// blocks hashed with `salt` (from [`hash_leaves`] or [`LeafHasher`]).
    ///
    /// Fails with `SealError::ImageEmpty` for no blocks and
    /// `SealError::LeafCountMismatch` if `leaves` is not one per block.
    pub fn from_leaves(
        salt: Salt,
        data_blocks: u64,
        leaves: Vec<[u8; 32]>,
    ) -> Result<Self, SealError> {
        if data_blocks == 0 {
            return Err(SealError::ImageEmpty);
        }
        if leaves.len() as u64 != data_blocks {
            return Err(SealError::LeafCountMismatch {
                data_blocks,
                n_leaves: leaves.len() as u64,
            });
        }
        let layout = TreeLayout::for_blocks(data_blocks);
        let superblock = Superblock::new(salt, data_blocks);
        if leaves.len() == 1 {
            return Ok(Self {
                superblock,
                layout,
                root: RootHash::from_bytes(leaves[0]),
                levels: Vec::new(),
            });
        }
        let mut levels = vec![leaves];
        levels.extend(levels_above(&salt, &levels[0]));
        let top = levels.last().map_or(&[][..], Vec::as_slice);
        let root = RootHash::from_bytes(hash_of_digests(&salt, top));
        Ok(Self {
            superblock,
            layout,
            levels,
            root,
        })
    }

    /// Replaces the superblock's random UUID, for reproducible output.
    pub fn with_uuid(mut self, uuid: Uuid) -> Self {
        self.superblock.uuid = uuid;
        self
    }

    /// The root hash.
    pub fn root(&self) -> RootHash {
        self.root
    }

    /// The superblock `write_to` writes.
    pub fn superblock(&self) -> &Superblock {
        &self.superblock
    }

    /// Where each level goes, and the tree's size.
    pub fn layout(&self) -> &TreeLayout {
        &self.layout
    }

    /// Writes the superblock and every level at `hash_offset` in `file`,
    /// laid out as veritysetup lays them (see [`TreeLayout`]).
    ///
    /// `hash_offset` must be a multiple of 4096. The superblock is written
    /// last, so an interrupted write leaves no tree that looks whole.
    pub fn write_to(&self, file: &File, hash_offset: u64) -> Result<(), SealError> {
        check_hash_offset(hash_offset)?;
        for (entries, level) in self.levels.iter().zip(self.layout.levels()) {
            write_level(file, hash_offset + level.offset, entries)?;
        }
        self.superblock.write_to(file, hash_offset)
    }
}

/// Given the entries of one level, the entries of every level above it, up
/// to and including the level that fits in one hash block.
pub(crate) fn levels_above(salt: &Salt, entries: &[BlockDigest]) -> Vec<Vec<BlockDigest>> {
    let mut above: Vec<Vec<BlockDigest>> = Vec::new();
    let mut current = entries;
    while current.len() > HASHES_PER_BLOCK {
        let next: Vec<BlockDigest> = current
            .par_chunks(HASHES_PER_BLOCK)
            .with_min_len(16)
            .map(|chunk| hash_of_digests(salt, chunk))
            .collect();
        above.push(next);
        current = above.last().map_or(&[][..], Vec::as_slice);
    }
    above
}

/// Writes one level's entries as zero-padded hash blocks starting at `offset`.
pub(crate) fn write_level(
    file: &File,
    offset: u64,
    entries: &[BlockDigest],
) -> Result<(), SealError> {
    let entries_per_write = HASH_BLOCKS_PER_WRITE * HASHES_PER_BLOCK;
    let mut buffer = vec![0u8; HASH_BLOCKS_PER_WRITE * BLOCK_LEN];
    let mut write_offset = offset;
    for batch in entries.chunks(entries_per_write) {
        let n_blocks = batch.len().div_ceil(HASHES_PER_BLOCK);
        for (block, digests) in buffer
            .chunks_exact_mut(BLOCK_LEN)
            .zip(batch.chunks(HASHES_PER_BLOCK))
        {
            pack_hash_block(digests, block);
        }
        let n_bytes = n_blocks * BLOCK_LEN;
        crate::io::write_all_at(file, &buffer[..n_bytes], write_offset)?;
        write_offset += n_bytes as u64;
    }
    Ok(())
}

/// Refuses a hash offset that is not a multiple of 4096.
pub(crate) fn check_hash_offset(hash_offset: u64) -> Result<(), SealError> {
    if !hash_offset.is_multiple_of(BLOCK_SIZE) {
        return Err(SealError::HashOffsetUnaligned { hash_offset });
    }
    Ok(())
}
