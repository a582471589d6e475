//! The repository side: create the catalog, publish targets, re-sign the timestamp, rotate keys.
//!
//! On disk (`metadata_dir`, served as static files under `/tuf/metadata/`):
//!
//! ```text
//! 1.root.json 2.root.json …   every root version (devices walk the chain)
//! N.targets.json               top-level targets (one per version, consistent snapshots)
//! N.bins-XX.json               hashed-bin delegated targets, when the catalog uses bins
//! N.snapshot.json              snapshot
//! timestamp.json               the only file rewritten in place (atomically, last)
//! ```
//!
//! Keys (ed25519, PKCS#8 DER): `keys_dir/root.pk8` and `keys_dir/targets.pk8` (offline: the
//! serving process never needs them), `online_keys_dir/snapshot.pk8` and
//! `online_keys_dir/timestamp.pk8`. Replaced keys move to `keys_dir/retired/`.

use crate::error::CatalogError;
use crate::store::{read_json, write_atomic};
use chrono::{DateTime, TimeDelta, Utc};
use ferry_types::Sha256;
use keys::{generate_key, key_file, local_key, role_keys, sign};
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use tough::TargetName;
use tough::editor::signed::SignedRole;
use tough::schema::decoded::Decoded;
use tough::schema::{
    DelegatedRole, DelegatedTargets, Delegations, Hashes, KeyHolder, Metafile, PathHashPrefix,
    PathSet, Role, RoleType, Root, Signed, Snapshot, Target, Targets, Timestamp,
};

mod keys;
mod rotate;

pub use rotate::{rotate_root, rotate_targets_key};

const SPEC_VERSION: &str = "1.0.0";

/// How long each role's signature stays valid after it is (re-)signed.
#[derive(Debug, Clone, Copy)]
pub struct Expiries {
    /// Root: signed offline, rarely.
    pub root: TimeDelta,
    /// Targets (and bins): signed offline at each publish.
    pub targets: TimeDelta,
    /// Snapshot: signed online at each publish.
    pub snapshot: TimeDelta,
    /// Timestamp: signed online at each publish and by the server on its own before expiry.
    pub timestamp: TimeDelta,
}

impl Default for Expiries {
    /// Root 1 year, targets and snapshot 180 days, timestamp 1 day.
    fn default() -> Self {
        Self {
            root: TimeDelta::days(365),
            targets: TimeDelta::days(180),
            snapshot: TimeDelta::days(180),
            timestamp: TimeDelta::days(1),
        }
    }
}

/// Whether targets live in the top-level targets role or in hashed-bin delegations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Bins {
    /// All targets in `N.targets.json`.
    #[default]
    None,
    /// 16 bins (`bins-0` … `bins-f`), by the first hex digit of SHA-256(target name).
    Sixteen,
    /// 256 bins (`bins-00` … `bins-ff`), by the first two hex digits.
    TwoHundredFiftySix,
}

/// Settings fixed when the catalog is created.
#[derive(Debug, Clone, Copy, Default)]
pub struct RepoSettings {
    /// Signature lifetimes.
    pub expiries: Expiries,
    /// Target layout.
    pub bins: Bins,
}

/// A target to publish: the catalog needs its name, length, SHA-256 and custom metadata (a
/// [`crate::ReleaseInfo`] for releases; anything for other files).
#[derive(Debug, Clone)]
pub struct NewTarget {
    /// The target name: letters, digits, `.`, `-`, `_` (no `/`, see the crate docs).
    pub name: String,
    /// Length in bytes.
    pub length: u64,
    /// SHA-256 of the bytes.
    pub sha256: Sha256,
    /// The `custom` object.
    pub custom: serde_json::Value,
}

/// Versions of the metadata after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepoVersions {
    /// Root version.
    pub root: u64,
    /// Top-level targets version.
    pub targets: u64,
    /// Snapshot version.
    pub snapshot: u64,
    /// Timestamp version.
    pub timestamp: u64,
}

/// The file name under which a target is served with consistent snapshots:
/// `<sha256 hex>.<name>` (the server maps it to its artifact store).
pub fn target_file_name(name: &str, sha256: &Sha256) -> String {
    format!("{}.{name}", sha256.to_hex())
}

/// The path of the newest `N.root.json` in `metadata_dir` (what a device pins at enrollment).
pub fn latest_root_path(metadata_dir: &Path) -> Result<PathBuf, CatalogError> {
    let version = latest_root_version(metadata_dir)?;
    Ok(metadata_dir.join(format!("{version}.root.json")))
}

