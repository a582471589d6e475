//! The catalog on the server: where the TUF repository lives in the data directory, creating
//! it, and keeping its timestamp fresh.
//!
//! ```text
//! DATA/tuf/metadata/   N.root.json, N.targets.json, N.snapshot.json, timestamp.json (served)
//! DATA/tuf/targets/    <sha256>.keys-personalization.json (served; see `keyset`)
//! DATA/keys-online/    snapshot.pk8, timestamp.pk8 (the serving process needs these)
//! DATA/keys-offline/   root.pk8, targets.pk8 (development catalogs only; `--keys DIR` elsewhere)
//! ```
//!
//! The serving process only ever reads the metadata and signs the timestamp with the online
//! key; the offline keys are needed by `ferry server init` and `ferry publish` only, and a
//! real server refuses to start while they are in its data directory ([`check_custody`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::TimeDelta;
use ferry_catalog::repo;

use crate::ServerError;

/// Served metadata, relative to the data directory.
pub const METADATA_DIR: &str = "tuf/metadata";
/// Targets the catalog itself owns (the personalization key set), served as
/// `<sha256>.<name>` beside the releases' artifacts, relative to the data directory.
pub const TARGETS_DIR: &str = "tuf/targets";
/// Online (snapshot, timestamp) keys, relative to the data directory.
pub const ONLINE_KEYS_DIR: &str = "keys-online";
/// Default offline (root, targets) keys, relative to the data directory.
pub const DEFAULT_OFFLINE_KEYS_DIR: &str = "keys-offline";

/// The timestamp is re-signed when it expires within this margin.
pub const TIMESTAMP_REFRESH_MARGIN: TimeDelta = TimeDelta::hours(6);
/// How often the server checks whether the timestamp needs re-signing.
pub const TIMESTAMP_CHECK_INTERVAL: Duration = Duration::from_secs(60);

/// Paths of one catalog.
#[derive(Debug, Clone)]
pub struct CatalogPaths {
    /// Offline keys (root, targets).
    pub offline_keys: PathBuf,
    /// Online keys (snapshot, timestamp).
    pub online_keys: PathBuf,
    /// Served metadata.
    pub metadata: PathBuf,
    /// Served targets that are not release artifacts (`<sha256>.<name>`).
    pub targets: PathBuf,
}

impl CatalogPaths {
    /// The paths under `data_dir`, with the offline keys in `offline_keys` or
    /// `DATA/keys-offline`.
    pub fn new(data_dir: &Path, offline_keys: Option<&Path>) -> CatalogPaths {
        CatalogPaths {
            offline_keys: offline_keys
                .map(Path::to_owned)
                .unwrap_or_else(|| data_dir.join(DEFAULT_OFFLINE_KEYS_DIR)),
            online_keys: data_dir.join(ONLINE_KEYS_DIR),
            metadata: data_dir.join(METADATA_DIR),
            targets: data_dir.join(TARGETS_DIR),
        }
    }

    /// Whether the catalog exists (its metadata directory holds a root).
    pub fn is_initialised(&self) -> bool {
        repo::latest_root_path(&self.metadata).is_ok()
    }

    /// The newest `N.root.json`: what devices pin at `ferry device init --root`.
    pub fn latest_root(&self) -> Result<PathBuf, ServerError> {
        Ok(repo::latest_root_path(&self.metadata)?)
    }
}

/// Creates the catalog: keys, the first metadata and the first personalization key set
/// (signed in as a target). Fails if it exists.
pub async fn init(paths: &CatalogPaths) -> Result<repo::RepoVersions, ServerError> {
    let versions = repo::init(
        &paths.offline_keys,
        &paths.online_keys,
        &paths.metadata,
        &repo::RepoSettings::default(),
    )
    .await?;
    let (_, published) = crate::keyset::ensure_published(paths).await?;
    let (_, director) = crate::director::ensure_published(paths).await?;
    Ok(director.or(published).unwrap_or(versions))
}

