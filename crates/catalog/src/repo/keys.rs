//! Key files: generation, loading, retirement, and signing roles with them.

use super::tuf;
use crate::error::CatalogError;
use crate::store;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::Ed25519KeyPair;
use chrono::Utc;
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use tough::editor::signed::SignedRole;
use tough::key_source::{KeySource, LocalKeySource};
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::{KeyHolder, Role, RoleKeys, RoleType, Root};

pub(super) async fn sign<T: Role + serde::Serialize>(
    role: T,
    key_holder: &KeyHolder,
    keys: &[Box<dyn KeySource>],
) -> Result<SignedRole<T>, CatalogError> {
    let role_name = T::TYPE.to_string();
    SignedRole::new(role, key_holder, keys, &SystemRandom::new())
        .await
        .map_err(|error| CatalogError::Signing {
            role: role_name,
            detail: error.to_string(),
        })
}

pub(super) fn key_file(role: RoleType) -> String {
    format!("{role}.pk8")
}

pub(super) fn local_key(dir: &Path, role: RoleType) -> Box<dyn KeySource> {
    Box::new(LocalKeySource {
        path: dir.join(key_file(role)),
    })
}

/// Writes a fresh ed25519 key (PKCS#8 DER, mode 0600) and returns its TUF key and key id.
pub(super) async fn generate_key(
    path: &Path,
) -> Result<(Decoded<Hex>, tough::schema::key::Key), CatalogError> {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|error| {
        CatalogError::Signing {
            role: "key generation".into(),
            detail: error.to_string(),
        }
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("key.pk8");
    store::write_private(dir, file_name, pkcs8.as_ref())?;
    let sign = LocalKeySource {
        path: path.to_owned(),
    }
    .as_sign()
    .await
    .map_err(|error| CatalogError::Signing {
        role: "key generation".into(),
        detail: error.to_string(),
    })?;
    let key = sign.tuf_key();
    let key_id = key.key_id().map_err(tuf)?;
    Ok((key_id, key))
}

/// Moves `keys_dir/<role>.pk8` to `keys_dir/retired/<role>-<unix time>.pk8`.
pub(super) fn retire_key(keys_dir: &Path, role: RoleType) -> Result<PathBuf, CatalogError> {
    let retired_dir = keys_dir.join("retired");
    ferry_durable::create_dir(&retired_dir).map_err(CatalogError::io("create", &retired_dir))?;
    let from = keys_dir.join(key_file(role));
    let to = retired_dir.join(format!(
        "{role}-{}.pk8",
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    ));
    ferry_durable::rename(&from, &to).map_err(CatalogError::io("rename", &from))?;
    Ok(to)
}

pub(super) fn replace_role_key(
    root: &mut Root,
    role: RoleType,
    key_id: Decoded<Hex>,
    key: tough::schema::key::Key,
) {
    let old_ids: Vec<Decoded<Hex>> = root
        .roles
        .get(&role)
        .map(|keys| keys.keyids.clone())
        .unwrap_or_default();
    root.roles.insert(role, role_keys(key_id.clone()));
    for old_id in old_ids {
        let still_used = root
            .roles
            .values()
            .any(|keys| keys.keyids.contains(&old_id));
        if !still_used {
            root.keys.remove(&old_id);
        }
    }
    root.keys.insert(key_id, key);
}

pub(super) fn role_keys(key_id: Decoded<Hex>) -> RoleKeys {
    RoleKeys {
        keyids: vec![key_id],
        threshold: NonZeroU64::MIN,
        _extra: HashMap::new(),
    }
}
