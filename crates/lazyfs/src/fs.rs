//! The FUSE side: every request answered from the in-memory [`Tree`], every change
//! counted, and the power switch: once the count reaches the cut point every request
//! fails with `EIO` (nothing more reaches the disk) and the owner's `on_cut` runs.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    FileAttr, FileType, Filesystem, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
};

use crate::tree::{Errno, Ino, Kind, Tree};

/// How long the kernel may cache names and attributes: every change comes through here.
const TTL: Duration = Duration::from_secs(1);
/// The size `statfs` reports (free = this less what is stored).
const CAPACITY: u64 = 4 << 30;
const BLOCK: u64 = 4096;

/// What the mounted file system and its owner share.
pub struct Shared {
    /// The file system's state.
    pub tree: Mutex<Tree>,
    /// Changes (writes, creates, renames, unlinks, syncs…) requested so far.
    pub ops: AtomicU64,
    /// The change that finds the power off (`u64::MAX`: never).
    pub cut_at: AtomicU64,
    /// Whether the power is off.
    pub cut: AtomicBool,
    /// Run once, in the request that finds the power off (a harness kills its processes).
    pub on_cut: Mutex<Option<Box<dyn FnMut() + Send>>>,
    /// Every change requested, in order (`create NAME`, `write INO`, `fsyncdir INO`…): change
    /// `n` is entry `n - 1`, for tests that cut at a chosen step.
    pub log: Mutex<Vec<String>>,
    /// A broken disk for checking a harness: directory fsyncs succeed and change nothing,
    /// as if the program never synced a directory.
    pub forget_dir_syncs: AtomicBool,
}

impl Shared {
    /// The tree, even if a request panicked holding it.
    pub fn tree(&self) -> MutexGuard<'_, Tree> {
        self.tree
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Turns the power off now (idempotent); runs `on_cut` the first time.
    pub fn power_off(&self) {
        if !self.cut.swap(true, Ordering::SeqCst) {
            let mut hook = self.on_cut.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(hook) = hook.as_mut() {
                hook();
            }
        }
    }
}

/// The `fuser` file system over [`Shared`].
pub struct LazyFuse(pub Arc<Shared>);

impl LazyFuse {
    /// Whether a request may run: `EIO` once the power is off.
    fn powered(&self) -> Result<(), Errno> {
        if self.0.cut.load(Ordering::SeqCst) {
            Err(libc::EIO)
        } else {
            Ok(())
        }
    }

    /// Counts one change; the one that reaches the cut point turns the power off and is
    /// not applied.
    fn change(&self, what: impl FnOnce() -> String) -> Result<(), Errno> {
        self.powered()?;
        self.0
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(what());
        let n = self.0.ops.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= self.0.cut_at.load(Ordering::SeqCst) {
            self.0.power_off();
            return Err(libc::EIO);
        }
        Ok(())
    }

    fn attr(&self, tree: &Tree, ino: Ino) -> Result<FileAttr, Errno> {
        let node = tree.node(ino)?;
        let size = tree.size(ino)?;
        let kind = match node.kind {
            Kind::File { .. } => FileType::RegularFile,
            Kind::Dir { .. } => FileType::Directory,
            Kind::Symlink(_) => FileType::Symlink,
        };
        Ok(FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: node.mtime,
            mtime: node.mtime,
            ctime: node.mtime,
            crtime: node.mtime,
            kind,
            perm: (node.mode & 0o7777) as u16,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: BLOCK as u32,
            flags: 0,
        })
    }

    fn entry(&self, ino: Result<Ino, Errno>, reply: ReplyEntry) {
        let tree = self.0.tree();
        match ino.and_then(|ino| self.attr(&tree, ino)) {
            Ok(attr) => reply.entry(&TTL, &attr, 0),
            Err(e) => reply.error(e),
        }
    }
}

fn empty(result: Result<(), Errno>, reply: ReplyEmpty) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

