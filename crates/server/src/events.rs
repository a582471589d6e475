//! `POST /v1/events` (event batches from devices, with the device credential), `GET
//! /v1/rates?class=C` (the class's phase rates, for the device's time-remaining
//! estimate), the fleet's admin reads (`GET /v1/admin/devices`, `GET /v1/admin/events`),
//! `GET /metrics`, and the silent-device watch.
//!
//! Ingest is idempotent on (device, sequence): a retried batch is acknowledged and
//! changes nothing. Batches go through one writer task ([`EventWriter`]) that commits the
//! batches queued meanwhile in one transaction (one fsync), the device states folded in
//! the same transaction. A body over [`MAX_BATCH_BYTES`] is `413`, a body that is not a
//! valid batch `400`, a report naming another device `403`, each with `{code, cause, fix}`.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use ferry_events::wire::{EVENTS_PATH, MAX_BATCH_BYTES, RATES_PATH};
use ferry_events::{BatchAck, EventBatch, PhaseRates, ReportInvalid};
use ferry_personalize::Refusal;
use ferry_types::{DeviceClass, DeviceId, Diagnose};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::ServerError;
use crate::db::Db;
use crate::fleet::{DeviceState, Filter, StoredReport};
use crate::metrics::Metrics;
use crate::personalize::Service;

/// How long a device may go without reporting during an update before it is silent,
/// unless `ferry server --silent-after` says otherwise.
pub const DEFAULT_SILENT_AFTER: Duration = Duration::from_secs(30 * 60);

/// Most batches one transaction commits.
pub const INGEST_BATCHES: usize = 64;

/// What the event routes share (cheap to clone).
#[derive(Clone, Debug)]
pub struct Events {
    service: Service,
    writer: EventWriter,
    metrics: Metrics,
    feed: crate::dashboard::Feed,
}

impl Events {
    /// Starts the writer task over the service's database.
    pub fn new(service: Service, metrics: Metrics) -> Events {
        let db = service.inner.data.db.clone();
        let feed = crate::dashboard::Feed::new();
        Events {
            writer: EventWriter::start(db, metrics.clone(), feed.clone()),
            service,
            metrics,
            feed,
        }
    }

    /// The reports as they are committed, for the dashboard's live page.
    pub fn feed(&self) -> &crate::dashboard::Feed {
        &self.feed
    }

    fn db(&self) -> &Db {
        &self.service.inner.data.db
    }

    /// The device whose credential sent the request, enrolled and not revoked.
    async fn device(&self, headers: &HeaderMap) -> Result<DeviceId, ServerError> {
        let credential = self.service.credential(headers)?;
        let device_id = credential.device_id;
        match self.db().device_facts(&device_id, "").await? {
            None => Err(Refusal::UnknownDevice { device_id }.into()),
            Some(f) if f.revoked || f.credential_id != credential.credential_id.to_string() => {
                Err(Refusal::RevokedDevice { device_id }.into())
            }
            Some(_) => Ok(device_id),
        }
    }
}

/// The device routes: `POST /v1/events`, `GET /v1/rates`.
pub fn routes(events: Events) -> Router {
    Router::new()
        .route(EVENTS_PATH, post(ingest))
        .route(RATES_PATH, get(rates))
        .with_state(events)
}

/// The admin routes (the caller puts them behind the admin token).
pub fn admin_routes(events: Events) -> Router {
    let db = events.db().clone();
    Router::new()
        .route("/v1/admin/devices", get(devices))
        .route("/v1/admin/events", get(event_reports))
        .with_state(events.clone())
        .merge(
            Router::new()
                .route("/metrics", get(crate::metrics::metrics))
                .with_state((events.metrics, db)),
        )
}

