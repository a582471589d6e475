//! The TUF 1.0 client workflow (§5) over HTTP: the root chain, timestamp, snapshot and
//! targets, delegated roles searched in pre-order depth first as a target is looked up, and
//! verified target downloads.
//!
//! Metadata the device already trusts is read from a directory of `<role>.json` files (role
//! names percent-encoded) holding the bytes as served; a version it already has is not fetched
//! again. With `persist`, each document is written there as soon as it is trusted, so a later
//! failure leaves what came before it (what the conformance protocol wants); without, the
//! caller saves [`Updater::trusted`] once the whole refresh succeeded (what the device wants).

use crate::client::FetchLimits;
use crate::error::CatalogError;
use crate::schema::{self, HashCheck, TargetFile, Targets};
use crate::store::write_atomic;
use crate::transport::{CatalogTransport, FetchError};
use crate::trusted::{TARGETS, TimestampUpdate, TrustedSet};
use crate::warning::CatalogWarning;
use chrono::{DateTime, Utc};
use std::path::PathBuf;
use url::Url;

/// Delegated roles visited in one target search at most (python-tuf's limit).
const MAX_DELEGATIONS: usize = 32;

/// Where trusted metadata is read from and whether accepted metadata is written back.
#[derive(Debug, Clone)]
pub(crate) struct MetadataFiles {
    /// The directory of trusted `<role>.json` files, if there is one yet.
    pub dir: Option<PathBuf>,
    /// Write each document into `dir` as soon as it is trusted.
    pub persist: bool,
}

/// One refresh (and the lookups and downloads that follow it).
#[derive(Debug)]
pub(crate) struct Updater {
    trusted: TrustedSet,
    files: MetadataFiles,
    metadata_base_url: Url,
    transport: CatalogTransport,
    limits: FetchLimits,
    /// The root version trusted at the start: a local file signed under an older root may
    /// fail to verify after a key rotation without being damaged.
    first_root_version: u64,
    /// The server's clock, from the `Date` of its timestamp answer.
    server_time: Option<DateTime<Utc>>,
    /// Local files found damaged (and fetched again instead).
    warnings: Vec<CatalogWarning>,
}

impl Updater {
    /// Starts from `root` (checked to be signed by itself) with `now` as the reference time.
    pub(crate) fn new(
        root: &[u8],
        files: MetadataFiles,
        metadata_base_url: &Url,
        transport: CatalogTransport,
        limits: FetchLimits,
        now: DateTime<Utc>,
    ) -> Result<Self, CatalogError> {
        let trusted = TrustedSet::new(root, now)?;
        Ok(Self {
            first_root_version: trusted.root().signed.version,
            trusted,
            files,
            metadata_base_url: metadata_base_url.clone(),
            transport,
            limits,
            server_time: None,
            warnings: Vec::new(),
        })
    }

    /// The trusted metadata.
    pub(crate) fn trusted(&self) -> &TrustedSet {
        &self.trusted
    }

    /// The server's clock when it answered for the timestamp (its `Date` header), if it sent
    /// one that parses.
    pub(crate) fn server_time(&self) -> Option<DateTime<Utc>> {
        self.server_time
    }

    /// Local files this refresh found damaged and fetched again instead.
    pub(crate) fn warnings(&self) -> &[CatalogWarning] {
        &self.warnings
    }

    /// Notes local bytes of `role` that failed to verify with `error` when that is damage,
    /// not age ([`local_damage`]).
    fn check_local(&mut self, role: &str, bytes: &[u8], listed: Option<u64>, error: &CatalogError) {
        let root_changed = self.trusted.root().signed.version != self.first_root_version;
        if let Some(reason) = local_damage(bytes, listed, error, root_changed) {
            self.warnings.push(CatalogWarning::CacheDamaged {
                file: metadata_file_name(role),
                reason,
            });
        }
    }

    /// Updates root, timestamp, snapshot and top-level targets (§5.3 to §5.6).
    pub(crate) async fn refresh(&mut self) -> Result<(), CatalogError> {
        self.load_root().await?;
        self.load_timestamp().await?;
        self.load_snapshot().await?;
        self.load_targets(TARGETS, "root").await
    }

