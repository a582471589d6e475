//! Helpers shared by the integration tests, including an independent,
//! deliberately naive model of the dm-verity format to check against.

#![allow(dead_code)]

use std::fs::File;
use std::io::Write;

use sha2::{Digest, Sha256};

pub const BLOCK: usize = 4096;

/// Deterministic mixed data: runs of zeros, repeated text and noise, so
/// both compressible and incompressible blocks appear.
pub fn mixed_data(n_bytes: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut data = Vec::with_capacity(n_bytes);
    while data.len() < n_bytes {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let run = 1 + (state >> 40) as usize % 9000;
        match (state >> 20) % 3 {
            0 => data.extend(std::iter::repeat_n(0u8, run)),
            1 => data.extend(b"ferry seal ".iter().cycle().take(run)),
            _ => {
                for _ in 0..run {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                    data.push((state >> 56) as u8);
                }
            }
        }
    }
    data.truncate(n_bytes);
    data
}

/// A temporary file holding `bytes`.
pub fn file_with(bytes: &[u8]) -> File {
    let mut file = tempfile::tempfile().expect("create temp file");
    file.write_all(bytes).expect("write temp file");
    file
}

/// Everything in a file.
pub fn read_all(file: &File) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut reader = file;
    std::io::Seek::rewind(&mut reader).expect("rewind");
    std::io::Read::read_to_end(&mut reader, &mut bytes).expect("read");
    bytes
}

fn sha(salt: &[u8; 32], block: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update(block);
    hasher.finalize().into()
}

/// The model: root hash and the whole tree file (superblock block, then the
/// levels top first), computed in memory straight from the format's
/// description. `data.len()` must be a non-zero multiple of 4096.
pub fn model_tree(salt: &[u8; 32], uuid: &[u8; 16], data: &[u8]) -> ([u8; 32], Vec<u8>) {
    let n_blocks = data.len() / BLOCK;
    let mut superblock = vec![0u8; BLOCK];
    superblock[0..8].copy_from_slice(b"verity\0\0");
    superblock[8..12].copy_from_slice(&1u32.to_le_bytes());
    superblock[12..16].copy_from_slice(&1u32.to_le_bytes());
    superblock[16..32].copy_from_slice(uuid);
    superblock[32..38].copy_from_slice(b"sha256");
    superblock[64..68].copy_from_slice(&4096u32.to_le_bytes());
    superblock[68..72].copy_from_slice(&4096u32.to_le_bytes());
    superblock[72..80].copy_from_slice(&(n_blocks as u64).to_le_bytes());
    superblock[80..82].copy_from_slice(&32u16.to_le_bytes());
    superblock[88..120].copy_from_slice(salt);

    let mut entries: Vec<[u8; 32]> = data.chunks(BLOCK).map(|block| sha(salt, block)).collect();
    if n_blocks == 1 {
        return (entries[0], superblock);
    }
    let mut levels: Vec<Vec<u8>> = Vec::new();
    let root = loop {
        let mut level = Vec::new();
        for group in entries.chunks(128) {
            let mut block = vec![0u8; BLOCK];
            for (i, digest) in group.iter().enumerate() {
                block[i * 32..i * 32 + 32].copy_from_slice(digest);
            }
            level.push(block);
        }
        if level.len() == 1 {
            let root = sha(salt, &level[0]);
            levels.push(level.concat());
            break root;
        }
        entries = level.iter().map(|block| sha(salt, block)).collect();
        levels.push(level.concat());
    };
    let mut tree = superblock;
    for level in levels.iter().rev() {
        tree.extend_from_slice(level);
    }
    (root, tree)
}
