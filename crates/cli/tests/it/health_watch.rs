//! Issue 16, the post-commit health watch, with a real daemon and server on loopback: after
//! the commit `ferry agent` keeps running the device's health checks for
//! `post_commit_watch`; a check that fails inside it is reported (`health_failed`,
//! `HEALTH_WATCH_FAILED`) and reaches the server, even across a restart of the daemon
//! (the deadline is durable); a watch whose checks pass ends silently.

use std::path::Path;

use crate::common::*;
use serde_json::Value;

/// The device's health check fails once the file `unwell` exists in its directory.
const CHECK: &str = "test ! -e \"$FERRY_DEVICE/unwell\"";

/// Puts `post_commit_watch = watch` and a 1 s check interval at the top of `config.toml`.
fn watch_for(device: &Path, watch: &str) {
    let config = device.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("post_commit_watch = \"{watch}\"\npost_commit_check_every = \"1s\"\n{text}"),
    )
    .unwrap();
}

fn reported(data: &Path, device: &Path, event: &str) -> Option<Value> {
    server_reports(data, device)
        .into_iter()
        .find(|r| r["event"] == event)
}

/// The states the `health_watch` records of the journal entered, in order.
fn watch_states(device: &Path) -> Vec<String> {
    ok(&[
        "log",
        "show",
        "--json",
        "--fsm",
        "health_watch",
        "--device",
        s(device),
    ])
    .lines()
    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
    .filter_map(|r| r["next"].as_str().map(str::to_owned))
    .collect()
}

/// Installs 2.0 and restarts into it through the running agent: committed, so watched.
fn install_and_commit(device: &Path) {
    ok(&["install", "vm-2.0", "--device", s(device)]);
    ok(&["reboot", "--device", s(device)]);
    assert_eq!(status(device)["version"], "2.0");
}

#[test]
fn a_check_failing_after_the_commit_is_reported_even_across_a_restart_of_the_agent() {
    let fleet = fleet_with(2, &["--health-check", CHECK], |server| server.url());
    let (device, data) = (&fleet.device, &fleet.server.data);
    watch_for(device, "5m");
    let agent = Agent::start(device);
    install_and_commit(device);
    let file = device.join("boot/health-watch.json");
    assert!(file.exists(), "the commit did not start a watch");
    assert!(
        wait_for(20, || watch_states(device) == ["WATCHING"]),
        "{:?}",
        watch_states(device)
    );
    let until = std::fs::read_to_string(&file).unwrap();
    // The agent stops mid-watch; the next one continues the same watch to the same deadline.
    agent.stop();
    let _agent = Agent::start(device);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), until);
    assert_eq!(
        watch_states(device),
        ["WATCHING"],
        "a passing check ended it"
    );
    assert!(reported(data, device, "health_failed").is_none());

    std::fs::write(device.join("unwell"), "").unwrap();
    assert!(
        wait_for(30, || reported(data, device, "health_failed").is_some()),
        "no health_failed report reached the server: {:?}",
        server_reports(data, device)
            .iter()
            .map(|r| r["event"].clone())
            .collect::<Vec<_>>()
    );
    let report = reported(data, device, "health_failed").unwrap();
    assert_eq!(report["error"]["code"], "HEALTH_WATCH_FAILED", "{report}");
    assert_eq!(report["target_os_version"], "2.0", "{report}");
    // The update is described as it was (1.0 → 2.0, major), not as a reinstall of 2.0.
    assert_eq!(report["current_os_version"], "2.0", "{report}");
    assert_eq!(report["current_base_os_version"], "1.0", "{report}");
    assert_eq!(report["update_type"], "major", "{report}");
    assert_eq!(report["payload"]["kind"], "full", "{report}");
    assert_eq!(report["result"], "failure");
    let cause = report["error"]["cause"].as_str().unwrap();
    assert!(
        cause.contains("2.0 was committed") && cause.contains("unwell"),
        "{cause}"
    );
    assert_eq!(watch_states(device), ["WATCHING", "UNHEALTHY"]);
    assert!(!file.exists());
    // The device keeps running the release (the watch reports, it does not roll back).
    assert_eq!(status(device)["version"], "2.0");
    let fleet_view: Value =
        serde_json::from_str(&ok(&["server", "fleet", "--data", s(data), "--json"])).unwrap();
    assert!(fleet_view.to_string().contains("unhealthy"), "{fleet_view}");
}

#[test]
fn a_watch_whose_checks_pass_ends_silently() {
    let fleet = fleet_with(2, &["--health-check", CHECK], |server| server.url());
    let (device, data) = (&fleet.device, &fleet.server.data);
    watch_for(device, "3s");
    let _agent = Agent::start(device);
    install_and_commit(device);
    assert!(
        wait_for(30, || watch_states(device) == ["WATCHING", "PASSED"]),
        "{:?}",
        watch_states(device)
    );
    assert!(!device.join("boot/health-watch.json").exists());
    // The commit reached the server; no health report did.
    assert!(wait_for(30, || reported(data, device, "committed").is_some()));
    assert!(reported(data, device, "health_failed").is_none());
}

#[test]
fn without_post_commit_watch_a_commit_starts_no_watch() {
    let fleet = fleet_with(2, &["--health-check", CHECK], |server| server.url());
    let device = &fleet.device;
    let _agent = Agent::start(device);
    install_and_commit(device);
    std::fs::write(device.join("unwell"), "").unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(!device.join("boot/health-watch.json").exists());
    assert!(watch_states(device).is_empty());
}