/// Where the catalog's offline (root, targets) keys may be when a server starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCustody {
    /// A real server: the catalog must exist (made by `ferry server init --keys DIR`) and no
    /// root or targets key may sit in the data directory it serves from, so whoever takes the
    /// server cannot sign a release or rotate the root.
    Offline,
    /// `ferry demo`, `ferry bench` and `ferry server --dev-keys`: the catalog is made on first
    /// start with its offline keys in `DATA/keys-offline` (convenient, and unsafe to serve a
    /// fleet from).
    DevInDataDir,
}

/// The offline key files a catalog keeps (`repo::init` names them by role).
const OFFLINE_KEY_FILES: [&str; 2] = ["root.pk8", "targets.pk8"];

/// The offline key files found in the data directory's default offline keys directory.
pub fn offline_keys_in_data_dir(data_dir: &Path) -> Vec<PathBuf> {
    OFFLINE_KEY_FILES
        .iter()
        .map(|file| data_dir.join(DEFAULT_OFFLINE_KEYS_DIR).join(file))
        .filter(|path| path.exists())
        .collect()
}

/// Whether `keys` is inside `data_dir` (compared after resolving both, so `DATA/../DATA/k`
/// counts): offline keys there would be on the serving host.
pub fn is_inside(keys: &Path, data_dir: &Path) -> bool {
    let resolve = |path: &Path| {
        let mut existing = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
        let mut rest = Vec::new();
        // The keys directory may not exist yet: resolve its nearest existing ancestor.
        while !existing.exists() {
            match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_owned());
                    existing = parent.to_owned();
                }
                _ => break,
            }
        }
        let mut resolved = existing.canonicalize().unwrap_or(existing);
        resolved.extend(rest.iter().rev());
        resolved
    };
    resolve(keys).starts_with(resolve(data_dir))
}

/// Checks (and under [`KeyCustody::DevInDataDir`] makes) the catalog a server is about to
/// serve: `CATALOG_MISSING` when there is none, `OFFLINE_KEYS_ON_SERVER` when the root or
/// targets key is in the data directory. Returns whether it made the catalog.
pub async fn check_custody(data_dir: &Path, custody: KeyCustody) -> Result<bool, ServerError> {
    let paths = CatalogPaths::new(data_dir, None);
    match custody {
        KeyCustody::DevInDataDir => {
            if paths.is_initialised() {
                return Ok(false);
            }
            init(&paths).await?;
            tracing::warn!(
                metadata = %paths.metadata.display(),
                offline_keys = %paths.offline_keys.display(),
                "made a development catalog with its offline root and targets keys in the data \
                 directory: never serve a fleet from it (`ferry server init --keys DIR` keeps them offline)"
            );
            Ok(true)
        }
        KeyCustody::Offline => {
            if !paths.is_initialised() {
                return Err(ServerError::CatalogMissing {
                    metadata: paths.metadata,
                });
            }
            let found = offline_keys_in_data_dir(data_dir);
            if !found.is_empty() {
                return Err(ServerError::OfflineKeysOnServer { files: found });
            }
            Ok(false)
        }
    }
}

/// The catalog `ferry publish` and the key commands sign into: it must exist already
/// (`ferry server init`, or a development server's first start); they never make one.
pub fn require_initialised(paths: &CatalogPaths) -> Result<(), ServerError> {
    if paths.is_initialised() {
        Ok(())
    } else {
        Err(ServerError::CatalogMissing {
            metadata: paths.metadata.clone(),
        })
    }
}

/// Re-signs the timestamp if it expires within [`TIMESTAMP_REFRESH_MARGIN`]. Needs only the
/// online timestamp key. Returns the new timestamp version when it re-signed.
pub async fn refresh_timestamp_if_due(data_dir: &Path) -> Result<Option<u64>, ServerError> {
    let paths = CatalogPaths::new(data_dir, None);
    if !paths.is_initialised() || !repo::needs_refresh(&paths.metadata, TIMESTAMP_REFRESH_MARGIN) {
        return Ok(None);
    }
    let version = repo::refresh_timestamp(
        &paths.online_keys,
        &paths.metadata,
        repo::Expiries::default().timestamp,
    )
    .await?;
    Ok(Some(version))
}