/// Creates keys and the first metadata. Fails if `metadata_dir` already holds a root.
pub async fn init(
    keys_dir: &Path,
    online_keys_dir: &Path,
    metadata_dir: &Path,
    settings: &RepoSettings,
) -> Result<RepoVersions, CatalogError> {
    if latest_root_version(metadata_dir).is_ok() {
        return Err(CatalogError::Signing {
            role: "root".into(),
            detail: format!("{} already holds a catalog", metadata_dir.display()),
        });
    }
    for dir in [keys_dir, online_keys_dir, metadata_dir] {
        std::fs::create_dir_all(dir).map_err(CatalogError::io("create", dir))?;
    }
    let mut key_ids = HashMap::new();
    let mut keys = HashMap::new();
    for (role, dir) in [
        (RoleType::Root, keys_dir),
        (RoleType::Targets, keys_dir),
        (RoleType::Snapshot, online_keys_dir),
        (RoleType::Timestamp, online_keys_dir),
    ] {
        let path = dir.join(key_file(role));
        let (key_id, key) = generate_key(&path).await?;
        key_ids.insert(role, key_id.clone());
        keys.insert(key_id, key);
    }
    let now = Utc::now();
    let mut roles = HashMap::new();
    for (role, key_id) in &key_ids {
        roles.insert(*role, role_keys(key_id.clone()));
    }
    let root = Root {
        spec_version: SPEC_VERSION.into(),
        consistent_snapshot: true,
        version: NonZeroU64::MIN,
        expires: expiry(now, settings.expiries.root),
        keys,
        roles,
        _extra: HashMap::new(),
    };
    let root_key = local_key(keys_dir, RoleType::Root);
    let signed_root = sign(root.clone(), &KeyHolder::Root(root.clone()), &[root_key]).await?;
    write_atomic(metadata_dir, "1.root.json", signed_root.buffer())?;

    let mut targets = Targets::new(
        SPEC_VERSION.into(),
        NonZeroU64::MIN,
        expiry(now, settings.expiries.targets),
    );
    let mut bins = Vec::new();
    if let Some(prefix_len) = bin_prefix_len(settings.bins) {
        let targets_key_id = key_ids[&RoleType::Targets].clone();
        let mut delegations = Delegations::new();
        delegations
            .keys
            .insert(targets_key_id.clone(), root.keys[&targets_key_id].clone());
        for bin_idx in 0..(16usize.pow(prefix_len)) {
            let prefix = format!("{bin_idx:0width$x}", width = prefix_len as usize);
            delegations.roles.push(DelegatedRole {
                name: format!("bins-{prefix}"),
                keyids: vec![targets_key_id.clone()],
                threshold: NonZeroU64::MIN,
                paths: PathSet::PathHashPrefixes(vec![PathHashPrefix::new(prefix).map_err(tuf)?]),
                terminating: true,
                targets: None,
            });
        }
        for role in &delegations.roles {
            let bin = Targets::new(
                SPEC_VERSION.into(),
                NonZeroU64::MIN,
                expiry(now, settings.expiries.targets),
            );
            bins.push(DelegatedTargets {
                name: role.name.clone(),
                targets: bin,
            });
        }
        targets.delegations = Some(delegations);
    }
    let state = RepoState {
        root,
        targets: Signed {
            signed: targets,
            signatures: Vec::new(),
        },
        changed_bins: bins,
        snapshot: None,
        timestamp_version: 0,
    };
    state
        .sign_and_write(
            keys_dir,
            online_keys_dir,
            metadata_dir,
            &settings.expiries,
            true,
        )
        .await
}

