//! Issue 15: every cause of "the update failed" the doctor knows, injected for real
//! against a loopback server, and `ferry doctor --json` names it first with its code;
//! `--fix` repairs the ones it can. Each test restores what it broke before the next
//! cause, so one fleet serves several.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use crate::common::doctor::*;
use crate::common::fleet::{create_rollout, rollout_cli};
use crate::common::intercept::InterceptingProxy;
use crate::common::*;

fn set_config(device: &Path, from: &str, to: &str) -> String {
    let path = device.join("config.toml");
    let saved = std::fs::read_to_string(&path).unwrap();
    assert!(saved.contains(from), "{from} in {saved}");
    std::fs::write(&path, saved.replacen(from, to, 1)).unwrap();
    saved
}

fn restore_config(device: &Path, saved: &str) {
    std::fs::write(device.join("config.toml"), saved).unwrap();
}

#[test]
fn a_healthy_device_has_no_cause_and_the_doctor_answers_in_under_two_seconds() {
    let f = fleet(2, |s| s.url());
    let (report, took) = doctor_with(&f.device, &[], &[]);
    assert_eq!(report["ok"], true, "{report:#}");
    assert!(report["cause"].is_null(), "{report:#}");
    for check in report["checks"].as_array().unwrap() {
        assert!(
            check["outcome"] == "ok" || check["outcome"] == "skip" || check["outcome"] == "skipped",
            "{check:#}"
        );
    }
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ferry_agent::doctor::PRECEDENCE,
        "every check, in precedence order"
    );
    let catalog = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "catalog")
        .unwrap();
    assert!(
        catalog["summary"]
            .as_str()
            .unwrap()
            .contains("offers vm-2.0"),
        "{catalog:#}"
    );
    // Measured three times: the figure is the slowest.
    let mut slowest = took;
    for _ in 0..2 {
        slowest = slowest.max(doctor_with(&f.device, &[], &[]).1);
    }
    eprintln!(
        "doctor figure: healthy device, server reachable: {} ms wall (slowest of 3)",
        slowest.as_millis()
    );
    assert!(slowest < Duration::from_secs(2), "{slowest:?}");
    // The doctor changed nothing: a scan and an install still work from here.
    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
}

