//! Issue 12: `ferry agent`, the device daemon, as a child process against a real server
//! on loopback: it scans on its own, stages, installs inside its maintenance window only,
//! holds an install back on a precondition and lets it go when the facts change, stops a
//! download on cancel and resumes it later without fetching it again, streams every
//! journal record exactly once across a reconnect (and a background scan's units, issue
//! 13), survives SIGTERM and SIGKILL mid-download, refuses a second daemon on the same
//! device, and delivers its event reports without being asked.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;

fn recommended_hold(device: &Path) -> Option<String> {
    let st = status(device);
    st["agent"]["offers"]
        .as_array()?
        .iter()
        .find(|o| o["recommended"] == true)
        .and_then(|o| o["why_not_now"]["code"].as_str().map(str::to_owned))
}

#[test]
fn the_agent_scans_stages_and_installs_inside_its_window_only() {
    let fleet = fleet(4, |server| server.url());
    let device = &fleet.device;
    set_unattended_policy(device, 3);
    let mut agent = Agent::start(device);
    // It scans on its own, then stages 2.0; the window keeps the install back.
    assert!(
        wait_for(60, || update_state(device).as_deref() == Some("PRESTAGED")),
        "the agent did not stage 2.0 on its own: {:?}",
        update_state(device)
    );
    assert!(
        wait_for(20, || recommended_hold(device).as_deref()
            == Some("OUTSIDE_WINDOW")),
        "{}",
        status(device)
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        status(device)["version"],
        "1.0",
        "installed outside the window"
    );
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&["list", "--json", "--device", s(device)])).unwrap();
    assert_eq!(
        listed[0]["why_not_now"]["code"], "OUTSIDE_WINDOW",
        "{listed}"
    );
    assert_eq!(listed[0]["why_not_now"]["kind"], "window");
    // The bar says what it waits for, and until when (issue 13); a background scan that
    // runs at that moment shows its own bar, so ask again once it is done.
    let mut progress = serde_json::Value::Null;
    let waits_for_the_window = wait_for(10, || {
        progress = api(device, "GET", "/v1/progress", "").expect("the agent answers");
        progress["progress"]["waiting"]
            .as_str()
            .is_some_and(|w| w.starts_with("waiting for the maintenance window (opens "))
    });
    assert!(waits_for_the_window, "{progress}");

    // A clean stop, a window that is open now, a start: it installs and restarts.
    agent.signal(libc::SIGTERM);
    assert!(agent.wait().success());
    assert!(
        !device.join("agent.sock").exists(),
        "the socket stays behind"
    );
    set_unattended_policy(device, 0);
    let _agent = Agent::start(device);
    assert!(
        wait_for(60, || status(device)["version"] == "2.0"),
        "the agent did not install and restart inside the window: {}",
        status(device)
    );
    assert_eq!(status(device)["running_slot"], "b");
    // The booted system commits the slot once its checks pass, just after it runs 2.0.
    assert!(
        wait_for(30, || update_state(device).as_deref() == Some("COMMITTED")),
        "{:?}",
        update_state(device)
    );
    // The same journal, the same tables: it replays.
    ok(&["log", "replay", "--device", s(device)]);
    // Nobody ran `ferry deliver`: the agent delivered its reports, and the server knows.
    let id = serde_json::from_slice::<serde_json::Value>(
        &std::fs::read(device.join("identity.json")).unwrap(),
    )
    .unwrap()["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let data = s(&fleet.server.data).to_owned();
    let known = || -> serde_json::Value {
        let fleet: serde_json::Value =
            serde_json::from_str(&ok(&["server", "fleet", "--data", &data, "--json"])).unwrap();
        fleet["device_states"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["device_id"] == id.as_str())
            .cloned()
            .unwrap_or_default()
    };
    assert!(
        wait_for(60, || known()["version"] == "2.0"),
        "the agent did not deliver its reports: {} (device: {})",
        known(),
        status(device)["events"]
    );
}

#[test]
fn a_low_battery_holds_the_install_back_until_the_facts_change() {
    let fleet = fleet(4, |server| server.url());
    let device = &fleet.device;
    set_policy(device, "[policy]\nauto_install = true\n");
    set_facts(device, "battery_level = 5\nbattery_charging = false\n");
    let _agent = Agent::start(device);
    assert!(
        wait_for(60, || recommended_hold(device).as_deref()
            == Some("BATTERY_LOW")),
        "{}",
        status(device)
    );
    assert_eq!(status(device)["version"], "1.0");
    // An install asked for meets the same precondition, with its code.
    let out = run(&["install", "vm-2.0", "--json", "--device", s(device)]);
    assert!(!out.status.success());
    assert_eq!(json_error_code(&out), "BATTERY_LOW");
    set_facts(device, "battery_level = 5\nbattery_charging = true\n");
    assert!(
        wait_for(60, || status(device)["slots"][1]["tries_left"].is_number()),
        "the install did not go once the battery charged: {}",
        status(device)
    );
    assert_eq!(status(device)["next_boot"], "b");
}

