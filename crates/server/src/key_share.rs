//! The online private keys (personalization and director) shared with the other replicas
//! through the shared store, sealed, so a key rotated on one replica reaches the others
//! without copying files by hand.
//!
//! Each key is stored as `keys-sealed/<kind>/<keyid>.pk8.sealed`: a random 96-bit nonce,
//! then the PKCS#8 key under AES-256-GCM, the object's name as associated data. The sealing
//! key is derived (HKDF-SHA256) from `keys-online/credential.pk8`, which every replica
//! already shares (a device's credential must verify on all of them), so the bucket alone
//! never yields a signing key. `/artifacts/` never serves the prefix.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::hkdf;

use crate::tuf::CatalogPaths;
use crate::{DataDir, ServerError};

/// The store prefix of the sealed keys (refused by `/artifacts/`).
pub const PREFIX: &str = "keys-sealed";
/// HKDF's info: what the derived key is for (a new version would change it).
const INFO: &[u8] = b"ferry sealed online keys v1";

/// The store key of `kind`'s (`personalization` or `director`) sealed key `key_id`.
pub fn object_key(kind: &str, key_id: &str) -> String {
    format!("{PREFIX}/{kind}/{key_id}.pk8.sealed")
}

fn unusable(key: &str, cause: impl std::fmt::Display) -> ServerError {
    ServerError::SharedKeyUnusable {
        key: key.to_owned(),
        cause: cause.to_string(),
    }
}

/// The AES-256-GCM key derived from this replica's credential key.
fn sealing_key(paths: &CatalogPaths) -> Result<RandomizedNonceKey, ServerError> {
    let file = paths.online_keys.join(crate::pki::CREDENTIAL_KEY_FILE);
    let secret = std::fs::read(&file).map_err(|source| ServerError::Io {
        op: "reading the credential key (it seals the shared online keys)",
        source,
    })?;
    let mut bytes = [0u8; 32];
    hkdf::Salt::new(hkdf::HKDF_SHA256, &[])
        .extract(&secret)
        .expand(&[INFO], hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut bytes))
        .map_err(|_| unusable(&file.display().to_string(), "key derivation failed"))?;
    RandomizedNonceKey::new(&AES_256_GCM, &bytes)
        .map_err(|_| unusable(&file.display().to_string(), "AES-256-GCM refused the key"))
}

/// Seals `pkcs8` for the store under `key`: nonce, then ciphertext and tag.
fn seal(paths: &CatalogPaths, key: &str, pkcs8: &[u8]) -> Result<Vec<u8>, ServerError> {
    let mut sealed = pkcs8.to_vec();
    let nonce = sealing_key(paths)?
        .seal_in_place_append_tag(Aad::from(key.as_bytes()), &mut sealed)
        .map_err(|_| unusable(key, "sealing failed"))?;
    let mut object = nonce.as_ref().to_vec();
    object.extend_from_slice(&sealed);
    Ok(object)
}

/// Opens what [`seal`] made; refused if the object was changed, moved to another name, or
/// sealed by a replica with another credential key.
fn open(paths: &CatalogPaths, key: &str, object: &[u8]) -> Result<Vec<u8>, ServerError> {
    if object.len() < NONCE_LEN {
        return Err(unusable(key, "the object is shorter than its nonce"));
    }
    let (nonce, sealed) = object.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| unusable(key, "bad nonce"))?;
    let mut sealed = sealed.to_vec();
    let plain = sealing_key(paths)?
        .open_in_place(nonce, Aad::from(key.as_bytes()), &mut sealed)
        .map_err(|_| {
            unusable(
                key,
                "it does not open with this replica's credential key (changed, or sealed by a replica with another keys-online/credential.pk8)",
            )
        })?;
    Ok(plain.to_vec())
}

/// Puts the local key file `kind/<key_id>.pk8` in the shared store, sealed (nothing for a
/// local store).
pub async fn share(data: &DataDir, kind: &str, key_id: &str) -> Result<(), ServerError> {
    if !data.store.is_shared() {
        return Ok(());
    }
    let paths = CatalogPaths::new(&data.path, None);
    let file = paths.online_keys.join(kind).join(format!("{key_id}.pk8"));
    let pkcs8 = std::fs::read(&file).map_err(|source| ServerError::Io {
        op: "reading an online key to share it",
        source,
    })?;
    let key = object_key(kind, key_id);
    let object = seal(&paths, &key, &pkcs8)?;
    data.store.put_bytes(&key, object).await
}

/// Writes into `keys-online/` each key the published sets name that this replica lacks and
/// the shared store holds sealed (nothing for a local store). Returns how many it wrote.
pub async fn fetch_missing(data: &DataDir) -> Result<usize, ServerError> {
    if !data.store.is_shared() {
        return Ok(0);
    }
    let paths = CatalogPaths::new(&data.path, None);
    // No catalog yet (nothing published, or a development catalog about to be made): no set
    // names a key.
    if !paths.metadata.join("timestamp.json").exists() {
        return Ok(0);
    }
    let mut wanted = Vec::new();
    if let Some(set) = crate::keyset::published(&paths)? {
        wanted.extend(
            set.key_ids()
                .into_iter()
                .map(|id| (crate::keyset::KEYS_SUBDIR, id)),
        );
    }
    if let Some(set) = crate::director::published(&paths)? {
        wanted.extend(
            set.key_ids()
                .into_iter()
                .map(|id| (crate::director::KEYS_SUBDIR, id)),
        );
    }
    let mut written = 0;
    for (kind, id) in wanted {
        let id = id.to_string();
        let file = paths.online_keys.join(kind).join(format!("{id}.pk8"));
        if file.exists() {
            continue;
        }
        let key = object_key(kind, &id);
        let object = match data.store.get_bytes(&key).await {
            Ok(object) => object,
            Err(ServerError::Store(object_store::Error::NotFound { .. })) => continue,
            Err(e) => return Err(e),
        };
        let pkcs8 = open(&paths, &key, &object)?;
        ferry_durable::create_dir(&paths.online_keys.join(kind)).map_err(|source| {
            ServerError::Io {
                op: "creating an online keys directory",
                source,
            }
        })?;
        crate::pki::write_secret(&file, &pkcs8)?;
        tracing::info!(kind, key_id = %id, "took a rotated online key from the shared store");
        written += 1;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_key_opens_only_under_its_name_and_credential_key() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = CatalogPaths::new(tmp.path(), None);
        std::fs::create_dir_all(&paths.online_keys).unwrap();
        let credential = paths.online_keys.join(crate::pki::CREDENTIAL_KEY_FILE);
        std::fs::write(&credential, b"credential key one").unwrap();
        let key = object_key("personalization", "ab");
        let object = seal(&paths, &key, b"the private key").unwrap();
        assert!(!object.windows(7).any(|w| w == b"private"));
        assert_eq!(open(&paths, &key, &object).unwrap(), b"the private key");
        // Another name, a changed byte, another replica's credential key: refused.
        let other = object_key("director", "ab");
        let code = |e: ServerError| ferry_types::Diagnose::code(&e).to_owned();
        assert_eq!(
            code(open(&paths, &other, &object).unwrap_err()),
            "SHARED_KEY_UNUSABLE"
        );
        let mut changed = object.clone();
        changed[NONCE_LEN + 2] ^= 1;
        assert!(open(&paths, &key, &changed).is_err());
        std::fs::write(&credential, b"credential key two").unwrap();
        assert!(open(&paths, &key, &object).is_err());
    }
}
