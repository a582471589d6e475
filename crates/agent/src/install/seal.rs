//! Sealing slots: the dm-verity tree of a slot is built while the slot is written
//! (decode workers hash each frame's 4 KiB blocks as they write it), finished and
//! compared with the release's root hash before the slot may boot, stored beside the
//! slot, and checked again at every boot.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

use crate::AgentError;
use crate::device::SlotSeal;
use crate::layout;
use ferry_payload::{Manifest, SealRef};
use ferry_seal::{Salt, Tree};

/// Leaf hashes of a slot being written, filled frame by frame by the decode workers.
#[derive(Debug)]
pub struct LeafStore {
    seal: SealRef,
    blocks_per_frame: usize,
    leaves: Mutex<(Vec<[u8; 32]>, Vec<bool>)>,
}

impl LeafStore {
    /// A store for `manifest`'s image, if the release is sealed.
    pub fn new(manifest: &Manifest) -> Option<LeafStore> {
        let seal = manifest.seal.clone()?;
        let blocks = (manifest.image_size / ferry_seal::BLOCK_SIZE) as usize;
        Some(LeafStore {
            seal,
            blocks_per_frame: (manifest.frame_size as u64 / ferry_seal::BLOCK_SIZE) as usize,
            leaves: Mutex::new((vec![[0u8; 32]; blocks], vec![false; manifest.frames.len()])),
        })
    }

    /// Hashes the blocks of decoded frame `idx` (called by a decode worker).
    pub fn record(&self, idx: usize, decoded: &[u8]) {
        let hashes = ferry_seal::hash_leaves(&self.seal.salt, decoded);
        if let Ok(mut guard) = self.leaves.lock() {
            let (leaves, have) = &mut *guard;
            let start = idx * self.blocks_per_frame;
            if let Some(dst) = leaves.get_mut(start..start + hashes.len()) {
                dst.copy_from_slice(&hashes);
                have[idx] = true;
            }
        }
    }

    /// Completes the tree: frames written by an earlier, interrupted run are read back
    /// from the slot and hashed; then the root is compared with the release's, and the
    /// tree written durably to `tree_path`.
    pub fn finish(
        self,
        slot: &Path,
        manifest: &Manifest,
        tree_path: &Path,
        on_progress: &(dyn Fn(u64, u64) + Sync),
    ) -> Result<SlotSeal, AgentError> {
        let (mut leaves, have) = self.leaves.into_inner().map_err(|_| AgentError::Io {
            op: "sealing the slot",
            path: slot.to_owned(),
            source: std::io::Error::other("a decode worker panicked"),
        })?;
        let missing: Vec<usize> = (0..have.len()).filter(|i| !have[*i]).collect();
        if !missing.is_empty() {
            let file = File::open(slot).map_err(AgentError::io("opening the slot", slot))?;
            let mut buf = vec![0u8; manifest.frame_size as usize];
            let total = missing
                .iter()
                .map(|i| manifest.frame_len(*i) as u64)
                .sum::<u64>();
            let mut done = 0;
            for idx in missing {
                let len = manifest.frame_len(idx);
                file.read_exact_at(&mut buf[..len], manifest.frame_image_offset(idx))
                    .map_err(AgentError::io("reading the slot", slot))?;
                // These bytes were verified before they were written; check they still
                // are, then hash them into the tree.
                crate::install::pace::slot_io(len as u64);
                let actual = ferry_types::Sha256::of(&buf[..len]);
                if actual != manifest.frames[idx].sha256 {
                    return Err(AgentError::DigestMismatch {
                        what: format!("frame {idx} as read back from the slot"),
                        expected: manifest.frames[idx].sha256,
                        actual,
                    });
                }
                let hashes = ferry_seal::hash_leaves(&self.seal.salt, &buf[..len]);
                let start = idx * self.blocks_per_frame;
                leaves[start..start + hashes.len()].copy_from_slice(&hashes);
                done += len as u64;
                on_progress(done, total);
            }
        }
        let data_blocks = leaves.len() as u64;
        let tree = Tree::from_leaves(self.seal.salt, data_blocks, leaves)?;
        if tree.root() != self.seal.root_hash {
            return Err(AgentError::SealMismatch {
                what: "the slot just written".into(),
                expected: self.seal.root_hash.to_string(),
                actual: tree.root().to_string(),
                first_bad_block: None,
            });
        }
        write_tree(&tree, tree_path)?;
        Ok(SlotSeal {
            root_hash: tree.root(),
            salt: self.seal.salt,
            tree: tree_path.to_owned(),
            hash_offset: 0,
        })
    }
}

/// Seals an image already in a slot (the factory image at `device init`).
pub fn seal_existing(
    slot: &Path,
    data_size: u64,
    tree_path: &Path,
) -> Result<SlotSeal, AgentError> {
    let image = File::open(slot).map_err(AgentError::io("opening the slot", slot))?;
    let out = ferry_durable::AtomicFile::create(tree_path, ferry_durable::FILE_MODE)
        .map_err(AgentError::io("creating the hash tree", tree_path))?;
    let salt = Salt::random();
    let (root_hash, _) = ferry_seal::build_tree(&image, data_size, salt, out.file(), 0)?;
    out.commit()
        .map_err(AgentError::io("storing the hash tree", tree_path))?;
    Ok(SlotSeal {
        root_hash,
        salt,
        tree: tree_path.to_owned(),
        hash_offset: 0,
    })
}

/// Checks the first `data_size` bytes of `slot` against its seal.
pub fn verify(
    slot: &Path,
    data_size: u64,
    seal: &SlotSeal,
    device_dir: &Path,
) -> Result<(), AgentError> {
    let tree_path = layout::Layout::new(device_dir).resolve(&seal.tree);
    let image = File::open(slot).map_err(AgentError::io("opening the slot", slot))?;
    let tree =
        File::open(&tree_path).map_err(AgentError::io("opening the hash tree", &tree_path))?;
    ferry_seal::verify(&image, data_size, &tree, seal.hash_offset, &seal.root_hash).map_err(|e| {
        match e {
            ferry_seal::SealError::Mismatch {
                first_bad_block, ..
            } => AgentError::SealMismatch {
                what: slot.display().to_string(),
                expected: seal.root_hash.to_string(),
                actual: "a different block".into(),
                first_bad_block: Some(first_bad_block),
            },
            other => AgentError::Seal(other),
        }
    })
}

fn write_tree(tree: &Tree, path: &Path) -> Result<(), AgentError> {
    let out = ferry_durable::AtomicFile::create(path, ferry_durable::FILE_MODE)
        .map_err(AgentError::io("creating the hash tree", path))?;
    tree.write_to(out.file(), 0)?;
    out.commit()
        .map_err(AgentError::io("storing the hash tree", path))
}
