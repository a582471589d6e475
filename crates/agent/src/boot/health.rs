//! Health-gated commit: the device's own checks (commands from `config.toml`) run at
//! boot before a new slot is marked good; any failure rolls back.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::AgentError;

/// Longest a single health check may run.
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs each command with `sh -c`, with `FERRY_SLOT`, `FERRY_VERSION` and
/// `FERRY_DEVICE` set; the first that fails (non-zero exit or timeout) is the error.
pub fn run_checks(
    commands: &[String],
    slot: &str,
    version: &str,
    device_dir: &Path,
) -> Result<(), AgentError> {
    run_checks_within(commands, slot, version, device_dir, CHECK_TIMEOUT)
}

/// [`run_checks`] with each command given at most `timeout` (the doctor's is short).
pub fn run_checks_within(
    commands: &[String],
    slot: &str,
    version: &str,
    device_dir: &Path,
    timeout: Duration,
) -> Result<(), AgentError> {
    for command in commands {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .env("FERRY_SLOT", slot)
            .env("FERRY_VERSION", version)
            .env("FERRY_DEVICE", device_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(AgentError::io("starting a health check", device_dir))?;
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child
                .try_wait()
                .map_err(AgentError::io("waiting for a health check", device_dir))?
            {
                break Some(status);
            }
            if started.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        if let Some(mut err) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut err, &mut stderr);
        }
        let outcome = match status {
            Some(s) if s.success() => continue,
            Some(s) => format!("exited with {s}"),
            None => format!("did not finish within {}s", timeout.as_secs()),
        };
        let tail: String = stderr
            .trim()
            .chars()
            .rev()
            .take(200)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(AgentError::HealthCheckFailed {
            command: command.clone(),
            outcome,
            stderr: tail,
        });
    }
    Ok(())
}
