//! The rollout admin endpoints (the caller puts them behind the admin token):
//! `GET|POST /v1/admin/rollouts`, `GET /v1/admin/rollouts/{id}`,
//! `POST /v1/admin/rollouts/{id}/{pause|resume|halt}`, `GET /v1/admin/explain/{device_id}`,
//! `GET|POST /v1/admin/entitlements`, `POST /v1/admin/entitlements/{id}/revoke`,
//! `GET|PUT /v1/admin/devices/{device_id}/tags`.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use ferry_types::DeviceId;

use super::cohort::DeviceFacts;
use super::entitle::{DeviceTags, Entitlement, NewEntitlement};
use super::{Action, Explanation, NewRollout, Rollout, RolloutView};
use crate::ServerError;
use crate::db::Db;

/// The admin routes of rollouts.
pub fn admin_routes(db: Db) -> Router {
    Router::new()
        .route("/v1/admin/rollouts", get(list).post(create))
        .route("/v1/admin/rollouts/{id}", get(show))
        .route("/v1/admin/rollouts/{id}/{action}", post(act))
        .route("/v1/admin/explain/{device_id}", get(explain))
        .route("/v1/admin/entitlements", get(entitlements).post(grant))
        .route("/v1/admin/entitlements/{id}/revoke", post(revoke))
        .route(
            "/v1/admin/devices/{device_id}/tags",
            get(tags).put(set_tags),
        )
        .with_state(db)
}

async fn list(State(db): State<Db>) -> Result<Json<Vec<Rollout>>, ServerError> {
    Ok(Json(db.rollouts().await?))
}

async fn create(
    State(db): State<Db>,
    Json(new): Json<NewRollout>,
) -> Result<Json<Rollout>, ServerError> {
    Ok(Json(db.create_rollout(&new).await?))
}

async fn show(State(db): State<Db>, Path(id): Path<i64>) -> Result<Json<RolloutView>, ServerError> {
    Ok(Json(db.rollout_view(id).await?))
}

async fn act(
    State(db): State<Db>,
    Path((id, action)): Path<(i64, String)>,
) -> Result<Json<Rollout>, ServerError> {
    let action = match action.as_str() {
        "pause" => Action::Pause,
        "resume" => Action::Resume,
        "halt" => Action::Halt,
        _ => return Err(ServerError::NotFound(format!("rollout action {action:?}"))),
    };
    Ok(Json(db.act_on_rollout(id, action).await?))
}

fn device(device_id: &str) -> Result<DeviceId, ServerError> {
    device_id
        .parse()
        .map_err(|e: ferry_types::IdError| ServerError::Invalid {
            what: "device id",
            value: device_id.to_owned(),
            why: e.to_string(),
        })
}

async fn explain(
    State(db): State<Db>,
    Path(device_id): Path<String>,
) -> Result<Json<Vec<Explanation>>, ServerError> {
    Ok(Json(db.explain(&device(&device_id)?).await?))
}

async fn entitlements(State(db): State<Db>) -> Result<Json<Vec<Entitlement>>, ServerError> {
    Ok(Json(db.entitlements().await?))
}

async fn grant(
    State(db): State<Db>,
    Json(new): Json<NewEntitlement>,
) -> Result<Json<Entitlement>, ServerError> {
    Ok(Json(db.grant_entitlement(&new).await?))
}

async fn revoke(
    State(db): State<Db>,
    Path(id): Path<i64>,
) -> Result<Json<Entitlement>, ServerError> {
    Ok(Json(db.revoke_entitlement(id).await?))
}

async fn tags(
    State(db): State<Db>,
    Path(device_id): Path<String>,
) -> Result<Json<DeviceFacts>, ServerError> {
    Ok(Json(db.cohort_facts(&device(&device_id)?, true).await?))
}

async fn set_tags(
    State(db): State<Db>,
    Path(device_id): Path<String>,
    Json(change): Json<DeviceTags>,
) -> Result<Json<DeviceFacts>, ServerError> {
    Ok(Json(
        db.set_device_tags(&device(&device_id)?, &change).await?,
    ))
}