#[test]
fn causes_on_the_device_are_named_first_and_fix_repairs_what_it_can() {
    let mut tally = Tally::default();
    let f = fleet(4, |s| s.url());
    let device = &f.device;

    // A skewed clock: named with both times and the limit; --fix cannot set a clock.
    let skewed = [("FERRY_CLOCK_OFFSET", "300")];
    let report = doctor(device, &skewed);
    tally.named("skewed clock", &report, "CLOCK_SKEW", "clock");
    let clock = &report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "clock")
        .unwrap()["evidence"];
    let skew = clock["skew_seconds"].as_i64().unwrap();
    assert!((298..=302).contains(&skew), "{clock:#}");
    assert_eq!(clock["limit_seconds"], 60);
    assert_eq!(clock["limit_from_server"], true);
    let (fixed, _) = doctor_with(device, &["--fix"], &skewed);
    assert_eq!(
        fixed["fixes"],
        serde_json::json!([]),
        "nothing to repair: {fixed:#}"
    );
    assert_eq!(cause(&fixed).0, "CLOCK_SKEW");

    // A corrupt config.toml: which file, which line and key, what is wrong.
    let saved = set_config(device, "capacity = ", "capacity = \"big\" # ");
    let report = doctor(device, &[]);
    tally.named("corrupt config.toml", &report, "DEVICE_CORRUPT", "config");
    let said = report["cause"]["cause"].as_str().unwrap();
    assert!(
        said.contains("config.toml") && said.contains("capacity"),
        "{said}"
    );
    restore_config(device, &saved);
    // A config that parses but cannot work.
    let saved = set_config(device, "server = \"https://", "server = \"http://");
    let report = doctor(device, &[]);
    tally.named(
        "config.toml with an http:// server",
        &report,
        "DEVICE_CORRUPT",
        "config",
    );
    assert!(
        report["cause"]["cause"]
            .as_str()
            .unwrap()
            .contains("server:"),
        "{report:#}"
    );
    restore_config(device, &saved);

    // A damaged pinned root.
    let root = device.join("tuf/root.json");
    let saved_root = std::fs::read(&root).unwrap();
    let mut damaged = saved_root.clone();
    let at = damaged.len() / 2;
    damaged[at] = if damaged[at] == b'a' { b'b' } else { b'a' };
    std::fs::write(&root, &damaged).unwrap();
    let report = doctor(device, &[]);
    tally.named(
        "damaged pinned root",
        &report,
        "CATALOG_PINNED_ROOT_INVALID",
        "pinned_root",
    );
    std::fs::write(&root, &saved_root).unwrap();

    // An all-zero identity (a hardware fault), then another board's identity.
    let identity_path = device.join("identity.json");
    let saved_identity = std::fs::read(&identity_path).unwrap();
    let mut identity: serde_json::Value = serde_json::from_slice(&saved_identity).unwrap();
    let mut zero = identity.clone();
    zero["hardware_uuid"] = "00000000-0000-0000-0000-000000000000".into();
    zero["board_id"] = "00000000".into();
    std::fs::write(&identity_path, serde_json::to_vec(&zero).unwrap()).unwrap();
    let report = doctor(device, &[]);
    tally.named("all-zero identity", &report, "BAD_IDENTITY", "identity");
    assert!(
        report["cause"]["cause"]
            .as_str()
            .unwrap()
            .contains("board_id"),
        "{report:#}"
    );
    identity["board_id"] = "0badb0a7".into();
    identity["hardware_uuid"] = "6f1c9a52-3b0e-4d7a-8c11-2e4f90ab7d33".into();
    std::fs::write(&identity_path, serde_json::to_vec(&identity).unwrap()).unwrap();
    let report = doctor(device, &[]);
    tally.named(
        "swapped logic board",
        &report,
        "IDENTITY_MISMATCH",
        "identity",
    );
    let said = report["cause"]["cause"].as_str().unwrap();
    assert!(
        said.contains("board_id") && said.contains("hardware_uuid") && !said.contains("chip_id"),
        "{said}"
    );
    std::fs::write(&identity_path, &saved_identity).unwrap();

    // A flipped byte in the running slot.
    let slot_a = device.join("slots/a.img");
    let saved_slot = std::fs::read(&slot_a).unwrap();
    let mut flipped = saved_slot.clone();
    flipped[4096 * 5 + 11] ^= 0x20;
    std::fs::write(&slot_a, &flipped).unwrap();
    let report = doctor(device, &[]);
    tally.named(
        "flipped byte in the running slot",
        &report,
        "SEAL_MISMATCH",
        "running_slot_seal",
    );
    assert!(
        report["cause"]["cause"]
            .as_str()
            .unwrap()
            .contains("block 5"),
        "{report:#}"
    );
    std::fs::write(&slot_a, &saved_slot).unwrap();

    // A failing health check.
    let saved = std::fs::read_to_string(device.join("config.toml")).unwrap();
    std::fs::write(
        device.join("config.toml"),
        saved.replace(
            "health_checks = []",
            "health_checks = [\"echo disk sensor offline >&2; exit 3\"]",
        ),
    )
    .unwrap();
    let report = doctor(device, &[]);
    tally.named(
        "failing health check",
        &report,
        "HEALTH_CHECK_FAILED",
        "health_checks",
    );
    assert!(
        report["cause"]["cause"]
            .as_str()
            .unwrap()
            .contains("disk sensor offline"),
        "{report:#}"
    );
    restore_config(device, &saved);

    // Another process holding the device lock: named with its pid; --fix repairs nothing.
    // `-o`: the lock stays with flock itself, not with the command it runs.
    let mut holder: Child = Command::new("flock")
        .arg("-o")
        .arg(device.join(".lock"))
        .args(["sleep", "60"])
        .spawn()
        .expect("flock (util-linux)");
    assert!(wait_for(10, || doctor(device, &[])["cause"]["code"] == "DEVICE_BUSY"));
    let report = doctor(device, &[]);
    tally.named(
        "lock held by another process",
        &report,
        "DEVICE_BUSY",
        "lock",
    );
    let lock = &report["checks"][0];
    let pid = lock["evidence"]["pid"].as_u64().unwrap();
    assert!(
        pid == u64::from(holder.id())
            || lock["evidence"]["command"]
                .as_str()
                .unwrap_or_default()
                .contains("sleep"),
        "{lock:#}"
    );
    let (fixed, _) = doctor_with(device, &["--fix"], &[]);
    assert_eq!(fixed["cause"]["code"], "DEVICE_BUSY");
    let _ = holder.kill();
    let _ = holder.wait();

    // Random bytes in the spool of an interrupted download: named, --fix purges it, and
    // the install then resumes and completes.
    let out = ferry()
        .args(["install", "vm-2.0", "--json", "--device", s(device)])
        .env("FERRY_CRASH_AFTER_BYTES", "1500000")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        Some(9),
        "the install was killed: {}",
        text(&out.stdout)
    );
    let spool = device.join("cache/spool");
    let segments: Vec<PathBuf> = std::fs::read_dir(&spool)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!segments.is_empty(), "the download was spooled");
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for segment in &segments {
        let len = std::fs::metadata(segment).unwrap().len() as usize;
        let noise: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        std::fs::write(segment, noise).unwrap();
    }
    let report = doctor(device, &[]);
    tally.named(
        "random bytes in the spool",
        &report,
        "CACHE_CORRUPT",
        "cache",
    );
    assert_eq!(report["cause"]["fixable"], true);
    let (fixed, _) = doctor_with(device, &["--fix"], &[]);
    let fix = fixed["fixes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "cache")
        .unwrap();
    assert_eq!(fix["done"], true, "{fixed:#}");
    assert_eq!(fixed["ok"], true, "repaired: {fixed:#}");
    assert!(!spool.exists());
    assert_still_on_v1(&f);
    ok(&["install", "vm-2.0", "--device", s(device)]);
    ok(&["reboot", "--device", s(device)]);
    assert_eq!(status(device)["version"], "2.0");
}

