//! The device-side subcommands that ask for or take an update: `audience set`, `list`,
//! `defer`, `install` and `download` (`device init` is in `init_cmd`, the doctor in
//! `doctor_cmds`, `reboot`/`boot-check` in `boot_cmds`, `status`/`history`/`deliver` in
//! `report_cmds`). Each goes through the running agent when there is one
//! (`local`) and prints the same either way; the agent delivers the event reports it
//! queues, and a command that worked on the directory itself delivers the queued ones at
//! its end ([`deliver_queued`]).

use std::process::ExitCode;

use ferry_agent::boot::reboot as agent_reboot;
use ferry_agent::install;

use crate::args::{AudienceSetArgs, DeviceArgs, DownloadArgs, InstallArgs};
use crate::boot_cmds::{print_reboot, reboot_through};
use crate::failure::Failure;
use crate::local::{deliver_queued, open};
use crate::render::{self, ProgressUi};

/// The releases the director's last verified decision holds back, each with its one
/// reason (human output only; `--json` keeps the offers' shape).
fn print_held_back(device: &std::path::Path) {
    let layout = ferry_agent::layout::Layout::new(device);
    let Some(decision) = ferry_agent::trust::director::stored_in(&layout) else {
        return;
    };
    let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    for held in &decision.releases {
        if let Some(deadline) = held.deadline {
            println!(
                "Deadline: {} installs at the first allowed moment after {}",
                held.version,
                fmt(deadline)
            );
        }
        if held.emergency {
            println!("Emergency: {} cannot be deferred", held.version);
        } else if let Some(latest) = held.defer_latest {
            println!(
                "Deferral: {} may be deferred until {} at the latest",
                held.version,
                fmt(latest)
            );
        }
        if let Some(until) = held.deferred_until {
            println!("Deferred: {} until {}", held.version, fmt(until));
            continue;
        }
        let Some(code) = held.state.code() else {
            continue;
        };
        let when = held
            .opens_at
            .map(|t| format!(", its wave opens at {}", t.format("%Y-%m-%d %H:%M:%S UTC")))
            .unwrap_or_default();
        println!(
            "Held back: {} by {} [{code}]{when}",
            held.version,
            held.holder()
        );
    }
}

