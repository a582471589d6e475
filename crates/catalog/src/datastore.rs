//! The device's datastore: generations of trusted metadata, one directory each, switched with
//! an atomic symlink swap, so a refresh replaces the trusted metadata whole or not at all.
//!
//! ```text
//! DATASTORE/current -> gen-000007
//! DATASTORE/gen-000007/root.json timestamp.json snapshot.json targets.json bins-0a.json …
//!                      latest_known_time
//! ```
//!
//! Each `.json` file holds a role's metadata byte for byte as the server sent it (delegated
//! role names percent-encoded), so the next refresh can reuse it without fetching it again.
//! `latest_known_time` is the latest time the device has good reason to believe it has
//! been: a refresh checks expiry against the later of its clock and this, so a clock set
//! back cannot make expired metadata look current (see `client.rs` and NOTES.md for how it
//! is raised).

use crate::error::CatalogError;
use crate::store::sync_dir;
use crate::trusted::TrustedSet;
use crate::updater::metadata_file_name;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

const CURRENT_LINK: &str = "current";
const GENERATION_PREFIX: &str = "gen-";
/// The file of the latest known time, in each generation.
pub(crate) const LATEST_KNOWN_TIME: &str = "latest_known_time";

/// Writes every trusted document and the latest known time into the staging generation
/// `dir` (plain writes: [`commit_generation`] makes them durable before the swap).
pub(crate) fn save_trusted(
    dir: &Path,
    trusted: &TrustedSet,
    latest_known: DateTime<Utc>,
) -> Result<(), CatalogError> {
    std::fs::create_dir_all(dir).map_err(CatalogError::io("create", dir))?;
    let write = |file_name: &str, bytes: &[u8]| {
        let path = dir.join(file_name);
        std::fs::write(&path, bytes).map_err(CatalogError::io("write", &path))
    };
    write("root.json", &trusted.root().bytes)?;
    if let Some(timestamp) = trusted.timestamp() {
        write("timestamp.json", &timestamp.bytes)?;
    }
    if let Some(snapshot) = trusted.snapshot() {
        write("snapshot.json", &snapshot.bytes)?;
    }
    for (role, targets) in trusted.all_targets() {
        write(&metadata_file_name(role), &targets.bytes)?;
    }
    write(LATEST_KNOWN_TIME, latest_known.to_rfc3339().as_bytes())
}

/// The latest known time recorded in the generation `dir`: `Ok(None)` when it has none,
/// `Err(reason)` when the file is there but does not hold a time (damaged).
pub(crate) fn latest_known_time(dir: &Path) -> Result<Option<DateTime<Utc>>, String> {
    let bytes = match std::fs::read(dir.join(LATEST_KNOWN_TIME)) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error.to_string()),
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| "it is not UTF-8".to_owned())?;
    DateTime::parse_from_rfc3339(text.trim())
        .map(|time| Some(time.with_timezone(&Utc)))
        .map_err(|error| format!("{text:?} is not an RFC 3339 time: {error}"))
}

pub(crate) fn generation_name(generation: u64) -> String {
    format!("{GENERATION_PREFIX}{generation:06}")
}

/// The generation `current` points to, if any.
pub(crate) fn current_generation(datastore_dir: &Path) -> Option<u64> {
    let target = std::fs::read_link(datastore_dir.join(CURRENT_LINK)).ok()?;
    target
        .to_str()?
        .strip_prefix(GENERATION_PREFIX)?
        .parse()
        .ok()
}

/// The directory of the trusted metadata, if a refresh ever succeeded.
pub fn trusted_metadata_dir(datastore_dir: &Path) -> Option<PathBuf> {
    current_generation(datastore_dir)
        .map(|generation| datastore_dir.join(generation_name(generation)))
}

/// Holds the datastore for one refresh: two refreshes at once in one process (the daemon's
/// scan and a `ferry defer` it serves) would stage the same generation and remove each
/// other's directory. Other processes are kept out by the device lock.
pub(crate) async fn lock_for_refresh(datastore_dir: &Path) -> tokio::sync::OwnedMutexGuard<()> {
    type Locks = Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>;
    static LOCKS: OnceLock<Locks> = OnceLock::new();
    let key = std::path::absolute(datastore_dir).unwrap_or_else(|_| datastore_dir.to_owned());
    let lock = LOCKS
        .get_or_init(Locks::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .entry(key)
        .or_default()
        .clone();
    lock.lock_owned().await
}

/// Removes generation directories other than `current` and the one before it (left by an
/// interrupted refresh, or older). The one before is kept so that a reader that resolved
/// `current` just before a refresh switched it can still read its files.
pub(crate) fn remove_stale_generations(datastore_dir: &Path, current: Option<u64>) {
    let Ok(entries) = std::fs::read_dir(datastore_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str() else {
            continue;
        };
        let Some(generation) = name
            .strip_prefix(GENERATION_PREFIX)
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let kept =
            current.is_some_and(|current| generation == current || generation + 1 == current);
        if !kept {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Makes `staging_dir` durable and points `current` at it, then drops the generations before
/// the previous one.
pub(crate) fn commit_generation(
    datastore_dir: &Path,
    staging_dir: &Path,
    generation: u64,
) -> Result<(), CatalogError> {
    let entries = std::fs::read_dir(staging_dir).map_err(CatalogError::io("read", staging_dir))?;
    for entry in entries.flatten() {
        let path = entry.path();
        std::fs::File::open(&path)
            .and_then(|file| file.sync_all())
            .map_err(CatalogError::io("sync", &path))?;
    }
    sync_dir(staging_dir)?;
    let temp_link = datastore_dir.join(format!("{CURRENT_LINK}.tmp"));
    let _ = std::fs::remove_file(&temp_link);
    make_symlink(&generation_name(generation), &temp_link)?;
    let link = datastore_dir.join(CURRENT_LINK);
    ferry_durable::rename(&temp_link, &link).map_err(CatalogError::io("rename", &temp_link))?;
    remove_stale_generations(datastore_dir, Some(generation));
    Ok(())
}

#[cfg(unix)]
fn make_symlink(target: &str, link: &Path) -> Result<(), CatalogError> {
    std::os::unix::fs::symlink(target, link).map_err(CatalogError::io("symlink", link))
}

#[cfg(not(unix))]
fn make_symlink(_target: &str, link: &Path) -> Result<(), CatalogError> {
    Err(CatalogError::Io {
        operation: "symlink",
        path: link.to_owned(),
        source: std::io::Error::other("the catalog datastore needs symlinks (Unix)"),
    })
}
