//! The ferry device daemon (`ferry agent`): the one process that runs a device's state
//! machines, on its own schedule and at its clients' request.
//!
//! It holds the device lock and the device's journal for its whole life; it scans the
//! signed catalog every `check_interval_secs` (with jitter, back-off and the server's
//! `Retry-After`), stages the offered update and installs it as `[policy]` allows
//! (automatic download and install, the maintenance window in the device's time zone,
//! the preconditions of `ferry_agent::policy`), and answers a local API over
//! `DEVICE/agent.sock` ([`api`]) that every device command uses while it runs, with a
//! live, sequence-numbered event stream ([`events`]). It speaks systemd's notify
//! protocol ([`notify`]): READY once the socket answers, WATCHDOG while the schedule
//! runs, STOPPING on SIGTERM, after which the running download stops at its next
//! checkpoint and the next start resumes it.
//!
//! After each commit it keeps running the device's health checks for `post_commit_watch`
//! ([`watch`]): a failure then is reported and counts against the release's rollout.
//!
//! Modules: [`error`]; [`window`] and [`schedule`] (pure decisions); [`events`];
//! [`agent`] (the device held, the jobs, the schedule); [`watch`] (the post-commit health
//! watch); [`api`] and [`client`] (the local API's two ends); [`notify`].
//!
//! Tests: `cargo test -p ferry-daemon` runs the pure parts; `crates/cli/tests/it/daemon.rs`
//! runs the daemon as a child process against a real server on loopback.
#![deny(missing_docs)]

pub mod agent;
pub mod api;
pub mod client;
pub mod error;
pub mod events;
pub mod explain;
pub mod notify;
pub mod schedule;
pub mod watch;
pub mod window;

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ferry_types::Diagnose;
use serde_json::{Value, json};

pub use error::DaemonError;

/// `ferry status --json`: the device's status, its last scan, and (when a daemon runs)
/// the agent's own state. Both ways of running a command print this shape.
pub fn status_view(
    status: &ferry_agent::status::Status,
    last_scan: Option<ferry_agent::trust::catalog::LastScan>,
    agent: Option<agent::AgentState>,
) -> Value {
    let mut view = json!(status);
    view["last_scan"] = json!(last_scan);
    view["agent"] = json!(agent);
    view
}

/// Runs the daemon for the device at `dir` until `shutdown` resolves (SIGTERM).
pub async fn run(dir: &Path, shutdown: impl Future<Output = ()>) -> Result<(), DaemonError> {
    let agent = agent::Agent::open(dir).await?;
    let socket = agent.device().layout().agent_socket();
    let socket_error = |op| {
        let path = socket.clone();
        move |source| DaemonError::Socket { op, path, source }
    };
    // We hold the device lock: a socket file left behind is a dead agent's.
    match std::fs::remove_file(&socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(socket_error("removing a stale socket")(e));
        }
        _ => {}
    }
    let listener = tokio::net::UnixListener::bind(&socket).map_err(socket_error("binding"))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o660))
        .map_err(socket_error("setting its mode to 0660"))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = {
        let mut stop = stop_rx.clone();
        axum::serve(listener, api::router(agent.clone())).with_graceful_shutdown(async move {
            let _ = stop.changed().await;
        })
    };
    let server = tokio::spawn(async move { server.await });
    let schedule = tokio::spawn(agent.clone().schedule(stop_rx.clone()));
    let health_watch = tokio::spawn(watch::run(agent.clone(), stop_rx.clone()));
    let watchdog = notify::watchdog_interval().map(|every| {
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            loop {
                notify::notify("WATCHDOG=1");
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    _ = stop.changed() => return,
                }
            }
        })
    });
    // SIGHUP reads config.toml again, as `POST /v1/reload` does.
    let hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Err(error) => {
            tracing::warn!(%error, "no SIGHUP handler; reload with `ferry agent reload`");
            None
        }
        Ok(mut hup) => {
            let agent = agent.clone();
            let mut stop = stop_rx.clone();
            Some(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = hup.recv() => match agent.reload() {
                            Ok(answer) => tracing::info!(changed = %answer["changed"], "config.toml reloaded"),
                            Err(error) => tracing::warn!(code = error.code(), "the reload was refused: {error}"),
                        },
                        _ = stop.changed() => return,
                    }
                }
            }))
        }
    };
    notify::notify("READY=1");
    tracing::info!(socket = %socket.display(), "ferry agent ready");
    shutdown.await;
    notify::notify("STOPPING=1");
    tracing::info!("ferry agent stopping");
    let _ = stop_tx.send(true);
    agent.shut_down().await;
    let _ = schedule.await;
    let _ = health_watch.await;
    if let Some(hangup) = hangup {
        let _ = hangup.await;
    }
    if let Some(watchdog) = watchdog {
        let _ = watchdog.await;
    }
    // Streams stay open until their clients go; do not wait for them.
    server.abort();
    if let Err(error) = std::fs::remove_file(&socket) {
        tracing::warn!(code = "AGENT_SOCKET", %error, "could not remove the socket");
    }
    Ok(())
}
