//! The fleet in SQL (`migrations/0006_events.sql`): storing event reports once per
//! (device, sequence), folding each new report into the device's current state in the
//! same transaction, marking silent devices, and the read side (devices, events, the
//! summary, the per-class phase rates).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ferry_events::{
    BatchAck, EventBatch, EventKind, EventReport, EventResult, PhaseRate, PhaseRates,
};
use ferry_types::{DeviceClass, PayloadKind};
use serde::Serialize;
use sqlx::Row;

use crate::ServerError;
use crate::db::{Backend, BindFloat, Conn, Db, DbRow, Filtered, get_flag};

/// Installed updates the phase rates are medians over, per phase and payload kind.
pub const RATE_SAMPLES: usize = 200;

/// A device's current state as the fleet read side shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeviceState {
    /// Device id.
    pub device_id: String,
    /// Class.
    pub device_class: String,
    /// The version it runs.
    pub version: Option<String>,
    /// The slot it runs from.
    pub slot: Option<String>,
    /// `updating`, `staged`, `committed`, `failed`, `rolled_back`, `unhealthy` (a check failed in
    /// the post-commit watch) or `idle`.
    pub status: String,
    /// Its last event and when it happened (Unix ms, device clock).
    pub last_event: String,
    /// When the last event happened (Unix ms, device clock).
    pub last_event_ms: i64,
    /// The highest sequence folded in.
    pub last_sequence: i64,
    /// When the server last received a report (Unix ms, server clock).
    pub last_report_ms: i64,
    /// The update in progress or last made.
    pub update_id: Option<String>,
    /// The version it updates from.
    pub from_version: Option<String>,
    /// The version it updates to.
    pub target_version: Option<String>,
    /// The phase (controller state) the update is in.
    pub update_state: Option<String>,
    /// The update's percent, from the last progress report.
    pub update_percent: Option<f64>,
    /// When the update started (Unix ms, device clock).
    pub update_started_ms: Option<i64>,
    /// The payload that wrote the slot.
    pub payload_kind: Option<String>,
    /// Bytes downloaded for the update.
    pub bytes_downloaded: Option<i64>,
    /// Seconds per phase, from the update's latest report that carried them.
    pub phases: Vec<(String, f64)>,
    /// The last failure's code.
    pub last_error_code: Option<String>,
    /// The state it failed in.
    pub last_error_state: Option<String>,
    /// The machine that failed.
    pub last_error_machine: Option<String>,
    /// When (Unix ms, device clock).
    pub last_error_ms: Option<i64>,
    /// Whether its last update rolled back after the reboot.
    pub rolled_back: bool,
    /// Since when it is silent: updating, with no report within the limit.
    pub silent_since_ms: Option<i64>,
    /// Reports its outbox dropped when full, ever.
    pub outbox_dropped: i64,
    /// Whether its outbox was full at its last batch.
    pub outbox_full: bool,
}

