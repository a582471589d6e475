//! Issue 3's crash harness: an install runs as a child process and is killed with
//! SIGKILL at points spread over the whole run (after the Nth journal record, and
//! after N payload bytes); the next `ferry install` must resume and finish, slot a must
//! be untouched until the switch, and `ferry log replay` must reproduce the journal.
//! `FERRY_CRASH_POINTS` sets how many points (default 26; `bench/crash` runs 200).

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::common::*;

const IMAGE_MIB: usize = 8;
/// The payload's write unit: one 1 MiB frame.
const FRAME_BYTES: u64 = 1 << 20;

/// The server both harnesses install from (1.0 and 2.0 published in `root/server` by the
/// test), and new devices on 1.0 whose slot a must keep `v1`'s bytes until the switch.
struct Origin {
    root: PathBuf,
    v1: PathBuf,
    server: Server,
    v1_len: u64,
    v1_digest: ferry_types::Sha256,
    devices: std::cell::Cell<u32>,
}

impl Origin {
    fn start(root: &Path, v1: &Path) -> Origin {
        let v1_len = std::fs::metadata(v1).unwrap().len();
        Origin {
            root: root.to_owned(),
            v1: v1.to_owned(),
            server: Server::start(&root.join("server")),
            v1_len,
            v1_digest: slot_digest(v1, v1_len),
            devices: Default::default(),
        }
    }

    /// A new device on 1.0, enrolled, in `root/deviceN`.
    fn new_device(&self) -> PathBuf {
        self.devices.set(self.devices.get() + 1);
        let dir = self.root.join(format!("device{}", self.devices.get()));
        let data = &self.server.data;
        device_init(&dir, &self.v1, "1.0", &self.server.url(), data, "customer");
        dir
    }
}

struct Point {
    var: &'static str,
    at: u64,
}

fn journal_records(device: &Path) -> u64 {
    std::fs::read_to_string(device.join("journal/journal.jsonl"))
        .map_or(0, |t| t.lines().count() as u64)
}

/// Runs `ferry install vm-2.0 --json` killed by `var=at`: whether the kill happened.
fn install_killed_at(device: &Path, var: &str, at: u64) -> bool {
    let crashed = ferry()
        .args(["install", "vm-2.0", "--json", "--device", s(device)])
        .env(var, at.to_string())
        .output()
        .unwrap();
    let killed = crashed.status.signal() == Some(9);
    assert!(
        killed || crashed.status.success(),
        "{var}={at} ended neither killed nor done: {}",
        text(&crashed.stdout)
    );
    killed
}

