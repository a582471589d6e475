//! Ed25519 signing keys, public keys, key ids and the public-key file devices trust.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use ferry_types::{Diagnose, Sha256};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::types::hex_bytes_newtype;

hex_bytes_newtype!(
    /// A key id: the SHA-256 of the 32 raw bytes of an Ed25519 public key.
    ///
    /// This departs from TUF, whose key ids hash the canonical JSON of a key object: ours
    /// does not depend on how the key is written down.
    KeyId,
    32,
    "key id"
);
hex_bytes_newtype!(
    /// An Ed25519 signature (64 bytes, 128 hex digits).
    SignatureBytes,
    64,
    "signature"
);

/// A key could not be read or does not match its stated id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The bytes are not a key of the expected form.
    #[error("the {form} key is malformed: {reason}")]
    Malformed {
        /// `"PKCS#8 private"`, `"public key file"`, ….
        form: &'static str,
        /// What the parser said.
        reason: String,
    },
    /// A public-key file names a key id that is not the hash of its key.
    #[error("the public key file says key id {stated} but its key has id {actual}")]
    KeyIdMismatch {
        /// The id written in the file.
        stated: KeyId,
        /// The id of the key in the file.
        actual: KeyId,
    },
}

impl Diagnose for KeyError {
    fn code(&self) -> &'static str {
        match self {
            KeyError::Malformed { .. } => "KEY_MALFORMED",
            KeyError::KeyIdMismatch { .. } => "KEY_ID_MISMATCH",
        }
    }

    fn fix(&self) -> String {
        match self {
            KeyError::Malformed { .. } => {
                "Regenerate the key file with ferry, or restore it from the backup of the signing keys".into()
            }
            KeyError::KeyIdMismatch { .. } => {
                "Republish the public key file from the server's key with `PublicKey::to_file_bytes`".into()
            }
        }
    }
}

/// An Ed25519 public key that verifies tickets or credentials.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    key_id: KeyId,
}

/// The public-key file: `{"ed25519":"<64 hex>","keyid":"<64 hex>"}`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicKeyFile {
    ed25519: RawPublicKey,
    keyid: KeyId,
}

hex_bytes_newtype!(
    /// The 32 raw bytes of a public key in hex, as the key file holds them.
    RawPublicKey,
    32,
    "public key"
);

impl PublicKey {
    /// Reads a public key from its 32 raw bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PublicKey, KeyError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|error| KeyError::Malformed {
            form: "raw Ed25519 public",
            reason: error.to_string(),
        })?;
        Ok(PublicKey::from_verifying_key(key))
    }

    fn from_verifying_key(key: VerifyingKey) -> PublicKey {
        PublicKey {
            key_id: KeyId(Sha256::of(key.as_bytes()).0),
            key,
        }
    }

    /// The 32 raw bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The key id (SHA-256 of the raw bytes).
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The key as an SPKI PEM block (`-----BEGIN PUBLIC KEY-----`).
    pub fn to_pem(&self) -> String {
        // Encoding a valid 32-byte Ed25519 key as SPKI cannot fail.
        self.key
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_default()
    }

    /// The public-key file (served for diagnostics at `/v1/keys/personalization.pub`): canonical JSON
    /// `{"ed25519":"<hex>","keyid":"<hex>"}` and a newline.
    pub fn to_file_bytes(&self) -> Vec<u8> {
        let file = PublicKeyFile {
            ed25519: RawPublicKey(self.to_bytes()),
            keyid: self.key_id,
        };
        let mut bytes = crate::canonical::to_canonical_json(&file);
        bytes.push(b'\n');
        bytes
    }

    /// Reads a public-key file: the JSON form of [`PublicKey::to_file_bytes`] (whose key id
    /// must match the key) or an SPKI PEM block.
    pub fn from_file_bytes(bytes: &[u8]) -> Result<PublicKey, KeyError> {
        let text = std::str::from_utf8(bytes).map_err(|_| KeyError::Malformed {
            form: "public key file",
            reason: "not UTF-8".to_owned(),
        })?;
        let text = text.trim();
        if text.starts_with("-----BEGIN") {
            let key =
                VerifyingKey::from_public_key_pem(text).map_err(|error| KeyError::Malformed {
                    form: "PEM public",
                    reason: error.to_string(),
                })?;
            return Ok(PublicKey::from_verifying_key(key));
        }
        let file: PublicKeyFile =
            serde_json::from_str(text).map_err(|error| KeyError::Malformed {
                form: "public key file",
                reason: error.to_string(),
            })?;
        let key = PublicKey::from_bytes(&file.ed25519.0)?;
        if key.key_id != file.keyid {
            return Err(KeyError::KeyIdMismatch {
                stated: file.keyid,
                actual: key.key_id,
            });
        }
        Ok(key)
    }

    /// Checks `signature` over `message` (strict: rejects small-order keys and malleable
    /// signatures).
    pub(crate) fn verify_strict(&self, message: &[u8], signature: &SignatureBytes) -> bool {
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.key.verify_strict(message, &signature).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey(keyid {})", self.key_id)
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(text: &str) -> Result<Self, KeyError> {
        PublicKey::from_file_bytes(text.as_bytes())
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(self.to_bytes()))
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let bytes = RawPublicKey::deserialize(deserializer)?;
        PublicKey::from_bytes(&bytes.0).map_err(D::Error::custom)
    }
}

/// An Ed25519 private key with its key id; the common core of [`crate::Signer`] and
/// [`crate::CredentialSigner`].
#[derive(Clone)]
pub(crate) struct KeyPair {
    signing_key: SigningKey,
    public_key: PublicKey,
}

impl KeyPair {
    pub(crate) fn generate() -> KeyPair {
        let mut secret = [0u8; 32];
        rand::fill(&mut secret);
        KeyPair::from_signing_key(SigningKey::from_bytes(&secret))
    }

    fn from_signing_key(signing_key: SigningKey) -> KeyPair {
        KeyPair {
            public_key: PublicKey::from_verifying_key(signing_key.verifying_key()),
            signing_key,
        }
    }

    pub(crate) fn from_pkcs8(der: &[u8]) -> Result<KeyPair, KeyError> {
        let signing_key = SigningKey::from_pkcs8_der(der).map_err(|error| KeyError::Malformed {
            form: "PKCS#8 private",
            reason: error.to_string(),
        })?;
        Ok(KeyPair::from_signing_key(signing_key))
    }

    pub(crate) fn to_pkcs8(&self) -> Vec<u8> {
        // Encoding a valid Ed25519 key as PKCS#8 cannot fail.
        self.signing_key
            .to_pkcs8_der()
            .map(|document| document.as_bytes().to_vec())
            .unwrap_or_default()
    }

    pub(crate) fn public_key(&self) -> PublicKey {
        self.public_key
    }

    pub(crate) fn sign(&self, message: &[u8]) -> SignatureBytes {
        use ed25519_dalek::Signer as _;
        SignatureBytes(self.signing_key.sign(message).to_bytes())
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPair(keyid {})", self.public_key.key_id)
    }
}
