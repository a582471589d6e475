//! Issue 19's local faults, staged for real on a device talking to a loopback server: what
//! happens to the device itself (a damaged file in its TUF cache or key set, a system clock
//! that was ahead and is set right) is dealt with on the device, said with a code, and
//! recorded, without a new publish and without re-creating the device.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;

/// `faketime` (Debian package `faketime`), which moves the system clock of one process
/// (`LD_PRELOAD`): the device's clock, for real, while the server keeps the right time.
fn faketime() -> PathBuf {
    let path = PathBuf::from("/usr/bin/faketime");
    if path.exists() {
        return path;
    }
    match Command::new("faketime").arg("--version").output() {
        Ok(_) => PathBuf::from("faketime"),
        Err(_) => panic!(
            "faketime is not installed, so a device clock that is ahead cannot be staged: \
             install the Debian package faketime (.ci/run does)"
        ),
    }
}

/// `ferry ARGS` with the system clock moved by `offset` (`+300s`, `-2d`).
fn ferry_at(offset: &str, args: &[&str]) -> Output {
    Command::new(faketime())
        .args(["-f", offset, env!("CARGO_BIN_EXE_ferry")])
        .args(args)
        .env_remove("FERRY_DEVICE")
        .env("FERRY_LOG", "warn")
        .output()
        .expect("run ferry under faketime")
}

fn last_scan(device: &Path) -> serde_json::Value {
    status(device)["last_scan"].clone()
}

