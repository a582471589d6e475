//! `POST /v1/personalize/preflight`: would the signing service sign this build for this
//! device now, and if not, why. `ferry doctor` asks it: the same credential check, facts
//! and rules as `POST /v1/personalize`, but no nonce is recorded and nothing is signed.
//! The answer adds what a refusal alone cannot say: which fields of the enrolled identity
//! differ from the device's (a replaced logic board), whether the credential was
//! superseded by a re-enrollment, and the service's clock and skew limit.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use chrono::Utc;
use ferry_personalize::{Facts, Preflight, Refusal, TicketRequest};

use crate::ServerError;
use crate::personalize::{Service, published_components, standing};

/// `POST /v1/personalize/preflight` with a ticket request (its nonce is not recorded).
pub(crate) async fn preflight(
    State(service): State<Service>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Preflight>, ServerError> {
    let credential = service.credential(&headers)?;
    let request: TicketRequest = serde_json::from_slice(&body).map_err(|e| {
        ServerError::Refused(Refusal::BadRequest {
            reason: format!("the body is not a ticket request: {e}"),
        })
    })?;
    let facts = service.lookup(&request).await?;
    let standing = standing(&credential, &request.identity, facts.as_ref());
    let device = standing.status();
    let window_open = facts.as_ref().is_some_and(|f| f.window_open);
    let rollout = service.rollout_hold(&request).await?;
    let rules = Facts {
        device,
        window_open,
        // The same published seal roots the signer holds a request to.
        published: facts.map_or_else(Vec::new, |f| published_components(f.published_roots)),
        nonce_seen: false,
        rate_limited: device == ferry_personalize::DeviceStatus::Enrolled
            && service.over_rate(request.identity.device_id.get()),
        rollout,
    };
    let now = Utc::now();
    let policy = service.policy();
    let refusal = policy.decide(&request, now, &rules).err();
    Ok(Json(Preflight {
        server_time: now,
        clock_skew_limit_seconds: policy.clock_skew_limit.as_secs(),
        standing: standing.standing,
        identity_differs: standing.differ.into_iter().map(str::to_owned).collect(),
        window_open,
        refusal: refusal.map(|r| r.to_wire()),
    }))
}
