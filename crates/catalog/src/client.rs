//! The device side: refresh the catalog from a pinned root with the TUF client workflow
//! ([`crate::updater`]), keep the last good metadata ([`crate::datastore`]), list the releases
//! and read small targets.

use crate::datastore::{
    LATEST_KNOWN_TIME, commit_generation, current_generation, generation_name, latest_known_time,
    lock_for_refresh, remove_stale_generations, save_trusted,
};
use crate::error::CatalogError;
use crate::release::ReleaseInfo;
use crate::schema::TargetFile;
use crate::store::write_atomic;
use crate::transport::CatalogTransport;
use crate::updater::{self, MetadataFiles, Updater};
use crate::warning::{CLOCK_AHEAD_LIMIT_SECS, CatalogWarning};
use chrono::{DateTime, Utc};
use ferry_types::Sha256;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use url::Url;

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

/// Settings of a refresh.
#[derive(Debug, Clone, Default)]
pub struct RefreshOptions {
    /// Size limits of metadata responses.
    pub limits: FetchLimits,
    /// A PEM CA certificate to trust instead of the platform's roots (the device's CA pin).
    pub ca_pem: Option<Vec<u8>>,
    /// Verify only: the refresh runs every check against what the server serves, but the
    /// datastore is left exactly as it was (nothing stored, nothing cleaned up), so a
    /// diagnosis never changes what the device trusts.
    pub dry_run: bool,
    /// The device's clock reading for this refresh; `None`: the system clock.
    pub now: Option<DateTime<Utc>>,
    /// Told of every metadata file as it arrives (the scan's measured units).
    pub observer: Option<crate::transport::FetchObserver>,
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
    transport: CatalogTransport,
    targets_base_url: Url,
    consistent_snapshot: bool,
    versions: MetadataVersions,
    expires: DateTime<Utc>,
    /// Every target, resolved through the delegations as a lookup of its name would be.
    targets: BTreeMap<String, TargetFile>,
    releases: Vec<Release>,
    rejected: Vec<CatalogError>,
    warnings: Vec<CatalogWarning>,
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

    /// Refreshes the metadata, including every delegated role. Trust starts at the newer of
    /// `pinned_root` and the root kept in the datastore; metadata the datastore holds that is
    /// still current is not fetched again, and a kept file that is damaged is fetched again
    /// ([`CatalogWarning::CacheDamaged`]). On success the datastore holds the new metadata;
    /// on any failure it still holds the last good metadata, untouched.
    ///
    /// Time: expiry is checked against the later of the clock and the latest known time
    /// the datastore records ([`CatalogWarning::ClockBehind`] when the clock is earlier), so
    /// setting the clock back cannot make expired metadata pass; a successful refresh raises
    /// the latest known time to the earlier of the clock and the server's (the `Date` of its
    /// timestamp answer), so a clock that runs ahead ([`CatalogWarning::ClockAhead`]) does
    /// not hold the device to its wrong time once it is set right. See NOTES.md.
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
        let _refreshing = lock_for_refresh(datastore_dir).await;
        let clock = options.now.unwrap_or_else(Utc::now);
        let current = current_generation(datastore_dir);
        if !options.dry_run {
            remove_stale_generations(datastore_dir, current);
        }
        let current_dir = current.map(|generation| datastore_dir.join(generation_name(generation)));
        let mut warnings = Vec::new();
        let mut latest_known = None;
        let mut stored_root = None;
        if let Some(current_dir) = &current_dir {
            match latest_known_time(current_dir) {
                Ok(time) => latest_known = time,
                Err(reason) => warnings.push(CatalogWarning::CacheDamaged {
                    file: LATEST_KNOWN_TIME.into(),
                    reason,
                }),
            }
            stored_root = std::fs::read(current_dir.join("root.json")).ok();
        }
        let now = match latest_known {
            Some(latest) if clock < latest => {
                warnings.push(CatalogWarning::ClockBehind {
                    clock,
                    latest_known: latest,
                });
                latest
            }
            _ => clock,
        };
        let transport =
            CatalogTransport::new(options.ca_pem.as_deref())?.observed(options.observer.clone());
        let new_updater = |root: &[u8]| {
            let files = MetadataFiles {
                dir: current_dir.clone(),
                persist: false,
            };
            Updater::new(
                root,
                files,
                &metadata_base_url,
                transport.clone(),
                options.limits,
                now,
            )
        };
        let mut updater = match stored_root {
            Some(stored) if root_version(&stored) > root_version(pinned_root) => {
                match new_updater(&stored) {
                    Ok(updater) => updater,
                    // It verified when it was stored: local damage. Walk the chain again
                    // from the pinned root.
                    Err(error) => {
                        warnings.push(CatalogWarning::CacheDamaged {
                            file: "root.json".into(),
                            reason: error.to_string(),
                        });
                        new_updater(pinned_root)?
                    }
                }
            }
            Some(stored) if root_version(&stored) == 0 => {
                warnings.push(CatalogWarning::CacheDamaged {
                    file: "root.json".into(),
                    reason: "it is not readable root metadata".into(),
                });
                new_updater(pinned_root)?
            }
            _ => new_updater(pinned_root)?,
        };
        updater.refresh().await?;
        updater.load_all_targets().await?;
        let (targets, unresolved) = resolve_all(&mut updater).await;
        warnings.extend(updater.warnings().iter().cloned());

        // Raise the latest known time, never past the server's clock.
        let server_time = updater.server_time();
        if let Some(server_time) = server_time {
            let lead_secs = clock.signed_duration_since(server_time).num_seconds();
            if lead_secs > CLOCK_AHEAD_LIMIT_SECS {
                warnings.push(CatalogWarning::ClockAhead {
                    clock,
                    server_time,
                    lead_secs,
                });
            }
        }
        let believed = server_time.map_or(clock, |server_time| clock.min(server_time));
        let latest_known = latest_known.map_or(believed, |latest| latest.max(believed));

