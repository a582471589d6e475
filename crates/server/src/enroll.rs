//! `POST /v1/enroll` (one-time enrollment token → device credential) and the admin
//! endpoints behind the admin token: enrollment tokens, devices, signing windows.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use ferry_personalize::{EnrollmentToken, Refusal, check_identity};
use ferry_types::{DeviceId, Identity};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::ServerError;
use crate::devices::TokenScope;
use crate::personalize::{Service, bearer};
use crate::rollouts::entitle::DeviceTags;

/// Body of `POST /v1/enroll`.
#[derive(Debug, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// The one-time enrollment token from the administrator.
    pub token: String,
    /// The device's identity, as its hardware reads it. An all-zero device id deserializes
    /// here, as in the ticket request, so enrollment answers `BAD_IDENTITY` too.
    #[serde(deserialize_with = "Identity::deserialize_allowing_zero")]
    pub identity: Identity,
}

/// Answer of `POST /v1/enroll`.
#[derive(Debug, Serialize, Deserialize)]
pub struct EnrollResponse {
    /// The device.
    pub device_id: DeviceId,
    /// The bearer credential for every later device request.
    pub credential: String,
}

/// Body of `POST /v1/admin/signing-windows`.
#[derive(Debug, Serialize, Deserialize)]
pub struct SigningWindow {
    /// Device class.
    pub class: String,
    /// Build id.
    pub build_id: String,
    /// Open (signed) or closed.
    pub open: bool,
}

/// Enrollment and admin routes.
pub fn routes(service: Service) -> Router {
    let admin = Router::new()
        .route("/v1/admin/enrollment-tokens", post(new_token))
        .route("/v1/admin/devices/{device_id}/revoke", post(revoke))
        .route("/v1/admin/signing-windows", post(signing_window))
        .route_layer(axum::middleware::from_fn_with_state(
            service.clone(),
            require_admin,
        ));
    Router::new()
        .route("/v1/enroll", post(enroll))
        .merge(admin)
        .with_state(service)
}

/// The admin token check of every `/v1/admin/…` route and `/metrics`.
pub(crate) async fn require_admin(
    State(service): State<Service>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response, ServerError> {
    let given = bearer(request.headers()).unwrap_or_default();
    if !constant_time_eq(given.as_bytes(), service.inner.admin_token.as_bytes()) {
        return Err(ServerError::AdminTokenInvalid);
    }
    Ok(next.run(request).await)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn enroll(
    State(service): State<Service>,
    _headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<EnrollResponse>, ServerError> {
    let request: EnrollRequest = serde_json::from_slice(&body).map_err(|e| {
        ServerError::Refused(Refusal::BadRequest {
            reason: format!("the body is not an enrollment request: {e}"),
        })
    })?;
    let token: EnrollmentToken = request
        .token
        .parse()
        .map_err(|_| ServerError::EnrollmentTokenInvalid)?;
    check_identity(&request.identity).map_err(ServerError::Refused)?;
    let issued = service
        .inner
        .credential_signer
        .issue(request.identity.device_id, Utc::now());
    service
        .inner
        .data
        .db
        .enroll(
            &token,
            &request.identity,
            &issued.credential.credential_id.to_string(),
        )
        .await?;
    tracing::info!(device = %request.identity.device_id, "device enrolled");
    Ok(Json(EnrollResponse {
        device_id: request.identity.device_id,
        credential: issued.token,
    }))
}

/// Body of `POST /v1/admin/enrollment-tokens` (optional: an empty body makes a token for any
/// new device).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// Only this device id.
    #[serde(default)]
    pub device_id: Option<DeviceId>,
    /// Only a device of this class.
    #[serde(default)]
    pub device_class: Option<ferry_types::DeviceClass>,
    /// Re-enroll `device_id` (replacing its credential, lifting a revocation).
    #[serde(default)]
    pub reenroll: bool,
    /// The operator's tenant, region and tags the device gets at enrollment
    /// (`{"tenant": "acme", "region": "eu", "tags": ["line-3"]}`).
    #[serde(default)]
    pub device_tags: DeviceTags,
}

async fn new_token(
    State(service): State<Service>,
    body: axum::body::Bytes,
) -> Result<Json<serde_json::Value>, ServerError> {
    let request: NewToken = if body.is_empty() {
        NewToken::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ServerError::Invalid {
            what: "enrollment token request",
            value: String::from_utf8_lossy(&body).chars().take(80).collect(),
            why: e.to_string(),
        })?
    };
    let scope = TokenScope {
        device_id: request.device_id,
        device_class: request.device_class,
        reenroll: request.reenroll,
        tags: request.device_tags,
    };
    let token = service
        .inner
        .data
        .db
        .create_enrollment_token(&scope)
        .await?;
    Ok(Json(json!({ "token": token.as_str() })))
}

async fn revoke(
    State(service): State<Service>,
    Path(device_id): Path<String>,
) -> Result<Json<serde_json::Value>, ServerError> {
    let id: DeviceId = device_id.parse().map_err(|_| ServerError::Invalid {
        what: "device id",
        value: device_id.clone(),
        why: "use the 16 hex digits ferry server devices lists".into(),
    })?;
    if !service.inner.data.db.revoke(&id).await? {
        return Err(ServerError::NotFound(format!("device {id}")));
    }
    Ok(Json(json!({ "device_id": id, "revoked": true })))
}

async fn signing_window(
    State(service): State<Service>,
    Json(window): Json<SigningWindow>,
) -> Result<Json<SigningWindow>, ServerError> {
    service
        .inner
        .data
        .db
        .set_signing_window(&window.class, &window.build_id, window.open)
        .await?;
    Ok(Json(window))
}
