//! ferry's event reports (DESIGN §6): what a device tells the fleet at each step of an
//! update, durably, exactly once, with its reason.
//!
//! - [`report`]: the report, `report_version` 1: the fields of the source articles' list
//!   (uuid, audience_type, battery_level, …, update_type) and ferry's own (phase
//!   durations, payload bytes, progress, the error with its machine and state, fallback,
//!   whether the boot counter rolled the slot back), with [`EventReport::validate`].
//! - [`wire`]: `POST /v1/events` ([`EventBatch`] → [`BatchAck`]) and `GET /v1/rates`
//!   ([`PhaseRates`]), and their limits.
//! - [`blame`]: every error code ferry emits, classified once as the release's fault or
//!   the device environment's (the rollout halt rule counts the release's).
//! - [`outbox`]: the device's queue in `DEVICE/events/`: durable, sequence-numbered,
//!   bounded (progress coalesced, terminal reports never dropped), forgotten only once
//!   acknowledged. The only I/O of this crate.
//!
//! The agent makes reports from machine transitions and delivers them; the server stores
//! them. Neither shares more than these types.
//!
//! ```
//! use ferry_events::{EventKind, Retention, blame, Blame};
//! assert_eq!(EventKind::RolledBack.retention(), Retention::Terminal);
//! assert_eq!(blame("SEAL_MISMATCH"), Some(Blame::Release));
//! assert_eq!(blame("SERVER_UNREACHABLE"), Some(Blame::Environment));
//! ```
//!
//! Tests: `cargo test -p ferry-events` (the outbox in temporary directories; `tests/blame.rs`
//! reads the workspace's sources for every error code and checks each is classified).
#![deny(missing_docs)]

pub mod blame;
mod error;
pub mod outbox;
pub mod report;
pub mod wire;

pub use blame::{BLAME, Blame, blame};
pub use error::{OutboxError, ReportInvalid};
pub use outbox::{Outbox, OutboxLimits, OutboxState, OutboxStatus};
pub use report::{
    ErrorReport, EventKind, EventReport, EventResult, FallbackReport, PayloadReport, PhaseDuration,
    ProgressReport, REPORT_VERSION, Retention, Transition, UpdateType,
};
pub use wire::{BatchAck, EventBatch, OutboxHealth, PhaseRate, PhaseRates};
