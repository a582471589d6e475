//! Personalization on the device: enrollment, the ticket request made before any
//! download, and the ticket check at boot.
//!
//! Files (DESIGN §2, named in [`crate::layout`]):
//!
//! ```text
//! trust/ca.pem                      the pinned CA: the only one the HTTP client trusts
//! trust/personalization-keys.json   the keys tickets may be signed with: the key set the
//!                                   catalog signs (target keys-personalization.json), taken
//!                                   at each scan; never from enrollment or any other answer
//! trust/credential                  the bearer credential from enrollment (0600)
//! boot/nonce                   the nonce of the attempt in progress (written before the request)
//! boot/ticket-<slot>.json      the ticket of what the slot holds (written before Apply)
//! boot/nonce-<slot>            the nonce that slot's ticket is bound to, once it booted good
//! ```

use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_boot::Slot;
use ferry_catalog::Catalog;
use ferry_personalize::{
    BuildId, Component, Expectation, KEY_SET_TARGET, KeySet, Nonce, SignedTicket, TicketRequest,
    verify,
};
use ferry_types::{Diagnose, Report, RootHash, Sha256};

use crate::AgentError;
use crate::client::Client;
use crate::device::{Device, PayloadKind, SlotInfo};

/// Overrides the config's `clock_offset_secs` (seconds added to the system clock).
pub const CLOCK_OFFSET_ENV: &str = "FERRY_CLOCK_OFFSET";
/// Tries for one ticket when the server is unreachable or overloaded.
pub const TICKET_TRIES: u32 = 4;
/// The waits between those tries: full jitter under 0.5 s, 1 s, 2 s, so the devices of a
/// release's burst that the server turned away do not all ask again at the same moment.
pub const TICKET_BACKOFF: ferry_types::Backoff = ferry_types::Backoff {
    base: Duration::from_millis(500),
    cap: Duration::from_secs(2),
};

/// The component name of the system image.
pub const SYSTEM_COMPONENT: &str = "system";

/// The device's clock: the system clock plus the configured offset
/// (`FERRY_CLOCK_OFFSET` seconds, else `clock_offset_secs` in config.toml).
pub fn device_time(device: &Device) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::seconds(clock_offset(&device.config))
}

/// Seconds the device's clock is set off the system clock: `FERRY_CLOCK_OFFSET`, else
/// `clock_offset_secs` in `config`.
pub fn clock_offset(config: &crate::device::Config) -> i64 {
    std::env::var(CLOCK_OFFSET_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(config.clock_offset_secs)
}

/// The personalization key set the device trusts (taken from the catalog at its last
/// scan), as stored; `Ok(None)` when no scan has taken one yet.
fn stored_key_set(device: &Device) -> Result<Option<(KeySet, Vec<u8>)>, AgentError> {
    let path = device.layout().key_set();
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(AgentError::Io {
                op: "reading the personalization key set",
                path,
                source,
            });
        }
    };
    let set = KeySet::from_bytes(&bytes).map_err(|e| AgentError::KeySetDamaged {
        path,
        reason: e.to_string(),
    })?;
    Ok(Some((set, bytes)))
}

/// The personalization key set the device trusts: tickets signed by any of its keys pass,
/// any other key is `TICKET_KEY_NOT_TRUSTED`. `KEYSET_MISSING` before the first scan,
/// `KEYSET_DAMAGED` when the file no longer parses (the next scan takes it again).
pub fn key_set(device: &Device) -> Result<KeySet, AgentError> {
    stored_key_set(device)?
        .map(|(set, _)| set)
        .ok_or_else(|| AgentError::KeySetMissing {
            path: device.layout().key_set(),
        })
}

/// What [`update_key_set`] did.
#[derive(Debug, Clone)]
pub struct KeySetUpdate {
    /// The set now trusted (`None`: the catalog lists none and none was stored).
    pub set: Option<KeySet>,
    /// A stored set that was damaged and taken again from the catalog (`KEYSET_DAMAGED`,
    /// reported and recorded as a repair).
    pub repaired: Vec<Report>,
}

