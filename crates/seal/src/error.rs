//! The crate's one error type.

use std::fmt;
use std::io;

use ferry_types::{Diagnose, RootHash};

/// What the crate was doing when an I/O call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoAction {
    /// Reading the image (the data blocks).
    ReadImage,
    /// Reading the hash tree or its superblock.
    ReadTree,
    /// Writing the hash tree or its superblock.
    WriteTree,
}

impl fmt::Display for IoAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ReadImage => "read the image",
            Self::ReadTree => "read the hash tree",
            Self::WriteTree => "write the hash tree",
        })
    }
}

/// Everything that can go wrong while building or checking a seal.
///
/// Each variant has a stable code, a one-sentence cause (its `Display`) and a
/// one-sentence fix ([`Diagnose`]).
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// An I/O call on the image or the tree failed.
    #[error("could not {action} at byte {offset}")]
    Io {
        /// What was being done.
        action: IoAction,
        /// Byte offset in the file being read or written.
        offset: u64,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// The image ended before `data_size` bytes.
    #[error("the image ends before byte {offset}, short of the {data_size} bytes to seal")]
    ImageTruncated {
        /// Offset of the read that hit the end.
        offset: u64,
        /// Size the caller said the image has.
        data_size: u64,
    },

    /// The tree ended before its last level.
    #[error("the hash tree ends before byte {offset}, short of the {tree_size} bytes it needs")]
    TreeTruncated {
        /// Offset of the read that hit the end (from the start of the file).
        offset: u64,
        /// Size the tree should have, superblock included.
        tree_size: u64,
    },

    /// The image size is not a whole number of 4096-byte blocks.
    #[error("the image is {data_size} bytes, not a whole number of 4096-byte blocks")]
    ImageUnaligned {
        /// The size given.
        data_size: u64,
    },

    /// The image has no data.
    #[error("the image is empty")]
    ImageEmpty,

    /// The hash offset is not a multiple of 4096.
    #[error("the hash offset {hash_offset} is not a multiple of 4096")]
    HashOffsetUnaligned {
        /// The offset given.
        hash_offset: u64,
    },

    /// The tree would be written over the image it seals.
    #[error("the hash offset {hash_offset} lies inside the {data_size}-byte image it would seal")]
    TreeOverlapsImage {
        /// The offset given.
        hash_offset: u64,
        /// Size of the image.
        data_size: u64,
    },

    /// The superblock is not one ferry writes or accepts.
    #[error("the superblock is invalid: {reason}")]
    SuperblockInvalid {
        /// Which field is wrong and how.
        reason: String,
    },

    /// The superblock is valid but describes another image.
    #[error("the superblock covers {found} data blocks but the image has {expected}")]
    SuperblockMismatch {
        /// Data blocks in the image being checked.
        expected: u64,
        /// Data blocks the superblock records.
        found: u64,
    },

    /// The tree's top block does not hash to the expected root hash.
    #[error("the hash tree's root hash is {found}, not the expected {expected}")]
    RootMismatch {
        /// The root hash that was expected (from the catalog or ticket).
        expected: RootHash,
        /// The root hash the tree on disk has.
        found: RootHash,
    },

    /// A hash block does not match the digest its parent level records.
    #[error("hash block {block_idx} of tree level {level} (byte {offset} of the tree) is corrupt")]
    HashBlockCorrupt {
        /// Tree level, 0 being the digests of the data blocks.
        level: usize,
        /// Index of the block within its level.
        block_idx: u64,
        /// Byte offset of the block in the tree file.
        offset: u64,
    },

    /// A data block does not match its digest in the tree.
    #[error("data block {first_bad_block} (byte {offset} of the image) does not match the seal")]
    Mismatch {
        /// Index of the first data block that does not match.
        first_bad_block: u64,
        /// Its byte offset in the image.
        offset: u64,
    },

    /// `Tree::from_leaves` was given a digest count that is not the block count.
    #[error("{n_leaves} leaf digests were given for {data_blocks} data blocks")]
    LeafCountMismatch {
        /// Data blocks the caller declared.
        data_blocks: u64,
        /// Leaf digests the caller passed.
        n_leaves: u64,
    },

    /// A salt string is not 64 hexadecimal digits.
    #[error("the {what} is not 64 hexadecimal digits (got {input_len} characters)")]
    HexInvalid {
        /// What was parsed ("salt").
        what: &'static str,
        /// Length of the text given.
        input_len: usize,
    },
}

