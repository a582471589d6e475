//! The ferry catalog: a signed TUF repository of OS releases, the device-side refresh that
//! verifies it, and the selection of the update offered to each device.
//!
//! It follows [TUF 1.0] (spec version `1.0.0` in the metadata). The repository side is built
//! on the [`tough`] editor: ed25519 keys, consistent snapshots (`N.targets.json`,
//! `N.snapshot.json`, targets served as `<sha256>.<name>`), root rotation, and optional
//! hashed-bin delegations for large catalogs ([`repo::Bins`]). The device side is this crate's
//! own client workflow (`updater`, `trusted`, `schema`, `verify`): it passes the TUF
//! community's conformance suite (all 113 cases, `ferry tuf`), reads ed25519, ECDSA and RSA
//! keys, sha256 and sha512 hashes, and searches delegations as the spec orders.
//!
//! Not supported:
//! * target names containing `/` ([`repo::add_targets`] refuses them): tough puts the hash
//!   prefix in front of the whole name where the spec puts it in front of the last component,
//!   so flat names are the only ones both tough and other clients fetch from the same URL;
//! * thresholds above 1 and more than one key per role (the repository side creates one key per
//!   role; the device side verifies any threshold);
//! * TAP 4 (multiple repositories), TAP 13 (user-selected targets) and non-hashed-bin
//!   delegations on the repository side.
//!
//! # Example
//!
//! ```no_run
//! # async fn example() -> Result<(), ferry_catalog::CatalogError> {
//! use ferry_catalog::{offer, repo, Catalog, DeviceQuery, NewTarget, ReleaseInfo};
//! use ferry_types::Version;
//! use std::path::Path;
//!
//! // Server: create the catalog once, then publish.
//! let (keys, online_keys, metadata) = (Path::new("keys"), Path::new("online-keys"), Path::new("tuf/metadata"));
//! repo::init(keys, online_keys, metadata, &repo::RepoSettings::default()).await?;
//! # let info = ReleaseInfo::from_custom("gw-1.10.full", &serde_json::Value::Null)?;
//! # let (length, sha256) = (0, ferry_types::Sha256::of(b""));
//! let target = NewTarget { name: "gw-1.10.full".into(), length, sha256, custom: info.to_custom() };
//! repo::add_targets(keys, online_keys, metadata, vec![target], &repo::Expiries::default()).await?;
//!
//! // Device: refresh from the pinned root, then pick the offer.
//! let pinned_root = std::fs::read("pinned-root.json").map_err(|e| ferry_catalog::CatalogError::Io {
//!     operation: "read", path: "pinned-root.json".into(), source: e })?;
//! let metadata_url = url::Url::parse("https://ferry.example/tuf/metadata/").unwrap();
//! let targets_url = url::Url::parse("https://ferry.example/tuf/targets/").unwrap();
//! let catalog = Catalog::refresh(Path::new("DEVICE/catalog"), &pinned_root, &metadata_url, &targets_url).await?;
//! let current = Version::parse("1.9")?;
//! let query = DeviceQuery { device_class: "gw", audience: "customer", current_version: &current };
//! if let Some(offer) = offer::select_offer(catalog.releases(), &query) {
//!     println!("offer {} ({})", offer.version, offer.release.target.name);
//! }
//! # Ok(()) }
//! ```
//!
//! # Tests
//!
//! `cargo test` runs unit tests and the integration tests in `tests/`, which start a static
//! file server on 127.0.0.1 port 0 and stage each attack for real. `tests/python_tuf.rs`
//! needs python3 with the `tuf` package (python-tuf 7) and fails, saying so, without it.
//!
//! [TUF 1.0]: https://theupdateframework.github.io/specification/v1.0.0/

#![deny(missing_docs)]

mod client;
pub mod conformance;
mod datastore;
mod error;
mod inspect;
pub mod offer;
mod release;
pub mod repo;
mod schema;
mod store;
mod transport;
mod trusted;
mod updater;
mod verify;
mod warning;

/// Entry points for the fuzz targets in `fuzz/` (built with `--cfg fuzzing` only): the
/// metadata parser and the delegation path patterns, which are crate-private otherwise.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    /// Parses `bytes` as metadata of each top-level role, as a refresh would.
    pub fn parse_metadata(bytes: &[u8]) {
        use crate::schema::{Root, Snapshot, Targets, Timestamp, parse};
        let _ = parse::<Root>("root", bytes);
        let _ = parse::<Timestamp>("timestamp", bytes);
        let _ = parse::<Snapshot>("snapshot", bytes);
        let _ = parse::<Targets>("targets", bytes);
    }

    /// Whether `target_path` matches a delegation's `pattern`.
    pub fn path_matches(target_path: &str, pattern: &str) -> bool {
        crate::schema::path_matches(target_path, pattern)
    }
}

pub use client::{Catalog, FetchLimits, MetadataVersions, RefreshOptions, Release, TargetInfo};
pub use datastore::trusted_metadata_dir;
pub use error::CatalogError;
pub use inspect::{RootSummary, StoredMetadata, StoredRole, check_root, stored_metadata};
pub use offer::{DeviceQuery, Offer};
pub use release::{
    CHUNK_INDEX_TARGET_SUFFIX, CHUNKS_TARGET_SUFFIX, MANIFEST_TARGET_SUFFIX, PAYLOAD_TARGET_SUFFIX,
    PayloadKind, ReleaseInfo, chunk_index_target_name, chunks_target_name, manifest_target_name,
    payload_target_name,
};
pub use repo::NewTarget;
pub use transport::{FetchObserver, Fetched};
pub use warning::{CLOCK_AHEAD_LIMIT_SECS, CatalogWarning};
