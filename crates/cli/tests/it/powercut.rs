//! Issue 19's power-cut harness: `kill -9` keeps what the kernel already has, a power cut
//! loses what was not fsynced. The device directory lives on `ferry-lazyfs` (a FUSE file
//! system that keeps un-synced data in memory and drops it at the cut); the whole update
//! — scan, personalize, a full, a delta or a chunk-reuse download, prepare, apply, reboot,
//! boot check and commit, the event outbox — runs on it, and the power is cut after a
//! random number of file system changes. Then the disk's durable state is mounted again
//! and the device must boot (`ferry reboot`), run exactly the old or exactly the new
//! version (the running slot's bytes are that version's image), finish the install, and
//! keep a journal that replays and an outbox that reads.
//!
//! `FERRY_POWERCUT_POINTS` sets how many cut points (default 6, for CI; `bench/powercut`
//! runs 1,000); `FERRY_POWERCUT_SEED` the random seed; `FERRY_POWERCUT_FIGURES` a file
//! the figures are written to as JSON; `FERRY_POWERCUT_KINDS` which updates (default
//! `full,delta,chunks`, taken in turn); `FERRY_POWERCUT_FORGET_DIR_SYNCS=1` checks the
//! harness itself (directory fsyncs do nothing until the cut: what it must then find). Needs root and FUSE: skipped,
//! saying so, when the machine has neither and `CI` is not set.

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Instant;

use crate::common::*;
use ferry_lazyfs::LazyFs;

/// Small images keep 1,000 points within the hour: 4 frames of 1 MiB.
const IMAGE_MIB: usize = 4;

/// One kind of update a point cuts: its own server (1.0 and 2.0, published so that 2.0
/// downloads this way), the proxy that counts what the device downloads, a device on 1.0
/// to copy, and the measures of a clean run.
struct Scenario {
    /// `full`, `delta` or `chunks` (the receipt's payload kind).
    kind: &'static str,
    _server: Server,
    proxy: Proxy,
    template: PathBuf,
    /// File system changes of a clean run (install, reboot): cut points are drawn below.
    ops: u64,
    /// Response bytes of a clean run, through the proxy.
    bytes: u64,
    /// The clean run's file system changes, described (`ferry_lazyfs::LazyFs::changes`).
    changes: Vec<String>,
}

impl Scenario {
    fn downloaded(&self) -> u64 {
        self.proxy.total_forwarded.load(Ordering::SeqCst)
    }
}

/// The images, and where the points run.
struct Bench {
    work: PathBuf,
    v1: PathBuf,
    v2: PathBuf,
    v1_digest: ferry_types::Sha256,
    v2_digest: ferry_types::Sha256,
    image_len: u64,
}

/// What one point found.
#[derive(Default)]
struct Findings {
    points: usize,
    cut: usize,
    bricked: Vec<String>,
    not_exact: Vec<String>,
    fell_back: Vec<String>,
    other: Vec<String>,
    redownloaded: Vec<u64>,
}

impl Findings {
    /// Writes the figures so far as JSON to `FERRY_POWERCUT_FIGURES`, if set (for runs
    /// split over several processes: `bench/powercut` merges them).
    fn write_figures(&self) {
        let Ok(path) = std::env::var("FERRY_POWERCUT_FIGURES") else {
            return;
        };
        let figures = serde_json::json!({
            "points": self.points,
            "cut": self.cut,
            "bricked": self.bricked,
            "not_exact": self.not_exact,
            "fell_back": self.fell_back,
            "other": self.other,
            "redownloaded": self.redownloaded,
        });
        std::fs::write(&path, figures.to_string()).expect("write the figures");
    }

    /// Every fault found, bricked first.
    fn faults(&self) -> Vec<&String> {
        self.bricked
            .iter()
            .chain(&self.not_exact)
            .chain(&self.fell_back)
            .chain(&self.other)
            .collect()
    }
}

/// A small deterministic random sequence (xorshift64*), seeded from the environment.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn copy_tree(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}

/// Runs `ferry ARGS --device DEVICE`; `pid` holds its process id while it runs, for the
/// cut to kill it as a power cut would.
fn ferry_on(device: &Path, args: &[&str], pid: &AtomicI32) -> Output {
    let child = ferry()
        .args(args)
        .args(["--device", s(device)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ferry");
    pid.store(child.id() as i32, Ordering::SeqCst);
    let out = child.wait_with_output().expect("wait for ferry");
    pid.store(0, Ordering::SeqCst);
    out
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?} signal {:?}: {} {}",
        out.status.code(),
        out.status.signal(),
        text(&out.stdout).trim(),
        text(&out.stderr).trim()
    )
}