impl DeviceState {
    /// Folds one new report in (reports older than the last folded one are stored but do
    /// not move the state back).
    pub fn apply(&mut self, report: &EventReport, received_ms: i64) {
        self.last_report_ms = self.last_report_ms.max(received_ms);
        self.silent_since_ms = None;
        if (report.sequence as i64) < self.last_sequence {
            return;
        }
        self.last_sequence = report.sequence as i64;
        self.device_class = report.device_class.to_string();
        if let Some(v) = &report.current_os_version {
            self.version = Some(v.to_string());
        }
        if let Some(slot) = report.current_slot {
            self.slot = Some(slot.to_string());
        }
        self.last_event = report.event.to_string();
        self.last_event_ms = report.event_time.timestamp_millis();
        let uuid = report.uuid.map(|u| u.to_string());
        let same_update = uuid.is_some() && uuid == self.update_id;
        if report.event == EventKind::DoctorResult {
            if let Some(e) = &report.error {
                self.set_error(report, e);
            }
            return;
        }
        if uuid.is_some() && !same_update {
            // A new update: forget the previous one's progress.
            self.update_id = uuid;
            self.from_version = report.current_os_version.as_ref().map(|v| v.to_string());
            self.update_started_ms = Some(self.last_event_ms);
            self.update_percent = None;
            self.phases.clear();
            self.payload_kind = None;
            self.bytes_downloaded = None;
            self.rolled_back = false;
        }
        if let Some(t) = &report.target_os_version {
            self.target_version = Some(t.to_string());
        }
        if !report.phases.is_empty() {
            self.phases = report
                .phases
                .iter()
                .map(|p| (p.phase.clone(), p.secs))
                .collect();
        }
        if let Some(p) = &report.payload {
            self.payload_kind = Some(p.kind.to_string());
            self.bytes_downloaded = Some(p.bytes_downloaded as i64);
        }
        let controller_state = report
            .transition
            .as_ref()
            .filter(|t| t.machine == "controller")
            .map(|t| t.to.clone());
        match report.event {
            EventKind::Progress => {
                self.status = "updating".into();
                if let Some(p) = &report.progress {
                    self.update_state = Some(p.phase.clone());
                    self.update_percent = Some(p.percent);
                }
            }
            EventKind::InstallStarted
            | EventKind::Personalized
            | EventKind::DownloadStarted
            | EventKind::PayloadFallback
            | EventKind::Downloaded
            | EventKind::Prepared => {
                self.status = "updating".into();
                if let Some(state) = controller_state {
                    self.update_state = Some(state);
                } else if report.event == EventKind::DownloadStarted {
                    self.update_state = Some("DOWNLOADING_UPDATE".into());
                } else if report.event == EventKind::InstallStarted {
                    self.update_state = Some("ACCEPTED".into());
                    self.update_percent = Some(0.0);
                }
            }
            EventKind::Installed => {
                self.status = "staged".into();
                self.update_state = Some("STAGED".into());
                self.update_percent = Some(100.0);
            }
            EventKind::Committed => {
                self.status = "committed".into();
                self.update_state = Some("COMMITTED".into());
                self.update_percent = Some(100.0);
            }
            EventKind::Failed => {
                self.status = "failed".into();
                if let Some(e) = &report.error {
                    self.set_error(report, e);
                    self.update_state = e.state.clone();
                }
            }
            EventKind::RolledBack => {
                self.status = "rolled_back".into();
                self.rolled_back = true;
                self.update_state = Some("ROLLED_BACK".into());
                if let Some(e) = &report.error {
                    self.set_error(report, e);
                }
            }
            EventKind::Prestaged => {
                self.status = "prestaged".into();
                self.update_state = Some("PRESTAGED".into());
            }
            EventKind::Parked => {
                self.status = "parked".into();
                self.update_state = Some("PARKED".into());
            }
            EventKind::Dropped => {
                self.status = "dropped".into();
                self.update_state = Some("DROPPED".into());
                if let Some(e) = &report.error {
                    self.set_error(report, e);
                }
            }
            EventKind::HealthFailed => {
                self.status = "unhealthy".into();
                if let Some(e) = &report.error {
                    self.set_error(report, e);
                }
            }
            EventKind::DoctorResult => {}
        }
    }

    fn set_error(&mut self, report: &EventReport, e: &ferry_events::ErrorReport) {
        self.last_error_code = Some(e.code.clone());
        self.last_error_state = e.state.clone();
        self.last_error_machine = e.machine.clone();
        self.last_error_ms = Some(report.event_time.timestamp_millis());
    }
}

/// A stored report as the read side lists it.
#[derive(Debug, Clone, Serialize)]
pub struct StoredReport {
    /// When the server received it (Unix ms).
    pub received_ms: i64,
    /// The report as the device sent it.
    pub report: EventReport,
}

/// Filters of `GET /v1/admin/events` and `/v1/admin/devices` (all optional, ANDed).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Filter {
    /// One device.
    pub device: Option<String>,
    /// Device class.
    pub class: Option<String>,
    /// Running version (devices) or the report's running version (events).
    pub version: Option<String>,
    /// Device status (`updating`, `failed`, …, or `silent`) or, for events, the event
    /// (`installed`, `failed`, …).
    pub state: Option<String>,
    /// Error code.
    pub code: Option<String>,
    /// Update UUID.
    pub update: Option<String>,
    /// Received at or after (Unix ms).
    pub since_ms: Option<i64>,
    /// Received before (Unix ms).
    pub until_ms: Option<i64>,
    /// Most rows (default 1000, at most 10,000).
    pub limit: Option<i64>,
}

