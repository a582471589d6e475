//! Sizing before any download (DESIGN §3 step 2, the controller's PURGING state): the
//! space an install needs on each filesystem it writes, against what `statvfs` says is
//! free there; if short, the purgeable is purged ([`crate::install::purge`]) and the
//! space measured again; if still short, `INSUFFICIENT_SPACE` with needed, free and
//! purgeable per filesystem. Then the slot image is preallocated (`fallocate`), so a full
//! disk is found now, not in the middle of the download.
//!
//! # The rule
//!
//! Needs, each on the filesystem of its path (needs on one filesystem add up):
//!
//! | need | bytes | where |
//! | --- | --- | --- |
//! | slot image | image size − what the slot file already has allocated (0 for a block device) | the inactive slot |
//! | hash tree | the dm-verity tree of the image (`ferry_seal::tree_size`, about 1/127 of it) | `slots/` |
//! | spool | the payload, at most [`SPOOL_BYTES`] (the frames received and not yet in the slot) | `cache/spool/` |
//! | bookkeeping | the manifest copy + [`BOOKKEEPING_BYTES`] (record, ticket, receipt, slot metadata, journal) | the device directory |
//! | reserve | [`RESERVE_BYTES`]: kept free for the writes that keep the device bootable | the device directory |
//!
//! Chunk reuse's cache is sized when its plan is known ([`reserve_chunk_cache`]): the
//! ranges still to fetch must fit beside the reserve, and are preallocated; when they do
//! not fit, chunk reuse gives way to the full payload, which needs no cache.
//!
//! The reserve is also what the cache writers leave alone while they write: the spool
//! turns itself off rather than eat into it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::AgentError;
use crate::facts::{self, RESERVE_BYTES, Shortfall};
use crate::install::purge::{self, Keep, Purgeable};
use crate::layout::Layout;

/// The most the spool is counted for: a few 4 MiB segments of frames received and not
/// yet in the slot.
pub const SPOOL_BYTES: u64 = 16 << 20;
/// What an install writes besides its payload, manifest and tree: the install record,
/// the ticket and nonce, the receipt, the slot metadata and the journal's records.
pub const BOOKKEEPING_BYTES: u64 = 1 << 20;

/// One thing the install will write, and the bytes it still needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Need {
    /// What: `slot image`, `hash tree`, `spool`, `bookkeeping`, `reserve`, `chunk cache`.
    pub what: &'static str,
    /// Where it is written.
    pub path: PathBuf,
    /// Bytes it still needs there.
    pub bytes: u64,
}

/// One filesystem the install writes to: what it needs there against what is free.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FsSizing {
    /// The path of the first need on it.
    pub path: PathBuf,
    /// Its device number (paths with the same one share their space).
    pub fs_id: u64,
    /// Its capacity in bytes.
    pub capacity: u64,
    /// Bytes needed there, over every need.
    pub needed: u64,
    /// Bytes free there (`f_bavail`).
    pub free: u64,
    /// Bytes that purging would free there.
    pub purgeable: u64,
    /// The needs, one by one.
    pub needs: Vec<Need>,
}

impl FsSizing {
    /// Whether the install does not fit here.
    pub fn short(&self) -> bool {
        self.needed > self.free
    }

    fn shortfall(&self) -> Shortfall {
        Shortfall {
            path: self.path.clone(),
            needed: self.needed,
            free: self.free,
            purgeable: self.purgeable,
        }
    }
}

/// How the slot image was preallocated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum Prealloc {
    /// Its blocks are allocated: writing the image cannot run out of space.
    Done {
        /// Bytes preallocated (from the start of the slot).
        bytes: u64,
    },
    /// The filesystem cannot preallocate (`fallocate` unsupported): the free-space check
    /// is all there is.
    Unsupported {
        /// What the system said.
        reason: String,
    },
    /// The slot is a block device: its space is its own.
    BlockDevice,
}

/// The outcome of sizing an install (the data of the controller's `Sized` event).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sizing {
    /// Every filesystem involved, measured after any purge.
    pub filesystems: Vec<FsSizing>,
    /// What was purged to make room.
    pub purged: purge::Purged,
    /// How the slot image was preallocated (`None` when the install did not fit).
    pub preallocated: Option<Prealloc>,
}

impl Sizing {
    /// Whether every filesystem has room.
    pub fn fits(&self) -> bool {
        !self.filesystems.iter().any(FsSizing::short)
    }

    /// The `INSUFFICIENT_SPACE` error of the filesystems that are short.
    pub fn error(&self) -> AgentError {
        AgentError::InsufficientSpace {
            filesystems: self
                .filesystems
                .iter()
                .filter(|fs| fs.short())
                .map(FsSizing::shortfall)
                .collect(),
        }
    }
}

