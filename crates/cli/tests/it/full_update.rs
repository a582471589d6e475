//! Issue 2's promises, end to end: a real server on loopback, a real device
//! directory, the real `ferry` binary; faults injected by a TCP proxy in between.

use std::path::{Path, PathBuf};

use crate::common::*;

fn assert_still_on_v1(f: &Fleet) {
    let st = status(&f.device);
    assert_eq!(st["version"], "1.0", "{st}");
    assert_eq!(st["running_slot"], "a");
    assert_eq!(
        st["next_boot"], "a",
        "a failed install must not make anything else boot: {st}"
    );
    assert!(
        st["slots"][1]["content"].is_null(),
        "slot b must not claim content: {st}"
    );
    let len = std::fs::metadata(&f.v1).unwrap().len();
    assert_eq!(
        slot_digest(&f.device.join("slots/a.img"), len),
        slot_digest(&f.v1, len),
        "slot a must be untouched"
    );
}

#[test]
fn v1_to_v2_install_reboot_status_receipts_history() {
    let f = fleet(6, |s| s.url());
    lists_then_installs_2_0(&f.device);
    let st = status(&f.device);
    assert_eq!(
        st["version"], "1.0",
        "installing alone does not switch slots"
    );
    assert_eq!(st["next_boot"], "b");
    assert_eq!(st["slots"][1]["tries_left"], 3);

    let reboot = ok(&["reboot", "--device", s(&f.device)]);
    assert!(reboot.contains("now running 2.0"), "{reboot}");
    let st = status(&f.device);
    assert_eq!(st["version"], "2.0");
    assert_eq!(st["running_slot"], "b");
    assert_eq!(st["slots"][1]["good"], true);
    assert_eq!(
        st["slots"][0]["good"], true,
        "the old slot stays as the fallback"
    );
    let v2 = f.root.join("v2.img");
    let len = std::fs::metadata(&v2).unwrap().len();
    assert_eq!(
        slot_digest(&f.device.join("slots/b.img"), len),
        slot_digest(&v2, len)
    );

    let history: serde_json::Value =
        serde_json::from_str(&ok(&["history", "--json", "--device", s(&f.device)])).unwrap();
    let history = history.as_array().unwrap();
    assert_eq!(
        history.len(),
        2,
        "factory image and the update: {history:?}"
    );
    assert_eq!(history[1]["version"], "2.0");
    assert_eq!(history[1]["from_version"], "1.0");
    assert_eq!(history[1]["slot"], "b");
    assert_eq!(history[1]["payload_kind"], "full");
    assert!(history[1]["bytes_downloaded"].as_u64().unwrap() > 0);
    assert_eq!(
        std::fs::read_dir(f.device.join("receipts"))
            .unwrap()
            .count(),
        2
    );

    // Nothing newer now: list says so and exits 0; install --all does nothing.
    let list = ok(&["list", "--device", s(&f.device)]);
    assert!(list.contains("No new software available."), "{list}");
    let again = ok(&["install", "--all", "--device", s(&f.device)]);
    assert!(again.contains("No new software available."), "{again}");
}

#[test]
fn truncated_payload_fails_with_its_code_and_a_retry_succeeds() {
    let (f, proxy) = fleet_behind_proxy(6);
    no_download_retries(&f.device);
    proxy.set_fault(Fault::CutAfter(2 << 20));
    let out = run(&["install", "vm-2.0", "--json", "--device", s(&f.device)]);
    assert!(!out.status.success());
    assert_eq!(
        json_error_code(&out),
        "PAYLOAD_TRUNCATED",
        "{}",
        text(&out.stdout)
    );
    assert_still_on_v1(&f);
    let st = status(&f.device);
    assert!(
        st["install_in_progress"]["frames_done"].as_u64().unwrap() >= 1,
        "progress was kept: {st}"
    );

    // The network is fixed: the install resumes and completes.
    proxy.set_fault(Fault::None);
    let out: serde_json::Value = serde_json::from_str(&ok(&[
        "install",
        "vm-2.0",
        "--json",
        "--device",
        s(&f.device),
    ]))
    .unwrap();
    assert!(
        out["installed"]["resumed_from_frame"].as_u64().unwrap() >= 1,
        "resumed, not restarted: {out}"
    );
    let payload = std::fs::metadata(find_payload(&f.server.data))
        .unwrap()
        .len();
    assert!(
        out["installed"]["bytes_downloaded"].as_u64().unwrap() < payload,
        "{out}"
    );
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(status(&f.device)["version"], "2.0");
}