/// Adds (or replaces) targets and re-signs targets (or the bins they fall in), snapshot and
/// timestamp. Expiries of the re-signed roles are pushed out by `expiries`.
pub async fn add_targets(
    keys_dir: &Path,
    online_keys_dir: &Path,
    metadata_dir: &Path,
    new_targets: Vec<NewTarget>,
    expiries: &Expiries,
) -> Result<RepoVersions, CatalogError> {
    let mut state = RepoState::load(metadata_dir)?;
    let now = Utc::now();
    let mut targets_changed = false;
    for new_target in new_targets {
        let name = checked_target_name(&new_target.name)?;
        let custom = match new_target.custom {
            serde_json::Value::Object(map) => map.into_iter().collect(),
            serde_json::Value::Null => HashMap::new(),
            _ => {
                return Err(CatalogError::InvalidReleaseInfo {
                    target: new_target.name,
                    reason: "custom metadata must be a JSON object".into(),
                });
            }
        };
        let target = Target {
            length: new_target.length,
            hashes: Hashes {
                sha256: Decoded::from(new_target.sha256.as_bytes().to_vec()),
                _extra: HashMap::new(),
            },
            custom,
            _extra: HashMap::new(),
        };
        match state.bin_for(&name) {
            None => {
                state.targets.signed.targets.insert(name, target);
                targets_changed = true;
            }
            Some(bin_name) => {
                let bin = state.load_bin(metadata_dir, &bin_name)?;
                bin.targets.targets.insert(name, target);
            }
        }
    }
    if targets_changed {
        state.targets.signed.version = next(state.targets.signed.version);
        state.targets.signed.expires = expiry(now, expiries.targets);
    }
    for bin in &mut state.changed_bins {
        bin.targets.version = next(bin.targets.version);
        bin.targets.expires = expiry(now, expiries.targets);
    }
    state
        .sign_and_write(
            keys_dir,
            online_keys_dir,
            metadata_dir,
            expiries,
            targets_changed,
        )
        .await
}

/// Re-signs only the timestamp (new version, new expiry) with the online timestamp key.
pub async fn refresh_timestamp(
    online_keys_dir: &Path,
    metadata_dir: &Path,
    expiry_after: TimeDelta,
) -> Result<u64, CatalogError> {
    let root = load_latest_root(metadata_dir)?;
    let mut timestamp: Signed<Timestamp> = read_json(&metadata_dir.join("timestamp.json"))?;
    timestamp.signed.version = next(timestamp.signed.version);
    timestamp.signed.expires = expiry(Utc::now(), expiry_after);
    let key = local_key(online_keys_dir, RoleType::Timestamp);
    let signed = sign(timestamp.signed, &KeyHolder::Root(root.signed), &[key]).await?;
    write_atomic(metadata_dir, "timestamp.json", signed.buffer())?;
    Ok(signed.signed().signed.version.get())
}

/// The length and SHA-256 the current metadata signs for target `name` (followed from
/// `timestamp.json` through snapshot and targets, and the bin when the catalog uses bins);
/// `None` when the catalog does not list it. Reads the repository's own files, so it checks
/// no signatures: it is for the server that wrote them.
pub fn published_target(
    metadata_dir: &Path,
    name: &str,
) -> Result<Option<(u64, Sha256)>, CatalogError> {
    let mut state = RepoState::load(metadata_dir)?;
    let target_name = checked_target_name(name)?;
    let target = match state.bin_for(&target_name) {
        None => state.targets.signed.targets.get(&target_name).cloned(),
        Some(bin_name) => state
            .load_bin(metadata_dir, &bin_name)?
            .targets
            .targets
            .get(&target_name)
            .cloned(),
    };
    let Some(target) = target else {
        return Ok(None);
    };
    let digest: [u8; 32] = target
        .hashes
        .sha256
        .as_ref()
        .try_into()
        .map_err(|_| malformed("targets", &format!("the SHA-256 of {name} is not 32 bytes")))?;
    Ok(Some((target.length, Sha256(digest))))
}

/// Whether the timestamp expires within `margin` (or is unreadable): the server calls this
/// periodically and then [`refresh_timestamp`].
pub fn needs_refresh(metadata_dir: &Path, margin: TimeDelta) -> bool {
    let Ok(timestamp) = read_json::<Signed<Timestamp>>(&metadata_dir.join("timestamp.json")) else {
        return true;
    };
    let deadline = expiry(Utc::now(), margin);
    timestamp.signed.expires <= deadline
}

/// The current metadata of a catalog, loaded to be changed and re-signed.
pub(super) struct RepoState {
    root: Root,
    targets: Signed<Targets>,
    /// Bins loaded because they change (their versions already bumped by the caller).
    changed_bins: Vec<DelegatedTargets>,
    snapshot: Option<Snapshot>,
    timestamp_version: u64,
}

