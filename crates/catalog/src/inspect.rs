//! What a device can say about its catalog without the network: whether the pinned root
//! is usable (it parses and its own threshold of keys signs it) and what the last good
//! metadata holds (each top-level role's version and expiry). `ferry doctor` reads them
//! to tell a damaged root from a catalog that went stale while the device was offline.

use std::path::Path;

use chrono::{DateTime, Utc};

use crate::datastore::{LATEST_KNOWN_TIME, trusted_metadata_dir};
use crate::error::CatalogError;
use crate::schema::{self, RoleType, Root, Snapshot, Targets, Timestamp};
use crate::updater::metadata_file_name;
use crate::verify::verify_threshold;

/// A pinned root that checks out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootSummary {
    /// Its version.
    pub version: u64,
    /// When it expires (a refresh replaces it before, through the root chain).
    pub expires: DateTime<Utc>,
    /// Keys it lists.
    pub n_keys: usize,
}

/// Checks `bytes` as a pinned root: TUF root metadata signed by the threshold of its own
/// root keys. `CATALOG_PINNED_ROOT_INVALID` naming what is wrong otherwise.
pub fn check_root(bytes: &[u8]) -> Result<RootSummary, CatalogError> {
    let invalid = |error: CatalogError| CatalogError::PinnedRootInvalid {
        detail: error.to_string(),
    };
    let (envelope, root) = schema::parse::<Root>(Root::TYPE, bytes).map_err(invalid)?;
    let role = root
        .roles
        .get(Root::TYPE)
        .ok_or_else(|| CatalogError::PinnedRootInvalid {
            detail: "it lists no root role".into(),
        })?;
    verify_threshold(Root::TYPE, &envelope, &root.keys, role).map_err(invalid)?;
    Ok(RootSummary {
        version: root.version,
        expires: root.expires,
        n_keys: root.keys.len(),
    })
}

/// One top-level role of the last good metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRole {
    /// `root`, `timestamp`, `snapshot` or `targets`.
    pub role: &'static str,
    /// Its version.
    pub version: u64,
    /// When it expires.
    pub expires: DateTime<Utc>,
}

/// The last good metadata of a datastore, as stored (it was verified when it was
/// stored; this reads, it does not verify again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMetadata {
    /// The top-level roles it holds.
    pub roles: Vec<StoredRole>,
    /// The clock reading of the refresh that stored it.
    pub refreshed_at: Option<DateTime<Utc>>,
}

impl StoredMetadata {
    /// The role that expires first (the metadata is stale from then on).
    pub fn first_to_expire(&self) -> Option<&StoredRole> {
        self.roles.iter().min_by_key(|r| r.expires)
    }
}

/// The last good metadata in `datastore_dir`; `Ok(None)` if no refresh ever succeeded.
pub fn stored_metadata(datastore_dir: &Path) -> Result<Option<StoredMetadata>, CatalogError> {
    let Some(dir) = trusted_metadata_dir(datastore_dir) else {
        return Ok(None);
    };
    fn role<T: RoleType>(
        dir: &Path,
        expires: impl Fn(&T) -> DateTime<Utc>,
    ) -> Result<Option<StoredRole>, CatalogError> {
        let role = T::TYPE;
        let path = dir.join(metadata_file_name(role));
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CatalogError::io("read", &path)(e)),
        };
        let (_, signed) = schema::parse::<T>(role, &bytes)?;
        Ok(Some(StoredRole {
            role,
            version: signed.version(),
            expires: expires(&signed),
        }))
    }
    let roles = [
        role::<Root>(&dir, |r| r.expires)?,
        role::<Timestamp>(&dir, |t| t.expires)?,
        role::<Snapshot>(&dir, |s| s.expires)?,
        role::<Targets>(&dir, |t| t.expires)?,
    ]
    .into_iter()
    .flatten()
    .collect();
    let refreshed_at = std::fs::read_to_string(dir.join(LATEST_KNOWN_TIME))
        .ok()
        .and_then(|text| DateTime::parse_from_rfc3339(text.trim()).ok())
        .map(|t| t.with_timezone(&Utc));
    Ok(Some(StoredMetadata {
        roles,
        refreshed_at,
    }))
}
