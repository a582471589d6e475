//! The file system's state in memory: what processes see now and, beside it, what would
//! survive a power cut. POSIX promises no more than this: a file's bytes (and size and
//! mode) once the file is fsynced, a name (create, rename, unlink) once the directory that
//! holds it is fsynced. Everything else is lost at the cut.

use std::collections::{BTreeMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

/// An inode number, as FUSE sees it.
pub type Ino = u64;
/// The root directory's inode number (FUSE's fixed `FUSE_ROOT_ID`).
pub const ROOT: Ino = 1;

/// An error as the kernel wants it: an `errno` value.
pub type Errno = i32;

/// What a node is, with its current and its durable content.
#[derive(Debug, Clone)]
pub enum Kind {
    /// A regular file: shared bytes, copied on write, so an fsync costs no copy.
    File {
        /// What reads see now.
        data: Arc<Vec<u8>>,
        /// What the last fsync made durable (`None`: never fsynced; empty after a cut).
        durable: Option<Arc<Vec<u8>>>,
    },
    /// A directory.
    Dir {
        /// The names processes see now.
        entries: BTreeMap<OsString, Ino>,
        /// The names as of the directory's last fsync.
        durable: BTreeMap<OsString, Ino>,
    },
    /// A symbolic link (its target never changes).
    Symlink(PathBuf),
}

/// One inode.
#[derive(Debug, Clone)]
pub struct Node {
    /// File, directory or link, with its content.
    pub kind: Kind,
    /// Permission bits now.
    pub mode: u32,
    /// Permission bits as of the last fsync (or creation, for directories and links).
    pub durable_mode: u32,
    /// Last change of content.
    pub mtime: SystemTime,
}

/// One entry of the durable state, as the backing directory must hold it.
#[derive(Debug, Clone)]
pub enum Durable {
    /// A directory with these permission bits.
    Dir(u32),
    /// A file's durable bytes and permission bits.
    File(Arc<Vec<u8>>, u32),
    /// A symbolic link.
    Symlink(PathBuf),
}

/// Every inode, by number.
#[derive(Debug)]
pub struct Tree {
    nodes: BTreeMap<Ino, Node>,
    next: Ino,
}

impl Tree {
    /// An empty file system: a root directory only, durable.
    pub fn new(root_mode: u32) -> Tree {
        let mut nodes = BTreeMap::new();
        nodes.insert(ROOT, dir_node(root_mode));
        Tree {
            nodes,
            next: ROOT + 1,
        }
    }

    /// The node `ino`, or `ENOENT`.
    pub fn node(&self, ino: Ino) -> Result<&Node, Errno> {
        self.nodes.get(&ino).ok_or(libc::ENOENT)
    }

    fn node_mut(&mut self, ino: Ino) -> Result<&mut Node, Errno> {
        self.nodes.get_mut(&ino).ok_or(libc::ENOENT)
    }

    fn entries(&self, dir: Ino) -> Result<&BTreeMap<OsString, Ino>, Errno> {
        match &self.node(dir)?.kind {
            Kind::Dir { entries, .. } => Ok(entries),
            _ => Err(libc::ENOTDIR),
        }
    }

    fn entries_mut(&mut self, dir: Ino) -> Result<&mut BTreeMap<OsString, Ino>, Errno> {
        match &mut self.node_mut(dir)?.kind {
            Kind::Dir { entries, .. } => Ok(entries),
            _ => Err(libc::ENOTDIR),
        }
    }

    /// The inode `name` in `parent` names now.
    pub fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Ino, Errno> {
        self.entries(parent)?.get(name).copied().ok_or(libc::ENOENT)
    }

    /// The current entries of `dir`, in name order.
    pub fn list(&self, dir: Ino) -> Result<Vec<(OsString, Ino)>, Errno> {
        Ok(self
            .entries(dir)?
            .iter()
            .map(|(n, i)| (n.clone(), *i))
            .collect())
    }

    fn add(&mut self, parent: Ino, name: &OsStr, node: Node) -> Result<Ino, Errno> {
        if self.entries(parent)?.contains_key(name) {
            return Err(libc::EEXIST);
        }
        let ino = self.next;
        self.next += 1;
        self.nodes.insert(ino, node);
        self.entries_mut(parent)?.insert(name.to_owned(), ino);
        Ok(ino)
    }

    /// Creates an empty file (durable only once fsynced and named by a synced directory).
    pub fn create_file(&mut self, parent: Ino, name: &OsStr, mode: u32) -> Result<Ino, Errno> {
        let node = Node {
            kind: Kind::File {
                data: Arc::new(Vec::new()),
                durable: None,
            },
            mode,
            durable_mode: mode,
            mtime: SystemTime::now(),
        };
        self.add(parent, name, node)
    }

    /// Creates an empty directory.
    pub fn mkdir(&mut self, parent: Ino, name: &OsStr, mode: u32) -> Result<Ino, Errno> {
        self.add(parent, name, dir_node(mode))
    }

    /// Creates a symbolic link.
    pub fn symlink(&mut self, parent: Ino, name: &OsStr, target: PathBuf) -> Result<Ino, Errno> {
        let node = Node {
            kind: Kind::Symlink(target),
            mode: 0o777,
            durable_mode: 0o777,
            mtime: SystemTime::now(),
        };
        self.add(parent, name, node)
    }

    /// Removes a name that is not a directory.
    pub fn unlink(&mut self, parent: Ino, name: &OsStr) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        if matches!(self.node(ino)?.kind, Kind::Dir { .. }) {
            return Err(libc::EISDIR);
        }
        self.entries_mut(parent)?.remove(name);
        Ok(())
    }

    /// Removes an empty directory.
    pub fn rmdir(&mut self, parent: Ino, name: &OsStr) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        if !self.entries(ino)?.is_empty() {
            return Err(libc::ENOTEMPTY);
        }
        self.entries_mut(parent)?.remove(name);
        Ok(())
    }

    /// Moves `name` in `parent` to `new_name` in `new_parent`, replacing what is there as
    /// rename(2) does. `no_replace` is `RENAME_NOREPLACE`.
    pub fn rename(
        &mut self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        no_replace: bool,
    ) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        self.entries(new_parent)?;
        let moving_dir = matches!(self.node(ino)?.kind, Kind::Dir { .. });
        if moving_dir && self.is_within(new_parent, ino) {
            return Err(libc::EINVAL);
        }
        if let Ok(existing) = self.lookup(new_parent, new_name) {
            if existing == ino {
                return Ok(());
            }
            if no_replace {
                return Err(libc::EEXIST);
            }
            match (&self.node(existing)?.kind, moving_dir) {
                (Kind::Dir { entries, .. }, true) if !entries.is_empty() => {
                    return Err(libc::ENOTEMPTY);
                }
                (Kind::Dir { .. }, false) => return Err(libc::EISDIR),
                (Kind::File { .. } | Kind::Symlink(_), true) => return Err(libc::ENOTDIR),
                _ => {}
            }
        }
        self.entries_mut(parent)?.remove(name);
        self.entries_mut(new_parent)?
            .insert(new_name.to_owned(), ino);
        Ok(())
    }

    /// Whether directory `dir` is `ancestor` or lies (now) below it.
    fn is_within(&self, dir: Ino, ancestor: Ino) -> bool {
        if dir == ancestor {
            return true;
        }
        let mut stack = vec![ancestor];
        let mut seen = HashSet::new();
        while let Some(d) = stack.pop() {
            if !seen.insert(d) {
                continue;
            }
            if let Ok(entries) = self.entries(d) {
                for &child in entries.values() {
                    if child == dir {
                        return true;
                    }
                    stack.push(child);
                }
            }
        }
        false
    }

    fn file_data(&mut self, ino: Ino) -> Result<&mut Arc<Vec<u8>>, Errno> {
        let node = self.node_mut(ino)?;
        node.mtime = SystemTime::now();
        match &mut node.kind {
            Kind::File { data, .. } => Ok(data),
            Kind::Dir { .. } => Err(libc::EISDIR),
            Kind::Symlink(_) => Err(libc::EINVAL),
        }
    }

    /// Writes `bytes` at `offset`, growing the file (with zeros) as needed.
    pub fn write(&mut self, ino: Ino, offset: u64, bytes: &[u8]) -> Result<(), Errno> {
        let data = Arc::make_mut(self.file_data(ino)?);
        let start = usize::try_from(offset).map_err(|_| libc::EFBIG)?;
        let end = start.checked_add(bytes.len()).ok_or(libc::EFBIG)?;
        if data.len() < end {
            data.resize(end, 0);
        }
        data[start..end].copy_from_slice(bytes);
        Ok(())
    }

    /// Up to `size` bytes from `offset`.
    pub fn read(&self, ino: Ino, offset: u64, size: usize) -> Result<&[u8], Errno> {
        match &self.node(ino)?.kind {
            Kind::File { data, .. } => {
                let start = usize::try_from(offset)
                    .unwrap_or(usize::MAX)
                    .min(data.len());
                let end = start.saturating_add(size).min(data.len());
                Ok(&data[start..end])
            }
            Kind::Dir { .. } => Err(libc::EISDIR),
            Kind::Symlink(_) => Err(libc::EINVAL),
        }
    }

    /// Truncates or extends (with zeros) to `size` bytes.
    pub fn set_size(&mut self, ino: Ino, size: u64) -> Result<(), Errno> {
        let size = usize::try_from(size).map_err(|_| libc::EFBIG)?;
        let data = self.file_data(ino)?;
        if data.len() != size {
            Arc::make_mut(data).resize(size, 0);
        }
        Ok(())
    }

    /// `fallocate` mode 0: the file is at least `offset + len` bytes long afterwards.
    pub fn allocate(&mut self, ino: Ino, offset: u64, len: u64) -> Result<(), Errno> {
        let end = offset.checked_add(len).ok_or(libc::EFBIG)?;
        let current = self.size(ino)?;
        if end > current {
            self.set_size(ino, end)?;
        }
        Ok(())
    }

    /// Sets the permission bits (durable with the next fsync).
    pub fn set_mode(&mut self, ino: Ino, mode: u32) -> Result<(), Errno> {
        self.node_mut(ino)?.mode = mode & 0o7777;
        Ok(())
    }

    /// The size a stat shows.
    pub fn size(&self, ino: Ino) -> Result<u64, Errno> {
        Ok(match &self.node(ino)?.kind {
            Kind::File { data, .. } => data.len() as u64,
            Kind::Dir { entries, .. } => entries.len() as u64,
            Kind::Symlink(target) => target.as_os_str().len() as u64,
        })
    }

    /// fsync: a file's bytes and mode, or a directory's names, become durable.
    pub fn fsync(&mut self, ino: Ino) -> Result<(), Errno> {
        let node = self.node_mut(ino)?;
        node.durable_mode = node.mode;
        match &mut node.kind {
            Kind::File { data, durable } => *durable = Some(Arc::clone(data)),
            Kind::Dir { entries, durable } => durable.clone_from(entries),
            Kind::Symlink(_) => {}
        }
        Ok(())
    }

    /// A clean shutdown's sync: everything becomes durable.
    pub fn sync_all(&mut self) {
        let all: Vec<Ino> = self.nodes.keys().copied().collect();
        for ino in all {
            let _ = self.fsync(ino);
        }
    }

    /// Everything durable, by path relative to the root (parents before children): what
    /// the disk holds after a power cut now. A file that is named durably but was never
    /// fsynced is there and empty, as on a file system that allocates at write-back.
    pub fn durable_state(&self) -> Vec<(PathBuf, Durable)> {
        let mut out = Vec::new();
        let mut seen = HashSet::from([ROOT]);
        self.walk_durable(ROOT, PathBuf::new(), &mut seen, &mut out);
        out
    }

    fn walk_durable(
        &self,
        dir: Ino,
        path: PathBuf,
        seen: &mut HashSet<Ino>,
        out: &mut Vec<(PathBuf, Durable)>,
    ) {
        let Some(Node {
            kind: Kind::Dir { durable, .. },
            ..
        }) = self.nodes.get(&dir)
        else {
            return;
        };
        for (name, &ino) in durable {
            let Some(node) = self.nodes.get(&ino) else {
                continue;
            };
            let child = path.join(name);
            match &node.kind {
                Kind::File { durable, .. } => {
                    let bytes = durable.clone().unwrap_or_default();
                    out.push((child, Durable::File(bytes, node.durable_mode)));
                }
                Kind::Symlink(target) => out.push((child, Durable::Symlink(target.clone()))),
                Kind::Dir { .. } => {
                    // A directory reachable twice in the durable names (moved, and only
                    // one side synced) is kept where it is met first.
                    if seen.insert(ino) {
                        out.push((child.clone(), Durable::Dir(node.durable_mode)));
                        self.walk_durable(ino, child, seen, out);
                    }
                }
            }
        }
    }

    /// Adds a node loaded from disk: durable as it is.
    pub fn insert_durable(
        &mut self,
        parent: Ino,
        name: &OsStr,
        entry: &Durable,
    ) -> Result<Ino, Errno> {
        let node = match entry {
            Durable::Dir(mode) => dir_node(*mode),
            Durable::File(bytes, mode) => Node {
                kind: Kind::File {
                    data: Arc::clone(bytes),
                    durable: Some(Arc::clone(bytes)),
                },
                mode: *mode,
                durable_mode: *mode,
                mtime: SystemTime::now(),
            },
            Durable::Symlink(target) => Node {
                kind: Kind::Symlink(target.clone()),
                mode: 0o777,
                durable_mode: 0o777,
                mtime: SystemTime::now(),
            },
        };
        let ino = self.add(parent, name, node)?;
        self.fsync(parent)?;
        Ok(ino)
    }
}

fn dir_node(mode: u32) -> Node {
    Node {
        kind: Kind::Dir {
            entries: BTreeMap::new(),
            durable: BTreeMap::new(),
        },
        mode,
        durable_mode: mode,
        mtime: SystemTime::now(),
    }
}

#[cfg(test)]
mod tests;
