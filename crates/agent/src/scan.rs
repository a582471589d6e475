//! A scan through the scan machines: `scan_manager` → `scan[uuid]` (fetch the catalog,
//! select offers) → `recovery_scan[uuid]`. Its progress is measured in the metadata files
//! and bytes fetched and verified ([`ScanMeter`]), under the state `SCANNING` (before the
//! install's first checkpoint, so at 0 % of the bar).

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::AgentError;
use crate::device::Device;
use crate::journal::{Instance, Journal};
use crate::machines::{recovery_scan, scan, scan_manager};
use crate::offer::{self, Offer};
use crate::progress::{Progress, ProgressSink, Quiet, bytes_text};
use ferry_catalog::{FetchObserver, Fetched};
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

/// [`scan`], its progress (files and bytes fetched and verified) reported to `sink`.
pub async fn scan_measured(
    device: &Device,
    journal: &mut Journal,
    sink: &dyn ProgressSink,
) -> Result<ScanResult, AgentError> {
    scan_reported(device, journal, true, sink).await
}

/// The state a scan's progress is reported under.
pub const SCANNING: &str = "SCANNING";

/// Counts a scan's metadata files and bytes as they arrive and reports them, at most
/// four times a second and at the end of each file.
#[derive(Debug, Default)]
pub struct ScanMeter {
    files: u64,
    bytes_done: u64,
    current: u64,
    last: Option<Instant>,
}

impl ScanMeter {
    /// `fetched` arrived: the report to make now, if one is due.
    pub fn saw(&mut self, fetched: &Fetched) -> Option<Progress> {
        if fetched.done {
            self.files += 1;
            self.bytes_done += fetched.bytes;
            self.current = 0;
        } else {
            self.current = fetched.bytes;
        }
        let now = Instant::now();
        if !fetched.done
            && self
                .last
                .is_some_and(|t| now.duration_since(t) < Duration::from_millis(250))
        {
            return None;
        }
        self.last = Some(now);
        let bytes = self.bytes_done + self.current;
        let what = if fetched.done { "verified" } else { "fetching" };
        Some(Progress {
            state: SCANNING,
            action: format!(
                "Checking for updates… {} {what}; {} metadata file{} ({}) fetched",
                fetched.file,
                self.files,
                if self.files == 1 { "" } else { "s" },
                bytes_text(bytes)
            ),
            done: bytes,
            ..Progress::default()
        })
    }
}

/// Runs a scan, journaled. `asked`: a person or client asked for it; else the agent's
/// background schedule started it (`scan_due`).
pub async fn scan_as(
    device: &Device,
    journal: &mut Journal,
    asked: bool,
) -> Result<ScanResult, AgentError> {
    scan_reported(device, journal, asked, &Quiet).await
}

/// [`scan_as`], its progress (files and bytes fetched and verified) reported to `sink`:
/// the daemon's scans, background ones included, have the same units as a CLI scan.
pub async fn scan_as_measured(
    device: &Device,
    journal: &mut Journal,
    asked: bool,
    sink: &dyn ProgressSink,
) -> Result<ScanResult, AgentError> {
    scan_reported(device, journal, asked, sink).await
}

async fn scan_reported(
    device: &Device,
    journal: &mut Journal,
    asked: bool,
    sink: &dyn ProgressSink,
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
    let result = run(device, journal, &mut one, &scan_id, sink).await;
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
    sink: &dyn ProgressSink,
) -> Result<ScanResult, AgentError> {
    one.fire(
        scan::Event::Refresh,
        json!({ "server": device.config.server }),
    )?;
    // A TUF refresh from the pinned root; on failure the last good metadata stays. Each
    // metadata file is reported as it arrives.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Fetched>();
    let observer = FetchObserver(Arc::new(move |fetched: &Fetched| {
        let _ = tx.send(fetched.clone());
    }));
    let refreshed = {
        let refresh = crate::trust::catalog::refresh_observed(device, Some(observer));
        tokio::pin!(refresh);
        let mut meter = ScanMeter::default();
        let refreshed = loop {
            tokio::select! {
                refreshed = &mut refresh => break refreshed,
                Some(fetched) = rx.recv() => {
                    if let Some(p) = meter.saw(&fetched) {
                        sink.report(&p);
                    }
                }
            }
        };
        // Files whose news was still queued when the refresh ended are reported too: a fast
        // scan (or a loaded machine) still shows its units.
        while let Ok(fetched) = rx.try_recv() {
            if let Some(p) = meter.saw(&fetched) {
                sink.report(&p);
            }
        }
        refreshed
    };
    let crate::trust::catalog::Refreshed { catalog, warnings } = refreshed?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fetched(file: &str, bytes: u64, done: bool) -> Fetched {
        Fetched {
            file: file.into(),
            bytes,
            done,
        }
    }

    #[test]
    fn a_scan_counts_its_files_and_bytes() {
        let mut meter = ScanMeter::default();
        let p = meter.saw(&fetched("timestamp.json", 1500, true)).unwrap();
        assert_eq!(p.state, SCANNING);
        assert_eq!(p.done, 1500);
        assert_eq!(
            p.action,
            "Checking for updates… timestamp.json verified; 1 metadata file (1.5 KB) fetched"
        );
        // A large file's bytes count as they arrive, reported at most four times a second.
        assert!(
            meter
                .saw(&fetched("3.targets.json", 2_000_000, false))
                .is_none()
        );
        let mut fresh = ScanMeter::default();
        let p = fresh
            .saw(&fetched("3.targets.json", 2_000_000, false))
            .unwrap();
        assert_eq!(p.done, 2_000_000);
        assert!(p.action.contains("3.targets.json fetching"), "{}", p.action);
        // The end of a file is always said.
        let p = meter
            .saw(&fetched("3.targets.json", 3_000_000, true))
            .unwrap();
        assert_eq!(p.done, 3_001_500);
        assert!(
            p.action.ends_with("2 metadata files (3.0 MB) fetched"),
            "{}",
            p.action
        );
    }
}