async fn ingest(
    State(events): State<Events>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<BatchAck>, ServerError> {
    let result = async {
        let device_id = events.device(&headers).await?;
        let bytes = axum::body::to_bytes(body, MAX_BATCH_BYTES)
            .await
            .map_err(|_| ServerError::BodyTooLarge {
                limit: MAX_BATCH_BYTES,
            })?;
        let batch: EventBatch =
            serde_json::from_slice(&bytes).map_err(|e| ReportInvalid::Batch {
                why: format!("the body is not an event batch: {e}"),
            })?;
        batch.validate(device_id)?;
        events.writer.ingest(batch).await
    }
    .await;
    if let Err(e) = &result {
        events.metrics.batch_rejected(e.code());
    }
    result.map(Json)
}

#[derive(Deserialize)]
struct RatesQuery {
    class: String,
}

async fn rates(
    State(events): State<Events>,
    headers: HeaderMap,
    Query(q): Query<RatesQuery>,
) -> Result<Json<PhaseRates>, ServerError> {
    events.device(&headers).await?;
    let class: DeviceClass = q
        .class
        .parse()
        .map_err(|e: ferry_types::DeviceClassError| ServerError::Invalid {
            what: "device class",
            value: q.class.clone(),
            why: e.to_string(),
        })?;
    Ok(Json(events.db().phase_rates(&class).await?))
}

async fn devices(
    State(events): State<Events>,
    Query(filter): Query<Filter>,
) -> Result<Json<Vec<DeviceView>>, ServerError> {
    let enrolled = events.db().devices().await?;
    let states = events.db().device_states(&filter).await?;
    let filtered = filter.class.is_some()
        || filter.version.is_some()
        || filter.state.is_some()
        || filter.code.is_some()
        || filter.update.is_some()
        || filter.since_ms.is_some()
        || filter.until_ms.is_some();
    let views = enrolled
        .into_iter()
        .filter(|d| filter.device.as_ref().is_none_or(|id| *id == d.device_id))
        .filter_map(|enrollment| {
            let state = states
                .iter()
                .find(|s| s.device_id == enrollment.device_id)
                .cloned();
            // With a filter on the state, only devices whose state matches.
            (!filtered || state.is_some()).then_some(DeviceView { enrollment, state })
        })
        .collect();
    Ok(Json(views))
}

/// A device in `GET /v1/admin/devices`: its enrollment, and its state once it reported.
#[derive(Debug, serde::Serialize)]
pub struct DeviceView {
    /// Enrollment.
    #[serde(flatten)]
    pub enrollment: crate::devices::DeviceRow,
    /// What its reports say.
    pub state: Option<DeviceState>,
}

async fn event_reports(
    State(events): State<Events>,
    Query(filter): Query<Filter>,
) -> Result<Json<Vec<StoredReport>>, ServerError> {
    Ok(Json(events.db().event_reports(&filter).await?))
}

struct Ingest {
    batch: EventBatch,
    done: crate::batcher::Done<BatchAck>,
}

/// The one writer of event reports: each round stores every batch queued meanwhile in
/// one transaction ([`Db::ingest`]) and answers each with its acknowledgement only once
/// committed.
#[derive(Debug, Clone)]
pub struct EventWriter {
    queue: mpsc::Sender<Ingest>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ingest({})", self.batch.device_id)
    }
}

impl EventWriter {
    /// Starts the writer task on the current runtime; each committed round's new reports
    /// go to `feed` (the dashboard's live updates).
    pub fn start(db: Db, metrics: Metrics, feed: crate::dashboard::Feed) -> EventWriter {
        let (queue, mut rx) = mpsc::channel::<Ingest>(INGEST_BATCHES * 16);
        tokio::spawn(async move {
            let mut round = Vec::with_capacity(INGEST_BATCHES);
            while rx.recv_many(&mut round, INGEST_BATCHES).await > 0 {
                let batches: Vec<EventBatch> = round.iter().map(|i| i.batch.clone()).collect();
                let acks = db.ingest(&batches).await.map(|(acks, fresh)| {
                    let duplicates = acks.iter().map(|a| a.duplicates).sum();
                    metrics.ingested(&fresh, duplicates);
                    feed.reports(&fresh);
                    acks
                });
                crate::batcher::answer_all(&mut round, acks, |ingest| ingest.done);
            }
        });
        EventWriter { queue }
    }

    /// Stores `batch`; its acknowledgement once committed.
    pub async fn ingest(&self, batch: EventBatch) -> Result<BatchAck, ServerError> {
        crate::batcher::ask(&self.queue, "event writer", |done| Ingest { batch, done }).await
    }
}

/// Marks silent devices every `after / 4` (between 1 and 30 seconds) until aborted, while
/// `leader` leads: with several replicas, the one holding the leader lease runs it (and the
/// rollout halts silence counts). The marking is one conditional statement besides, so a
/// replica that lost the lease mid-round still marks each device once.
pub async fn watch_silence(
    db: Db,
    metrics: Metrics,
    after: Duration,
    leader: crate::leader::Leadership,
) {
    let every = (after / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
    let after_ms = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
    loop {
        tokio::time::sleep(every).await;
        if !leader.is_leader() {
            continue;
        }
        match db
            .mark_silent(chrono::Utc::now().timestamp_millis(), after_ms)
            .await
        {
            Ok(0) => {}
            Ok(n) => {
                metrics.marked_silent(n);
                tracing::warn!(
                    devices = n,
                    "devices stopped reporting mid-update: marked silent"
                );
            }
            Err(e) => {
                tracing::error!(code = e.code(), error = %e, "the silent-device watch failed")
            }
        }
    }
}
