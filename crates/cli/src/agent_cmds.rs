//! `ferry agent` (the device daemon, or steering the one that runs: cancel, suspend,
//! resume, scan) and `ferry progress`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use ferry_agent::progress::ProgressSink;
use ferry_daemon::client::Client;
use ferry_daemon::events::Event;

use crate::args::{AgentArgs, AgentCommand, ProgressArgs};
use crate::failure::Failure;
use crate::render::ProgressUi;

fn device_dir(a: &AgentArgs) -> Result<PathBuf, Failure> {
    a.device.clone().ok_or_else(|| {
        Failure::new(
            "BAD_USAGE",
            "no device directory was given",
            "Pass --device DIR (or set FERRY_DEVICE)",
        )
        .json(a.json)
    })
}

async fn running(dir: &std::path::Path, json: bool) -> Result<Client, Failure> {
    match crate::local::agent(dir).await {
        Some(client) => Ok(client),
        None => Err(Failure::from(ferry_daemon::DaemonError::NotRunning {
            dir: dir.to_owned(),
        })
        .json(json)),
    }
}

pub async fn agent(a: AgentArgs) -> Result<ExitCode, Failure> {
    let dir = device_dir(&a)?;
    let Some(command) = a.command else {
        let shutdown = async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(term) => term,
                    Err(error) => {
                        tracing::warn!(%error, "no SIGTERM handler; stopping on Ctrl-C only");
                        let _ = tokio::signal::ctrl_c().await;
                        return;
                    }
                };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        ferry_daemon::run(&dir, shutdown)
            .await
            .map_err(|e| Failure::from(e).json(a.json))?;
        return Ok(ExitCode::SUCCESS);
    };
    let client = running(&dir, a.json).await?;
    let (route, key) = match command {
        AgentCommand::Cancel => ("/v1/cancel", "stopped"),
        AgentCommand::Suspend => ("/v1/suspend", "stopped"),
        AgentCommand::Resume => ("/v1/resume", "resumed"),
        AgentCommand::Scan => ("/v1/scan", "offers"),
        AgentCommand::Reload => ("/v1/reload", "changed"),
    };
    let answer = crate::local::call(&client, route, Some(serde_json::json!({})), a.json).await?;
    if a.json {
        println!("{answer}");
        return Ok(ExitCode::SUCCESS);
    }
    let job = &answer[key];
    match command {
        AgentCommand::Scan => println!(
            "Scanned: {} offer(s)",
            job.as_array().map_or(0, |offers| offers.len())
        ),
        AgentCommand::Reload => {
            let changed: Vec<&str> = job
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|k| k.as_str())
                .collect();
            if changed.is_empty() {
                println!("Reloaded config.toml: nothing changed");
            } else {
                println!("Reloaded config.toml: {} changed", changed.join(", "));
            }
        }
        _ if job.is_null() => println!("Nothing was running."),
        AgentCommand::Cancel => println!(
            "Cancelled the {} of {}: it continues when asked again",
            job["kind"].as_str().unwrap_or("job"),
            job["label"].as_str().unwrap_or("the recommended update")
        ),
        AgentCommand::Suspend => println!(
            "Suspended; the {} stopped and continues on `ferry agent resume`",
            job["kind"].as_str().unwrap_or("job")
        ),
        AgentCommand::Resume => println!("Resumed the {}", job["kind"].as_str().unwrap_or("job")),
    }
    if command == AgentCommand::Suspend && job.is_null() {
        println!("Suspended: the agent starts nothing until resumed.");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn progress(a: ProgressArgs) -> Result<ExitCode, Failure> {
    let json = a.device.json;
    let Some(client) = crate::local::agent(&a.device.device).await else {
        if a.follow {
            return Err(Failure::from(ferry_daemon::DaemonError::NotRunning {
                dir: a.device.device.clone(),
            })
            .json(json));
        }
        // Without an agent: where the install record says an install stands.
        let device = ferry_agent::device::Device::open(&a.device.device)
            .map_err(|e| Failure::from(e).json(json))?;
        let record = ferry_agent::install::update::install_record(&device);
        if json {
            println!(
                "{}",
                serde_json::json!({ "job": null, "progress": null, "install": record })
            );
        } else {
            match record {
                Some(r) => println!(
                    "No agent runs; an install of {} into slot {} stands at frame {}{}",
                    r.version,
                    r.slot,
                    r.frames_done,
                    if r.sealed.is_some() {
                        " (staged: downloaded, verified and sealed)"
                    } else {
                        ""
                    }
                ),
                None => println!("No agent runs and no install is in progress."),
            }
        }
        return Ok(ExitCode::SUCCESS);
    };
    if !a.follow {
        let answer = crate::local::call(&client, "/v1/progress", None, json).await?;
        if json {
            println!("{answer}");
        } else {
            match answer["progress"].as_object() {
                Some(_) => {
                    let sample: ferry_daemon::events::Sample =
                        crate::local::read(&answer, "/v1/progress", Some("progress"), json)?;
                    println!(
                        "[{:5.1}%] {:<20} {}",
                        sample.percent, sample.state, sample.action
                    );
                }
                None => println!("Nothing is in progress."),
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Follow: the bar from the live stream, until the job's update ends.
    let ui = Arc::new(ProgressUi::new(false));
    let mut events = client
        .events(u64::MAX)
        .await
        .map_err(|e| Failure::from(e).json(json))?;
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| Failure::from(e).json(json))?;
        if json {
            println!("{}", serde_json::to_string(&event).unwrap_or_default());
        }
        match event {
            Event::Progress { progress, .. } if !json => ui.report(&progress.to_progress()),
            Event::Transition { record, .. } if record.fsm == "update" => {
                let ended = matches!(
                    record.next.as_str(),
                    "STAGED" | "PRESTAGED" | "FAILED" | "PARKED" | "DROPPED"
                );
                if ended {
                    ui.finish();
                    if !json {
                        println!("update {}: {} ({})", record.id, record.next, record.e);
                    }
                    break;
                }
            }
            _ => {}
        }
    }
    ui.finish();
    Ok(ExitCode::SUCCESS)
}
