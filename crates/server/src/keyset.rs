//! The personalization keys on the server: the private keys that sign tickets, and the
//! [`KeySet`] devices trust, signed into the catalog as the target [`KEY_SET_TARGET`] so it
//! reaches devices with TUF's guarantees and rotates the TUF way.
//!
//! ```text
//! DATA/keys-online/personalization/<keyid>.pk8          every key the set lists (0600)
//! DATA/keys-online/personalization/retired/<keyid>.pk8  keys retired from the set
//! DATA/tuf/targets/<sha256>.keys-personalization.json   each key set published (served)
//! ```
//!
//! The catalog is the only record of which set is in force: the server signs with the key
//! that the published set names current, read from the file whose digest the catalog signs.
//! A rotation stores the new key and the new set's file, then signs the target in; until
//! that last step commits (the catalog writes `timestamp.json` last), nothing changed, so a
//! crash at any point leaves either the old set or the new one, never a key devices do not
//! trust.

use std::path::PathBuf;
use std::time::Duration;

use ferry_catalog::{NewTarget, repo};
use ferry_personalize::{KEY_SET_TARGET, KeyId, KeySet, Signer};
use ferry_types::Sha256;

use crate::tuf::CatalogPaths;
use crate::{ServerError, Service};

/// The signing keys, under the online keys directory.
pub const KEYS_SUBDIR: &str = "personalization";
/// Keys retired from the set, under [`KEYS_SUBDIR`].
pub const RETIRED_SUBDIR: &str = "retired";
/// The single key of servers made before key sets (imported as the first key).
pub const LEGACY_KEY_FILE: &str = "personalization.pk8";
/// How often a running server looks for a new key set (a rotation by `ferry server
/// personalization-key`).
pub const KEY_SET_CHECK_INTERVAL: Duration = Duration::from_secs(1);

fn unusable(cause: String) -> ServerError {
    ServerError::KeySetUnusable { cause }
}

/// The private keys of a key set on disk (`DATA/keys-online/<subdir>/<keyid>.pk8`, 0600,
/// retired ones under `retired/`): the personalization keys' or the director's.
pub(crate) struct KeyFiles {
    /// The catalog target the public set is signed in as.
    pub target: &'static str,
    /// The directory under the online keys directory.
    pub subdir: &'static str,
    /// What the keys are called in messages ("personalization", "director").
    pub what: &'static str,
    /// What they sign, for the log ("tickets", "decisions").
    pub signs: &'static str,
    /// Whether a key file holding another key than its name is refused (the director signs
    /// with whatever the file holds: devices refuse what a key off the set signs).
    pub checks_key_id: bool,
    /// The `op` of an error creating the directory.
    pub creating: &'static str,
}

/// The personalization keys.
const FILES: KeyFiles = KeyFiles {
    target: KEY_SET_TARGET,
    subdir: KEYS_SUBDIR,
    what: "personalization",
    signs: "tickets",
    checks_key_id: true,
    creating: "creating the personalization keys directory",
};

impl KeyFiles {
    fn dir(&self, paths: &CatalogPaths) -> PathBuf {
        paths.online_keys.join(self.subdir)
    }

    fn path(&self, paths: &CatalogPaths, key_id: KeyId) -> PathBuf {
        self.dir(paths).join(format!("{key_id}.pk8"))
    }

    /// The private key of the set's current key, from its file.
    pub(crate) fn signer(&self, paths: &CatalogPaths, set: &KeySet) -> Result<Signer, ServerError> {
        let path = self.path(paths, set.current());
        let der = std::fs::read(&path).map_err(|e| {
            unusable(format!(
                "the current {} key {} cannot be read from {}: {e}",
                self.what,
                set.current(),
                path.display()
            ))
        })?;
        let signer = Signer::from_pkcs8(&der)
            .map_err(|e| unusable(format!("the key {} is unusable: {e}", path.display())))?;
        if self.checks_key_id && signer.key_id() != set.current() {
            return Err(unusable(format!(
                "{} holds key {}, not {}",
                path.display(),
                signer.key_id(),
                set.current()
            )));
        }
        Ok(signer)
    }