    async fn load_root(&mut self) -> Result<(), CatalogError> {
        let first = self.trusted.root().signed.version + 1;
        for version in first..=first + self.limits.max_root_updates {
            if version == first + self.limits.max_root_updates {
                return Err(CatalogError::TooManyRootUpdates {
                    max_root_updates: self.limits.max_root_updates,
                });
            }
            let url = self.metadata_url("root", Some(version))?;
            let bytes = match self.transport.fetch(&url, self.limits.max_root_size).await {
                Ok(bytes) => bytes,
                Err(FetchError::NotFound) => break,
                Err(error) => return Err(metadata_fetch_error(&url, error, None)),
            };
            self.trusted.update_root(&bytes)?;
            self.persist("root", &bytes)?;
        }
        Ok(())
    }

    async fn load_timestamp(&mut self) -> Result<(), CatalogError> {
        if let Some(local) = self.read_local("timestamp") {
            // An invalid or expired local timestamp is still the rollback reference if it
            // verifies; one that does not verify (keys rotated, or damaged) is not used.
            if let Err(error) = self.trusted.update_timestamp(&local) {
                self.check_local("timestamp", &local, None, &error);
            }
        }
        let url = self.metadata_url("timestamp", None)?;
        let (bytes, server_time) = self
            .transport
            .fetch_dated(&url, self.limits.max_timestamp_size)
            .await
            .map_err(|error| metadata_fetch_error(&url, error, None))?;
        self.server_time = server_time;
        if self.trusted.update_timestamp(&bytes)? == TimestampUpdate::Taken {
            self.persist("timestamp", &bytes)?;
        }
        Ok(())
    }

    async fn load_snapshot(&mut self) -> Result<(), CatalogError> {
        if let Some(local) = self.read_local("snapshot") {
            match self.trusted.update_snapshot(&local, true) {
                Ok(()) => return Ok(()),
                Err(error) => {
                    let listed = self
                        .trusted
                        .timestamp()
                        .map(|t| t.signed.meta["snapshot.json"].version);
                    self.check_local("snapshot", &local, listed, &error);
                }
            }
        }
        let meta = match self.trusted.timestamp() {
            Some(timestamp) => timestamp.signed.meta["snapshot.json"].clone(),
            None => {
                return Err(CatalogError::Tuf {
                    detail: "client workflow out of order: snapshot before timestamp".into(),
                });
            }
        };
        let bytes = self
            .fetch_metadata(
                "snapshot",
                meta.version,
                meta.length,
                self.limits.max_snapshot_size,
            )
            .await?;
        self.trusted.update_snapshot(&bytes, false)?;
        self.persist("snapshot", &bytes)
    }

    /// Makes `role`, as delegated by `delegator`, trusted: from the local copy if it is still
    /// the one the snapshot lists, else from the repository. A role already trusted is checked
    /// again against this delegator's keys.
    async fn load_targets(&mut self, role: &str, delegator: &str) -> Result<(), CatalogError> {
        if self.trusted.targets(role).is_some() {
            return self.trusted.verify_delegated(role, delegator);
        }
        if let Some(local) = self.read_local(role) {
            match self.trusted.update_targets(&local, role, delegator) {
                Ok(()) => return Ok(()),
                Err(error) => {
                    let listed = self.trusted.snapshot_entry(role).ok().map(|m| m.version);
                    self.check_local(role, &local, listed, &error);
                }
            }
        }
        let meta = self.trusted.snapshot_entry(role)?;
        let bytes = self
            .fetch_metadata(
                role,
                meta.version,
                meta.length,
                self.limits.max_targets_size,
            )
            .await?;
        self.trusted.update_targets(&bytes, role, delegator)?;
        self.persist(role, &bytes)
    }

    /// Looks `target_path` up (§5.7): top-level targets first, then delegated roles in
    /// pre-order depth first, following only delegations whose paths match it and stopping
    /// at a terminating one. Loads the roles it visits.
    pub(crate) async fn find_target(
        &mut self,
        target_path: &str,
    ) -> Result<Option<TargetFile>, CatalogError> {
        let mut to_visit = vec![(TARGETS.to_owned(), "root".to_owned())];
        let mut visited = std::collections::BTreeSet::new();
        while let Some((role, delegator)) = to_visit.pop() {
            if visited.len() > MAX_DELEGATIONS {
                break;
            }
            if visited.contains(&(role.clone(), delegator.clone())) {
                continue;
            }
            self.load_targets(&role, &delegator).await?;
            let Some(targets) = self.trusted.targets(&role) else {
                continue;
            };
            if let Some(target) = targets.signed.targets.get(target_path) {
                return Ok(Some(target.clone()));
            }
            let mut children = Vec::new();
            if let Some(delegations) = &targets.signed.delegations {
                for (child, terminating) in delegations.roles_for_target(target_path) {
                    children.push((child, role.clone()));
                    if terminating {
                        to_visit.clear();
                        break;
                    }
                }
            }
            visited.insert((role, delegator));
            to_visit.extend(children.into_iter().rev());
        }
        Ok(None)
    }