#[test]
fn killed_at_any_point_the_install_resumes_and_the_journal_replays() {
    let n_points: usize = std::env::var("FERRY_CRASH_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(26);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("server");
    let (v1, v2) = (tmp.path().join("v1.img"), tmp.path().join("v2.img"));
    make_image(&v1, 1, IMAGE_MIB);
    make_image(&v2, 2, IMAGE_MIB);
    publish(&data, &v1, "1.0");
    publish(&data, &v2, "2.0");
    let origin = Origin::start(tmp.path(), &v1);
    let (v1_len, v1_digest) = (origin.v1_len, origin.v1_digest);
    let new_device = || origin.new_device();

    // A clean run measures the whole: records written and payload size.
    let probe = new_device();
    let before = journal_records(&probe);
    let started = Instant::now();
    let clean: serde_json::Value =
        serde_json::from_str(&ok(&["install", "vm-2.0", "--json", "--device", s(&probe)])).unwrap();
    let clean_secs = started.elapsed().as_secs_f64();
    let records = journal_records(&probe) - before;
    let payload = clean["installed"]["bytes_downloaded"].as_u64().unwrap();
    let journal_bytes = std::fs::metadata(probe.join("journal/journal.jsonl"))
        .unwrap()
        .len();

    // Points: half by record count (all of them when there are few), half by bytes.
    let n_record_points = (n_points / 2).max(1);
    let mut points = Vec::new();
    for i in 0..n_record_points {
        points.push(Point {
            var: "FERRY_CRASH_AFTER_RECORDS",
            at: 1 + (i as u64 * records) / n_record_points as u64,
        });
    }
    let n_byte_points = n_points - n_record_points;
    for i in 0..n_byte_points {
        points.push(Point {
            var: "FERRY_CRASH_AFTER_BYTES",
            at: 1 + (i as u64 * payload) / n_byte_points.max(1) as u64,
        });
    }

    let mut redownloaded = Vec::new();
    let mut resume_secs = Vec::new();
    // Every point lies inside the clean run (a record or a byte it reached), so every one
    // must really kill the install: a point that only let it finish tested no crash.
    let mut n_killed = 0;
    let mut not_killed = Vec::new();
    for point in &points {
        let device = new_device();
        let crashed = ferry()
            .args(["install", "vm-2.0", "--json", "--device", s(&device)])
            .env(point.var, point.at.to_string())
            .output()
            .unwrap();
        let killed = crashed.status.signal() == Some(9);
        assert!(
            killed || crashed.status.success(),
            "{}={} ended neither killed nor done: {}",
            point.var,
            point.at,
            text(&crashed.stdout)
        );
        if killed {
            n_killed += 1;
        } else {
            not_killed.push(format!("{}={}", point.var, point.at));
        }
        assert_eq!(
            slot_digest(&device.join("slots/a.img"), v1_len),
            v1_digest,
            "slot a changed ({}={})",
            point.var,
            point.at
        );
        let st = status(&device);
        assert_eq!(st["version"], "1.0", "{}={}: {st}", point.var, point.at);
        assert_eq!(st["running_slot"], "a");

        let started = Instant::now();
        let resumed = run(&["install", "vm-2.0", "--json", "--device", s(&device)]);
        resume_secs.push(started.elapsed().as_secs_f64());
        assert!(
            resumed.status.success(),
            "resume after {}={} failed: {}",
            point.var,
            point.at,
            text(&resumed.stdout)
        );
        let resumed: serde_json::Value = serde_json::from_slice(&resumed.stdout).unwrap();
        if point.var == "FERRY_CRASH_AFTER_BYTES" && killed {
            let again = resumed["installed"]["bytes_downloaded"]
                .as_u64()
                .unwrap_or(0);
            let lost = (point.at + again).saturating_sub(payload);
            // Issue 3's goal: a kill costs at most the one frame (write unit) that
            // was still arriving; everything received before it was spooled.
            assert!(
                lost <= FRAME_BYTES,
                "{}={}: {lost} bytes downloaded twice",
                point.var,
                point.at
            );
            redownloaded.push(lost);
        }
        assert_eq!(
            slot_digest(&device.join("slots/a.img"), v1_len),
            v1_digest,
            "slot a changed before the switch"
        );
        let replay = run(&["log", "replay", "--device", s(&device)]);
        assert!(
            replay.status.success(),
            "replay after {}={}: {}{}",
            point.var,
            point.at,
            text(&replay.stdout),
            text(&replay.stderr)
        );
        ok(&["reboot", "--device", s(&device)]);
        let st = status(&device);
        assert_eq!(st["version"], "2.0", "{}={}: {st}", point.var, point.at);
        assert_eq!(st["running_slot"], "b");
        ok(&["log", "replay", "--device", s(&device)]);
    }
    assert_eq!(
        n_killed,
        points.len(),
        "the injected kill never happened at {not_killed:?}"
    );
    assert_eq!(
        redownloaded.len(),
        n_byte_points,
        "every byte point was measured"
    );
    redownloaded.sort_unstable();
    let max = redownloaded.last().copied().unwrap_or(0);
    let median = redownloaded
        .get(redownloaded.len() / 2)
        .copied()
        .unwrap_or(0);
    let mean_resume = resume_secs.iter().sum::<f64>() / resume_secs.len().max(1) as f64;
    eprintln!(
        "crash harness: {} points, {n_killed} killed ({} by record over {records} records, {} by byte over {payload} bytes); \
         re-downloaded per byte-point crash: median {median} B, max {max} B; resume run mean {mean_resume:.2} s \
         (clean install {clean_secs:.2} s); journal {journal_bytes} B for one install",
        points.len(),
        n_record_points,
        n_byte_points
    );
}

/// Cuts the last journal line in half (a power cut mid-append) or appends garbage.
fn tear_journal_tail(device: &Path, garbage: bool) {
    let journal = device.join("journal/journal.jsonl");
    let mut bytes = std::fs::read(&journal).unwrap();
    if garbage {
        bytes.extend_from_slice(b"\x00\x17{not json at all\xff\xfe");
    } else {
        let body = &bytes[..bytes.len() - 1];
        let start = body.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
        let cut = start + (bytes.len() - start) / 2;
        bytes.truncate(cut);
    }
    std::fs::write(&journal, &bytes).unwrap();
}

/// `v1` with `fresh_mib` MiB in its middle replaced by bytes found nowhere in it: the
/// chunked payload of such a release holds one long run of fresh chunks, which chunk reuse
/// fetches as one large batch (the 12.6 MB batch of issue 19, item 5).
fn image_with_fresh_region(v1: &Path, out: &Path, fresh_mib: usize) {
    let mut bytes = std::fs::read(v1).unwrap();
    let start = (bytes.len() - (fresh_mib << 20)) / 2 / 4096 * 4096;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for chunk in bytes[start..start + (fresh_mib << 20)].chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(out, bytes).unwrap();
}

/// Issue 19, item 5: a chunk-reuse download killed anywhere re-fetches at most one frame's
/// worth of chunk bytes (1 MiB: a checkpoint every
/// [`ferry_agent::install::chunks::CHECKPOINT_BYTES`] plus the network read in hand), plus
/// the index each run fetches, however large its batch is.
/// It fetched the whole batch again (12.6 MB) before. `FERRY_CRASH_POINTS` sets the number
/// of byte points (default 8).
#[test]
fn killed_at_any_point_a_chunk_reuse_download_loses_at_most_one_checkpoint() {
    let n_points: usize = std::env::var("FERRY_CRASH_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(8, |n: usize| (n / 4).max(1));
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("server");
    let (v1, v2) = (tmp.path().join("v1.img"), tmp.path().join("v2.img"));
    make_image(&v1, 1, 12);
    image_with_fresh_region(&v1, &v2, 6);
    publish_with(&data, &v1, "1.0", &[]);
    publish_with(&data, &v2, "2.0", &[]);
    let origin = Origin::start(tmp.path(), &v1);
    let (v1_len, v1_digest) = (origin.v1_len, origin.v1_digest);
    let new_device = || origin.new_device();

    let probe = new_device();
    let clean: serde_json::Value =
        serde_json::from_str(&ok(&["install", "vm-2.0", "--json", "--device", s(&probe)])).unwrap();
    assert_eq!(clean["installed"]["payload_kind"], "chunks", "{clean}");
    let total = clean["installed"]["bytes_downloaded"].as_u64().unwrap();
    let plan = downloader_journal(&probe)
        .into_iter()
        .find_map(|r| r["data"].get("plan").cloned())
        .expect("the plan is journaled");
    let max_batch = plan["max_batch_bytes"].as_u64().unwrap();
    assert!(
        max_batch > 4 * ferry_agent::install::chunks::CHECKPOINT_BYTES,
        "a batch much larger than a checkpoint: {plan}"
    );
    let index_size = total - plan["download_bytes"].as_u64().unwrap();
    let framing = 16 << 10; // multipart part headers

    let mut lost_bytes = Vec::new();
    for i in 0..n_points {
        let at = index_size + 1 + (i as u64 * (total - index_size)) / n_points as u64;
        let device = new_device();
        assert!(
            install_killed_at(&device, "FERRY_CRASH_AFTER_BYTES", at),
            "the kill at byte {at} happened"
        );
        assert_eq!(slot_digest(&device.join("slots/a.img"), v1_len), v1_digest);
        assert_eq!(status(&device)["version"], "1.0");
        let resumed: serde_json::Value = serde_json::from_str(&ok(&[
            "install",
            "vm-2.0",
            "--json",
            "--device",
            s(&device),
        ]))
        .unwrap();
        assert_eq!(resumed["installed"]["payload_kind"], "chunks", "{resumed}");
        let again = resumed["installed"]["bytes_downloaded"].as_u64().unwrap();
        let lost = (at + again).saturating_sub(total);
        assert!(
            lost <= FRAME_BYTES + index_size + framing,
            "killed at byte {at} of {total}: {lost} bytes downloaded twice (index {index_size} B)"
        );
        lost_bytes.push(lost);
        ok(&["log", "replay", "--device", s(&device)]);
        ok(&["reboot", "--device", s(&device)]);
        assert_eq!(status(&device)["version"], "2.0");
    }
    lost_bytes.sort_unstable();
    eprintln!(
        "crash harness (chunk reuse): {n_points} byte points over {total} bytes (largest batch \
         {max_batch} B, index {index_size} B); re-downloaded per crash: median {} B, max {} B",
        lost_bytes[lost_bytes.len() / 2],
        lost_bytes.last().unwrap()
    );
}

#[test]
fn torn_journal_tail_is_reported_and_the_next_install_works() {
    for garbage in [false, true] {
        let f = fleet(2, |s| s.url());
        ok(&["list", "--device", s(&f.device)]);
        tear_journal_tail(&f.device, garbage);
        let out = run(&["install", "vm-2.0", "--json", "--device", s(&f.device)]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("warning[JOURNAL_TORN]"),
            "the code is reported: {}",
            text(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["installed"]["warnings"][0]["code"], "JOURNAL_TORN");
        ok(&["reboot", "--device", s(&f.device)]);
        assert_eq!(status(&f.device)["version"], "2.0");
        ok(&["log", "replay", "--device", s(&f.device)]);
        // A cut last line was also a transition a state file holds: restored from it.
        let expected: &[&str] = if garbage {
            &["JOURNAL_TORN"]
        } else {
            &["JOURNAL_TORN", "JOURNAL_RECORD_RESTORED"]
        };
        assert_eq!(repair_codes(&f.device), expected);
    }
}

/// Issue 19, item 8: whichever command meets a torn tail first repairs it, reports it and
/// records it for the doctor; `ferry list` used to cut it silently.
#[test]
fn a_torn_journal_tail_met_first_by_list_is_reported_and_recorded() {
    let f = fleet(2, |s| s.url());
    ok(&["list", "--device", s(&f.device)]);
    tear_journal_tail(&f.device, false);
    let out = run(&["list", "--json", "--device", s(&f.device)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("warning[JOURNAL_TORN]"), "{stderr}");
    assert!(stderr.contains("fix: "), "{stderr}");
    let offers: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(offers[0]["label"], "vm-2.0", "stdout is still the answer");
    let repairs = repair_codes(&f.device);
    assert_eq!(
        repairs,
        ["JOURNAL_TORN", "JOURNAL_RECORD_RESTORED"],
        "the cut record came back from its state file"
    );
    // Repaired once: the next command meets a whole journal and says nothing.
    let again = run(&["list", "--device", s(&f.device)]);
    assert!(
        !text(&again.stderr).contains("warning["),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(repair_codes(&f.device), repairs);
    ok(&["log", "replay", "--device", s(&f.device)]);
}

/// Issue 19, item 7: every per-instance state file overwritten after a kill. The install
/// restarts the update (warning STATE_CORRUPT) and finishes; the restarts are journaled, so
/// `ferry log replay` still checks the whole journal (it failed REPLAY_DIVERGED).
#[test]
fn corrupt_persisted_state_is_reported_and_the_device_falls_back_safely() {
    let f = fleet(4, |s| s.url());
    // Crash mid-download, then garble every machine's state files.
    let crashed = ferry()
        .args(["install", "vm-2.0", "--device", s(&f.device)])
        .env("FERRY_CRASH_AFTER_BYTES", (2u64 << 20).to_string())
        .output()
        .unwrap();
    assert_eq!(crashed.status.signal(), Some(9));
    let mut n_garbled = 0;
    for machine in std::fs::read_dir(f.device.join("state")).unwrap() {
        for file in std::fs::read_dir(machine.unwrap().path()).unwrap() {
            std::fs::write(file.unwrap().path(), b"{\"format\":1,\"state\":\"DOWNLOAD").unwrap();
            n_garbled += 1;
        }
    }
    assert!(
        n_garbled >= 4,
        "update, controller, downloader, scans: {n_garbled}"
    );
    let out = run(&["install", "vm-2.0", "--json", "--device", s(&f.device)]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).contains("warning[STATE_CORRUPT]"),
        "{}",
        text(&out.stderr)
    );
    let replay = run(&["log", "replay", "--device", s(&f.device)]);
    assert!(
        replay.status.success(),
        "{}{}",
        text(&replay.stdout),
        text(&replay.stderr)
    );
    let journal = std::fs::read_to_string(f.device.join("journal/journal.jsonl")).unwrap();
    assert_eq!(
        journal.matches(ferry_fsm::RESTART_EVENT).count(),
        n_garbled,
        "one restart record per garbled state file"
    );
    let repairs = repair_codes(&f.device);
    assert_eq!(repairs.len(), n_garbled, "{repairs:?}");
    assert!(
        repairs.iter().all(|code| code == "STATE_CORRUPT"),
        "{repairs:?}"
    );
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(status(&f.device)["version"], "2.0");
    ok(&["log", "replay", "--device", s(&f.device)]);
}