    /// Keeps signing with the current key of the published set: checks whenever the
    /// catalog's timestamp changes (every [`KEY_SET_CHECK_INTERVAL`]), forever (the server
    /// spawns this as a task), and hands a new current key to `adopt` (`current`: the key
    /// signing now). A set it cannot use is logged once and the old key kept, and checked
    /// again every interval: a replica that got the set from the shared store before its
    /// private key was copied to it takes the key up within an interval of its arrival.
    pub(crate) async fn follow(
        &self,
        paths: CatalogPaths,
        current: impl Fn() -> Option<KeyId>,
        adopt: impl Fn(Signer),
    ) {
        let mut ticker = tokio::time::interval(KEY_SET_CHECK_INTERVAL);
        let mut seen_timestamp = None;
        let mut reported = None;
        loop {
            ticker.tick().await;
            let timestamp = tokio::fs::read(paths.metadata.join("timestamp.json"))
                .await
                .ok();
            if timestamp.is_none() || timestamp == seen_timestamp {
                continue;
            }
            let from = current();
            let next = published_set(&paths, self.target).and_then(|set| match set {
                Some(set) if Some(set.current()) != from => self.signer(&paths, &set).map(Some),
                _ => Ok(None),
            });
            match next {
                Ok(Some(signer)) => {
                    tracing::info!(from = ?from, to = %signer.key_id(), "now signing {} with the rotated {} key", self.signs, self.what);
                    adopt(signer);
                    seen_timestamp = timestamp;
                }
                Ok(None) => seen_timestamp = timestamp,
                Err(error) => {
                    if reported != timestamp {
                        tracing::error!(%error, "the published {} key set is unusable; still signing with the previous key", self.what);
                        reported = timestamp;
                    }
                }
            }
        }
    }

    /// Stores a private key (creating the directory).
    pub(crate) fn store(&self, paths: &CatalogPaths, signer: &Signer) -> Result<(), ServerError> {
        ferry_durable::create_dir(&self.dir(paths)).map_err(|source| ServerError::Io {
            op: self.creating,
            source,
        })?;
        crate::pki::write_secret(&self.path(paths, signer.key_id()), &signer.to_pkcs8())
    }

    /// Moves the private key of `key_id`, which the published set no longer lists, to
    /// `retired/`. A failure is logged with where the key still is, not returned: devices
    /// refuse what it signs already.
    pub(crate) fn retire(&self, paths: &CatalogPaths, key_id: KeyId) {
        let from = self.path(paths, key_id);
        let retired_dir = self.dir(paths).join(RETIRED_SUBDIR);
        let moved = ferry_durable::create_dir(&retired_dir).and_then(|()| {
            ferry_durable::rename(&from, &retired_dir.join(format!("{key_id}.pk8")))
        });
        if let Err(error) = moved {
            tracing::warn!(%error, key = %from.display(), "could not move the retired {} key aside", self.what);
        }
    }

    /// The published set, publishing the first one when the catalog has none: it lists only
    /// the key `first` gives (stored first). Returns the catalog versions when it published.
    pub(crate) async fn ensure_published(
        &self,
        paths: &CatalogPaths,
        first: impl FnOnce() -> Result<Signer, ServerError>,
    ) -> Result<(KeySet, Option<repo::RepoVersions>), ServerError> {
        if let Some(set) = published_set(paths, self.target)? {
            return Ok((set, None));
        }
        let key = first()?;
        self.store(paths, &key)?;
        let set = KeySet::first(key.public_key());
        let versions = publish_set(paths, self.target, &set).await?;
        tracing::info!(key_id = %set.current(), "published the first {} key set", self.what);
        Ok((set, Some(versions)))
    }
}

#[cfg(test)]
fn key_dir(paths: &CatalogPaths) -> PathBuf {
    FILES.dir(paths)
}

#[cfg(test)]
fn key_path(paths: &CatalogPaths, key_id: KeyId) -> PathBuf {
    FILES.path(paths, key_id)
}

