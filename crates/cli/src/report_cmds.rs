//! What a device reports: `ferry status`, `ferry history` and `ferry deliver` (its queued
//! event reports sent to the server).

use std::process::ExitCode;

use ferry_agent::status as agent_status;
use ferry_agent::trust::catalog;

use crate::args::{DeliverArgs, DeviceArgs};
use crate::failure::Failure;
use crate::local::open;
use crate::render;

/// `status --json` read back: the device's status, the last scan, the agent's state.
#[derive(serde::Deserialize)]
struct StatusView {
    #[serde(flatten)]
    status: agent_status::Status,
    last_scan: Option<catalog::LastScan>,
    agent: Option<serde_json::Value>,
}

pub async fn status(a: DeviceArgs) -> Result<ExitCode, Failure> {
    let value = match crate::local::agent(&a.device).await {
        Some(agent) => crate::local::call(&agent, "/v1/status", None, a.json).await?,
        None => {
            let device = open(&a)?;
            let s = agent_status::status(&device).map_err(|e| Failure::from(e).json(a.json))?;
            ferry_daemon::status_view(&s, catalog::last_scan(&device.dir), None)
        }
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let view: StatusView = crate::local::read(&value, "/v1/status", None, a.json)?;
    let (s, last_scan) = (view.status, view.last_scan);
    println!(
        "device {} ({}), audience {}, server {}",
        s.identity.device_id, s.identity.device_class, s.audience, s.server
    );
    println!(
        "running {} on slot {}; next boot: slot {}",
        s.version, s.running_slot, s.next_boot
    );
    for slot in &s.slots {
        let content = slot.content.as_ref().map_or("empty".to_owned(), |c| {
            format!("{} ({})", c.version, c.build_id)
        });
        let mut flags = Vec::new();
        if slot.running {
            flags.push("running".to_owned());
        }
        if slot.good {
            flags.push("good".to_owned());
        }
        if let Some(t) = slot.tries_left {
            flags.push(format!("on trial, {t} tries left"));
        }
        println!("  slot {}: {content} [{}]", slot.slot, flags.join(", "));
    }
    if let Some(f) = &s.last_boot_failure {
        println!(
            "last boot failure: slot {} at {}: {} [{}]",
            f.slot, f.at, f.message, f.code
        );
    }
    match &last_scan {
        Some(scan) => println!(
            "last scan: {} ({}), {} offer{}",
            scan.at.format("%Y-%m-%d %H:%M:%S UTC"),
            scan.result,
            scan.n_offers,
            if scan.n_offers == 1 { "" } else { "s" }
        ),
        None => println!("last scan: never"),
    }
    if let Some(p) = &s.install_in_progress {
        println!(
            "install in progress: {} into slot {}, {} frames done (run install again to resume)",
            p.version, p.slot, p.frames_done
        );
    }
    match &view.agent {
        None => println!("agent: not running"),
        Some(agent) => {
            println!(
                "agent: running (pid {}){}{}",
                agent["pid"],
                if agent["suspended"] == true {
                    ", suspended"
                } else {
                    ""
                },
                agent["job"]["kind"]
                    .as_str()
                    .map(|k| format!(", {k} under way"))
                    .unwrap_or_default()
            );
            for offer in agent["offers"].as_array().into_iter().flatten() {
                match render::why_not_now(offer) {
                    Some((code, cause)) => println!(
                        "  offer {}: not now [{code}]: {cause}",
                        offer["label"].as_str().unwrap_or_default(),
                    ),
                    None => println!(
                        "  offer {}: next {}",
                        offer["label"].as_str().unwrap_or_default(),
                        offer["next"].as_str().unwrap_or_default()
                    ),
                }
            }
        }
    }
    print_outbox(&s.events);
    Ok(ExitCode::SUCCESS)
}

/// The outbox in `ferry status`: what is queued, what was dropped, how delivery goes.
fn print_outbox(o: &ferry_events::OutboxStatus) {
    let delivery = &o.state.delivery;
    if o.queued == 0 {
        print!("event reports: none queued");
    } else {
        print!(
            "event reports: {} queued ({} terminal, {})",
            o.queued,
            o.terminal,
            render::bytes(o.bytes)
        );
    }
    match &delivery.last_error {
        Some(e) => println!(
            "; last delivery failed [{}]: {}{}",
            e.code,
            e.cause,
            delivery
                .next_attempt
                .map(|t| format!("; next attempt after {}", t.format("%H:%M:%S UTC")))
                .unwrap_or_default()
        ),
        None => println!(
            "; {} delivered{}",
            delivery.delivered,
            delivery
                .last_success
                .map(|t| format!(", last at {}", t.format("%Y-%m-%d %H:%M:%S UTC")))
                .unwrap_or_default()
        ),
    }
    if let Some(since) = o.state.full_since {
        println!(
            "event outbox FULL since {}: {} progress and {} step reports dropped (terminal reports are kept)",
            since.format("%Y-%m-%d %H:%M:%S UTC"),
            o.state.dropped_progress,
            o.state.dropped_steps
        );
    } else if o.state.dropped_progress + o.state.dropped_steps > 0 {
        println!(
            "event outbox was full before: {} progress and {} step reports dropped",
            o.state.dropped_progress, o.state.dropped_steps
        );
    }
}

/// `ferry deliver`: one delivery round, or rounds with the back-off for `--wait` seconds
/// until the outbox is empty. Exit 1 when reports remain queued.
pub async fn deliver(a: DeliverArgs) -> Result<ExitCode, Failure> {
    use ferry_agent::report::deliver as delivery;
    let json = a.device.json;
    let device = open(&a.device)?;
    let client = ferry_agent::client::Client::for_device(&device)
        .map_err(|e| Failure::from(e).json(json))?;
    let started = std::time::Instant::now();
    let deadline = a
        .wait
        .map(|secs| started + std::time::Duration::from_secs(secs));
    let mut total = delivery::DeliveryOutcome::default();
    loop {
        let round = delivery::deliver(&device, &client)
            .await
            .map_err(|e| Failure::from(e).json(json))?;
        total.delivered += round.delivered;
        total.duplicates += round.duplicates;
        total.remaining = round.remaining;
        total.failure = round.failure.clone();
        total.next_attempt = round.next_attempt;
        let Some(deadline) = deadline.filter(|_| round.remaining > 0) else {
            break;
        };
        let wait = round
            .next_attempt
            .and_then(|at| (at - chrono::Utc::now()).to_std().ok())
            .unwrap_or(std::time::Duration::from_millis(200));
        let now = std::time::Instant::now();
        if now >= deadline {
            break;
        }
        tokio::time::sleep(wait.min(deadline - now)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    if json {
        println!("{}", serde_json::json!({ "delivery": total, "secs": secs }));
    } else {
        println!(
            "delivered {} event report(s) ({} already on the server) in {secs:.2} s; {} queued",
            total.delivered, total.duplicates, total.remaining
        );
    }
    match (&total.failure, total.remaining) {
        (Some(failure), n) if n > 0 => Err(Failure {
            report: failure.clone(),
            data: None,
            json,
            diagnosis: None,
        }),
        _ => Ok(ExitCode::SUCCESS),
    }
}

pub async fn history(a: DeviceArgs) -> Result<ExitCode, Failure> {
    let receipts: Vec<ferry_agent::device::Receipt> = match crate::local::agent(&a.device).await {
        Some(agent) => crate::local::ask(&agent, "/v1/history", None, None, a.json).await?,
        None => {
            let device = open(&a)?;
            agent_status::history(&device).map_err(|e| Failure::from(e).json(a.json))?
        }
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&receipts).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<28} {:<10} {:<22} {:<5} {:<8} {:>12}",
        "Installed", "Version", "Build", "Slot", "Payload", "Downloaded"
    );
    for r in &receipts {
        println!(
            "{:<28} {:<10} {:<22} {:<5} {:<8} {:>12}",
            r.installed_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            r.version.to_string(),
            r.build_id,
            r.slot.to_string(),
            r.payload_kind,
            render::bytes(r.bytes_downloaded)
        );
    }
    Ok(ExitCode::SUCCESS)
}
