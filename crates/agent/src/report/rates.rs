//! The per-class phase rates (median bytes per second of download, verify, …) the server
//! aggregates from event reports: taken at each scan and kept in
//! `cache/phase-rates.json` for the progress estimator's time remaining.

use ferry_events::PhaseRates;

use crate::AgentError;
use crate::client::Client;
use crate::device::Device;

/// Fetches the class's phase rates and stores them durably.
pub async fn refresh(device: &Device, client: &Client) -> Result<PhaseRates, AgentError> {
    let credential = crate::trust::personalize::credential(device)?;
    let rates = client
        .phase_rates(&credential, device.identity.device_class.as_str())
        .await?;
    let path = device.layout().phase_rates();
    ferry_durable::write_json(&path, &rates)
        .map_err(AgentError::io("storing the phase rates", &path))?;
    Ok(rates)
}

/// The phase rates stored by the last scan that got them.
pub fn stored(device: &Device) -> Option<PhaseRates> {
    crate::device::read_json(&device.layout().phase_rates()).ok()
}

/// How long stored phase rates serve before a scan with an offer takes them again.
pub const RATES_MAX_AGE: chrono::Duration = chrono::Duration::hours(24);

/// Whether the stored phase rates are missing or older than [`RATES_MAX_AGE`].
pub fn stale(device: &Device) -> bool {
    stored(device).is_none_or(|rates| chrono::Utc::now() - rates.computed_at > RATES_MAX_AGE)
}
