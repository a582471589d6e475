//! Signature checks: a threshold of distinct trusted keys must have signed a document's
//! canonical bytes. Keys are ed25519, ECDSA P-256/P-384 and RSA (PSS or PKCS#1 v1.5, SHA-256),
//! the types the TUF spec and python-tuf name.

use crate::error::CatalogError;
use crate::schema::{Envelope, PublicKey, RoleKeys};
use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use rustls_pki_types::SubjectPublicKeyInfoDer;
use rustls_pki_types::pem::PemObject;
use std::collections::BTreeMap;

/// Checks that `threshold` of the distinct `keyids` of `role_keys` signed `envelope`. An
/// invalid signature by one key does not fail the check if enough others are valid.
pub(crate) fn verify_threshold(
    role: &str,
    envelope: &Envelope,
    keys: &BTreeMap<String, PublicKey>,
    role_keys: &RoleKeys,
) -> Result<(), CatalogError> {
    let mut valid = 0u64;
    let mut seen = std::collections::BTreeSet::new();
    for keyid in &role_keys.keyids {
        if !seen.insert(keyid) {
            continue;
        }
        let (Some(key), Some(sig)) = (keys.get(keyid), envelope.signatures.get(keyid)) else {
            continue;
        };
        if key_verifies(key, &envelope.canonical, sig) {
            valid += 1;
        }
    }
    if valid >= role_keys.threshold {
        Ok(())
    } else {
        Err(CatalogError::BadSignature {
            role: role.to_owned(),
            detail: format!(
                "{valid} valid signature(s) from trusted keys, {} needed",
                role_keys.threshold
            ),
        })
    }
}

/// Whether `sig` is a valid signature of `message` by `key` (false for unsupported keys).
fn key_verifies(key: &PublicKey, message: &[u8], sig: &[u8]) -> bool {
    let algorithm: &'static dyn VerificationAlgorithm =
        match (key.keytype.as_str(), key.scheme.as_str()) {
            ("ed25519", "ed25519") => {
                let Ok(public) = hex::decode(&key.keyval.public) else {
                    return false;
                };
                return UnparsedPublicKey::new(&signature::ED25519, public)
                    .verify(message, sig)
                    .is_ok();
            }
            ("ecdsa" | "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256") => {
                &signature::ECDSA_P256_SHA256_ASN1
            }
            ("ecdsa" | "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp384") => {
                &signature::ECDSA_P384_SHA384_ASN1
            }
            ("rsa", "rsassa-pss-sha256") => &signature::RSA_PSS_2048_8192_SHA256,
            ("rsa", "rsa-pkcs1v15-sha256") => &signature::RSA_PKCS1_2048_8192_SHA256,
            _ => return false,
        };
    let Ok(spki) = SubjectPublicKeyInfoDer::from_pem_slice(key.keyval.public.as_bytes()) else {
        return false;
    };
    UnparsedPublicKey::new(algorithm, spki.as_ref())
        .verify(message, sig)
        .is_ok()
}
