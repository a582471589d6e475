//! Storing event reports once per (device, sequence), folding each new one into its
//! device's state in the same transaction, and marking silent devices.

use std::collections::{BTreeSet, HashSet};

use chrono::Utc;
use ferry_events::{BatchAck, EventBatch, EventKind, EventReport, EventResult};
use sqlx::Row;

use super::state::{self, DeviceState};
use crate::ServerError;
use crate::db::{Backend, BindFloat, Conn, Db, placeholder_rows, rows_per_statement};

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// The columns of `event_reports` an ingest writes, in the order [`insert_reports`] binds.
const REPORT_COLUMNS: &str = "device_id, sequence, update_id, event, result, event_time_ms, \
    received_ms, device_class, version, target_version, state, machine, error_code, percent, body";

impl Db {
    /// Stores the batches (already validated, each its device's) in one transaction:
    /// each report once per (device, sequence), every new one folded into its device's
    /// state, installed updates' phases sampled for the rates. Returns one
    /// acknowledgement per batch, in order, and the reports newly stored.
    ///
    /// A round costs a fixed number of statements whatever its size (reports, states and
    /// samples are each written by one multi-row statement): on PostgreSQL every statement
    /// is a round trip, and one a report made the replicas' ingest wait on the network.
    pub async fn ingest(
        &self,
        batches: &[EventBatch],
    ) -> Result<(Vec<BatchAck>, Vec<EventReport>), ServerError> {
        let received_ms = now_ms();
        let ids: Vec<String> = batches.iter().map(|b| b.device_id.to_string()).collect();
        let mut tx = self.begin_write().await?;
        if self.backend() == Backend::Postgres {
            // Replicas ingest at once: each device's state is read, folded and written back
            // under a per-device transaction lock. SQLite has one writer at a time already.
            lock_devices(&mut tx, batches).await?;
        }
        // Each (device, sequence) once: a copy later in the round (a retry queued
        // meanwhile) is a duplicate, as it would be in a later round.
        let mut seen = HashSet::new();
        let candidates: Vec<(&str, &EventReport)> = batches
            .iter()
            .zip(&ids)
            .flat_map(|(batch, id)| batch.reports.iter().map(move |r| (id.as_str(), r)))
            .filter(|(id, r)| seen.insert((*id, r.sequence)))
            .collect();
        let mut stored = insert_reports(&mut tx, &candidates, received_ms).await?;

        let mut acks = Vec::with_capacity(batches.len());
        let mut fresh = Vec::new();
        let mut folded: Vec<(&str, &EventBatch, Vec<&EventReport>)> = Vec::new();
        for (batch, device_id) in batches.iter().zip(&ids) {
            let mut ack = BatchAck {
                device_id: batch.device_id,
                acked: Vec::with_capacity(batch.reports.len()),
                stored: 0,
                duplicates: 0,
            };
            let mut new_reports = Vec::new();
            for report in &batch.reports {
                ack.acked.push(report.sequence);
                if stored.remove(&(device_id.clone(), report.sequence as i64)) {
                    ack.stored += 1;
                    new_reports.push(report);
                } else {
                    ack.duplicates += 1;
                }
            }
            fresh.extend(new_reports.iter().map(|r| (*r).clone()));
            if !new_reports.is_empty() {
                folded.push((device_id, batch, new_reports));
            }
            acks.push(ack);
        }

        // Every touched device's state read once, each batch folded in in order, written once.
        let touched: Vec<&str> = folded
            .iter()
            .map(|(id, _, _)| *id)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut states = state::load_states(&mut tx, &touched).await?;
        for (device_id, batch, new_reports) in &folded {
            let state = states
                .entry((*device_id).to_owned())
                .or_insert_with(|| DeviceState {
                    device_id: (*device_id).to_owned(),
                    status: "idle".into(),
                    ..DeviceState::default()
                });
            for report in new_reports {
                state.apply(report, received_ms);
            }
            state.outbox_dropped = state
                .outbox_dropped
                .max((batch.outbox.dropped_progress + batch.outbox.dropped_steps) as i64);
            state.outbox_full = batch.outbox.full;
        }
        let states: Vec<DeviceState> = touched.iter().filter_map(|id| states.remove(*id)).collect();
        state::store_states(&mut tx, &states).await?;
        insert_samples(&mut tx, &fresh, received_ms).await?;
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

/// Takes the transaction lock of every device of `batches` (PostgreSQL) in one statement,
/// in ascending key order, so two ingests never wait on each other in a cycle. The key is
/// the device id's number: distinct devices never share a lock.
async fn lock_devices(tx: &mut Conn, batches: &[EventBatch]) -> Result<(), ServerError> {
    let keys: BTreeSet<i64> = batches.iter().map(|b| b.device_id.get() as i64).collect();
    if keys.is_empty() {
        return Ok(());
    }
    // A VALUES list is scanned in its order, so the locks are taken in the keys' order.
    let sql = format!(
        "SELECT COUNT(pg_advisory_xact_lock(k)) AS n FROM (VALUES {}) AS v(k)",
        placeholder_rows(tx, keys.len(), 1)
    );
    // Only placeholders: every key is bound.
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for key in keys {
        query = query.bind(key);
    }
    query.execute(&mut *tx).await?;
    Ok(())
}

/// Inserts `reports` (each `(device, sequence)` once) where not stored yet, in one
/// statement per [`rows_per_statement`] reports; the keys of those newly stored.
async fn insert_reports(
    tx: &mut Conn,
    reports: &[(&str, &EventReport)],
    received_ms: i64,
) -> Result<HashSet<(String, i64)>, ServerError> {
    let mut stored = HashSet::with_capacity(reports.len());
    for chunk in reports.chunks(rows_per_statement(tx)) {
        let sql = format!(
            "INSERT INTO event_reports ({REPORT_COLUMNS}) VALUES {}
             ON CONFLICT DO NOTHING RETURNING device_id, sequence",
            placeholder_rows(tx, chunk.len(), 15)
        );
        // Only placeholders and fixed column names: every value is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (device_id, report) in chunk {
            let body = serde_json::to_string(report)
                .map_err(|e| ServerError::Database(sqlx::Error::Encode(e.into())))?;
            let error = report.error.as_ref();
            let state = report
                .transition
                .as_ref()
                .map(|t| t.to.clone())
                .or_else(|| report.progress.as_ref().map(|p| p.phase.clone()));
            query = query
                .bind(*device_id)
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
                .bind(body);
        }
        for row in query.fetch_all(&mut *tx).await? {
            stored.insert((row.try_get("device_id")?, row.try_get("sequence")?));
        }
    }
    Ok(stored)
}

/// The phases of the installed updates among `reports` that make the rates: personalize
/// (seconds only), download (payload bytes fetched), prepare (image bytes verified); one
/// statement per [`rows_per_statement`] samples.
async fn insert_samples(
    tx: &mut Conn,
    reports: &[EventReport],
    received_ms: i64,
) -> Result<(), ServerError> {
    let mut samples = Vec::new();
    for report in reports.iter().filter(|r| r.event == EventKind::Installed) {
        let payload = report.payload.as_ref();
        let phases = [
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
        for (phase, kind, bytes) in phases {
            if let Some(secs) = report.phase_secs(phase) {
                samples.push((report.device_class.as_str(), phase, kind, secs, bytes));
            }
        }
    }
    for chunk in samples.chunks(rows_per_statement(tx)) {
        let sql = format!(
            "INSERT INTO phase_samples (device_class, phase, payload_kind, secs, bytes, received_ms)
             VALUES {}",
            placeholder_rows(tx, chunk.len(), 6)
        );
        // Only placeholders and fixed column names: every value is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (class, phase, kind, secs, bytes) in chunk {
            query = query
                .bind(*class)
                .bind(*phase)
                .bind(kind.clone())
                .bind(*secs)
                .bind(*bytes)
                .bind(received_ms);
        }
        query.execute(&mut *tx).await?;
    }
    Ok(())
}
