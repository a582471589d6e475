//! Issue 3: every row of every machine's table driven for real, against a loopback
//! server. Natural runs (install, a second install, a cut connection, a bad slot at
//! boot) cover what they can; each failure row left is then driven by injecting a fault
//! as the machine leaves that state (`FERRY_FAIL_IN`), and each resume row by killing
//! the process there (`FERRY_CRASH_IN`). After every fault the device must still run
//! 1.0 from slot a, and a plain install and reboot must bring it to 2.0. The union of
//! the journals must then hold every row of every table.

mod common;

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

use common::*;

const MIB: usize = 2;

/// (machine, state, event) as the journal records them.
type Row = (String, String, String);

struct Bench {
    tmp: tempfile::TempDir,
    data: PathBuf,
    v1: PathBuf,
    url: String,
    n_devices: usize,
    seen: BTreeSet<Row>,
}

impl Bench {
    fn device(&mut self) -> PathBuf {
        self.n_devices += 1;
        let dir = self.tmp.path().join(format!("device{}", self.n_devices));
        device_init(&dir, &self.v1, "1.0", &self.url, &self.data, "customer");
        dir
    }

    /// Adds the rows the device's journal holds to what has been seen.
    fn collect(&mut self, device: &Path) {
        let journal = std::fs::read_to_string(device.join("journal/journal.jsonl")).unwrap();
        for line in journal.lines() {
            let r: serde_json::Value = serde_json::from_str(line).unwrap();
            let field = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            self.seen.insert((field("fsm"), field("s"), field("e")));
        }
    }
}

/// The device still runs 1.0 from slot a.
fn on_v1(device: &Path, why: &str) {
    let st = status(device);
    assert_eq!(st["version"], "1.0", "{why}: {st}");
    assert_eq!(st["running_slot"], "a", "{why}: {st}");
}