/// Answers an `open` or `opendir`: no file handle (the inode is the handle), or the error.
fn opened(result: Result<(), Errno>, reply: ReplyOpen) {
    match result {
        Ok(()) => reply.opened(0, 0),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for LazyFuse {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let ino = self
            .powered()
            .and_then(|()| self.0.tree().lookup(parent, name));
        self.entry(ino, reply);
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        let attr = self.powered().and_then(|()| self.attr(&self.0.tree(), ino));
        match attr {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let result = (|| {
            if mode.is_some() || size.is_some() {
                self.change(|| format!("setattr {ino}"))?;
            } else {
                self.powered()?;
            }
            let mut tree = self.0.tree();
            if let Some(size) = size {
                tree.set_size(ino, size)?;
            }
            if let Some(mode) = mode {
                tree.set_mode(ino, mode)?;
            }
            self.attr(&tree, ino)
        })();
        match result {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        let tree = self.0.tree();
        match self
            .powered()
            .and_then(|()| tree.node(ino))
            .map(|n| &n.kind)
        {
            Ok(Kind::Symlink(target)) => reply.data(target.as_os_str().as_encoded_bytes()),
            Ok(_) => reply.error(libc::EINVAL),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let ino = if mode & libc::S_IFMT != libc::S_IFREG {
            Err(libc::EPERM)
        } else {
            self.change(|| format!("create {}", name.display()))
                .and_then(|()| {
                    self.0
                        .tree()
                        .create_file(parent, name, mode & !umask & 0o7777)
                })
        };
        self.entry(ino, reply);
    }

    fn mkdir(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let ino = self
            .change(|| format!("mkdir {}", name.display()))
            .and_then(|()| self.0.tree().mkdir(parent, name, mode & !umask & 0o7777));
        self.entry(ino, reply);
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        empty(
            self.change(|| format!("unlink {}", name.display()))
                .and_then(|()| self.0.tree().unlink(parent, name)),
            reply,
        );
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        empty(
            self.change(|| format!("rmdir {}", name.display()))
                .and_then(|()| self.0.tree().rmdir(parent, name)),
            reply,
        );
    }

    fn symlink(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let ino = self
            .change(|| format!("symlink {}", link_name.display()))
            .and_then(|()| {
                self.0
                    .tree()
                    .symlink(parent, link_name, target.to_path_buf())
            });
        self.entry(ino, reply);
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        let result = if flags & !libc::RENAME_NOREPLACE != 0 {
            Err(libc::EINVAL)
        } else {
            self.change(|| format!("rename {} {}", name.display(), newname.display()))
                .and_then(|()| {
                    self.0.tree().rename(
                        parent,
                        name,
                        newparent,
                        newname,
                        flags & libc::RENAME_NOREPLACE != 0,
                    )
                })
        };
        empty(result, reply);
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        let exists = |()| self.0.tree().node(ino).map(|_| ());
        opened(self.powered().and_then(exists), reply);
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let tree = self.0.tree();
        let offset = u64::try_from(offset).map_err(|_| libc::EINVAL);
        match self
            .powered()
            .and(offset)
            .and_then(|offset| tree.read(ino, offset, size as usize))
        {
            Ok(bytes) => reply.data(bytes),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let offset = u64::try_from(offset).map_err(|_| libc::EINVAL);
        let result = self
            .change(|| format!("write {ino}"))
            .and(offset)
            .and_then(|offset| self.0.tree().write(ino, offset, data));
        match result {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lock: u64, reply: ReplyEmpty) {
        empty(self.powered(), reply);
    }

    fn fsync(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(
            self.change(|| format!("fsync {ino}"))
                .and_then(|()| self.0.tree().fsync(ino)),
            reply,
        );
    }

    fn opendir(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        let exists = |()| self.0.tree().list(ino).map(|_| ());
        opened(self.powered().and_then(exists), reply);
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let tree = self.0.tree();
        let listed = self.powered().and_then(|()| tree.list(ino));
        let entries = match listed {
            Ok(entries) => entries,
            Err(e) => return reply.error(e),
        };
        let dots = [
            (OsStr::new(".").to_owned(), ino),
            (OsStr::new("..").to_owned(), ino),
        ];
        let all = dots.into_iter().chain(entries);
        for (i, (name, child)) in all.enumerate().skip(offset.max(0) as usize) {
            let kind = match tree.node(child).map(|n| &n.kind) {
                Ok(Kind::Dir { .. }) => FileType::Directory,
                Ok(Kind::Symlink(_)) => FileType::Symlink,
                _ => FileType::RegularFile,
            };
            if reply.add(child, (i + 1) as i64, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let result = self.change(|| format!("fsyncdir {ino}")).and_then(|()| {
            if self.0.forget_dir_syncs.load(Ordering::SeqCst) {
                Ok(())
            } else {
                self.0.tree().fsync(ino)
            }
        });
        empty(result, reply);
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        if let Err(e) = self.powered() {
            return reply.error(e);
        }
        let used: u64 = self
            .0
            .tree()
            .durable_state()
            .iter()
            .map(|(_, d)| match d {
                crate::tree::Durable::File(bytes, _) => bytes.len() as u64,
                _ => BLOCK,
            })
            .sum();
        let total = CAPACITY / BLOCK;
        let free = total.saturating_sub(used.div_ceil(BLOCK));
        reply.statfs(
            total,
            free,
            free,
            1 << 20,
            1 << 20,
            BLOCK as u32,
            255,
            BLOCK as u32,
        );
    }

    fn access(&mut self, _req: &Request<'_>, ino: u64, _mask: i32, reply: ReplyEmpty) {
        empty(
            self.powered()
                .and_then(|()| self.0.tree().node(ino).map(|_| ())),
            reply,
        );
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let result = self
            .change(|| format!("create {}", name.display()))
            .and_then(|()| {
                let mut tree = self.0.tree();
                let ino = tree.create_file(parent, name, mode & !umask & 0o7777)?;
                self.attr(&tree, ino)
            });
        match result {
            Ok(attr) => reply.created(&TTL, &attr, 0, 0, 0),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        length: i64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let result = if mode != 0 {
            Err(libc::EOPNOTSUPP)
        } else {
            let range = u64::try_from(offset).and_then(|o| Ok((o, u64::try_from(length)?)));
            self.change(|| format!("fallocate {ino}"))
                .and_then(|()| range.map_err(|_| libc::EINVAL))
                .and_then(|(o, l)| self.0.tree().allocate(ino, o, l))
        };
        empty(result, reply);
    }
}
