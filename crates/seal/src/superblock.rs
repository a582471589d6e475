//! The 512-byte dm-verity superblock, read and written byte for byte as
//! `veritysetup format` lays it out (all integers little-endian).

use std::fs::File;

use uuid::Uuid;

use crate::error::{IoAction, SealError};
use crate::format::{BLOCK_SIZE, DIGEST_SIZE, SUPERBLOCK_SIZE, Salt};

/// The superblock's magic bytes.
pub const MAGIC: [u8; 8] = *b"verity\0\0";

/// The on-disk format version written and accepted (salt prepended).
pub const FORMAT_VERSION: u32 = 1;

/// The hash type written and accepted (1 = normal, as the kernel expects).
pub const HASH_TYPE: u32 = 1;

/// The hash algorithm name written and accepted.
pub const ALGORITHM: &str = "sha256";

// Byte offsets of the fields within the superblock.
const VERSION_AT: usize = 8;
const HASH_TYPE_AT: usize = 12;
const UUID_AT: usize = 16;
const ALGORITHM_AT: usize = 32;
const ALGORITHM_LEN: usize = 32;
const DATA_BLOCK_SIZE_AT: usize = 64;
const HASH_BLOCK_SIZE_AT: usize = 68;
const DATA_BLOCKS_AT: usize = 72;
const SALT_SIZE_AT: usize = 80;
const PAD1_AT: usize = 82;
const SALT_AT: usize = 88;
const SALT_FIELD_LEN: usize = 256;

/// A dm-verity superblock for a SHA-256, 4096-byte-block tree with a
/// 32-byte salt: the only shape ferry writes or accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Superblock {
    /// Identifies the tree; veritysetup shows it, the kernel ignores it.
    pub uuid: Uuid,
    /// Number of 4096-byte data blocks the tree covers.
    pub data_blocks: u64,
    /// The salt hashed in front of every block.
    pub salt: Salt,
}

impl Superblock {
    /// A superblock for `data_blocks` blocks hashed with `salt`, with a fresh
    /// random (version 4) UUID.
    pub fn new(salt: Salt, data_blocks: u64) -> Self {
        Self {
            uuid: Uuid::new_v4(),
            data_blocks,
            salt,
        }
    }

    /// The superblock's 512 bytes.
    pub fn to_bytes(&self) -> [u8; SUPERBLOCK_SIZE] {
        let mut bytes = [0u8; SUPERBLOCK_SIZE];
        bytes[..8].copy_from_slice(&MAGIC);
        put_u32(&mut bytes, VERSION_AT, FORMAT_VERSION);
        put_u32(&mut bytes, HASH_TYPE_AT, HASH_TYPE);
        bytes[UUID_AT..UUID_AT + 16].copy_from_slice(self.uuid.as_bytes());
        bytes[ALGORITHM_AT..ALGORITHM_AT + ALGORITHM.len()].copy_from_slice(ALGORITHM.as_bytes());
        put_u32(&mut bytes, DATA_BLOCK_SIZE_AT, BLOCK_SIZE as u32);
        put_u32(&mut bytes, HASH_BLOCK_SIZE_AT, BLOCK_SIZE as u32);
        bytes[DATA_BLOCKS_AT..DATA_BLOCKS_AT + 8].copy_from_slice(&self.data_blocks.to_le_bytes());
        bytes[SALT_SIZE_AT..SALT_SIZE_AT + 2].copy_from_slice(&(DIGEST_SIZE as u16).to_le_bytes());
        bytes[SALT_AT..SALT_AT + DIGEST_SIZE].copy_from_slice(self.salt.as_bytes());
        bytes
    }

