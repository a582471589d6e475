//! Issue 12, nobody typing: `ferry agent` takes a device from scan to a committed new
//! version on its own (the simulated restart on a simulated device; a restart command,
//! then the boot check at its next start, on a real one); `config.toml` changes apply on
//! SIGHUP and `ferry agent reload`; and the device commands that used to need the lock
//! (`list-full`, `reboot`, `boot-check`, `audience set`) go through the running agent.

use std::path::Path;
use std::time::Duration;

use crate::common::*;

/// The `scheduler` records of the device: (event, data) pairs.
fn scheduler_records(device: &Path) -> Vec<serde_json::Value> {
    ok(&[
        "log",
        "show",
        "--json",
        "--fsm",
        "scheduler",
        "--device",
        s(device),
    ])
    .lines()
    .filter_map(|l| serde_json::from_str(l).ok())
    .collect()
}

/// The jobs the agent started on its own, in order.
fn jobs_acted(device: &Path) -> Vec<String> {
    scheduler_records(device)
        .iter()
        .filter(|r| r["e"] == "Act")
        .map(|r| r["data"]["job"]["kind"].as_str().unwrap_or("?").to_owned())
        .collect()
}

fn committed(device: &Path, version: &str) -> bool {
    let st = status(device);
    st["version"] == version
        && st["slots"]
            .as_array()
            .is_some_and(|slots| slots.iter().all(|s| s["tries_left"].is_null()))
        && update_state(device).as_deref() == Some("COMMITTED")
}

#[test]
fn nobody_typing_the_agent_scans_stages_installs_restarts_and_commits() {
    let fleet = fleet(4, |server| server.url());
    let device = &fleet.device;
    set_unattended_policy(device, 0);
    let _agent = Agent::start(device);
    assert!(
        wait_for(90, || committed(device, "2.0")),
        "the agent did not bring the device to 2.0 on its own: {}",
        status(device)
    );
    assert_eq!(status(device)["running_slot"], "b");
    // A release published while the agent runs: the next scans find it.
    let v3 = fleet.root.join("v3.img");
    make_image(&v3, 3, 4);
    publish(&fleet.server.data, &v3, "3.0");
    assert!(
        wait_for(90, || committed(device, "3.0")),
        "the agent did not take 3.0 on its own: {}",
        status(device)
    );
    assert_eq!(status(device)["running_slot"], "a");
    assert_eq!(
        jobs_acted(device),
        [
            "download", "install", "restart", "download", "install", "restart"
        ],
        "each step once, started by the agent"
    );
    let history: serde_json::Value =
        serde_json::from_str(&ok(&["history", "--json", "--device", s(device)])).unwrap();
    let versions: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["version"].as_str())
        .collect();
    assert_eq!(versions, ["1.0", "2.0", "3.0"], "{history}");
    ok(&["log", "replay", "--device", s(device)]);
}

#[test]
fn the_agent_commits_the_slot_the_bootloader_booted_when_it_starts() {
    let fleet = fleet(2, |server| server.url());
    let device = &fleet.device;
    set_policy(device, "[policy]\nauto_download = false\n");
    ok(&["install", "vm-2.0", "--device", s(device)]);
    // The bootloader boots slot b (a try spent); the agent is the booted system.
    ok(&["reboot", "--simulate-crash", "--device", s(device)]);
    let st = status(device);
    assert!(st["slots"][1]["tries_left"].is_number(), "{st}");
    let _agent = Agent::start(device);
    assert!(committed(device, "2.0"), "{}", status(device));
    assert_eq!(status(device)["running_slot"], "b");

    // A slot that fails its check is abandoned at start, with the code.
    let fleet = crate::common::fleet(2, |server| server.url());
    let device = &fleet.device;
    set_policy(device, "[policy]\nauto_download = false\n");
    ok(&["install", "vm-2.0", "--device", s(device)]);
    ok(&["reboot", "--simulate-crash", "--device", s(device)]);
    let slot_b = device.join("slots/b.img");
    let mut bytes = std::fs::read(&slot_b).unwrap();
    bytes[4096 * 2 + 1] ^= 0x01;
    std::fs::write(&slot_b, &bytes).unwrap();
    let _agent = Agent::start(device);
    let st = status(device);
    assert_eq!(st["version"], "1.0", "{st}");
    assert_eq!(st["running_slot"], "a", "{st}");
    assert_eq!(st["last_boot_failure"]["code"], "SEAL_MISMATCH", "{st}");
    assert_eq!(update_state(device).as_deref(), Some("ROLLED_BACK"));
}