/// Takes the key set from a freshly verified catalog: the target [`KEY_SET_TARGET`],
/// downloaded only when its signed digest differs from the stored set's, checked by TUF
/// (length and SHA-256), parsed, refused if older than the trusted set, then stored
/// durably. On any failure the trusted set stays as it was.
///
/// A stored set that no longer parses is local damage, not a reason to re-create the
/// device: it is replaced by the catalog's (verified by TUF, whose own version rules stand
/// in for the older-set check then), and the repair reported and recorded.
pub async fn update_key_set(
    device: &Device,
    catalog: &Catalog,
) -> Result<KeySetUpdate, AgentError> {
    let mut repaired = Vec::new();
    let stored = match stored_key_set(device) {
        Err(damaged @ AgentError::KeySetDamaged { .. })
            if catalog.target(KEY_SET_TARGET).is_some() =>
        {
            let report = Report {
                code: damaged.code().to_owned(),
                cause: format!("{damaged}; it was taken again from the verified catalog"),
                fix: "Nothing to do for this file (it was fetched again); if damage repeats, check the device's storage".into(),
            };
            crate::journal::record_repair(device, &report);
            repaired.push(report);
            None
        }
        other => other?,
    };
    let Some(target) = catalog.target(KEY_SET_TARGET) else {
        return Ok(KeySetUpdate {
            set: stored.map(|(set, _)| set),
            repaired,
        });
    };
    if let Some((set, bytes)) = &stored
        && Sha256::of(bytes) == target.sha256
    {
        return Ok(KeySetUpdate {
            set: Some(set.clone()),
            repaired,
        });
    }
    let bytes = catalog.read_target(KEY_SET_TARGET).await?;
    let offered = KeySet::from_bytes(&bytes)?;
    if let Some((trusted, _)) = &stored {
        trusted.check_successor(&offered)?;
    }
    let trust = device.layout().trust_dir();
    std::fs::create_dir_all(&trust).map_err(AgentError::io("creating trust/", &trust))?;
    let path = device.layout().key_set();
    ferry_durable::write_atomic(&path, &bytes)
        .map_err(AgentError::io("storing the personalization key set", &path))?;
    tracing::info!(
        version = offered.version(),
        current = %offered.current(),
        n_keys = offered.keys().len(),
        "took the personalization key set from the catalog"
    );
    Ok(KeySetUpdate {
        set: Some(offered),
        repaired,
    })
}

/// The bearer credential from enrollment (`trust/credential`).
pub(crate) fn credential(device: &Device) -> Result<String, AgentError> {
    read_credential(&device.layout())
}

/// The bearer credential of the device at `layout` (`NOT_ENROLLED` when it has none).
pub fn read_credential(layout: &crate::layout::Layout<'_>) -> Result<String, AgentError> {
    let path = layout.credential();
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(AgentError::NotEnrolled {
            reason: format!("{} is missing", path.display()),
        }),
        Err(source) => Err(AgentError::Io {
            op: "reading the device credential",
            path,
            source,
        }),
    }
}

/// Enrolls the device with a one-time enrollment token and stores its credential. (The
/// personalization keys come from the catalog at each scan, not from enrollment.)
pub async fn enroll(device: &Device, token: &str) -> Result<(), AgentError> {
    let client = Client::for_device(device)?;
    let credential = client.enroll(token, &device.identity).await?;
    let trust = device.layout().trust_dir();
    std::fs::create_dir_all(&trust).map_err(AgentError::io("creating trust/", &trust))?;
    let path = device.layout().credential();
    // 0600 from creation on: no moment in which other users can read it.
    ferry_durable::write_private(&path, format!("{credential}\n").as_bytes())
        .map_err(AgentError::io("storing the credential", &path))?;
    Ok(())
}

/// The components a ticket must cover for a sealed system image.
pub fn components(root_hash: &RootHash) -> Vec<Component> {
    vec![Component {
        name: SYSTEM_COMPONENT.parse().unwrap_or_else(|_| unreachable!()),
        root_hash: *root_hash,
    }]
}

