//! The device side: refresh the catalog with tough from a pinned root, keep the last good
//! metadata, read small targets.
//!
//! The datastore keeps one generation of trusted metadata per directory and switches between
//! them with an atomic symlink swap, so a refresh either replaces the trusted metadata whole or
//! leaves it as it was:
//!
//! ```text
//! DATASTORE/current -> gen-000007
//! DATASTORE/gen-000007/root.json timestamp.json snapshot.json targets.json latest_known_time.json
//! ```

use crate::error::CatalogError;
use crate::release::ReleaseInfo;
use crate::store::sync_dir;
use crate::transport::CatalogTransport;
use chrono::{DateTime, Utc};
use ferry_types::Sha256;
use std::path::{Path, PathBuf};
use tough::{IntoVec, Repository, RepositoryLoader, TargetName};
use url::Url;

const CURRENT_LINK: &str = "current";
const GENERATION_PREFIX: &str = "gen-";
/// The unversioned files tough reads back from its datastore.
const TRUSTED_FILES: [&str; 5] = [
    "root.json",
    "timestamp.json",
    "snapshot.json",
    "targets.json",
    "latest_known_time.json",
];

/// Size limits for metadata responses (an endless data attack is cut off at these).
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    /// Each `N.root.json`. Default 512 KiB.
    pub max_root_size: u64,
    /// `timestamp.json`. Default 64 KiB.
    pub max_timestamp_size: u64,
    /// Snapshot, when the timestamp gives no length. Default 4 MiB.
    pub max_snapshot_size: u64,
    /// Targets, when the snapshot gives no length. Default 32 MiB.
    pub max_targets_size: u64,
    /// Root versions followed in one refresh. Default 64.
    pub max_root_updates: u64,
}

impl Default for FetchLimits {
    fn default() -> Self {
        Self {
            max_root_size: 512 * 1024,
            max_timestamp_size: 64 * 1024,
            max_snapshot_size: 4 * 1024 * 1024,
            max_targets_size: 32 * 1024 * 1024,
            max_root_updates: 64,
        }
    }
}

impl From<FetchLimits> for tough::Limits {
    fn from(limits: FetchLimits) -> Self {
        tough::Limits {
            max_root_size: limits.max_root_size,
            max_targets_size: limits.max_targets_size,
            max_timestamp_size: limits.max_timestamp_size,
            max_snapshot_size: limits.max_snapshot_size,
            max_root_updates: limits.max_root_updates,
        }
    }
}

/// Settings of a refresh.
#[derive(Debug, Clone, Default)]
pub struct RefreshOptions {
    /// Size limits of metadata responses.
    pub limits: FetchLimits,
    /// A PEM CA certificate to trust instead of the platform's roots (the device's CA pin).
    pub ca_pem: Option<Vec<u8>>,
}

/// A target listed in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetInfo {
    /// The target name.
    pub name: String,
    /// Signed length in bytes.
    pub length: u64,
    /// Signed SHA-256.
    pub sha256: Sha256,
}

/// A release target: where to get it and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// The target (name, length, digest).
    pub target: TargetInfo,
    /// Its signed release metadata.
    pub info: ReleaseInfo,
}

/// Versions of the trusted metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataVersions {
    /// Root version.
    pub root: u64,
    /// Timestamp version.
    pub timestamp: u64,
    /// Snapshot version.
    pub snapshot: u64,
    /// Top-level targets version.
    pub targets: u64,
}

/// A verified view of the catalog, fresh from a successful refresh.
#[derive(Debug)]
pub struct Catalog {
    repository: Repository,
    targets_base_url: Url,
    releases: Vec<Release>,
    rejected: Vec<CatalogError>,
}

impl Catalog {
    /// Refreshes the metadata (root chain, timestamp, snapshot, targets) with default limits.
    /// See [`Catalog::refresh_with`].
    pub async fn refresh(
        datastore_dir: &Path,
        pinned_root: &[u8],
        metadata_base_url: &Url,
        targets_base_url: &Url,
    ) -> Result<Self, CatalogError> {
        Self::refresh_with(
            datastore_dir,
            pinned_root,
            metadata_base_url,
            targets_base_url,
            &RefreshOptions::default(),
        )
        .await
    }

