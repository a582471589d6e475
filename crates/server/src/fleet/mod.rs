//! The fleet in SQL (`migrations/0006_events.sql`): storing event reports once per
//! (device, sequence), folding each new report into the device's current state in the
//! same transaction, marking silent devices, and the read side (devices, events, the
//! summary, the per-class phase rates).

mod ingest;
mod read;
mod state;

use chrono::{DateTime, Utc};

pub use read::{Filter, FleetSummary, MAX_LIMIT, RATE_SAMPLES, StoredReport};
pub use state::DeviceState;
pub(crate) use state::state_from_row;

/// Unix milliseconds as a UTC time (for rendering).
pub fn time_of(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}
