//! `POST /v1/personalize` and `GET /v1/keys/personalization.pub` (diagnostics): the signing
//! service.
//!
//! A request needs the device's credential (`Authorization: Bearer`). The handler looks
//! the facts up in SQL (enrollment, revocation, the signing window, the seal roots the build
//! published for the device's class), applies the
//! per-device rate limit, lets [`Policy::decide`] rule, records the nonce (the insert is
//! the uniqueness check), and only then signs.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use chrono::Utc;
use ferry_personalize::{
    Component, ComponentName, Credential, CredentialSigner, DeviceStatus, Facts, KeyId, Policy,
    PublicKey, Refusal, Signer, Standing, TicketRequest, verify_credential,
};
use ferry_types::RootHash;

use crate::devices::{FactsReader, NonceWriter};
use crate::publish::SYSTEM_COMPONENT;
use crate::{DataDir, ServerError};

/// Limits of the signing service.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// The signing rules (clock-skew limit, most components).
    pub policy: Policy,
    /// Ticket requests one device may make per minute (per replica).
    pub rate_limit_per_minute: u32,
    /// How long a device with an update in progress may go without reporting before the
    /// fleet shows it silent.
    pub silent_after: std::time::Duration,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            policy: Policy::default(),
            rate_limit_per_minute: 60,
            silent_after: crate::events::DEFAULT_SILENT_AFTER,
        }
    }
}

/// What the personalization, enrollment and admin handlers share (cheap to clone).
#[derive(Clone)]
pub struct Service {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) data: DataDir,
    /// The current key of the published key set; swapped when a rotation is published
    /// (`keyset::keep_signer_current`).
    signer: RwLock<Arc<Signer>>,
    pub(crate) credential_signer: CredentialSigner,
    pub(crate) credential_key: PublicKey,
    pub(crate) admin_token: String,
    pub(crate) options: ServiceOptions,
    pub(crate) nonces: NonceWriter,
    facts: FactsReader,
    /// Credentials already verified, by SHA-256 of the bearer token (see
    /// [`Service::credential`]).
    verified_credentials: Mutex<HashMap<[u8; 32], Credential>>,
    /// Requests per device in the current minute. A soft, per-replica limit: losing it
    /// on restart only forgives a few requests.
    limiter: Mutex<HashMap<u64, (i64, u32)>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("personalization_key", &self.signing_key_id())
            .finish_non_exhaustive()
    }
}

