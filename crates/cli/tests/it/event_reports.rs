//! Issue 14's promises, end to end: the real server and devices on loopback. Every step of
//! an update reaches the server once, with its code and state when it failed; reports
//! wait in the device's outbox while the server is away and arrive, once, when it is back;
//! a batch delivered twice is stored once; a killed device loses nothing; a device that
//! stops reporting mid-update shows silent; bad bodies get 4xx and the server keeps
//! serving; `/metrics` passes `promtool check metrics`.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::fleet::promtool_check;
use crate::common::*;
use serde_json::Value;

/// The steps of an install, in the order they are reported, up to the reboot.
const UP_TO_INSTALLED: [&str; 6] = [
    "install_started",
    "personalized",
    "download_started",
    "downloaded",
    "prepared",
    "installed",
];

/// The reported events other than progress samples, in order.
fn steps(reports: &[Value]) -> Vec<String> {
    reports
        .iter()
        .map(|r| r["event"].as_str().unwrap().to_owned())
        .filter(|e| e != "progress")
        .collect()
}

fn fleet_of(data: &Path) -> Value {
    serde_json::from_str(&ok(&["server", "fleet", "--data", s(data), "--json"])).unwrap()
}

fn device_state(data: &Path, device: &Path) -> Value {
    let id = device_id(device);
    fleet_of(data)["device_states"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device_id"] == id.as_str())
        .cloned()
        .unwrap_or(Value::Null)
}

/// Every sequence once, increasing.
fn assert_sequences_once(reports: &[Value]) {
    let seqs: Vec<u64> = reports
        .iter()
        .map(|r| r["sequence"].as_u64().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "sequences must be unique and increasing: {seqs:?}"
    );
}

fn queued(device: &Path) -> u64 {
    status(device)["events"]["queued"].as_u64().unwrap()
}

/// An HTTPS request to the server, pinned to its CA.
fn https(
    server: &Server,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<Vec<u8>>,
) -> (u16, Vec<u8>) {
    let url = format!("{}{path}", server.url());
    on_pinned_client(server, |client| async move {
        let mut request = client.request(method.parse().unwrap(), &url);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.bytes().await.unwrap().to_vec())
    })
}

fn credential(device: &Path) -> String {
    std::fs::read_to_string(device.join("trust/credential"))
        .unwrap()
        .trim()
        .to_owned()
}

fn admin_token(data: &Path) -> String {
    std::fs::read_to_string(data.join("admin-token"))
        .unwrap()
        .trim()
        .to_owned()
}

/// Waits until a queued report of `event` is in the device's outbox.
fn wait_for_queued(device: &Path, event: &str) -> bool {
    let needle = format!("\"event\":\"{event}\"");
    wait_for(120, || {
        std::fs::read_dir(device.join("events")).is_ok_and(|dir| {
            dir.flatten()
                .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|text| text.contains(&needle)))
        })
    })
}

