//! A FUSE file system that loses what was not synced when the power is cut, as Jepsen's
//! LazyFS does: for testing that a program's durable state survives power cuts, not only
//! kills (`kill -9` keeps what the kernel already has).
//!
//! [`LazyFs::mount`] loads a backing directory into memory and mounts it. Processes see
//! an ordinary file system; beside what they see, the file system keeps what POSIX
//! promises would be on disk: a file's bytes, size and mode as of its last `fsync`, a name
//! (create, rename, unlink, mkdir) as of the last `fsync` of its directory. At the cut
//! (after a chosen number of changes, [`LazyFs::mount`]'s `cut_after`, or [`LazyFs::cut`]
//! at any moment) every later request fails with `EIO`; [`LazyFs::unmount_after_cut`]
//! then writes exactly the durable state to the backing directory, so the next mount
//! starts from what the disk would hold. [`LazyFs::sync_and_unmount`] is a clean
//! shutdown (everything durable).
//!
//! Needs `/dev/fuse` and `fusermount3` (Debian `fuse3`), and root or a user allowed to
//! mount FUSE file systems.

#![deny(missing_docs)]

mod backing;
mod fs;
mod tree;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ferry_types::Diagnose;

pub use backing::Stored;
pub use tree::{Durable, Tree};

use fs::{LazyFuse, Shared};

/// What can go wrong mounting, loading or storing.
#[derive(Debug, thiserror::Error)]
pub enum LazyFsError {
    /// The FUSE mount failed.
    #[error("mounting the lazy file system on {} failed: {source}", mountpoint.display())]
    Mount {
        /// Where.
        mountpoint: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The backing directory could not be read.
    #[error("reading the backing directory failed at {}: {source}", path.display())]
    Load {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The durable state could not be written to the backing directory.
    #[error("writing the durable state failed at {}: {source}", path.display())]
    Store {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl Diagnose for LazyFsError {
    fn code(&self) -> &'static str {
        match self {
            LazyFsError::Mount { .. } => "LAZYFS_MOUNT",
            LazyFsError::Load { .. } => "LAZYFS_LOAD",
            LazyFsError::Store { .. } => "LAZYFS_STORE",
        }
    }

    fn fix(&self) -> String {
        match self {
            LazyFsError::Mount { .. } => "Install fuse3 (fusermount3), make sure /dev/fuse exists and run as root, with an empty existing mount point".into(),
            LazyFsError::Load { .. } => "Give the backing directory only files, directories and links that this user can read".into(),
            LazyFsError::Store { .. } => "Free space on the backing directory's file system and make it writable".into(),
        }
    }
}

/// Whether this machine can mount FUSE file systems here: `/dev/fuse` opens and
/// `fusermount3` is installed. Tests skip (loudly) when it cannot.
pub fn available() -> Result<(), String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(|e| format!("/dev/fuse cannot be opened: {e}"))?;
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|p| p.join("fusermount3").is_file()))
        .unwrap_or(false);
    if !found {
        return Err("fusermount3 is not installed (Debian package fuse3)".into());
    }
    Ok(())
}

/// A mounted lazy file system.
pub struct LazyFs {
    shared: Arc<Shared>,
    on_disk: backing::OnDisk,
    backing: PathBuf,
    mountpoint: PathBuf,
    session: Option<fuser::BackgroundSession>,
}

