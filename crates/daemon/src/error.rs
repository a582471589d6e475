//! The daemon's errors: each with a stable code, a cause and a fix. An agent error is
//! wrapped whole and keeps its own.

use std::path::PathBuf;

use ferry_agent::AgentError;
use ferry_types::Diagnose;

/// Everything the daemon and its local API can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// What the agent crate reported.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// A second daemon for a device that already has one.
    #[error("a ferry agent already runs for the device at {}{}", dir.display(), pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    AlreadyRunning {
        /// The device directory.
        dir: PathBuf,
        /// The running agent's process id, when it answered.
        pid: Option<u32>,
    },
    /// A command that needs the daemon found none.
    #[error("no ferry agent runs for the device at {}", dir.display())]
    NotRunning {
        /// The device directory.
        dir: PathBuf,
    },
    /// The agent is suspended: it starts nothing until resumed.
    #[error("the ferry agent is suspended and starts nothing until it is resumed")]
    Suspended,
    /// The local socket could not be made, bound or used.
    #[error("the agent's socket {} failed while {op}: {source}", path.display())]
    Socket {
        /// What was being done.
        op: &'static str,
        /// The socket.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The daemon's answer is not what the local API says.
    #[error("the ferry agent answered {path} with something this ferry cannot read: {reason}")]
    Api {
        /// The route.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The maintenance window's time zone is not known.
    #[error("the maintenance window's time zone {name:?} cannot be used: {reason}")]
    TimeZone {
        /// The name in config.toml.
        name: String,
        /// What jiff said.
        reason: String,
    },
    /// A request the local API does not accept.
    #[error("the request is not valid: {reason}")]
    BadRequest {
        /// What is wrong.
        reason: String,
    },
    /// The restart command could not be run, or failed.
    #[error("the restart command `{command}` failed: {reason}")]
    RestartFailed {
        /// The command.
        command: String,
        /// What happened.
        reason: String,
    },
    /// A reload found `config.toml` invalid; the running config stays.
    #[error("the agent kept its running config because {} is not valid: {reason}", path.display())]
    ConfigInvalid {
        /// config.toml.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A reload found the slots or boot control changed, which a running agent cannot take.
    #[error("the agent kept its running config because {} changes the slots or the boot control, which only a restart can take", path.display())]
    ReloadNeedsRestart {
        /// config.toml.
        path: PathBuf,
    },
}

impl Diagnose for DaemonError {
    fn code(&self) -> &'static str {
        match self {
            DaemonError::Agent(e) => e.code(),
            DaemonError::AlreadyRunning { .. } => "AGENT_RUNNING",
            DaemonError::NotRunning { .. } => "AGENT_NOT_RUNNING",
            DaemonError::Suspended => "AGENT_SUSPENDED",
            DaemonError::Socket { .. } => "AGENT_SOCKET",
            DaemonError::Api { .. } => "AGENT_API",
            DaemonError::TimeZone { .. } => "WINDOW_TIME_ZONE",
            DaemonError::BadRequest { .. } => "BAD_REQUEST",
            DaemonError::RestartFailed { .. } => "RESTART_FAILED",
            DaemonError::ConfigInvalid { .. } => "CONFIG_INVALID",
            DaemonError::ReloadNeedsRestart { .. } => "RELOAD_NEEDS_RESTART",
        }
    }

    fn fix(&self) -> String {
        match self {
            DaemonError::Agent(e) => e.fix(),
            DaemonError::AlreadyRunning { .. } => {
                "Use the agent that runs (every ferry device command talks to it), or stop it first (systemctl stop ferry-agent)".into()
            }
            DaemonError::NotRunning { .. } => {
                "Start the agent (systemctl start ferry-agent, or ferry agent --device DIR)".into()
            }
            DaemonError::Suspended => "Run `ferry agent resume` first".into(),
            DaemonError::Socket { .. } => {
                "Check that the device directory is writable by the agent's user and that its filesystem supports Unix sockets".into()
            }
            DaemonError::Api { .. } => {
                "Run the same ferry version as the agent (restart the agent after an upgrade)".into()
            }
            DaemonError::TimeZone { .. } => {
                "Use an IANA time zone name (Europe/Berlin) in [policy.window] time_zone, or install the tz database (tzdata)".into()
            }
            DaemonError::BadRequest { .. } => "Send the body the local API documents (see README)".into(),
            DaemonError::RestartFailed { .. } => {
                "Fix restart_command in config.toml [policy] (it must restart the machine and exit 0), then `ferry agent reload`".into()
            }
            DaemonError::ConfigInvalid { .. } => {
                "Correct config.toml, then run `ferry agent reload` again (the agent runs on with its previous settings meanwhile)".into()
            }
            DaemonError::ReloadNeedsRestart { .. } => {
                "Restart the agent (systemctl restart ferry-agent) to use the new slots or boot control".into()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_daemon_error_keeps_the_contract() {
        let errors = [
            DaemonError::AlreadyRunning {
                dir: "/d".into(),
                pid: Some(7),
            },
            DaemonError::NotRunning { dir: "/d".into() },
            DaemonError::Suspended,
            DaemonError::Socket {
                op: "binding",
                path: "/d/agent.sock".into(),
                source: std::io::Error::other("x"),
            },
            DaemonError::Api {
                path: "/v1/status".into(),
                reason: "r".into(),
            },
            DaemonError::TimeZone {
                name: "Mars/Olympus".into(),
                reason: "unknown".into(),
            },
            DaemonError::BadRequest { reason: "r".into() },
            DaemonError::ConfigInvalid {
                path: "/d/config.toml".into(),
                reason: "r".into(),
            },
            DaemonError::ReloadNeedsRestart {
                path: "/d/config.toml".into(),
            },
            DaemonError::RestartFailed {
                command: "systemctl reboot".into(),
                reason: "it exited with exit status: 1".into(),
            },
        ];
        for e in &errors {
            let r = e.report();
            assert!(r.code.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
            assert!(!r.cause.ends_with('.') && !r.fix.ends_with('.'), "{r}");
            assert!(r.fix.starts_with(char::is_uppercase), "{r}");
        }
        let wrapped = DaemonError::from(AgentError::DeviceBusy { dir: "/d".into() });
        assert_eq!(wrapped.code(), "DEVICE_BUSY");
    }
}
