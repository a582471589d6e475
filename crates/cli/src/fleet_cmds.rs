//! `ferry server fleet` and `ferry server events`: the fleet from the event reports, read
//! from the data directory's database directly (like `ferry server devices`), so they
//! work whether or not the server runs.

use std::process::ExitCode;

use ferry_server::DataDir;
use ferry_server::fleet::{DeviceState, Filter, FleetSummary, time_of};

use crate::args::{ServerDataArgs, ServerEventsArgs};
use crate::failure::Failure;
use crate::render;

pub async fn fleet(a: ServerDataArgs) -> Result<ExitCode, Failure> {
    let db = DataDir::open_database(&a.data, a.database.as_deref())
        .await
        .map_err(|e| Failure::from(e).json(a.json))?;
    let summary = db
        .fleet_summary()
        .await
        .map_err(|e| Failure::from(e).json(a.json))?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).unwrap_or_default()
        );
    } else {
        print_fleet(&summary);
    }
    Ok(ExitCode::SUCCESS)
}

fn counts(map: &std::collections::BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn when(ms: i64) -> String {
    time_of(ms).map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// The summary table: versions, statuses, failures by code, rollbacks, silent devices,
/// then each device's last update with its phases and their durations.
pub fn print_fleet(summary: &FleetSummary) {
    println!("{} device(s) reporting", summary.devices);
    println!("  versions:       {}", counts(&summary.versions));
    println!("  status:         {}", counts(&summary.statuses));
    println!("  failed by code: {}", counts(&summary.failed_by_code));
    println!("  rolled back:    {}", counts(&summary.rolled_back_by_code));
    println!("  silent:         {}", summary.silent);
    if summary.device_states.is_empty() {
        return;
    }
    println!(
        "\n{:<17} {:<10} {:<8} {:<12} {:<22} {:<7} {:<14} {:<19}",
        "Device", "Class", "Version", "Status", "Phase", "Percent", "Code", "Last report (UTC)"
    );
    for s in &summary.device_states {
        let status = if s.silent_since_ms.is_some() {
            format!("{} SILENT", s.status)
        } else {
            s.status.clone()
        };
        println!(
            "{:<17} {:<10} {:<8} {:<12} {:<22} {:<7} {:<14} {:<19}",
            s.device_id,
            s.device_class,
            s.version.as_deref().unwrap_or("-"),
            status,
            s.update_state.as_deref().unwrap_or("-"),
            s.update_percent
                .map_or_else(|| "-".into(), |p| format!("{p:.1}%")),
            s.last_error_code.as_deref().unwrap_or("-"),
            when(s.last_report_ms),
        );
    }
    println!("\nLast update of each device:");
    for s in &summary.device_states {
        print_update(s);
    }
}

fn print_update(s: &DeviceState) {
    let Some(update) = &s.update_id else {
        println!("  {}: no update reported", s.device_id);
        return;
    };
    println!(
        "  {} update {update}: {} -> {} ({}{}{})",
        s.device_id,
        s.from_version.as_deref().unwrap_or("?"),
        s.target_version.as_deref().unwrap_or("?"),
        s.status,
        s.payload_kind
            .as_ref()
            .map(|k| format!(", {k} payload"))
            .unwrap_or_default(),
        s.bytes_downloaded
            .map(|b| format!(", {} downloaded", render::bytes(b.max(0) as u64)))
            .unwrap_or_default(),
    );
    if let Some(code) = &s.last_error_code {
        println!(
            "    last error {code} in {} of {}",
            s.last_error_state.as_deref().unwrap_or("?"),
            s.last_error_machine.as_deref().unwrap_or("?")
        );
    }
    if s.phases.is_empty() {
        return;
    }
    let total: f64 = s.phases.iter().map(|(_, secs)| secs).sum();
    println!("    phases ({total:.2} s in all):");
    for (phase, secs) in &s.phases {
        println!("      {phase:<24} {secs:>9.3} s");
    }
}

pub async fn events(a: ServerEventsArgs) -> Result<ExitCode, Failure> {
    let json = a.server.json;
    let db = DataDir::open_database(&a.server.data, a.server.database.as_deref())
        .await
        .map_err(|e| Failure::from(e).json(json))?;
    let filter = Filter {
        device: a.device.clone(),
        update: a.update.clone(),
        state: a.event.clone(),
        code: a.code.clone(),
        limit: Some(a.limit),
        ..Filter::default()
    };
    let reports = db
        .event_reports(&filter)
        .await
        .map_err(|e| Failure::from(e).json(json))?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reports).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<17} {:>5} {:<23} {:<17} {:<11} {:<22} {:<7} {:<14}",
        "Device", "Seq", "Event time (UTC)", "Event", "Result", "State", "Percent", "Code"
    );
    for stored in &reports {
        let r = &stored.report;
        let state = r
            .error
            .as_ref()
            .and_then(|e| e.state.clone())
            .or_else(|| r.transition.as_ref().map(|t| t.to.clone()))
            .or_else(|| r.progress.as_ref().map(|p| p.phase.clone()))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<17} {:>5} {:<23} {:<17} {:<11} {:<22} {:<7} {:<14}",
            r.device_id.to_string(),
            r.sequence,
            r.event_time.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
            r.event.as_str(),
            serde_json::to_value(r.result)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            state,
            r.progress
                .as_ref()
                .map_or_else(|| "-".into(), |p| format!("{:.1}%", p.percent)),
            r.error.as_ref().map_or("-", |e| e.code.as_str()),
        );
    }
    Ok(ExitCode::SUCCESS)
}