#[test]
fn a_full_update_reaches_the_server_step_by_step_with_phases_and_metrics_pass_promtool() {
    let f = fleet(6, |s| s.url());
    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(
        queued(&f.device),
        0,
        "every report delivered at the end of each command"
    );

    let reports = server_reports(&f.server.data, &f.device);
    assert_sequences_once(&reports);
    assert_eq!(
        steps(&reports),
        [&UP_TO_INSTALLED[..], &["committed"]].concat()
    );
    let uuid = reports[0]["uuid"].clone();
    assert!(uuid.is_string());
    assert!(reports.iter().all(|r| r["uuid"] == uuid), "one update UUID");
    let installed = reports.iter().find(|r| r["event"] == "installed").unwrap();
    assert_eq!(installed["current_os_version"], "1.0");
    assert_eq!(installed["target_os_version"], "2.0");
    assert_eq!(installed["update_type"], "major");
    assert_eq!(installed["preferred_type"], "full");
    assert_eq!(installed["payload"]["kind"], "full");
    assert!(installed["payload"]["bytes_downloaded"].as_u64().unwrap() > 0);
    assert!(installed["data_fs_capacity"].as_u64().unwrap() > 0);
    assert!(installed["system_fs_free"].as_u64().unwrap() > 0);
    let phases: Vec<&str> = installed["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    for phase in [
        "PREFLIGHT_PERSONALIZE",
        "DOWNLOADING_UPDATE",
        "PREPARING_UPDATE",
    ] {
        assert!(phases.contains(&phase), "{phase} in {phases:?}");
    }
    let committed = reports.last().unwrap();
    assert_eq!(committed["event"], "committed");
    assert_eq!(committed["current_os_version"], "2.0");
    assert_eq!(committed["current_slot"], "b");
    assert_eq!(committed["boot_counter_rolled_back"], false);

    let state = device_state(&f.server.data, &f.device);
    assert_eq!(state["status"], "committed", "{state}");
    assert_eq!(state["version"], "2.0");
    assert_eq!(state["from_version"], "1.0");
    assert!(!state["phases"].as_array().unwrap().is_empty(), "{state}");
    let table = ok(&["server", "fleet", "--data", s(&f.server.data)]);
    assert!(
        table.contains("DOWNLOADING_UPDATE") && table.contains("committed"),
        "{table}"
    );

    // The per-class phase rates, learned from the report, served to the device.
    let (status, body) = https(
        &f.server,
        "GET",
        "/v1/rates?class=vm",
        Some(&credential(&f.device)),
        None,
    );
    assert_eq!(status, 200);
    let rates: Value = serde_json::from_slice(&body).unwrap();
    let download = rates["rates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["phase"] == "DOWNLOADING_UPDATE" && r["payload"] == "full")
        .unwrap_or_else(|| panic!("{rates}"));
    assert_eq!(download["samples"], 1);
    assert!(download["median_bytes_per_sec"].as_f64().unwrap() > 0.0);
    assert!(
        f.device.join("cache/phase-rates.json").is_file(),
        "the install's scan took the rates"
    );

    // /metrics: the admin token, Prometheus text that promtool accepts.
    let (status, _) = https(&f.server, "GET", "/metrics", None, None);
    assert_eq!(status, 401, "metrics are not anonymous");
    let (status, body) = https(
        &f.server,
        "GET",
        "/metrics",
        Some(&admin_token(&f.server.data)),
        None,
    );
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    for line in [
        "ferry_fleet_devices{status=\"committed\",version=\"2.0\"} 1",
        "ferry_fleet_install_outcomes{code=\"\",outcome=\"committed\"} 1",
        "ferry_event_reports_ingested_total{outcome=\"stored\"}",
        "ferry_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/events\"",
        "ferry_fleet_devices_silent 0",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    promtool_check(&text);
}

#[test]
fn reports_wait_while_the_server_is_away_and_arrive_once_when_it_is_back() {
    let (f, proxy) = fleet_behind_proxy(16);
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    // The server goes away once the payload is in the slot (after that the install needs
    // no network): every report of the install waits for it.
    let mut install = ferry()
        .args(["install", "vm-2.0", "--device", s(&f.device)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for_queued(&f.device, "downloaded"));
    proxy.set_upstream(dead_addr);
    assert!(
        install.wait().unwrap().success(),
        "a server away never fails the install"
    );
    let st = status(&f.device);
    let n_queued = st["events"]["queued"].as_u64().unwrap();
    assert!(n_queued >= 6, "{st}");
    // The proxy accepts the connection and closes it with no server behind: the device
    // sees the TLS handshake cut (TLS_HANDSHAKE_FAILED); with nothing listening at all it
    // would be SERVER_UNREACHABLE. Either way the reports wait.
    let code = st["events"]["delivery"]["last_error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        code == "SERVER_UNREACHABLE" || code == "TLS_HANDSHAKE_FAILED",
        "{st}"
    );
    let text = ok(&["status", "--device", s(&f.device)]);
    assert!(text.contains("queued") && text.contains(&code), "{text}");
    assert!(server_reports(&f.server.data, &f.device).is_empty());

    // A delivery loop (what the daemon runs), the server back 3 s later.
    let waiting = ferry()
        .args([
            "deliver",
            "--wait",
            "60",
            "--json",
            "--device",
            s(&f.device),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    proxy.set_upstream(f.server.addr);
    let back = Instant::now();
    let out = waiting.wait_with_output().unwrap();
    let delay = back.elapsed();
    assert!(out.status.success(), "{}", text_of(&out.stdout));
    eprintln!(
        "figure: {n_queued} reports delivered {:.2} s after the server came back",
        delay.as_secs_f64()
    );
    let reports = server_reports(&f.server.data, &f.device);
    assert_eq!(reports.len() as u64, n_queued, "every queued report, once");
    assert_sequences_once(&reports);
    assert_eq!(steps(&reports), UP_TO_INSTALLED);
    assert_eq!(queued(&f.device), 0);
    // Nothing left: another round sends nothing.
    let again: Value =
        serde_json::from_str(&ok(&["deliver", "--json", "--device", s(&f.device)])).unwrap();
    assert_eq!(again["delivery"]["delivered"], 0);
    assert_eq!(
        server_reports(&f.server.data, &f.device).len() as u64,
        n_queued
    );
}

fn text_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_batch_delivered_twice_is_stored_once() {
    let f = fleet(6, |s| s.url());
    // The install's delivery sends its batch; the device dies before recording the ack.
    let out = ferry()
        .args(["install", "vm-2.0", "--device", s(&f.device)])
        .env("FERRY_CRASH_AFTER_SEND", "1")
        .output()
        .unwrap();
    assert!(!out.status.success(), "killed after the server answered");
    let stored = server_reports(&f.server.data, &f.device);
    let n = queued(&f.device);
    assert!(
        n > 0 && stored.len() as u64 == n,
        "stored {} queued {n}",
        stored.len()
    );

    let again: Value =
        serde_json::from_str(&ok(&["deliver", "--json", "--device", s(&f.device)])).unwrap();
    assert_eq!(again["delivery"]["duplicates"], n, "{again}");
    assert_eq!(again["delivery"]["delivered"], 0, "{again}");
    assert_eq!(queued(&f.device), 0);
    let after = server_reports(&f.server.data, &f.device);
    assert_eq!(after, stored, "the second delivery changed nothing");
    assert_eq!(device_state(&f.server.data, &f.device)["status"], "staged");
}

#[test]
fn a_device_killed_with_a_full_outbox_loses_nothing_it_kept() {
    let (f, proxy) = fleet_behind_proxy(16);
    let config = f.device.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("outbox_max_reports = 4\n{text}")).unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let mut install = ferry()
        .args(["install", "vm-2.0", "--device", s(&f.device)])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for_queued(&f.device, "downloaded"));
    proxy.set_upstream(dead_addr);
    assert!(install.wait().unwrap().success());
    let st = status(&f.device);
    let events = &st["events"];
    assert!(events["full_since"].is_string(), "{st}");
    assert!(
        events["dropped_progress"].as_u64().unwrap() + events["dropped_steps"].as_u64().unwrap()
            > 0,
        "{st}"
    );
    let text = ok(&["status", "--device", s(&f.device)]);
    assert!(text.contains("FULL"), "{text}");
    // The reboot queues `committed` (terminal: kept although full) and the device dies
    // right after, before anything is delivered.
    let out = ferry()
        .args(["reboot", "--device", s(&f.device)])
        .env("FERRY_CRASH_AFTER_RECORDS", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let kept: Vec<String> = std::fs::read_dir(f.device.join("events"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && n != "outbox.json")
        .collect();

    proxy.set_upstream(f.server.addr);
    ok(&["deliver", "--device", s(&f.device)]);
    let reports = server_reports(&f.server.data, &f.device);
    assert_eq!(
        reports.len(),
        kept.len(),
        "every kept report arrived: {kept:?}"
    );
    assert_sequences_once(&reports);
    let events = steps(&reports);
    assert!(
        events.contains(&"installed".to_owned()) && events.contains(&"committed".to_owned()),
        "terminal reports are never dropped: {events:?}"
    );
    let state = device_state(&f.server.data, &f.device);
    assert_eq!(state["status"], "committed");
    assert!(
        state["outbox_dropped"].as_u64().unwrap() > 0,
        "the fleet sees the loss: {state}"
    );
}

#[test]
fn failures_and_rollbacks_reach_the_server_with_their_code_and_state() {
    let f = fleet(6, |s| s.url());
    let data = f.server.data.clone();
    let build = offered_build_id(&f.device);

    // 1. A failed install: the signing window is closed.
    let window = |action: &str| signing_window(&data, &build, action);
    window("close");
    let out = run(&["install", "vm-2.0", "--device", s(&f.device)]);
    assert!(!out.status.success());
    let failed = server_reports(&data, &f.device)
        .into_iter()
        .find(|r| r["event"] == "failed")
        .expect("a failed report");
    assert_eq!(failed["error"]["code"], "NOT_SIGNED");
    assert_eq!(failed["error"]["state"], "PREFLIGHT_PERSONALIZE");
    assert_eq!(failed["error"]["machine"], "controller");
    let state = device_state(&data, &f.device);
    assert_eq!(
        (
            &state["status"],
            &state["last_error_code"],
            &state["last_error_state"]
        ),
        (
            &"failed".into(),
            &"NOT_SIGNED".into(),
            &"PREFLIGHT_PERSONALIZE".into()
        ),
        "{state}"
    );
    assert_eq!(
        server_reports(&data, &f.device)
            .iter()
            .filter(|r| r["event"] == "failed")
            .count(),
        1,
        "one failure, one report (not one per machine)"
    );

    // 2. A seal failure at boot: a block of the new slot changes after the install.
    window("open");
    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
    let slot = f.device.join("slots/b.img");
    let mut bytes = std::fs::read(&slot).unwrap();
    bytes[4096 * 3] ^= 0xff;
    std::fs::write(&slot, bytes).unwrap();
    let out = run(&["reboot", "--device", s(&f.device)]);
    assert!(!out.status.success(), "fell back");
    let rolled = server_reports(&data, &f.device)
        .into_iter()
        .rfind(|r| r["event"] == "rolled_back")
        .expect("a rolled_back report");
    assert_eq!(rolled["error"]["code"], "SEAL_MISMATCH");
    assert_eq!(rolled["error"]["state"], "STAGED");
    assert_eq!(rolled["error"]["machine"], "update");
    assert_eq!(rolled["boot_counter_rolled_back"], false);
    assert_eq!(rolled["current_os_version"], "1.0");

    // 3. Three crashed boots: the bootloader runs out of tries and rolls back.
    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
    for _ in 0..3 {
        ok(&["reboot", "--simulate-crash", "--device", s(&f.device)]);
    }
    let out = run(&["reboot", "--device", s(&f.device)]);
    let _ = out;
    let reports = server_reports(&data, &f.device);
    let rolled = reports
        .iter()
        .rfind(|r| r["event"] == "rolled_back")
        .unwrap();
    assert_eq!(rolled["error"]["code"], "BOOT_TRIES_EXHAUSTED");
    assert_eq!(rolled["error"]["state"], "STAGED");
    assert_eq!(rolled["boot_counter_rolled_back"], true);
    assert_sequences_once(&reports);
    let state = device_state(&data, &f.device);
    assert_eq!(state["status"], "rolled_back");
    assert_eq!(state["rolled_back"], true);
    let fleet = fleet_of(&data);
    assert_eq!(
        fleet["rolled_back_by_code"]["BOOT_TRIES_EXHAUSTED"], 1,
        "{fleet}"
    );
}

#[test]
fn a_device_that_stops_reporting_mid_update_is_shown_silent() {
    let (mut f, proxy) = fleet_behind_proxy(16);
    // A server that calls a device silent after 2 s without a report.
    f.server.kill();
    let server = Server::start_with(&f.server.data, &["--silent-after", "2"]);
    proxy.set_upstream(server.addr);
    // The device dies mid-download; what it queued reaches the server; then nothing.
    let out = ferry()
        .args(["install", "vm-2.0", "--device", s(&f.device)])
        .env("FERRY_CRASH_AFTER_BYTES", "2000000")
        .output()
        .unwrap();
    assert!(!out.status.success());
    ok(&["deliver", "--device", s(&f.device)]);
    let state = device_state(&server.data, &f.device);
    assert_eq!(state["status"], "updating", "{state}");
    assert!(state["silent_since_ms"].is_null());
    assert!(
        wait_for(30, || {
            !device_state(&server.data, &f.device)["silent_since_ms"].is_null()
        }),
        "never marked silent"
    );
    let fleet = fleet_of(&server.data);
    assert_eq!(fleet["silent"], 1, "{fleet}");
    let (status, _) = https(&server, "GET", "/v1/admin/devices?state=silent", None, None);
    assert_eq!(status, 401);
    let (status, body) = https(
        &server,
        "GET",
        "/v1/admin/devices?state=silent",
        Some(&admin_token(&server.data)),
        None,
    );
    assert_eq!(status, 200);
    let silent: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(silent.as_array().unwrap().len(), 1, "{silent}");
    assert_eq!(silent[0]["device_id"], device_id(&f.device).as_str());
    // It comes back and finishes: no longer silent.
    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
    let state = device_state(&server.data, &f.device);
    assert_eq!(state["status"], "staged");
    assert!(state["silent_since_ms"].is_null(), "{state}");
}

#[test]
fn bad_bodies_and_other_credentials_get_4xx_and_the_server_keeps_serving() {
    let f = fleet(4, |s| s.url());
    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
    let me = credential(&f.device);
    let reports = server_reports(&f.server.data, &f.device);
    let mut batch = serde_json::json!({
        "device_id": device_id(&f.device),
        "outbox": {"queued": 1, "dropped_progress": 0, "dropped_steps": 0, "full": false},
        "reports": [reports[0].clone()],
    });
    let post = |bearer: Option<&str>, body: Vec<u8>| {
        let (status, body) = https(&f.server, "POST", "/v1/events", bearer, Some(body));
        let code = serde_json::from_slice::<Value>(&body)
            .map(|v| v["code"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default();
        (status, code)
    };
    let body = |v: &Value| serde_json::to_vec(v).unwrap();

    // The same report again: acknowledged, not stored twice.
    let (status, _) = post(Some(&me), body(&batch));
    assert_eq!(status, 200);
    assert_eq!(
        server_reports(&f.server.data, &f.device).len(),
        reports.len()
    );

    assert_eq!(
        post(Some(&me), b"{not json".to_vec()),
        (400, "REPORT_INVALID".into())
    );
    assert_eq!(
        post(Some(&me), vec![b' '; (1 << 20) + 1]),
        (413, "BODY_TOO_LARGE".into())
    );
    assert_eq!(post(None, body(&batch)), (401, "CREDENTIAL_MISSING".into()));
    let mut future = batch.clone();
    future["reports"][0]["report_version"] = 2.into();
    assert_eq!(
        post(Some(&me), body(&future)),
        (400, "REPORT_VERSION_UNSUPPORTED".into())
    );
    // Another device's credential for this device's batch, and a report naming another.
    let other = f.root.join("other");
    device_init(
        &other,
        &f.v1,
        "1.0",
        &f.server.url(),
        &f.server.data,
        "customer",
    );
    assert_eq!(
        post(Some(&credential(&other)), body(&batch)),
        (403, "REPORT_OTHER_DEVICE".into())
    );
    batch["reports"][0]["device_id"] = device_id(&other).into();
    assert_eq!(
        post(Some(&me), body(&batch)),
        (403, "REPORT_OTHER_DEVICE".into())
    );

    // Still serving.
    ok(&["list", "--device", s(&other)]);
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(
        device_state(&f.server.data, &f.device)["status"],
        "committed"
    );
    let (status, _) = https(&f.server, "GET", "/healthz", None, None);
    assert_eq!(status, 200);
}