#[test]
fn cancel_stops_a_download_within_a_second_and_a_later_install_resumes_it() {
    let (fleet, proxy) = fleet_behind_proxy(24);
    let device = &fleet.device;
    set_policy(device, "[policy]\nauto_download = false\n");
    let _agent = Agent::start(device);
    // A slow link: the proxy stalls after 3 MB, so the download is under way for good.
    proxy.set_fault(Fault::StallAfter(3_000_000));
    let dev = device.clone();
    let install =
        std::thread::spawn(move || run(&["install", "vm-2.0", "--json", "--device", s(&dev)]));
    assert!(
        wait_for(60, || {
            api(device, "GET", "/v1/progress", "")
                .is_some_and(|p| p["progress"]["state"] == "DOWNLOADING_UPDATE")
        }),
        "the download did not start: {:?}, install: {:?}",
        api(device, "GET", "/v1/progress", ""),
        install.is_finished().then(|| {
            let out = install.join().unwrap();
            format!("{}{}", text(&out.stdout), text(&out.stderr))
        })
    );
    // Let bytes arrive and a checkpoint record them.
    std::thread::sleep(Duration::from_millis(1500));
    let asked = Instant::now();
    let cancelled = api(device, "POST", "/v1/cancel", "").expect("cancel answers");
    assert_eq!(cancelled["stopped"]["kind"], "install", "{cancelled}");
    let out = install.join().unwrap();
    let stopped_in = asked.elapsed();
    assert_eq!(json_error_code(&out), "CANCELLED", "{}", text(&out.stdout));
    assert!(
        stopped_in < Duration::from_secs(1),
        "cancel took {stopped_in:?} to stop the download"
    );
    eprintln!("cancel → download stopped: {stopped_in:?}");
    assert_eq!(update_state(device).as_deref(), Some("PARKED"));
    // A later install resumes where the cancel stopped it.
    proxy.set_fault(Fault::None);
    let out: serde_json::Value =
        serde_json::from_str(&ok(&["install", "vm-2.0", "--json", "--device", s(device)])).unwrap();
    let installed = &out["installed"];
    assert!(
        installed["resumed_from_frame"].as_u64() > Some(0),
        "the install started over: {installed}"
    );
    let payload = installed["image_size"].as_u64().unwrap();
    assert!(
        installed["bytes_downloaded"].as_u64().unwrap() < payload,
        "it downloaded everything again: {installed}"
    );
}

#[test]
fn a_client_that_reconnects_with_since_sees_every_event_exactly_once() {
    let fleet = fleet(16, |server| server.url());
    let device = &fleet.device;
    set_policy(device, "[policy]\nauto_download = false\n");
    let _agent = Agent::start(device);
    let hello_seq = last_seq(device);
    // A client that stays connected throughout sees the progress samples (live only: the
    // two below may miss them all when the download is done within their reconnect).
    let (connected, watching) = std::sync::mpsc::channel();
    let watcher = {
        let device = device.to_path_buf();
        std::thread::spawn(move || {
            let mut all = events(&device, hello_seq);
            connected.send(()).unwrap();
            let mut progress = 0;
            loop {
                let Some(line) = all.next() else {
                    return progress;
                };
                let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                if v["kind"] == "progress" {
                    progress += 1;
                } else if v["record"]["fsm"] == "update" && v["record"]["next"] == "STAGED" {
                    return progress;
                }
            }
        })
    };
    watching.recv().unwrap();
    // First connection: read some events of the install, then drop the connection.
    let mut first = events(device, hello_seq);
    let dev = device.clone();
    let install = std::thread::spawn(move || ok(&["install", "vm-2.0", "--device", s(&dev)]));
    let mut seen: Vec<u64> = Vec::new();
    while seen.len() < 6 {
        let line = first.next().expect("the stream goes on");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        match v["kind"].as_str() {
            Some("transition") => seen.push(v["seq"].as_u64().unwrap()),
            Some("progress") => {}
            other => panic!("unknown event kind {other:?}"),
        }
    }
    drop(first);
    std::thread::sleep(Duration::from_millis(300));
    // Reconnect from the last one seen, until the update is installed.
    let mut second = events(device, *seen.last().unwrap());
    loop {
        let line = second.next().expect("the stream goes on");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if v["kind"] == "progress" {
            continue;
        }
        seen.push(v["seq"].as_u64().unwrap());
        if v["record"]["fsm"] == "update" && v["record"]["next"] == "STAGED" {
            break;
        }
    }
    install.join().unwrap();
    let journal: Vec<u64> = ok(&["log", "show", "--json", "--device", s(device)])
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|r| r["seq"].as_u64())
        .filter(|seq| *seq > hello_seq && *seq <= *seen.last().unwrap())
        .collect();
    assert_eq!(seen, journal, "every record once, in order");
    let progress = watcher.join().unwrap();
    assert!(
        progress > 0,
        "no progress sample reached a connected client"
    );
}