/// What is being installed, as sizing sees it.
#[derive(Debug, Clone, Copy)]
pub struct Update<'a> {
    /// The inactive slot's image (file or block device).
    pub slot_path: &'a Path,
    /// Image size.
    pub image_size: u64,
    /// Full payload size.
    pub payload_size: u64,
    /// Manifest size (its copy is stored beside the slot).
    pub manifest_len: u64,
}

/// The needs of `update` on the device at `layout` (see the [module docs](self)).
pub fn needs(layout: &Layout<'_>, update: &Update<'_>) -> Result<Vec<Need>, AgentError> {
    let slot_need = match std::fs::metadata(update.slot_path) {
        Ok(meta) if meta.file_type().is_block_device() => 0,
        Ok(meta) => update
            .image_size
            .saturating_sub((meta.blocks() * 512).min(update.image_size)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => update.image_size,
        Err(source) => {
            return Err(AgentError::Io {
                op: "measuring the inactive slot",
                path: update.slot_path.to_owned(),
                source,
            });
        }
    };
    Ok(vec![
        Need {
            what: "slot image",
            path: update.slot_path.to_owned(),
            bytes: slot_need,
        },
        Need {
            what: "hash tree",
            path: layout.slots_dir(),
            bytes: ferry_seal::tree_size(update.image_size),
        },
        Need {
            what: "spool",
            path: layout.spool_dir(),
            bytes: update.payload_size.min(SPOOL_BYTES),
        },
        Need {
            what: "bookkeeping",
            path: layout.dir().to_owned(),
            bytes: update.manifest_len + BOOKKEEPING_BYTES,
        },
        Need {
            what: "reserve",
            path: layout.dir().to_owned(),
            bytes: RESERVE_BYTES,
        },
    ])
}

/// `needs` and `purgeable` grouped by filesystem and measured now.
pub fn measure(needs: Vec<Need>, purgeable: &[Purgeable]) -> Result<Vec<FsSizing>, AgentError> {
    let mut by_fs: BTreeMap<u64, FsSizing> = BTreeMap::new();
    let mut order = Vec::new();
    for need in needs {
        let space = facts::space(&existing_ancestor(&need.path))?;
        let fs = by_fs.entry(space.fs_id).or_insert_with(|| {
            order.push(space.fs_id);
            FsSizing {
                path: need.path.clone(),
                fs_id: space.fs_id,
                capacity: space.capacity,
                needed: 0,
                free: space.free,
                purgeable: 0,
                needs: Vec::new(),
            }
        });
        fs.needed += need.bytes;
        fs.needs.push(need);
    }
    for item in purgeable {
        if let Ok(meta) = std::fs::symlink_metadata(&item.path)
            && let Some(fs) = by_fs.get_mut(&meta.dev())
        {
            fs.purgeable += item.bytes;
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|id| by_fs.remove(&id))
        .collect())
}

/// Sizes `update` for the device at `layout`, purging (all but what `keep` protects) if
/// short, then preallocates the slot image. `INSUFFICIENT_SPACE` when it still does not
/// fit.
pub fn size_install(
    layout: &Layout<'_>,
    update: &Update<'_>,
    keep: Keep,
) -> Result<Sizing, AgentError> {
    let mut sizing = assess(layout, update, keep)?;
    if !sizing.fits() {
        let short: Vec<u64> = sizing
            .filesystems
            .iter()
            .filter(|fs| fs.short())
            .map(|fs| fs.fs_id)
            .collect();
        let items: Vec<Purgeable> = purge::purgeable(layout, keep)
            .into_iter()
            .filter(|item| {
                std::fs::symlink_metadata(&item.path).is_ok_and(|m| short.contains(&m.dev()))
            })
            .collect();
        let purged = purge::purge(&items)?;
        tracing::info!(
            bytes = purged.bytes,
            n = purged.removed.len(),
            "purged to make room"
        );
        sizing = Sizing {
            purged,
            ..assess(layout, update, keep)?
        };
    }
    if !sizing.fits() {
        return Err(sizing.error());
    }
    sizing.preallocated = Some(preallocate_slot(update, || {
        assess(layout, update, keep).map(|s| s.error())
    })?);
    Ok(sizing)
}

/// Whether `update` would fit once what may be purged is purged (nothing is changed): the
/// daemon's check before it starts a download on its own, the same arithmetic as PURGING.
/// `Err(INSUFFICIENT_SPACE)` with the numbers when it would not.
pub fn check_fits(layout: &Layout<'_>, update: &Update<'_>, keep: Keep) -> Result<(), AgentError> {
    let sizing = assess(layout, update, keep)?;
    let short = sizing
        .filesystems
        .iter()
        .any(|fs| fs.needed > fs.free.saturating_add(fs.purgeable));
    if short { Err(sizing.error()) } else { Ok(()) }
}

/// The sizing of `update` now, nothing purged or preallocated (what the doctor shows).
pub fn assess(layout: &Layout<'_>, update: &Update<'_>, keep: Keep) -> Result<Sizing, AgentError> {
    let purgeable = purge::purgeable(layout, keep);
    Ok(Sizing {
        filesystems: measure(needs(layout, update)?, &purgeable)?,
        purged: purge::Purged::default(),
        preallocated: None,
    })
}

/// Allocates the blocks of the slot image's first `image_size` bytes.
fn preallocate_slot(
    update: &Update<'_>,
    short: impl FnOnce() -> Result<AgentError, AgentError>,
) -> Result<Prealloc, AgentError> {
    let path = update.slot_path;
    let is_block = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device());
    if is_block {
        return Ok(Prealloc::BlockDevice);
    }
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(AgentError::io("opening the inactive slot", path))?;
    match fallocate(&file, 0..update.image_size) {
        Ok(()) => Ok(Prealloc::Done {
            bytes: update.image_size,
        }),
        Err(e) if unsupported(&e) => {
            tracing::warn!(path = %path.display(), error = %e, "the slot's filesystem cannot preallocate; going on without");
            Ok(Prealloc::Unsupported {
                reason: e.to_string(),
            })
        }
        Err(e) if crate::error::is_disk_full(&e) => Err(short()?),
        Err(source) => Err(AgentError::Io {
            op: "preallocating the inactive slot",
            path: path.to_owned(),
            source,
        }),
    }
}