impl RepoState {
    pub(super) fn load(metadata_dir: &Path) -> Result<Self, CatalogError> {
        let root = load_latest_root(metadata_dir)?.signed;
        let timestamp: Signed<Timestamp> = read_json(&metadata_dir.join("timestamp.json"))?;
        let snapshot_version = meta_version(&timestamp.signed.meta, "snapshot.json")?;
        let snapshot: Signed<Snapshot> =
            read_json(&metadata_dir.join(format!("{snapshot_version}.snapshot.json")))?;
        let targets_version = meta_version(&snapshot.signed.meta, "targets.json")?;
        let targets: Signed<Targets> =
            read_json(&metadata_dir.join(format!("{targets_version}.targets.json")))?;
        Ok(Self {
            root,
            targets,
            changed_bins: Vec::new(),
            snapshot: Some(snapshot.signed),
            timestamp_version: timestamp.signed.version.get(),
        })
    }

    /// The bin a target name falls in, when the catalog uses bins.
    fn bin_for(&self, name: &TargetName) -> Option<String> {
        let delegations = self.targets.signed.delegations.as_ref()?;
        let digest = Sha256::of(name.resolved().as_bytes()).to_hex();
        delegations.roles.iter().find_map(|role| match &role.paths {
            PathSet::PathHashPrefixes(prefixes)
                if prefixes.iter().any(|p| digest.starts_with(p.value())) =>
            {
                Some(role.name.clone())
            }
            _ => None,
        })
    }

    /// Loads a bin into `changed_bins` (once) and returns it for editing.
    pub(super) fn load_bin(
        &mut self,
        metadata_dir: &Path,
        bin_name: &str,
    ) -> Result<&mut DelegatedTargets, CatalogError> {
        if let Some(bin_idx) = self
            .changed_bins
            .iter()
            .position(|bin| bin.name == bin_name)
        {
            return Ok(&mut self.changed_bins[bin_idx]);
        }
        let snapshot = self
            .snapshot
            .as_ref()
            .ok_or_else(|| malformed("snapshot", "no snapshot loaded"))?;
        let version = meta_version(&snapshot.meta, &format!("{bin_name}.json"))?;
        let bin: Signed<Targets> =
            read_json(&metadata_dir.join(format!("{version}.{bin_name}.json")))?;
        self.changed_bins.push(DelegatedTargets {
            name: bin_name.to_owned(),
            targets: bin.signed,
        });
        let last_idx = self.changed_bins.len() - 1;
        Ok(&mut self.changed_bins[last_idx])
    }

    /// Signs what changed plus snapshot and timestamp, and writes them: versioned files first,
    /// `timestamp.json` last, so a reader never sees a timestamp naming a missing file.
    pub(super) async fn sign_and_write(
        self,
        keys_dir: &Path,
        online_keys_dir: &Path,
        metadata_dir: &Path,
        expiries: &Expiries,
        targets_changed: bool,
    ) -> Result<RepoVersions, CatalogError> {
        let now = Utc::now();
        let root_holder = KeyHolder::Root(self.root.clone());
        let targets_key = [local_key(keys_dir, RoleType::Targets)];
        let mut snapshot = match self.snapshot {
            Some(mut snapshot) => {
                snapshot.version = next(snapshot.version);
                snapshot.expires = expiry(now, expiries.snapshot);
                snapshot
            }
            None => Snapshot::new(
                SPEC_VERSION.into(),
                NonZeroU64::MIN,
                expiry(now, expiries.snapshot),
            ),
        };
        if let Some(delegations) = &self.targets.signed.delegations {
            let bin_holder = KeyHolder::Delegations(delegations.clone());
            for bin in self.changed_bins {
                let name = bin.name.clone();
                let signed_bin = sign(bin, &bin_holder, &targets_key).await?;
                write_role(metadata_dir, &signed_bin)?;
                snapshot
                    .meta
                    .insert(format!("{name}.json"), metafile(&signed_bin));
            }
        }
        if targets_changed {
            let signed_targets =
                sign(self.targets.signed.clone(), &root_holder, &targets_key).await?;
            write_role(metadata_dir, &signed_targets)?;
            snapshot
                .meta
                .insert("targets.json".into(), metafile(&signed_targets));
        }
        let snapshot_key = [local_key(online_keys_dir, RoleType::Snapshot)];
        let signed_snapshot = sign(snapshot, &root_holder, &snapshot_key).await?;
        write_role(metadata_dir, &signed_snapshot)?;

        let version = NonZeroU64::new(self.timestamp_version + 1).unwrap_or(NonZeroU64::MIN);
        let mut timestamp = Timestamp::new(
            SPEC_VERSION.into(),
            version,
            expiry(now, expiries.timestamp),
        );
        timestamp
            .meta
            .insert("snapshot.json".into(), metafile(&signed_snapshot));
        let timestamp_key = [local_key(online_keys_dir, RoleType::Timestamp)];
        let signed_timestamp = sign(timestamp, &root_holder, &timestamp_key).await?;
        write_atomic(metadata_dir, "timestamp.json", signed_timestamp.buffer())?;
        let snapshot_meta = &signed_snapshot.signed().signed.meta;
        Ok(RepoVersions {
            root: self.root.version.get(),
            targets: meta_version(snapshot_meta, "targets.json")?,
            snapshot: signed_snapshot.signed().signed.version.get(),
            timestamp: version.get(),
        })
    }
}

