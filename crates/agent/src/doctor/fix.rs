//! `ferry doctor --fix`: repairs what is safe and says what it did — the cache the cache
//! check found corrupt or stale purged, space freed by purging, the catalog refreshed and
//! the personalization key set taken again from it (a corrupt one removed first). Never a
//! slot, the journal, the receipts or boot state; every other failing check keeps its fix
//! sentence for a person. It needs the device lock: while another process holds it,
//! nothing is repaired (a lock is released by the kernel when its holder dies, so a lock
//! that is held belongs to a live process, which the doctor does not stop).

use std::path::Path;

use ferry_types::Diagnose;

use crate::device::{Device, read_json};
use crate::doctor::cache::CACHE;
use crate::doctor::catalog::CATALOG;
use crate::doctor::check::Outcome;
use crate::doctor::conflicts::LOCK;
use crate::doctor::diagnose::{DoctorReport, Fixed};
use crate::doctor::space::SPACE;
use crate::doctor::trust::KEY_SET;
use crate::install::purge::{self, Keep};
use crate::install::record::InstallProgress;

/// The checks `report` found failing and repairable.
fn wanted(report: &DoctorReport) -> Vec<&'static str> {
    report
        .checks
        .iter()
        .filter(|c| c.fixable && matches!(c.outcome, Outcome::Fail | Outcome::Warn))
        .map(|c| c.name)
        .collect()
}

/// Repairs what `report` found repairable on the device at `dir`.
pub async fn fix(dir: &Path, report: &DoctorReport) -> Vec<Fixed> {
    if wanted(report).is_empty() {
        return Vec::new();
    }
    match Device::open(dir) {
        Ok(device) => fix_device(&device, report).await,
        Err(e) => vec![Fixed {
            check: LOCK.into(),
            done: false,
            what: format!("nothing repaired: {} ({})", e, e.code()),
        }],
    }
}

/// Repairs what `report` found repairable on `device`, opened (and locked) by this
/// process: the agent's `POST /v1/doctor/fix`.
pub async fn fix_device(device: &Device, report: &DoctorReport) -> Vec<Fixed> {
    let wanted = wanted(report);
    if wanted.is_empty() {
        return Vec::new();
    }
    let mut fixed = Vec::new();
    if wanted.contains(&CACHE) {
        fixed.push(match purge::purge(&report.cache_to_purge) {
            Ok(purged) => Fixed {
                check: CACHE.into(),
                done: true,
                what: format!(
                    "removed {} ({} bytes): {}",
                    purged
                        .removed
                        .iter()
                        .map(|p| p.path.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    purged.bytes,
                    purged
                        .removed
                        .first()
                        .map_or("nothing left to remove", |p| p.why)
                ),
            },
            Err(e) => failed(CACHE, &e),
        });
    }
    if wanted.contains(&SPACE) {
        let record: Option<InstallProgress> = read_json(&device.layout().install_record()).ok();
        let items = purge::purgeable(&device.layout(), Keep::for_record(record.as_ref()));
        fixed.push(match purge::purge(&items) {
            Ok(purged) => Fixed {
                check: SPACE.into(),
                done: true,
                what: format!(
                    "purged {} item(s), {} bytes freed",
                    purged.removed.len(),
                    purged.bytes
                ),
            },
            Err(e) => failed(SPACE, &e),
        });
    }
    if wanted.contains(&KEY_SET) || wanted.contains(&CATALOG) {
        let check = if wanted.contains(&KEY_SET) {
            KEY_SET
        } else {
            CATALOG
        };
        fixed.push(refresh(device, check, report).await);
    }
    fixed
}

/// The catalog refreshed (a scan's refresh, recorded in `tuf/last-scan.json`) and the key
/// set taken from it; a key set that does not parse is removed first, since a refresh
/// cannot replace what it cannot read.
async fn refresh(device: &Device, check: &'static str, report: &DoctorReport) -> Fixed {
    let corrupt_key_set = report
        .check(KEY_SET)
        .is_some_and(|c| c.code() == Some("DEVICE_CORRUPT"));
    let path = device.layout().key_set();
    if corrupt_key_set && let Err(source) = ferry_durable::remove(&path) {
        let e = crate::AgentError::Io {
            op: "removing the corrupt key set",
            path,
            source,
        };
        return failed(check, &e);
    }
    match crate::trust::catalog::refresh(device).await {
        Ok(refreshed) => {
            crate::trust::catalog::record(
                device,
                Ok(refreshed.catalog.releases().len()),
                &refreshed.warnings,
            );
            let versions = refreshed.catalog.versions();
            let keys = crate::trust::personalize::key_set(device)
                .map(|set| format!("key set version {}", set.version()))
                .unwrap_or_else(|e| format!("no key set ({})", e.code()));
            Fixed {
                check: check.into(),
                done: true,
                what: format!(
                    "refreshed the catalog (timestamp v{}, targets v{}) and took the {keys}{}",
                    versions.timestamp,
                    versions.targets,
                    if corrupt_key_set {
                        " after removing the corrupt one"
                    } else {
                        ""
                    }
                ),
            }
        }
        Err(e) => failed(check, &e),
    }
}

fn failed(check: &'static str, e: &crate::AgentError) -> Fixed {
    Fixed {
        check: check.into(),
        done: false,
        what: format!("not repaired: {e} ({}); {}", e.code(), e.fix()),
    }
}
