//! SHA-256 digests, seal root hashes and delta pins as types, 64 lowercase hex digits on the
//! wire.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::Digest;

use crate::Diagnose;

/// A SHA-256 digest (of an image, a payload, a nonce, a key). Serialized as 64 lowercase
/// hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256(pub [u8; 32]);

/// The root hash of a seal: the dm-verity root (SHA-256 of the salt and the top hash block)
/// of one system image. The catalog and the ticket sign it, the kernel enforces it.
/// Serialized as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RootHash(pub [u8; 32]);

impl Sha256 {
    /// Digest of `data` in one call.
    pub fn of(data: &[u8]) -> Sha256 {
        let mut h = Sha256Hasher::new();
        h.update(data);
        h.finish()
    }
}

/// The digest a signed catalog pins for a tailored delta: the blake3 of its manifest (and, for
/// a delta below a filesystem's compression, of its header), as `ferry_delta::pinned_digest`
/// reads it. The device refuses a delta whose head does not match before a byte reaches the
/// slot. Serialized as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeltaDigest(pub [u8; 32]);

/// Incremental SHA-256 (SHA-NI when the CPU has it).
#[derive(Clone, Default)]
pub struct Sha256Hasher(sha2::Sha256);

impl Sha256Hasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self(sha2::Sha256::new())
    }
    /// Feed bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    /// The digest of everything fed.
    pub fn finish(self) -> Sha256 {
        Sha256(self.0.finalize().into())
    }
}

impl std::io::Write for Sha256Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A string that is not 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a {what}: {why}")]
pub struct DigestError {
    what: &'static str,
    text: String,
    why: &'static str,
}

impl Diagnose for DigestError {
    fn code(&self) -> &'static str {
        "DIGEST_INVALID"
    }
    fn fix(&self) -> String {
        format!(
            "Give the {} as 64 lowercase hex digits, as ferry prints it",
            self.what
        )
    }
}

/// Decodes exactly 64 lowercase hex digits: one spelling per value, so a digest inside a
/// signed document never parses from two different texts.
fn parse_hex32(what: &'static str, text: &str) -> Result<[u8; 32], DigestError> {
    let err = |why| DigestError {
        what,
        text: text.chars().take(80).collect(),
        why,
    };
    if text.len() != 64 {
        return Err(err("it is not 64 characters long"));
    }
    if !text
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(err("it is not lowercase hexadecimal"));
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).map_err(|_| err("it is not lowercase hexadecimal"))?;
    Ok(out)
}

/// Display (lowercase hex), Debug, FromStr and serde for a 32-byte digest newtype.
macro_rules! digest_newtype {
    ($name:ident, $what:literal) => {
        impl $name {
            /// Wraps raw bytes.
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }
            /// The raw bytes.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
            /// Lowercase hex.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.to_hex())
            }
        }

        impl std::str::FromStr for $name {
            type Err = DigestError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_hex32($what, s).map($name)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

digest_newtype!(Sha256, "SHA-256 digest");
digest_newtype!(RootHash, "root hash");
digest_newtype!(DeltaDigest, "delta manifest digest");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector_and_round_trip() {
        let d = Sha256::of(b"abc");
        assert_eq!(
            d.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.to_hex().parse::<Sha256>().unwrap(), d);
        assert!("xyz".parse::<Sha256>().is_err());
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{d}\""));
        assert_eq!(serde_json::from_str::<Sha256>(&json).unwrap(), d);
    }

    #[test]
    fn one_spelling_per_digest() {
        let root = RootHash::from_bytes([0xab; 32]);
        assert_eq!(root.to_string(), "ab".repeat(32));
        assert_eq!(root.to_string().parse::<RootHash>().unwrap(), root);
        let upper = "AB".repeat(32);
        let prefixed = format!("sha256:{}", "ab".repeat(32));
        for bad in [
            "",
            "ab",
            &"zz".repeat(32),
            &"ab".repeat(33),
            &upper,
            &prefixed,
        ] {
            let error = bad.parse::<RootHash>().expect_err(bad);
            assert_eq!(error.code(), "DIGEST_INVALID", "{bad:?}");
            assert!(bad.parse::<Sha256>().is_err(), "{bad:?}");
        }
    }
}
