//! What the doctor's tests share: running `ferry doctor --json`, the cause it names
//! first, the tally of injected causes (the figure), and the small filesystems the
//! space tests mount.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::*;

/// `ferry doctor --json [extra]` on `device` with `env`; the report and the wall time.
pub fn doctor_with(
    device: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (serde_json::Value, Duration) {
    let started = Instant::now();
    let out = ferry()
        .args(["doctor", "--json", "--device", s(device)])
        .args(extra)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let took = started.elapsed();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", text(&out.stdout), text(&out.stderr)));
    assert_eq!(
        out.status.success(),
        report["ok"] == true,
        "exit status follows ok: {report:#}"
    );
    (report, took)
}

pub fn doctor(device: &Path, env: &[(&str, &str)]) -> serde_json::Value {
    doctor_with(device, &[], env).0
}

/// The code the doctor names first, and its check.
pub fn cause(report: &serde_json::Value) -> (String, String) {
    (
        report["cause"]["code"]
            .as_str()
            .unwrap_or("none")
            .to_owned(),
        report["cause"]["check"]
            .as_str()
            .unwrap_or("none")
            .to_owned(),
    )
}

/// Injected causes and whether the doctor named them first: the figure.
#[derive(Default)]
pub struct Tally(Vec<(String, bool)>);

impl Tally {
    /// Asserts that `report` names `code` first (found by `check`) and counts it.
    pub fn named(&mut self, what: &str, report: &serde_json::Value, code: &str, check: &str) {
        let (found, by) = cause(report);
        self.0.push((what.to_owned(), found == code));
        assert_eq!(
            (found.as_str(), by.as_str()),
            (code, check),
            "{what}: the doctor named another cause first: {report:#}"
        );
        let failed = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == check)
            .unwrap();
        assert_eq!(failed["outcome"], "fail", "{what}: {failed:#}");
        assert!(
            !failed["problem"]["fix"]
                .as_str()
                .unwrap_or_default()
                .is_empty(),
            "{what}: every cause has its fix"
        );
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        let named = self.0.iter().filter(|(_, ok)| *ok).count();
        eprintln!(
            "doctor figure: {named} of {} injected causes named first: {}",
            self.0.len(),
            self.0
                .iter()
                .map(|(w, _)| w.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

/// The device runs 1.0 from slot a, untouched.
pub fn assert_still_on_v1(f: &Fleet) {
    let st = status(&f.device);
    assert_eq!(
        (st["version"].as_str(), st["running_slot"].as_str()),
        (Some("1.0"), Some("a")),
        "{st}"
    );
    let len = std::fs::metadata(&f.v1).unwrap().len();
    assert_eq!(
        slot_digest(&f.device.join("slots/a.img"), len),
        slot_digest(&f.v1, len),
        "slot a must be untouched"
    );
}

/// A tmpfs mounted by the test (root only), unmounted when dropped.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                s(dir),
            ])
            .status()
            .ok()?;
        status.success().then(|| Tmpfs(dir.to_owned()))
    }

    pub fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}"), s(&self.0)])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Temp files a write left behind anywhere under `dir`.
pub fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if entry
                .file_name()
                .to_str()
                .is_some_and(ferry_durable::is_temp_name)
            {
                found.push(path);
            }
        }
    }
    found
}

/// `device init` into `device` (an existing, empty mount point).
pub fn device_init_into(device: &Path, image: &Path, url: &str, data: &Path) {
    let slot_size = (8u64 << 20).to_string();
    device_init_with(
        device,
        image,
        "1.0",
        url,
        data,
        &["--slot-size", &slot_size],
    );
}

/// Another process filling a filesystem: it writes `path` until the filesystem is full,
/// and goes on taking whatever is freed until stopped.
pub struct Filler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Filler {
    pub fn start(path: &Path) -> Filler {
        use std::io::Write;
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut file = std::fs::File::create(path).unwrap();
        let block = vec![0x5au8; 1 << 16];
        while file.write_all(&block).is_ok() {}
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let page = [0x5au8; 4096];
            while !flag.load(Ordering::SeqCst) {
                if file.write_all(&page).is_err() {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        });
        Filler {
            stop,
            thread: Some(thread),
        }
    }

    pub fn stop(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