impl Bench {
    fn new(work: &Path) -> Bench {
        let (v1, v2) = (work.join("v1.img"), work.join("v2.img"));
        make_image(&v1, 1, IMAGE_MIB);
        make_image(&v2, 2, IMAGE_MIB);
        let image_len = std::fs::metadata(&v1).unwrap().len();
        Bench {
            work: work.to_owned(),
            v1_digest: slot_digest(&v1, image_len),
            v2_digest: slot_digest(&v2, image_len),
            v1,
            v2,
            image_len,
        }
    }

    /// A server publishing 2.0 to download as `kind`, a device on 1.0, and a clean run of
    /// the update (no cut) to measure its changes and bytes.
    fn scenario(&self, kind: &'static str) -> Scenario {
        let data = self.work.join(format!("server-{kind}"));
        let (first, second): (&[&str], &[&str]) = match kind {
            "full" => (&["--no-chunks"], &["--no-chunks"]),
            "delta" => (&["--no-chunks"], &["--delta-from", "1.0", "--no-chunks"]),
            _ => (&[], &[]),
        };
        publish_with(&data, &self.v1, "1.0", first);
        publish_with(&data, &self.v2, "2.0", second);
        let server = Server::start(&data);
        let proxy = Proxy::start(server.addr);
        let template = self.work.join(format!("template-{kind}"));
        device_init(&template, &self.v1, "1.0", &proxy.url(), &data, "customer");
        let mut scenario = Scenario {
            kind,
            _server: server,
            proxy,
            template,
            ops: 0,
            bytes: 0,
            changes: Vec::new(),
        };

        let (backing, mnt) = self.fresh_device(&scenario);
        let before = scenario.downloaded();
        let lazy = LazyFs::mount(&backing, &mnt, None).unwrap();
        let pid = AtomicI32::new(0);
        let out = ferry_on(&mnt, &["install", "vm-2.0", "--json"], &pid);
        assert!(
            out.status.success(),
            "clean {kind} install: {}",
            describe(&out)
        );
        let installed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            installed["installed"]["payload_kind"], kind,
            "the {kind} scenario downloads as {kind}: {installed}"
        );
        let out = ferry_on(&mnt, &["reboot", "--json"], &pid);
        assert!(out.status.success(), "clean reboot: {}", describe(&out));
        scenario.ops = lazy.ops();
        scenario.changes = lazy.changes();
        lazy.sync_and_unmount().unwrap();
        scenario.bytes = scenario.downloaded() - before;
        scenario
    }

    /// A fresh copy of the scenario's device as the backing directory, and where to mount it.
    fn fresh_device(&self, scenario: &Scenario) -> (PathBuf, PathBuf) {
        let backing = self.work.join("backing");
        let mnt = self.work.join("mnt");
        let _ = std::fs::remove_dir_all(&backing);
        copy_tree(&scenario.template, &backing);
        std::fs::create_dir_all(&mnt).unwrap();
        (backing, mnt)
    }

    /// One point: the update of `scenario` with the power cut at change `cut_at`, then
    /// recovery and completion on the durable state.
    fn point(&self, scenario: &Scenario, cut_at: u64, found: &mut Findings) {
        let label = format!("{} cut at change {cut_at}", scenario.kind);
        found.points += 1;
        let (backing, mnt) = self.fresh_device(scenario);
        let before = scenario.downloaded();
        let target = "vm-2.0";

        // The update, until the power goes off.
        let lazy = LazyFs::mount(&backing, &mnt, Some(cut_at)).unwrap();
        if std::env::var_os("FERRY_POWERCUT_FORGET_DIR_SYNCS").is_some() {
            // Checks the harness: ferry as if it never synced a directory.
            lazy.forget_dir_syncs();
        }
        let pid = Arc::new(AtomicI32::new(0));
        let hook_pid = Arc::clone(&pid);
        lazy.on_cut(move || {
            let running = hook_pid.load(Ordering::SeqCst);
            if running > 0 {
                // SAFETY: kill(2) on a child this process started and has not reaped.
                unsafe { libc::kill(running, libc::SIGKILL) };
            }
        });
        let steps: [&[&str]; 2] = [&["install", target, "--json"], &["reboot", "--json"]];
        for step in steps {
            let out = ferry_on(&mnt, step, &pid);
            if lazy.is_cut() {
                break;
            }
            if !out.status.success() {
                found.other.push(format!(
                    "{label}: {step:?} failed before the cut: {}",
                    describe(&out)
                ));
            }
        }
        if lazy.is_cut() {
            found.cut += 1;
        }
        lazy.unmount_after_cut().unwrap();

        // Power back: the durable state boots.
        let lazy = LazyFs::mount(&backing, &mnt, None).unwrap();
        let pid = AtomicI32::new(0);
        let booted = ferry_on(&mnt, &["reboot", "--json"], &pid);
        match booted.status.code() {
            Some(0) => {}
            Some(1) => found.fell_back.push(format!(
                "{label}: the boot fell back: {}",
                describe(&booted)
            )),
            _ => {
                found
                    .bricked
                    .push(format!("{label}: no boot: {}", describe(&booted)));
                return;
            }
        }
        let Some(first) = self.running(&mnt, &label, found) else {
            return;
        };

        // Finish the update from there.
        if first != "2.0" {
            let resumed = ferry_on(&mnt, &["install", target, "--json"], &pid);
            let rebooted = ferry_on(&mnt, &["reboot", "--json"], &pid);
            if !resumed.status.success() || !rebooted.status.success() {
                found.not_exact.push(format!(
                    "{label}: the update did not finish: install {}; reboot {}",
                    describe(&resumed),
                    describe(&rebooted)
                ));
                return;
            }
        }
        match self.running(&mnt, &label, found) {
            Some(v) if v == "2.0" => {}
            Some(v) => {
                found
                    .not_exact
                    .push(format!("{label}: ends on {v}, not 2.0"));
                return;
            }
            None => return,
        }
        // The update lands the way it was published: a cut is no reason to abandon a delta
        // or chunk reuse for the full payload.
        let history = ferry_on(&mnt, &["history", "--json"], &pid);
        let last = serde_json::from_slice::<serde_json::Value>(&history.stdout)
            .ok()
            .and_then(|h| h.as_array().and_then(|a| a.last().cloned()))
            .unwrap_or_default();
        if last["payload_kind"] != scenario.kind || !last["fallback"].is_null() {
            found.other.push(format!(
                "{label}: landed as {} (fallback {})",
                last["payload_kind"], last["fallback"]
            ));
        }
        let replay = ferry_on(&mnt, &["log", "replay"], &pid);
        if !replay.status.success() {
            found.other.push(format!(
                "{label}: the journal does not replay: {}",
                describe(&replay)
            ));
        }
        if let Err(why) = outbox_reads(&mnt) {
            found.other.push(format!("{label}: {why}"));
        }
        drop(lazy);
        found
            .redownloaded
            .push((scenario.downloaded() - before).saturating_sub(scenario.bytes));
    }

    /// The running version, if it is exactly 1.0 or 2.0 (status says so and the running
    /// slot holds that image); else recorded.
    fn running(&self, device: &Path, label: &str, found: &mut Findings) -> Option<String> {
        let out = ferry_on(device, &["status", "--json"], &AtomicI32::new(0));
        if !out.status.success() {
            found
                .bricked
                .push(format!("{label}: status fails: {}", describe(&out)));
            return None;
        }
        let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let version = st["version"].as_str().unwrap_or_default().to_owned();
        let running = st["running_slot"].as_str().unwrap_or_default();
        let slot = device.join(format!("slots/{running}.img"));
        let expected = match version.as_str() {
            "1.0" => &self.v1_digest,
            "2.0" => &self.v2_digest,
            _ => {
                found
                    .not_exact
                    .push(format!("{label}: runs {version}, neither old nor new"));
                return None;
            }
        };
        let digest = ferry_agent::device::hash_prefix(&slot, self.image_len);
        if digest.as_ref().ok() != Some(expected) {
            found.not_exact.push(format!(
                "{label}: says {version} but slot {running} does not hold its image"
            ));
            return None;
        }
        Some(version)
    }
}