/// Asks the service for a ticket for `build_id` (the offered build) and `components`, and
/// checks it: this device, this nonce, this build, these root hashes.
///
/// Each attempt makes a fresh nonce and stores it durably (`boot/nonce`) before the
/// request. An unreachable or overloaded server is tried again after [`TICKET_BACKOFF`]
/// (a random wait under 0.5 s, 1 s, 2 s); a refusal is final and comes back as [`AgentError::Refused`] with the
/// server's code, cause, fix and data.
pub async fn request_ticket(
    device: &Device,
    client: &Client,
    build_id: &str,
    components: Vec<Component>,
) -> Result<(SignedTicket, Nonce), AgentError> {
    let build_id: BuildId =
        build_id.parse().map_err(
            |e: ferry_personalize::ParseError| AgentError::ServerInvalid {
                url: "/v1/releases".into(),
                reason: e.to_string(),
            },
        )?;
    let credential = credential(device)?;
    let trusted_keys = key_set(device)?.keys().to_vec();
    let identity = device.identity.clone();
    let mut attempt = 1;
    loop {
        let nonce = Nonce::random();
        let path = device.layout().nonce();
        ferry_durable::write_atomic(&path, format!("{nonce}\n").as_bytes())
            .map_err(AgentError::io("storing the nonce", &path))?;
        let request = TicketRequest {
            identity: identity.clone(),
            nonce,
            build_id: build_id.clone(),
            components: components.clone(),
            device_time: device_time(device),
        };
        match client.personalize(&credential, &request).await {
            Ok(signed) => {
                // A ticket this device could not boot with is the server's fault: say so now.
                verify(
                    &signed,
                    &trusted_keys,
                    &Expectation {
                        identity: identity.clone(),
                        nonce,
                        build_id: build_id.clone(),
                        components: components.clone(),
                    },
                )?;
                return Ok((signed, nonce));
            }
            Err(e @ (AgentError::ServerUnreachable { .. } | AgentError::Overloaded { .. }))
                if attempt < TICKET_TRIES =>
            {
                let wait = TICKET_BACKOFF.wait(attempt);
                tracing::warn!(attempt, wait_ms = wait.as_millis() as u64, error = %e, "personalization failed; trying again");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Checks `slot`'s ticket at boot: present, signed by a key of the trusted key set, for this
/// device, for the stored nonce (the attempt's while the slot is on trial, the slot's own once
/// it booted good), for the build the slot records (the one the catalog offered) and for the
/// slot's root hash. The factory image has no ticket.
pub fn check_ticket(device: &Device, slot: Slot, info: &SlotInfo) -> Result<(), AgentError> {
    let factory = device
        .receipts()?
        .iter()
        .any(|r| r.file_name() == info.receipt && r.payload_kind == PayloadKind::Factory);
    if factory {
        return Ok(());
    }
    let path = device.layout().ticket(slot);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(AgentError::TicketMissing {
                slot: slot.to_string(),
                path,
            });
        }
        Err(source) => {
            return Err(AgentError::Io {
                op: "reading the ticket",
                path,
                source,
            });
        }
    };
    let signed = SignedTicket::from_json(&bytes)?;
    let on_trial = device
        .boot_state()?
        .trial()
        .is_some_and(|trial| trial.slot == slot);
    let nonce_file = if on_trial {
        device.layout().nonce()
    } else {
        device.layout().slot_nonce(slot)
    };
    let nonce = read_nonce(&nonce_file, slot)?;
    let seal = info
        .seal
        .as_ref()
        .ok_or_else(|| AgentError::SlotVerifyFailed {
            slot: slot.to_string(),
            version: info.version.to_string(),
            reason: "the slot has no seal for its ticket to cover".into(),
        })?;
    let build_id: BuildId = info
        .build_id
        .parse()
        .map_err(
            |e: ferry_personalize::ParseError| AgentError::DeviceCorrupt {
                path: device.layout().slot_info(slot),
                reason: e.to_string(),
            },
        )?;
    verify(
        &signed,
        key_set(device)?.keys(),
        &Expectation {
            identity: device.identity.clone(),
            nonce,
            build_id,
            components: components(&seal.root_hash),
        },
    )?;
    Ok(())
}

fn read_nonce(path: &std::path::Path, slot: Slot) -> Result<Nonce, AgentError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(AgentError::NonceMissing {
                slot: slot.to_string(),
                path: path.to_owned(),
            });
        }
        Err(source) => {
            return Err(AgentError::Io {
                op: "reading the nonce",
                path: path.to_owned(),
                source,
            });
        }
    };
    text.trim().parse().map_err(
        |e: ferry_personalize::ParseError| AgentError::DeviceCorrupt {
            path: path.to_owned(),
            reason: e.to_string(),
        },
    )
}

/// After `slot` booted good: the attempt's nonce is consumed, kept only as the nonce that
/// slot's ticket is bound to (`boot/nonce-<slot>`), so no later ticket can match it.
pub fn consume_nonce(device: &Device, slot: Slot) -> Result<(), AgentError> {
    let from = device.layout().nonce();
    if !from.exists() {
        return Ok(());
    }
    let to = device.layout().slot_nonce(slot);
    ferry_durable::rename(&from, &to).map_err(AgentError::io("consuming the nonce", &from))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ticket's retries wait a random time under 0.5 s, 1 s, then 2 s: bounded, and a
    /// herd's waits spread rather than all the same.
    #[test]
    fn ticket_retries_wait_under_half_a_second_one_then_two() {
        let ceilings: Vec<u128> = (1..TICKET_TRIES)
            .map(|n| TICKET_BACKOFF.ceiling(n).as_millis())
            .collect();
        assert_eq!(ceilings, [500, 1000, 2000]);
        for attempt in 1..TICKET_TRIES {
            let waits: Vec<Duration> = (0..200).map(|_| TICKET_BACKOFF.wait(attempt)).collect();
            let ceiling = TICKET_BACKOFF.ceiling(attempt);
            assert!(waits.iter().all(|w| *w <= ceiling));
            let (low, high) = (
                waits.iter().filter(|w| **w < ceiling / 4).count(),
                waits.iter().filter(|w| **w > ceiling * 3 / 4).count(),
            );
            assert!(
                low > 10 && high > 10,
                "attempt {attempt}: {low} low, {high} high"
            );
        }
    }
}