#[test]
fn causes_between_the_device_and_the_server_are_named_first() {
    let mut tally = Tally::default();
    let (mut f, proxy) = fleet_behind_proxy(2);
    let device = f.device.clone();

    // An overloaded server: 503 with Retry-After.
    proxy.set_fault(Fault::Overloaded(120));
    let report = doctor(&device, &[]);
    tally.named(
        "server answering 503 with Retry-After",
        &report,
        "OVERLOADED",
        "server",
    );
    let server = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "server")
        .unwrap();
    assert_eq!(server["evidence"]["retry_after_seconds"], 120, "{server:#}");
    assert!(report["cause"]["fix"].as_str().unwrap().contains("120 s"));
    proxy.set_fault(Fault::None);
    assert_eq!(doctor(&device, &[])["ok"], true);

    // A TLS-inspecting proxy with another CA: named with its issuer.
    let intercepting = InterceptingProxy::start(f.server.addr, &f.server.ca());
    let saved = set_config(&device, &proxy.url(), &intercepting.url);
    let report = doctor(&device, &[]);
    tally.named(
        "TLS proxy with another CA",
        &report,
        "TLS_INTERCEPTED",
        "network",
    );
    assert!(
        report["cause"]["cause"]
            .as_str()
            .unwrap()
            .contains("Corp Inspection CA"),
        "{report:#}"
    );
    assert!(intercepting.relayed_ok(), "the proxy itself works");
    restore_config(&device, &saved);

    // A name that does not resolve.
    let saved = set_config(
        &device,
        "https://127.0.0.1:",
        "https://ferry-update.invalid:",
    );
    let report = doctor(&device, &[]);
    tally.named(
        "server name that does not resolve",
        &report,
        "NAME_RESOLUTION_FAILED",
        "network",
    );
    restore_config(&device, &saved);

    // A stopped server (the device pointed at it, not at the proxy, which would still
    // accept): named within the network timeout; an install that fails then prints the
    // same cause.
    set_config(&device, &proxy.url(), &f.server.url());
    f.server.kill();
    let (report, took) = doctor_with(&device, &[], &[]);
    tally.named("stopped server", &report, "SERVER_UNREACHABLE", "network");
    eprintln!(
        "doctor figure: server stopped: {} ms wall",
        took.as_millis()
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    let out = run(&["install", "vm-2.0", "--json", "--device", s(&device)]);
    let failed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(failed["error"]["code"], "SERVER_UNREACHABLE", "{failed:#}");
    assert_eq!(
        failed["diagnosis"]["cause"]["code"], "SERVER_UNREACHABLE",
        "{failed:#}"
    );
    let out = run(&["install", "vm-2.0", "--device", s(&device)]);
    assert!(
        text(&out.stderr).contains("doctor: the cause found is [SERVER_UNREACHABLE]"),
        "{}",
        text(&out.stderr)
    );
    assert_still_on_v1(&f);
}

