//! A scan through the scan machines: `scan_manager` → `scan[uuid]` (fetch the catalog,
//! select offers) → `recovery_scan[uuid]`.

use serde_json::json;

use crate::AgentError;
use crate::device::Device;
use crate::journal::{Journal, fire, machine};
use crate::machines::{RECOVERY_SCAN, SCAN, SCAN_MANAGER};
use crate::offer::{self, Offer};
use ferry_types::Diagnose;

/// What a scan found.
#[derive(Debug, Clone)]
pub struct ScanResult {
    /// The offers for this device, newest first.
    pub offers: Vec<Offer>,
}

/// Runs a scan, journaled. `asked`: a person asked for it (always runs).
pub async fn scan(device: &Device, journal: &mut Journal) -> Result<ScanResult, AgentError> {
    let mut manager = journal.instance(machine(&SCAN_MANAGER)?, "device", false)?;
    if manager.state() == "SCANNING" {
        // The previous scan was cut short (crash): close it before starting another.
        fire(&mut manager, "Fail", json!({ "reason": "interrupted" }))?;
    }
    fire(&mut manager, "Scan", json!({ "asked": true }))?;
    let scan_id = uuid::Uuid::new_v4().to_string();
    let mut one = journal.instance(machine(&SCAN)?, &scan_id, false)?;
    let result = run(device, journal, &mut one, &scan_id).await;
    match &result {
        Ok(found) => {
            fire(
                &mut manager,
                "Found",
                json!({ "scan": scan_id, "n_offers": found.offers.len() }),
            )?;
        }
        Err(e) => {
            let report = e.report();
            let _ = fire(&mut one, "Fail", json!({ "error": report }));
            fire(
                &mut manager,
                "Fail",
                json!({ "scan": scan_id, "error": report }),
            )?;
        }
    }
    result
}

async fn run(
    device: &Device,
    journal: &mut Journal,
    one: &mut ferry_fsm::Instance,
    scan_id: &str,
) -> Result<ScanResult, AgentError> {
    fire(one, "Refresh", json!({ "server": device.config.server }))?;
    // A TUF refresh from the pinned root; on failure the last good metadata stays.
    let catalog = crate::catalog::refresh(device).await?;
    let versions = catalog.versions();
    fire(
        one,
        "Fetched",
        json!({ "n_releases": catalog.releases().len(), "metadata": format!("{versions:?}") }),
    )?;
    let current = device.running_version()?;
    let offers = offer::offers(
        catalog.releases(),
        |name| catalog.target(name),
        device.identity.device_class.as_str(),
        &device.config.audience,
        &current,
    );
    crate::catalog::record(device, Ok(offers.len()));
    // The recovery check is part of the scan: its failure fails the scan too.
    let mut recovery = journal.instance(machine(&RECOVERY_SCAN)?, scan_id, false)?;
    if let Err(e) = check_recovery(&mut recovery) {
        let _ = fire(&mut recovery, "Fail", json!({ "error": e.report() }));
        return Err(e);
    }
    fire(
        one,
        "Selected",
        json!({ "current": current, "offers": offers.iter().map(|o| &o.label).collect::<Vec<_>>() }),
    )?;
    Ok(ScanResult { offers })
}

/// `recovery_scan[uuid]`: until the recovery component exists, never needed.
fn check_recovery(recovery: &mut ferry_fsm::Instance) -> Result<(), AgentError> {
    fire(recovery, "Check", json!({}))?;
    fire(
        recovery,
        "NotNeeded",
        json!({ "reason": "the device has no recovery component" }),
    )?;
    Ok(())
}