/// `ferry server fleet`: the fleet at a glance.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FleetSummary {
    /// Devices that reported.
    pub devices: u64,
    /// Devices per running version.
    pub versions: BTreeMap<String, u64>,
    /// Devices per status.
    pub statuses: BTreeMap<String, u64>,
    /// Failed devices per code.
    pub failed_by_code: BTreeMap<String, u64>,
    /// Rolled-back devices per code.
    pub rolled_back_by_code: BTreeMap<String, u64>,
    /// Silent devices.
    pub silent: u64,
    /// Every device's state.
    pub device_states: Vec<DeviceState>,
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

impl Db {
    /// Stores the batches (already validated, each its device's) in one transaction:
    /// each report once per (device, sequence), every new one folded into its device's
    /// state, installed updates' phases sampled for the rates. Returns one
    /// acknowledgement per batch, in order, and the reports newly stored.
    pub async fn ingest(
        &self,
        batches: &[EventBatch],
    ) -> Result<(Vec<BatchAck>, Vec<EventReport>), ServerError> {
        let received_ms = now_ms();
        let mut tx = self.pool().begin().await?;
        if self.backend() == Backend::Postgres {
            // Replicas ingest at once: each device's state is read, folded and written back
            // under a per-device transaction lock (taken in one order, so two ingests never
            // wait on each other in a cycle). SQLite has one writer at a time already.
            let devices: std::collections::BTreeSet<String> =
                batches.iter().map(|b| b.device_id.to_string()).collect();
            for device_id in devices {
                sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock(hashtext($1))) AS locked")
                    .bind(device_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let mut acks = Vec::with_capacity(batches.len());
        let mut fresh = Vec::new();
        for batch in batches {
            let device_id = batch.device_id.to_string();
            let mut ack = BatchAck {
                device_id: batch.device_id,
                acked: Vec::with_capacity(batch.reports.len()),
                stored: 0,
                duplicates: 0,
            };
            let mut new_reports = Vec::new();
            for report in &batch.reports {
                let body = serde_json::to_string(report)
                    .map_err(|e| ServerError::Database(sqlx::Error::Encode(e.into())))?;
                let error = report.error.as_ref();
                let state = report
                    .transition
                    .as_ref()
                    .map(|t| t.to.clone())
                    .or_else(|| report.progress.as_ref().map(|p| p.phase.clone()));
                let inserted = sqlx::query(
                    "INSERT INTO event_reports (device_id, sequence, update_id, event, result,
                        event_time_ms, received_ms, device_class, version, target_version, state, machine,
                        error_code, percent, body)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
                     ON CONFLICT DO NOTHING",
                )
                .bind(&device_id)
                .bind(report.sequence as i64)
                .bind(report.uuid.map(|u| u.to_string()))
                .bind(report.event.as_str())
                .bind(result_str(report.result))
                .bind(report.event_time.timestamp_millis())
                .bind(received_ms)
                .bind(report.device_class.as_str())
                .bind(report.current_os_version.as_ref().map(|v| v.to_string()))
                .bind(report.target_os_version.as_ref().map(|v| v.to_string()))
                .bind(state)
                .bind(report.transition.as_ref().map(|t| t.machine.clone()))
                .bind(error.map(|e| e.code.clone()))
                .bind_float(report.progress.as_ref().map(|p| p.percent))
                .bind(body)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                ack.acked.push(report.sequence);
                if inserted == 1 {
                    ack.stored += 1;
                    new_reports.push(report.clone());
                } else {
                    ack.duplicates += 1;
                }
            }
            if !new_reports.is_empty() {
                let mut state =
                    load_state(&mut tx, &device_id)
                        .await?
                        .unwrap_or_else(|| DeviceState {
                            device_id: device_id.clone(),
                            status: "idle".into(),
                            ..DeviceState::default()
                        });
                for report in &new_reports {
                    state.apply(report, received_ms);
                    if report.event == EventKind::Installed {
                        insert_samples(&mut tx, report, received_ms).await?;
                    }
                }
                state.outbox_dropped = state
                    .outbox_dropped
                    .max((batch.outbox.dropped_progress + batch.outbox.dropped_steps) as i64);
                state.outbox_full = batch.outbox.full;
                store_state(&mut tx, &state).await?;
            }
            fresh.extend(new_reports);
            acks.push(ack);
        }
        // The halt rule sees the new reports in the transaction that stores them.
        crate::rollouts::count::count_reports(&mut tx, &fresh, received_ms).await?;
        tx.commit().await?;
        Ok((acks, fresh))
    }

    /// Marks silent every device with an update in progress and no report since
    /// `now_ms - after_ms`; returns how many became silent. One statement: whichever
    /// replica runs it, each device is marked once.
    pub async fn mark_silent(&self, now_ms: i64, after_ms: i64) -> Result<u64, ServerError> {
        let mut tx = self.pool().begin().await?;
        let silent: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "UPDATE device_state SET silent_since_ms = $1
             WHERE status = 'updating' AND silent_since_ms IS NULL AND last_report_ms < $2
             RETURNING device_id, device_class, target_version",
        )
        .bind(now_ms)
        .bind(now_ms - after_ms)
        .fetch_all(&mut *tx)
        .await?;
        // Silence counts against the rollout in the same transaction.
        crate::rollouts::count::count_silent(&mut tx, &silent, now_ms).await?;
        tx.commit().await?;
        Ok(silent.len() as u64)
    }

