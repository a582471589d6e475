//! The local API: HTTP/JSON over `DEVICE/agent.sock` (owner and group only). Every
//! answer is the JSON a device command prints with `--json`; errors are
//! `{"error":{code,cause,fix[,data]}}`.
//!
//! ```text
//! GET  /v1/hello                 {pid, version}
//! GET  /v1/status                the device's status, its last scan, and the agent's state
//!                                (job, suspended, next scan, offers with why_not_now)
//! GET  /v1/offers                the last scan's offers, each with next and why_not_now
//! POST /v1/scan                  scan now: {offers}
//! POST /v1/download  {label?}    stage an update: {outcome}
//! POST /v1/install   {label?}    install (apply a staged one): {outcome}
//! POST /v1/cancel                stop the running job (kept; resumes when asked): {stopped}
//! POST /v1/suspend               stop it and start nothing until resumed: {stopped}
//! POST /v1/resume                start again, continuing the suspended job: {resumed}
//! POST /v1/reload                read config.toml again: {reloaded, changed, policy, …}
//! POST /v1/list-full             every full image for the device: {offers}
//! POST /v1/reboot  {simulate_crash?}  the simulated restart (`ferry reboot`): {rebooted}
//! POST /v1/boot-check            check the running slot (`ferry boot-check`): {slot, ok}
//! POST /v1/audience  {audience}  move the device to an audience: {audience, previous}
//! GET  /v1/why                   scan, then why each release is or is not offered: {why}
//! POST /v1/defer  {version, for} ask the server to defer a release: the server's answer;
//!                                a scan follows to fetch the new signed decision
//! GET  /v1/history               every install (receipts)
//! GET  /v1/doctor                the doctor's report (`ferry doctor --json`)
//! POST /v1/doctor/fix            {fixes}: `ferry doctor --fix`, between jobs
//! POST /v1/doctor/result {ok, cause?}  queue the doctor's result as an event report
//! GET  /v1/journal?fsm=&id=      {records}
//! GET  /v1/progress              {job, progress}: the last progress sample
//! GET  /v1/events?since=N        the event stream (newline-delimited JSON, see `events`)
//! ```

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ferry_agent::stop::StopReason;
use ferry_types::Diagnose;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::agent::{Agent, Job, JobKind};
use crate::error::DaemonError;

/// The local API's routes.
pub fn router(agent: Arc<Agent>) -> axum::Router {
    axum::Router::new()
        .route("/v1/hello", get(hello))
        .route("/v1/status", get(status))
        .route("/v1/offers", get(offers))
        .route("/v1/scan", post(scan))
        .route("/v1/download", post(download))
        .route("/v1/install", post(install))
        .route("/v1/cancel", post(cancel))
        .route("/v1/suspend", post(suspend))
        .route("/v1/resume", post(resume))
        .route("/v1/reload", post(reload))
        .route("/v1/list-full", post(list_full))
        .route("/v1/reboot", post(reboot))
        .route("/v1/boot-check", post(boot_check))
        .route("/v1/audience", post(audience))
        .route("/v1/why", get(why))
        .route("/v1/defer", post(defer))
        .route("/v1/history", get(history))
        .route("/v1/doctor", get(doctor))
        .route("/v1/doctor/fix", post(doctor_fix))
        .route("/v1/doctor/result", post(doctor_result))
        .route("/v1/journal", get(journal))
        .route("/v1/progress", get(progress))
        .route("/v1/events", get(events))
        .with_state(agent)
}

/// An error as the API answers it.
struct ApiError(DaemonError);

impl From<DaemonError> for ApiError {
    fn from(e: DaemonError) -> ApiError {
        ApiError(e)
    }
}

impl From<ferry_agent::AgentError> for ApiError {
    fn from(e: ferry_agent::AgentError) -> ApiError {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            DaemonError::Suspended => StatusCode::CONFLICT,
            DaemonError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let mut error = json!(self.0.report());
        if let DaemonError::Agent(ferry_agent::AgentError::Refused(refusal)) = &self.0 {
            error["data"] = refusal.data();
        }
        (status, Json(json!({ "error": error }))).into_response()
    }
}

type Answer = Result<Json<Value>, ApiError>;

async fn hello(State(agent): State<Arc<Agent>>) -> Json<Value> {
    Json(json!({ "pid": agent.state().pid, "version": env!("CARGO_PKG_VERSION") }))
}

async fn status(State(agent): State<Arc<Agent>>) -> Answer {
    let status = ferry_agent::status::status(&agent.device())?;
    let last_scan = ferry_agent::trust::catalog::last_scan(&agent.device().dir);
    Ok(Json(crate::status_view(
        &status,
        last_scan,
        Some(agent.state()),
    )))
}