/// Chunk reuse's cache: the ranges of the `batches` still to fetch must fit on the cache's filesystem
/// beside the reserve; they are then preallocated in the sparse cache file at `cache`.
/// `INSUFFICIENT_SPACE` when they do not fit (the install then uses the full payload).
pub fn reserve_chunk_cache(cache: &Path, batches: &[Vec<Range<u64>>]) -> Result<(), AgentError> {
    let ranges: Vec<&Range<u64>> = batches.iter().flatten().collect();
    let wanted: u64 = ranges.iter().map(|r| r.end - r.start).sum();
    let held = purge::allocated(cache).unwrap_or(0).min(wanted);
    let need = Need {
        what: "chunk cache",
        path: cache.to_owned(),
        bytes: wanted - held,
    };
    let dir = cache.parent().unwrap_or(cache).to_owned();
    let reserve = Need {
        what: "reserve",
        path: dir,
        bytes: RESERVE_BYTES,
    };
    let filesystems = measure(vec![need, reserve], &[])?;
    if filesystems.iter().any(FsSizing::short) {
        return Err(AgentError::InsufficientSpace {
            filesystems: filesystems
                .iter()
                .filter(|fs| fs.short())
                .map(FsSizing::shortfall)
                .collect(),
        });
    }
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(cache)
        .map_err(AgentError::io("opening the chunk cache", cache))?;
    for range in ranges {
        match fallocate(&file, range.clone()) {
            Ok(()) => {}
            Err(e) if unsupported(&e) => {
                tracing::warn!(error = %e, "the cache's filesystem cannot preallocate; going on without");
                return Ok(());
            }
            Err(e) if crate::error::is_disk_full(&e) => {
                return Err(AgentError::InsufficientSpace {
                    filesystems: measure(
                        vec![Need {
                            what: "chunk cache",
                            path: cache.to_owned(),
                            bytes: wanted - held + RESERVE_BYTES,
                        }],
                        &[],
                    )?
                    .iter()
                    .map(FsSizing::shortfall)
                    .collect(),
                });
            }
            Err(source) => {
                return Err(AgentError::Io {
                    op: "preallocating the chunk cache",
                    path: cache.to_owned(),
                    source,
                });
            }
        }
    }
    Ok(())
}

/// `fallocate(2)` mode 0: allocates the blocks of `range` (extending the file if it ends
/// beyond it), leaving what the file holds unchanged.
fn fallocate(file: &File, range: Range<u64>) -> std::io::Result<()> {
    if range.is_empty() {
        return Ok(());
    }
    let start = libc::off_t::try_from(range.start).map_err(std::io::Error::other)?;
    let len = libc::off_t::try_from(range.end - range.start).map_err(std::io::Error::other)?;
    loop {
        // SAFETY: fallocate on a valid, owned descriptor; no memory is passed.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, start, len) };
        if rc == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn unsupported(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL)
    )
}