    /// Loads every delegated role reachable from the top-level targets (each once, through
    /// the first delegator that reaches it), for a caller that lists the whole catalog.
    pub(crate) async fn load_all_targets(&mut self) -> Result<(), CatalogError> {
        let mut to_visit = vec![TARGETS.to_owned()];
        let mut seen = std::collections::BTreeSet::from([TARGETS.to_owned()]);
        while let Some(role) = to_visit.pop() {
            let children = self
                .trusted
                .targets(&role)
                .and_then(|targets| targets.signed.delegations.as_ref())
                .map(|delegations| delegations.role_names())
                .unwrap_or_default();
            for child in children.into_iter().rev() {
                if seen.insert(child.clone()) {
                    self.load_targets(&child, &role).await?;
                    to_visit.push(child);
                }
            }
        }
        Ok(())
    }

    /// Every target path listed by any trusted targets role (not yet resolved: a path is
    /// only valid as [`Updater::find_target`] resolves it).
    pub(crate) fn listed_target_paths(&self) -> std::collections::BTreeSet<String> {
        self.trusted
            .all_targets()
            .values()
            .flat_map(|targets: &crate::trusted::Verified<Targets>| targets.signed.targets.keys())
            .cloned()
            .collect()
    }

    async fn fetch_metadata(
        &self,
        role: &str,
        version: u64,
        length: Option<u64>,
        max_size: u64,
    ) -> Result<Vec<u8>, CatalogError> {
        let consistent = self.trusted.root().signed.consistent_snapshot;
        let url = self.metadata_url(role, consistent.then_some(version))?;
        self.transport
            .fetch(&url, length.unwrap_or(max_size))
            .await
            .map_err(|error| metadata_fetch_error(&url, error, length.map(|l| (role, l))))
    }

    fn metadata_url(&self, role: &str, version: Option<u64>) -> Result<Url, CatalogError> {
        let file = match version {
            Some(version) => format!("{version}.{}.json", quote(role)),
            None => format!("{}.json", quote(role)),
        };
        let text = format!("{}{file}", self.metadata_base_url);
        Url::parse(&text).map_err(|error| CatalogError::InvalidUrl {
            url: text,
            reason: error.to_string(),
        })
    }

    fn read_local(&self, role: &str) -> Option<Vec<u8>> {
        let dir = self.files.dir.as_ref()?;
        std::fs::read(dir.join(metadata_file_name(role))).ok()
    }

    fn persist(&self, role: &str, bytes: &[u8]) -> Result<(), CatalogError> {
        match (&self.files.dir, self.files.persist) {
            (Some(dir), true) => write_atomic(dir, &metadata_file_name(role), bytes),
            _ => Ok(()),
        }
    }
}

/// Downloads a target listed as `target` under `target_path` and checks its length and every
/// hash. With consistent snapshots the file is fetched as `DIR/HASH.NAME` (§5.7.3).
pub(crate) async fn download_target(
    transport: &CatalogTransport,
    consistent_snapshot: bool,
    targets_base_url: &Url,
    target_path: &str,
    target: &TargetFile,
) -> Result<Vec<u8>, CatalogError> {
    let remote_path = if consistent_snapshot {
        let hash = target
            .hashes
            .get("sha256")
            .or_else(|| target.hashes.values().next())
            .map_or("", String::as_str);
        match target_path.rsplit_once('/') {
            Some((dir, file)) => format!("{dir}/{hash}.{file}"),
            None => format!("{hash}.{target_path}"),
        }
    } else {
        target_path.to_owned()
    };
    let text = format!("{targets_base_url}{remote_path}");
    let url = Url::parse(&text).map_err(|error| CatalogError::InvalidUrl {
        url: text.clone(),
        reason: error.to_string(),
    })?;
    if !url.as_str().starts_with(targets_base_url.as_str()) {
        return Err(CatalogError::InvalidTargetName {
            name: target_path.to_owned(),
            reason: "it escapes the target base URL".into(),
        });
    }
    let bytes = transport
        .fetch(&url, target.length)
        .await
        .map_err(|error| match error {
            FetchError::TooLarge { max_size } => CatalogError::TargetTooLong {
                target: target_path.to_owned(),
                max_length: max_size,
            },
            FetchError::NotFound => CatalogError::Unreachable {
                url: url.to_string(),
                detail: "the server has no such file".into(),
            },
            FetchError::Throttled {
                status,
                retry_after_secs,
            } => CatalogError::Throttled {
                url: url.to_string(),
                status,
                retry_after_secs,
            },
            FetchError::Failed(detail) => CatalogError::Unreachable {
                url: url.to_string(),
                detail,
            },
        })?;
    check_target(target_path, &bytes, target)?;
    Ok(bytes)
}