impl LazyFs {
    /// Loads `backing` and mounts it on `mountpoint`; the power goes off at the
    /// `cut_after`th change (write, create, mkdir, rename, unlink, rmdir, truncate, chmod,
    /// fallocate, fsync), which fails with `EIO` and is not applied.
    pub fn mount(
        backing: &Path,
        mountpoint: &Path,
        cut_after: Option<u64>,
    ) -> Result<LazyFs, LazyFsError> {
        let (tree, on_disk) =
            backing::load(backing).map_err(|(path, source)| LazyFsError::Load { path, source })?;
        let shared = Arc::new(Shared {
            tree: Mutex::new(tree),
            ops: AtomicU64::new(0),
            cut_at: AtomicU64::new(cut_after.unwrap_or(u64::MAX)),
            cut: AtomicBool::new(false),
            on_cut: Mutex::new(None),
            forget_dir_syncs: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
        });
        let options = [
            fuser::MountOption::FSName("lazyfs".into()),
            fuser::MountOption::AllowOther,
            fuser::MountOption::DefaultPermissions,
        ];
        let session = fuser::spawn_mount2(LazyFuse(Arc::clone(&shared)), mountpoint, &options)
            .map_err(|source| LazyFsError::Mount {
                mountpoint: mountpoint.to_owned(),
                source,
            })?;
        Ok(LazyFs {
            shared,
            on_disk,
            backing: backing.to_owned(),
            mountpoint: mountpoint.to_owned(),
            session: Some(session),
        })
    }

    /// Runs `hook` in the request that finds the power off (e.g. to SIGKILL the processes
    /// using the file system, as a power cut would).
    pub fn on_cut(&self, hook: impl FnMut() + Send + 'static) {
        *self.shared.on_cut.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(hook));
    }

    /// Makes directory fsyncs succeed without effect from now on: the disk of a program
    /// that never syncs a directory, for checking that a harness finds what that loses.
    pub fn forget_dir_syncs(&self) {
        self.shared.forget_dir_syncs.store(true, Ordering::SeqCst);
    }

    /// Every change requested so far, described (`unlink NAME`, `rename OLD NEW`,
    /// `fsync INO`…): change `n`, the one `cut_after = n` fails, is entry `n - 1`.
    pub fn changes(&self) -> Vec<String> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Changes requested so far (counted as for `cut_after`).
    pub fn ops(&self) -> u64 {
        self.shared.ops.load(Ordering::SeqCst)
    }

    /// Whether the power is off.
    pub fn is_cut(&self) -> bool {
        self.shared.cut.load(Ordering::SeqCst)
    }

    /// Turns the power off now.
    pub fn cut(&self) {
        self.shared.power_off();
    }

    /// What the disk would hold after a cut now, by relative path.
    pub fn durable_state(&self) -> Vec<(PathBuf, Durable)> {
        self.shared.tree().durable_state()
    }

    /// Cuts the power (if it is still on), unmounts, and leaves in the backing directory
    /// exactly the durable state.
    pub fn unmount_after_cut(mut self) -> Result<Stored, LazyFsError> {
        self.cut();
        self.unmount();
        let tree = self.shared.tree();
        backing::store(&tree, &self.backing, &mut self.on_disk)
            .map_err(|(path, source)| LazyFsError::Store { path, source })
    }

    /// A clean shutdown: everything is made durable, unmounted and stored.
    pub fn sync_and_unmount(mut self) -> Result<Stored, LazyFsError> {
        self.shared.tree().sync_all();
        self.unmount();
        let tree = self.shared.tree();
        backing::store(&tree, &self.backing, &mut self.on_disk)
            .map_err(|(path, source)| LazyFsError::Store { path, source })
    }

    /// Unmounts; a mount still in use (a file left open) is detached instead, and its
    /// request loop ends when the last file closes (it answers `EIO` until then).
    fn unmount(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        let Ok(path) = std::ffi::CString::new(self.mountpoint.as_os_str().as_encoded_bytes())
        else {
            return drop(session);
        };
        // SAFETY: umount2(2) with a valid NUL-terminated path.
        let unmounted = unsafe { libc::umount2(path.as_ptr(), 0) } == 0;
        if unmounted {
            session.join();
        } else {
            self.shared.cut.store(true, Ordering::SeqCst);
            // SAFETY: as above.
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
            drop(session);
        }
    }
}

impl Drop for LazyFs {
    /// Unmounts without storing anything: the backing directory keeps what it had.
    fn drop(&mut self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        self.unmount();
    }
}

#[cfg(test)]
mod mount_tests;