async fn offers(State(agent): State<Arc<Agent>>) -> Json<Value> {
    Json(json!(agent.state().offers))
}

/// The body of a download or install.
#[derive(Debug, Default, Deserialize)]
struct LabelBody {
    label: Option<String>,
}

fn label_of(body: &[u8]) -> Result<Option<String>, ApiError> {
    if body.is_empty() {
        return Ok(None);
    }
    let parsed: LabelBody = serde_json::from_slice(body).map_err(|e| {
        ApiError(DaemonError::BadRequest {
            reason: e.to_string(),
        })
    })?;
    Ok(parsed.label)
}

/// Parses a JSON body (an empty one is the default).
fn body_of<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError(DaemonError::BadRequest {
            reason: e.to_string(),
        })
    })
}

async fn scan(State(agent): State<Arc<Agent>>) -> Answer {
    agent.run_job(Job::asked(JobKind::Scan, None)).await?;
    Ok(Json(json!({ "offers": agent.state().offers })))
}

async fn download(State(agent): State<Arc<Agent>>, body: axum::body::Bytes) -> Answer {
    run(agent, JobKind::Download, label_of(&body)?).await
}

async fn install(State(agent): State<Arc<Agent>>, body: axum::body::Bytes) -> Answer {
    run(agent, JobKind::Install, label_of(&body)?).await
}

/// Runs an asked job in its own task: a client that goes away does not stop it.
async fn run(agent: Arc<Agent>, kind: JobKind, label: Option<String>) -> Answer {
    let job = Job::asked(kind, label);
    let task = tokio::spawn(async move { agent.run_job(job).await });
    match task.await {
        Ok(result) => Ok(Json(result?)),
        Err(e) => Err(ApiError(DaemonError::Api {
            path: "(job)".into(),
            reason: e.to_string(),
        })),
    }
}

async fn cancel(State(agent): State<Arc<Agent>>) -> Json<Value> {
    Json(json!({ "stopped": agent.stop(StopReason::Cancelled) }))
}

async fn suspend(State(agent): State<Arc<Agent>>) -> Answer {
    Ok(Json(json!({ "stopped": agent.suspend()? })))
}

async fn resume(State(agent): State<Arc<Agent>>) -> Answer {
    Ok(Json(json!({ "resumed": agent.resume()? })))
}

async fn reload(State(agent): State<Arc<Agent>>) -> Answer {
    Ok(Json(agent.reload()?))
}

async fn list_full(State(agent): State<Arc<Agent>>) -> Answer {
    Ok(Json(
        agent.run_job(Job::asked(JobKind::ListFull, None)).await?,
    ))
}

/// The body of a reboot.
#[derive(Debug, Default, Deserialize)]
struct RebootBody {
    #[serde(default)]
    simulate_crash: bool,
}

async fn reboot(State(agent): State<Arc<Agent>>, body: axum::body::Bytes) -> Answer {
    let RebootBody { simulate_crash } = body_of(&body)?;
    let job = Job {
        simulate_crash,
        ..Job::asked(JobKind::Reboot, None)
    };
    let task = tokio::spawn(async move { agent.run_job(job).await });
    match task.await {
        Ok(result) => Ok(Json(result?)),
        Err(e) => Err(ApiError(DaemonError::Api {
            path: "/v1/reboot".into(),
            reason: e.to_string(),
        })),
    }
}

/// What `ferry boot-check` does: the running slot checked (ticket, seal, health checks).
/// It reads only the running slot, which no job writes, so it does not wait for one.
async fn boot_check(State(agent): State<Arc<Agent>>) -> Answer {
    let device = agent.device();
    let checked = tokio::task::spawn_blocking(move || {
        let running = device.running_slot()?;
        ferry_agent::boot::reboot::boot_check(&device, running).map(|()| running)
    })
    .await
    .map_err(|e| {
        ApiError(DaemonError::Api {
            path: "/v1/boot-check".into(),
            reason: e.to_string(),
        })
    })?;
    Ok(Json(json!({ "slot": checked?, "ok": true })))
}

/// The body of an audience change.
#[derive(Debug, Default, Deserialize)]
struct AudienceBody {
    audience: String,
}

async fn audience(State(agent): State<Arc<Agent>>, body: axum::body::Bytes) -> Answer {
    let AudienceBody { audience } = body_of(&body)?;
    Ok(Json(agent.set_audience(&audience)?))
}