/// Checks target bytes against the signed length and hashes.
pub(crate) fn check_target(
    target_path: &str,
    bytes: &[u8],
    target: &TargetFile,
) -> Result<(), CatalogError> {
    schema::check_length_and_hashes(bytes, Some(target.length), Some(&target.hashes)).map_err(
        |check| match check {
            HashCheck::Length { .. } => CatalogError::TargetMismatch {
                target: target_path.to_owned(),
                expected: target.hashes.get("sha256").cloned().unwrap_or_default(),
                actual: schema::digest_hex("sha256", bytes).unwrap_or_default(),
            },
            HashCheck::Mismatch {
                algorithm,
                expected,
                actual,
            } if algorithm == "sha256" => CatalogError::TargetMismatch {
                target: target_path.to_owned(),
                expected,
                actual,
            },
            HashCheck::Mismatch {
                algorithm,
                expected,
                actual,
            } => CatalogError::TargetDigestMismatch {
                target: target_path.to_owned(),
                algorithm,
                expected,
                actual,
            },
            HashCheck::Unsupported { algorithm } => CatalogError::HashUnsupported {
                what: format!("the target {target_path}"),
                algorithm,
            },
        },
    )
}

fn metadata_fetch_error(url: &Url, error: FetchError, listed: Option<(&str, u64)>) -> CatalogError {
    match (error, listed) {
        (FetchError::TooLarge { .. }, Some((role, length))) => CatalogError::MixAndMatch {
            role: role.to_owned(),
            expected: format!("length {length}"),
            actual: "a longer file".into(),
        },
        (FetchError::TooLarge { max_size }, None) => CatalogError::EndlessData {
            url: url.to_string(),
            max_size,
        },
        (FetchError::NotFound, _) => CatalogError::Unreachable {
            url: url.to_string(),
            detail: "the server has no such file".into(),
        },
        (
            FetchError::Throttled {
                status,
                retry_after_secs,
            },
            _,
        ) => CatalogError::Throttled {
            url: url.to_string(),
            status,
            retry_after_secs,
        },
        (FetchError::Failed(detail), _) => CatalogError::Unreachable {
            url: url.to_string(),
            detail,
        },
    }
}

/// Why local bytes that failed to verify with `error` are damage rather than an older (or
/// otherwise superseded) copy, or `None` when they are simply stale: damage is a file that
/// is not readable metadata at all, or one that is the version the repository lists
/// (`listed`; the timestamp has none to compare) and still fails, other than by expiring or
/// by a signature from keys a root rotated in this refresh (`root_changed`).
pub(crate) fn local_damage(
    bytes: &[u8],
    listed: Option<u64>,
    error: &CatalogError,
    root_changed: bool,
) -> Option<String> {
    let version = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|value| value["signed"]["version"].as_u64());
    let Some(version) = version else {
        return Some("it is not readable metadata".into());
    };
    let superseded = match error {
        CatalogError::Expired { .. } => true,
        CatalogError::BadSignature { .. } => root_changed,
        _ => false,
    };
    let is_listed_version = listed.is_none_or(|listed| listed == version);
    (is_listed_version && !superseded).then(|| error.to_string())
}

/// The local file of a role: its name percent-encoded as python-tuf does (`quote(name, "")`),
/// so no role name can leave the directory or collide with a temp file.
pub(crate) fn metadata_file_name(role: &str) -> String {
    format!("{}.json", quote(role))
}

/// Percent-encodes every byte but ASCII letters, digits and `_.-~`.
fn quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-' | b'~') {
            quoted.push(char::from(byte));
        } else {
            quoted.push_str(&format!("%{byte:02X}"));
        }
    }
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_quoted_like_python_tuf() {
        assert_eq!(quote("bins-0a"), "bins-0a");
        assert_eq!(quote("?"), "%3F");
        assert_eq!(quote("#"), "%23");
        assert_eq!(quote("/delegatedrole"), "%2Fdelegatedrole");
        assert_eq!(quote("../delegatedrole"), "..%2Fdelegatedrole");
        assert_eq!(quote("é"), "%C3%A9");
        assert_eq!(metadata_file_name("a b"), "a%20b.json");
    }
}
