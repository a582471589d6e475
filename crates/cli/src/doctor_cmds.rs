//! `ferry doctor` and `ferry purge-cache`. The doctor reads the device directory without
//! its lock, so it runs here whether or not the agent runs; `--fix` needs the lock and
//! asks the agent when it holds it.

use std::process::ExitCode;

use ferry_agent::device::Device;
use ferry_agent::install;

use crate::args::{DoctorArgs, PurgeCacheArgs};
use crate::failure::Failure;
use crate::local::{deliver_queued, open};
use crate::render;

pub async fn doctor(d: DoctorArgs) -> Result<ExitCode, Failure> {
    use ferry_agent::doctor::{self, Scope, Subject};
    let a = d.device;
    let layout = ferry_agent::layout::Layout::new(&a.device);
    if !layout.identity().is_file() && !layout.config().is_file() {
        let e = ferry_agent::AgentError::DeviceMissing {
            dir: a.device.clone(),
        };
        return Err(Failure::from(e).json(a.json));
    }
    // The checks read the directory without its lock, so they run here whether or not the
    // agent runs; repairs need the lock, so `--fix` asks the agent when it holds it.
    let mut report = doctor::run(&Subject::open(&a.device), &Scope::All).await;
    if d.fix {
        let fixes = match crate::local::agent(&a.device).await {
            Some(agent) => {
                let body = Some(serde_json::json!({}));
                crate::local::ask(&agent, "/v1/doctor/fix", body, Some("fixes"), a.json).await?
            }
            None => doctor::fix::fix(&a.device, &report).await,
        };
        if fixes.iter().any(|f: &doctor::Fixed| f.done) {
            report = doctor::run(&Subject::open(&a.device), &Scope::All).await;
        }
        report.fixes = fixes;
    }
    // The result is an event report too (the fleet sees why a device is not updating).
    match crate::local::agent(&a.device).await {
        Some(agent) => {
            let cause = report.cause.as_ref().map(|c| {
                serde_json::json!({ "check": c.check, "code": c.code, "cause": c.cause, "fix": c.fix })
            });
            let queued = agent
                .post(
                    "/v1/doctor/result",
                    serde_json::json!({ "ok": report.ok, "cause": cause }),
                )
                .await;
            if let Err(e) = queued {
                tracing::warn!("the doctor's result was not queued by the agent: {e:?}");
            }
        }
        None => {
            if let Ok(device) = Device::open(&a.device) {
                if let Err(e) = doctor::queue_result(&device, &report) {
                    tracing::warn!("the doctor's result was not queued: {e}");
                }
                deliver_queued(&device).await;
            }
        }
    }
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        render::doctor(&report);
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

pub fn purge_cache(a: PurgeCacheArgs) -> Result<ExitCode, Failure> {
    let json = a.device.json;
    let device = open(&a.device)?;
    let purged =
        install::purge::purge_cache(&device, a.all).map_err(|e| Failure::from(e).json(json))?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&purged).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    for item in &purged.removed {
        println!(
            "removed {} ({}): {}",
            item.path.display(),
            render::bytes(item.bytes),
            item.why
        );
    }
    println!(
        "Freed {} ({} item{}).",
        render::bytes(purged.bytes),
        purged.removed.len(),
        if purged.removed.len() == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}
