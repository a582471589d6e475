//! `CatalogError`: every way the catalog can fail, each with a stable code, a one-sentence cause
//! (its `Display`) and a one-sentence fix ([`Diagnose`]).

use ferry_types::{Diagnose, DigestError, VersionError};
use std::path::PathBuf;
use tough::error::Error as ToughError;

/// An error of the catalog, repository side or device side.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// Metadata of `role` is past its expiry date (a freeze attack, or a server that stopped
    /// re-signing).
    #[error("the {role} metadata has expired")]
    Expired {
        /// The expired role.
        role: String,
    },

    /// Metadata older than what the device already trusts was offered (a rollback attack).
    #[error(
        "the server offered {role} metadata version {offered_version}, older than the trusted version {trusted_version}"
    )]
    Rollback {
        /// The role that went backwards.
        role: String,
        /// The version the device trusts.
        trusted_version: u64,
        /// The version the server offered.
        offered_version: u64,
    },

    /// Metadata is not signed by a threshold of the keys its delegator trusts.
    #[error("the {role} metadata is not signed by enough trusted keys: {detail}")]
    BadSignature {
        /// The role whose signatures failed.
        role: String,
        /// What the verifier found.
        detail: String,
    },

    /// Metadata does not match the version or hash its parent role lists (mix and match).
    #[error(
        "the {role} metadata does not match what its parent lists: expected {expected}, got {actual}"
    )]
    MixAndMatch {
        /// The role that did not match.
        role: String,
        /// The version or hash the parent lists.
        expected: String,
        /// The version or hash received.
        actual: String,
    },

    /// A metadata response exceeded its size limit (an endless data attack).
    #[error("the response for {url} exceeded its limit of {max_size} bytes")]
    EndlessData {
        /// The URL fetched.
        url: String,
        /// The limit in bytes.
        max_size: u64,
    },

    /// A target was longer than its signed length.
    #[error("the target {target} is longer than its signed length of {max_length} bytes")]
    TargetTooLong {
        /// The target name.
        target: String,
        /// The signed length.
        max_length: u64,
    },

    /// A target's bytes do not hash to its signed digest.
    #[error("the target {target} has SHA-256 {actual}, but the catalog signs {expected}")]
    TargetMismatch {
        /// The target name.
        target: String,
        /// The signed digest (hex).
        expected: String,
        /// The digest of the bytes received (hex).
        actual: String,
    },

    /// The catalog server could not be reached or did not serve a file.
    #[error("the catalog server could not serve {url}: {detail}")]
    Unreachable {
        /// The URL fetched.
        url: String,
        /// What the transport reported.
        detail: String,
    },

    /// The named target is not in the catalog.
    #[error("the catalog has no target named {target}")]
    TargetUnknown {
        /// The target name asked for.
        target: String,
    },

    /// Metadata could not be parsed or lacks a required entry.
    #[error("the {role} metadata is malformed: {detail}")]
    Malformed {
        /// The role.
        role: String,
        /// What is wrong.
        detail: String,
    },

    /// The pinned root could not be parsed or is not signed by its own keys.
    #[error("the pinned root metadata is not valid: {detail}")]
    PinnedRootInvalid {
        /// What is wrong.
        detail: String,
    },

    /// The system clock is earlier than a time this device saw before.
    #[error("the system clock went backwards: it reads {now}, but {latest_known} was seen before")]
    ClockSteppedBack {
        /// The clock now.
        now: String,
        /// The latest time seen before.
        latest_known: String,
    },

    /// The chain of root versions is longer than the client follows in one refresh.
    #[error("the root chain has more than {max_root_updates} new versions")]
    TooManyRootUpdates {
        /// The limit.
        max_root_updates: u64,
    },

    /// A file or directory could not be read or written.
    #[error("could not {operation} {path}: {source}")]
    Io {
        /// What was being done (`read`, `write`, `rename`, …).
        operation: &'static str,
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A signing key is missing, unreadable, or not one the metadata trusts.
    #[error("cannot sign {role} metadata: {detail}")]
    Signing {
        /// The role being signed.
        role: String,
        /// What went wrong.
        detail: String,
    },

    /// A target name is unsafe or unsupported.
    #[error("the target name {name:?} is not allowed: {reason}")]
    InvalidTargetName {
        /// The name.
        name: String,
        /// Why it is refused.
        reason: String,
    },

    /// A version string is malformed (the one grammar of `ferry_types::Version`).
    #[error(transparent)]
    InvalidVersion(#[from] VersionError),

    /// A digest string is not 64 lowercase hex digits.
    #[error(transparent)]
    InvalidDigest(#[from] DigestError),

    /// A target's custom metadata is not a valid `ReleaseInfo`.
    #[error("the release metadata of {target} is not valid: {reason}")]
    InvalidReleaseInfo {
        /// The target name.
        target: String,
        /// What is wrong.
        reason: String,
    },

    /// A URL could not be built.
    #[error("{url:?} is not a usable URL: {reason}")]
    InvalidUrl {
        /// The URL text.
        url: String,
        /// What is wrong.
        reason: String,
    },

    /// Any other failure of the TUF library.
    #[error("the TUF library failed: {detail}")]
    Tuf {
        /// The library's message.
        detail: String,
    },
}

impl Diagnose for CatalogError {
    fn code(&self) -> &'static str {
        match self {
            Self::Expired { .. } => "CATALOG_EXPIRED",
            Self::Rollback { .. } => "CATALOG_ROLLBACK",
            Self::BadSignature { .. } => "CATALOG_BAD_SIGNATURE",
            Self::MixAndMatch { .. } => "CATALOG_MIX_AND_MATCH",
            Self::EndlessData { .. } => "CATALOG_ENDLESS_DATA",
            Self::TargetTooLong { .. } => "CATALOG_TARGET_TOO_LONG",
            Self::TargetMismatch { .. } => "CATALOG_TARGET_MISMATCH",
            Self::Unreachable { .. } => "CATALOG_UNREACHABLE",
            Self::TargetUnknown { .. } => "CATALOG_TARGET_UNKNOWN",
            Self::Malformed { .. } => "CATALOG_MALFORMED",
            Self::PinnedRootInvalid { .. } => "CATALOG_PINNED_ROOT_INVALID",
            Self::ClockSteppedBack { .. } => "CATALOG_CLOCK_BACKWARDS",
            Self::TooManyRootUpdates { .. } => "CATALOG_ROOT_CHAIN_TOO_LONG",
            Self::Io { .. } => "CATALOG_IO",
            Self::Signing { .. } => "CATALOG_SIGNING",
            Self::InvalidTargetName { .. } => "CATALOG_TARGET_NAME_INVALID",
            Self::InvalidVersion(_) => "CATALOG_VERSION_INVALID",
            Self::InvalidDigest(_) => "CATALOG_DIGEST_INVALID",
            Self::InvalidReleaseInfo { .. } => "CATALOG_RELEASE_INFO_INVALID",
            Self::InvalidUrl { .. } => "CATALOG_URL_INVALID",
            Self::Tuf { .. } => "CATALOG_TUF",
        }
    }

    fn fix(&self) -> String {
        match self {
            Self::Expired { role } => format!(
                "Check the device clock, and if it is right, make the server re-sign its {role} metadata (it refreshes the timestamp by itself, so check that it is running)"
            ),
            Self::Rollback { .. } => "Check the proxies and mirrors between the device and the server for one replaying old metadata (the device keeps its last good catalog meanwhile)".into(),
            Self::BadSignature { role, .. } => format!(
                "Re-sign the {role} metadata with the keys the current root lists, or rotate the root if those keys were replaced"
            ),
            Self::MixAndMatch { .. } => "Purge the cache in front of /tuf/metadata/ and retry (a mirror or cache is serving files from different catalog versions)".into(),
            Self::EndlessData { .. } => "Check the server URL and any proxy in between (something sends an oversized response instead of catalog metadata)".into(),
            Self::TargetTooLong { .. } | Self::TargetMismatch { .. } => "Purge any cache in front of /tuf/targets/ and check the server's artifact store (the file served is not the one the catalog signs)".into(),
            Self::Unreachable { .. } => "Check the network and the server URL in config.toml, then scan again".into(),
            Self::TargetUnknown { .. } => "Refresh the catalog and use a target name it lists".into(),
            Self::Malformed { role, .. } => format!("Regenerate the {role} metadata with `ferry publish` on the server"),
            Self::PinnedRootInvalid { .. } => "Reinstall the pinned root.json shipped with the device image (or from the server's keys directory)".into(),
            Self::ClockSteppedBack { .. } => "Set the system clock right (NTP), then scan again".into(),
            Self::TooManyRootUpdates { .. } => "Ship a newer pinned root.json with the device image".into(),
            Self::Io { path, .. } => format!("Check that {} exists, is writable and that the disk is not full", path.display()),
            Self::Signing { .. } => "Point the command at the keys directory that holds the keys the root lists for that role".into(),
            Self::InvalidTargetName { .. } => "Use a target name of letters, digits, '.', '-' and '_' only".into(),
            Self::InvalidVersion(e) => e.fix(),
            Self::InvalidDigest(e) => e.fix(),
            Self::InvalidReleaseInfo { target, .. } => format!("Publish {target} again with `ferry publish` so its release metadata is complete"),
            Self::InvalidUrl { .. } => "Give an absolute http, https or file URL".into(),
            Self::Tuf { .. } => "Run `ferry doctor` and report the message if the cause is not clear".into(),
        }
    }
}

impl CatalogError {
    pub(crate) fn io(
        operation: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            operation,
            path,
            source,
        }
    }

    /// Maps a tough client error. `targets_base_url` tells target fetches from metadata
    /// fetches, and `target` names the target being read, if any.
    pub(crate) fn from_tough(
        error: ToughError,
        targets_base_url: &str,
        target: Option<&str>,
    ) -> Self {
        match error {
            ToughError::ExpiredMetadata { role, .. } => Self::Expired {
                role: role.to_string(),
            },
            ToughError::OlderMetadata {
                role,
                current_version,
                new_version,
                ..
            } => Self::Rollback {
                role: role.to_string(),
                trusted_version: current_version,
                offered_version: new_version,
            },
            ToughError::OlderSnapshotInTimestamp {
                snapshot_new,
                snapshot_old,
                ..
            } => Self::Rollback {
                role: "snapshot (as listed in timestamp)".into(),
                trusted_version: snapshot_old,
                offered_version: snapshot_new,
            },
            ToughError::SnapshotRoleRollback {
                role,
                old_role_version,
                new_role_version,
                ..
            } => Self::Rollback {
                role: format!("{role} (as listed in snapshot)"),
                trusted_version: old_role_version,
                offered_version: new_role_version,
            },
            ToughError::SnapshotRoleMissing {
                role,
                old_version,
                new_version,
            } => Self::Rollback {
                role: format!("snapshot dropping {role}"),
                trusted_version: old_version,
                offered_version: new_version,
            },
            ToughError::VerifyMetadata { role, source, .. } => Self::BadSignature {
                role: role.to_string(),
                detail: source.to_string(),
            },
            ToughError::VerifyRoleMetadata { role, source, .. } => Self::BadSignature {
                role,
                detail: source.to_string(),
            },
            ToughError::VerifyTrustedMetadata { source, .. } => Self::PinnedRootInvalid {
                detail: source.to_string(),
            },
            ToughError::ParseTrustedMetadata { source, .. } => Self::PinnedRootInvalid {
                detail: source.to_string(),
            },
            ToughError::VersionMismatch {
                role,
                fetched,
                expected,
                ..
            } => Self::MixAndMatch {
                role: role.to_string(),
                expected: format!("version {expected}"),
                actual: format!("version {fetched}"),
            },
            ToughError::ParseMetadata { role, source, .. } => Self::Malformed {
                role: role.to_string(),
                detail: source.to_string(),
            },
            error @ (ToughError::TimestampMetaLength { .. }
            | ToughError::MissingSnapshotMeta { .. }
            | ToughError::MetaMissing { .. }
            | ToughError::SnapshotTargetsMetaMissing { .. }) => Self::Malformed {
                role: "timestamp or snapshot".into(),
                detail: error.to_string(),
            },
            ToughError::SystemTimeSteppedBackward {
                sys_time,
                latest_known_time,
            } => Self::ClockSteppedBack {
                now: sys_time.to_string(),
                latest_known: latest_known_time.to_string(),
            },
            ToughError::MaxUpdatesExceeded {
                max_root_updates, ..
            } => Self::TooManyRootUpdates { max_root_updates },
            ToughError::DatastoreCreate { path, source, .. } => Self::Io {
                operation: "write",
                path,
                source,
            },
            ToughError::DatastoreOpen { path, source, .. } => Self::Io {
                operation: "read",
                path,
                source,
            },
            ToughError::DatastoreRemove { path, source, .. } => Self::Io {
                operation: "remove",
                path,
                source,
            },
            ToughError::Transport { url, source, .. } => {
                Self::from_transport(url.as_str(), &source, targets_base_url, target)
            }
            ToughError::HashMismatch {
                context,
                calculated,
                expected,
                ..
            } => hash_mismatch(&context, calculated, expected, targets_base_url, target),
            ToughError::MaxSizeExceeded { max_size, .. } => {
                size_exceeded("(unknown URL)", targets_base_url, max_size, target)
            }
            other => Self::Tuf {
                detail: other.to_string(),
            },
        }
    }

    /// Maps a transport failure, looking inside it for the size and hash checks tough runs
    /// while streaming.
    pub(crate) fn from_transport(
        url: &str,
        source: &tough::TransportError,
        targets_base_url: &str,
        target: Option<&str>,
    ) -> Self {
        let mut cause: Option<&(dyn std::error::Error + 'static)> =
            std::error::Error::source(source);
        while let Some(inner) = cause {
            if let Some(tough_error) = inner.downcast_ref::<ToughError>() {
                match tough_error {
                    ToughError::MaxSizeExceeded { max_size, .. } => {
                        return size_exceeded(url, targets_base_url, *max_size, target);
                    }
                    ToughError::HashMismatch {
                        calculated,
                        expected,
                        ..
                    } => {
                        return hash_mismatch(
                            url,
                            calculated.clone(),
                            expected.clone(),
                            targets_base_url,
                            target,
                        );
                    }
                    _ => {}
                }
            }
            cause = inner.source();
        }
        Self::Unreachable {
            url: url.to_owned(),
            detail: source.to_string(),
        }
    }
}

fn is_target_url(url: &str, targets_base_url: &str) -> bool {
    !targets_base_url.is_empty() && url.starts_with(targets_base_url)
}

fn size_exceeded(
    url: &str,
    targets_base_url: &str,
    max_size: u64,
    target: Option<&str>,
) -> CatalogError {
    if is_target_url(url, targets_base_url) {
        CatalogError::TargetTooLong {
            target: target.unwrap_or(url).to_owned(),
            max_length: max_size,
        }
    } else {
        CatalogError::EndlessData {
            url: url.to_owned(),
            max_size,
        }
    }
}

fn hash_mismatch(
    url: &str,
    calculated: String,
    expected: String,
    targets_base_url: &str,
    target: Option<&str>,
) -> CatalogError {
    if is_target_url(url, targets_base_url) {
        CatalogError::TargetMismatch {
            target: target.unwrap_or(url).to_owned(),
            expected,
            actual: calculated,
        }
    } else {
        CatalogError::MixAndMatch {
            role: metadata_role_of(url),
            expected: format!("sha256 {expected}"),
            actual: format!("sha256 {calculated}"),
        }
    }
}

/// `https://h/tuf/metadata/7.snapshot.json` → `snapshot`.
fn metadata_role_of(url: &str) -> String {
    let file = url.rsplit('/').next().unwrap_or(url);
    let without_json = file.strip_suffix(".json").unwrap_or(file);
    match without_json.split_once('.') {
        Some((version, role)) if version.bytes().all(|b| b.is_ascii_digit()) => role.to_owned(),
        _ => without_json.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_is_one_sentence_without_trailing_period() {
        let errors = [
            CatalogError::Expired {
                role: "snapshot".into(),
            },
            CatalogError::Rollback {
                role: "timestamp".into(),
                trusted_version: 3,
                offered_version: 2,
            },
            CatalogError::EndlessData {
                url: "http://x/timestamp.json".into(),
                max_size: 10,
            },
            CatalogError::TargetUnknown { target: "a".into() },
        ];
        for error in errors {
            let cause = error.to_string();
            assert!(!cause.ends_with('.'), "{cause}");
            assert!(!error.fix().ends_with('.'), "{}", error.fix());
            assert!(error.code().starts_with("CATALOG_"));
        }
    }

    #[test]
    fn metadata_roles_are_named_from_urls() {
        assert_eq!(
            metadata_role_of("http://h/tuf/metadata/7.snapshot.json"),
            "snapshot"
        );
        assert_eq!(
            metadata_role_of("http://h/tuf/metadata/timestamp.json"),
            "timestamp"
        );
        assert_eq!(
            metadata_role_of("http://h/tuf/metadata/3.bins-0a.json"),
            "bins-0a"
        );
    }
}
