//! The trusted metadata of one refresh and the rules of TUF 1.0 §5 for replacing it: each
//! `update_*` verifies a new document against what is trusted and takes it or refuses it. No
//! I/O: the updater decides where bytes come from and where accepted ones are kept.

use crate::error::CatalogError;
use crate::schema::{
    self, Envelope, HashCheck, MetaFile, RoleKeys, RoleType, Root, Snapshot, Targets, Timestamp,
};
use crate::verify::verify_threshold;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};

/// The name under which the top-level targets role is delegated by root.
pub(crate) const TARGETS: &str = "targets";
const ROOT: &str = "root";

/// A verified document: its exact bytes, its envelope and its parsed content.
#[derive(Debug, Clone)]
pub(crate) struct Verified<T> {
    pub bytes: Vec<u8>,
    pub envelope: Envelope,
    pub signed: T,
}

/// What became of an offered timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimestampUpdate {
    /// It is newer and is now trusted (persist it).
    Taken,
    /// It has the trusted version: the trusted one is kept, whatever the new content (§5.4.3.1).
    SameVersion,
}

/// Root, timestamp, snapshot and the targets roles trusted so far in this refresh.
#[derive(Debug)]
pub(crate) struct TrustedSet {
    now: DateTime<Utc>,
    root: Verified<Root>,
    timestamp: Option<Verified<Timestamp>>,
    snapshot: Option<Verified<Snapshot>>,
    targets: BTreeMap<String, Verified<Targets>>,
    /// (role, delegator) pairs whose signatures were checked: a role reached through another
    /// delegator is verified again against that delegator's keys.
    verified_by: BTreeSet<(String, String)>,
}

impl TrustedSet {
    /// Trusts `root_bytes` if it is a root signed by a threshold of its own root keys (it may
    /// be expired: a newer root may follow). `now` is the reference time of the refresh.
    pub(crate) fn new(root_bytes: &[u8], now: DateTime<Utc>) -> Result<Self, CatalogError> {
        let invalid = |error: CatalogError| CatalogError::PinnedRootInvalid {
            detail: error.to_string(),
        };
        let (envelope, root) = schema::parse::<Root>(ROOT, root_bytes).map_err(invalid)?;
        verify_threshold(ROOT, &envelope, &root.keys, &root.roles[ROOT]).map_err(invalid)?;
        Ok(Self {
            now,
            root: Verified {
                bytes: root_bytes.to_vec(),
                envelope,
                signed: root,
            },
            timestamp: None,
            snapshot: None,
            targets: BTreeMap::new(),
            verified_by: BTreeSet::new(),
        })
    }

    pub(crate) fn root(&self) -> &Verified<Root> {
        &self.root
    }

    pub(crate) fn timestamp(&self) -> Option<&Verified<Timestamp>> {
        self.timestamp.as_ref()
    }

    pub(crate) fn snapshot(&self) -> Option<&Verified<Snapshot>> {
        self.snapshot.as_ref()
    }

    pub(crate) fn targets(&self, role: &str) -> Option<&Verified<Targets>> {
        self.targets.get(role)
    }

    /// Every targets role trusted, by name.
    pub(crate) fn all_targets(&self) -> &BTreeMap<String, Verified<Targets>> {
        &self.targets
    }

    /// §5.3: takes root version N+1, signed by a threshold of the trusted root keys and of its
    /// own.
    pub(crate) fn update_root(&mut self, bytes: &[u8]) -> Result<(), CatalogError> {
        let (envelope, root) = schema::parse::<Root>(ROOT, bytes)?;
        let trusted = &self.root.signed;
        verify_threshold(ROOT, &envelope, &trusted.keys, &trusted.roles[ROOT])?;
        let expected = trusted.version + 1;
        if root.version != expected {
            return Err(CatalogError::MixAndMatch {
                role: ROOT.into(),
                expected: format!("version {expected}"),
                actual: format!("version {}", root.version),
            });
        }
        verify_threshold(ROOT, &envelope, &root.keys, &root.roles[ROOT])?;
        self.root = Verified {
            bytes: bytes.to_vec(),
            envelope,
            signed: root,
        };
        Ok(())
    }

