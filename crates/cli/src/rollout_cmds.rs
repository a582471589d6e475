//! `ferry rollout create|list|show|pause|resume|halt|explain`: rollouts read and written in
//! the data directory's database directly (like `ferry server fleet`), so they work whether
//! or not the server runs; a running server sees each change at its next ticket request.

use std::process::ExitCode;

use ferry_server::fleet::time_of;
use ferry_server::rollouts::{Action, Explanation, NewRollout, Rollout, RolloutView};
use ferry_types::DeviceId;

use crate::args::{RolloutAction, RolloutArgs};
use crate::failure::Failure;

pub async fn rollout(a: RolloutArgs) -> Result<ExitCode, Failure> {
    let json = a.json;
    let fail = |e: ferry_server::ServerError| Failure::from(e).json(json);
    let db =
        &crate::server_cmds::open_database("rollout", a.data, a.database.as_deref(), json).await?;
    let act = |id, action| async move { db.act_on_rollout(id, action).await };
    match a.action {
        RolloutAction::Create {
            class,
            version,
            audience,
            cohort,
            waves,
            deadline,
            max_deferral,
            emergency,
            threshold,
            min_attempts,
        } => {
            let new = NewRollout {
                class,
                version,
                audience,
                cohort,
                deadline,
                max_deferral,
                emergency,
                waves: Some(waves),
                threshold: Some(threshold),
                min_attempts: Some(min_attempts),
            };
            let rollout = db.create_rollout(&new).await.map_err(fail)?;
            print_one(&rollout, json);
        }
        RolloutAction::List => {
            let rollouts = db.rollouts().await.map_err(fail)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&rollouts).unwrap_or_default()
                );
            } else {
                println!(
                    "{:<4} {:<10} {:<9} {:<9} {:<24} Waves",
                    "Id", "Class", "Version", "State", "Cohort"
                );
                for r in &rollouts {
                    println!(
                        "{:<4} {:<10} {:<9} {:<9} {:<24} {}",
                        r.id,
                        r.class,
                        r.version,
                        r.state.as_str(),
                        r.selector().to_string(),
                        r.waves
                    );
                }
            }
        }
        RolloutAction::Show { id } => {
            let view = db.rollout_view(id).await.map_err(fail)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&view).unwrap_or_default()
                );
            } else {
                print_view(&view);
            }
        }
        RolloutAction::Pause { id } => {
            print_one(&act(id, Action::Pause).await.map_err(fail)?, json)
        }
        RolloutAction::Resume { id } => {
            print_one(&act(id, Action::Resume).await.map_err(fail)?, json)
        }
        RolloutAction::Halt { id } => print_one(&act(id, Action::Halt).await.map_err(fail)?, json),
        RolloutAction::Explain { device } => {
            let explained = db.explain(&device).await.map_err(fail)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&explained).unwrap_or_default()
                );
            } else {
                print_explanations(&device, &explained);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `rollout explain DEVICE` in words: one line per rollout of the device's class.
pub fn print_explanations(device: &DeviceId, explained: &[Explanation]) {
    if explained.is_empty() {
        println!(
            "no rollout covers device {device}'s class: every release it is offered is open to it"
        );
    }
    for e in explained {
        match (e.rollout_id, e.wave, e.place) {
            (Some(id), Some(wave), Some(place)) => println!(
                "rollout {id} ({}): {} — {} (wave {wave}, place {place})",
                e.version, e.code, e.reason
            ),
            _ => println!("release {}: {} — {}", e.version, e.code, e.reason),
        }
    }
}

/// One rollout: its JSON, or a line in words.
pub fn print_one(rollout: &Rollout, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(rollout).unwrap_or_default()
        );
    } else {
        println!(
            "rollout {}: {} {} {} (waves {}, halt above {} with at least {} attempts)",
            rollout.id,
            rollout.class,
            rollout.version,
            rollout.state.as_str(),
            rollout.waves,
            rollout.threshold,
            rollout.min_attempts
        );
        if rollout.emergency {
            println!("  emergency: every wave open at once, no deferral");
        }
        if let Some(deadline) = rollout.deadline_ms {
            println!("  deadline: {} UTC", when(deadline));
        }
        if let Some(max) = rollout.max_deferral_ms {
            println!("  a device may defer it up to {} s", max / 1000);
        }
    }
}

fn when(ms: i64) -> String {
    time_of(ms).map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// `rollout show ID` in words: the rollout, its waves with counters, its changes.
pub fn print_view(view: &RolloutView) {
    print_one(&view.rollout, false);
    let cohort = view.rollout.selector();
    println!(
        "  cohort: {}",
        if cohort.is_all() {
            "every device of the class".to_owned()
        } else {
            cohort.to_string()
        }
    );
    println!(
        "\n{:<5} {:<8} {:<6} {:<20} {:<9} {:<9} Wilson lower bound",
        "Wave", "Share", "Open", "Opens/opened (UTC)", "Attempts", "Failures"
    );
    for w in &view.wave_counts {
        println!(
            "{:<5} {:<8} {:<6} {:<20} {:<9} {:<9} {:.3}",
            w.wave,
            format!("{}%", w.percent),
            if w.open { "yes" } else { "no" },
            w.opens_at.format("%Y-%m-%d %H:%M:%S"),
            w.attempts,
            w.failures,
            w.lower_bound
        );
    }
    if !view.changes.is_empty() {
        println!("\nChanges:");
        for c in &view.changes {
            println!(
                "  {} {} by {}{}",
                when(c.at_ms),
                c.action,
                c.by,
                c.reason
                    .as_deref()
                    .map_or_else(String::new, |r| format!(": {r}"))
            );
        }
    }
}
