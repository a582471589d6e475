//! Crash-safe file writes for ferry, in one place: every durable file the product keeps
//! (device state, journal blobs, boot state, catalog metadata, keys, certificates) is
//! written through this crate.
//!
//! # The guarantee
//!
//! [`write_atomic`] (and [`write_private`], [`write_json`], [`AtomicFile::commit`]) replace a
//! file so that, whenever power fails, the path holds either the complete old content or
//! the complete new content — never a mix, never an empty file — and once the call returns
//! the new content survives a power cut. The steps, in this order:
//!
//! 1. create a temporary file with a name no other writer uses (`.NAME.tmp-PID-SEQ`, opened
//!    with `O_CREAT|O_EXCL`) in the target's directory, with its final permission bits
//!    given to `open` itself (so a secret is never readable by others, not even for the
//!    moment between creating and `chmod`);
//! 2. write the bytes and `fsync` the file;
//! 3. `rename` it over the target (atomic on POSIX file systems);
//! 4. `fsync` the directory, so the rename itself is on disk.
//!
//! If a step before the rename fails, the temporary file is removed and the target is
//! untouched. A process killed between steps 1 and 3 leaves a `.NAME.tmp-…` file behind
//! (the target is still intact); readers ignore such names.
//!
//! [`remove`], [`rename`] and [`create_dir`] make unlinks, moves and new directories
//! durable the same way (the operation, then `fsync` of the directory that changed), and
//! [`sync_dir`] is the bare directory `fsync` for callers that append to files they own
//! (the journal).
//!
//! Errors are plain [`std::io::Error`]s from the step that failed; each caller wraps them
//! in its own error type with the path and what it was doing. Unix only (permission bits,
//! directory `fsync`).
//!
//! ```
//! # fn main() -> std::io::Result<()> {
//! let dir = tempfile::tempdir()?;
//! let receipt = dir.path().join("receipt.json");
//! ferry_durable::write_json(&receipt, &serde_json::json!({"version": "2.0"}))?;
//! ferry_durable::write_private(&dir.path().join("credential"), b"secret\n")?;
//! ferry_durable::remove(&receipt)?;
//! ferry_durable::remove(&receipt)?; // already gone: fine
//! # Ok(())
//! # }
//! ```
//!
//! Tests: `cargo test -p ferry-durable` (temporary directories only).

#![deny(missing_docs)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Permission bits of an ordinary file ([`write_atomic`]), before the umask: what
/// `std::fs::write` would create.
pub const FILE_MODE: u32 = 0o666;

/// Permission bits of a secret ([`write_private`]): readable and writable by the owner only.
pub const PRIVATE_MODE: u32 = 0o600;

/// Replaces `path` with `bytes`, durably and atomically (see the crate docs), with
/// [`FILE_MODE`] permissions.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with_mode(path, bytes, FILE_MODE)
}

/// Like [`write_atomic`] for a secret: the file has [`PRIVATE_MODE`] from its creation on.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with_mode(path, bytes, PRIVATE_MODE)
}

/// Like [`write_atomic`] with the permission bits `mode` (before the umask) set when the
/// temporary file is created.
pub fn write_atomic_with_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut file = AtomicFile::create(path, mode)?;
    file.write_all(bytes)?;
    file.commit()
}

/// Serializes `value` as pretty JSON with a final newline and writes it with
/// [`write_atomic`]. A value that cannot be serialized is an error of kind `Other` and
/// leaves the file untouched.
pub fn write_json<T: serde::Serialize + ?Sized>(path: &Path, value: &T) -> io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Removes the file at `path` and syncs its directory, so the removal survives a power
/// cut. A file that does not exist is not an error.
pub fn remove(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(&parent(path)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

/// Moves `from` to `to` (replacing `to` atomically if it exists; both on one file system)
/// and syncs the directories that changed: `to`'s first, then `from`'s if it differs.
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    let to_dir = parent(to);
    sync_dir(&to_dir)?;
    let from_dir = parent(from);
    if from_dir != to_dir {
        sync_dir(&from_dir)?;
    }
    Ok(())
}

/// Flushes a directory's entries (creations, renames, removals) to disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and any missing parents, syncing the parent of each directory it
/// creates so the new entries survive a power cut. An existing directory is fine.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut next = Some(dir.to_path_buf());
    while let Some(candidate) = next {
        if candidate.as_os_str().is_empty() || candidate.is_dir() {
            break;
        }
        next = candidate.parent().map(Path::to_path_buf);
        missing.push(candidate);
    }
    for new_dir in missing.iter().rev() {
        match fs::create_dir(new_dir) {
            Ok(()) => {}
            // Another process made it meanwhile; its creator syncs the parent.
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists && new_dir.is_dir() => {}
            Err(error) => return Err(error),
        }
        sync_dir(&parent(new_dir))?;
    }
    Ok(())
}

