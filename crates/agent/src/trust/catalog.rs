//! Scan: refresh the catalog through TUF from the pinned root, keep the last good metadata,
//! record when the scan ran and what it found.
//!
//! ```text
//! DEVICE/tuf/root.json        the pinned root (written by `device init`, never by a scan)
//! DEVICE/tuf/current -> gen-N the last good metadata (ferry-catalog's datastore)
//! DEVICE/tuf/last-scan.json   when the last scan ran, its result code or "ok", offers found
//! DEVICE/trust/personalization-keys.json   the key set target, taken at each scan
//! ```
//!
//! The device trusts nothing the server says outside this metadata: offers come from the
//! signed targets' release metadata, and the sizes and digests of the payload and manifest
//! from the signed target entries.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use ferry_catalog::{Catalog, CatalogWarning};
use ferry_types::{Diagnose, Report};
use serde::{Deserialize, Serialize};

use crate::AgentError;
use crate::client::{METADATA_PATH, TARGETS_PATH};
use crate::device::{Config, Device};
use crate::layout::Layout;

/// The result recorded for a scan that succeeded.
pub const SCAN_OK: &str = "ok";

/// `tuf/last-scan.json`: when the last scan ran and what it found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LastScan {
    /// When it finished.
    pub at: DateTime<Utc>,
    /// `ok`, or the error code it failed with.
    pub result: String,
    /// Offers it found (0 when it failed).
    pub n_offers: usize,
    /// What the scan found wrong on the device and dealt with (CATALOG_CACHE_DAMAGED,
    /// CATALOG_CLOCK_BEHIND, CATALOG_CLOCK_AHEAD, KEYSET_DAMAGED), each with its fix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Report>,
}

/// Whether a scan should run now: a scan the user asked for always runs; a background scan
/// runs when none ever ran, when the last one is at least `interval_secs` old, or when the
/// clock went back before it.
pub fn scan_due(
    last_scan: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    interval_secs: u64,
    asked: bool,
) -> bool {
    if asked {
        return true;
    }
    let Some(last) = last_scan else {
        return true;
    };
    let elapsed = now.signed_duration_since(last);
    elapsed < chrono::TimeDelta::zero() || elapsed.num_seconds() as u64 >= interval_secs
}

/// A catalog freshly refreshed, and what the refresh found wrong on the device and dealt
/// with (already reported as it was met, and recorded in `last-scan.json` by [`record`]).
#[derive(Debug)]
pub struct Refreshed {
    /// The verified catalog.
    pub catalog: Catalog,
    /// The warnings, with codes.
    pub warnings: Vec<Report>,
}

/// Refreshes the catalog into `DEVICE/tuf/`, on the device's clock
/// ([`crate::trust::personalize::device_time`]). On failure the error is recorded in
/// `last-scan.json` and the last good metadata stays as it was.
///
/// The personalization key set comes with it: a verified catalog's key set replaces the
/// trusted one ([`crate::trust::personalize::update_key_set`]), and a key set TUF refuses fails
/// the scan. What the refresh dealt with on its own (a damaged file fetched again, a clock
/// behind the latest known time or ahead of the server) is reported as it is met, and a
/// repair also recorded for the doctor ([`crate::journal::record_repair`]).
pub async fn refresh(device: &Device) -> Result<Refreshed, AgentError> {
    refresh_observed(device, None).await
}

/// [`refresh`], telling `observer` of every metadata file as it arrives (the scan's
/// measured units).
pub async fn refresh_observed(
    device: &Device,
    observer: Option<ferry_catalog::FetchObserver>,
) -> Result<Refreshed, AgentError> {
    let mut result = refresh_inner(device, observer).await.map(|catalog| {
        let warnings = catalog
            .warnings()
            .iter()
            .map(|warning| {
                let report = warning.report();
                match warning {
                    CatalogWarning::CacheDamaged { .. } => {
                        crate::journal::record_repair(device, &report)
                    }
                    _ => crate::warnings::report(&report),
                }
                report
            })
            .collect::<Vec<_>>();
        Refreshed { catalog, warnings }
    });
    if let Ok(refreshed) = &mut result {
        match crate::trust::personalize::update_key_set(device, &refreshed.catalog).await {
            Ok(update) => refreshed.warnings.extend(update.repaired),
            Err(error) => result = Err(error),
        }
    }
    if let Err(error) = &result
        && error.code() == "SERVER_UNREACHABLE"
        && let Some(tls) = tls_cause(device).await
    {
        // "Unreachable" was really a certificate that does not chain to the pin: say
        // so (TLS_INTERCEPTED names the issuer that answered).
        result = Err(tls);
    }
    if let Err(error) = &result {
        record(device, Err(error), &[]);
    }
    result
}

/// Asks the server for its time over the device's pinned client: a TLS failure there is
/// the real cause of an unreachable catalog.
async fn tls_cause(device: &Device) -> Option<AgentError> {
    let client = crate::client::Client::for_device(device).ok()?;
    match client.small_file("/v1/time", 4096).await {
        Err(e @ AgentError::Tls(_)) => Some(e),
        _ => None,
    }
}

async fn refresh_inner(
    device: &Device,
    observer: Option<ferry_catalog::FetchObserver>,
) -> Result<Catalog, AgentError> {
    fetch(&device.layout(), &device.config, false, observer).await
}

