//! Content-addressed store for record data too large to keep in line.
//!
//! A blob lives at `journal/blobs/<sha256 hex>` and is referenced from a
//! record as `"blob":"sha256:<hex>"`. Writes are durable and deduplicated.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::FsmError;

/// The prefix of every blob reference.
pub const BLOB_PREFIX: &str = "sha256:";

/// The blob directory of one journal.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    /// The store in `dir` (created if missing).
    pub fn open(dir: impl Into<PathBuf>) -> Result<BlobStore, FsmError> {
        let dir = dir.into();
        ferry_durable::create_dir(&dir).map_err(|source| FsmError::BlobIo {
            op: "create directory",
            path: dir.clone(),
            source,
        })?;
        Ok(BlobStore { dir })
    }

    /// The directory holding the blobs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stores `bytes` durably unless an identical blob is there already, and
    /// returns its reference `sha256:<hex>`.
    pub fn put(&self, bytes: &[u8]) -> Result<String, FsmError> {
        let digest_hex = sha256_hex(bytes);
        let path = self.dir.join(&digest_hex);
        let present = fs::read(&path).is_ok_and(|existing| sha256_hex(&existing) == digest_hex);
        if !present {
            ferry_durable::write_atomic(&path, bytes).map_err(|source| FsmError::BlobIo {
                op: "write",
                path: path.clone(),
                source,
            })?;
        }
        Ok(format!("{BLOB_PREFIX}{digest_hex}"))
    }

    /// The bytes of the blob `reference`, checked against its digest.
    pub fn get(&self, reference: &str) -> Result<Vec<u8>, FsmError> {
        let digest_hex = parse_reference(reference)?;
        let path = self.dir.join(digest_hex);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(source) if source.kind() == io::ErrorKind::NotFound => {
                return Err(FsmError::BlobMissing {
                    digest: reference.to_string(),
                    path,
                });
            }
            Err(source) => {
                return Err(FsmError::BlobIo {
                    op: "read",
                    path,
                    source,
                });
            }
        };
        let actual = sha256_hex(&bytes);
        if actual != digest_hex {
            return Err(FsmError::BlobCorrupt {
                digest: reference.to_string(),
                reason: format!("content hashes to sha256:{actual}"),
            });
        }
        Ok(bytes)
    }

    /// Deletes every blob (and leftover temp file) whose reference is not in
    /// `keep`; returns how many files were deleted.
    pub fn retain(&self, keep: &HashSet<String>) -> Result<usize, FsmError> {
        let io_error = |op, path: &Path| {
            let path = path.to_path_buf();
            move |source| FsmError::BlobIo { op, path, source }
        };
        let mut n_deleted = 0;
        for entry in fs::read_dir(&self.dir).map_err(io_error("list", &self.dir))? {
            let entry = entry.map_err(io_error("list", &self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if keep.contains(&format!("{BLOB_PREFIX}{name}")) {
                continue;
            }
            let path = entry.path();
            if path.is_file() {
                fs::remove_file(&path).map_err(io_error("delete", &path))?;
                n_deleted += 1;
            }
        }
        if n_deleted > 0 {
            ferry_durable::sync_dir(&self.dir).map_err(io_error("fsync", &self.dir))?;
        }
        Ok(n_deleted)
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn parse_reference(reference: &str) -> Result<&str, FsmError> {
    let corrupt = |reason: &str| FsmError::BlobCorrupt {
        digest: reference.to_string(),
        reason: reason.to_string(),
    };
    let digest_hex = reference
        .strip_prefix(BLOB_PREFIX)
        .ok_or_else(|| corrupt("the reference does not start with sha256:"))?;
    let well_formed = digest_hex.len() == 64
        && digest_hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !well_formed {
        return Err(corrupt("the digest is not 64 lower-case hex digits"));
    }
    Ok(digest_hex)
}