impl Diagnose for SealError {
    fn code(&self) -> &'static str {
        match self {
            Self::Io { .. } => "SEAL_IO",
            Self::ImageTruncated { .. } => "SEAL_IMAGE_TRUNCATED",
            Self::TreeTruncated { .. } => "SEAL_TREE_TRUNCATED",
            Self::ImageUnaligned { .. } => "SEAL_IMAGE_UNALIGNED",
            Self::ImageEmpty => "SEAL_IMAGE_EMPTY",
            Self::HashOffsetUnaligned { .. } => "SEAL_HASH_OFFSET_UNALIGNED",
            Self::TreeOverlapsImage { .. } => "SEAL_TREE_OVERLAPS_IMAGE",
            Self::SuperblockInvalid { .. } => "SEAL_SUPERBLOCK_INVALID",
            Self::SuperblockMismatch { .. } => "SEAL_SUPERBLOCK_MISMATCH",
            Self::RootMismatch { .. } => "SEAL_ROOT_MISMATCH",
            Self::HashBlockCorrupt { .. } => "SEAL_HASH_BLOCK_CORRUPT",
            Self::Mismatch { .. } => "SEAL_MISMATCH",
            Self::LeafCountMismatch { .. } => "SEAL_LEAF_COUNT_MISMATCH",
            Self::HexInvalid { .. } => "SEAL_HEX_INVALID",
        }
    }

    fn fix(&self) -> String {
        match self {
            Self::Io { action, .. } => format!(
                "Check that the file exists, is readable{}, and that its disk is healthy, then retry",
                if *action == IoAction::WriteTree { " and writable with free space" } else { "" }
            ),
            Self::ImageTruncated { .. } => {
                "Download or write the image again in full, then seal or verify it again".to_owned()
            }
            Self::TreeTruncated { .. } => {
                "Rebuild the hash tree from the image, or fetch the release's tree again".to_owned()
            }
            Self::ImageUnaligned { .. } => {
                "Pad the image with zeros to a multiple of 4096 bytes before sealing it".to_owned()
            }
            Self::ImageEmpty => "Seal an image that holds at least one 4096-byte block".to_owned(),
            Self::HashOffsetUnaligned { .. } => {
                "Place the tree at a multiple of 4096 bytes, such as right after the padded image".to_owned()
            }
            Self::TreeOverlapsImage { .. } => {
                "Write the tree to another file, or at or after the end of the image".to_owned()
            }
            Self::SuperblockInvalid { .. } => {
                "Rebuild the tree with ferry or `veritysetup format` using sha256, 4096-byte blocks and a 32-byte salt".to_owned()
            }
            Self::SuperblockMismatch { .. } => {
                "Use the tree built for this image and release, or rebuild it from the image".to_owned()
            }
            Self::RootMismatch { .. } => {
                "Use the tree of the release the catalog names, or install that release again".to_owned()
            }
            Self::HashBlockCorrupt { .. } => {
                "Rebuild the hash tree from a verified image, or install the release again".to_owned()
            }
            Self::Mismatch { .. } => {
                "Install the release again; if it recurs on the same block, check the storage for faults".to_owned()
            }
            Self::LeafCountMismatch { .. } => {
                "Pass one leaf digest per data block, as hash_leaves returns them".to_owned()
            }
            Self::HexInvalid { .. } => {
                "Give exactly 64 hexadecimal digits, as the catalog prints them".to_owned()
            }
        }
    }
}
