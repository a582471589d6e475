//! A device's current state: the fold of its reports (newest sequence wins), and its row
//! in `device_state`.

use std::collections::HashMap;

use ferry_events::{EventKind, EventReport};
use serde::Serialize;
use sqlx::Row;

use crate::ServerError;
use crate::db::{BindFloat, Conn, DbRow, get_flag, placeholder_rows, rows_per_statement};

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

/// The stored states of `devices` (each listed once), in one statement per
/// [`rows_per_statement`] devices; a device that never reported is absent.
pub(super) async fn load_states(
    tx: &mut Conn,
    devices: &[&str],
) -> Result<HashMap<String, DeviceState>, ServerError> {
    let mut states = HashMap::with_capacity(devices.len());
    for chunk in devices.chunks(rows_per_statement(tx)) {
        let sql = format!(
            "SELECT * FROM device_state WHERE device_id IN {}",
            placeholder_rows(tx, 1, chunk.len())
        );
        // Only placeholders: every device id is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for device_id in chunk {
            query = query.bind(*device_id);
        }
        for row in query.fetch_all(&mut *tx).await? {
            let state = state_from_row(&row)?;
            states.insert(state.device_id.clone(), state);
        }
    }
    Ok(states)
}

/// The columns of `device_state`, in the order [`store_states`] binds them.
const COLUMNS: [&str; 26] = [
    "device_id",
    "device_class",
    "version",
    "slot",
    "status",
    "last_event",
    "last_event_ms",
    "last_sequence",
    "last_report_ms",
    "update_id",
    "from_version",
    "target_version",
    "update_state",
    "update_percent",
    "update_started_ms",
    "payload_kind",
    "bytes_downloaded",
    "phases",
    "last_error_code",
    "last_error_state",
    "last_error_machine",
    "last_error_ms",
    "rolled_back",
    "silent_since_ms",
    "outbox_dropped",
    "outbox_full",
];

/// Writes `states` (each device once), inserting or replacing each device's row, in one
/// statement per [`rows_per_statement`] devices.
pub(super) async fn store_states(tx: &mut Conn, states: &[DeviceState]) -> Result<(), ServerError> {
    for chunk in states.chunks(rows_per_statement(tx)) {
        let updates = COLUMNS[1..]
            .iter()
            .map(|c| format!("{c} = excluded.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO device_state ({}) VALUES {} ON CONFLICT (device_id) DO UPDATE SET {updates}",
            COLUMNS.join(", "),
            placeholder_rows(tx, chunk.len(), COLUMNS.len()),
        );
        // Only placeholders and fixed column names: every value is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for s in chunk {
            let phases = serde_json::to_string(&s.phases)
                .map_err(|e| ServerError::Database(sqlx::Error::Encode(e.into())))?;
            query = query
                .bind(s.device_id.clone())
                .bind(s.device_class.clone())
                .bind(s.version.clone())
                .bind(s.slot.clone())
                .bind(s.status.clone())
                .bind(s.last_event.clone())
                .bind(s.last_event_ms)
                .bind(s.last_sequence)
                .bind(s.last_report_ms)
                .bind(s.update_id.clone())
                .bind(s.from_version.clone())
                .bind(s.target_version.clone())
                .bind(s.update_state.clone())
                .bind_float(s.update_percent)
                .bind(s.update_started_ms)
                .bind(s.payload_kind.clone())
                .bind(s.bytes_downloaded)
                .bind(phases)
                .bind(s.last_error_code.clone())
                .bind(s.last_error_state.clone())
                .bind(s.last_error_machine.clone())
                .bind(s.last_error_ms)
                .bind(i64::from(s.rolled_back))
                .bind(s.silent_since_ms)
                .bind(s.outbox_dropped)
                .bind(i64::from(s.outbox_full));
        }
        query.execute(&mut *tx).await?;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn report(sequence: u64, event: EventKind, uuid: u128) -> EventReport {
        let identity = ferry_types::Identity {
            device_id: ferry_types::DeviceId::new(0x4d2).unwrap(),
            board_id: 0xa1,
            chip_id: 0x8103,
            hardware_uuid: uuid::Uuid::from_u128(1),
            device_class: "vm".parse().unwrap(),
        };
        let mut r = EventReport::new(&identity, event, ferry_events::EventResult::Success);
        r.sequence = sequence;
        r.uuid = Some(uuid::Uuid::from_u128(uuid));
        r.event_time = "2026-03-20T18:51:32Z".parse().unwrap();
        r.current_os_version = Some("1.0".parse().unwrap());
        r.current_base_os_version = r.current_os_version.clone();
        r.current_slot = serde_json::from_value(serde_json::json!("a")).unwrap();
        r.target_os_version = Some("2.0".parse().unwrap());
        r.on_ac_power = true;
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
}
