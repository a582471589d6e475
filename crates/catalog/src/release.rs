//! The custom metadata ferry attaches to each release target.

use crate::error::CatalogError;
use ferry_types::{DeltaDigest, RootHash, Sha256, Version};
use serde::{Deserialize, Serialize};

/// What a payload installs from: a whole image, or a delta from one exact earlier version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PayloadKind {
    /// A full image, installable over any version.
    Full,
    /// A delta that applies only over the exact version `from`.
    Delta {
        /// The version the delta applies to.
        from: Version,
    },
    /// The chunked form of the full image: a device fetches the index
    /// ([`chunk_index_target_name`]), reuses what its running slot holds and downloads only
    /// the missing chunks by byte ranges. Installable over any version.
    Chunks,
}

/// The custom metadata of a release target, as signed in the catalog (`custom` of the TUF
/// target). Every field is covered by the targets role's signature. Unknown fields are ignored,
/// so a newer server can add fields without breaking older devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseInfo {
    /// The device class the image is built for (`identity.json`'s `device_class`).
    pub device_class: String,
    /// The version this payload installs.
    pub version: Version,
    /// The build identifier the personalization service signs tickets for.
    pub build_id: String,
    /// The audiences the release is open to (`customer`, `beta`, …).
    pub audiences: Vec<String>,
    /// The component the payload installs (for example `system`).
    pub component: String,
    /// Full image, or delta from one exact version.
    pub payload: PayloadKind,
    /// Bytes to download (the target's length).
    pub download_size: u64,
    /// Bytes once decompressed and applied (the size of the system image).
    pub unarchived_size: u64,
    /// SHA-256 of the resulting system image.
    pub image_sha256: Sha256,
    /// The signed dm-verity root hash of the resulting image, when the image is sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal_root_hash: Option<RootHash>,
    /// For a delta target: the pin of the delta's manifest (`ferry_delta::pinned_digest`),
    /// checked before the delta writes a byte. Devices refuse a delta without it (catalogs
    /// from before it was signed) and fall back to the next payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_manifest_digest: Option<DeltaDigest>,
}

impl ReleaseInfo {
    /// Whether this release is open to `audience`.
    pub fn is_open_to(&self, audience: &str) -> bool {
        self.audiences.iter().any(|open| open == audience)
    }

    /// The `custom` object to sign into the target.
    pub fn to_custom(&self) -> serde_json::Value {
        // Serializing a struct of strings, numbers and lists cannot fail.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// Reads a target's `custom` object.
    pub fn from_custom(target: &str, custom: &serde_json::Value) -> Result<Self, CatalogError> {
        serde_json::from_value(custom.clone()).map_err(|source| CatalogError::InvalidReleaseInfo {
            target: target.to_owned(),
            reason: source.to_string(),
        })
    }
}

/// Suffix of full-payload target names (`<class>-<version>.payload.zst`).
pub const PAYLOAD_TARGET_SUFFIX: &str = ".payload.zst";
/// Suffix of manifest target names (`<class>-<version>.manifest.json`).
pub const MANIFEST_TARGET_SUFFIX: &str = ".manifest.json";

/// Suffix of chunked-payload target names (`<class>-<version>.chunks.zst`).
pub const CHUNKS_TARGET_SUFFIX: &str = ".chunks.zst";
/// Suffix of chunk-index target names (`<class>-<version>.chunks.index`).
pub const CHUNK_INDEX_TARGET_SUFFIX: &str = ".chunks.index";

/// The target name of a release's chunked payload: `<class>-<version>.chunks.zst`. It carries
/// a [`ReleaseInfo`] with [`PayloadKind::Chunks`].
pub fn chunks_target_name(device_class: &str, version: &str) -> String {
    format!("{device_class}-{version}{CHUNKS_TARGET_SUFFIX}")
}

/// The index target that goes with a chunked-payload target (`….chunks.zst` →
/// `….chunks.index`), or `None` when `chunks_target` is not a chunked-payload name. Its
/// signed length and digest let the device trust the index before it plans anything.
pub fn chunk_index_target_name(chunks_target: &str) -> Option<String> {
    chunks_target
        .strip_suffix(CHUNKS_TARGET_SUFFIX)
        .map(|stem| format!("{stem}{CHUNK_INDEX_TARGET_SUFFIX}"))
}

/// The target name of a release's full payload: `<class>-<version>.payload.zst`. It carries the
/// [`ReleaseInfo`]; its manifest is [`manifest_target_name`] of it.
pub fn payload_target_name(device_class: &str, version: &str) -> String {
    format!("{device_class}-{version}{PAYLOAD_TARGET_SUFFIX}")
}

/// The manifest target that goes with a payload target (`….payload.zst` →
/// `….manifest.json`), or `None` when `payload_target` is not a payload name.
pub fn manifest_target_name(payload_target: &str) -> Option<String> {
    payload_target
        .strip_suffix(PAYLOAD_TARGET_SUFFIX)
        .map(|stem| format!("{stem}{MANIFEST_TARGET_SUFFIX}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_types::Diagnose;

    fn v(text: &str) -> Version {
        Version::parse(text).expect("valid version")
    }

    /// One version grammar for the product: ferry_types::Version's (its order and what it
    /// refuses are tested there; a leading zero would give one version two spellings, so
    /// "01.2" is refused, not read as "1.2"). Here: what it refuses is the catalog's
    /// `CATALOG_VERSION_INVALID`.
    #[test]
    fn malformed_versions_are_rejected() {
        let refused = [
            "01.2", "", ".", "1.", ".1", "1..2", "1.a", "v1", "1.-2", " 1",
        ];
        for bad in refused.into_iter().chain(["99999999999999999999"]) {
            let error = CatalogError::from(Version::parse(bad).expect_err(bad));
            assert_eq!(error.code(), "CATALOG_VERSION_INVALID", "{bad}");
        }
    }

    #[test]
    fn release_info_round_trips_and_tolerates_new_fields() {
        let info = ReleaseInfo {
            device_class: "gateway".into(),
            version: v("1.2"),
            build_id: "24A100".into(),
            audiences: vec!["beta".into()],
            component: "system".into(),
            payload: PayloadKind::Delta { from: v("1.1") },
            download_size: 10,
            unarchived_size: 20,
            image_sha256: Sha256::of(b"image"),
            seal_root_hash: None,
            delta_manifest_digest: None,
        };
        let custom = info.to_custom();
        assert_eq!(custom["payload"]["kind"], "delta");
        assert_eq!(custom["payload"]["from"], "1.1");
        assert_eq!(ReleaseInfo::from_custom("t", &custom).expect("parse"), info);
        let mut extra = custom.clone();
        extra["added_later"] = serde_json::json!(1);
        assert_eq!(ReleaseInfo::from_custom("t", &extra).expect("parse"), info);
        let chunks = ReleaseInfo {
            payload: PayloadKind::Chunks,
            ..info.clone()
        };
        assert_eq!(chunks.to_custom()["payload"]["kind"], "chunks");
        assert_eq!(
            ReleaseInfo::from_custom("t", &chunks.to_custom()).expect("parse"),
            chunks
        );
        assert_eq!(
            chunk_index_target_name(&chunks_target_name("gw", "1.2")).as_deref(),
            Some("gw-1.2.chunks.index")
        );
        assert_eq!(chunk_index_target_name("gw-1.2.payload.zst"), None);
        let mut broken = custom.clone();
        broken["version"] = serde_json::json!("1.x");
        assert!(ReleaseInfo::from_custom("t", &broken).is_err());
    }
}
