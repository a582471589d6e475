//! The configuration check: every file of the device directory parsed and validated, and
//! the first that is wrong named with its field and what is wrong (`DEVICE_CORRUPT`).

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::device::{Config, Receipt, SlotInfo, read_json, valid_audience};
use crate::doctor::check::Check;
use crate::doctor::subject::{Subject, Unreadable};
use crate::install::record::InstallProgress;
use crate::layout;
use crate::trust::catalog::LastScan;

/// Name of the check.
pub const CONFIG: &str = "config";

/// Reads and validates every device file; fails on the first that is wrong.
pub fn check(subject: &Subject) -> Check {
    let layout = subject.layout();
    let mut checked: Vec<serde_json::Value> = Vec::new();
    let mut problem: Option<Unreadable> = None;
    let mut note = |path: &Path, result: Result<(), Unreadable>| {
        let file = path
            .strip_prefix(&subject.dir)
            .unwrap_or(path)
            .display()
            .to_string();
        match result {
            Ok(()) => checked.push(json!({ "file": file, "ok": true })),
            Err(e) => {
                checked.push(json!({ "file": file, "ok": false, "reason": e.reason }));
                problem.get_or_insert(e);
            }
        }
    };
    note(
        &layout.identity(),
        subject.identity.as_ref().map(|_| ()).map_err(Clone::clone),
    );
    let config_result = subject
        .config
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|config| validate(&layout.config(), &subject.dir, config));
    note(&layout.config(), config_result);
    for slot in ferry_boot::Slot::ALL {
        let path = layout.slot_info(slot);
        if path.exists() {
            note(&path, parses::<SlotInfo>(&path));
        }
    }
    if let Ok(entries) = std::fs::read_dir(layout.receipts_dir()) {
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| layout::is_receipt_name(n))
            .collect();
        names.sort();
        for name in names {
            let path = layout.receipt(&name);
            note(&path, parses::<Receipt>(&path));
        }
    }
    for (path, check) in [
        (
            layout.install_record(),
            parses::<InstallProgress> as fn(&Path) -> _,
        ),
        (layout.last_scan(), parses::<LastScan>),
    ] {
        if path.exists() {
            note(&path, check(&path));
        }
    }
    let facts = layout.simulated_facts();
    if facts.exists() {
        let slot = subject
            .slot_path(ferry_boot::Slot::A)
            .unwrap_or_else(|| subject.dir.clone());
        let result = crate::facts::read(&subject.dir, &slot, &facts)
            .map(|_| ())
            .map_err(|e| Unreadable {
                path: facts.clone(),
                reason: e.to_string(),
            });
        note(&facts, result);
    }
    let n_files = checked.len();
    let evidence = json!({ "files": checked });
    match problem {
        None => Check::ok(
            CONFIG,
            format!("{n_files} files of the device directory parse and are valid"),
            evidence,
        ),
        Some(unreadable) => Check::fail(CONFIG, &unreadable.error(), evidence),
    }
}

fn parses<T: serde::de::DeserializeOwned>(path: &Path) -> Result<(), Unreadable> {
    read_json::<T>(path).map(|_| ()).map_err(|e| Unreadable {
        path: path.to_owned(),
        reason: match e {
            crate::AgentError::DeviceCorrupt { reason, .. } => reason,
            other => other.to_string(),
        },
    })
}

/// What parsing cannot say about `config.toml`: every value is one the device can use.
fn validate(path: &Path, dir: &Path, config: &Config) -> Result<(), Unreadable> {
    let wrong = |reason: String| {
        Err(Unreadable {
            path: path.to_owned(),
            reason,
        })
    };
    match url::Url::parse(&config.server) {
        Ok(url) if url.scheme() == "https" && url.host().is_some() => {}
        Ok(_) => {
            return wrong(format!(
                "server: {:?} is not an https:// URL",
                config.server
            ));
        }
        Err(e) => return wrong(format!("server: {:?} is not a URL: {e}", config.server)),
    }
    if let Some(cache) = &config.cache
        && let Err(e) = url::Url::parse(cache)
    {
        return wrong(format!("cache: {cache:?} is not a URL: {e}"));
    }
    if !valid_audience(&config.audience) {
        return wrong(format!(
            "audience: {:?} is not customer, beta or a programme name (1-64 of a-z, 0-9, '.', '_', '-')",
            config.audience
        ));
    }
    if config.slots.capacity == 0 {
        return wrong("slots.capacity: a slot of 0 bytes holds no image".into());
    }
    for (key, stored) in [("slots.a", &config.slots.a), ("slots.b", &config.slots.b)] {
        let resolved: PathBuf = dir.join(stored);
        if !resolved.exists() {
            return wrong(format!("{key}: {} does not exist", resolved.display()));
        }
    }
    if config.slots.a == config.slots.b {
        return wrong("slots.a and slots.b: both name the same image".into());
    }
    if let Some(ca) = &config.ca
        && !dir.join(ca).is_file()
    {
        return wrong(format!("ca: {} does not exist", dir.join(ca).display()));
    }
    if config.boot_tries == 0 {
        return wrong("boot_tries: 0 tries would abandon every new slot unbooted".into());
    }
    if config.read_timeout_secs == 0 {
        return wrong("read_timeout_secs: 0 would time out every download".into());
    }
    if config.check_interval_secs == 0 {
        return wrong("check_interval_secs: 0 would scan without pause".into());
    }
    if let Some(idx) = config
        .health_checks
        .iter()
        .position(|c| c.trim().is_empty())
    {
        return wrong(format!("health_checks[{idx}]: an empty command"));
    }
    Ok(())
}