/// A file being written that replaces its target only on [`commit`](AtomicFile::commit),
/// for content that is streamed rather than held in memory, or written at offsets (a
/// dm-verity tree): the temporary file is open for reading and writing, and [`file`]
/// lends it out. Dropped without a commit, it removes its temporary file and leaves the
/// target untouched.
///
/// [`file`]: AtomicFile::file
#[derive(Debug)]
pub struct AtomicFile {
    file: File,
    temp_path: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl AtomicFile {
    /// Starts replacing `target`: creates a temporary file beside it with the permission
    /// bits `mode` (before the umask).
    pub fn create(target: &Path, mode: u32) -> io::Result<AtomicFile> {
        AtomicFile::create_in(&parent(target), target, mode)
    }

    /// Like [`create`](AtomicFile::create), with the temporary file in `temp_dir`, which
    /// must be on the same file system as `target` (rename cannot cross file systems). For
    /// directories whose listing must never show a half-written file (a cache's objects).
    pub fn create_in(temp_dir: &Path, target: &Path, mode: u32) -> io::Result<AtomicFile> {
        let file_name = target.file_name().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} names no file", target.display()),
            )
        })?;
        let file_name = file_name.to_string_lossy();
        loop {
            let temp_path = temp_dir.join(temp_name(&file_name));
            let opened = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&temp_path);
            match opened {
                Ok(file) => {
                    return Ok(AtomicFile {
                        file,
                        temp_path,
                        target: target.to_path_buf(),
                        committed: false,
                    });
                }
                // Left by a killed process whose pid this one has now: take the next name.
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// The open temporary file, for writers that take a `&File` (positional writes) or
    /// clone its handle (async writers).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Where the content is written until the commit.
    pub fn temp_path(&self) -> &Path {
        &self.temp_path
    }

    /// The path this file replaces on commit.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Makes the written content the target's, durably: fsync, rename over the target,
    /// fsync the target's directory (and the temporary file's, if elsewhere). If the fsync
    /// or the rename fails the temporary file is removed and the target keeps its old
    /// content.
    pub fn commit(mut self) -> io::Result<()> {
        self.file.flush()?;
        self.file.sync_all()?;
        fs::rename(&self.temp_path, &self.target)?;
        self.committed = true;
        let target_dir = parent(&self.target);
        sync_dir(&target_dir)?;
        let temp_dir = parent(&self.temp_path);
        if temp_dir != target_dir {
            sync_dir(&temp_dir)?;
        }
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: the temporary file is garbage either way, and the target was
            // never touched.
            let _ = fs::remove_file(&self.temp_path);
        }
    }
}

/// Every temporary name this process hands out is new: the pid tells processes apart, the
/// sequence number the writers (threads, tasks) of one process.
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// A fresh temporary name for a file named `file_name`.
/// Whether `file_name` is the name of a temporary file of this crate (`.NAME.tmp-PID-SEQ`):
/// what a write interrupted by a crash leaves behind, which readers ignore and a cleanup
/// may remove.
pub fn is_temp_name(file_name: &str) -> bool {
    let Some(rest) = file_name.strip_prefix('.') else {
        return false;
    };
    let Some((name, suffix)) = rest.rsplit_once(".tmp-") else {
        return false;
    };
    let Some((pid, seq)) = suffix.split_once('-') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    !name.is_empty() && digits(pid) && digits(seq)
}

fn temp_name(file_name: &str) -> String {
    let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
    format!(".{file_name}.tmp-{}-{seq}", std::process::id())
}

/// The directory holding `path` (`.` for a bare file name).
fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests;