fn find_payload(data: &Path) -> PathBuf {
    let dir = data.join("artifacts/releases/vm/2.0");
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".payload.zst"))
        .expect("payload of 2.0")
}

#[test]
fn flipped_byte_fails_with_digest_code_and_a_fixed_server_succeeds() {
    let f = fleet(4, |s| s.url());
    let payload = find_payload(&f.server.data);
    let good = std::fs::read(&payload).unwrap();
    let mut bad = good.clone();
    let pos = bad.len() / 2;
    bad[pos] ^= 0x01;
    std::fs::write(&payload, &bad).unwrap();

    let out = run(&["install", "vm-2.0", "--json", "--device", s(&f.device)]);
    assert!(!out.status.success());
    let code = json_error_code(&out);
    assert!(
        code == "DIGEST_MISMATCH" || code == "PAYLOAD_CORRUPT",
        "got {code}"
    );
    assert_still_on_v1(&f);

    std::fs::write(&payload, &good).unwrap();
    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(status(&f.device)["version"], "2.0");
}

#[test]
fn server_killed_mid_download_is_a_clean_error_and_nothing_is_half_applied() {
    let (mut f, proxy) = fleet_behind_proxy(6);
    no_download_retries(&f.device);
    proxy.set_fault(Fault::StallAfter(3 << 20));
    let child = ferry()
        .args(["install", "vm-2.0", "--json", "--device", s(&f.device)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let max = proxy.max_forwarded.clone();
    assert!(
        wait_for(30, || max.load(std::sync::atomic::Ordering::SeqCst)
            >= 3 << 20),
        "download never got going"
    );
    f.server.kill();
    let out = child.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "the install cannot succeed without its server"
    );
    assert_eq!(
        json_error_code(&out),
        "PAYLOAD_TRUNCATED",
        "{}",
        text(&out.stdout)
    );
    assert_still_on_v1(&f);

    // The server comes back (new port); the device resumes through the proxy.
    let server = Server::start(&f.server.data);
    proxy.set_upstream(server.addr);
    proxy.set_fault(Fault::None);
    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(status(&f.device)["version"], "2.0");
}

#[test]
fn every_named_error_keeps_the_device_intact() {
    let f = fleet(2, |s| s.url());

    // No such label.
    let out = run(&["install", "vm-9.9", "--json", "--device", s(&f.device)]);
    assert_eq!(json_error_code(&out), "NO_SUCH_LABEL");
    assert!(
        text(&out.stdout).contains("vm-2.0"),
        "the error lists what is available"
    );

    // Device directory missing, and corrupt.
    let out = run(&["status", "--json", "--device", s(&f.root.join("nope"))]);
    assert_eq!(json_error_code(&out), "DEVICE_MISSING");
    let config = f.device.join("config.toml");
    let saved = std::fs::read(&config).unwrap();
    std::fs::write(&config, "server = [").unwrap();
    let out = run(&["list", "--json", "--device", s(&f.device)]);
    assert_eq!(json_error_code(&out), "CONFIG_INVALID");
    std::fs::write(&config, saved).unwrap();

    // Server unreachable: a port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let text_config = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text_config.replace(&f.server.url(), &format!("http://{dead}")),
    )
    .unwrap();
    let out = run(&["install", "--all", "--json", "--device", s(&f.device)]);
    assert_eq!(json_error_code(&out), "SERVER_UNREACHABLE");
    std::fs::write(&config, text_config).unwrap();

    // Slot too small: shrink the configured capacity below the image.
    let text_config = std::fs::read_to_string(&config).unwrap();
    let small = text_config
        .lines()
        .map(|l| {
            if l.starts_with("capacity") {
                "capacity = 4096".to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&config, small).unwrap();
    let out = run(&["install", "vm-2.0", "--json", "--device", s(&f.device)]);
    assert_eq!(json_error_code(&out), "SLOT_TOO_SMALL");
    std::fs::write(&config, text_config).unwrap();

    assert_still_on_v1(&f);
    // And after all that, the update still works.
    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(status(&f.device)["version"], "2.0");
}

#[test]
fn publish_refuses_duplicate_and_malformed_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("server");
    let img = tmp.path().join("v1.img");
    make_image(&img, 1, 1);
    publish(&data, &img, "1.0");
    let out = try_publish(&data, &img, "1.0", &["--json"]);
    assert_eq!(json_error_code(&out), "DUPLICATE_VERSION");
    let out = try_publish(&data, &img, "1.0.0", &["--json"]);
    assert_eq!(
        json_error_code(&out),
        "DUPLICATE_VERSION",
        "1.0.0 is the same version as 1.0"
    );
    let out = try_publish(&data, &img, "v1.x", &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a malformed version is a usage error"
    );
    assert!(
        text(&out.stderr).contains("is not a version"),
        "{}",
        text(&out.stderr)
    );
    let odd = tmp.path().join("odd.img");
    std::fs::write(&odd, vec![1u8; 5000]).unwrap();
    let out = try_publish(&data, &odd, "2.0", &["--json"]);
    assert_eq!(json_error_code(&out), "IMAGE_UNALIGNED");
}

/// The journal shows the controller's failure path, and still replays.
fn assert_failure_journaled(device: &Path, fsm: &str) {
    let out = ok(&["log", "show", "--json", "--fsm", fsm, "--device", s(device)]);
    assert!(
        out.lines()
            .any(|l| l.contains("\"e\":\"Fail\"") && l.contains("\"next\":\"FAILED\"")),
        "{fsm} records its Fail transition:\n{out}"
    );
    ok(&["log", "replay", "--device", s(device)]);
}

#[test]
fn http_errors_and_stalls_fail_with_their_codes_and_are_journaled() {
    let (f, proxy) = fleet_behind_proxy(4);

    // An overloaded server (503) fails the scan (the catalog refresh), naming the status:
    // CATALOG_THROTTLED, whose Retry-After the agent's schedule honours.
    proxy.set_fault(Fault::Status(503));
    let out = run(&["install", "vm-2.0", "--json", "--device", s(&f.device)]);
    assert_eq!(json_error_code(&out), "CATALOG_THROTTLED");
    assert!(text(&out.stdout).contains("503"), "{}", text(&out.stdout));
    assert_failure_journaled(&f.device, "scan");
    assert_still_on_v1(&f);

    // A stalled connection mid-payload, not asked for again: a timeout with its own
    // code, not a hang.
    no_download_retries(&f.device);
    let config = f.device.join("config.toml");
    let text_config = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text_config.replace("read_timeout_secs = 30", "read_timeout_secs = 2"),
    )
    .unwrap();
    proxy.set_fault(Fault::StallAfter(1 << 20));
    let out = run(&["install", "vm-2.0", "--json", "--device", s(&f.device)]);
    assert_eq!(
        json_error_code(&out),
        "NETWORK_TIMEOUT",
        "{}",
        text(&out.stdout)
    );
    assert_failure_journaled(&f.device, "controller");
    assert_failure_journaled(&f.device, "downloader");
    assert_still_on_v1(&f);

    // The payload gone from the server: a 404 for it, named.
    proxy.set_fault(Fault::None);
    let payload = find_payload(&f.server.data);
    let saved = std::fs::read(&payload).unwrap();
    std::fs::remove_file(&payload).unwrap();
    let out = run(&["install", "vm-2.0", "--json", "--device", s(&f.device)]);
    assert_eq!(json_error_code(&out), "SERVER_REFUSED");
    assert!(text(&out.stdout).contains("404"), "{}", text(&out.stdout));
    assert_still_on_v1(&f);

    // Everything fixed: the install resumes and completes; the journal replays.
    std::fs::write(&payload, saved).unwrap();
    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(status(&f.device)["version"], "2.0");
    ok(&["log", "replay", "--device", s(&f.device)]);
}