    /// §5.4: takes a timestamp signed by the root's timestamp keys that does not go back in
    /// version, nor in the snapshot version it lists. An expired one is kept as trusted (to
    /// check the next one against) but refused as final.
    pub(crate) fn update_timestamp(
        &mut self,
        bytes: &[u8],
    ) -> Result<TimestampUpdate, CatalogError> {
        self.check_not_expired(ROOT, self.root.signed.expires)?;
        let new = self.verify_top_level::<Timestamp>(bytes)?;
        if let Some(trusted) = &self.timestamp {
            let (old, offered) = (trusted.signed.version, new.signed.version);
            if offered < old {
                return Err(rollback(Timestamp::TYPE, old, offered));
            }
            if offered == old {
                return Ok(TimestampUpdate::SameVersion);
            }
            let old_snapshot = snapshot_meta(&trusted.signed).version;
            let new_snapshot = snapshot_meta(&new.signed).version;
            if new_snapshot < old_snapshot {
                return Err(rollback(
                    "snapshot (as listed in timestamp)",
                    old_snapshot,
                    new_snapshot,
                ));
            }
        }
        self.timestamp = Some(new);
        self.check_final_timestamp()?;
        Ok(TimestampUpdate::Taken)
    }

    /// §5.5: takes a snapshot that matches the timestamp (length and hashes, unless the bytes
    /// are the ones this device kept: `local`) and keeps every role of the trusted snapshot
    /// at an equal or newer version. Refused as final if expired or not the listed version.
    pub(crate) fn update_snapshot(
        &mut self,
        bytes: &[u8],
        local: bool,
    ) -> Result<(), CatalogError> {
        let Some(timestamp) = &self.timestamp else {
            return Err(order("snapshot before timestamp"));
        };
        if !self.targets.is_empty() {
            return Err(order("snapshot after targets"));
        }
        self.check_final_timestamp()?;
        let meta = snapshot_meta(&timestamp.signed).clone();
        if !local {
            check_meta(Snapshot::TYPE, bytes, &meta)?;
        }
        let new = self.verify_top_level::<Snapshot>(bytes)?;
        if let Some(trusted) = &self.snapshot {
            for (file, old) in &trusted.signed.meta {
                let Some(offered) = new.signed.meta.get(file) else {
                    return Err(CatalogError::Rollback {
                        role: format!("snapshot dropping {file}"),
                        trusted_version: old.version,
                        offered_version: 0,
                    });
                };
                if offered.version < old.version {
                    return Err(rollback(
                        &format!("{file} (as listed in snapshot)"),
                        old.version,
                        offered.version,
                    ));
                }
            }
        }
        self.snapshot = Some(new);
        self.check_final_snapshot()
    }

    /// §5.6 and §5.7: takes targets role `role` from `delegator` (`root` for the top-level
    /// targets) if it matches the snapshot, is signed by the keys the delegator trusts for it,
    /// and has not expired.
    pub(crate) fn update_targets(
        &mut self,
        bytes: &[u8],
        role: &str,
        delegator: &str,
    ) -> Result<(), CatalogError> {
        if self.snapshot.is_none() {
            return Err(order("targets before snapshot"));
        }
        self.check_final_snapshot()?;
        let (keys, role_keys) = self.delegation(role, delegator)?;
        let meta = self.snapshot_entry(role)?;
        check_meta(role, bytes, &meta)?;
        let (envelope, targets) = schema::parse::<Targets>(role, bytes)?;
        verify_threshold(role, &envelope, &keys, &role_keys)?;
        if targets.version != meta.version {
            return Err(CatalogError::MixAndMatch {
                role: role.to_owned(),
                expected: format!("version {} (as listed in snapshot)", meta.version),
                actual: format!("version {}", targets.version),
            });
        }
        self.check_not_expired(role, targets.expires)?;
        self.targets.insert(
            role.to_owned(),
            Verified {
                bytes: bytes.to_vec(),
                envelope,
                signed: targets,
            },
        );
        self.verified_by
            .insert((role.to_owned(), delegator.to_owned()));
        Ok(())
    }

    /// Checks a trusted targets role against `delegator`'s keys for it, once per pair: trust
    /// through one delegator is no trust through another.
    pub(crate) fn verify_delegated(
        &mut self,
        role: &str,
        delegator: &str,
    ) -> Result<(), CatalogError> {
        let pair = (role.to_owned(), delegator.to_owned());
        if self.verified_by.contains(&pair) {
            return Ok(());
        }
        let Some(trusted) = self.targets.get(role) else {
            return Err(order("verify before load"));
        };
        let (keys, role_keys) = self.delegation(role, delegator)?;
        verify_threshold(role, &trusted.envelope, &keys, &role_keys)?;
        self.verified_by.insert(pair);
        Ok(())
    }

