//! The director's decision on the device: at each scan, the director keys come from the
//! verified catalog (target `keys-director.json`, signed by the offline targets key), the
//! decision from `GET /v1/decision`; it is used only if one of those keys signed it, it is
//! for this device, and every release it names is a catalog target with the same length
//! and SHA-256. The decision can only hold back what TUF offers (a release under a rollout
//! whose wave is not open, or that is paused or halted); it never adds an image.
//!
//! ```text
//! trust/director-keys.json   the director key set, taken from the catalog (fetched again
//!                            only when its signed digest changes)
//! trust/decision.json        the last verified decision (its signed form)
//! ```

use ferry_catalog::Catalog;
use ferry_personalize::{
    DIRECTOR_KEY_SET_TARGET, Decision, KeySet, SignedDecision, check_against_catalog,
    verify_decision,
};

use ferry_types::{Diagnose, Sha256};

use crate::AgentError;
use crate::client::Client;
use crate::device::Device;

/// The decision for this device now, verified against the catalog's director keys and
/// targets; `Ok(None)` when the catalog publishes no director key or the server has no
/// director, or the decision cannot be fetched (the signing service still enforces rollouts
/// then). A decision that fails a check is refused with its code and the last verified one
/// stays.
pub async fn refresh(device: &Device, catalog: &Catalog) -> Result<Option<Decision>, AgentError> {
    let Some(target) = catalog.target(DIRECTOR_KEY_SET_TARGET) else {
        return Ok(None);
    };
    // Not enrolled: no credential to ask with; the signing service holds it back anyway.
    let Ok(credential) = crate::trust::personalize::credential(device) else {
        return Ok(None);
    };
    let keys_path = device.layout().trust_dir().join("director-keys.json");
    let stored = std::fs::read(&keys_path)
        .ok()
        .filter(|bytes| Sha256::of(bytes) == target.sha256);
    let bytes = match stored {
        Some(bytes) => bytes,
        None => {
            let bytes = catalog.read_target(DIRECTOR_KEY_SET_TARGET).await?;
            ferry_durable::write_atomic(&keys_path, &bytes)
                .map_err(AgentError::io("storing the director key set", &keys_path))?;
            bytes
        }
    };
    let keys = KeySet::from_bytes(&bytes)?;
    let client = Client::for_device(device)?;
    // A decision that cannot be had (network, a refusal such as REVOKED_DEVICE) narrows
    // nothing: the install asks the signing service, which enforces the rollout and says why.
    let signed = match client.decision(&credential).await {
        Ok(Some(signed)) => signed,
        Ok(None) => return Ok(None),
        Err(e) => {
            tracing::info!(code = e.code(), error = %e, "no decision from the director");
            return Ok(None);
        }
    };
    let decision = verify(device, catalog, &keys, &signed)?;
    let path = device.layout().decision();
    let bytes = serde_json::to_vec(&signed).unwrap_or_default();
    ferry_durable::write_atomic(&path, &bytes)
        .map_err(AgentError::io("storing the director's decision", &path))?;
    Ok(Some(decision))
}

/// The checks, in order: a director key the catalog publishes, the signature, this device,
/// then every named release against the catalog's signed targets.
pub fn verify(
    device: &Device,
    catalog: &Catalog,
    keys: &KeySet,
    signed: &SignedDecision,
) -> Result<Decision, AgentError> {
    let decision = verify_decision(signed, keys.keys(), device.identity.device_id)?;
    check_against_catalog(&decision, |name| {
        catalog.target(name).map(|t| (t.length, t.sha256))
    })?;
    Ok(decision)
}

/// Defers release `version` (under a rollout) for `for_` (`4h`, `1d`): the server records
/// it within the rollout's maximum and the deadline, and the next decision says
/// `deferred` until then.
pub async fn defer(
    device: &Device,
    version: &str,
    for_: &str,
) -> Result<serde_json::Value, AgentError> {
    let credential = crate::trust::personalize::credential(device)?;
    Client::for_device(device)?
        .defer(&credential, version, for_)
        .await
}

/// The last verified decision (`None` before the first, or if unreadable: the signing
/// service still refuses tickets for held releases).
pub fn stored(device: &Device) -> Option<Decision> {
    stored_in(&device.layout())
}

/// [`stored`] without opening the device (no lock: `ferry list` while the agent runs).
pub fn stored_in(layout: &crate::layout::Layout<'_>) -> Option<Decision> {
    let bytes = std::fs::read(layout.decision()).ok()?;
    let signed: SignedDecision = serde_json::from_slice(&bytes).ok()?;
    // Stored only after verification; parse it again (the signature is over these bytes).
    serde_json::from_str(&signed.decision).ok()
}
