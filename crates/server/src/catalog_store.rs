//! The catalog (TUF metadata and the targets it owns) in a shared store, so every replica
//! serves what any of them signed.
//!
//! The catalog is written where it always was (`DATA/tuf/`, by `ferry-catalog`); with a
//! shared store ([`Store::is_shared`], S3) each change is [`push`]ed to the store under the
//! same relative keys (`tuf/metadata/…`, `tuf/targets/…`) and the server answers
//! `/tuf/metadata/` and the catalog's own targets from there. Before a process signs on top
//! of the catalog (publish, the timestamp refresh) it [`pull`]s the store's copy, so it signs
//! on the newest. Versioned files (`N.root.json`, `<sha256>.name`) never change and are
//! copied once; `timestamp.json` is copied when the other side's is of a lower version (so a
//! key rotation signed by another process on this data directory is pushed by the running
//! server), last on push, so a reader never finds a timestamp naming a snapshot that is not
//! there yet.
//!
//! Every process that signs on a shared store (publish, the key commands, the leader's
//! timestamp re-signing) does pull, sign, push through [`change`], under one lock in the
//! shared database: without it, a timestamp re-signed between a publish's pull and push
//! replaced the publish's (the same version number, so the later push was skipped) and the
//! release never reached devices.

use std::collections::HashSet;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::store::Store;
use crate::{DataDir, ServerError, tuf};

/// The catalog's two folders: (local folder under the data directory, store prefix).
const FOLDERS: [&str; 2] = [tuf::METADATA_DIR, tuf::TARGETS_DIR];

/// The store key of a served catalog file in `folder` ([`tuf::METADATA_DIR`] or
/// [`tuf::TARGETS_DIR`]).
pub fn key(folder: &str, file: &str) -> String {
    format!("{folder}/{file}")
}

/// Whether a catalog file is rewritten in place (`timestamp.json`), so the newer version
/// wins rather than the first copy.
fn is_mutable(file: &str) -> bool {
    let first = file.split('.').next().unwrap_or_default();
    let versioned = !first.is_empty() && first.bytes().all(|b| b.is_ascii_digit());
    let by_digest = first.len() == 64 && first.bytes().all(|b| b.is_ascii_hexdigit());
    // `N.role.json` (versioned metadata) and `<sha256>.name` (targets) are immutable.
    !(versioned || by_digest)
}

/// The `signed.version` of a metadata file (0 when it has none, so any real one is newer).
fn version(bytes: &[u8]) -> u64 {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| {
            v.pointer("/signed/version")
                .and_then(serde_json::Value::as_u64)
        })
        .unwrap_or(0)
}

/// The `leases` row that serialises changes to a shared catalog.
const CHANGE_JOB: &str = "catalog-change";

/// How long a change may hold the lock: a holder that died frees it after this.
pub const CHANGE_LOCK_TTL: Duration = Duration::from_secs(120);

/// How long a change waits for the lock before it gives up ([`ServerError::CatalogBusy`]).
pub const CHANGE_LOCK_WAIT: Duration = Duration::from_secs(300);

/// Runs `sign` (a change to the local catalog in `DATA/tuf/`) on top of the newest shared
/// catalog and gives the result back: with a shared store, under the database's catalog
/// lock, [`pull`], `sign`, [`push`]; with a local store, `sign` alone. The lock is given up
/// whatever `sign` returns.
pub async fn change<T>(
    data: &DataDir,
    sign: impl Future<Output = Result<T, ServerError>>,
) -> Result<T, ServerError> {
    if !data.store.is_shared() {
        return sign.await;
    }
    let holder = lock(data).await?;
    let result = async {
        pull(data).await?;
        let signed = sign.await?;
        push(data).await?;
        Ok(signed)
    }
    .await;
    if let Err(error) = unlock(data, &holder).await {
        // It expires after CHANGE_LOCK_TTL: a later change waits at most that long.
        tracing::warn!(%error, "could not give up the catalog lock");
    }
    result
}

/// Takes the catalog lock (a `leases` row, free or expired), waiting for it with a jittered
/// poll; the holder id to give it up with.
async fn lock(data: &DataDir) -> Result<String, ServerError> {
    let holder = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
    let ttl_ms = i64::try_from(CHANGE_LOCK_TTL.as_millis()).unwrap_or(i64::MAX);
    let started = Instant::now();
    loop {
        let now = chrono::Utc::now().timestamp_millis();
        // One statement: of processes racing for a free or expired lock, one wins.
        let won: Option<String> = sqlx::query_scalar(
            "INSERT INTO leases (job, holder, expires_ms) VALUES ($1, $2, $3)
             ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms
             WHERE leases.expires_ms < $4
             RETURNING holder",
        )
        .bind(CHANGE_JOB)
        .bind(&holder)
        .bind(now.saturating_add(ttl_ms))
        .bind(now)
        .fetch_optional(data.db.pool())
        .await?;
        if won.is_some() {
            return Ok(holder);
        }
        if started.elapsed() >= CHANGE_LOCK_WAIT {
            let other: Option<String> =
                sqlx::query_scalar("SELECT holder FROM leases WHERE job = $1")
                    .bind(CHANGE_JOB)
                    .fetch_optional(data.db.pool())
                    .await?;
            return Err(ServerError::CatalogBusy {
                holder: other.unwrap_or_else(|| "another process".into()),
                waited_secs: started.elapsed().as_secs(),
            });
        }
        // Waiters poll at random moments, so they do not all ask in step.
        tokio::time::sleep(Duration::from_millis(rand::random_range(20..120))).await;
    }
}