    /// Refreshes the metadata. Trust starts at the newer of `pinned_root` and the root kept in
    /// the datastore. On success the datastore holds the new metadata; on any failure it still
    /// holds the last good metadata, untouched.
    pub async fn refresh_with(
        datastore_dir: &Path,
        pinned_root: &[u8],
        metadata_base_url: &Url,
        targets_base_url: &Url,
        options: &RefreshOptions,
    ) -> Result<Self, CatalogError> {
        let metadata_base_url = base_url(metadata_base_url)?;
        let targets_base_url = base_url(targets_base_url)?;
        std::fs::create_dir_all(datastore_dir)
            .map_err(CatalogError::io("create", datastore_dir))?;
        let current = current_generation(datastore_dir);
        remove_stale_generations(datastore_dir, current);
        let next_generation = current.map_or(1, |generation| generation + 1);
        let staging_dir = datastore_dir.join(generation_name(next_generation));
        std::fs::create_dir_all(&staging_dir).map_err(CatalogError::io("create", &staging_dir))?;
        let mut trusted_root = pinned_root.to_vec();
        if let Some(generation) = current {
            let current_dir = datastore_dir.join(generation_name(generation));
            for file_name in TRUSTED_FILES {
                let from = current_dir.join(file_name);
                if from.exists() {
                    std::fs::copy(&from, staging_dir.join(file_name))
                        .map_err(CatalogError::io("copy", &from))?;
                }
            }
            if let Ok(stored_root) = std::fs::read(current_dir.join("root.json"))
                && root_version(&stored_root) > root_version(pinned_root)
            {
                trusted_root = stored_root;
            }
        }
        let transport = CatalogTransport::new(options.ca_pem.as_deref())?.with_raw_metadata(
            &metadata_base_url,
            current.map(|generation| datastore_dir.join(generation_name(generation))),
            staging_dir.clone(),
        );
        let loaded =
            RepositoryLoader::new(&trusted_root, metadata_base_url, targets_base_url.clone())
                .transport(transport)
                .limits(options.limits.into())
                .datastore(staging_dir.clone())
                .load()
                .await;
        let repository = match loaded {
            Ok(repository) => repository,
            Err(error) => {
                let _ = std::fs::remove_dir_all(&staging_dir);
                return Err(CatalogError::from_tough(
                    error,
                    targets_base_url.as_str(),
                    None,
                ));
            }
        };
        if let Err(error) = commit_generation(datastore_dir, &staging_dir, next_generation, current)
        {
            let _ = std::fs::remove_dir_all(&staging_dir);
            return Err(error);
        }
        Ok(Self::from_repository(repository, targets_base_url))
    }

    pub(crate) fn from_repository(repository: Repository, targets_base_url: Url) -> Self {
        let mut releases = Vec::new();
        let mut rejected = Vec::new();
        for (name, target) in repository.all_targets() {
            if target.custom.is_empty() {
                continue;
            }
            let custom = serde_json::Value::Object(target.custom.clone().into_iter().collect());
            let info = match ReleaseInfo::from_custom(name.raw(), &custom) {
                Ok(info) => info,
                Err(error) => {
                    rejected.push(error);
                    continue;
                }
            };
            match target_info(name, target) {
                Ok(target) => releases.push(Release { target, info }),
                Err(error) => rejected.push(error),
            }
        }
        releases.sort_by(|a, b| a.target.name.cmp(&b.target.name));
        Self {
            repository,
            targets_base_url,
            releases,
            rejected,
        }
    }

    /// Every release target whose custom metadata is a valid [`ReleaseInfo`].
    pub fn releases(&self) -> &[Release] {
        &self.releases
    }

    /// Targets with custom metadata that is not a valid [`ReleaseInfo`] (left out of
    /// [`Catalog::releases`]).
    pub fn rejected_releases(&self) -> &[CatalogError] {
        &self.rejected
    }

    /// The versions of the trusted metadata.
    pub fn versions(&self) -> MetadataVersions {
        MetadataVersions {
            root: self.repository.root().signed.version.get(),
            timestamp: self.repository.timestamp().signed.version.get(),
            snapshot: self.repository.snapshot().signed.version.get(),
            targets: self.repository.targets().signed.version.get(),
        }
    }

    /// When the first of the trusted roles expires.
    pub fn expires(&self) -> DateTime<Utc> {
        let earliest = [
            self.repository.root().signed.expires,
            self.repository.timestamp().signed.expires,
            self.repository.snapshot().signed.expires,
            self.repository.targets().signed.expires,
        ]
        .into_iter()
        .min()
        .unwrap_or(jiff::Timestamp::MIN);
        DateTime::from_timestamp(earliest.as_second(), 0).unwrap_or_default()
    }