    /// Device states matching `filter` (`state` may be `silent`), by device id.
    pub async fn device_states(&self, filter: &Filter) -> Result<Vec<DeviceState>, ServerError> {
        let mut q = Filtered::new("SELECT * FROM device_state WHERE 1 = 1");
        if let Some(device) = &filter.device {
            q.push(" AND device_id = ").push_bind(device.clone());
        }
        if let Some(class) = &filter.class {
            q.push(" AND device_class = ").push_bind(class.clone());
        }
        if let Some(version) = &filter.version {
            q.push(" AND version = ").push_bind(version.clone());
        }
        match filter.state.as_deref() {
            Some("silent") => {
                q.push(" AND silent_since_ms IS NOT NULL");
            }
            Some(status) => {
                q.push(" AND status = ").push_bind(status.to_owned());
            }
            None => {}
        }
        if let Some(code) = &filter.code {
            q.push(" AND last_error_code = ").push_bind(code.clone());
        }
        if let Some(update) = &filter.update {
            q.push(" AND update_id = ").push_bind(update.clone());
        }
        if let Some(since) = filter.since_ms {
            q.push(" AND last_report_ms >= ").push_bind(since);
        }
        if let Some(until) = filter.until_ms {
            q.push(" AND last_report_ms < ").push_bind(until);
        }
        q.push(" ORDER BY device_id LIMIT ")
            .push_bind(limit(filter));
        let rows = q.fetch_all(self).await?;
        rows.iter().map(state_from_row).collect()
    }

    /// Stored reports matching `filter` (`state` is the event), oldest first.
    pub async fn event_reports(&self, filter: &Filter) -> Result<Vec<StoredReport>, ServerError> {
        let mut q = Filtered::new("SELECT received_ms, body FROM event_reports WHERE 1 = 1");
        if let Some(device) = &filter.device {
            q.push(" AND device_id = ").push_bind(device.clone());
        }
        if let Some(class) = &filter.class {
            q.push(" AND device_class = ").push_bind(class.clone());
        }
        if let Some(version) = &filter.version {
            q.push(" AND (version = ")
                .push_bind(version.clone())
                .push(" OR target_version = ")
                .push_bind(version.clone());
            q.push(")");
        }
        if let Some(event) = &filter.state {
            q.push(" AND event = ").push_bind(event.clone());
        }
        if let Some(code) = &filter.code {
            q.push(" AND error_code = ").push_bind(code.clone());
        }
        if let Some(update) = &filter.update {
            q.push(" AND update_id = ").push_bind(update.clone());
        }
        if let Some(since) = filter.since_ms {
            q.push(" AND received_ms >= ").push_bind(since);
        }
        if let Some(until) = filter.until_ms {
            q.push(" AND received_ms < ").push_bind(until);
        }
        q.push(" ORDER BY device_id, sequence LIMIT ")
            .push_bind(limit(filter));
        let rows = q.fetch_all(self).await?;
        rows.iter()
            .map(|row| {
                let body: String = row.try_get("body")?;
                Ok(StoredReport {
                    received_ms: row.try_get("received_ms")?,
                    report: serde_json::from_str(&body)
                        .map_err(|e| ServerError::Database(sqlx::Error::Decode(e.into())))?,
                })
            })
            .collect()
    }

