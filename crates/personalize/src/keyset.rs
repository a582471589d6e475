//! The personalization key set: which public keys a device accepts tickets from, and which
//! one the service signs with now. Published as the TUF target [`KEY_SET_TARGET`], so it
//! reaches devices with the catalog's signatures and rotates the TUF way.
//!
//! The file is OLPC canonical JSON (the bytes the catalog signs are the only form):
//!
//! ```text
//! {"_type":"ferry-personalization-keys/1","current":"<keyid>",
//!  "keys":[{"ed25519":"<64 hex>","keyid":"<64 hex>"},…],"version":N}
//! ```
//!
//! Keys are listed sorted by key id, each once; `current` is one of them; `version` grows by
//! one at each change, and a device never goes back to a lower version.

use ferry_types::Diagnose;
use serde::{Deserialize, Serialize};

use crate::canonical::{to_canonical_json, type_marker};
use crate::keys::{KeyId, PublicKey};

/// The flat TUF target name of the key set (the catalog's target names carry no `/`).
pub const KEY_SET_TARGET: &str = "keys-personalization.json";

type_marker!(KeySetType, "ferry-personalization-keys/1");

/// The keys tickets may be signed with, and the one the service signs with now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySet {
    version: u64,
    current: KeyId,
    keys: Vec<PublicKey>,
}

/// The wire form; [`KeySet::from_bytes`] checks everything it cannot express.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeySetFile {
    #[serde(rename = "_type")]
    kind: KeySetType,
    version: u64,
    current: KeyId,
    keys: Vec<KeyEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    ed25519: PublicKey,
    keyid: KeyId,
}

/// A key set that cannot be read, or a change to one that is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySetError {
    /// The bytes are not a valid, canonical key set.
    #[error("the personalization key set is malformed: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// The offered key set is older than the one already trusted.
    #[error(
        "the personalization key set offered (version {offered}) does not replace the trusted one (version {trusted})"
    )]
    RolledBack {
        /// Version already trusted.
        trusted: u64,
        /// Version offered.
        offered: u64,
    },
    /// A key id the set does not list.
    #[error(
        "key {key_id} is not in the personalization key set (it lists {})",
        list(known)
    )]
    UnknownKey {
        /// The key asked for.
        key_id: KeyId,
        /// The keys listed.
        known: Vec<KeyId>,
    },
    /// The current signing key cannot be retired.
    #[error("key {key_id} is the current signing key and cannot be retired")]
    RetireCurrent {
        /// The current key.
        key_id: KeyId,
    },
    /// The key is already in the set.
    #[error("key {key_id} is already in the personalization key set")]
    AlreadyListed {
        /// The key.
        key_id: KeyId,
    },
}

impl Diagnose for KeySetError {
    fn code(&self) -> &'static str {
        match self {
            KeySetError::Malformed { .. } => "KEYSET_MALFORMED",
            KeySetError::RolledBack { .. } => "KEYSET_ROLLED_BACK",
            KeySetError::UnknownKey { .. } => "KEYSET_UNKNOWN_KEY",
            KeySetError::RetireCurrent { .. } => "KEYSET_RETIRE_CURRENT",
            KeySetError::AlreadyListed { .. } => "KEYSET_ALREADY_LISTED",
        }
    }

    fn fix(&self) -> String {
        let fix = match self {
            KeySetError::Malformed { .. } => {
                "Republish the key set from the server (ferry server personalization-key list --data DIR shows it)"
            }
            KeySetError::RolledBack { .. } => {
                "Check the server's catalog and any mirror for an old key set (the device keeps the set it trusts)"
            }
            KeySetError::UnknownKey { .. } => {
                "Use a key id that ferry server personalization-key list shows"
            }
            KeySetError::RetireCurrent { .. } => {
                "Rotate first (ferry server personalization-key rotate), then retire the old key"
            }
            KeySetError::AlreadyListed { .. } => "Do nothing: the key is already trusted",
        };
        fix.into()
    }
}

