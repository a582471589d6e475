//! Storing event reports once per (device, sequence), folding each new one into its
//! device's state in the same transaction, and marking silent devices.

use chrono::Utc;
use ferry_events::{BatchAck, EventBatch, EventKind, EventReport, EventResult};

use super::state::{self, DeviceState};
use crate::ServerError;
use crate::db::{Backend, BindFloat, Conn, Db};

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
        let mut tx = self.begin_write().await?;
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
                let mut state = state::load_state(&mut tx, &device_id)
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
                state::store_state(&mut tx, &state).await?;
            }
            fresh.extend(new_reports);
            acks.push(ack);
        }
        // The halt rule sees the new reports in the transaction that stores them.
        crate::rollouts::count::count_reports(&mut tx, &fresh, received_ms).await?;
        // So does the dashboard's per-hour chart.
        crate::dashboard::hourly::count_outcomes(&mut tx, &fresh, received_ms).await?;
        tx.commit().await?;
        Ok((acks, fresh))
    }

    /// Marks silent every device with an update in progress and no report since
    /// `now_ms - after_ms`; returns how many became silent. One statement: whichever
    /// replica runs it, each device is marked once.
    pub async fn mark_silent(&self, now_ms: i64, after_ms: i64) -> Result<u64, ServerError> {
        let mut tx = self.begin_write().await?;
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
