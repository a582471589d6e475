//! `GET /metrics`: Prometheus text exposition (format 0.0.4), checked by `promtool check
//! metrics` in the tests. Counters and histograms of this replica (requests, ingest,
//! refusals) live in a registry here; the fleet's gauges (devices by version and status,
//! silent devices, install outcomes, rollbacks) are read from the database at each scrape,
//! so every replica shows the same fleet.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::ServerError;
use crate::db::Db;

/// The code of an error answer, put in the response's extensions by the one
/// `IntoResponse` of [`ServerError`], for the metrics layer.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// This replica's metrics (cheap to clone).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: HistogramVec,
    refusals: IntCounterVec,
    ingested: IntCounterVec,
    batches_rejected: IntCounterVec,
    ingest_lag: HistogramVec,
    silent_marked: prometheus::IntCounter,
    fleet_devices: GaugeVec,
    fleet_silent: IntGauge,
    fleet_outcomes: GaugeVec,
    fleet_rollbacks: GaugeVec,
    rollout_devices: GaugeVec,
    rollout_open_waves: GaugeVec,
    rollout_halted: GaugeVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = HistogramVec::new(
            HistogramOpts::new(
                "ferry_http_request_duration_seconds",
                "Time to answer an HTTP request, by route, method and status class.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            &["route", "method", "status"],
        )
        .expect("static metric definition");
        let refusals = IntCounterVec::new(
            Opts::new(
                "ferry_personalization_refusals_total",
                "Ticket requests refused, by error code.",
            ),
            &["code"],
        )
        .expect("static metric definition");
        let ingested = IntCounterVec::new(
            Opts::new(
                "ferry_event_reports_ingested_total",
                "Event reports received: stored (new) or duplicate (a retried batch).",
            ),
            &["outcome"],
        )
        .expect("static metric definition");
        let batches_rejected = IntCounterVec::new(
            Opts::new(
                "ferry_event_batches_rejected_total",
                "Event batches refused, by error code.",
            ),
            &["code"],
        )
        .expect("static metric definition");
        let ingest_lag = HistogramVec::new(
            HistogramOpts::new(
                "ferry_event_ingest_lag_seconds",
                "Time from an event on the device to its report stored on the server.",
            )
            .buckets(vec![
                0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0, 86400.0,
            ]),
            &["event"],
        )
        .expect("static metric definition");
        let silent_marked = prometheus::IntCounter::new(
            "ferry_devices_marked_silent_total",
            "Devices this replica marked silent (an update in progress, no report in time).",
        )
        .expect("static metric definition");
        let fleet_devices = GaugeVec::new(
            Opts::new(
                "ferry_fleet_devices",
                "Devices that reported, by running version and status.",
            ),
            &["version", "status"],
        )
        .expect("static metric definition");
        let fleet_silent = IntGauge::new(
            "ferry_fleet_devices_silent",
            "Devices with an update in progress that stopped reporting.",
        )
        .expect("static metric definition");
        let fleet_outcomes = GaugeVec::new(
            Opts::new(
                "ferry_fleet_install_outcomes",
                "Install outcomes reported (installed, failed, committed, rolled_back), by code; from the database.",
            ),
            &["outcome", "code"],
        )
        .expect("static metric definition");
        let fleet_rollbacks = GaugeVec::new(
            Opts::new(
                "ferry_fleet_rollbacks",
                "Updates rolled back after the reboot, by code; from the database.",
            ),
            &["code"],
        )
        .expect("static metric definition");
        let rollout_labels = ["rollout", "class", "version"];
        let rollout_devices = GaugeVec::new(
            Opts::new(
                "ferry_rollout_devices",
                "Devices of each rollout by kind: offered (their wave open now), attempted, installed, failed, rolled_back, silent (the current epoch's counts); from the database.",
            ),
            &["rollout", "class", "version", "kind"],
        )
        .expect("static metric definition");
        let rollout_open_waves = GaugeVec::new(
            Opts::new(
                "ferry_rollout_open_waves",
                "Waves of each rollout open now (the current wave is this minus one).",
            ),
            &rollout_labels,
        )
        .expect("static metric definition");
        let rollout_halted = GaugeVec::new(
            Opts::new(
                "ferry_rollout_halted",
                "1 if the rollout is halted (by an operator or the halt rule), else 0.",
            ),
            &rollout_labels,
        )
        .expect("static metric definition");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(refusals.clone()),
            Box::new(ingested.clone()),
            Box::new(batches_rejected.clone()),
            Box::new(ingest_lag.clone()),
            Box::new(silent_marked.clone()),
            Box::new(fleet_devices.clone()),
            Box::new(fleet_silent.clone()),
            Box::new(fleet_outcomes.clone()),
            Box::new(fleet_rollbacks.clone()),
            Box::new(rollout_devices.clone()),
            Box::new(rollout_open_waves.clone()),
            Box::new(rollout_halted.clone()),
        ] {
            registry
                .register(collector)
                .expect("each metric is registered once");
        }
        Metrics {
            registry,
            requests,
            refusals,
            ingested,
            batches_rejected,
            ingest_lag,
            silent_marked,
            fleet_devices,
            fleet_silent,
            fleet_outcomes,
            fleet_rollbacks,
            rollout_devices,
            rollout_open_waves,
            rollout_halted,
        }
    }

    /// Counts reports newly stored and duplicates, and the lag of the new ones.
    pub fn ingested(&self, fresh: &[ferry_events::EventReport], duplicates: u64) {
        self.ingested
            .with_label_values(&["stored"])
            .inc_by(fresh.len() as u64);
        self.ingested
            .with_label_values(&["duplicate"])
            .inc_by(duplicates);
        let now = chrono::Utc::now();
        for report in fresh {
            let lag = (now - report.event_time).num_milliseconds().max(0) as f64 / 1000.0;
            self.ingest_lag
                .with_label_values(&[report.event.as_str()])
                .observe(lag);
        }
    }

    /// Counts a refused batch.
    pub fn batch_rejected(&self, code: &str) {
        self.batches_rejected.with_label_values(&[code]).inc();
    }

    /// Counts devices marked silent.
    pub fn marked_silent(&self, n: u64) {
        self.silent_marked.inc_by(n);
    }

    /// The exposition: the fleet's gauges refreshed from `db`, then every metric.
    pub async fn render(&self, db: &Db) -> Result<String, ServerError> {
        let states = db
            .device_states(&crate::fleet::Filter {
                limit: Some(crate::fleet::MAX_LIMIT),
                ..Default::default()
            })
            .await?;
        self.fleet_devices.reset();
        let mut silent = 0;
        for s in &states {
            let version = s.version.as_deref().unwrap_or("unknown");
            self.fleet_devices
                .with_label_values(&[version, s.status.as_str()])
                .inc();
            silent += i64::from(s.silent_since_ms.is_some());
        }
        self.fleet_silent.set(silent);
        self.fleet_outcomes.reset();
        self.fleet_rollbacks.reset();
        for (outcome, code, n) in db.outcome_counts().await? {
            self.fleet_outcomes
                .with_label_values(&[outcome.as_str(), code.as_str()])
                .set(n as f64);
            if outcome == "rolled_back" {
                self.fleet_rollbacks
                    .with_label_values(&[code.as_str()])
                    .set(n as f64);
            }
        }
        self.rollout_devices.reset();
        self.rollout_open_waves.reset();
        self.rollout_halted.reset();
        for stats in db.rollout_stats().await? {
            let r = &stats.rollout;
            let id = r.id.to_string();
            let labels = [id.as_str(), r.class.as_str(), r.version.as_str()];
            for (kind, n) in &stats.devices {
                self.rollout_devices
                    .with_label_values(&[labels[0], labels[1], labels[2], kind])
                    .set(*n as f64);
            }
            self.rollout_open_waves
                .with_label_values(&labels)
                .set(f64::from(stats.open_waves));
            self.rollout_halted
                .with_label_values(&labels)
                .set(f64::from(u8::from(
                    r.state == crate::rollouts::RolloutState::Halted,
                )));
        }
        let mut text = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut text)
            .map_err(|e| ServerError::Io {
                op: "encoding the metrics",
                source: std::io::Error::other(e),
            })?;
        String::from_utf8(text).map_err(|e| ServerError::Io {
            op: "encoding the metrics",
            source: std::io::Error::other(e),
        })
    }
}

/// The layer that times every request and counts personalization refusals by code.
pub async fn observe(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = format!("{}xx", response.status().as_u16() / 100);
    metrics
        .requests
        .with_label_values(&[route.as_str(), method.as_str(), status.as_str()])
        .observe(started.elapsed().as_secs_f64());
    if route == "/v1/personalize"
        && let Some(ErrorCode(code)) = response.extensions().get::<ErrorCode>()
    {
        metrics.refusals.with_label_values(&[code]).inc();
    }
    response
}

/// `GET /metrics` (behind the admin token).
pub async fn metrics(
    State((metrics, db)): State<(Metrics, Db)>,
) -> Result<impl IntoResponse, ServerError> {
    let text = metrics.render(&db).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    ))
}