    /// What the snapshot lists for `role`.
    pub(crate) fn snapshot_entry(&self, role: &str) -> Result<MetaFile, CatalogError> {
        let snapshot = self
            .snapshot
            .as_ref()
            .ok_or_else(|| order("targets before snapshot"))?;
        snapshot
            .signed
            .meta
            .get(&format!("{role}.json"))
            .cloned()
            .ok_or_else(|| CatalogError::MixAndMatch {
                role: role.to_owned(),
                expected: "an entry in the snapshot".into(),
                actual: "none (the role is delegated but the snapshot does not list it)".into(),
            })
    }

    /// The keys and threshold `delegator` trusts for `role`.
    fn delegation(
        &self,
        role: &str,
        delegator: &str,
    ) -> Result<(BTreeMap<String, schema::PublicKey>, RoleKeys), CatalogError> {
        if delegator == ROOT {
            let root = &self.root.signed;
            return match root.roles.get(role) {
                Some(keys) if role == TARGETS => Ok((root.keys.clone(), keys.clone())),
                _ => Err(order("root delegates only the top-level roles")),
            };
        }
        let parent = self
            .targets
            .get(delegator)
            .ok_or_else(|| order("a delegated role before its delegator"))?;
        let delegations = parent.signed.delegations.as_ref();
        match delegations.and_then(|d| d.role_keys(role).map(|keys| (d, keys))) {
            Some((delegations, keys)) => Ok((delegations.keys.clone(), keys)),
            None => Err(CatalogError::BadSignature {
                role: role.to_owned(),
                detail: format!("{delegator} does not delegate to it"),
            }),
        }
    }

    fn verify_top_level<T: RoleType>(&self, bytes: &[u8]) -> Result<Verified<T>, CatalogError> {
        let (envelope, signed) = schema::parse::<T>(T::TYPE, bytes)?;
        let root = &self.root.signed;
        let role_keys = &root.roles[T::TYPE];
        verify_threshold(T::TYPE, &envelope, &root.keys, role_keys)?;
        Ok(Verified {
            bytes: bytes.to_vec(),
            envelope,
            signed,
        })
    }

    fn check_final_timestamp(&self) -> Result<(), CatalogError> {
        let timestamp = self
            .timestamp
            .as_ref()
            .ok_or_else(|| order("no timestamp"))?;
        self.check_not_expired(Timestamp::TYPE, timestamp.signed.expires)
    }

    fn check_final_snapshot(&self) -> Result<(), CatalogError> {
        let (Some(timestamp), Some(snapshot)) = (&self.timestamp, &self.snapshot) else {
            return Err(order("no snapshot"));
        };
        self.check_not_expired(Snapshot::TYPE, snapshot.signed.expires)?;
        let listed = snapshot_meta(&timestamp.signed).version;
        if snapshot.signed.version != listed {
            return Err(CatalogError::MixAndMatch {
                role: Snapshot::TYPE.into(),
                expected: format!("version {listed} (as listed in timestamp)"),
                actual: format!("version {}", snapshot.signed.version),
            });
        }
        Ok(())
    }

    fn check_not_expired(&self, role: &str, expires: DateTime<Utc>) -> Result<(), CatalogError> {
        if self.now >= expires {
            return Err(CatalogError::Expired {
                role: role.to_owned(),
            });
        }
        Ok(())
    }
}

/// The snapshot entry of a timestamp (present: parsing checks it).
fn snapshot_meta(timestamp: &Timestamp) -> &MetaFile {
    &timestamp.meta["snapshot.json"]
}

fn rollback(role: &str, trusted: u64, offered: u64) -> CatalogError {
    CatalogError::Rollback {
        role: role.to_owned(),
        trusted_version: trusted,
        offered_version: offered,
    }
}

/// A call out of the workflow's order: a bug of this crate, reported rather than panicking.
fn order(detail: &str) -> CatalogError {
    CatalogError::Tuf {
        detail: format!("client workflow out of order: {detail}"),
    }
}

/// Checks metadata bytes against the length and hashes its parent lists.
pub(crate) fn check_meta(role: &str, bytes: &[u8], meta: &MetaFile) -> Result<(), CatalogError> {
    schema::check_length_and_hashes(bytes, meta.length, meta.hashes.as_ref()).map_err(|check| {
        match check {
            HashCheck::Length { expected, actual } => CatalogError::MixAndMatch {
                role: role.to_owned(),
                expected: format!("length {expected}"),
                actual: format!("length {actual}"),
            },
            HashCheck::Mismatch {
                algorithm,
                expected,
                actual,
            } => CatalogError::MixAndMatch {
                role: role.to_owned(),
                expected: format!("{algorithm} {expected}"),
                actual: format!("{algorithm} {actual}"),
            },
            HashCheck::Unsupported { algorithm } => CatalogError::HashUnsupported {
                what: format!("the {role} metadata"),
                algorithm,
            },
        }
    })
}
