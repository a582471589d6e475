//! Key rotation: a new root key, or a new targets key that revokes the old one.

use super::keys::{generate_key, key_file, local_key, replace_role_key, retire_key, sign};
use super::{Expiries, RepoState, RepoVersions, expiry, load_latest_root, next, tuf};
use crate::error::CatalogError;
use crate::store::write_atomic;
use chrono::{TimeDelta, Utc};
use std::path::Path;
use tough::key_source::LocalKeySource;
use tough::schema::{KeyHolder, RoleType};

/// Replaces the root key: writes `N+1.root.json` listing a fresh root key, signed by the old and
/// the new root keys. The old key moves to `keys_dir/retired/`.
pub async fn rotate_root(
    keys_dir: &Path,
    metadata_dir: &Path,
    root_expiry: TimeDelta,
) -> Result<u64, CatalogError> {
    let old_root = load_latest_root(metadata_dir)?.signed;
    let old_key_path = keys_dir.join(key_file(RoleType::Root));
    let retired_path = retire_key(keys_dir, RoleType::Root)?;
    let (new_key_id, new_key) = generate_key(&old_key_path).await?;
    let mut new_root = old_root.clone();
    replace_role_key(&mut new_root, RoleType::Root, new_key_id, new_key);
    new_root.version = next(old_root.version);
    new_root.expires = expiry(Utc::now(), root_expiry);
    let signed_by_old = sign(
        new_root.clone(),
        &KeyHolder::Root(old_root),
        &[Box::new(LocalKeySource { path: retired_path })],
    )
    .await?;
    let signed = sign(
        new_root.clone(),
        &KeyHolder::Root(new_root.clone()),
        &[local_key(keys_dir, RoleType::Root)],
    )
    .await?
    .add_old_signatures(signed_by_old.signed().signatures.clone())
    .map_err(tuf)?;
    write_atomic(
        metadata_dir,
        &format!("{}.root.json", new_root.version),
        signed.buffer(),
    )?;
    Ok(new_root.version.get())
}

/// Revokes the targets key: writes `N+1.root.json` listing a fresh targets key (signed by the
/// root key), then re-signs targets (and bins), snapshot and timestamp with it.
pub async fn rotate_targets_key(
    keys_dir: &Path,
    online_keys_dir: &Path,
    metadata_dir: &Path,
    expiries: &Expiries,
) -> Result<RepoVersions, CatalogError> {
    let old_root = load_latest_root(metadata_dir)?.signed;
    retire_key(keys_dir, RoleType::Targets)?;
    let (new_key_id, new_key) = generate_key(&keys_dir.join(key_file(RoleType::Targets))).await?;
    let mut new_root = old_root.clone();
    replace_role_key(
        &mut new_root,
        RoleType::Targets,
        new_key_id.clone(),
        new_key.clone(),
    );
    new_root.version = next(old_root.version);
    new_root.expires = expiry(Utc::now(), expiries.root);
    let root_key = local_key(keys_dir, RoleType::Root);
    let signed_root = sign(
        new_root.clone(),
        &KeyHolder::Root(new_root.clone()),
        &[root_key],
    )
    .await?;
    write_atomic(
        metadata_dir,
        &format!("{}.root.json", new_root.version),
        signed_root.buffer(),
    )?;

    let mut state = RepoState::load(metadata_dir)?;
    let now = Utc::now();
    if let Some(delegations) = state.targets.signed.delegations.as_mut() {
        delegations.keys.clear();
        delegations.keys.insert(new_key_id.clone(), new_key);
        let bin_names: Vec<String> = delegations
            .roles
            .iter()
            .map(|role| role.name.clone())
            .collect();
        for role in &mut delegations.roles {
            role.keyids = vec![new_key_id.clone()];
        }
        for bin_name in bin_names {
            let bin = state.load_bin(metadata_dir, &bin_name)?;
            bin.targets.version = next(bin.targets.version);
            bin.targets.expires = expiry(now, expiries.targets);
        }
    }
    state.targets.signed.version = next(state.targets.signed.version);
    state.targets.signed.expires = expiry(now, expiries.targets);
    state
        .sign_and_write(keys_dir, online_keys_dir, metadata_dir, expiries, true)
        .await
}