    /// Parses a superblock, refusing anything but format version 1, hash
    /// type 1, SHA-256, 4096-byte blocks and a 32-byte salt. Padding and
    /// unused salt bytes must be zero, as veritysetup writes them.
    pub fn from_bytes(bytes: &[u8; SUPERBLOCK_SIZE]) -> Result<Self, SealError> {
        let invalid = |reason: String| SealError::SuperblockInvalid { reason };
        if bytes[..8] != MAGIC {
            return Err(invalid(format!(
                "its magic is {:?}, not \"verity\"",
                String::from_utf8_lossy(&bytes[..8])
            )));
        }
        let version = get_u32(bytes, VERSION_AT);
        if version != FORMAT_VERSION {
            return Err(invalid(format!("its format version is {version}, not 1")));
        }
        let hash_type = get_u32(bytes, HASH_TYPE_AT);
        if hash_type != HASH_TYPE {
            return Err(invalid(format!("its hash type is {hash_type}, not 1")));
        }
        let algorithm_field = &bytes[ALGORITHM_AT..ALGORITHM_AT + ALGORITHM_LEN];
        let algorithm_len = algorithm_field
            .iter()
            .position(|&byte| byte == 0)
            .unwrap_or(ALGORITHM_LEN);
        let algorithm = &algorithm_field[..algorithm_len];
        let padding_clean = algorithm_field[algorithm_len..]
            .iter()
            .all(|&byte| byte == 0);
        if !algorithm.eq_ignore_ascii_case(ALGORITHM.as_bytes()) || !padding_clean {
            return Err(invalid(format!(
                "its hash algorithm is {:?}, not sha256",
                String::from_utf8_lossy(algorithm)
            )));
        }
        for (name, at) in [("data", DATA_BLOCK_SIZE_AT), ("hash", HASH_BLOCK_SIZE_AT)] {
            let size = get_u32(bytes, at);
            if u64::from(size) != BLOCK_SIZE {
                return Err(invalid(format!(
                    "its {name} block size is {size}, not 4096"
                )));
            }
        }
        let salt_size = u16::from_le_bytes([bytes[SALT_SIZE_AT], bytes[SALT_SIZE_AT + 1]]);
        if usize::from(salt_size) != DIGEST_SIZE {
            return Err(invalid(format!("its salt is {salt_size} bytes, not 32")));
        }
        let salt_unused = &bytes[SALT_AT + DIGEST_SIZE..SALT_AT + SALT_FIELD_LEN];
        let tail = &bytes[SALT_AT + SALT_FIELD_LEN..];
        let pad1 = &bytes[PAD1_AT..SALT_AT];
        if pad1
            .iter()
            .chain(salt_unused)
            .chain(tail)
            .any(|&byte| byte != 0)
        {
            return Err(invalid("its reserved bytes are not zero".to_owned()));
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&bytes[UUID_AT..UUID_AT + 16]);
        let mut data_blocks = [0u8; 8];
        data_blocks.copy_from_slice(&bytes[DATA_BLOCKS_AT..DATA_BLOCKS_AT + 8]);
        let mut salt = [0u8; DIGEST_SIZE];
        salt.copy_from_slice(&bytes[SALT_AT..SALT_AT + DIGEST_SIZE]);
        Ok(Self {
            uuid: Uuid::from_bytes(uuid),
            data_blocks: u64::from_le_bytes(data_blocks),
            salt: Salt::from_bytes(salt),
        })
    }

    /// Reads and parses the superblock at `hash_offset` in `tree`.
    pub fn read_from(tree: &File, hash_offset: u64) -> Result<Self, SealError> {
        let mut bytes = [0u8; SUPERBLOCK_SIZE];
        crate::io::read_exact_at(tree, &mut bytes, hash_offset, IoAction::ReadTree)?;
        Self::from_bytes(&bytes)
    }

    /// Writes the superblock at `hash_offset` in `tree`, followed by zeros to
    /// the end of its 4096-byte block.
    pub fn write_to(&self, tree: &File, hash_offset: u64) -> Result<(), SealError> {
        let mut block = vec![0u8; BLOCK_SIZE as usize];
        block[..SUPERBLOCK_SIZE].copy_from_slice(&self.to_bytes());
        crate::io::write_all_at(tree, &block, hash_offset)
    }
}

fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn get_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}
