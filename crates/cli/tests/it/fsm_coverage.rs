//! Issue 3: every row of every machine's table driven for real, against a loopback
//! server. Natural runs (install, a second install, a cut connection, a bad slot at
//! boot; `ferry download` then install, a stale ticket, cancels, drops for a newer
//! release and for a closed signing window, a short `ferry agent` run) cover what they
//! can; each failure row left is then driven by injecting a fault
//! as the machine leaves that state (`FERRY_FAIL_IN`), and each resume row by killing
//! the process there (`FERRY_CRASH_IN`). After every fault the device must still run
//! 1.0 from slot a, and a plain install and reboot must bring it to 2.0. The union of
//! the journals must then hold every row of every table.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

use crate::common::*;

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

fn with_env(args: &[&str], var: &str, value: &str) -> std::process::Output {
    ferry().args(args).env(var, value).output().unwrap()
}

/// The JSON a successful `--json` command printed.
fn json_ok(args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(args)).unwrap()
}

/// Bytes after which `FERRY_CANCEL_AFTER_BYTES` cancels a download: inside the payload.
const CANCEL_AT: &str = "300000";

/// Parks the update to 2.0: an install cancelled part-way (as `ferry agent cancel`
/// does), what arrived kept.
fn park(device: &Path, command: &str) {
    let out = with_env(
        &[command, "vm-2.0", "--json", "--device", s(device)],
        "FERRY_CANCEL_AFTER_BYTES",
        CANCEL_AT,
    );
    assert_eq!(json_error_code(&out), "CANCELLED", "{}", text(&out.stdout));
    assert_eq!(update_state(device).as_deref(), Some("PARKED"));
    on_v1(device, "parked");
}

/// Stages 2.0: downloaded, verified and sealed into slot b, which nothing boots yet.
fn stage(device: &Path) -> serde_json::Value {
    let out = json_ok(&["download", "vm-2.0", "--json", "--device", s(device)]);
    let staged = out["staged"].clone();
    assert_eq!(staged["staged"], true, "{out}");
    assert_eq!(staged["slot"], "b", "{out}");
    assert_eq!(update_state(device).as_deref(), Some("PRESTAGED"));
    let st = status(device);
    assert_eq!(st["next_boot"], "a", "a staged slot must not boot: {st}");
    on_v1(device, "staged");
    staged
}

/// Brings a device to where a fault in `state` of `fsm` can be injected, when an install
/// does not pass there on its own: a parked or a staged update.
fn put_in(device: &Path, fsm: &str, state: &str) {
    match (fsm, state) {
        (_, "PARKED") => park(device, "install"),
        ("update", "PRESTAGED") => {
            stage(device);
        }
        _ => {}
    }
}

/// Leaving `state` of `fsm` fails with INJECTED_FAULT; nothing is lost.
fn fail_in(bench: &mut Bench, fsm: &str, state: &str) {
    let why = format!("{fsm}:{state}");
    let device = bench.device();
    put_in(&device, fsm, state);
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
    put_in(&device, fsm, state);
    let out = install_with(&device, "FERRY_CRASH_IN", &format!("{fsm}:{state}"));
    assert_eq!(out.status.signal(), Some(9), "{why}: not killed");
    on_v1(&device, &why);
    recovers(&device, &why);
    bench.collect(&device);
}

/// `ferry download` stages 2.0; a second download fetches nothing; `ferry install`
/// applies it without downloading again; the slot boots.
fn staged_then_installed(bench: &mut Bench) {
    let device = bench.device();
    let staged = stage(&device);
    assert!(staged["bytes_downloaded"].as_u64() > Some(0), "{staged}");
    let again = json_ok(&["download", "vm-2.0", "--json", "--device", s(&device)]);
    assert_eq!(again["staged"]["bytes_downloaded"], 0, "{again}");
    assert_eq!(update_state(&device).as_deref(), Some("PRESTAGED"));
    let out = json_ok(&["install", "vm-2.0", "--json", "--device", s(&device)]);
    assert_eq!(out["installed"]["bytes_downloaded"], 0, "{out}");
    assert_eq!(out["installed"]["ticket_refreshed"], false, "{out}");
    assert_eq!(status(&device)["next_boot"], "b");
    ok(&["reboot", "--device", s(&device)]);
    assert_eq!(status(&device)["version"], "2.0");
    bench.collect(&device);
}

/// A staged update whose ticket is older than `ticket_max_age_secs` gets a fresh one
/// before it is applied, says so, and the fresh ticket passes the boot check.
fn stale_ticket_is_refreshed(bench: &mut Bench) {
    let device = bench.device();
    set_policy(&device, "[policy]\nticket_max_age_secs = 0\n");
    stage(&device);
    let ticket = device.join("boot/ticket-b.json");
    let before = std::fs::read(&ticket).unwrap();
    let out = ok(&["install", "vm-2.0", "--device", s(&device)]);
    assert!(
        out.contains("The staged update's ticket was older than the policy allows: refreshed."),
        "{out}"
    );
    assert_ne!(
        std::fs::read(&ticket).unwrap(),
        before,
        "the ticket was not replaced"
    );
    ok(&["reboot", "--device", s(&device)]);
    assert_eq!(status(&device)["version"], "2.0");
    bench.collect(&device);
}

