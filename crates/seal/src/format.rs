//! Constants of the dm-verity format as ferry uses it, the salt, and the one
//! hashing rule everything else is built from. (The root hash is
//! `ferry_types::RootHash`, shared with the catalog and the ticket.)

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::error::SealError;

/// Size in bytes of a data block and of a hash block.
pub const BLOCK_SIZE: u64 = 4096;

/// Size in bytes of one SHA-256 digest.
pub const DIGEST_SIZE: usize = 32;

/// Number of digests that fit in one hash block (4096 / 32).
pub const HASHES_PER_BLOCK: usize = BLOCK_SIZE as usize / DIGEST_SIZE;

/// Size in bytes of the dm-verity superblock. It sits at the start of the
/// first hash block; the rest of that block is left as zeros.
pub const SUPERBLOCK_SIZE: usize = 512;

/// `BLOCK_SIZE` as a `usize`, for slicing.
pub(crate) const BLOCK_LEN: usize = BLOCK_SIZE as usize;

/// One SHA-256 digest of a block, as stored in a hash block.
pub(crate) type BlockDigest = [u8; DIGEST_SIZE];

/// The 32-byte salt hashed in front of every data and hash block (format
/// version 1 prepends it). A fresh random salt per release means trees of
/// different releases never share digests.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Salt([u8; DIGEST_SIZE]);

macro_rules! hex_newtype {
    ($name:ident, $what:literal) => {
        impl $name {
            /// Wraps raw bytes.
            pub const fn from_bytes(bytes: [u8; DIGEST_SIZE]) -> Self {
                Self(bytes)
            }

            /// The raw bytes.
            pub const fn as_bytes(&self) -> &[u8; DIGEST_SIZE] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl FromStr for $name {
            type Err = SealError;

            /// Parses 64 hexadecimal digits (either case).
            fn from_str(text: &str) -> Result<Self, SealError> {
                let mut bytes = [0u8; DIGEST_SIZE];
                hex::decode_to_slice(text, &mut bytes).map_err(|_| SealError::HexInvalid {
                    what: $what,
                    input_len: text.len(),
                })?;
                Ok(Self(bytes))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.to_string())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_newtype!(Salt, "salt");

impl Salt {
    /// A fresh salt from the operating system's random source.
    pub fn random() -> Self {
        let mut bytes = [0u8; DIGEST_SIZE];
        rand::fill(&mut bytes);
        Self(bytes)
    }
}

/// The one hashing rule of format version 1: SHA-256 of the salt followed by
/// the block.
pub(crate) fn hash_block(salt: &Salt, block: &[u8]) -> BlockDigest {
    let mut hasher = Sha256::new();
    hasher.update(salt.0);
    hasher.update(block);
    hasher.finalize().into()
}

/// Hashes a block that may be shorter than `BLOCK_SIZE` as if it were padded
/// with zeros to a whole block.
pub(crate) fn hash_padded_block(salt: &Salt, block: &[u8]) -> BlockDigest {
    if block.len() == BLOCK_LEN {
        return hash_block(salt, block);
    }
    let mut hasher = Sha256::new();
    hasher.update(salt.0);
    hasher.update(block);
    hasher.update(&[0u8; BLOCK_LEN][..BLOCK_LEN - block.len()]);
    hasher.finalize().into()
}

/// Packs up to `HASHES_PER_BLOCK` digests into one zero-padded hash block.
/// `block` is `BLOCK_LEN` bytes long.
pub(crate) fn pack_hash_block(digests: &[BlockDigest], block: &mut [u8]) {
    block.fill(0);
    for (slot, digest) in block.chunks_exact_mut(DIGEST_SIZE).zip(digests) {
        slot.copy_from_slice(digest);
    }
}

/// Digest of the hash block formed by `digests` (zero-padded).
pub(crate) fn hash_of_digests(salt: &Salt, digests: &[BlockDigest]) -> BlockDigest {
    let mut block = [0u8; BLOCK_LEN];
    pack_hash_block(digests, &mut block);
    hash_block(salt, &block)
}
