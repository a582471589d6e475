//! The custom metadata ferry attaches to each release target, and the small types it is made of.

use crate::error::CatalogError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// A release version: dot-separated unsigned numbers (`1.10.3`), ordered numerically, so
/// `1.10 > 1.9`. Missing trailing components count as zero, so `1.2` and `1.2.0` are equal.
#[derive(Debug, Clone)]
pub struct Version {
    components: Vec<u64>,
}

impl Version {
    /// Parses a version; fails on an empty string, an empty component, or anything but digits
    /// and dots.
    pub fn parse(input: &str) -> Result<Self, CatalogError> {
        let invalid = |reason: &str| CatalogError::InvalidVersion {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        if input.is_empty() {
            return Err(invalid("it is empty"));
        }
        if input.len() > 64 {
            return Err(invalid("it is longer than 64 characters"));
        }
        let mut components = Vec::new();
        for part in input.split('.') {
            if part.is_empty() {
                return Err(invalid("it has an empty component"));
            }
            if !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid("a component is not a decimal number"));
            }
            let value = part
                .parse::<u64>()
                .map_err(|_| invalid("a component is too large"))?;
            components.push(value);
        }
        Ok(Self { components })
    }

    /// The numeric components, most significant first.
    pub fn components(&self) -> &[u64] {
        &self.components
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let n_components = self.components.len().max(other.components.len());
        for component_idx in 0..n_components {
            let left = self.components.get(component_idx).copied().unwrap_or(0);
            let right = other.components.get(component_idx).copied().unwrap_or(0);
            match left.cmp(&right) {
                Ordering::Equal => {}
                unequal => return unequal,
            }
        }
        Ordering::Equal
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (component_idx, component) in self.components.iter().enumerate() {
            if component_idx > 0 {
                f.write_str(".")?;
            }
            write!(f, "{component}")?;
        }
        Ok(())
    }
}

impl FromStr for Version {
    type Err = CatalogError;
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Self::parse(input)
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A SHA-256 digest, written as 64 lowercase hex digits in JSON.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    /// Wraps raw digest bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Computes the digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(data);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&digest);
        Self(bytes)
    }

    /// Parses 64 hex digits.
    pub fn parse_hex(input: &str) -> Result<Self, CatalogError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(input, &mut bytes).map_err(|_| CatalogError::InvalidDigest {
            input: input.chars().take(80).collect(),
        })?;
        Ok(Self(bytes))
    }

    /// The raw digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({})", self.to_hex())
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse_hex(&text).map_err(serde::de::Error::custom)
    }
}

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
    pub image_sha256: Sha256Digest,
    /// The signed dm-verity root hash of the resulting image, when the image is sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal_root_hash: Option<Sha256Digest>,
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

    fn v(text: &str) -> Version {
        Version::parse(text).expect("valid version")
    }

    #[test]
    fn versions_order_numerically() {
        assert!(v("1.10") > v("1.9"));
        assert!(v("2") > v("1.99.99"));
        assert_eq!(v("1.2"), v("1.2.0"));
        assert!(v("1.2.1") > v("1.2"));
        assert_eq!(v("01.2").to_string(), "1.2");
    }

    #[test]
    fn malformed_versions_are_rejected() {
        for bad in [
            "",
            ".",
            "1.",
            ".1",
            "1..2",
            "1.a",
            "v1",
            "1.-2",
            " 1",
            "99999999999999999999",
        ] {
            let error = Version::parse(bad).expect_err(bad);
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
            image_sha256: Sha256Digest::of(b"image"),
            seal_root_hash: None,
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
