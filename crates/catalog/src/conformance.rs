//! The tuf-conformance "client-under-test" CLI protocol (`init`, `refresh`, `download`) as
//! library calls; `ferry tuf …` exposes them and maps `Ok` to exit code 0, `Err` to 1.
//!
//! This is the same client workflow as [`crate::Catalog::refresh`] (the [`crate::updater`]
//! module), with the persistence the protocol asks for: `METADATA_DIR` holds only the trusted
//! metadata, byte for byte as served, under the protocol's names (`root.json`,
//! `timestamp.json`, `snapshot.json`, `targets.json`, delegated roles as `<quoted name>.json`),
//! and each document is written as soon as it is trusted, so a later failure keeps it.

use crate::client::{FetchLimits, base_url};
use crate::error::CatalogError;
use crate::store::write_atomic;
use crate::transport::CatalogTransport;
use crate::updater::{self, MetadataFiles, Updater};
use std::path::{Path, PathBuf};
use url::Url;

/// `init TRUSTED_ROOT`: copies the trusted root into `metadata_dir/root.json`. No request is
/// made and nothing is checked yet (the first refresh does).
pub fn tuf_init(metadata_dir: &Path, trusted_root: &Path) -> Result<(), CatalogError> {
    let root = std::fs::read(trusted_root).map_err(CatalogError::io("read", trusted_root))?;
    write_atomic(metadata_dir, "root.json", &root)
}

/// `refresh`: updates the top-level metadata in `metadata_dir` from `metadata_url`.
pub async fn tuf_refresh(metadata_dir: &Path, metadata_url: &Url) -> Result<(), CatalogError> {
    let transport = CatalogTransport::new(ca_from_env()?.as_deref())?;
    refreshed(metadata_dir, metadata_url, transport)
        .await
        .map(|_| ())
}

/// `download`: refreshes, then looks up each of `target_names` in order (searching delegated
/// roles) and stores it verified in `target_dir` (under its name with `/` escaped as `%2F`),
/// stopping at the first failure. A file already there with the signed length and hashes is
/// kept and not downloaded again. Returns the paths.
pub async fn tuf_download(
    metadata_dir: &Path,
    metadata_url: &Url,
    target_names: &[String],
    target_base_url: &Url,
    target_dir: &Path,
) -> Result<Vec<PathBuf>, CatalogError> {
    let target_base_url = base_url(target_base_url)?;
    let transport = CatalogTransport::new(ca_from_env()?.as_deref())?;
    let mut updater = refreshed(metadata_dir, metadata_url, transport.clone()).await?;
    let consistent = updater.trusted().root().signed.consistent_snapshot;
    let mut paths = Vec::new();
    for target_name in target_names {
        let target =
            updater
                .find_target(target_name)
                .await?
                .ok_or_else(|| CatalogError::TargetUnknown {
                    target: target_name.clone(),
                })?;
        let local_name = target_name.replace('%', "%25").replace('/', "%2F");
        let local_path = target_dir.join(&local_name);
        let cached = std::fs::read(&local_path)
            .is_ok_and(|bytes| updater::check_target(target_name, &bytes, &target).is_ok());
        if !cached {
            let bytes = updater::download_target(
                &transport,
                consistent,
                &target_base_url,
                target_name,
                &target,
            )
            .await?;
            write_atomic(target_dir, &local_name, &bytes)?;
        }
        paths.push(local_path);
    }
    Ok(paths)
}

async fn refreshed(
    metadata_dir: &Path,
    metadata_url: &Url,
    transport: CatalogTransport,
) -> Result<Updater, CatalogError> {
    let metadata_url = base_url(metadata_url)?;
    let root_path = metadata_dir.join("root.json");
    let root = std::fs::read(&root_path).map_err(CatalogError::io("read", &root_path))?;
    let files = MetadataFiles {
        dir: Some(metadata_dir.to_owned()),
        persist: true,
    };
    let mut updater = Updater::new(
        &root,
        files,
        &metadata_url,
        transport,
        FetchLimits::default(),
        chrono::Utc::now(),
    )?;
    updater.refresh().await?;
    Ok(updater)
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