/// Checks the timestamp every [`TIMESTAMP_CHECK_INTERVAL`] and re-signs it before it expires,
/// forever (the server spawns this as a task); only while `leader` leads, so of several
/// replicas one signs. With a shared store every replica first takes the catalog the others
/// signed, and the leader gives back what it signed ([`crate::catalog_store`]).
pub async fn keep_timestamp_fresh(data: crate::DataDir, leader: crate::leader::Leadership) {
    let mut ticker = tokio::time::interval(TIMESTAMP_CHECK_INTERVAL);
    loop {
        ticker.tick().await;
        // Every replica takes what the others signed; only the leader signs.
        if let Err(error) = crate::catalog_store::pull(&data).await {
            tracing::error!(%error, "could not read the catalog from the shared store");
            continue;
        }
        // A key rotated on another replica: its private key, sealed, from the store (the
        // signers take it up within a second).
        if let Err(error) = crate::key_share::fetch_missing(&data).await {
            tracing::error!(code = ferry_types::Diagnose::code(&error), %error, "could not take a rotated online key from the shared store");
        }
        if !leader.is_leader() {
            continue;
        }
        // Under the catalog lock, so a publish or key change between its pull and push is
        // never replaced by a timestamp signed on the catalog before it.
        match crate::catalog_store::change(&data, refresh_timestamp_if_due(&data.path)).await {
            Ok(Some(version)) => tracing::info!(version, "re-signed the catalog timestamp"),
            Ok(None) => {}
            Err(error) => tracing::error!(%error, "could not re-sign the catalog timestamp"),
        }
    }
}

/// The file name `<sha256>.<name>` of a target URL, split: `(sha256 hex, name)`. `None` when it
/// is not of that form.
pub fn split_target_file(file: &str) -> Option<(&str, &str)> {
    let (digest, name) = file.split_once('.')?;
    let valid_digest = digest.len() == 64
        && digest
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    (valid_digest && is_flat_name(name)).then_some((digest, name))
}

/// A metadata or target file name: letters, digits, `.`, `-`, `_`, not starting with `.`.
pub fn is_flat_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Offline keys anywhere under the data directory count as on the serving host, however
    /// the path is spelled; a sibling directory does not.
    #[test]
    fn keys_inside_the_data_directory_are_told_apart_from_keys_beside_it() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("server");
        std::fs::create_dir_all(&data).unwrap();
        assert!(is_inside(&data.join("keys"), &data));
        assert!(is_inside(&data.join("a/b/keys"), &data));
        assert!(is_inside(&data.join("../server/keys"), &data));
        assert!(!is_inside(&tmp.path().join("server-keys"), &data));
        assert!(!is_inside(&tmp.path().join("offline"), &data));
        assert!(offline_keys_in_data_dir(&data).is_empty());
        std::fs::create_dir_all(data.join(DEFAULT_OFFLINE_KEYS_DIR)).unwrap();
        std::fs::write(
            data.join(DEFAULT_OFFLINE_KEYS_DIR).join("targets.pk8"),
            b"k",
        )
        .unwrap();
        assert_eq!(offline_keys_in_data_dir(&data).len(), 1);
    }

    #[test]
    fn target_files_split_into_digest_and_name() {
        let digest = "a".repeat(64);
        let file = format!("{digest}.vm-1.0.payload.zst");
        assert_eq!(
            split_target_file(&file),
            Some((digest.as_str(), "vm-1.0.payload.zst"))
        );
        assert_eq!(split_target_file("abc.vm"), None);
        assert_eq!(split_target_file(&format!("{}.x", "A".repeat(64))), None);
        assert_eq!(split_target_file(&format!("{digest}.../x")), None);
        assert!(!is_flat_name(".hidden"));
        assert!(!is_flat_name("a/b"));
    }
}
