//! The director: per-device signed decisions about releases under rollouts
//! (`GET /v1/decision`, device credential), signed with an online director key whose public
//! half devices accept only through the [`KeySet`] the catalog signs as the target
//! [`DIRECTOR_KEY_SET_TARGET`] (published at `ferry server init`, with the offline targets
//! key). A decision names each release by its payload target, length and SHA-256 as the
//! catalog signs them; the device refuses one that differs, so the online key can hold a
//! release back but never substitute an image.
//!
//! ```text
//! DATA/keys-online/director/<keyid>.pk8           the director key (0600)
//! DATA/tuf/targets/<sha256>.keys-director.json    the published director key set (served)
//! ```

use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use ferry_catalog::{payload_target_name, repo};
use ferry_personalize::{
    DIRECTOR_KEY_SET_TARGET, DecidedRelease, Decision, DecisionState, KeySet, RolloutHold,
    SignedDecision, Signer,
};
use ferry_types::DeviceId;

use crate::ServerError;
use crate::fleet::time_of;
use crate::personalize::Service;
use crate::rollouts::defer::{DeferRequest, Deferral};
use crate::rollouts::entitle::Entitled;
use crate::tuf::CatalogPaths;

/// The director keys, under the online keys directory.
pub const KEYS_SUBDIR: &str = "director";

/// The director's private keys.
const FILES: crate::keyset::KeyFiles = crate::keyset::KeyFiles {
    target: DIRECTOR_KEY_SET_TARGET,
    subdir: KEYS_SUBDIR,
    what: "director",
    signs: "decisions",
    checks_key_id: false,
    creating: "creating the director keys directory",
};

/// The director key set the catalog signs now; `None` when it lists none (a catalog made
/// before director keys: `ferry server director-key publish` is not there yet, so such a
/// server answers no decisions and devices rely on the signing service alone).
pub fn published(paths: &CatalogPaths) -> Result<Option<KeySet>, ServerError> {
    crate::keyset::published_set(paths, DIRECTOR_KEY_SET_TARGET)
}

/// The private key of the published set's current key.
pub fn signer(paths: &CatalogPaths, set: &KeySet) -> Result<Signer, ServerError> {
    FILES.signer(paths, set)
}

/// Publishes a first director key set when the catalog has none (needs the offline targets
/// key: `ferry server init`).
pub async fn ensure_published(
    paths: &CatalogPaths,
) -> Result<(KeySet, Option<repo::RepoVersions>), ServerError> {
    FILES
        .ensure_published(paths, || Ok(Signer::generate()))
        .await
}

/// Rotates the director key: a new key signs decisions from now on and the set the
/// catalog signs (with the offline targets key) lists only it, so devices refuse
/// decisions by the old key once they have seen the new set. The old private key moves
/// to `retired/`.
pub async fn rotate(paths: &CatalogPaths) -> Result<KeySet, ServerError> {
    let (set, _) = ensure_published(paths).await?;
    let key = Signer::generate();
    FILES.store(paths, &key)?;
    let mut next = set.rotated(key.public_key())?;
    for old in set.key_ids() {
        next = next.retired(old)?;
    }
    publish(paths, &next).await?;
    for old in set.key_ids() {
        FILES.retire(paths, old);
    }
    tracing::info!(key_id = %next.current(), version = next.version(), "rotated the director key");
    Ok(next)
}

/// Writes `set` as the target `keys-director.json` and signs it into the catalog.
async fn publish(paths: &CatalogPaths, set: &KeySet) -> Result<repo::RepoVersions, ServerError> {
    crate::keyset::publish_set(paths, DIRECTOR_KEY_SET_TARGET, set).await
}

/// The director as the routes hold it: the key, when the catalog publishes one.
#[derive(Clone)]
pub struct Director {
    service: Service,
    signer: Arc<RwLock<Option<Arc<Signer>>>>,
}

impl std::fmt::Debug for Director {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Director")
            .field("key", &self.signer().map(|s| s.key_id()))
            .finish()
    }
}

impl Director {
    /// The director of the catalog at `paths` (no key: no decisions).
    pub fn load(service: Service, paths: &CatalogPaths) -> Result<Director, ServerError> {
        let signer = match published(paths)? {
            Some(set) => Some(Arc::new(signer(paths, &set)?)),
            None => {
                tracing::warn!("the catalog publishes no director key: no signed decisions");
                None
            }
        };
        Ok(Director {
            service,
            signer: Arc::new(RwLock::new(signer)),
        })
    }

    /// The key decisions are signed with now.
    pub fn signer(&self) -> Option<Arc<Signer>> {
        self.signer
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Keeps signing with the current key of the published director set
    /// ([`crate::keyset::KeyFiles::follow`]).
    pub async fn keep_current(self, paths: CatalogPaths) {
        let current = || self.signer().map(|s| s.key_id());
        let adopt = |next: Signer| {
            *self
                .signer
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::new(next));
        };
        FILES.follow(paths, current, adopt).await
    }

