//! Durable file writes through `ferry-durable`, and JSON reads.

use crate::error::CatalogError;
use std::fs;
use std::path::Path;

/// Writes `bytes` to `dir/file_name` atomically and durably (mode 0644), creating `dir`.
pub(crate) fn write_atomic(dir: &Path, file_name: &str, bytes: &[u8]) -> Result<(), CatalogError> {
    write_with_mode(dir, file_name, bytes, 0o644)
}

/// Like [`write_atomic`], readable by the owner only (private keys).
pub(crate) fn write_private(dir: &Path, file_name: &str, bytes: &[u8]) -> Result<(), CatalogError> {
    write_with_mode(dir, file_name, bytes, ferry_durable::PRIVATE_MODE)
}

fn write_with_mode(
    dir: &Path,
    file_name: &str,
    bytes: &[u8],
    mode: u32,
) -> Result<(), CatalogError> {
    ferry_durable::create_dir(dir).map_err(CatalogError::io("create", dir))?;
    let path = dir.join(file_name);
    ferry_durable::write_atomic_with_mode(&path, bytes, mode)
        .map_err(CatalogError::io("write", &path))
}

/// Fsyncs a directory so a rename in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), CatalogError> {
    ferry_durable::sync_dir(dir).map_err(CatalogError::io("sync", dir))
}

/// Reads and parses a JSON file.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, CatalogError> {
    let bytes = fs::read(path).map_err(CatalogError::io("read", path))?;
    serde_json::from_slice(&bytes).map_err(|error| CatalogError::Malformed {
        role: path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("metadata")
            .to_owned(),
        detail: error.to_string(),
    })
}