fn write_role<T: Role + serde::Serialize>(
    metadata_dir: &Path,
    role: &SignedRole<T>,
) -> Result<(), CatalogError> {
    write_atomic(
        metadata_dir,
        &role.signed().signed.filename(true),
        role.buffer(),
    )
}

fn metafile<T: Role + serde::Serialize>(role: &SignedRole<T>) -> Metafile {
    Metafile {
        length: Some(*role.length()),
        hashes: Some(Hashes {
            sha256: Decoded::from(role.sha256().to_vec()),
            _extra: HashMap::new(),
        }),
        version: role.signed().signed.version(),
        _extra: HashMap::new(),
    }
}

fn bin_prefix_len(bins: Bins) -> Option<u32> {
    match bins {
        Bins::None => None,
        Bins::Sixteen => Some(1),
        Bins::TwoHundredFiftySix => Some(2),
    }
}

/// Target names are flat: tough puts the hash prefix before the whole name
/// (`<hash>.a/b`) where the TUF spec and python-tuf put it before the last component
/// (`a/<hash>.b`), so a `/` would make the two clients fetch different URLs.
fn checked_target_name(name: &str) -> Result<TargetName, CatalogError> {
    let invalid = |reason: &str| CatalogError::InvalidTargetName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    if name.is_empty() || name.len() > 200 {
        return Err(invalid("it must have 1 to 200 characters"));
    }
    if name.starts_with('.') {
        return Err(invalid("it must not start with '.'"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(invalid(
            "only letters, digits, '.', '-' and '_' are allowed",
        ));
    }
    TargetName::new(name).map_err(|error| invalid(&error.to_string()))
}

pub(super) fn expiry(now: DateTime<Utc>, after: TimeDelta) -> jiff::Timestamp {
    let seconds = now.timestamp().saturating_add(after.num_seconds());
    jiff::Timestamp::from_second(seconds).unwrap_or(jiff::Timestamp::MAX)
}

pub(super) fn next(version: NonZeroU64) -> NonZeroU64 {
    version.checked_add(1).unwrap_or(NonZeroU64::MAX)
}

pub(super) fn meta_version(
    meta: &HashMap<String, Metafile>,
    file: &str,
) -> Result<u64, CatalogError> {
    meta.get(file)
        .map(|metafile| metafile.version.get())
        .ok_or_else(|| malformed("snapshot or timestamp", &format!("no entry for {file}")))
}

pub(super) fn malformed(role: &str, detail: &str) -> CatalogError {
    CatalogError::Malformed {
        role: role.into(),
        detail: detail.into(),
    }
}

pub(super) fn tuf(error: impl std::fmt::Display) -> CatalogError {
    CatalogError::Tuf {
        detail: error.to_string(),
    }
}

/// The highest `N` such that `N.root.json` exists.
fn latest_root_version(metadata_dir: &Path) -> Result<u64, CatalogError> {
    let entries =
        std::fs::read_dir(metadata_dir).map_err(CatalogError::io("read", metadata_dir))?;
    let mut latest = None;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str() else {
            continue;
        };
        if let Some(version) = name
            .strip_suffix(".root.json")
            .and_then(|v| v.parse::<u64>().ok())
        {
            latest = latest.max(Some(version));
        }
    }
    latest.ok_or_else(|| {
        malformed(
            "root",
            &format!("{} holds no N.root.json", metadata_dir.display()),
        )
    })
}

pub(super) fn load_latest_root(metadata_dir: &Path) -> Result<Signed<Root>, CatalogError> {
    read_json(&latest_root_path(metadata_dir)?)
}