/// Gives the catalog lock up (only if `holder` still holds it).
async fn unlock(data: &DataDir, holder: &str) -> Result<(), ServerError> {
    sqlx::query("DELETE FROM leases WHERE job = $1 AND holder = $2")
        .bind(CHANGE_JOB)
        .bind(holder)
        .execute(data.db.pool())
        .await?;
    Ok(())
}

/// The store's copy of a mutable file, if it has one.
async fn stored(store: &Store, key: &str) -> Result<Option<bytes::Bytes>, ServerError> {
    match store.get_bytes(key).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(ServerError::Store(object_store::Error::NotFound { .. })) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Copies the local catalog's new files to a shared store (nothing for a local store).
/// Returns how many files it copied.
pub async fn push(data: &DataDir) -> Result<usize, ServerError> {
    if !data.store.is_shared() {
        return Ok(0);
    }
    let mut copied = 0;
    let mut mutable = Vec::new();
    for folder in FOLDERS {
        let present: HashSet<String> = data.store.list(folder).await?.into_iter().collect();
        for file in local_files(&data.path.join(folder))? {
            let key = key(folder, &file);
            if is_mutable(&file) {
                mutable.push((folder, file));
            } else if !present.contains(&key) {
                let bytes = read(&data.path.join(folder).join(&file)).await?;
                data.store.put_bytes(&key, bytes).await?;
                copied += 1;
            }
        }
    }
    // Last: what points at the rest.
    for (folder, file) in mutable {
        let bytes = read(&data.path.join(folder).join(&file)).await?;
        let key = key(folder, &file);
        let theirs = stored(&data.store, &key).await?;
        if theirs.is_none_or(|theirs| version(&theirs) < version(&bytes)) {
            data.store.put_bytes(&key, bytes).await?;
            copied += 1;
        }
    }
    Ok(copied)
}

/// Copies a shared store's catalog files that the local catalog lacks (and its
/// `timestamp.json`) into `DATA/tuf/` (nothing for a local store). Returns how many files it
/// wrote.
pub async fn pull(data: &DataDir) -> Result<usize, ServerError> {
    if !data.store.is_shared() {
        return Ok(0);
    }
    let mut written = 0;
    let mut mutable = Vec::new();
    for folder in FOLDERS {
        let dir = data.path.join(folder);
        let local: HashSet<String> = local_files(&dir)?.into_iter().collect();
        for key in data.store.list(folder).await? {
            let Some(file) = key.strip_prefix(folder).map(|f| f.trim_start_matches('/')) else {
                continue;
            };
            if !tuf::is_flat_name(file) {
                continue;
            }
            if is_mutable(file) {
                mutable.push((folder, file.to_owned()));
            } else if !local.contains(file) {
                write(&dir.join(file), data.store.get_bytes(&key).await?).await?;
                written += 1;
            }
        }
    }
    for (folder, file) in mutable {
        let path = data.path.join(folder).join(&file);
        let Some(theirs) = stored(&data.store, &key(folder, &file)).await? else {
            continue;
        };
        let ours = match tokio::fs::read(&path).await {
            Ok(bytes) => version(&bytes),
            Err(_) => 0,
        };
        if ours < version(&theirs) {
            write(&path, theirs).await?;
            written += 1;
        }
    }
    Ok(written)
}

/// The file names in a catalog folder (none when it does not exist yet).
fn local_files(dir: &Path) -> Result<Vec<String>, ServerError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ServerError::Io {
                op: "listing the catalog",
                source,
            });
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ServerError::Io {
            op: "listing the catalog",
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_file() && tuf::is_flat_name(&name) && !ferry_durable::is_temp_name(&name)
        {
            files.push(name);
        }
    }
    Ok(files)
}

async fn read(path: &Path) -> Result<Vec<u8>, ServerError> {
    tokio::fs::read(path)
        .await
        .map_err(|source| ServerError::Io {
            op: "reading the catalog",
            source,
        })
}

/// Writes a catalog file, crash-safe.
async fn write(path: &Path, bytes: bytes::Bytes) -> Result<(), ServerError> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        ferry_durable::write_atomic(&path, &bytes)
    })
    .await
    .map_err(|e| ServerError::Io {
        op: "writing the catalog",
        source: std::io::Error::other(e),
    })?
    .map_err(|source| ServerError::Io {
        op: "writing the catalog",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_files_are_copied_once_and_the_timestamp_every_time() {
        assert!(!is_mutable("3.root.json"));
        assert!(!is_mutable("12.snapshot.json"));
        assert!(!is_mutable(&format!("{}.keys.json", "ab".repeat(32))));
        assert!(is_mutable("timestamp.json"));
        assert!(is_mutable("root.json"));
        assert!(is_mutable("abc.json"));
        assert_eq!(version(br#"{"signed":{"version":7}}"#), 7);
        assert_eq!(version(b"not json"), 0);
    }
}
