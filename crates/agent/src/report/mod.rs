//! Event reports (DESIGN §6): made from machine transitions in one place ([`build`],
//! called by the journal's `fire` before each transition is made durable) plus progress
//! samples, queued in the device's outbox (`ferry_events::Outbox`, `DEVICE/events/`),
//! delivered in batches to `POST /v1/events` ([`deliver`]); and the per-class phase rates
//! the server learns from them, taken at each scan ([`rates`]).

pub mod build;
pub mod deliver;
pub mod rates;