    /// The fleet at a glance.
    pub async fn fleet_summary(&self) -> Result<FleetSummary, ServerError> {
        let states = self
            .device_states(&Filter {
                limit: Some(MAX_LIMIT),
                ..Filter::default()
            })
            .await?;
        let mut summary = FleetSummary {
            devices: states.len() as u64,
            ..FleetSummary::default()
        };
        for s in &states {
            *summary
                .versions
                .entry(s.version.clone().unwrap_or_else(|| "unknown".into()))
                .or_default() += 1;
            *summary.statuses.entry(s.status.clone()).or_default() += 1;
            let code = s
                .last_error_code
                .clone()
                .unwrap_or_else(|| "unknown".into());
            match s.status.as_str() {
                "failed" => *summary.failed_by_code.entry(code).or_default() += 1,
                "rolled_back" => *summary.rolled_back_by_code.entry(code).or_default() += 1,
                _ => {}
            }
            if s.silent_since_ms.is_some() {
                summary.silent += 1;
            }
        }
        summary.device_states = states;
        Ok(summary)
    }

    /// Terminal outcomes stored, by event and code (`/metrics`).
    pub async fn outcome_counts(&self) -> Result<Vec<(String, String, i64)>, ServerError> {
        let rows = sqlx::query(
            "SELECT event, COALESCE(error_code, '') AS code, COUNT(*) AS n FROM event_reports
             WHERE event IN ('installed', 'failed', 'committed', 'rolled_back')
             GROUP BY event, code",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("event")?,
                    row.try_get("code")?,
                    row.try_get("n")?,
                ))
            })
            .collect()
    }

    /// The class's phase rates: medians over its last [`RATE_SAMPLES`] installed updates
    /// per phase (and payload kind for the download).
    pub async fn phase_rates(&self, class: &DeviceClass) -> Result<PhaseRates, ServerError> {
        let rows = sqlx::query(
            "SELECT phase, payload_kind, secs, bytes FROM phase_samples
             WHERE device_class = $1 ORDER BY received_ms DESC LIMIT $2",
        )
        .bind(class.as_str())
        .bind((RATE_SAMPLES * 8) as i64)
        .fetch_all(self.pool())
        .await?;
        let mut groups: BTreeMap<(String, Option<String>), Samples> = BTreeMap::new();
        for row in &rows {
            let phase: String = row.try_get("phase")?;
            let kind: Option<String> = row.try_get("payload_kind")?;
            let secs: f64 = row.try_get("secs")?;
            let bytes: Option<i64> = row.try_get("bytes")?;
            let (all_secs, rates) = groups.entry((phase, kind)).or_default();
            if all_secs.len() >= RATE_SAMPLES {
                continue;
            }
            all_secs.push(secs);
            if let Some(bytes) = bytes.filter(|_| secs > 0.0) {
                rates.push(bytes as f64 / secs);
            }
        }
        let rates = groups
            .into_iter()
            .map(|((phase, kind), (mut secs, mut per_sec))| PhaseRate {
                phase,
                payload: kind.and_then(|k| k.parse::<PayloadKind>().ok()),
                samples: secs.len() as u32,
                median_secs: median(&mut secs).unwrap_or(0.0),
                median_bytes_per_sec: median(&mut per_sec),
            })
            .collect();
        Ok(PhaseRates {
            class: class.clone(),
            computed_at: Utc::now(),
            rates,
        })
    }
}

/// One phase's samples: seconds, and bytes per second where the phase has bytes.
type Samples = (Vec<f64>, Vec<f64>);

/// Most rows a read returns.
pub const MAX_LIMIT: i64 = 10_000;

fn limit(filter: &Filter) -> i64 {
    filter.limit.unwrap_or(1000).clamp(1, MAX_LIMIT)
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

fn result_str(result: EventResult) -> &'static str {
    match result {
        EventResult::Success => "success",
        EventResult::Failure => "failure",
        EventResult::InProgress => "in_progress",
    }
}

