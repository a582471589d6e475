//! The catalog check: the last good metadata on the device (versions, when it expires,
//! when it was refreshed, the last scan), then what the server serves now, verified from
//! the pinned root without changing anything (a dry-run refresh): expired, rolled back,
//! badly signed metadata keep the catalog's own `CATALOG_…` code; metadata that expired
//! while the server cannot be reached is `CATALOG_STALE`. It also finds the offer the
//! other checks size and personalize.

use chrono::Utc;
use ferry_boot::Slot;
use ferry_catalog::{Catalog, StoredMetadata};
use ferry_types::Diagnose;
use serde_json::json;

use crate::device::{SlotInfo, read_json};
use crate::doctor::check::{Check, Finding};
use crate::doctor::net::Net;
use crate::doctor::subject::Subject;
use crate::offer::Offer;

/// Name of the check.
pub const CATALOG: &str = "catalog";

/// What the catalog check found, for the checks after it.
#[derive(Debug)]
pub struct Found {
    /// The check.
    pub check: Check,
    /// The catalog the server serves, verified (not stored).
    pub catalog: Option<Catalog>,
    /// The update offered to the device now.
    pub offer: Option<Offer>,
    /// The running slot and what it holds.
    pub running: Option<(Slot, SlotInfo)>,
}

/// Whether `code` says the server could not be reached (rather than what it served).
pub fn unreachable_code(code: &str) -> bool {
    code == "SERVER_UNREACHABLE"
        || code == "NETWORK_TIMEOUT"
        || code == "OVERLOADED"
        || code == "SERVER_REFUSED"
        || code == "CATALOG_UNREACHABLE"
        || code.starts_with("TLS_")
}

/// The running slot and its metadata, from boot control.
pub fn running(subject: &Subject) -> Option<(Slot, SlotInfo)> {
    let state = subject.boot_control()?.load().ok()?;
    let slot = state.primary();
    let info = read_json::<SlotInfo>(&subject.layout().slot_info(slot)).ok()?;
    Some((slot, info))
}

/// Runs the check (`net`: `None` when the device has no usable client).
pub async fn check(subject: &Subject, net: Option<&Net>) -> Found {
    let layout = subject.layout();
    let running = running(subject);
    let stored = ferry_catalog::stored_metadata(&layout.tuf_dir());
    let last_scan = crate::trust::catalog::last_scan(&subject.dir);
    let mut evidence = json!({
        "stored": stored_evidence(&stored),
        "last_scan": last_scan,
    });
    let now = Utc::now();
    let stale = match &stored {
        Ok(Some(meta)) => meta.first_to_expire().filter(|r| r.expires <= now).cloned(),
        _ => None,
    };
    let refreshed_at = stored
        .as_ref()
        .ok()
        .and_then(Option::as_ref)
        .and_then(|m| m.refreshed_at);
    let (Some(net), Some(config)) = (net, subject.config()) else {
        return Found {
            check: Check::skipped(
                CATALOG,
                "no usable config or client (see the config and trust checks)",
            ),
            catalog: None,
            offer: None,
            running,
        };
    };
    let remote = net
        .call("/tuf/metadata/timestamp.json", |_| {
            crate::trust::catalog::verify_remote(&layout, config)
        })
        .await;
    let catalog = match remote {
        Ok(catalog) => catalog,
        Err(e) => {
            evidence["remote"] = json!({ "error": e.report() });
            let check = match stale {
                Some(role) if unreachable_code(e.code()) => Check::fail(
                    CATALOG,
                    &Finding::CatalogStale {
                        role: role.role.to_owned(),
                        expired_at: role.expires,
                        refreshed_at,
                    },
                    evidence,
                ),
                None if unreachable_code(e.code()) => Check::skipped(
                    CATALOG,
                    format!(
                        "the server's catalog could not be fetched ({}); the last good metadata is still valid",
                        e.code()
                    ),
                ),
                _ => Check::fail(CATALOG, &e, evidence),
            };
            return Found {
                check,
                catalog: None,
                offer: None,
                running,
            };
        }
    };
    let versions = catalog.versions();
    let offer = match (&subject.identity, &running) {
        (Ok(identity), Some((_, info))) => crate::offer::offers(
            catalog.releases(),
            |name| catalog.target(name),
            identity.device_class.as_str(),
            &config.audience,
            &info.version,
        )
        .into_iter()
        .find(|o| o.recommended),
        _ => None,
    };
    evidence["remote"] = json!({
        "root": versions.root,
        "timestamp": versions.timestamp,
        "snapshot": versions.snapshot,
        "targets": versions.targets,
        "expires": catalog.expires(),
        "releases": catalog.releases().len(),
        "offer": offer.as_ref().map(|o| json!({ "label": o.label, "version": o.version, "build_id": o.build_id })),
    });
    let offered = offer.as_ref().map_or("no update offered".to_owned(), |o| {
        format!("offers {}", o.label)
    });
    let mut check = Check::ok(
        CATALOG,
        format!(
            "the server's catalog verifies (timestamp v{}, targets v{}, expires {}); {offered}",
            versions.timestamp,
            versions.targets,
            catalog.expires().format("%Y-%m-%d %H:%M UTC")
        ),
        evidence,
    );
    if let Some(role) = stale {
        // Fine once scanned: the next scan (every install starts with one) replaces it.
        check = check.with_summary(format!(
            "the device's last good {} metadata expired at {}; the server's verifies, so the next scan replaces it",
            role.role, role.expires
        ));
    }
    Found {
        check,
        catalog: Some(catalog),
        offer,
        running,
    }
}

fn stored_evidence(
    stored: &Result<Option<StoredMetadata>, ferry_catalog::CatalogError>,
) -> serde_json::Value {
    match stored {
        Ok(Some(meta)) => json!({
            "refreshed_at": meta.refreshed_at,
            "roles": meta.roles.iter().map(|r| json!({ "role": r.role, "version": r.version, "expires": r.expires })).collect::<Vec<_>>(),
        }),
        Ok(None) => json!(null),
        Err(e) => json!({ "error": e.report() }),
    }
}