/// The key set the catalog signs now, read from the file whose length and digest the
/// catalog's targets list; `None` when the catalog lists no key set yet.
pub fn published(paths: &CatalogPaths) -> Result<Option<KeySet>, ServerError> {
    published_set(paths, KEY_SET_TARGET)
}

/// The key set the catalog signs as `target` (the personalization or the director set),
/// checked against the length and SHA-256 the catalog signs; `None` before the first.
pub(crate) fn published_set(
    paths: &CatalogPaths,
    target: &str,
) -> Result<Option<KeySet>, ServerError> {
    let Some((length, sha256)) = repo::published_target(&paths.metadata, target)? else {
        return Ok(None);
    };
    let path = paths.targets.join(repo::target_file_name(target, &sha256));
    let bytes = std::fs::read(&path).map_err(|e| {
        unusable(format!(
            "the catalog signs {target} but {} cannot be read: {e}",
            path.display()
        ))
    })?;
    if bytes.len() as u64 != length || Sha256::of(&bytes) != sha256 {
        return Err(unusable(format!(
            "{} is not the key set the catalog signs (its length or SHA-256 differs)",
            path.display()
        )));
    }
    Ok(Some(KeySet::from_bytes(&bytes)?))
}

/// The private key of the set's current key; a file holding another key is refused.
pub fn signer(paths: &CatalogPaths, set: &KeySet) -> Result<Signer, ServerError> {
    FILES.signer(paths, set)
}

