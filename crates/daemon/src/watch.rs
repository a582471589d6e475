//! The daemon's half of the post-commit health watch ([`ferry_agent::boot::watch`]): while
//! a watch is under way (`boot/health-watch.json`, written at the commit), the device's
//! health checks run every `post_commit_check_every` until its deadline; the first that
//! fails ends the watch Unhealthy (its `health_failed` report queued and sent at once), a
//! watch that runs out ends silently. A restarted daemon finds the file and goes on to the
//! same deadline. The journal is taken only to journal a step, never across a check.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ferry_agent::boot::watch::{self, Verdict, Watch};
use ferry_types::Diagnose;

use crate::agent::Agent;

/// How long the loop sleeps when no watch is under way and nothing woke it (a commit wakes
/// it at once).
const IDLE_RECHECK: Duration = Duration::from_secs(60);

/// Runs watches until `shutdown` changes.
pub async fn run(agent: Arc<Agent>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    // The check is due now for a watch found at start (the commit may be long past).
    let mut next_at = Utc::now();
    let mut watched: Option<uuid::Uuid> = None;
    loop {
        let wait = match turn(&agent, &mut next_at, &mut watched).await {
            Ok(Some(wait)) => wait,
            Ok(None) => IDLE_RECHECK,
            Err(error) => {
                tracing::warn!(code = error.code(), "the post-commit health watch: {error}");
                IDLE_RECHECK
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = agent.watch_wake.notified() => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

/// One turn: the watch under way (if any) is checked when due and ended when its verdict
/// says so; returns how long to sleep (`None`: no watch).
async fn turn(
    agent: &Arc<Agent>,
    next_at: &mut chrono::DateTime<Utc>,
    watched: &mut Option<uuid::Uuid>,
) -> Result<Option<Duration>, ferry_agent::AgentError> {
    let device = agent.device();
    let Some(watch) = watch::pending(&device)? else {
        *watched = None;
        return Ok(None);
    };
    if *watched != Some(watch.update) {
        // A new watch (or the one found at start): its first check is one interval after
        // the commit, or now if that is past.
        *watched = Some(watch.update);
        *next_at = watch.committed_at + chrono::Duration::seconds(watch.every_secs as i64);
        let started = agent
            .with_journal(|journal| watch::resume(&device, journal, &watch).map(|i| i.is_some()))
            .await?;
        if !started {
            return Ok(None);
        }
        tracing::info!(version = %watch.version, until = %watch.until, "post-commit health watch under way");
    }
    let now = Utc::now();
    if now < *next_at && now < watch.until {
        return Ok(Some(until(*next_at)));
    }
    let check = if now < watch.until {
        Some(run_check(&device, &watch).await)
    } else {
        None
    };
    let running = device.boot_state()?.primary();
    let verdict = watch::verdict(&watch, Utc::now(), running, check);
    if let Verdict::Again(at) = verdict {
        *next_at = at;
        return Ok(Some(until(at)));
    }
    match &verdict {
        Verdict::Unhealthy(report) => {
            tracing::warn!(code = report.code, version = %watch.version, "{}", report.cause)
        }
        _ => {
            tracing::info!(version = %watch.version, "post-commit health watch ended without a failure")
        }
    }
    agent
        .with_journal(|journal| watch::end(&device, journal, &watch, verdict))
        .await?;
    *watched = None;
    agent.wake_up(); // deliver the report now
    Ok(None)
}

/// The device's checks, off the runtime (each may take up to a minute).
async fn run_check(
    device: &Arc<ferry_agent::device::Device>,
    watch: &Watch,
) -> Result<(), ferry_agent::AgentError> {
    let (device, watch) = (device.clone(), watch.clone());
    match tokio::task::spawn_blocking(move || watch::check(&device, &watch)).await {
        Ok(result) => result,
        // The check's thread panicked: no verdict this turn; the next turn checks again.
        Err(_) => Ok(()),
    }
}

fn until(at: chrono::DateTime<Utc>) -> Duration {
    (at - Utc::now()).to_std().unwrap_or_default()
}