/// An install cancelled part-way continues as a download, and a download cancelled
/// part-way continues as an install.
fn cancelled_then_continued(bench: &mut Bench) {
    let device = bench.device();
    park(&device, "install");
    stage(&device);
    recovers(&device, "install cancelled, then staged");
    bench.collect(&device);
    let device = bench.device();
    park(&device, "download");
    recovers(&device, "download cancelled");
    bench.collect(&device);
}

/// A download cut by the network fails; downloads killed part-way are taken up again
/// by a download, then by an install.
fn downloads_that_fail_or_die(bench: &mut Bench, proxy: &Proxy) {
    let device = bench.device();
    no_download_retries(&device);
    proxy.set_fault(Fault::CutAfter(200_000));
    let out = run(&["download", "vm-2.0", "--json", "--device", s(&device)]);
    proxy.set_fault(Fault::None);
    assert_eq!(json_error_code(&out), "PAYLOAD_TRUNCATED");
    assert_eq!(update_state(&device).as_deref(), Some("FAILED"));
    for _ in 0..2 {
        let out = with_env(
            &["download", "vm-2.0", "--device", s(&device)],
            "FERRY_CRASH_AFTER_BYTES",
            CANCEL_AT,
        );
        assert_eq!(out.status.signal(), Some(9), "not killed");
        assert_eq!(update_state(&device).as_deref(), Some("PRESTAGING"));
    }
    recovers(&device, "downloads killed");
    bench.collect(&device);
}

/// The daemon on its own: it starts, stages 2.0 (Act), holds the install back by policy
/// (Hold), reloads its config, is suspended, restarts suspended, reloads, and resumes.
fn the_agent_on_its_own(bench: &mut Bench) {
    let device = bench.device();
    set_policy(&device, "[policy]\nauto_download = true\n");
    let agent = Agent::start(&device);
    let held = || {
        ok(&[
            "log",
            "show",
            "--json",
            "--fsm",
            "scheduler",
            "--device",
            s(&device),
        ])
        .contains("AUTO_INSTALL_OFF")
    };
    assert!(
        wait_for(60, held),
        "the agent did not stage 2.0 and hold its install: {}",
        status(&device)
    );
    assert_eq!(update_state(&device).as_deref(), Some("PRESTAGED"));
    ok(&["agent", "reload", "--device", s(&device)]);
    ok(&["agent", "suspend", "--device", s(&device)]);
    agent.stop();
    let agent = Agent::start(&device);
    assert_eq!(status(&device)["agent"]["suspended"], true);
    ok(&["agent", "reload", "--device", s(&device)]);
    ok(&["agent", "resume", "--device", s(&device)]);
    assert_eq!(status(&device)["agent"]["suspended"], false);
    agent.stop();
    recovers(&device, "staged by the agent");
    bench.collect(&device);
}

/// The post-commit health watch under the daemon: one whose checks pass (Begin, Pass) and
/// one that finds the committed release unwell (Unhealthy).
fn the_health_watch(bench: &mut Bench) {
    for (watch, unwell, end) in [("2s", false, "PASSED"), ("5m", true, "UNHEALTHY")] {
        let device = bench.device();
        let config = device.join("config.toml");
        let text = std::fs::read_to_string(&config).unwrap();
        let check = "health_checks = [\"test ! -e \\\"$FERRY_DEVICE/unwell\\\"\"]";
        assert!(text.contains("health_checks = []"), "{text}");
        let text = text.replace("health_checks = []", check);
        std::fs::write(
            &config,
            format!("post_commit_watch = \"{watch}\"\npost_commit_check_every = \"1s\"\n{text}"),
        )
        .unwrap();
        let agent = Agent::start(&device);
        ok(&["install", "vm-2.0", "--device", s(&device)]);
        ok(&["reboot", "--device", s(&device)]);
        if unwell {
            std::fs::write(device.join("unwell"), "").unwrap();
        }
        let ended = || {
            ok(&[
                "log",
                "show",
                "--json",
                "--fsm",
                "health_watch",
                "--device",
                s(&device),
            ])
            .contains(end)
        };
        assert!(wait_for(30, ended), "the health watch did not end {end}");
        agent.stop();
        bench.collect(&device);
    }
}

/// The build id of the offer labelled `label`.
fn build_of(device: &Path, label: &str) -> String {
    let offers = json_ok(&["list", "--json", "--device", s(device)]);
    let offer = offers
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["label"] == label)
        .unwrap_or_else(|| panic!("{label} is not offered: {offers}"));
    offer["build_id"].as_str().unwrap().to_owned()
}