#[test]
fn a_background_scan_reports_its_units_in_the_live_stream() {
    let fleet = fleet(4, |server| server.url());
    let device = &fleet.device;
    set_policy(device, "[policy]\nauto_download = false\n");
    let _agent = Agent::start(device);
    // Nobody asks for anything: every scan is the schedule's (every ~2 s here). Its
    // samples carry the same units as a CLI scan: metadata files and bytes.
    let (tx, rx) = std::sync::mpsc::channel();
    let dev = device.clone();
    std::thread::spawn(move || {
        for line in events(&dev, 0) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut asked = None;
    let mut sample = None;
    while sample.is_none() && Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let record = &v["record"];
        if record["fsm"] == "scan_manager" && record["e"] == "Scan" {
            asked = record["data"]["asked"].as_bool();
        }
        if v["kind"] == "progress" && v["progress"]["state"] == "SCANNING" {
            sample = Some(v["progress"].clone());
        }
    }
    let sample = sample.expect("no SCANNING sample in the live stream within 30 s");
    assert_eq!(
        asked,
        Some(false),
        "the scan was not the schedule's: {sample}"
    );
    let action = sample["action"].as_str().unwrap();
    assert!(
        action.starts_with("Checking for updates… ") && action.contains("fetched"),
        "{sample}"
    );
    assert!(
        sample["done"].as_u64().unwrap() > 0,
        "no bytes counted: {sample}"
    );
}

fn last_seq(device: &Path) -> u64 {
    ok(&["log", "show", "--json", "--device", s(device)])
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|r| r["seq"].as_u64())
        .max()
        .unwrap_or(0)
}

/// The event stream's lines from after `since` (chunked transfer decoded).
fn events(device: &Path, since: u64) -> impl Iterator<Item = String> {
    let mut stream = UnixStream::connect(device.join("agent.sock")).unwrap();
    write!(
        stream,
        "GET /v1/events?since={since} HTTP/1.1\r\nhost: agent\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
    }
    let mut pending = String::new();
    std::iter::from_fn(move || {
        loop {
            if let Some(end) = pending.find('\n') {
                let event: String = pending.drain(..=end).collect();
                return Some(event.trim_end().to_owned());
            }
            // One chunk: its size line, its data, CRLF.
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            if n == 0 {
                return None;
            }
            let mut data = vec![0u8; n + 2];
            reader.read_exact(&mut data).ok()?;
            pending.push_str(&String::from_utf8_lossy(&data[..n]));
        }
    })
}

#[test]
fn sigterm_and_sigkill_mid_download_then_a_restart_finish_the_update() {
    for signal in [libc::SIGTERM, libc::SIGKILL] {
        let (fleet, proxy) = fleet_behind_proxy(16);
        let device = &fleet.device;
        set_policy(device, "[policy]\nauto_install = true\n");
        proxy.set_fault(Fault::StallAfter(2_000_000));
        let mut agent = Agent::start(device);
        assert!(
            wait_for(60, || {
                api(device, "GET", "/v1/progress", "")
                    .is_some_and(|p| p["progress"]["state"] == "DOWNLOADING_UPDATE")
            }),
            "the agent did not start downloading on its own"
        );
        let asked = Instant::now();
        agent.signal(signal);
        let status = agent.wait();
        if signal == libc::SIGTERM {
            assert!(status.success(), "a clean stop exits 0: {status:?}");
            assert!(
                asked.elapsed() < Duration::from_secs(5),
                "SIGTERM took {:?}",
                asked.elapsed()
            );
        }
        drop(agent);
        proxy.set_fault(Fault::None);
        let _agent = Agent::start(device);
        assert!(
            wait_for(90, || status_of(device)["next_boot"] == "b"),
            "after {signal}, the restarted agent did not finish: {}",
            status_of(device)
        );
        ok(&["log", "replay", "--device", s(device)]);
    }
}

fn status_of(device: &Path) -> serde_json::Value {
    status(device)
}

#[test]
fn a_second_agent_on_the_same_device_refuses_with_its_code() {
    let fleet = fleet(2, |server| server.url());
    let device = &fleet.device;
    set_policy(device, "[policy]\nauto_download = false\n");
    let _first = Agent::start(device);
    let out = ferry()
        .args(["agent", "--json", "--device", s(device)])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        json_error_code(&out),
        "AGENT_RUNNING",
        "{}",
        text(&out.stderr)
    );
    // Every device command still works, through the first agent.
    assert_eq!(status(device)["agent"]["suspended"], false);
}

#[test]
fn the_agent_speaks_the_systemd_notify_protocol() {
    let fleet = fleet(2, |server| server.url());
    let device = &fleet.device;
    set_policy(device, "[policy]\nauto_download = false\n");
    let notify_path = fleet.root.join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut child = ferry()
        .args(["agent", "--device", s(device)])
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "400000")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut messages = Vec::new();
    let mut buf = [0u8; 256];
    while messages.iter().filter(|m| *m == "WATCHDOG=1").count() < 2 {
        let n = socket.recv(&mut buf).expect("a notify message");
        messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(messages.contains(&"READY=1".to_owned()), "{messages:?}");
    assert!(
        api(device, "GET", "/v1/hello", "").is_some(),
        "READY before the socket answered"
    );
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    loop {
        let n = socket.recv(&mut buf).expect("STOPPING=1");
        if &buf[..n] == b"STOPPING=1" {
            break;
        }
    }
    assert!(child.wait().unwrap().success());
}
