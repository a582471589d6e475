//! The fleet's read side: devices, events, the summary and the per-class phase rates.

use std::collections::BTreeMap;

use chrono::Utc;
use ferry_events::{EventReport, PhaseRate, PhaseRates};
use ferry_types::{DeviceClass, PayloadKind};
use serde::Serialize;
use sqlx::Row;

use super::state::{DeviceState, state_from_row};
use crate::ServerError;
use crate::db::{Db, Filtered};

/// Installed updates the phase rates are medians over, per phase and payload kind.
pub const RATE_SAMPLES: usize = 200;

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

impl Db {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }
}