/// Every queued event report in `events/` parses.
fn outbox_reads(device: &Path) -> Result<(), String> {
    let dir = device.join("events");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".json") || ferry_durable::is_temp_name(&name) {
            continue;
        }
        let bytes = std::fs::read(entry.path()).map_err(|e| format!("events/{name}: {e}"))?;
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .map_err(|e| format!("events/{name} does not parse: {e}"))?;
    }
    Ok(())
}

fn median_max(values: &mut [u64]) -> (u64, u64) {
    values.sort_unstable();
    let median = values.get(values.len() / 2).copied().unwrap_or(0);
    (median, values.last().copied().unwrap_or(0))
}

/// Whether FUSE can be mounted here; if not, says so (CI must have it).
fn fuse_or_skip() -> bool {
    if let Err(why) = ferry_lazyfs::available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must be able to mount FUSE: {why}"
        );
        eprintln!("SKIPPED: the power-cut harness needs FUSE: {why}");
        return false;
    }
    true
}

/// The defect this harness found: chunk reuse removed its cache before the slot was
/// recorded as written, so a cut between the two resumed chunk reuse from an empty cache,
/// found every chunk corrupt and fell back to downloading the whole payload. Cuts at the
/// changes around the cache's removal (the slot's record, the unlink, in either order)
/// must cost no second download and land as chunk reuse.
#[test]
fn a_cut_as_chunk_reuse_finishes_costs_no_second_download() {
    if !fuse_or_skip() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let bench = Bench::new(tmp.path());
    let scenario = bench.scenario("chunks");
    let removed = scenario
        .changes
        .iter()
        .position(|c| c == "unlink chunks.payload")
        .expect("the clean run removed the chunk cache") as u64
        + 1;
    let mut found = Findings::default();
    for cut_at in [
        removed - 6,
        removed - 4,
        removed - 2,
        removed + 3,
        removed + 5,
    ] {
        bench.point(&scenario, cut_at, &mut found);
    }
    assert!(found.faults().is_empty(), "{:?}", found.faults());
    assert_eq!(found.cut, found.points, "every point cut the power");
    for again in &found.redownloaded {
        assert!(
            *again < 1 << 20,
            "{again} bytes downloaded again: {:?}",
            found.redownloaded
        );
    }
}

