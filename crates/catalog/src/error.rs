//! `CatalogError`: every way the catalog can fail, each with a stable code, a one-sentence cause
//! (its `Display`) and a one-sentence fix ([`Diagnose`]).

use ferry_types::{Diagnose, DigestError, VersionError};
use std::path::PathBuf;

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

    /// A target's bytes do not match a signed digest other than SHA-256.
    #[error("the target {target} has {algorithm} {actual}, but the catalog signs {expected}")]
    TargetDigestMismatch {
        /// The target name.
        target: String,
        /// The hash algorithm (`sha512`).
        algorithm: String,
        /// The signed digest (hex).
        expected: String,
        /// The digest of the bytes received (hex).
        actual: String,
    },

    /// Metadata or a target is listed with a hash algorithm this client cannot compute, so it
    /// cannot be verified.
    #[error("{what} is listed with the hash algorithm {algorithm}, which this client cannot check")]
    HashUnsupported {
        /// What was being checked (`the snapshot metadata`, `the target x`).
        what: String,
        /// The algorithm name.
        algorithm: String,
    },

    /// The catalog server could not be reached or did not serve a file.
    #[error("the catalog server could not serve {url}: {detail}")]
    Unreachable {
        /// The URL fetched.
        url: String,
        /// What the transport reported.
        detail: String,
    },

    /// The catalog server is overloaded or rate-limits the device (429, 503).
    #[error("the catalog server answered {status} for {url}{}", retry_after_secs.map(|s| format!(" and asked to come back in {s} s")).unwrap_or_default())]
    Throttled {
        /// The URL fetched.
        url: String,
        /// HTTP status.
        status: u16,
        /// Its `Retry-After`, in seconds, when it sent one.
        retry_after_secs: Option<u64>,
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
            Self::TargetDigestMismatch { .. } => "CATALOG_TARGET_MISMATCH",
            Self::HashUnsupported { .. } => "CATALOG_HASH_UNSUPPORTED",
            Self::Unreachable { .. } => "CATALOG_UNREACHABLE",
            Self::Throttled { .. } => "CATALOG_THROTTLED",
            Self::TargetUnknown { .. } => "CATALOG_TARGET_UNKNOWN",
            Self::Malformed { .. } => "CATALOG_MALFORMED",
            Self::PinnedRootInvalid { .. } => "CATALOG_PINNED_ROOT_INVALID",
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
            Self::HashUnsupported { .. } => "Publish it again listing a sha256 (or sha512) hash, which every TUF client can check".into(),
            Self::TargetTooLong { .. } | Self::TargetMismatch { .. } | Self::TargetDigestMismatch { .. } => "Purge any cache in front of /tuf/targets/ and check the server's artifact store (the file served is not the one the catalog signs)".into(),
            Self::Unreachable { .. } => "Check the network and the server URL in config.toml, then scan again".into(),
            Self::Throttled { .. } => "Scan again later (the agent waits as long as the server asked, up to its cap)".into(),
            Self::TargetUnknown { .. } => "Refresh the catalog and use a target name it lists".into(),
            Self::Malformed { role, .. } => format!("Regenerate the {role} metadata with `ferry publish` on the server"),
            Self::PinnedRootInvalid { .. } => "Reinstall the pinned root.json shipped with the device image (or from the server's keys directory)".into(),
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
    /// How long the server asked the device to wait before asking again (`Retry-After`
    /// on a 429 or 503), if it did.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Throttled {
                retry_after_secs: Some(secs),
                ..
            } => Some(std::time::Duration::from_secs(*secs)),
            _ => None,
        }
    }

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
}
