//! Enrollment: one-time enrollment tokens, and the signed bearer credential a device gets in
//! exchange and presents on every later request.
//!
//! A credential is `base64url(canonical JSON) "." base64url(Ed25519 signature)`, both without
//! padding. It passes through TLS-terminating load balancers and any stateless server replica
//! can check it with the credential public key; revocation is the server's database lookup of
//! `credential_id`, not this crate's.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use ferry_types::{DeviceId, Diagnose, Sha256};
use serde::{Deserialize, Serialize};

use crate::canonical::{to_canonical_json, type_marker};
use crate::keys::{KeyError, KeyId, KeyPair, PublicKey, SignatureBytes};
use crate::types::{ParseError, hex_bytes_newtype};

type_marker!(CredentialType, "ferry-credential/1");

/// Longest credential token accepted (a real one is about 250 bytes).
pub const MAX_CREDENTIAL_TOKEN_LEN: usize = 2048;

hex_bytes_newtype!(
    /// A credential's random id (16 bytes), the key the server's revocation list uses.
    CredentialId,
    16,
    "credential id"
);

/// The signed claims of a device credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    #[serde(rename = "_type")]
    kind: CredentialType,
    /// The enrolled device.
    pub device_id: DeviceId,
    /// Random id of this credential.
    pub credential_id: CredentialId,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
}

/// A credential just issued and its bearer token (give the token to the device once; store
/// only the credential id).
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCredential {
    /// The claims.
    pub credential: Credential,
    /// The bearer token the device sends (`Authorization: Bearer <token>`).
    pub token: String,
}

impl fmt::Debug for IssuedCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCredential")
            .field("credential", &self.credential)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// Signs device credentials with the server's credential key (keep it apart from the
/// personalization key).
#[derive(Debug, Clone)]
pub struct CredentialSigner {
    key_pair: KeyPair,
}

impl CredentialSigner {
    /// Makes a new random key.
    pub fn generate() -> CredentialSigner {
        CredentialSigner {
            key_pair: KeyPair::generate(),
        }
    }

    /// Reads a key from PKCS#8 DER.
    pub fn from_pkcs8(der: &[u8]) -> Result<CredentialSigner, KeyError> {
        Ok(CredentialSigner {
            key_pair: KeyPair::from_pkcs8(der)?,
        })
    }

    /// The key as PKCS#8 DER; store it with mode 0600.
    pub fn to_pkcs8(&self) -> Vec<u8> {
        self.key_pair.to_pkcs8()
    }

    /// The public key that checks credentials.
    pub fn public_key(&self) -> PublicKey {
        self.key_pair.public_key()
    }

    /// Issues a credential with a fresh random id for `device_id`.
    pub fn issue(&self, device_id: DeviceId, now: DateTime<Utc>) -> IssuedCredential {
        let mut id = [0u8; 16];
        rand::fill(&mut id);
        let credential = Credential {
            kind: CredentialType,
            device_id,
            credential_id: CredentialId(id),
            issued_at: now,
        };
        let claims = to_canonical_json(&credential);
        let signature = self.key_pair.sign(&claims);
        let token = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&claims),
            URL_SAFE_NO_PAD.encode(signature.0)
        );
        IssuedCredential { credential, token }
    }
}

/// A credential token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The token is not of the credential form.
    #[error("the credential token is malformed: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// The signature does not verify with the credential key.
    #[error("the credential's signature does not verify with key {key_id}")]
    BadSignature {
        /// The key tried.
        key_id: KeyId,
    },
}

impl Diagnose for CredentialError {
    fn code(&self) -> &'static str {
        match self {
            CredentialError::Malformed { .. } => "CREDENTIAL_MALFORMED",
            CredentialError::BadSignature { .. } => "CREDENTIAL_BAD_SIGNATURE",
        }
    }

    fn fix(&self) -> String {
        match self {
            CredentialError::Malformed { .. } | CredentialError::BadSignature { .. } => {
                "Enroll the device again with a new enrollment token".into()
            }
        }
    }
}

fn malformed(reason: impl Into<String>) -> CredentialError {
    CredentialError::Malformed {
        reason: reason.into(),
    }
}

/// Checks a credential token's form and signature and returns its claims. Revocation is not
/// checked here: look `credential_id` up in the server's database.
pub fn verify_credential(token: &str, key: &PublicKey) -> Result<Credential, CredentialError> {
    if token.len() > MAX_CREDENTIAL_TOKEN_LEN {
        return Err(malformed(format!(
            "{} bytes, more than {MAX_CREDENTIAL_TOKEN_LEN}",
            token.len()
        )));
    }
    let (claims_b64, signature_b64) = token
        .split_once('.')
        .ok_or_else(|| malformed("no '.' between claims and signature"))?;
    let claims = URL_SAFE_NO_PAD
        .decode(claims_b64)
        .map_err(|error| malformed(format!("claims are not base64url: {error}")))?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|error| malformed(format!("signature is not base64url: {error}")))?;
    let signature: [u8; 64] = signature
        .try_into()
        .map_err(|_| malformed("signature is not 64 bytes"))?;
    if !key.verify_strict(&claims, &SignatureBytes(signature)) {
        return Err(CredentialError::BadSignature {
            key_id: key.key_id(),
        });
    }
    serde_json::from_slice(&claims)
        .map_err(|error| malformed(format!("claims are not a credential: {error}")))
}

/// A one-time enrollment token an administrator hands to a device (43 base64url characters,
/// 256 random bits). The server stores only [`EnrollmentToken::sha256`].
#[derive(Clone, PartialEq, Eq)]
pub struct EnrollmentToken(String);

impl EnrollmentToken {
    /// Makes a token from the operating system's random source.
    pub fn random() -> EnrollmentToken {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        EnrollmentToken(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The token text, to show the administrator once.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SHA-256 of the token text: what the server stores and looks up.
    pub fn sha256(&self) -> Sha256 {
        Sha256::of(self.0.as_bytes())
    }
}

impl FromStr for EnrollmentToken {
    type Err = ParseError;
    fn from_str(text: &str) -> Result<Self, ParseError> {
        let text = text.trim();
        let decoded = URL_SAFE_NO_PAD.decode(text).ok();
        match decoded {
            Some(bytes) if bytes.len() == 32 => Ok(EnrollmentToken(text.to_owned())),
            _ => Err(ParseError {
                what: "enrollment token",
                value: String::new(),
                reason: "not 43 base64url characters",
            }),
        }
    }
}

impl fmt::Debug for EnrollmentToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EnrollmentToken(sha256 {})", self.sha256())
    }
}