#[test]
fn a_restart_command_runs_once_and_the_next_start_commits() {
    let fleet = fleet(2, |server| server.url());
    let device = &fleet.device;
    let marker = fleet.root.join("restarts");
    set_policy(
        device,
        &format!(
            "[policy]\nauto_install = true\nauto_restart = true\nrestart_command = [\"sh\", \"-c\", \"echo restart >> {}\"]\n",
            marker.display()
        ),
    );
    let agent = Agent::start(device);
    assert!(
        wait_for(60, || marker.exists()),
        "the agent did not run its restart command: {}",
        status(device)
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "restart\n");
    let st = status(device);
    assert_eq!(
        (&st["version"], &st["next_boot"]),
        (&"1.0".into(), &"b".into())
    );
    let hold = &st["agent"]["offers"][0]["why_not_now"];
    assert_eq!(hold["code"], "RESTARTING", "{st}");
    // The machine goes down; its bootloader boots slot b; the agent starts again.
    agent.stop();
    ok(&["reboot", "--simulate-crash", "--device", s(device)]);
    let _agent = Agent::start(device);
    assert!(committed(device, "2.0"), "{}", status(device));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "restart\n",
        "restarted again after the commit"
    );
}

#[test]
fn config_changes_apply_on_reload_and_an_invalid_file_is_refused() {
    let fleet = fleet(2, |server| server.url());
    let device = &fleet.device;
    set_policy(device, "[policy]\nauto_download = false\n");
    let mut agent = Agent::start(device);
    let hold = || {
        status(device)["agent"]["offers"][0]["why_not_now"]["code"]
            .as_str()
            .map(str::to_owned)
    };
    assert!(wait_for(30, || hold().as_deref() == Some("AUTO_DOWNLOAD_OFF")));
    // An invalid file: refused with its code, the running config stays.
    set_policy(device, "[policy]\nauto_download = \"maybe\"\n");
    let out = run(&["agent", "reload", "--json", "--device", s(device)]);
    assert!(!out.status.success());
    assert_eq!(
        json_error_code(&out),
        "CONFIG_INVALID",
        "{}",
        text(&out.stdout)
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(hold().as_deref(), Some("AUTO_DOWNLOAD_OFF"));
    assert_eq!(update_state(device), None, "nothing was downloaded");
    // SIGHUP: the new policy stages the update.
    set_policy(device, "[policy]\nauto_download = true\n");
    agent.signal(libc::SIGHUP);
    assert!(
        wait_for(60, || update_state(device).as_deref() == Some("PRESTAGED")),
        "SIGHUP did not apply auto_download: {}",
        status(device)
    );
    // `ferry agent reload`: the new policy installs it.
    set_policy(device, "[policy]\nauto_install = true\n");
    let out = ok(&["agent", "reload", "--device", s(device)]);
    assert_eq!(out.trim(), "Reloaded config.toml: policy changed");
    assert!(
        wait_for(60, || status(device)["next_boot"] == "b"),
        "the reload did not apply auto_install: {}",
        status(device)
    );
    let reloads = scheduler_records(device)
        .iter()
        .filter(|r| r["e"] == "Reload")
        .count();
    assert_eq!(
        reloads, 2,
        "each reload is journaled, the refused one is not"
    );
}

#[test]
fn list_full_reboot_boot_check_and_audience_set_go_through_the_agent() {
    let fleet = fleet(2, |server| server.url());
    let device = &fleet.device;
    set_policy(device, "[policy]\nauto_download = false\n");
    let dev = s(device);
    let agent = Agent::start(device);
    let full_via_agent = ok(&["list-full", "--json", "--device", dev]);
    assert!(full_via_agent.contains("vm-2.0"), "{full_via_agent}");
    assert_eq!(
        ok(&["audience", "set", "beta", "--device", dev]).trim(),
        "audience: customer -> beta"
    );
    assert_eq!(status(device)["audience"], "beta");
    assert_eq!(
        ok(&["audience", "set", "customer", "--device", dev]).trim(),
        "audience: beta -> customer"
    );
    ok(&["install", "vm-2.0", "--device", dev]);
    assert_eq!(
        ok(&["reboot", "--device", dev]).trim(),
        "Restarted into slot b: now running 2.0."
    );
    assert_eq!(
        ok(&["boot-check", "--device", dev]).trim(),
        "slot b verified"
    );
    assert!(committed(device, "2.0"));
    // The same commands without the agent print the same.
    agent.stop();
    assert_eq!(
        ok(&["boot-check", "--device", dev]).trim(),
        "slot b verified"
    );
    let full_alone = ok(&["list-full", "--json", "--device", dev]);
    assert_eq!(full_alone, full_via_agent);
    assert_eq!(
        ok(&["audience", "set", "beta", "--device", dev]).trim(),
        "audience: customer -> beta"
    );
    ok(&["log", "replay", "--device", dev]);
}