pub async fn list(a: DeviceArgs, full: bool) -> Result<ExitCode, Failure> {
    let offers: Vec<serde_json::Value> = match crate::local::agent(&a.device).await {
        Some(agent) => {
            let route = if full { "/v1/list-full" } else { "/v1/scan" };
            let answer =
                crate::local::call(&agent, route, Some(serde_json::json!({})), a.json).await?;
            answer["offers"].as_array().cloned().unwrap_or_default()
        }
        _ => {
            let device = open(&a)?;
            let offers = if full {
                install::list_full(&device).await
            } else {
                install::list(&device).await
            }
            .map_err(|e| Failure::from(e).json(a.json));
            deliver_queued(&device).await;
            let offers = offers?;
            let journal = ferry_agent::journal::Journal::open(&device)
                .map_err(|e| Failure::from(e).json(a.json))?;
            offers
                .iter()
                .map(|offer| {
                    let mut value = serde_json::json!(offer);
                    if !full {
                        let (next, hold) =
                            ferry_daemon::agent::explain(&device, &journal, offer, None);
                        value["next"] = serde_json::json!(next);
                        value["why_not_now"] = serde_json::json!(hold);
                    }
                    value
                })
                .collect()
        }
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&offers).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if !full {
        print_held_back(&a.device);
    }
    if offers.is_empty() {
        println!("No new software available.");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "Software Update found the following {}:",
        if full {
            "full installers"
        } else {
            "new or updated software"
        }
    );
    for o in &offers {
        let text = |k: &str| o[k].as_str().unwrap_or_default().to_owned();
        println!("* Label: {}", text("label"));
        println!(
            "\tTitle: {}, Version: {}, Size: {}, Recommended: {}, Action: {}",
            text("title"),
            text("version"),
            render::bytes(o["download_size"].as_u64().unwrap_or(0)),
            if o["recommended"] == true {
                "YES"
            } else {
                "NO"
            },
            text("action")
        );
        if let Some((code, cause)) = render::why_not_now(o) {
            println!("\tNot now [{code}]: {cause}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs an install or a download through the running agent, its progress on `ui` from
/// the event stream; the outcome as a local run gives it.
async fn through_agent(
    agent: &ferry_daemon::client::Client,
    route: &str,
    label: Option<&str>,
    ui: std::sync::Arc<ProgressUi>,
    json: bool,
) -> Result<Option<install::InstallOutcome>, Failure> {
    use ferry_agent::progress::ProgressSink;
    let mut events = agent
        .events(u64::MAX)
        .await
        .map_err(|e| Failure::from(e).json(json))?;
    let follower = tokio::spawn(async move {
        while let Some(Ok(event)) = events.next().await {
            if let ferry_daemon::events::Event::Progress { progress, .. } = event {
                ui.report(&progress.to_progress());
            }
        }
    });
    let answer = agent
        .post(route, serde_json::json!({ "label": label }))
        .await;
    follower.abort();
    let answer = answer.map_err(|e| crate::local::failure(e, json))?;
    crate::local::read(&answer, route, Some("outcome"), json)
}

/// `ferry download`: stage an update to install later.
pub async fn download(a: DownloadArgs) -> Result<ExitCode, Failure> {
    let json = a.device.json;
    let ui = std::sync::Arc::new(ProgressUi::new(a.verbose));
    let outcome = match crate::local::agent(&a.device.device).await {
        Some(agent) => {
            through_agent(&agent, "/v1/download", a.label.as_deref(), ui.clone(), json).await
        }
        None => {
            let device = open(&a.device)?;
            install::download(&device, a.label.as_deref(), ui.as_ref())
                .await
                .map_err(|e| crate::failure::agent_failure(e).json(json))
        }
    };
    ui.finish();
    let outcome = outcome?;
    if json {
        println!("{}", serde_json::json!({ "staged": outcome }));
        return Ok(ExitCode::SUCCESS);
    }
    let Some(outcome) = outcome else {
        println!("No new software available.");
        return Ok(ExitCode::SUCCESS);
    };
    print_dropped(&outcome);
    if outcome.staged {
        println!(
            "Staged {} in slot {} (update {}): {} downloaded from the {} payload, verified and sealed. Install it with: ferry install {}",
            outcome.version,
            outcome.slot,
            outcome.update_id,
            render::bytes(outcome.bytes_downloaded),
            outcome.payload_kind,
            outcome.version,
        );
    } else {
        println!(
            "{} is already installed in slot {}: restart to use it",
            outcome.version, outcome.slot
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_dropped(outcome: &install::InstallOutcome) {
    for d in &outcome.dropped {
        println!(
            "Dropped the update to {} [{}]: {}",
            d.version, d.reason.code, d.reason.cause
        );
    }
}

pub async fn install(a: InstallArgs) -> Result<ExitCode, Failure> {
    let json = a.device.json;
    let ui = std::sync::Arc::new(ProgressUi::new(a.verbose));
    let label = if a.all { None } else { a.label.as_deref() };
    let agent = crate::local::agent(&a.device.device).await;
    let (result, device) = match &agent {
        Some(agent) => (
            through_agent(agent, "/v1/install", label, ui.clone(), json).await,
            None,
        ),
        None => {
            let device = open(&a.device)?;
            let result = match install::install(&device, label, ui.as_ref()).await {
                Ok(outcome) => Ok(outcome),
                // The checks that can explain it, run now: the cause, not only the error.
                Err(e) => {
                    let diagnosis = ferry_agent::doctor::after_failure(&device, &e).await;
                    Err(crate::failure::agent_failure(e)
                        .json(json)
                        .diagnosed(diagnosis))
                }
            };
            (result, Some(device))
        }
    };
    ui.finish();
    if let Some(device) = &device
        && (!a.restart || result.is_err())
    {
        deliver_queued(device).await;
    }
    let outcome = result?;
    // Warnings (a torn journal tail, a corrupt state file) met in this process were shown
    // as they were met; those the running agent met come back in the outcome.
    if device.is_none() && !json {
        for w in outcome.iter().flat_map(|o| &o.warnings) {
            eprintln!("warning[{}]: {}\n  fix: {}", w.code, w.cause, w.fix);
        }
    }
    let Some(outcome) = outcome else {
        if json {
            println!("{}", serde_json::json!({ "installed": null }));
        } else {
            println!("No new software available.");
        }
        return Ok(ExitCode::SUCCESS);
    };
    if json {
        println!("{}", serde_json::json!({ "installed": outcome }));
    } else {
        print_dropped(&outcome);
        if outcome.ticket_refreshed {
            println!("The staged update's ticket was older than the policy allows: refreshed.");
        }
        let secs = outcome.download_secs.max(1e-9);
        println!(
            "Installed {} into slot {} (update {}) from the {} payload: {} downloaded{}{} in {:.1}s ({}/s of image), verified in {:.1}s.",
            outcome.version,
            outcome.slot,
            outcome.update_id,
            outcome.payload_kind,
            render::bytes(outcome.bytes_downloaded),
            if outcome.bytes_reused > 0 {
                format!(
                    ", {} reused from the running slot",
                    render::bytes(outcome.bytes_reused)
                )
            } else {
                String::new()
            },
            if outcome.resumed_from_batch > 0 {
                format!(" (resumed at batch {})", outcome.resumed_from_batch)
            } else if outcome.resumed_from_frame > 0 {
                format!(" (resumed at frame {})", outcome.resumed_from_frame)
            } else {
                String::new()
            },
            outcome.download_secs,
            render::bytes((outcome.image_size as f64 / secs) as u64),
            outcome.verify_secs,
        );
        if !a.restart {
            println!(
                "Restart to use it: ferry reboot --device {}",
                a.device.device.display()
            );
        }
    }
    if a.restart {
        let outcome = match &agent {
            Some(agent) => reboot_through(agent, false, json).await?,
            None => {
                let device = match device {
                    Some(device) => device,
                    None => open(&a.device)?,
                };
                let rebooted = agent_reboot::reboot(&device, false);
                deliver_queued(&device).await;
                rebooted.map_err(|e| Failure::from(e).json(json))?
            }
        };
        print_reboot(&outcome, json);
    }
    Ok(ExitCode::SUCCESS)
}

/// `ferry list --why`: through the running agent (its scan, its journal), else on the
/// device directory itself.
pub async fn why(a: DeviceArgs) -> Result<ExitCode, Failure> {
    let answer: Vec<ferry_agent::why::WhyNot> = match crate::local::agent(&a.device).await {
        Some(agent) => crate::local::ask(&agent, "/v1/why", None, Some("why"), a.json).await?,
        None => {
            let device = open(&a)?;
            let answer = ferry_agent::why::why(&device)
                .await
                .map_err(|e| Failure::from(e).json(a.json));
            deliver_queued(&device).await;
            answer?
        }
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&answer).unwrap_or_default()
        );
    } else if answer.is_empty() {
        println!("The catalog has no release the device does not run.");
    } else {
        for w in &answer {
            println!("{}: {} [{}]", w.version, w.reason, w.code);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `ferry defer VERSION --for D`: asks the server to record the deferral, through the
/// running agent (which then scans for the new signed decision), else on the device
/// directory itself.
pub async fn defer(a: crate::args::DeferArgs) -> Result<ExitCode, Failure> {
    let json = a.device.json;
    let answer = match crate::local::agent(&a.device.device).await {
        Some(agent) => {
            let body = serde_json::json!({ "version": a.version, "for": a.for_ });
            crate::local::call(&agent, "/v1/defer", Some(body), json).await?
        }
        None => {
            let device = open(&a.device)?;
            ferry_agent::trust::director::defer(&device, &a.version, &a.for_)
                .await
                .map_err(|e| Failure::from(e).json(json))?
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&answer).unwrap_or_default()
        );
    } else {
        println!(
            "Deferred {} until {} (rollout {}; the latest allowed: {})",
            a.version,
            answer["until"].as_str().unwrap_or("?"),
            answer["rollout_id"],
            answer["latest"].as_str().unwrap_or("no limit")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn audience_set(a: AudienceSetArgs) -> Result<ExitCode, Failure> {
    let json = a.device.json;
    let previous = match crate::local::agent(&a.device.device).await {
        Some(agent) => {
            let body = serde_json::json!({ "audience": a.audience });
            let answer = crate::local::call(&agent, "/v1/audience", Some(body), json).await?;
            answer["previous"].as_str().unwrap_or_default().to_owned()
        }
        None => {
            let mut device = open(&a.device)?;
            let previous = device.config.audience.clone();
            device
                .set_audience(&a.audience)
                .map_err(|e| Failure::from(e).json(json))?;
            previous
        }
    };
    if json {
        println!(
            "{}",
            serde_json::json!({ "audience": a.audience, "previous": previous })
        );
    } else {
        println!("audience: {previous} -> {}", a.audience);
    }
    Ok(ExitCode::SUCCESS)
}