impl Service {
    /// The service over `data` with the given keys (`signer`: the current key of the
    /// published key set); starts the nonce writer task.
    pub fn new(
        data: DataDir,
        signer: Signer,
        credential_signer: CredentialSigner,
        admin_token: String,
        options: ServiceOptions,
    ) -> Service {
        let credential_key = credential_signer.public_key();
        let nonces = NonceWriter::start(data.db.clone());
        let facts = FactsReader::start(data.db.clone());
        Service {
            inner: Arc::new(Inner {
                data,
                signer: RwLock::new(Arc::new(signer)),
                credential_signer,
                credential_key,
                admin_token,
                options,
                nonces,
                facts,
                verified_credentials: Mutex::new(HashMap::new()),
                limiter: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The key tickets are signed with now.
    pub fn signer(&self) -> Arc<Signer> {
        self.inner
            .signer
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The id of the key tickets are signed with now.
    pub fn signing_key_id(&self) -> KeyId {
        self.signer().key_id()
    }

    /// The public key tickets are signed with now (devices trust it through the key set).
    pub fn personalization_key(&self) -> PublicKey {
        self.signer().public_key()
    }

    /// Signs from now on with `signer` (the current key of a newly published key set).
    pub fn set_signer(&self, signer: Signer) {
        *self
            .inner
            .signer
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(signer);
    }

    /// The credential in `Authorization: Bearer …`. A token whose signature verified once is
    /// remembered by its SHA-256 (at most [`MAX_VERIFIED_CREDENTIALS`], forgotten all at once
    /// when full), so a device's later requests skip the Ed25519 verification, the largest
    /// cost of a request after the ticket's own signature. Safe because a token's claims and
    /// signature are fixed by its bytes and the credential key never changes while serving;
    /// revocation and re-enrollment are still checked in the database on every request.
    pub(crate) fn credential(&self, headers: &HeaderMap) -> Result<Credential, ServerError> {
        let token = bearer(headers).ok_or(ServerError::CredentialMissing)?;
        let token_sha256 = ferry_types::Sha256::of(token.as_bytes()).0;
        let lock = || {
            self.inner
                .verified_credentials
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        };
        if let Some(credential) = lock().get(&token_sha256) {
            return Ok(credential.clone());
        }
        let credential = check_credential(token, &self.inner.credential_key)?;
        let mut verified = lock();
        if verified.len() >= MAX_VERIFIED_CREDENTIALS {
            verified.clear();
        }
        verified.insert(token_sha256, credential.clone());
        Ok(credential)
    }

    /// The enrollment and signing-window facts of `request` (read with the requests
    /// queued meanwhile, [`FactsReader`]).
    pub(crate) async fn lookup(
        &self,
        request: &TicketRequest,
    ) -> Result<Option<crate::devices::DeviceFacts>, ServerError> {
        self.inner
            .facts
            .facts(request.identity.device_id, request.build_id.as_str())
            .await
    }

    /// Why a rollout of the requested build holds the device back now, if one does.
    pub(crate) async fn rollout_hold(
        &self,
        request: &TicketRequest,
    ) -> Result<Option<ferry_personalize::RolloutHold>, ServerError> {
        self.inner
            .data
            .db
            .rollout_hold(
                &request.identity.device_id,
                request.identity.device_class.as_str(),
                request.build_id.as_str(),
            )
            .await
    }

    /// The signing rules in force.
    pub(crate) fn policy(&self) -> &Policy {
        &self.inner.options.policy
    }

    /// Counts a request of `device_id` against its per-minute limit; whether it is over.
    pub(crate) fn over_rate(&self, device_id: u64) -> bool {
        let minute = Utc::now().timestamp() / 60;
        let mut limiter = self
            .inner
            .limiter
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if limiter.len() > 100_000 {
            limiter.retain(|_, (m, _)| *m == minute);
        }
        let entry = limiter.entry(device_id).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1 > self.inner.options.rate_limit_per_minute
    }
}

/// The components a build published: each release of it is one sealed system image.
pub(crate) fn published_components(roots: Vec<RootHash>) -> Vec<Component> {
    let Ok(name) = ComponentName::from_str(SYSTEM_COMPONENT) else {
        return Vec::new();
    };
    roots
        .into_iter()
        .map(|root_hash| Component {
            name: name.clone(),
            root_hash,
        })
        .collect()
}

/// The device routes of the signing service.
pub fn routes(service: Service) -> Router {
    Router::new()
        .route("/v1/personalize", post(personalize))
        .route(
            "/v1/personalize/preflight",
            post(crate::preflight::preflight),
        )
        .route("/v1/keys/personalization.pub", get(personalization_key))
        .with_state(service)
}

/// The key signing now, for diagnostics only: devices trust the key set the catalog signs,
/// never this answer.
async fn personalization_key(State(service): State<Service>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        service.personalization_key().to_file_bytes(),
    )
}

/// Verified credentials the service remembers (a few MB at most).
pub const MAX_VERIFIED_CREDENTIALS: usize = 65_536;

/// A bearer token checked against the credential key.
fn check_credential(token: &str, key: &PublicKey) -> Result<Credential, ServerError> {
    Ok(verify_credential(token, key)?)
}

/// The token of `Authorization: Bearer TOKEN`. The scheme is case-insensitive and may be
/// followed by several spaces (RFC 9110 §11.1, RFC 6750 §2.1): `bearer`, `BEARER` pass.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("Bearer") && !token.is_empty()).then_some(token)
}

/// How a request's credential and identity stand against the device's enrollment, and
/// the identity fields that differ from the enrolled ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Assessed {
    pub(crate) standing: Standing,
    pub(crate) differ: Vec<&'static str>,
}

impl Assessed {
    /// What the signing rules see.
    pub(crate) fn status(&self) -> DeviceStatus {
        match self.standing {
            Standing::Enrolled => DeviceStatus::Enrolled,
            Standing::Revoked | Standing::Superseded => DeviceStatus::Revoked,
            Standing::OtherDevice | Standing::NotEnrolled | Standing::IdentityDiffers => {
                DeviceStatus::Unknown
            }
        }
    }
}

/// The standing of a request by `credential` for `identity`, given the enrollment facts.
pub(crate) fn standing(
    credential: &Credential,
    identity: &ferry_types::Identity,
    facts: Option<&crate::devices::DeviceFacts>,
) -> Assessed {
    let mut differ = Vec::new();
    let standing = match facts {
        // A credential is good for its own device only.
        _ if credential.device_id != identity.device_id => Standing::OtherDevice,
        None => Standing::NotEnrolled,
        Some(f) if f.revoked => Standing::Revoked,
        // Re-enrolled since this credential was issued: the old one is revoked.
        Some(f) if f.credential_id != credential.credential_id.to_string() => Standing::Superseded,
        Some(f) if f.identity != *identity => {
            let (enrolled, sent) = (&f.identity, identity);
            if enrolled.board_id != sent.board_id {
                differ.push("board_id");
            }
            if enrolled.chip_id != sent.chip_id {
                differ.push("chip_id");
            }
            if enrolled.hardware_uuid != sent.hardware_uuid {
                differ.push("hardware_uuid");
            }
            if enrolled.device_class != sent.device_class {
                differ.push("device_class");
            }
            Standing::IdentityDiffers
        }
        Some(_) => Standing::Enrolled,
    };
    Assessed { standing, differ }
}

async fn personalize(
    State(service): State<Service>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, ServerError> {
    let credential = service.credential(&headers)?;
    let request: TicketRequest = serde_json::from_slice(&body).map_err(|e| {
        ServerError::Refused(Refusal::BadRequest {
            reason: format!("the body is not a ticket request: {e}"),
        })
    })?;
    let device_id = request.identity.device_id;
    let facts = service
        .inner
        .facts
        .facts(device_id, request.build_id.as_str())
        .await?;
    let device = standing(&credential, &request.identity, facts.as_ref()).status();
    let rollout = service.rollout_hold(&request).await?;
    let mut facts = Facts {
        device,
        window_open: facts.as_ref().is_some_and(|f| f.window_open),
        published: facts.map_or_else(Vec::new, |f| published_components(f.published_roots)),
        nonce_seen: false,
        rate_limited: device == DeviceStatus::Enrolled && service.over_rate(device_id.get()),
        rollout,
    };
    let policy = &service.inner.options.policy;
    let now = Utc::now();
    policy
        .decide(&request, now, &facts)
        .map_err(ServerError::Refused)?;
    // Every other rule passed: record the nonce; the insert is the uniqueness check.
    let new = service
        .inner
        .nonces
        .record(request.nonce.sha256(), device_id)
        .await?;
    facts.nonce_seen = !new;
    let approved = policy
        .decide(&request, now, &facts)
        .map_err(ServerError::Refused)?;
    let signed = service.signer().sign(&approved);
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        signed.to_json(),
    ))
}
