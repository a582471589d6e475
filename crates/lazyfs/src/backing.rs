//! The backing directory: the "disk" under the file system. Loaded whole at mount; after a
//! cut it is made to hold exactly the durable state, rewriting only what changed.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::tree::{Durable, Ino, ROOT, Tree};

/// What the backing directory holds, by relative path, as last loaded or stored.
#[derive(Debug, Default)]
pub struct OnDisk(HashMap<PathBuf, Durable>);

/// Reads `backing` into a tree whose every node is durable.
pub fn load(backing: &Path) -> Result<(Tree, OnDisk), (PathBuf, io::Error)> {
    let root_mode = fs::metadata(backing)
        .map_err(|e| (backing.to_owned(), e))?
        .permissions()
        .mode()
        & 0o7777;
    let mut tree = Tree::new(root_mode);
    let mut on_disk = OnDisk::default();
    load_dir(backing, Path::new(""), ROOT, &mut tree, &mut on_disk)?;
    Ok((tree, on_disk))
}

fn load_dir(
    backing: &Path,
    rel: &Path,
    dir: Ino,
    tree: &mut Tree,
    on_disk: &mut OnDisk,
) -> Result<(), (PathBuf, io::Error)> {
    let here = backing.join(rel);
    let mut names: Vec<_> = fs::read_dir(&here)
        .map_err(|e| (here.clone(), e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|e| (here.clone(), e))?;
    names.sort();
    for name in names {
        let path = here.join(&name);
        let meta = fs::symlink_metadata(&path).map_err(|e| (path.clone(), e))?;
        let mode = meta.permissions().mode() & 0o7777;
        let entry = if meta.file_type().is_symlink() {
            Durable::Symlink(fs::read_link(&path).map_err(|e| (path.clone(), e))?)
        } else if meta.is_dir() {
            Durable::Dir(mode)
        } else if meta.is_file() {
            let bytes = fs::read(&path).map_err(|e| (path.clone(), e))?;
            Durable::File(Arc::new(bytes), mode)
        } else {
            let error = io::Error::new(io::ErrorKind::Unsupported, "not a file, directory or link");
            return Err((path, error));
        };
        let ino = tree
            .insert_durable(dir, &name, &entry)
            .map_err(|errno| (path.clone(), io::Error::from_raw_os_error(errno)))?;
        let child = rel.join(&name);
        if matches!(entry, Durable::Dir(_)) {
            load_dir(backing, &child, ino, tree, on_disk)?;
        }
        on_disk.0.insert(child, entry);
    }
    Ok(())
}

/// What [`store`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Files, directories and links written.
    pub written: usize,
    /// Entries removed.
    pub removed: usize,
}

/// Makes `backing` hold exactly `tree`'s durable state.
pub fn store(
    tree: &Tree,
    backing: &Path,
    on_disk: &mut OnDisk,
) -> Result<Stored, (PathBuf, io::Error)> {
    let wanted: Vec<(PathBuf, Durable)> = tree.durable_state();
    let wanted_map: HashMap<&Path, &Durable> =
        wanted.iter().map(|(p, d)| (p.as_path(), d)).collect();
    let mut stored = Stored::default();

    // Remove what must go (or change kind), deepest first.
    let mut gone: Vec<PathBuf> = on_disk
        .0
        .iter()
        .filter(|(path, have)| {
            wanted_map
                .get(path.as_path())
                .is_none_or(|want| std::mem::discriminant(*want) != std::mem::discriminant(*have))
        })
        .map(|(path, _)| path.clone())
        .collect();
    gone.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for rel in gone {
        let path = backing.join(&rel);
        let removed = match on_disk.0.get(&rel) {
            Some(Durable::Dir(_)) => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err((path, e)),
        }
        // Whatever was below a removed directory is gone too.
        on_disk.0.retain(|p, _| !p.starts_with(&rel));
        stored.removed += 1;
    }

    // Write what is new or different, parents first (durable_state's order).
    for (rel, want) in &wanted {
        let path = backing.join(rel);
        let same = match (on_disk.0.get(rel), want) {
            (Some(Durable::Dir(a)), Durable::Dir(b)) => a == b,
            (Some(Durable::File(a, ma)), Durable::File(b, mb)) => Arc::ptr_eq(a, b) && ma == mb,
            (Some(Durable::Symlink(a)), Durable::Symlink(b)) => a == b,
            _ => false,
        };
        if same {
            continue;
        }
        let written = match want {
            Durable::Dir(mode) => match fs::create_dir(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(e),
            }
            .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(*mode))),
            Durable::File(bytes, mode) => fs::write(&path, bytes.as_slice())
                .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(*mode))),
            Durable::Symlink(target) => match fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            }
            .and_then(|()| std::os::unix::fs::symlink(target, &path)),
        };
        written.map_err(|e| (path.clone(), e))?;
        on_disk.0.insert(rel.clone(), want.clone());
        stored.written += 1;
    }
    Ok(stored)
}
