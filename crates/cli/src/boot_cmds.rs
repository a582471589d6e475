//! `ferry reboot` and `ferry boot-check`: the simulated restart and the check a real device
//! runs at boot, through the running agent when there is one.

use std::process::ExitCode;

use ferry_agent::boot::reboot as agent_reboot;

use crate::args::{DeviceArgs, RebootArgs};
use crate::failure::Failure;
use crate::local::{deliver_queued, open};

pub(crate) fn print_reboot(outcome: &agent_reboot::RebootOutcome, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(outcome).unwrap_or_default()
        );
        return;
    }
    match (&outcome.tried, &outcome.failure) {
        (Some(slot), None) => println!(
            "Restarted into slot {slot}: now running {}.",
            outcome.version
        ),
        (Some(slot), Some(f)) if f.code == "BOOT_CRASHED" => {
            println!(
                "Restarted into slot {slot}, which crashed before its boot check: {} [{}]",
                f.cause, f.code
            );
        }
        (Some(slot), Some(f)) => {
            println!(
                "Restarted, but slot {slot} failed its check and was abandoned: {} [{}]",
                f.cause, f.code
            );
            println!(
                "Fell back to slot {}: still running {}.",
                outcome.running, outcome.version
            );
        }
        (None, _) if outcome.fell_back.is_none() => println!(
            "Restarted slot {}: running {}.",
            outcome.running, outcome.version
        ),
        (None, _) => {}
    }
    if let Some(fell_back) = &outcome.fell_back {
        println!(
            "Slot {} failed its check at boot and is no longer good: {} [{}]",
            fell_back.from, fell_back.failure.cause, fell_back.failure.code
        );
        println!(
            "Fell back to slot {}: now running {}; the next install rewrites slot {}.",
            outcome.running, outcome.version, fell_back.from
        );
    }
}

/// The simulated restart, played by the running agent.
pub(crate) async fn reboot_through(
    agent: &ferry_daemon::client::Client,
    simulate_crash: bool,
    json: bool,
) -> Result<agent_reboot::RebootOutcome, Failure> {
    let body = serde_json::json!({ "simulate_crash": simulate_crash });
    crate::local::ask(agent, "/v1/reboot", Some(body), Some("rebooted"), json).await
}

pub async fn reboot(r: RebootArgs) -> Result<ExitCode, Failure> {
    let a = r.device;
    let outcome = match crate::local::agent(&a.device).await {
        Some(agent) => reboot_through(&agent, r.simulate_crash, a.json).await?,
        None => {
            let device = open(&a)?;
            let outcome = agent_reboot::reboot(&device, r.simulate_crash);
            // A crash before the boot check is a system that never came up: it reports
            // nothing.
            let crashed = outcome
                .as_ref()
                .is_ok_and(|o| o.failure.as_ref().is_some_and(|f| f.code == "BOOT_CRASHED"));
            if !crashed {
                deliver_queued(&device).await;
            }
            outcome.map_err(|e| Failure::from(e).json(a.json))?
        }
    };
    print_reboot(&outcome, a.json);
    // A fall-back is a failure; a crash the caller asked to simulate is not.
    let fell_back = outcome.fell_back.is_some()
        || outcome
            .failure
            .as_ref()
            .is_some_and(|f| f.code != "BOOT_CRASHED");
    Ok(if fell_back {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub async fn boot_check(a: DeviceArgs) -> Result<ExitCode, Failure> {
    let running = match crate::local::agent(&a.device).await {
        Some(agent) => {
            let body = Some(serde_json::json!({}));
            crate::local::ask(&agent, "/v1/boot-check", body, Some("slot"), a.json).await?
        }
        None => {
            let device = open(&a)?;
            deliver_queued(&device).await;
            let running = device
                .running_slot()
                .map_err(|e| Failure::from(e).json(a.json))?;
            agent_reboot::boot_check(&device, running)
                .map_err(|e| Failure::from(e).json(a.json))?;
            running
        }
    };
    if a.json {
        println!("{}", serde_json::json!({ "slot": running, "ok": true }));
    } else {
        println!("slot {running} verified");
    }
    Ok(ExitCode::SUCCESS)
}