#[test]
fn power_cut_at_any_point_the_device_boots_and_ends_on_the_old_or_the_new_version() {
    if !fuse_or_skip() {
        return;
    }
    let n_points = env_u64("FERRY_POWERCUT_POINTS", 6) as usize;
    let seed = env_u64("FERRY_POWERCUT_SEED", 19);
    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let bench = Bench::new(tmp.path());
    let kinds =
        std::env::var("FERRY_POWERCUT_KINDS").unwrap_or_else(|_| "full,delta,chunks".into());
    let scenarios: Vec<Scenario> = kinds
        .split(',')
        .filter_map(|k| {
            ["full", "delta", "chunks"]
                .into_iter()
                .find(|known| *known == k)
        })
        .map(|kind| bench.scenario(kind))
        .collect();

    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut found = Findings::default();
    for i in 0..n_points {
        let scenario = &scenarios[i % scenarios.len()];
        let cut_at = 1 + rng.below(scenario.ops);
        let faults_before = found.faults().len();
        bench.point(scenario, cut_at, &mut found);
        // Shown as found: a long run is watched, not only read at its end.
        for fault in &found.faults()[faults_before..] {
            eprintln!("  found: {fault}");
        }
        if (i + 1) % 50 == 0 {
            eprintln!(
                "  {} points run, {:.0} s",
                i + 1,
                started.elapsed().as_secs_f64()
            );
            found.write_figures();
        }
    }

    let (median, max) = median_max(&mut found.redownloaded);
    found.write_figures();
    let kinds: Vec<String> = scenarios
        .iter()
        .map(|s| format!("{} {} changes {} B", s.kind, s.ops, s.bytes))
        .collect();
    eprintln!(
        "power-cut harness: {} points run ({} cut during the update), {} devices bricked, \
         {} installs not ending on exactly the old or the new version, {} boots fell back, \
         {} other faults; bytes re-downloaded median {median} max {max}; clean runs: {}; \
         seed {seed}; {:.0} s",
        found.points,
        found.cut,
        found.bricked.len(),
        found.not_exact.len(),
        found.fell_back.len(),
        found.other.len(),
        kinds.join(", "),
        started.elapsed().as_secs_f64()
    );
    for line in found.faults() {
        eprintln!("  {line}");
    }
    assert!(
        found.cut * 2 >= found.points,
        "most points cut the power during the update"
    );
    assert!(found.bricked.is_empty(), "bricked: {:?}", found.bricked);
    assert!(
        found.not_exact.is_empty(),
        "not exact: {:?}",
        found.not_exact
    );
    assert!(
        found.fell_back.is_empty(),
        "fell back: {:?}",
        found.fell_back
    );
    assert!(found.other.is_empty(), "other faults: {:?}", found.other);
}