/// The published key set, publishing the first one when the catalog has none: the key a
/// server made before key sets existed (`keys-online/personalization.pk8`), else a new key.
/// Returns the catalog versions when it published.
pub async fn ensure_published(
    paths: &CatalogPaths,
) -> Result<(KeySet, Option<repo::RepoVersions>), ServerError> {
    FILES
        .ensure_published(paths, || {
            let legacy = paths.online_keys.join(LEGACY_KEY_FILE);
            match std::fs::read(&legacy) {
                Ok(der) => Signer::from_pkcs8(&der).map_err(|e| {
                    unusable(format!("the key {} is unusable: {e}", legacy.display()))
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Signer::generate()),
                Err(source) => Err(ServerError::Io {
                    op: "reading the personalization key",
                    source,
                }),
            }
        })
        .await
}

/// Makes a new key, lists it beside the others and makes it the signing key (the old keys
/// stay trusted until [`retire`]), and signs the new set into the catalog. Needs the
/// offline targets key.
pub async fn rotate(paths: &CatalogPaths) -> Result<KeySet, ServerError> {
    let (set, _) = ensure_published(paths).await?;
    let new_key = Signer::generate();
    let next = set.rotated(new_key.public_key())?;
    FILES.store(paths, &new_key)?;
    publish(paths, &next).await?;
    tracing::info!(key_id = %next.current(), version = next.version(), "rotated the personalization key");
    Ok(next)
}

/// Drops `key_id` from the set and signs the new set into the catalog; the key's private
/// file moves to `retired/`. Devices refuse its tickets once they have scanned.
pub async fn retire(paths: &CatalogPaths, key_id: KeyId) -> Result<KeySet, ServerError> {
    let set = published(paths)?.ok_or_else(|| {
        unusable("the catalog lists no personalization key set to retire a key from".into())
    })?;
    let next = set.retired(key_id)?;
    publish(paths, &next).await?;
    FILES.retire(paths, key_id);
    tracing::info!(%key_id, version = next.version(), "retired a personalization key");
    Ok(next)
}

/// Keeps `service` signing with the current key of the published set ([`KeyFiles::follow`]).
pub async fn keep_signer_current(service: Service, paths: CatalogPaths) {
    FILES
        .follow(
            paths,
            || Some(service.signing_key_id()),
            |signer| service.set_signer(signer),
        )
        .await
}

async fn publish(paths: &CatalogPaths, set: &KeySet) -> Result<repo::RepoVersions, ServerError> {
    publish_set(paths, KEY_SET_TARGET, set).await
}

/// Writes `set` as the target `target` and signs it into the catalog (with the offline
/// targets key).
pub(crate) async fn publish_set(
    paths: &CatalogPaths,
    target: &str,
    set: &KeySet,
) -> Result<repo::RepoVersions, ServerError> {
    let bytes = set.to_bytes();
    let sha256 = Sha256::of(&bytes);
    std::fs::create_dir_all(&paths.targets).map_err(|source| ServerError::Io {
        op: "creating the catalog targets directory",
        source,
    })?;
    let file = paths.targets.join(repo::target_file_name(target, &sha256));
    crate::pki::write_secret(&file, &bytes)?;
    let target = NewTarget {
        name: target.into(),
        length: bytes.len() as u64,
        sha256,
        custom: serde_json::Value::Null,
    };
    Ok(repo::add_targets(
        &paths.offline_keys,
        &paths.online_keys,
        &paths.metadata,
        vec![target],
        &repo::Expiries::default(),
    )
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rotation_and_retirement_go_through_the_catalog() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = CatalogPaths::new(tmp.path(), None);
        crate::tuf::init(&paths).await.unwrap();
        let first = published(&paths).unwrap().expect("published at init");
        assert_eq!(first.version(), 1);
        assert_eq!(signer(&paths, &first).unwrap().key_id(), first.current());

        let rotated = rotate(&paths).await.unwrap();
        assert_eq!(published(&paths).unwrap().as_ref(), Some(&rotated));
        assert_eq!(rotated.key_ids().len(), 2);
        assert_eq!(
            signer(&paths, &rotated).unwrap().key_id(),
            rotated.current()
        );

        let retired = retire(&paths, first.current()).await.unwrap();
        assert_eq!(retired.key_ids(), vec![rotated.current()]);
        assert!(!key_path(&paths, first.current()).exists());
        assert!(
            key_dir(&paths)
                .join(RETIRED_SUBDIR)
                .join(format!("{}.pk8", first.current()))
                .exists()
        );
        let error = retire(&paths, rotated.current()).await.unwrap_err();
        assert_eq!(ferry_types::Diagnose::code(&error), "KEYSET_RETIRE_CURRENT");

        // A key set file changed on disk is not the one the catalog signs.
        let (_, sha256) = repo::published_target(&paths.metadata, KEY_SET_TARGET)
            .unwrap()
            .unwrap();
        let file = paths
            .targets
            .join(repo::target_file_name(KEY_SET_TARGET, &sha256));
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[10] ^= 1;
        std::fs::write(&file, bytes).unwrap();
        let error = published(&paths).unwrap_err();
        assert_eq!(ferry_types::Diagnose::code(&error), "KEYSET_UNUSABLE");
    }

    /// A replica that gets a rotated set (from the shared store) before its private key:
    /// it keeps signing with the old key, then takes the new one up once the key is copied,
    /// with no change to the catalog in between.
    #[tokio::test]
    async fn a_key_copied_after_its_set_arrived_is_taken_up() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = CatalogPaths::new(tmp.path(), None);
        crate::tuf::init(&paths).await.unwrap();
        let first = published(&paths).unwrap().unwrap();
        let data = crate::DataDir::open(tmp.path()).await.unwrap();
        let secrets = crate::Secrets::load_or_create(tmp.path(), None).unwrap();
        let service = Service::new(
            data,
            signer(&paths, &first).unwrap(),
            secrets.credential_signer.clone(),
            secrets.admin_token.clone(),
            Default::default(),
        );
        let rotated = rotate(&paths).await.unwrap();
        let key = key_path(&paths, rotated.current());
        let elsewhere = tmp.path().join("copied-later.pk8");
        std::fs::rename(&key, &elsewhere).unwrap();
        let task = tokio::spawn(keep_signer_current(service.clone(), paths.clone()));
        tokio::time::sleep(KEY_SET_CHECK_INTERVAL * 2).await;
        assert_eq!(service.signing_key_id(), first.current());
        std::fs::rename(&elsewhere, &key).unwrap();
        let deadline = std::time::Instant::now() + KEY_SET_CHECK_INTERVAL * 3;
        while service.signing_key_id() != rotated.current() {
            assert!(
                std::time::Instant::now() < deadline,
                "the copied key was not taken up"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        task.abort();
    }
}