    /// The target named `name`, if the catalog lists it.
    pub fn target(&self, name: &str) -> Option<TargetInfo> {
        let target_name = TargetName::new(name).ok()?;
        let target = self
            .repository
            .targets()
            .signed
            .find_target(&target_name, false)
            .ok()?;
        target_info(&target_name, target).ok()
    }

    /// Downloads a target into memory, refusing bytes past its signed length and checking its
    /// SHA-256. Meant for small targets (a payload manifest, a key file).
    pub async fn read_target(&self, name: &str) -> Result<Vec<u8>, CatalogError> {
        let target_name =
            TargetName::new(name).map_err(|error| CatalogError::InvalidTargetName {
                name: name.to_owned(),
                reason: error.to_string(),
            })?;
        let base = self.targets_base_url.as_str();
        let stream = self
            .repository
            .read_target(&target_name)
            .await
            .map_err(|error| CatalogError::from_tough(error, base, Some(name)))?
            .ok_or_else(|| CatalogError::TargetUnknown {
                target: name.to_owned(),
            })?;
        stream
            .into_vec()
            .await
            .map_err(|error| CatalogError::from_tough(error, base, Some(name)))
    }

    /// Downloads a target into `dir/<name>` (atomically), verified like [`Catalog::read_target`].
    pub async fn save_target(&self, name: &str, dir: &Path) -> Result<PathBuf, CatalogError> {
        let target_name =
            TargetName::new(name).map_err(|error| CatalogError::InvalidTargetName {
                name: name.to_owned(),
                reason: error.to_string(),
            })?;
        if self
            .repository
            .targets()
            .signed
            .find_target(&target_name, false)
            .is_err()
        {
            return Err(CatalogError::TargetUnknown {
                target: name.to_owned(),
            });
        }
        std::fs::create_dir_all(dir).map_err(CatalogError::io("create", dir))?;
        self.repository
            .save_target(&target_name, dir, tough::Prefix::None)
            .await
            .map_err(|error| {
                CatalogError::from_tough(error, self.targets_base_url.as_str(), Some(name))
            })?;
        Ok(dir.join(target_name.resolved()))
    }
}

/// A verified target's name, length and SHA-256 (a malformed digest is `Malformed`).
pub(crate) fn target_info(
    name: &TargetName,
    target: &tough::schema::Target,
) -> Result<TargetInfo, CatalogError> {
    let digest: [u8; 32] =
        target
            .hashes
            .sha256
            .as_ref()
            .try_into()
            .map_err(|_| CatalogError::Malformed {
                role: "targets".into(),
                detail: format!("the SHA-256 of {} is not 32 bytes", name.raw()),
            })?;
    Ok(TargetInfo {
        name: name.raw().to_owned(),
        length: target.length,
        sha256: Sha256(digest),
    })
}

/// A base URL with a trailing slash, so joins stay under it.
pub(crate) fn base_url(url: &Url) -> Result<Url, CatalogError> {
    if url.as_str().ends_with('/') {
        return Ok(url.clone());
    }
    let with_slash = format!("{url}/");
    Url::parse(&with_slash).map_err(|error| CatalogError::InvalidUrl {
        url: with_slash,
        reason: error.to_string(),
    })
}

/// `signed.version` of a root document, 0 when unreadable.
pub(crate) fn root_version(root: &[u8]) -> u64 {
    serde_json::from_slice::<serde_json::Value>(root)
        .ok()
        .and_then(|value| value["signed"]["version"].as_u64())
        .unwrap_or(0)
}

fn generation_name(generation: u64) -> String {
    format!("{GENERATION_PREFIX}{generation:06}")
}

/// The generation `current` points to, if any.
fn current_generation(datastore_dir: &Path) -> Option<u64> {
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

/// Removes generation directories left by an interrupted refresh.
fn remove_stale_generations(datastore_dir: &Path, current: Option<u64>) {
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
        if Some(generation) != current {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Makes `staging_dir` durable and points `current` at it, then drops the previous generation.
fn commit_generation(
    datastore_dir: &Path,
    staging_dir: &Path,
    generation: u64,
    previous: Option<u64>,
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
    std::fs::rename(&temp_link, &link).map_err(CatalogError::io("rename", &temp_link))?;
    sync_dir(datastore_dir)?;
    if let Some(previous) = previous {
        let _ = std::fs::remove_dir_all(datastore_dir.join(generation_name(previous)));
    }
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