    /// The decision for `device_id` of `class` now, to be signed by `key_id`.
    pub async fn decide(
        &self,
        device_id: DeviceId,
        class: &str,
        key_id: ferry_personalize::KeyId,
    ) -> Result<Decision, ServerError> {
        let db = &self.service.inner.data.db;
        let facts = db.cohort_facts(&device_id, true).await?;
        let now = chrono::Utc::now();
        let rollouts: Vec<_> = db
            .rollouts()
            .await?
            .into_iter()
            .filter(|r| r.class == class)
            .collect();
        let mut releases = Vec::new();
        // Only releases the catalog signs: the decision names them as it does.
        for release in db.releases(class).await? {
            let version = release.version.to_string();
            let rollout = rollouts.iter().find(|r| r.version == version);
            let entitled = db.entitled(class, &version, &facts).await?;
            let hold = if let Entitled::No { .. } = entitled {
                Some(RolloutHold::NotEntitled)
            } else if let Some(rollout) = rollout {
                rollout.hold(&device_id, &facts, now.timestamp_millis())
            } else {
                // Neither restricted nor under a rollout: TUF's offer stands.
                continue;
            };
            let now_ms = now.timestamp_millis();
            let deferred_until = match (&hold, rollout) {
                (None, Some(rollout)) => db.deferred_until(rollout, &device_id, now_ms).await?,
                _ => None,
            };
            let (state, opens_at) = match hold {
                None if deferred_until.is_some() => (DecisionState::Deferred, None),
                None => (DecisionState::Open, None),
                Some(RolloutHold::NotYet { opens_at, .. }) => {
                    (DecisionState::NotYet, Some(opens_at))
                }
                Some(RolloutHold::Paused { .. }) => (DecisionState::Paused, None),
                Some(RolloutHold::Halted { .. }) => (DecisionState::Halted, None),
                Some(RolloutHold::NotInCohort { .. }) => (DecisionState::NotInCohort, None),
                Some(RolloutHold::NotEntitled) => (DecisionState::NotEntitled, None),
            };
            releases.push(DecidedRelease {
                target: payload_target_name(class, &version),
                version,
                length: release.payload_size,
                sha256: release.payload_sha256,
                rollout_id: rollout.map(|r| r.id),
                deadline: rollout.and_then(|r| r.deadline_ms).and_then(time_of),
                deferred_until: deferred_until.and_then(time_of),
                defer_latest: match rollout {
                    Some(r) if !r.emergency => db.defer_latest(r, &device_id).await?,
                    _ => None,
                },
                emergency: rollout.is_some_and(|r| r.emergency),
                state,
                opens_at,
            });
        }
        Ok(Decision {
            device_id,
            issued_at: now,
            releases,
            key_id,
        })
    }
}

/// `GET /v1/decision`.
pub fn routes(director: Director) -> Router {
    Router::new()
        .route("/v1/decision", get(decision))
        .route("/v1/deferrals", axum::routing::post(defer))
        .with_state(director)
}

/// `POST /v1/deferrals` (device credential): the device defers a rollout's release.
async fn defer(
    State(director): State<Director>,
    headers: HeaderMap,
    Json(request): Json<DeferRequest>,
) -> Result<Json<Deferral>, ServerError> {
    let credential = director.service.credential(&headers)?;
    let device_id = credential.device_id;
    let db = &director.service.inner.data.db;
    let facts = match db.device_facts(&device_id, "").await? {
        None => return Err(ferry_personalize::Refusal::UnknownDevice { device_id }.into()),
        Some(f) if f.revoked || f.credential_id != credential.credential_id.to_string() => {
            return Err(ferry_personalize::Refusal::RevokedDevice { device_id }.into());
        }
        Some(f) => f,
    };
    Ok(Json(
        db.defer(&device_id, facts.identity.device_class.as_str(), &request)
            .await?,
    ))
}

async fn decision(
    State(director): State<Director>,
    headers: HeaderMap,
) -> Result<Json<SignedDecision>, ServerError> {
    let credential = director.service.credential(&headers)?;
    let device_id = credential.device_id;
    let db = &director.service.inner.data.db;
    let facts = db.device_facts(&device_id, "").await?;
    let facts = match facts {
        None => return Err(ferry_personalize::Refusal::UnknownDevice { device_id }.into()),
        Some(f) if f.revoked || f.credential_id != credential.credential_id.to_string() => {
            return Err(ferry_personalize::Refusal::RevokedDevice { device_id }.into());
        }
        Some(f) => f,
    };
    let Some(signer) = director.signer() else {
        return Err(ServerError::NotFound(
            "a director key in this server's catalog".into(),
        ));
    };
    let decision = director
        .decide(
            device_id,
            facts.identity.device_class.as_str(),
            signer.key_id(),
        )
        .await?;
    Ok(Json(signer.sign_decision(&decision)))
}
