//! What travels between device and server: `POST /v1/events` (an [`EventBatch`], answered
//! by a [`BatchAck`]) and `GET /v1/rates?class=C` ([`PhaseRates`]).

use chrono::{DateTime, Utc};
use ferry_types::{DeviceClass, DeviceId, PayloadKind};
use serde::{Deserialize, Serialize};

use crate::error::ReportInvalid;
use crate::report::EventReport;

/// Where devices send reports.
pub const EVENTS_PATH: &str = "/v1/events";
/// Where devices read the per-class phase rates.
pub const RATES_PATH: &str = "/v1/rates";
/// Most reports the server takes in one batch.
pub const MAX_BATCH_REPORTS: usize = 500;
/// Largest request body the server reads for a batch (bytes): above it, `413`.
pub const MAX_BATCH_BYTES: usize = 1 << 20;
/// Reports a device puts in one batch.
pub const DEVICE_BATCH_REPORTS: usize = 50;
/// Bytes of reports a device puts in one batch, well under [`MAX_BATCH_BYTES`].
pub const DEVICE_BATCH_BYTES: usize = 256 << 10;

/// How full the device's outbox is, sent with every batch so the fleet sees loss.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxHealth {
    /// Reports queued when the batch was made (this batch's included).
    pub queued: u64,
    /// Progress reports dropped because the outbox was full, ever.
    pub dropped_progress: u64,
    /// Step reports dropped because the outbox was full, ever (terminal ones never are).
    pub dropped_steps: u64,
    /// Whether the outbox is full now.
    pub full: bool,
}

/// Body of `POST /v1/events`: the oldest queued reports, in sequence order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    /// The sending device (the credential's device).
    pub device_id: DeviceId,
    /// Its outbox's health.
    pub outbox: OutboxHealth,
    /// The reports.
    pub reports: Vec<EventReport>,
}

impl EventBatch {
    /// Checks the batch for the device `credential` authenticates: at most
    /// [`MAX_BATCH_REPORTS`] reports, each valid, each this device's, no sequence twice.
    pub fn validate(&self, credential: DeviceId) -> Result<(), ReportInvalid> {
        let other = |sequence: u64, named: DeviceId| ReportInvalid::OtherDevice {
            sequence,
            named: named.to_string(),
            credential: credential.to_string(),
        };
        if self.device_id != credential {
            return Err(other(0, self.device_id));
        }
        if self.reports.is_empty() || self.reports.len() > MAX_BATCH_REPORTS {
            return Err(ReportInvalid::Batch {
                why: format!(
                    "it holds {} reports (1 to {MAX_BATCH_REPORTS})",
                    self.reports.len()
                ),
            });
        }
        let mut seen = std::collections::HashSet::new();
        for report in &self.reports {
            if report.device_id != credential {
                return Err(other(report.sequence, report.device_id));
            }
            report.validate()?;
            if !seen.insert(report.sequence) {
                return Err(ReportInvalid::Batch {
                    why: format!("sequence {} appears twice", report.sequence),
                });
            }
        }
        Ok(())
    }
}

/// Answer of `POST /v1/events`: every sequence the server now holds from the batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchAck {
    /// The device.
    pub device_id: DeviceId,
    /// Sequences stored, now or by an earlier delivery: the device may forget them.
    pub acked: Vec<u64>,
    /// How many were new.
    pub stored: u64,
    /// How many the server already had (a retried batch).
    pub duplicates: u64,
}

/// The median speed of one phase over a class's recent installs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseRate {
    /// The phase (`DOWNLOADING_UPDATE`, `PREPARING_UPDATE`, `PREFLIGHT_PERSONALIZE`).
    pub phase: String,
    /// For the download phase, the payload kind the figures are for.
    pub payload: Option<PayloadKind>,
    /// Installs the medians are taken over.
    pub samples: u32,
    /// Median seconds in the phase.
    pub median_secs: f64,
    /// Median bytes per second: payload bytes downloaded for the download phase, image
    /// bytes verified for the prepare phase; none for phases without bytes.
    pub median_bytes_per_sec: Option<f64>,
}

/// Answer of `GET /v1/rates?class=C`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseRates {
    /// The class.
    pub class: DeviceClass,
    /// When the server computed them.
    pub computed_at: DateTime<Utc>,
    /// One entry per phase (and payload kind) with samples.
    pub rates: Vec<PhaseRate>,
}
