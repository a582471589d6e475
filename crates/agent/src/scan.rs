//! A scan through the scan machines: `scan_manager` → `scan[uuid]` (fetch the catalog,
//! select offers) → `recovery_scan[uuid]`.

use serde_json::json;

use crate::AgentError;
use crate::device::Device;
use crate::journal::{Instance, Journal};
use crate::machines::{recovery_scan, scan, scan_manager};
use crate::offer::{self, Offer};
use ferry_types::Diagnose;

/// What a scan found.
#[derive(Debug, Clone)]
pub struct ScanResult {
    /// The offers for this device, newest first.
    pub offers: Vec<Offer>,
}

/// Runs a scan a person or client asked for, journaled.
pub async fn scan(device: &Device, journal: &mut Journal) -> Result<ScanResult, AgentError> {
    scan_as(device, journal, true).await
}

/// Runs a scan, journaled. `asked`: a person or client asked for it; else the agent's
/// background schedule started it (`scan_due`).
pub async fn scan_as(
    device: &Device,
    journal: &mut Journal,
    asked: bool,
) -> Result<ScanResult, AgentError> {
    let mut manager: Instance<scan_manager::Names> = journal.instance("device", false)?;
    if manager.is_in(scan_manager::State::SCANNING) {
        // The previous scan was cut short (crash): close it before starting another.
        manager.fire(
            scan_manager::Event::Fail,
            json!({ "reason": "interrupted" }),
        )?;
    }
    manager.fire(scan_manager::Event::Scan, json!({ "asked": asked }))?;
    let scan_id = uuid::Uuid::new_v4().to_string();
    let mut one: Instance<scan::Names> = journal.instance(&scan_id, false)?;
    let result = run(device, journal, &mut one, &scan_id).await;
    match &result {
        Ok(found) => {
            manager.fire(
                scan_manager::Event::Found,
                json!({ "scan": scan_id, "n_offers": found.offers.len() }),
            )?;
        }
        Err(e) => {
            let report = e.report();
            let _ = one.fire(scan::Event::Fail, json!({ "error": report }));
            manager.fire(
                scan_manager::Event::Fail,
                json!({ "scan": scan_id, "error": report }),
            )?;
        }
    }
    result
}

async fn run(
    device: &Device,
    journal: &mut Journal,
    one: &mut Instance<scan::Names>,
    scan_id: &str,
) -> Result<ScanResult, AgentError> {
    one.fire(
        scan::Event::Refresh,
        json!({ "server": device.config.server }),
    )?;
    // A TUF refresh from the pinned root; on failure the last good metadata stays.
    let crate::trust::catalog::Refreshed { catalog, warnings } =
        crate::trust::catalog::refresh(device).await?;
    let versions = catalog.versions();
    let mut fetched =
        json!({ "n_releases": catalog.releases().len(), "metadata": format!("{versions:?}") });
    if !warnings.is_empty() {
        fetched["warnings"] = json!(warnings);
    }
    one.fire(scan::Event::Fetched, fetched)?;
    let current = device.running_version()?;
    let select = |releases: &[ferry_catalog::Release]| {
        offer::offers(
            releases,
            |name| catalog.target(name),
            device.identity.device_class.as_str(),
            &device.config.audience,
            &current,
        )
    };
    let mut offers = select(catalog.releases());
    // Releases under a rollout: offered only if the director's verified decision says the
    // device's wave is open (asked only when there is something to offer).
    let mut withheld = Vec::new();
    if !offers.is_empty()
        && let Some(decision) = crate::trust::director::refresh(device, &catalog).await?
    {
        let mut allowed = Vec::new();
        for release in catalog.releases() {
            match decision.release(&release.info.version.to_string()) {
                Some(decided) if !decided.state.allows() => {
                    let entry = json!({
                        "version": release.info.version,
                        "code": decided.state.code(),
                        "rollout_id": decided.rollout_id,
                        "opens_at": decided.opens_at,
                    });
                    if !withheld.contains(&entry) {
                        withheld.push(entry);
                    }
                }
                _ => allowed.push(release.clone()),
            }
        }
        // The newest release the decision allows (an older one may be offered instead).
        offers = select(&allowed);
    }
    crate::trust::catalog::record(device, Ok(offers.len()), &warnings);
    // The class's phase rates come with an offer (at most daily, so a scan that finds
    // nothing stays one small request); a server without them costs only the estimate.
    if !offers.is_empty()
        && crate::report::rates::stale(device)
        && let Err(e) = refresh_rates(device).await
    {
        tracing::info!(code = e.code(), error = %e, "the phase rates were not refreshed");
    }
    // The recovery check is part of the scan: its failure fails the scan too.
    let mut recovery: Instance<recovery_scan::Names> = journal.instance(scan_id, false)?;
    if let Err(e) = check_recovery(&mut recovery) {
        let _ = recovery.fire(recovery_scan::Event::Fail, json!({ "error": e.report() }));
        return Err(e);
    }
    one.fire(
        scan::Event::Selected,
        json!({
            "current": current,
            "offers": offers.iter().map(|o| &o.label).collect::<Vec<_>>(),
            "withheld": withheld,
        }),
    )?;
    Ok(ScanResult { offers })
}

async fn refresh_rates(device: &Device) -> Result<(), AgentError> {
    let client = crate::client::Client::for_device(device)?;
    crate::report::rates::refresh(device, &client)
        .await
        .map(|_| ())
}

/// `recovery_scan[uuid]`: until the recovery component exists, never needed.
fn check_recovery(recovery: &mut Instance<recovery_scan::Names>) -> Result<(), AgentError> {
    recovery.fire(recovery_scan::Event::Check, json!({}))?;
    recovery.fire(
        recovery_scan::Event::NotNeeded,
        json!({ "reason": "the device has no recovery component" }),
    )?;
    Ok(())
}