        if !options.dry_run {
            let next_generation = current.map_or(1, |generation| generation + 1);
            let staging_dir = datastore_dir.join(generation_name(next_generation));
            let saved = save_trusted(&staging_dir, updater.trusted(), latest_known)
                .and_then(|()| commit_generation(datastore_dir, &staging_dir, next_generation));
            if let Err(error) = saved {
                let _ = std::fs::remove_dir_all(&staging_dir);
                return Err(error);
            }
        }

        let trusted = updater.trusted();
        let version = |signed: Option<u64>| signed.unwrap_or(0);
        let top_level_targets = trusted.targets(crate::trusted::TARGETS);
        let versions = MetadataVersions {
            root: trusted.root().signed.version,
            timestamp: version(trusted.timestamp().map(|t| t.signed.version)),
            snapshot: version(trusted.snapshot().map(|s| s.signed.version)),
            targets: version(top_level_targets.map(|t| t.signed.version)),
        };
        let expires = [
            Some(trusted.root().signed.expires),
            trusted.timestamp().map(|t| t.signed.expires),
            trusted.snapshot().map(|s| s.signed.expires),
            top_level_targets.map(|t| t.signed.expires),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or_default();
        let mut catalog = Self {
            transport,
            targets_base_url,
            consistent_snapshot: trusted.root().signed.consistent_snapshot,
            versions,
            expires,
            targets,
            releases: Vec::new(),
            rejected: unresolved,
            warnings,
        };
        catalog.collect_releases();
        Ok(catalog)
    }

    fn collect_releases(&mut self) {
        for (name, target) in &self.targets {
            let custom = match &target.custom {
                Some(custom) if custom.as_object().is_some_and(|map| !map.is_empty()) => custom,
                _ => continue,
            };
            let release = ReleaseInfo::from_custom(name, custom)
                .and_then(|info| Ok((target_info(name, target)?, info)));
            match release {
                Ok((target, info)) => self.releases.push(Release { target, info }),
                Err(error) => self.rejected.push(error),
            }
        }
    }

    /// Every release target whose custom metadata is a valid [`ReleaseInfo`], by name.
    pub fn releases(&self) -> &[Release] {
        &self.releases
    }

    /// Targets left out of [`Catalog::releases`]: custom metadata that is not a valid
    /// [`ReleaseInfo`], no SHA-256, or a delegation that does not verify.
    pub fn rejected_releases(&self) -> &[CatalogError] {
        &self.rejected
    }

    /// What the refresh found wrong on the device and dealt with: damaged files fetched
    /// again, a clock behind the latest known time or ahead of the server.
    pub fn warnings(&self) -> &[CatalogWarning] {
        &self.warnings
    }

    /// The versions of the trusted metadata.
    pub fn versions(&self) -> MetadataVersions {
        self.versions
    }

    /// When the first of the trusted top-level roles expires.
    pub fn expires(&self) -> DateTime<Utc> {
        self.expires
    }

    /// The target named `name`, if the catalog lists it with a SHA-256.
    pub fn target(&self, name: &str) -> Option<TargetInfo> {
        target_info(name, self.targets.get(name)?).ok()
    }

    /// Downloads a target into memory, refusing bytes past its signed length and checking
    /// every signed hash. Meant for small targets (a payload manifest, a key file).
    pub async fn read_target(&self, name: &str) -> Result<Vec<u8>, CatalogError> {
        let target = self
            .targets
            .get(name)
            .ok_or_else(|| CatalogError::TargetUnknown {
                target: name.to_owned(),
            })?;
        updater::download_target(
            &self.transport,
            self.consistent_snapshot,
            &self.targets_base_url,
            name,
            target,
        )
        .await
    }

    /// Downloads a target into `dir/<name>` (atomically), verified like [`Catalog::read_target`].
    pub async fn save_target(&self, name: &str, dir: &Path) -> Result<PathBuf, CatalogError> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(CatalogError::InvalidTargetName {
                name: name.to_owned(),
                reason: "it is not a plain file name".into(),
            });
        }
        let bytes = self.read_target(name).await?;
        write_atomic(dir, name, &bytes)?;
        Ok(dir.join(name))
    }
}

/// Resolves every listed target name as a lookup would (the first role in pre-order depth
/// first that is delegated the name and lists it), with the roles already loaded. Lookup
/// failures are returned once each (a bad delegation fails every name under it); names no
/// role is delegated are dropped.
async fn resolve_all(updater: &mut Updater) -> (BTreeMap<String, TargetFile>, Vec<CatalogError>) {
    let mut targets = BTreeMap::new();
    let mut failed = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for name in updater.listed_target_paths() {
        match updater.find_target(&name).await {
            Ok(Some(target)) => {
                targets.insert(name, target);
            }
            Ok(None) => {}
            Err(error) => {
                if seen.insert(error.to_string()) {
                    failed.push(error);
                }
            }
        }
    }
    (targets, failed)
}

/// A target's name, length and SHA-256 (one without a SHA-256 is `Malformed`).
pub(crate) fn target_info(name: &str, target: &TargetFile) -> Result<TargetInfo, CatalogError> {
    let sha256 = target
        .hashes
        .get("sha256")
        .ok_or_else(|| CatalogError::Malformed {
            role: "targets".into(),
            detail: format!("the target {name} lists no sha256 hash"),
        })?;
    Ok(TargetInfo {
        name: name.to_owned(),
        length: target.length,
        sha256: sha256.parse::<Sha256>()?,
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
