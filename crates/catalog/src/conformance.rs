//! The tuf-conformance "client-under-test" CLI protocol (`init`, `refresh`, `download`) as
//! library calls; `ferry tuf …` exposes them and maps `Ok` to exit code 0, `Err` to 1.
//!
//! Unlike [`crate::Catalog::refresh`], these follow the TUF client workflow to the letter on
//! persistence: `METADATA_DIR` holds the unversioned trusted files (`root.json`,
//! `timestamp.json`, `snapshot.json`, `targets.json`) and each step that succeeds is persisted
//! even when a later step fails, which is what the conformance suite checks.

use crate::client::base_url;
use crate::error::CatalogError;
use crate::store::write_atomic;
use crate::transport::CatalogTransport;
use ferry_types::Sha256;
use futures_util::StreamExt;
use std::path::{Path, PathBuf};
use tough::{Repository, RepositoryLoader, TargetName, Transport};
use url::Url;

/// `init TRUSTED_ROOT`: copies the trusted root into `metadata_dir/root.json`. No request is
/// made.
pub fn tuf_init(metadata_dir: &Path, trusted_root: &Path) -> Result<(), CatalogError> {
    let root = std::fs::read(trusted_root).map_err(CatalogError::io("read", trusted_root))?;
    write_atomic(metadata_dir, "root.json", &root)
}

/// `refresh`: updates the top-level metadata in `metadata_dir` from `metadata_url`.
pub async fn tuf_refresh(metadata_dir: &Path, metadata_url: &Url) -> Result<(), CatalogError> {
    load(metadata_dir, metadata_url, metadata_url)
        .await
        .map(|_| ())
}

/// `download`: refreshes, then stores the verified target `target_name` in `target_dir`
/// (under its name with `/` escaped as `%2F`) and returns the path. A file already there with
/// the signed length and hash is kept and nothing is downloaded.
pub async fn tuf_download(
    metadata_dir: &Path,
    metadata_url: &Url,
    target_name: &str,
    target_base_url: &Url,
    target_dir: &Path,
) -> Result<PathBuf, CatalogError> {
    let target_base_url = base_url(target_base_url)?;
    let repository = load(metadata_dir, metadata_url, &target_base_url).await?;
    let name = TargetName::new(target_name).map_err(|error| CatalogError::InvalidTargetName {
        name: target_name.to_owned(),
        reason: error.to_string(),
    })?;
    let target = repository
        .targets()
        .signed
        .find_target(&name, false)
        .map_err(|_| CatalogError::TargetUnknown {
            target: target_name.to_owned(),
        })?;
    let expected = crate::client::target_info(&name, target)?.sha256;
    let local_name = target_name.replace('%', "%25").replace('/', "%2F");
    let local_path = target_dir.join(&local_name);
    if let Ok(existing) = std::fs::read(&local_path)
        && existing.len() as u64 == target.length
        && Sha256::of(&existing) == expected
    {
        return Ok(local_path);
    }
    // The TUF spec puts the hash in front of the last path component (`a/<hash>.b`).
    let remote_path = if repository.root().signed.consistent_snapshot {
        match target_name.rsplit_once('/') {
            Some((dir, file)) => format!("{dir}/{}.{file}", expected.to_hex()),
            None => format!("{}.{target_name}", expected.to_hex()),
        }
    } else {
        target_name.to_owned()
    };
    let url = target_base_url
        .join(&remote_path)
        .map_err(|error| CatalogError::InvalidUrl {
            url: remote_path.clone(),
            reason: error.to_string(),
        })?;
    if !url.as_str().starts_with(target_base_url.as_str()) {
        return Err(CatalogError::InvalidTargetName {
            name: target_name.to_owned(),
            reason: "it escapes the target base URL".into(),
        });
    }
    let bytes = fetch_verified(&url, target_name, target.length, &expected).await?;
    write_atomic(target_dir, &local_name, &bytes)?;
    Ok(local_path)
}

async fn load(
    metadata_dir: &Path,
    metadata_url: &Url,
    targets_url: &Url,
) -> Result<Repository, CatalogError> {
    let metadata_url = base_url(metadata_url)?;
    let root_path = metadata_dir.join("root.json");
    let root = std::fs::read(&root_path).map_err(CatalogError::io("read", &root_path))?;
    RepositoryLoader::new(&root, metadata_url, targets_url.clone())
        .transport(CatalogTransport::new(ca_from_env()?.as_deref())?)
        .datastore(metadata_dir)
        .load()
        .await
        .map_err(|error| CatalogError::from_tough(error, targets_url.as_str(), None))
}

/// Fetches at most `length` bytes and checks their SHA-256.
async fn fetch_verified(
    url: &Url,
    target: &str,
    length: u64,
    expected: &Sha256,
) -> Result<Vec<u8>, CatalogError> {
    let transport = CatalogTransport::new(ca_from_env()?.as_deref())?;
    let unreachable = |detail: String| CatalogError::Unreachable {
        url: url.to_string(),
        detail,
    };
    let mut stream = transport
        .fetch(url.clone())
        .await
        .map_err(|error| unreachable(error.to_string()))?;
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| unreachable(error.to_string()))?;
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > length {
            return Err(CatalogError::TargetTooLong {
                target: target.to_owned(),
                max_length: length,
            });
        }
    }
    let actual = Sha256::of(&bytes);
    if actual != *expected || (bytes.len() as u64) != length {
        return Err(CatalogError::TargetMismatch {
            target: target.to_owned(),
            expected: expected.to_hex(),
            actual: actual.to_hex(),
        });
    }
    Ok(bytes)
}

/// The protocol has no flag for a private CA: a server whose certificate comes from one
/// (ferry's own HTTPS) is trusted through `FERRY_CA_FILE`, a PEM file, when it is set.
fn ca_from_env() -> Result<Option<Vec<u8>>, CatalogError> {
    match std::env::var_os("FERRY_CA_FILE") {
        Some(path) => {
            let path = PathBuf::from(path);
            std::fs::read(&path)
                .map(Some)
                .map_err(CatalogError::io("read", &path))
        }
        None => Ok(None),
    }
}
