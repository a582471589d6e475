//! Durable file writes: temp file, fsync, rename, fsync the directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Which step of a durable write failed, and on which path.
pub(crate) struct DurableError {
    pub op: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

/// Replaces `path` with `bytes` so that after a crash it holds either the old
/// or the new content, and the new content is on disk when this returns.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DurableError> {
    let dir = parent(path);
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp.{}", std::process::id()));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(fail("create", &tmp))?;
    file.write_all(bytes).map_err(fail("write", &tmp))?;
    file.sync_all().map_err(fail("fsync", &tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(fail("rename into place", path))?;
    sync_dir(&dir).map_err(fail("fsync directory", &dir))
}

/// Flushes a directory's entries (creations, renames, removals) to disk.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and its parents, then syncs the parent so the entry is durable.
pub(crate) fn create_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir)?;
    sync_dir(&parent(dir))
}

fn fail(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> DurableError {
    let path = path.to_path_buf();
    move |source| DurableError { op, path, source }
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