/// A plain install and a reboot bring the device to 2.0; its journal replays.
fn recovers(device: &Path, why: &str) {
    let out = run(&["install", "vm-2.0", "--json", "--device", s(device)]);
    assert!(
        out.status.success(),
        "{why}: the next install failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    ok(&["reboot", "--device", s(device)]);
    let st = status(device);
    assert_eq!(st["version"], "2.0", "{why}: {st}");
    let replay = run(&["log", "replay", "--device", s(device)]);
    assert!(replay.status.success(), "{why}: {}", text(&replay.stdout));
}

fn install_with(device: &Path, var: &str, value: &str) -> std::process::Output {
    ferry()
        .args(["install", "vm-2.0", "--json", "--device", s(device)])
        .env(var, value)
        .output()
        .unwrap()
}

/// Leaving `state` of `fsm` fails with INJECTED_FAULT; nothing is lost.
fn fail_in(bench: &mut Bench, fsm: &str, state: &str) {
    let why = format!("{fsm}:{state}");
    let device = bench.device();
    if state == "FAILED" {
        // Put the machine in FAILED first: a fault while streaming fails the
        // downloader, the controller and the update together.
        let out = install_with(&device, "FERRY_FAIL_IN", "downloader:STREAMING");
        assert!(!out.status.success(), "{why}: the first fault did not fail");
    }
    if (fsm, state) == ("update", "STAGED") {
        // The update is STAGED after an install; the reboot moves it on.
        ok(&["install", "vm-2.0", "--device", s(&device)]);
        let out = ferry()
            .args(["reboot", "--json", "--device", s(&device)])
            .env("FERRY_FAIL_IN", &why)
            .output()
            .unwrap();
        assert!(
            text(&out.stdout).contains("INJECTED_FAULT"),
            "{why}: {}",
            text(&out.stdout)
        );
        // The boot itself stands: boot control was told before the journal.
        assert_eq!(status(&device)["version"], "2.0");
        bench.collect(&device);
        return;
    }
    let out = install_with(&device, "FERRY_FAIL_IN", &why);
    assert!(!out.status.success(), "{why}: the install did not fail");
    assert_eq!(json_error_code(&out), "INJECTED_FAULT", "{why}");
    on_v1(&device, &why);
    recovers(&device, &why);
    bench.collect(&device);
}

/// The process is killed as it leaves `state` of `fsm`; the next install resumes.
fn crash_in(bench: &mut Bench, fsm: &str, state: &str) {
    let why = format!("{fsm}:{state} (killed)");
    let device = bench.device();
    let out = install_with(&device, "FERRY_CRASH_IN", &format!("{fsm}:{state}"));
    assert_eq!(out.status.signal(), Some(9), "{why}: not killed");
    on_v1(&device, &why);
    recovers(&device, &why);
    bench.collect(&device);
}

#[test]
fn every_row_of_every_table_is_driven_and_each_failure_leaves_a_device_that_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("server");
    let (v1, v2) = (tmp.path().join("v1.img"), tmp.path().join("v2.img"));
    make_image(&v1, 1, MIB);
    make_image(&v2, 2, MIB);
    publish(&data, &v1, "1.0");
    publish(&data, &v2, "2.0");
    let server = Server::start(&data);
    let proxy = Proxy::start(server.addr);
    let mut bench = Bench {
        data: data.clone(),
        v1,
        url: proxy.url(),
        n_devices: 0,
        seen: BTreeSet::new(),
        tmp,
    };

    // Natural runs. An install, an install of what is staged, a good boot.
    let device = bench.device();
    ok(&["install", "vm-2.0", "--device", s(&device)]);
    ok(&["install", "vm-2.0", "--device", s(&device)]);
    ok(&["reboot", "--device", s(&device)]);
    bench.collect(&device);
    // A connection cut mid-payload, then the retry.
    let device = bench.device();
    proxy.set_fault(Fault::CutAfter(200_000));
    let out = run(&["install", "vm-2.0", "--json", "--device", s(&device)]);
    proxy.set_fault(Fault::None);
    assert_eq!(json_error_code(&out), "PAYLOAD_TRUNCATED");
    on_v1(&device, "cut");
    recovers(&device, "cut");
    bench.collect(&device);
    // A server that answers 503 to the scan.
    let device = bench.device();
    proxy.set_fault(Fault::Status(503));
    assert!(!run(&["list", "--device", s(&device)]).status.success());
    proxy.set_fault(Fault::None);
    recovers(&device, "503");
    bench.collect(&device);
    // A slot damaged after install fails its boot check: rolled back.
    let device = bench.device();
    ok(&["install", "vm-2.0", "--device", s(&device)]);
    let slot_b = device.join("slots/b.img");
    let mut bytes = std::fs::read(&slot_b).unwrap();
    bytes[4096 * 3 + 7] ^= 0x40;
    std::fs::write(&slot_b, &bytes).unwrap();
    let out = run(&["reboot", "--device", s(&device)]);
    assert!(
        text(&out.stdout).contains("SEAL_MISMATCH"),
        "{}",
        text(&out.stdout)
    );
    on_v1(&device, "damaged slot");
    bench.collect(&device);

    // Faults for every row the natural runs left.
    let machines = ferry_agent::machines::all().unwrap();
    for m in &machines {
        for row in m.rows() {
            let key = (
                m.name().to_owned(),
                row.state.to_owned(),
                row.event.to_owned(),
            );
            if bench.seen.contains(&key) {
                continue;
            }
            if m.def().failure_events.contains(&row.event) {
                fail_in(&mut bench, m.name(), row.state);
            } else if row.event == "Resume" || (m.name(), row.event) == ("downloader", "Begin") {
                crash_in(&mut bench, m.name(), row.state);
            }
        }
    }

    let missing: Vec<String> = machines
        .iter()
        .flat_map(|m| {
            m.rows()
                .iter()
                .map(|r| (m.name().to_owned(), r.state.to_owned(), r.event.to_owned()))
        })
        .filter(|k| !bench.seen.contains(k))
        .map(|(m, st, e)| format!("{m}: {st} + {e}"))
        .collect();
    assert!(
        missing.is_empty(),
        "rows never driven ({} of them): {missing:#?}",
        missing.len()
    );
    eprintln!(
        "fsm coverage: every row of {} machines driven, with {} devices",
        machines.len(),
        bench.n_devices
    );
}
