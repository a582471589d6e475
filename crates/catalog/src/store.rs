//! Durable file writes (temp file, fsync, rename, fsync the directory) and JSON reads.

use crate::error::CatalogError;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `dir/file_name` atomically and durably.
pub(crate) fn write_atomic(dir: &Path, file_name: &str, bytes: &[u8]) -> Result<(), CatalogError> {
    write_with_mode(dir, file_name, bytes, 0o644)
}

/// Like [`write_atomic`], readable by the owner only (private keys).
pub(crate) fn write_private(dir: &Path, file_name: &str, bytes: &[u8]) -> Result<(), CatalogError> {
    write_with_mode(dir, file_name, bytes, 0o600)
}

fn write_with_mode(
    dir: &Path,
    file_name: &str,
    bytes: &[u8],
    mode: u32,
) -> Result<(), CatalogError> {
    fs::create_dir_all(dir).map_err(CatalogError::io("create", dir))?;
    let final_path = dir.join(file_name);
    let temp_path = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options
        .open(&temp_path)
        .map_err(CatalogError::io("create", &temp_path))?;
    file.write_all(bytes)
        .map_err(CatalogError::io("write", &temp_path))?;
    file.sync_all()
        .map_err(CatalogError::io("sync", &temp_path))?;
    drop(file);
    fs::rename(&temp_path, &final_path).map_err(CatalogError::io("rename", &temp_path))?;
    sync_dir(dir)
}

/// Fsyncs a directory so a rename in it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), CatalogError> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(CatalogError::io("sync", dir))
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