/// The phases of an installed update that make the rates: personalize (seconds only),
/// download (payload bytes fetched), prepare (image bytes verified).
async fn insert_samples(
    tx: &mut Conn,
    report: &EventReport,
    received_ms: i64,
) -> Result<(), ServerError> {
    let payload = report.payload.as_ref();
    let samples = [
        ("PREFLIGHT_PERSONALIZE", None, None),
        (
            "DOWNLOADING_UPDATE",
            payload.map(|p| p.kind.to_string()),
            payload.map(|p| p.bytes_downloaded as i64),
        ),
        (
            "PREPARING_UPDATE",
            None,
            payload.and_then(|p| p.image_size).map(|s| s as i64),
        ),
    ];
    for (phase, kind, bytes) in samples {
        let Some(secs) = report.phase_secs(phase) else {
            continue;
        };
        sqlx::query(
            "INSERT INTO phase_samples (device_class, phase, payload_kind, secs, bytes, received_ms)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(report.device_class.as_str())
        .bind(phase)
        .bind(kind)
        .bind(secs)
        .bind(bytes)
        .bind(received_ms)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

async fn load_state(tx: &mut Conn, device_id: &str) -> Result<Option<DeviceState>, ServerError> {
    let row = sqlx::query("SELECT * FROM device_state WHERE device_id = $1")
        .bind(device_id)
        .fetch_optional(&mut *tx)
        .await?;
    row.as_ref().map(state_from_row).transpose()
}

async fn store_state(tx: &mut Conn, s: &DeviceState) -> Result<(), ServerError> {
    let phases = serde_json::to_string(&s.phases)
        .map_err(|e| ServerError::Database(sqlx::Error::Encode(e.into())))?;
    sqlx::query(
        "INSERT INTO device_state (device_id, device_class, version, slot, status,
            last_event, last_event_ms, last_sequence, last_report_ms, update_id, from_version,
            target_version, update_state, update_percent, update_started_ms, payload_kind,
            bytes_downloaded, phases, last_error_code, last_error_state, last_error_machine,
            last_error_ms, rolled_back, silent_since_ms, outbox_dropped, outbox_full)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)
         ON CONFLICT (device_id) DO UPDATE SET
            device_class = excluded.device_class,
            version = excluded.version,
            slot = excluded.slot,
            status = excluded.status,
            last_event = excluded.last_event,
            last_event_ms = excluded.last_event_ms,
            last_sequence = excluded.last_sequence,
            last_report_ms = excluded.last_report_ms,
            update_id = excluded.update_id,
            from_version = excluded.from_version,
            target_version = excluded.target_version,
            update_state = excluded.update_state,
            update_percent = excluded.update_percent,
            update_started_ms = excluded.update_started_ms,
            payload_kind = excluded.payload_kind,
            bytes_downloaded = excluded.bytes_downloaded,
            phases = excluded.phases,
            last_error_code = excluded.last_error_code,
            last_error_state = excluded.last_error_state,
            last_error_machine = excluded.last_error_machine,
            last_error_ms = excluded.last_error_ms,
            rolled_back = excluded.rolled_back,
            silent_since_ms = excluded.silent_since_ms,
            outbox_dropped = excluded.outbox_dropped,
            outbox_full = excluded.outbox_full",
    )
    .bind(&s.device_id)
    .bind(&s.device_class)
    .bind(&s.version)
    .bind(&s.slot)
    .bind(&s.status)
    .bind(&s.last_event)
    .bind(s.last_event_ms)
    .bind(s.last_sequence)
    .bind(s.last_report_ms)
    .bind(&s.update_id)
    .bind(&s.from_version)
    .bind(&s.target_version)
    .bind(&s.update_state)
    .bind_float(s.update_percent)
    .bind(s.update_started_ms)
    .bind(&s.payload_kind)
    .bind(s.bytes_downloaded)
    .bind(phases)
    .bind(&s.last_error_code)
    .bind(&s.last_error_state)
    .bind(&s.last_error_machine)
    .bind(s.last_error_ms)
    .bind(i64::from(s.rolled_back))
    .bind(s.silent_since_ms)
    .bind(s.outbox_dropped)
    .bind(i64::from(s.outbox_full))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub(crate) fn state_from_row(row: &DbRow) -> Result<DeviceState, ServerError> {
    let phases: Option<String> = row.try_get("phases")?;
    Ok(DeviceState {
        device_id: row.try_get("device_id")?,
        device_class: row.try_get("device_class")?,
        version: row.try_get("version")?,
        slot: row.try_get("slot")?,
        status: row.try_get("status")?,
        last_event: row.try_get("last_event")?,
        last_event_ms: row.try_get("last_event_ms")?,
        last_sequence: row.try_get("last_sequence")?,
        last_report_ms: row.try_get("last_report_ms")?,
        update_id: row.try_get("update_id")?,
        from_version: row.try_get("from_version")?,
        target_version: row.try_get("target_version")?,
        update_state: row.try_get("update_state")?,
        update_percent: row.try_get("update_percent")?,
        update_started_ms: row.try_get("update_started_ms")?,
        payload_kind: row.try_get("payload_kind")?,
        bytes_downloaded: row.try_get("bytes_downloaded")?,
        phases: phases
            .and_then(|p| serde_json::from_str(&p).ok())
            .unwrap_or_default(),
        last_error_code: row.try_get("last_error_code")?,
        last_error_state: row.try_get("last_error_state")?,
        last_error_machine: row.try_get("last_error_machine")?,
        last_error_ms: row.try_get("last_error_ms")?,
        rolled_back: get_flag(row, "rolled_back")?,
        silent_since_ms: row.try_get("silent_since_ms")?,
        outbox_dropped: row.try_get("outbox_dropped")?,
        outbox_full: get_flag(row, "outbox_full")?,
    })
}

/// Unix milliseconds as a UTC time (for rendering).
pub fn time_of(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(sequence: u64, event: EventKind, uuid: u128) -> EventReport {
        let text = r#"{"report_version": 1, "sequence": SEQ, "device_id": "00000000000004d2",
            "uuid": "UUID", "event": "EVENT", "event_time": "2026-03-20T18:51:32Z",
            "result": "success", "transition": null, "audience_type": "customer",
            "device_class": "vm", "device_model": "m", "platform": "p", "core_version": "0.1.0",
            "current_os_type": "system", "current_os_version": "1.0",
            "current_base_os_version": "1.0", "current_slot": "a", "target_os_version": "2.0",
            "update_type": null, "preferred_type": null, "battery_level": null,
            "battery_is_charging": false, "on_ac_power": true, "low_power_mode": false,
            "metered_network": null, "data_fs_capacity": 1, "data_fs_free": 1,
            "system_fs_capacity": 1, "system_fs_free": 1, "storage_capacity": 1,
            "total_required_free_space": null, "mandatory_update_eligible": false,
            "mandatory_update_optional": true, "pre_staging_enabled": false,
            "pre_staging_max_size": null, "pre_staging_optional_size": null,
            "pre_staging_required_size": null, "ramp_enabled": false,
            "rapid_security_response_installed": false,
            "rapid_security_response_semi_splat": false, "facts_error": null, "phases": [],
            "payload": null, "progress": null, "error": null, "fallback": null,
            "boot_counter_rolled_back": null}"#
            .replace("SEQ", &sequence.to_string())
            .replace("UUID", &uuid::Uuid::from_u128(uuid).to_string())
            .replace("EVENT", event.as_str());
        let mut r: EventReport = serde_json::from_str(&text).unwrap();
        if event == EventKind::Failed {
            r.error = Some(ferry_events::ErrorReport {
                code: "NOT_SIGNED".into(),
                cause: "c".into(),
                fix: "f".into(),
                machine: Some("controller".into()),
                state: Some("PREFLIGHT_PERSONALIZE".into()),
            });
        }
        r
    }

    #[test]
    fn the_fold_follows_an_update_and_never_moves_back() {
        let mut state = DeviceState::default();
        state.apply(&report(1, EventKind::InstallStarted, 7), 10);
        assert_eq!(state.status, "updating");
        state.apply(&report(3, EventKind::Failed, 7), 11);
        assert_eq!(
            (state.status.as_str(), state.last_error_code.as_deref()),
            ("failed", Some("NOT_SIGNED"))
        );
        assert_eq!(
            state.last_error_state.as_deref(),
            Some("PREFLIGHT_PERSONALIZE")
        );
        // A late report (lower sequence) is stored but does not move the state back.
        state.silent_since_ms = Some(5);
        state.apply(&report(2, EventKind::Personalized, 7), 12);
        assert_eq!(state.status, "failed");
        assert_eq!(state.silent_since_ms, None, "any report ends silence");
        assert_eq!(state.last_report_ms, 12);
        // The next update starts clean.
        state.apply(&report(4, EventKind::Installed, 8), 13);
        assert_eq!(state.status, "staged");
        assert_eq!(state.update_id, Some(uuid::Uuid::from_u128(8).to_string()));
        assert_eq!(state.update_percent, Some(100.0));
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }
}