#[test]
fn causes_on_the_server_side_are_named_first() {
    let mut tally = Tally::default();
    let f = fleet(2, |s| s.url());
    let device = &f.device;
    let data = s(&f.server.data);
    let build = offered_build_id(device);

    // The signing window of the offered build closed; an install names it after failing.
    signing_window(&f.server.data, &build, "close");
    let report = doctor(device, &[]);
    tally.named("closed signing window", &report, "NOT_SIGNED", "signing");
    let out = run(&["install", "vm-2.0", "--json", "--device", s(device)]);
    let failed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(failed["error"]["code"], "NOT_SIGNED");
    assert_eq!(
        failed["diagnosis"]["cause"]["code"], "NOT_SIGNED",
        "{failed:#}"
    );
    assert_eq!(
        failed["diagnosis"]["cause"]["explains_current_failure"], true,
        "{failed:#}"
    );
    let report = doctor(device, &[]);
    assert_eq!(
        report["current_failure"]["code"], "NOT_SIGNED",
        "{report:#}"
    );
    assert_eq!(report["cause"]["explains_current_failure"], true);
    signing_window(&f.server.data, &build, "open");
    assert_eq!(doctor(device, &[])["ok"], true);

    // A rollout of the offered release, halted: the service holds the ticket back, and the
    // doctor says so; resumed (one wave of everyone), the device is clear again.
    let created = create_rollout(Path::new(data), &["--waves", "100%@0"]);
    let id = created["id"].as_i64().unwrap().to_string();
    rollout_cli(Path::new(data), &["halt", &id]);
    let report = doctor(device, &[]);
    tally.named("rollout halted", &report, "ROLLOUT_HALTED", "signing");
    rollout_cli(Path::new(data), &["resume", &id]);
    assert_eq!(doctor(device, &[])["ok"], true);

    // A credential that is not there: not enrolled.
    let credential = device.join("trust/credential");
    let saved = std::fs::read(&credential).unwrap();
    std::fs::remove_file(&credential).unwrap();
    let report = doctor(device, &[]);
    tally.named("no credential", &report, "NOT_ENROLLED", "enrollment");
    std::fs::write(&credential, &saved).unwrap();

    // A corrupt key set (a scan cannot replace what it cannot read): --fix removes it
    // and takes the catalog's again.
    let keys = device.join("trust/personalization-keys.json");
    let saved_keys = std::fs::read(&keys).unwrap();
    std::fs::write(&keys, &saved_keys[..saved_keys.len() / 2]).unwrap();
    let report = doctor(device, &[]);
    tally.named(
        "corrupt personalization key set",
        &report,
        "DEVICE_CORRUPT",
        "key_set",
    );
    let (fixed, _) = doctor_with(device, &["--fix"], &[]);
    assert_eq!(fixed["ok"], true, "{fixed:#}");
    assert_eq!(fixed["fixes"][0]["check"], "key_set", "{fixed:#}");
    assert_eq!(std::fs::read(&keys).unwrap(), saved_keys);

    // A revoked device.
    let identity: serde_json::Value =
        serde_json::from_slice(&std::fs::read(device.join("identity.json")).unwrap()).unwrap();
    let id = identity["device_id"].as_str().unwrap();
    ok(&["server", "devices", "--data", data, "--revoke", id]);
    let report = doctor(device, &[]);
    tally.named("revoked device", &report, "REVOKED_DEVICE", "enrollment");
}

#[test]
fn an_expired_catalog_is_named_first() {
    let mut tally = Tally::default();
    if Command::new("faketime").arg("-h").output().is_err() {
        eprintln!("SKIPPED: faketime is not installed (.ci/run installs it)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("server");
    let (v1, v2) = (tmp.path().join("v1.img"), tmp.path().join("v2.img"));
    make_image(&v1, 1, 2);
    make_image(&v2, 2, 2);
    // Made and published 200 days ago: the snapshot and targets metadata (180 days) have
    // expired; the server re-signs only the timestamp.
    let keys = offline_keys(&data);
    let out = Command::new("faketime")
        .args(["-f", "-200d", env!("CARGO_BIN_EXE_ferry"), "server", "init"])
        .args(["--data", s(&data), "--keys", s(&keys)])
        .env("FERRY_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    for (image, version) in [(&v1, "1.0"), (&v2, "2.0")] {
        let out = Command::new("faketime")
            .args([
                "-f",
                "-200d",
                env!("CARGO_BIN_EXE_ferry"),
                "publish",
                "--data",
                s(&data),
            ])
            .args([
                "--image",
                s(image),
                "--version",
                version,
                "--class",
                "vm",
                "--level",
                "3",
                "--no-chunks",
                "--keys",
                s(&keys),
            ])
            .env("FERRY_LOG", "warn")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let server = Server::start(&data);
    let device = tmp.path().join("device");
    device_init(&device, &v1, "1.0", &server.url(), &data, "customer");
    let report = doctor(&device, &[]);
    tally.named("expired catalog", &report, "CATALOG_EXPIRED", "catalog");
    let out = run(&["install", "vm-2.0", "--json", "--device", s(&device)]);
    let failed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(failed["error"]["code"], "CATALOG_EXPIRED", "{failed:#}");
    assert_eq!(
        failed["diagnosis"]["cause"]["code"], "CATALOG_EXPIRED",
        "{failed:#}"
    );
}