fn list(ids: &[KeyId]) -> String {
    if ids.is_empty() {
        return "no keys".into();
    }
    ids.iter()
        .map(KeyId::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn malformed(reason: impl Into<String>) -> KeySetError {
    KeySetError::Malformed {
        reason: reason.into(),
    }
}

impl KeySet {
    /// The first key set: `key` alone, current, version 1.
    pub fn first(key: PublicKey) -> KeySet {
        KeySet {
            version: 1,
            current: key.key_id(),
            keys: vec![key],
        }
    }

    /// The next version with `key` added and made the signing key; the others stay trusted
    /// (the overlap) until [`KeySet::retired`] drops them.
    pub fn rotated(&self, key: PublicKey) -> Result<KeySet, KeySetError> {
        if self.keys.iter().any(|k| k.key_id() == key.key_id()) {
            return Err(KeySetError::AlreadyListed {
                key_id: key.key_id(),
            });
        }
        let mut keys = self.keys.clone();
        keys.push(key);
        keys.sort_by_key(PublicKey::key_id);
        Ok(KeySet {
            version: self.version.saturating_add(1),
            current: key.key_id(),
            keys,
        })
    }

    /// The next version without `key_id`. The current key cannot be retired.
    pub fn retired(&self, key_id: KeyId) -> Result<KeySet, KeySetError> {
        if key_id == self.current {
            return Err(KeySetError::RetireCurrent { key_id });
        }
        if !self.keys.iter().any(|k| k.key_id() == key_id) {
            return Err(KeySetError::UnknownKey {
                key_id,
                known: self.key_ids(),
            });
        }
        Ok(KeySet {
            version: self.version.saturating_add(1),
            current: self.current,
            keys: self
                .keys
                .iter()
                .copied()
                .filter(|k| k.key_id() != key_id)
                .collect(),
        })
    }

    /// The version (1 for the first set, one more at each change).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The id of the key the service signs with now.
    pub fn current(&self) -> KeyId {
        self.current
    }

    /// Every trusted key, sorted by key id.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// Every trusted key id, sorted.
    pub fn key_ids(&self) -> Vec<KeyId> {
        self.keys.iter().map(PublicKey::key_id).collect()
    }

    /// The canonical bytes: what the catalog signs as [`KEY_SET_TARGET`].
    pub fn to_bytes(&self) -> Vec<u8> {
        to_canonical_json(&KeySetFile {
            kind: KeySetType,
            version: self.version,
            current: self.current,
            keys: self
                .keys
                .iter()
                .map(|key| KeyEntry {
                    ed25519: *key,
                    keyid: key.key_id(),
                })
                .collect(),
        })
    }

    /// Reads a key set, refusing anything but its canonical form: unknown fields, a key id
    /// that is not its key's, keys unsorted or listed twice, no keys, a `current` not listed,
    /// version 0, or bytes that are not exactly the canonical JSON.
    pub fn from_bytes(bytes: &[u8]) -> Result<KeySet, KeySetError> {
        let file: KeySetFile =
            serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))?;
        if file.version == 0 {
            return Err(malformed("version 0: versions start at 1"));
        }
        if file.keys.is_empty() {
            return Err(malformed("it lists no keys"));
        }
        for entry in &file.keys {
            if entry.ed25519.key_id() != entry.keyid {
                return Err(malformed(format!(
                    "key id {} is not the id of its key ({})",
                    entry.keyid,
                    entry.ed25519.key_id()
                )));
            }
        }
        if file.keys.windows(2).any(|w| w[0].keyid >= w[1].keyid) {
            return Err(malformed("keys must be sorted by key id, each listed once"));
        }
        if !file.keys.iter().any(|entry| entry.keyid == file.current) {
            return Err(malformed(format!(
                "the current key {} is not listed",
                file.current
            )));
        }
        let set = KeySet {
            version: file.version,
            current: file.current,
            keys: file.keys.into_iter().map(|entry| entry.ed25519).collect(),
        };
        if set.to_bytes() != bytes {
            return Err(malformed("it is not in canonical JSON form"));
        }
        Ok(set)
    }

    /// Whether `offered` may replace this set on a device: a higher version, or this very set
    /// again. A device keeps what it trusts when this fails.
    pub fn check_successor(&self, offered: &KeySet) -> Result<(), KeySetError> {
        if offered.version > self.version || offered == self {
            return Ok(());
        }
        Err(KeySetError::RolledBack {
            trusted: self.version,
            offered: offered.version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Signer;

    fn key() -> PublicKey {
        Signer::generate().public_key()
    }

    #[test]
    fn round_trips_through_its_canonical_bytes() {
        let set = KeySet::first(key()).rotated(key()).unwrap();
        let bytes = set.to_bytes();
        assert_eq!(KeySet::from_bytes(&bytes).unwrap(), set);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with(r#"{"_type":"ferry-personalization-keys/1","current":""#));
        assert!(text.ends_with(r#","version":2}"#), "{text}");
        assert!(!text.contains(' ') && !text.contains('\n'), "{text}");
    }

    #[test]
    fn rotation_adds_and_makes_current_retirement_removes() {
        let (one, two) = (key(), key());
        let first = KeySet::first(one);
        assert_eq!((first.version(), first.current()), (1, one.key_id()));
        let rotated = first.rotated(two).unwrap();
        assert_eq!(rotated.version(), 2);
        assert_eq!(rotated.current(), two.key_id());
        let mut both = vec![one.key_id(), two.key_id()];
        both.sort();
        assert_eq!(rotated.key_ids(), both, "sorted by key id");
        assert_eq!(
            rotated.rotated(two).unwrap_err().code(),
            "KEYSET_ALREADY_LISTED"
        );
        assert_eq!(
            rotated.retired(two.key_id()).unwrap_err(),
            KeySetError::RetireCurrent {
                key_id: two.key_id()
            }
        );
        let stranger = key().key_id();
        let unknown = rotated.retired(stranger).unwrap_err();
        assert_eq!(unknown.code(), "KEYSET_UNKNOWN_KEY");
        assert!(unknown.to_string().contains(&one.key_id().to_string()));
        let retired = rotated.retired(one.key_id()).unwrap();
        assert_eq!(retired.version(), 3);
        assert_eq!(retired.key_ids(), vec![two.key_id()]);
    }

    #[test]
    fn only_higher_versions_or_the_same_set_replace_a_trusted_one() {
        let v1 = KeySet::first(key());
        let v2 = v1.rotated(key()).unwrap();
        assert!(v1.check_successor(&v2).is_ok());
        assert!(v2.check_successor(&v2.clone()).is_ok());
        assert_eq!(
            v2.check_successor(&v1).unwrap_err(),
            KeySetError::RolledBack {
                trusted: 2,
                offered: 1
            }
        );
        // Same version, other keys: not a successor either.
        let other_v2 = v1.rotated(key()).unwrap();
        assert_eq!(
            v2.check_successor(&other_v2).unwrap_err().code(),
            "KEYSET_ROLLED_BACK"
        );
    }

    #[test]
    fn anything_but_the_canonical_form_is_refused() {
        let (one, two) = (key(), key());
        let set = KeySet::first(one).rotated(two).unwrap();
        let text = String::from_utf8(set.to_bytes()).unwrap();
        let refused = |bytes: &str, why: &str| {
            let error = KeySet::from_bytes(bytes.as_bytes()).unwrap_err();
            assert_eq!(error.code(), "KEYSET_MALFORMED", "{why}: {bytes}");
            error.to_string()
        };
        // Whitespace or a trailing newline: valid JSON, not canonical.
        refused(&format!("{text}\n"), "trailing newline");
        refused(&text.replace(",\"version\"", ", \"version\""), "space");
        // Unknown members, another _type, version 0.
        refused(
            &text.replace("{\"_type\"", "{\"extra\":1,\"_type\""),
            "extra",
        );
        refused(&text.replace("keys/1", "keys/2"), "type");
        refused(&text.replace("\"version\":2", "\"version\":0"), "version 0");
        // A current key that is not listed.
        let stranger = key().key_id().to_string();
        let current = set.current().to_string();
        assert!(refused(&text.replace(&current, &stranger), "current").contains("not"));
        // Keys out of order, listed twice, or none.
        let (a, b) = (
            serde_json::json!({"ed25519": hex::encode(set.keys()[0].to_bytes()), "keyid": set.keys()[0].key_id()}),
            serde_json::json!({"ed25519": hex::encode(set.keys()[1].to_bytes()), "keyid": set.keys()[1].key_id()}),
        );
        let with_keys = |keys: serde_json::Value| {
            let mut value: serde_json::Value = serde_json::from_str(&text).unwrap();
            value["keys"] = keys;
            String::from_utf8(to_canonical_json(&value)).unwrap()
        };
        refused(&with_keys(serde_json::json!([b, a])), "unsorted");
        refused(&with_keys(serde_json::json!([a, a])), "twice");
        refused(&with_keys(serde_json::json!([])), "none");
        // A key id that is not its key's.
        let mut wrong = a.clone();
        wrong["keyid"] = b["keyid"].clone();
        assert!(refused(&with_keys(serde_json::json!([wrong])), "keyid").contains("key id"));
        // The genuine bytes still pass.
        assert_eq!(KeySet::from_bytes(text.as_bytes()).unwrap(), set);
    }
}