/// A staged update whose ticket must be refreshed while the server no longer signs its
/// build is dropped, with the server's code; the slot it wrote never boots.
fn not_signed_drops_the_staged_update(bench: &mut Bench) {
    let device = bench.device();
    set_policy(&device, "[policy]\nticket_max_age_secs = 0\n");
    let id = stage(&device)["update_id"].as_str().unwrap().to_owned();
    let build = build_of(&device, "vm-2.0");
    let window = |action: &str| signing_window(&bench.data, &build, action);
    window("close");
    let out = run(&["install", "vm-2.0", "--json", "--device", s(&device)]);
    window("open");
    assert_eq!(json_error_code(&out), "NOT_SIGNED", "{}", text(&out.stdout));
    assert_eq!(update_state_of(&device, &id).as_deref(), Some("DROPPED"));
    let st = status(&device);
    assert!(st["install_in_progress"].is_null(), "{st}");
    assert_eq!(st["next_boot"], "a", "{st}");
    on_v1(&device, "not signed");
    recovers(&device, "dropped, not signed");
    bench.collect(&device);
}

/// A staged update, and a parked one, that a newer release supersedes are dropped by
/// the next run, which says which and why.
fn superseded_updates_are_dropped(bench: &mut Bench) {
    let staged = bench.device();
    let staged_id = stage(&staged)["update_id"].as_str().unwrap().to_owned();
    let parked = bench.device();
    park(&parked, "install");
    let v3 = bench.tmp.path().join("v3.img");
    make_image(&v3, 3, MIB);
    publish(&bench.data, &v3, "3.0");

    let out = ok(&["download", "--device", s(&staged)]);
    assert!(
        out.contains("Dropped the update to 2.0 [SUPERSEDED]: version 3.0 supersedes the staged update to 2.0"),
        "{out}"
    );
    assert!(out.contains("Staged 3.0 in slot b"), "{out}");
    assert_eq!(
        update_state_of(&staged, &staged_id).as_deref(),
        Some("DROPPED")
    );
    ok(&["install", "vm-3.0", "--device", s(&staged)]);
    ok(&["reboot", "--device", s(&staged)]);
    assert_eq!(status(&staged)["version"], "3.0");
    bench.collect(&staged);

    let out = json_ok(&["install", "--all", "--json", "--device", s(&parked)]);
    let dropped = &out["installed"]["dropped"][0];
    assert_eq!(dropped["version"], "2.0", "{out}");
    assert_eq!(dropped["reason"]["code"], "SUPERSEDED", "{out}");
    assert!(
        dropped["reason"]["cause"]
            .as_str()
            .unwrap()
            .contains("the parked update to 2.0"),
        "{out}"
    );
    ok(&["reboot", "--device", s(&parked)]);
    assert_eq!(status(&parked)["version"], "3.0");
    bench.collect(&parked);
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
    no_download_retries(&device);
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
    // Download now, install later; cancels; the daemon's own decisions.
    staged_then_installed(&mut bench);
    stale_ticket_is_refreshed(&mut bench);
    cancelled_then_continued(&mut bench);
    downloads_that_fail_or_die(&mut bench, &proxy);
    the_agent_on_its_own(&mut bench);
    the_health_watch(&mut bench);

    // Chunk reuse, on a second server whose releases have chunked payloads: a natural
    // install (plan, batches, assembly), a fault and a kill as the downloader leaves
    // ASSEMBLING, then a corrupted chunk (fetched once more, then the full payload).
    let chunk_data = bench.tmp.path().join("server-chunks");
    publish_with(&chunk_data, &bench.v1, "1.0", &[]);
    publish_with(&chunk_data, &v2, "2.0", &[]);
    let chunk_server = Server::start(&chunk_data);
    let mut chunk_bench = Bench {
        tmp: tempfile::tempdir().unwrap(),
        data: chunk_data.clone(),
        v1: bench.v1.clone(),
        url: chunk_server.url(),
        n_devices: 0,
        seen: BTreeSet::new(),
    };
    let device = chunk_bench.device();
    ok(&["install", "vm-2.0", "--device", s(&device)]);
    ok(&["reboot", "--device", s(&device)]);
    chunk_bench.collect(&device);
    fail_in(&mut chunk_bench, "downloader", "ASSEMBLING");
    crash_in(&mut chunk_bench, "downloader", "ASSEMBLING");
    let chunks = std::fs::read_dir(chunk_data.join("artifacts/releases/vm/2.0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".chunks.zst"))
        .unwrap();
    let mut bytes = std::fs::read(&chunks).unwrap();
    bytes[100] ^= 0x40;
    std::fs::write(&chunks, bytes).unwrap();
    let device = chunk_bench.device();
    recovers(&device, "corrupted chunk");
    chunk_bench.collect(&device);
    bench.seen.extend(chunk_bench.seen.iter().cloned());

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

    // Last, as they change what the server offers and signs: the drops.
    not_signed_drops_the_staged_update(&mut bench);
    superseded_updates_are_dropped(&mut bench);

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