/// Verifies what the server serves now from the pinned root and the last good metadata,
/// changing nothing on the device (the doctor's catalog check): the catalog it would
/// trust, or why it would refuse it.
pub async fn verify_remote(layout: &Layout<'_>, config: &Config) -> Result<Catalog, AgentError> {
    fetch(layout, config, true, None).await
}

async fn fetch(
    layout: &Layout<'_>,
    config: &Config,
    dry_run: bool,
    observer: Option<ferry_catalog::FetchObserver>,
) -> Result<Catalog, AgentError> {
    let root_path = layout.pinned_root();
    let pinned_root = std::fs::read(&root_path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => AgentError::RootNotPinned {
            path: root_path.clone(),
        },
        _ => AgentError::Io {
            op: "reading the pinned root",
            path: root_path.clone(),
            source: e,
        },
    })?;
    let (metadata_url, targets_url) = catalog_urls(&config.server)?;
    // The catalog is fetched over the same pinned TLS as everything else.
    let ca_pem = match &config.ca {
        Some(path) => {
            let path = layout.resolve(path);
            Some(std::fs::read(&path).map_err(AgentError::io("reading the pinned CA", &path))?)
        }
        None => None,
    };
    let options = ferry_catalog::RefreshOptions {
        ca_pem,
        dry_run,
        observer,
        now: Some(
            Utc::now() + chrono::Duration::seconds(crate::trust::personalize::clock_offset(config)),
        ),
        ..Default::default()
    };
    Catalog::refresh_with(
        &layout.tuf_dir(),
        &pinned_root,
        &metadata_url,
        &targets_url,
        &options,
    )
    .await
    .map_err(AgentError::from)
}

/// Records the outcome of a scan and its warnings in `last-scan.json` (best effort: a scan
/// is not failed for want of its record, the failure is logged).
pub fn record(device: &Device, outcome: Result<usize, &AgentError>, warnings: &[Report]) {
    let last = LastScan {
        at: Utc::now(),
        result: match outcome {
            Ok(_) => SCAN_OK.to_owned(),
            Err(error) => error.code().to_owned(),
        },
        n_offers: outcome.unwrap_or(0),
        warnings: warnings.to_vec(),
    };
    let path = device.layout().last_scan();
    if let Err(error) = ferry_durable::write_json(&path, &last) {
        tracing::warn!(%error, path = %path.display(), "could not record the scan");
    }
}

/// The last scan, if one ever ran.
pub fn last_scan(device_dir: &Path) -> Option<LastScan> {
    crate::device::read_json(&Layout::new(device_dir).last_scan()).ok()
}

/// The directory of the last good metadata, if a scan ever succeeded.
pub fn trusted_metadata_dir(device_dir: &Path) -> Option<PathBuf> {
    ferry_catalog::trusted_metadata_dir(&Layout::new(device_dir).tuf_dir())
}

/// Pins `root` as the device's trust anchor (`device init`). It must parse as TUF root
/// metadata; its signatures are checked at the first scan.
pub fn pin_root(device_dir: &Path, root: &[u8]) -> Result<(), AgentError> {
    let layout = Layout::new(device_dir);
    let path = layout.pinned_root();
    let invalid = |reason: String| AgentError::RootInvalid {
        path: path.clone(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_slice(root).map_err(|e| invalid(e.to_string()))?;
    if value["signed"]["_type"] != "root" {
        return Err(invalid(
            "it is not TUF root metadata (signed._type is not \"root\")".into(),
        ));
    }
    let dir = layout.tuf_dir();
    std::fs::create_dir_all(&dir)
        .map_err(AgentError::io("creating the catalog directory", &dir))?;
    ferry_durable::write_atomic(&path, root).map_err(AgentError::io("pinning the root", &path))
}

/// The metadata and targets base URLs of a server.
pub fn catalog_urls(server: &str) -> Result<(url::Url, url::Url), AgentError> {
    let base = server.trim_end_matches('/');
    let parse = |path: &str| {
        let text = format!("{base}{path}");
        url::Url::parse(&text).map_err(|e| AgentError::ServerInvalid {
            url: text,
            reason: format!("the server URL in config.toml is not a URL: {e}"),
        })
    };
    Ok((parse(METADATA_PATH)?, parse(TARGETS_PATH)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asked_scans_always_run_background_scans_wait_for_the_interval() {
        let now = DateTime::parse_from_rfc3339("2026-03-20T18:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let six_hours = 6 * 3600;
        let hours_ago = |h: i64| Some(now - chrono::TimeDelta::hours(h));
        assert!(scan_due(None, now, six_hours, false), "never scanned");
        assert!(!scan_due(hours_ago(1), now, six_hours, false));
        assert!(scan_due(hours_ago(1), now, six_hours, true), "asked");
        assert!(scan_due(hours_ago(6), now, six_hours, false));
        assert!(scan_due(hours_ago(7), now, six_hours, false));
        assert!(
            scan_due(hours_ago(-2), now, six_hours, false),
            "clock went back"
        );
    }

    #[test]
    fn catalog_urls_sit_under_the_server() {
        let (metadata, targets) = catalog_urls("http://127.0.0.1:8080/").unwrap();
        assert_eq!(metadata.as_str(), "http://127.0.0.1:8080/tuf/metadata/");
        assert_eq!(targets.as_str(), "http://127.0.0.1:8080/tuf/targets/");
    }
}