/// The codes of the warnings the last scan recorded.
fn scan_warnings(device: &Path) -> Vec<String> {
    last_scan(device)["warnings"]
        .as_array()
        .map(|warnings| {
            warnings
                .iter()
                .map(|w| w["code"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The newest `N.ROLE.json` the server serves.
fn newest(metadata: &Path, role: &str) -> String {
    let suffix = format!(".{role}.json");
    let mut versions: Vec<u64> = std::fs::read_dir(metadata)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(&suffix)?.parse().ok()
        })
        .collect();
    versions.sort_unstable();
    format!("{}{suffix}", versions.last().unwrap())
}

fn flip_middle_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

/// Issue 19, item 6: a file of the device's TUF cache that fails its check although it is
/// the version the repository lists is local damage: the scan discards it, fetches the file
/// again, says so (CATALOG_CACHE_DAMAGED, in `last-scan.json` and the repairs), and never
/// blames a proxy (CATALOG_MIX_AND_MATCH). Before, nothing said the cache was damaged.
#[test]
fn a_damaged_file_in_the_tuf_cache_is_fetched_again_and_said() {
    let f = fleet(2, |s| s.url());
    ok(&["list", "--device", s(&f.device)]);
    let metadata = f.server.data.join("tuf/metadata");
    for (file, served) in [
        ("timestamp.json", "timestamp.json".to_owned()),
        ("snapshot.json", newest(&metadata, "snapshot")),
        ("targets.json", newest(&metadata, "targets")),
    ] {
        let cached = f.device.join("tuf/current").join(file);
        assert_eq!(
            std::fs::read(&cached).unwrap(),
            std::fs::read(metadata.join(&served)).unwrap(),
            "the device keeps {file} as served"
        );
        flip_middle_byte(&cached);
        let out = run(&["list", "--json", "--device", s(&f.device)]);
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "{file}: {stderr}");
        assert!(
            stderr.contains("warning[CATALOG_CACHE_DAMAGED]") && stderr.contains(file),
            "{file}: {stderr}"
        );
        assert!(!stderr.contains("MIX_AND_MATCH"), "{file}: {stderr}");
        let offers: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(offers[0]["label"], "vm-2.0", "{file}");
        assert_eq!(
            scan_warnings(&f.device),
            ["CATALOG_CACHE_DAMAGED"],
            "{file}"
        );
        assert_eq!(
            std::fs::read(f.device.join("tuf/current").join(file)).unwrap(),
            std::fs::read(metadata.join(&served)).unwrap(),
            "{file} was fetched again"
        );
        // Repaired: the next scan finds nothing to say.
        let again = run(&["list", "--device", s(&f.device)]);
        assert!(!text(&again.stderr).contains("warning["), "{file}");
        assert_eq!(scan_warnings(&f.device), Vec::<String>::new());
    }
    // The latest known time: unreadable, it is dropped (and written again), not fatal.
    std::fs::write(f.device.join("tuf/current/latest_known_time"), b"\xff\xfe").unwrap();
    let out = run(&["list", "--device", s(&f.device)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("latest_known_time"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(repair_codes(&f.device), ["CATALOG_CACHE_DAMAGED"; 4]);
    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
}

/// Issue 19, item 9: a damaged key set file on the device is taken again from the verified
/// catalog (KEYSET_DAMAGED, recorded), not "re-create the device"; a boot check that meets
/// it before a scan names the scan as the fix.
#[test]
fn a_damaged_key_set_is_taken_again_from_the_catalog() {
    let f = fleet(2, |s| s.url());
    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
    ok(&["reboot", "--device", s(&f.device)]);
    let key_set = f.device.join("trust/personalization-keys.json");
    let good = std::fs::read(&key_set).unwrap();
    std::fs::write(&key_set, &good[..good.len() / 2]).unwrap();

    let out = run(&["boot-check", "--json", "--device", s(&f.device)]);
    assert!(!out.status.success());
    let error: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(error["error"]["code"], "KEYSET_DAMAGED", "{error}");
    assert!(
        error["error"]["fix"]
            .as_str()
            .unwrap()
            .contains("ferry list"),
        "{error}"
    );

    let out = run(&["list", "--device", s(&f.device)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("warning[KEYSET_DAMAGED]"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(&key_set).unwrap(), good, "taken again");
    assert_eq!(scan_warnings(&f.device), ["KEYSET_DAMAGED"]);
    assert_eq!(repair_codes(&f.device), ["KEYSET_DAMAGED"]);
    ok(&["boot-check", "--device", s(&f.device)]);
}

/// Issue 19, item 3: with the system clock 5 minutes ahead a scan succeeds (and says the
/// clock is ahead) and personalization rightly refuses (CLOCK_SKEW); once the clock is set
/// right, scans and the install work at once. Before, every scan failed
/// CATALOG_CLOCK_BACKWARDS for as long as the clock had been ahead.
#[test]
fn a_clock_that_was_ahead_does_not_lock_the_device_out_once_set_right() {
    let f = fleet(2, |s| s.url());
    let ahead = ferry_at("+300s", &["list", "--device", s(&f.device)]);
    assert!(ahead.status.success(), "{}", text(&ahead.stderr));
    assert!(
        text(&ahead.stderr).contains("warning[CATALOG_CLOCK_AHEAD]"),
        "{}",
        text(&ahead.stderr)
    );
    assert_eq!(scan_warnings(&f.device), ["CATALOG_CLOCK_AHEAD"]);
    let refused = ferry_at(
        "+300s",
        &["install", "vm-2.0", "--json", "--device", s(&f.device)],
    );
    assert_eq!(json_error_code(&refused), "CLOCK_SKEW");

    // The clock is set right: the very next scan works, and says nothing about the clock.
    let out = run(&["list", "--device", s(&f.device)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("warning["),
        "{}",
        text(&out.stderr)
    );
    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(status(&f.device)["version"], "2.0");
}

/// A device whose latest known time is already ahead (recorded before this fix, or while
/// the server's time could not be read) recovers too: expiry is checked against that time
/// (CATALOG_CLOCK_BEHIND), which is never moved back. Freeze attacks stay refused: with the
/// latest known time past the timestamp's expiry, a clock set back does not make the
/// timestamp pass (CATALOG_EXPIRED).
#[test]
fn a_clock_behind_the_latest_known_time_is_checked_against_that_time() {
    let f = fleet(2, |s| s.url());
    ok(&["list", "--device", s(&f.device)]);
    let latest_known = f.device.join("tuf/current/latest_known_time");
    let minutes_ahead = (chrono::Utc::now() + chrono::TimeDelta::minutes(5)).to_rfc3339();
    std::fs::write(&latest_known, &minutes_ahead).unwrap();
    let out = run(&["list", "--device", s(&f.device)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("warning[CATALOG_CLOCK_BEHIND]"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(scan_warnings(&f.device), ["CATALOG_CLOCK_BEHIND"]);
    let kept = std::fs::read_to_string(f.device.join("tuf/current/latest_known_time")).unwrap();
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(kept.trim()).unwrap(),
        chrono::DateTime::parse_from_rfc3339(&minutes_ahead).unwrap(),
        "the latest known time never moves back"
    );

    // The server's timestamp expires in a day: two days on, it is expired, whatever the
    // clock says now.
    let days_ahead = (chrono::Utc::now() + chrono::TimeDelta::days(2)).to_rfc3339();
    std::fs::write(f.device.join("tuf/current/latest_known_time"), days_ahead).unwrap();
    let out = run(&["list", "--json", "--device", s(&f.device)]);
    assert_eq!(
        json_error_code(&out),
        "CATALOG_EXPIRED",
        "{}",
        text(&out.stderr)
    );
}
