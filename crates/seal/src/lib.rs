//! Seals system images with dm-verity hash trees: builds the tree and its
//! root hash, and checks an image against a trusted root hash.
//!
//! # Format
//!
//! Trees are in the dm-verity on-disk format, version 1, exactly as
//! `veritysetup format` writes it, so `veritysetup verify` accepts them and a
//! Linux kernel can enforce them:
//!
//! - SHA-256, 4096-byte data and hash blocks, a 32-byte salt hashed *in
//!   front of* every block (format version 1);
//! - a 512-byte [`Superblock`] (magic `verity\0\0`, version 1, hash type 1,
//!   UUID, `sha256`, block sizes, number of data blocks, salt) at the start of
//!   the first 4096-byte hash block;
//! - then the levels, top level first, each hash block holding 128 digests
//!   and padded with zeros ([`TreeLayout`]). The root hash is the digest of
//!   the salt and the top block; a one-block image has no levels and its root
//!   hash is that block's digest.
//!
//! Where ferry departs from veritysetup, it only narrows it: the one shape
//! above is written and accepted (no other hash, block size, salt size or
//! format version 0); the image must be a whole number of 4096-byte blocks
//! (ferry pads images to whole blocks; an unaligned size is
//! [`SealError::ImageUnaligned`], where veritysetup silently ignores the
//! tail); the hash offset must be a multiple of 4096; and [`verify`] also
//! refuses a superblock whose reserved bytes are not zero. The superblock's
//! UUID is not covered by the root hash, as in dm-verity.
//!
//! # Two ways to build
//!
//! [`build_tree`] reads an image already on disk with positioned reads on
//! every core. A device that writes a slot chunk by chunk hashes each chunk
//! as it goes with [`LeafHasher`] (or [`hash_leaves`]) and ends with
//! [`Tree::from_leaves`], so the slot is sealed in the same pass that writes
//! it. Both give the same root hash; [`verify`] checks either.
//!
//! # Example
//!
//! ```
//! use std::io::Write;
//! use std::os::unix::fs::FileExt;
//! use ferry_seal::{LeafHasher, Salt, build_tree, tree_size, verify};
//! use ferry_types::{Diagnose, RootHash};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let image_bytes: Vec<u8> = (0..3 * 512 * 1024u32).map(|i| (i % 251) as u8).collect();
//! let mut image = tempfile::tempfile()?;
//! image.write_all(&image_bytes)?;
//! let data_size = image_bytes.len() as u64;
//! let salt = Salt::random();
//!
//! // Append the tree to the image, veritysetup's `--hash-offset` layout.
//! let (root, superblock) = build_tree(&image, data_size, salt, &image, data_size)?;
//! assert_eq!(superblock.data_blocks, 384);
//! assert_eq!(image.metadata()?.len(), data_size + tree_size(data_size));
//! verify(&image, data_size, &image, data_size, &root)?;
//!
//! // The same root from chunks hashed as they arrive.
//! let mut hasher = LeafHasher::new(salt);
//! for chunk in image_bytes.chunks(100_000) {
//!     hasher.update(chunk);
//! }
//! assert_eq!(hasher.finish()?.root(), root);
//!
//! // Root hashes travel as hex.
//! let parsed: RootHash = root.to_string().parse()?;
//! assert_eq!(parsed, root);
//!
//! // A changed byte is found, and named by its block.
//! image.write_all_at(&[0xff], 5 * 4096 + 7)?;
//! let error = verify(&image, data_size, &image, data_size, &root).unwrap_err();
//! assert_eq!(error.code(), "SEAL_MISMATCH");
//! assert!(matches!(error, ferry_seal::SealError::Mismatch { first_bad_block: 5, .. }));
//! # Ok(())
//! # }
//! ```
//!
//! # Tests
//!
//! `cargo test` runs unit tests, round trips and property tests
//! (`tests/round_trip.rs`, `tests/tamper.rs`) and the interoperability tests
//! against the real `veritysetup` (`tests/veritysetup_interop.rs`), which
//! fail if `veritysetup` (Debian package `cryptsetup-bin`) is not installed.
//! `cargo run --release --example bench [IMAGE]` compares speed with
//! `openssl dgst -sha256` and `veritysetup format`.

#![deny(missing_docs)]

mod build;
mod error;
mod format;
mod io;
mod layout;
mod superblock;
mod tree;
mod verify;

pub use build::build_tree;
pub use error::{IoAction, SealError};
pub use format::{BLOCK_SIZE, DIGEST_SIZE, HASHES_PER_BLOCK, SUPERBLOCK_SIZE, Salt};
pub use layout::{LevelLayout, TreeLayout, tree_size};
pub use superblock::{ALGORITHM, FORMAT_VERSION, HASH_TYPE, MAGIC, Superblock};
pub use tree::{LeafHasher, Tree, hash_leaves};
pub use verify::verify;
