//! What the device can remove without losing anything it needs, and removing it: the
//! cache's stale downloads (a spool or chunk cache that no install in progress resumes),
//! the temp files of writes a crash interrupted, and, when asked, an install in progress
//! with its cache. Sizing purges before a download ([`crate::install::sizing`]),
//! `ferry purge-cache` by hand, the doctor's `--fix` when the cache is corrupt.
//!
//! Never a slot, the journal, the receipts or boot state: only the cache and temp files.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::AgentError;
use crate::device::Device;
use crate::install::record::InstallProgress;
use crate::layout::Layout;

/// Something that can be purged, and what removing it frees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Purgeable {
    /// The file or directory.
    pub path: PathBuf,
    /// Bytes it occupies on disk (allocated blocks, so a sparse file counts what it
    /// really holds).
    pub bytes: u64,
    /// Why it can go.
    pub why: &'static str,
}

/// What an install in progress still needs, so it is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Keep {
    /// The install record (`cache/install.json`).
    pub record: bool,
    /// The download spool (frames that arrived and may not be in the slot yet).
    pub spool: bool,
    /// The chunk cache (chunk reuse under way).
    pub chunk_cache: bool,
}

impl Keep {
    /// Nothing: everything in the cache goes (`ferry purge-cache --all`); the next
    /// install starts from the beginning.
    pub const NOTHING: Keep = Keep {
        record: false,
        spool: false,
        chunk_cache: false,
    };

    /// What the install recorded in `record` (if any) resumes from: the record, the
    /// spool, and the chunk cache while chunk reuse is under way.
    pub fn for_record(record: Option<&InstallProgress>) -> Keep {
        let Some(record) = record else {
            return Keep::default();
        };
        Keep {
            record: true,
            spool: true,
            chunk_cache: record.chunks.as_ref().is_some_and(|c| !c.abandoned),
        }
    }
}

/// What [`purge`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Purged {
    /// What was removed.
    pub removed: Vec<Purgeable>,
    /// Bytes freed.
    pub bytes: u64,
}

/// Everything purgeable in the device directory at `layout`, keeping what `keep` says
/// an install in progress needs. Missing files are simply not listed.
pub fn purgeable(layout: &Layout<'_>, keep: Keep) -> Vec<Purgeable> {
    let mut found = Vec::new();
    let mut add = |path: PathBuf, why: &'static str| {
        if let Some(bytes) = allocated(&path) {
            found.push(Purgeable { path, bytes, why });
        }
    };
    if !keep.spool {
        add(layout.spool_dir(), "download spool no install resumes from");
    }
    if !keep.chunk_cache {
        add(layout.chunk_cache(), "chunk cache no install resumes from");
    }
    if !keep.record {
        add(layout.install_record(), "record of an install in progress");
    }
    for dir in layout.writable_dirs() {
        for temp in temp_files(&dir) {
            add(temp, "temp file of a write that was interrupted");
        }
    }
    found
}

/// Removes `items` durably (each removal, then its directory synced). A file already
/// gone counts as removed, freeing nothing.
pub fn purge(items: &[Purgeable]) -> Result<Purged, AgentError> {
    let mut purged = Purged::default();
    for item in items {
        let meta = match fs::symlink_metadata(&item.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(AgentError::Io {
                    op: "purging the cache",
                    path: item.path.clone(),
                    source,
                });
            }
        };
        if meta.is_dir() {
            fs::remove_dir_all(&item.path)
                .map_err(AgentError::io("purging the cache", &item.path))?;
            if let Some(parent) = item.path.parent() {
                ferry_durable::sync_dir(parent)
                    .map_err(AgentError::io("purging the cache", parent))?;
            }
        } else {
            ferry_durable::remove(&item.path)
                .map_err(AgentError::io("purging the cache", &item.path))?;
        }
        purged.bytes += item.bytes;
        purged.removed.push(item.clone());
    }
    Ok(purged)
}

/// `ferry purge-cache`: removes everything purgeable, keeping what an install in
/// progress resumes from unless `all` (then the next install starts from the beginning).
pub fn purge_cache(device: &Device, all: bool) -> Result<Purged, AgentError> {
    let record: Option<InstallProgress> =
        crate::device::read_json(&device.layout().install_record()).ok();
    let keep = if all {
        Keep::NOTHING
    } else {
        Keep::for_record(record.as_ref())
    };
    purge(&purgeable(&device.layout(), keep))
}

/// Bytes `path` occupies on disk (a directory: everything in it), `None` if it does
/// not exist.
pub fn allocated(path: &Path) -> Option<u64> {
    let meta = fs::symlink_metadata(path).ok()?;
    if !meta.is_dir() {
        return Some(meta.blocks() * 512);
    }
    let mut total = 0;
    for entry in fs::read_dir(path).ok()?.flatten() {
        total += allocated(&entry.path()).unwrap_or(0);
    }
    Some(total)
}

/// The temp files ferry-durable leaves behind when a write is interrupted (`.NAME.tmp-PID-SEQ`)
/// directly in `dir`. Only ours: another process cannot be writing, the caller holds the
/// device lock.
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(ferry_durable::is_temp_name)
        })
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_downloads_and_temp_files_are_purgeable_and_an_install_keeps_its_own() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::new(tmp.path());
        for dir in layout.writable_dirs() {
            fs::create_dir_all(dir).unwrap();
        }
        fs::create_dir_all(layout.spool_dir()).unwrap();
        fs::write(
            layout.spool_dir().join("0000000000000000.part"),
            vec![1u8; 8192],
        )
        .unwrap();
        fs::write(layout.chunk_cache(), vec![2u8; 4096]).unwrap();
        fs::write(layout.install_record(), b"{}").unwrap();
        let temp = layout.receipts_dir().join(".x.json.tmp-1-0");
        fs::write(&temp, b"torn").unwrap();
        fs::write(layout.receipts_dir().join("x.json"), b"{}").unwrap();

        let everything = purgeable(&layout, Keep::NOTHING);
        let paths: Vec<&Path> = everything.iter().map(|p| p.path.as_path()).collect();
        assert!(paths.contains(&layout.spool_dir().as_path()), "{paths:?}");
        assert!(paths.contains(&layout.chunk_cache().as_path()));
        assert!(paths.contains(&layout.install_record().as_path()));
        assert!(paths.contains(&temp.as_path()));
        assert!(
            !paths.iter().any(|p| p.ends_with("receipts/x.json")),
            "a receipt is never purgeable"
        );
        let spool = everything
            .iter()
            .find(|p| p.path == layout.spool_dir())
            .unwrap();
        assert!(spool.bytes >= 8192, "{spool:?}");

        let kept = purgeable(
            &layout,
            Keep {
                record: true,
                spool: true,
                chunk_cache: true,
            },
        );
        assert_eq!(
            kept.iter().map(|p| p.path.clone()).collect::<Vec<_>>(),
            vec![temp.clone()]
        );

        let purged = purge(&everything).unwrap();
        assert_eq!(purged.removed.len(), everything.len());
        assert!(purged.bytes >= 8192 + 4096);
        assert!(!layout.spool_dir().exists() && !temp.exists());
        assert!(layout.receipts_dir().join("x.json").exists());
        assert!(purgeable(&layout, Keep::NOTHING).is_empty());
        // Purging what is already gone frees nothing and fails nothing.
        assert_eq!(purge(&everything).unwrap().bytes, 0);
    }
}
