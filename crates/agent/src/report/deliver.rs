//! Delivery: the outbox's oldest reports, in batches, to `POST /v1/events` with the device
//! credential; a report leaves the outbox only once the server acknowledged its sequence.
//! [`deliver`] does one round (the daemon calls it in its loop, honouring
//! [`DeliveryOutcome::next_attempt`]); [`deliver_within`] is what a CLI command runs at
//! its end: a bounded wait that never fails the command.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_events::EventBatch;
use ferry_events::wire::{DEVICE_BATCH_BYTES, DEVICE_BATCH_REPORTS};
use ferry_types::{Diagnose, Report};
use serde::Serialize;

use crate::AgentError;
use crate::client::Client;
use crate::device::Device;

/// What one delivery round did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryOutcome {
    /// Reports the server stored for the first time.
    pub delivered: u64,
    /// Reports it already had (a batch sent before whose acknowledgement was lost).
    pub duplicates: u64,
    /// Reports still queued.
    pub remaining: u64,
    /// Why the round stopped early, if it did.
    pub failure: Option<Report>,
    /// When the next round may run (back-off with jitter after a failure).
    pub next_attempt: Option<DateTime<Utc>>,
}

static BATCHES_ANSWERED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// One round: batches until the outbox is empty or a batch fails. A failure of the network
/// or the server is recorded in the outbox (back-off) and returned in the outcome, not as
/// an error; an error is the outbox's own (its files cannot be read or written).
pub async fn deliver(device: &Device, client: &Client) -> Result<DeliveryOutcome, AgentError> {
    let mut outcome = DeliveryOutcome::default();
    let credential = match crate::trust::personalize::credential(device) {
        Ok(credential) => credential,
        Err(e) => return failed(device, outcome, e.report()),
    };
    loop {
        let (reports, health) = {
            let outbox = device.outbox();
            (
                outbox.batch(DEVICE_BATCH_REPORTS, DEVICE_BATCH_BYTES)?,
                outbox.health(),
            )
        };
        if reports.is_empty() {
            break;
        }
        let sent: Vec<u64> = reports.iter().map(|r| r.sequence).collect();
        let batch = EventBatch {
            device_id: device.identity.device_id,
            outbox: health,
            reports,
        };
        let ack = match client.post_events(&credential, &batch).await {
            Ok(ack) => ack,
            Err(e) => return failed(device, outcome, e.report()),
        };
        let n = BATCHES_ANSWERED.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        crate::journal::batch_answered(n);
        let covered = sent.iter().all(|seq| ack.acked.contains(seq));
        let mut outbox = device.outbox();
        outbox.acknowledge(&ack.acked)?;
        outcome.delivered += ack.stored;
        outcome.duplicates += ack.duplicates;
        if !covered || ack.device_id != device.identity.device_id {
            drop(outbox);
            let report = AgentError::ServerInvalid {
                url: ferry_events::wire::EVENTS_PATH.into(),
                reason: format!(
                    "the server acknowledged {:?} of the batch {sent:?}",
                    ack.acked
                ),
            }
            .report();
            return failed(device, outcome, report);
        }
        outbox.record_attempt(Utc::now(), Ok(()), 0.0)?;
    }
    let outbox = device.outbox();
    outcome.remaining = outbox.len() as u64;
    outcome.next_attempt = outbox.state().delivery.next_attempt;
    Ok(outcome)
}

/// Records a failed round (the back-off grows, with jitter) and returns its outcome.
fn failed(
    device: &Device,
    mut outcome: DeliveryOutcome,
    report: Report,
) -> Result<DeliveryOutcome, AgentError> {
    let mut outbox = device.outbox();
    outbox.record_attempt(Utc::now(), Err(report.clone()), rand::random::<f64>())?;
    outcome.remaining = outbox.len() as u64;
    outcome.next_attempt = outbox.state().delivery.next_attempt;
    outcome.failure = Some(report);
    Ok(outcome)
}

/// What a CLI command runs at its end: one round of at most `within` (nothing is sent
/// when nothing is queued). Never an error: a server that is down or slow leaves the
/// reports queued (`ferry status` shows them) and the command's own result stands.
pub async fn deliver_within(device: &Device, within: Duration) -> DeliveryOutcome {
    if device.outbox().is_empty() {
        return DeliveryOutcome::default();
    }
    let round = async {
        let client = Client::for_device(device)?;
        deliver(device, &client).await
    };
    let outcome = match tokio::time::timeout(within, round).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => {
            // The outbox itself failed: nothing more to record there.
            DeliveryOutcome {
                remaining: device.outbox().len() as u64,
                failure: Some(e.report()),
                ..DeliveryOutcome::default()
            }
        }
        Err(_) => {
            let report = AgentError::ServerUnreachable {
                url: device.config.server.clone(),
                reason: format!(
                    "no answer to the event batch within {} s",
                    within.as_secs_f64()
                ),
            }
            .report();
            failed(device, DeliveryOutcome::default(), report.clone()).unwrap_or(DeliveryOutcome {
                failure: Some(report),
                ..DeliveryOutcome::default()
            })
        }
    };
    if let Some(failure) = &outcome.failure {
        tracing::info!(
            code = failure.code,
            queued = outcome.remaining,
            "event reports stay queued: {}",
            failure.cause
        );
    }
    outcome
}