/// `ferry list --why` while the agent runs: a scan through the agent's journal, then the
/// reasons.
async fn why(State(agent): State<Arc<Agent>>) -> Answer {
    agent.run_job(Job::asked(JobKind::Scan, None)).await?;
    let offers: Vec<_> = agent.state().offers.into_iter().map(|o| o.offer).collect();
    let why = ferry_agent::why::why_for(&agent.device(), &offers)
        .await
        .map_err(DaemonError::from)?;
    Ok(Json(json!({ "why": why })))
}

/// The body of a deferral.
#[derive(Debug, Default, Deserialize)]
struct DeferBody {
    version: String,
    #[serde(rename = "for")]
    for_: String,
}

/// `ferry defer` while the agent runs: the server records it; the agent scans next so the
/// signed decision that holds the release is the one it acts on.
async fn defer(State(agent): State<Arc<Agent>>, body: axum::body::Bytes) -> Answer {
    let DeferBody { version, for_ } = body_of(&body)?;
    let answer = ferry_agent::trust::director::defer(&agent.device(), &version, &for_)
        .await
        .map_err(DaemonError::from)?;
    agent.scan_soon();
    Ok(Json(answer))
}

async fn history(State(agent): State<Arc<Agent>>) -> Answer {
    Ok(Json(json!(ferry_agent::status::history(&agent.device())?)))
}

async fn doctor(State(agent): State<Arc<Agent>>) -> Json<Value> {
    use ferry_agent::doctor::{self, Scope, Subject};
    let report = doctor::run(&Subject::of_device(&agent.device()), &Scope::All).await;
    Json(json!(report))
}

/// Body of `POST /v1/doctor/result`.
#[derive(Debug, Default, Deserialize)]
struct DoctorResultBody {
    ok: bool,
    cause: Option<DoctorCause>,
}

#[derive(Debug, Deserialize)]
struct DoctorCause {
    check: String,
    #[serde(flatten)]
    report: ferry_types::Report,
}

async fn doctor_result(State(agent): State<Arc<Agent>>, body: axum::body::Bytes) -> Answer {
    let DoctorResultBody { ok, cause } = body_of(&body)?;
    ferry_agent::report::build::Reporter::for_device(&agent.device())
        .doctor_result(ok, cause.as_ref().map(|c| (c.check.as_str(), &c.report)))
        .map_err(DaemonError::from)?;
    agent.wake_up();
    Ok(Json(json!({ "queued": true })))
}

async fn doctor_fix(State(agent): State<Arc<Agent>>) -> Json<Value> {
    Json(json!({ "fixes": agent.doctor_fix().await }))
}

/// `fsm` and `id` filters of the journal.
#[derive(Debug, Deserialize)]
struct JournalQuery {
    fsm: Option<String>,
    id: Option<String>,
}

async fn journal(State(agent): State<Arc<Agent>>, Query(q): Query<JournalQuery>) -> Answer {
    let dir = agent.device().layout().journal_dir();
    let read = tokio::task::spawn_blocking(move || ferry_fsm::read_journal(dir))
        .await
        .map_err(|e| {
            ApiError(DaemonError::Api {
                path: "/v1/journal".into(),
                reason: e.to_string(),
            })
        })?
        .map_err(|e| ApiError(ferry_agent::AgentError::from(e).into()))?;
    let records: Vec<&ferry_fsm::Record> = read.filter(q.fsm.as_deref(), q.id.as_deref()).collect();
    Ok(Json(json!({
        "records": records,
        "rotated_out": read.rotated_out,
        "torn": read.torn.as_ref().map(|t| json!({
            "path": t.path, "n_bytes_dropped": t.n_bytes_dropped, "n_records_dropped": t.n_records_dropped,
        })),
    })))
}

async fn progress(State(agent): State<Arc<Agent>>) -> Json<Value> {
    let state = agent.state();
    // No job and no sample: what the recommended update waits for, if it is held back.
    let progress = agent.hub.last_progress().or_else(|| {
        state.job.is_none().then_some(())?;
        let held = state.offers.iter().find(|o| o.offer.recommended)?;
        let hold = held.why_not_now.as_ref()?;
        Some(crate::events::Sample::of(&crate::agent::waiting_sample(
            hold,
        )))
    });
    Json(json!({ "job": state.job, "progress": progress }))
}

/// `since`: the last sequence number the client saw.
#[derive(Debug, Deserialize)]
struct EventsQuery {
    #[serde(default)]
    since: u64,
}

async fn events(State(agent): State<Arc<Agent>>, Query(q): Query<EventsQuery>) -> Response {
    let body = Body::from_stream(agent.hub.stream(q.since));
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}