/// `path`, or its nearest ancestor that exists (what `statvfs` can measure).
fn existing_ancestor(path: &Path) -> PathBuf {
    let mut at = path;
    loop {
        if at.exists() {
            return at.to_owned();
        }
        match at.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => at = parent,
            _ => return path.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(slot: &Path, image: u64) -> Update<'_> {
        Update {
            slot_path: slot,
            image_size: image,
            payload_size: image / 2,
            manifest_len: 10_000,
        }
    }

    #[test]
    fn needs_follow_the_rule_and_an_allocated_slot_needs_nothing_more() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::new(tmp.path());
        std::fs::create_dir_all(layout.slots_dir()).unwrap();
        let slot = layout.slots_dir().join("b.img");
        let image = 64 << 20;
        // A sparse slot, as `device init` makes it: the image needs all its blocks.
        File::create(&slot).unwrap().set_len(128 << 20).unwrap();
        let needs = needs(&layout, &update(&slot, image)).unwrap();
        let by = |what: &str| needs.iter().find(|n| n.what == what).unwrap().bytes;
        assert_eq!(by("slot image"), image);
        assert_eq!(by("hash tree"), ferry_seal::tree_size(image));
        assert_eq!(
            by("spool"),
            SPOOL_BYTES,
            "a 32 MiB payload spools at most 16 MiB"
        );
        assert_eq!(by("bookkeeping"), 10_000 + BOOKKEEPING_BYTES);
        assert_eq!(by("reserve"), RESERVE_BYTES);

        // Everything on one filesystem adds up.
        let measured = measure(needs.clone(), &[]).unwrap();
        assert_eq!(measured.len(), 1);
        assert_eq!(
            measured[0].needed,
            needs.iter().map(|n| n.bytes).sum::<u64>()
        );

        // Preallocated, the slot needs nothing more.
        let file = OpenOptions::new().write(true).open(&slot).unwrap();
        match fallocate(&file, 0..image) {
            Ok(()) => {
                let again = super::needs(&layout, &update(&slot, image)).unwrap();
                assert_eq!(again[0].bytes, 0, "{again:?}");
            }
            Err(e) => assert!(unsupported(&e), "{e}"),
        }
    }

    #[test]
    fn an_update_larger_than_the_filesystem_is_insufficient_space_with_the_numbers() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::new(tmp.path());
        std::fs::create_dir_all(layout.slots_dir()).unwrap();
        let slot = layout.slots_dir().join("b.img");
        File::create(&slot).unwrap();
        let free = facts::space(tmp.path()).unwrap().free;
        let huge = update(&slot, free + (1 << 30));
        let err = size_install(&layout, &huge, Keep::default()).unwrap_err();
        let AgentError::InsufficientSpace { filesystems } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(filesystems.len(), 1);
        assert!(filesystems[0].needed > free + (1 << 30), "{filesystems:?}");
        assert!(filesystems[0].missing() > 1 << 30);
        assert_eq!(ferry_types::Diagnose::code(&err), "INSUFFICIENT_SPACE");
        assert_eq!(
            std::fs::metadata(&slot).unwrap().len(),
            0,
            "nothing was preallocated for an install that does not fit"
        );
    }

    #[test]
    fn the_chunk_cache_fits_beside_the_reserve_or_is_insufficient_space() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("chunks.payload");
        let batches = vec![
            vec![0..4096, 1 << 20..(1 << 20) + 8192],
            vec![3 << 20..(3 << 20) + 100],
        ];
        reserve_chunk_cache(&cache, &batches).unwrap();
        let meta = std::fs::metadata(&cache).unwrap();
        assert!(
            meta.len() >= (3 << 20) + 100,
            "the ranges are allocated up to their end"
        );
        let free = facts::space(tmp.path()).unwrap().free;
        let too_much = vec![vec![0..free]];
        let err = reserve_chunk_cache(&tmp.path().join("other.payload"), &too_much).unwrap_err();
        assert_eq!(ferry_types::Diagnose::code(&err), "INSUFFICIENT_SPACE");
        assert!(
            !tmp.path().join("other.payload").exists(),
            "nothing is written for a cache that does not fit"
        );
    }

    #[test]
    fn a_fitting_update_purges_nothing_and_preallocates_the_slot() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::new(tmp.path());
        std::fs::create_dir_all(layout.slots_dir()).unwrap();
        std::fs::create_dir_all(layout.cache_dir()).unwrap();
        let slot = layout.slots_dir().join("b.img");
        File::create(&slot).unwrap().set_len(8 << 20).unwrap();
        let sizing = size_install(&layout, &update(&slot, 4 << 20), Keep::default()).unwrap();
        assert!(sizing.fits());
        assert_eq!(sizing.purged.bytes, 0);
        match sizing.preallocated {
            Some(Prealloc::Done { bytes }) => {
                assert_eq!(bytes, 4 << 20);
                let allocated = std::fs::metadata(&slot).unwrap().blocks() * 512;
                assert!(allocated >= 4 << 20, "{allocated}");
            }
            Some(Prealloc::Unsupported { .. }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(
            std::fs::metadata(&slot).unwrap().len(),
            8 << 20,
            "size unchanged"
        );
    }
}
