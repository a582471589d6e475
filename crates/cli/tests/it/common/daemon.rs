//! The daemon in tests: a `ferry agent` child for one device, one request over its
//! socket, and the device's `[policy]` and simulated facts.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Stdio};

use super::{ferry, ok, s, wait_for};

/// A `ferry agent` child for one device; killed when dropped.
pub struct Agent {
    pub child: Child,
}

impl Agent {
    /// Starts the agent and waits until its socket answers.
    pub fn start(device: &Path) -> Agent {
        let child = ferry()
            .args(["agent", "--device", s(device)])
            .env("FERRY_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ferry agent");
        let agent = Agent { child };
        assert!(
            wait_for(30, || api(device, "GET", "/v1/hello", "").is_some()),
            "the agent did not answer on its socket"
        );
        agent
    }

    pub fn signal(&mut self, signal: i32) {
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().expect("wait for the agent")
    }

    /// SIGTERM, and the clean exit it must give.
    pub fn stop(mut self) {
        self.signal(libc::SIGTERM);
        let status = self.wait();
        assert!(
            status.success(),
            "the agent did not stop cleanly: {status:?}"
        );
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request over the device's socket; the JSON body of a 2xx answer.
pub fn api(device: &Path, method: &str, path: &str, body: &str) -> Option<serde_json::Value> {
    let (status, body) = api_call(device, method, path, body)?;
    (200..300).contains(&status).then_some(body)
}

/// One HTTP/1.1 request over the device's socket: the status and the JSON body.
pub fn api_call(
    device: &Path,
    method: &str,
    path: &str,
    body: &str,
) -> Option<(u16, serde_json::Value)> {
    let mut stream = UnixStream::connect(device.join("agent.sock")).ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: agent\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, rest) = answer.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    // axum answers with a content-length (no chunking) for JSON.
    Some((status, serde_json::from_str(rest).ok()?))
}

/// Replaces the device's `[policy]` with `policy` (TOML, `[policy]` and its tables) and
/// makes its background scans every 2 s.
pub fn set_policy(device: &Path, policy: &str) {
    let config = device.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.split("\n[policy").next().unwrap().to_owned();
    let text = text.replace("check_interval_secs = 21600", "check_interval_secs = 2");
    std::fs::write(&config, format!("{text}\n{policy}")).unwrap();
}

/// Writes the simulated device's `facts.toml`.
pub fn set_facts(device: &Path, facts: &str) {
    std::fs::write(device.join("facts.toml"), facts).unwrap();
}

/// The state the last `update` record left its update in.
pub fn update_state(device: &Path) -> Option<String> {
    update_records(device)
        .last()
        .and_then(|r| r["next"].as_str().map(str::to_owned))
}

/// The state of update `id` (its UUID), from the journal.
pub fn update_state_of(device: &Path, id: &str) -> Option<String> {
    update_records(device)
        .iter()
        .rev()
        .find(|r| r["id"] == id)
        .and_then(|r| r["next"].as_str().map(str::to_owned))
}

fn update_records(device: &Path) -> Vec<serde_json::Value> {
    ok(&[
        "log",
        "show",
        "--json",
        "--fsm",
        "update",
        "--device",
        s(device),
    ])
    .lines()
    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
    .collect()
}

/// The agent installs and restarts on its own, in a one-hour window opening
/// `offset_hours` from now.
pub fn set_unattended_policy(device: &Path, offset_hours: i64) {
    set_policy(
        device,
        &format!(
            "[policy]\nauto_install = true\nauto_restart = true\n{}",
            window_from_now(offset_hours)
        ),
    );
}

/// A window of one hour that opens `offset_hours` from now (UTC).
pub fn window_from_now(offset_hours: i64) -> String {
    let start = chrono::Utc::now() + chrono::Duration::hours(offset_hours);
    let end = start + chrono::Duration::hours(1);
    format!(
        "[policy.window]\nstart = \"{}\"\nend = \"{}\"\ntime_zone = \"UTC\"\n",
        start.format("%H:%M"),
        end.format("%H:%M")
    )
}
