//! Issue 15's sizing and issue 19's full disk, on small filesystems the tests mount
//! (tmpfs, as root; skipped with a message where mounting is impossible): a cache too
//! small, a device too small for the update, and a disk another process fills during the
//! download — each a clear code before or instead of a wedged device, named first by the
//! doctor, and the install resumes once there is room.

use crate::common::doctor::*;
use crate::common::*;

#[test]
fn a_tiny_filesystem_for_the_cache_is_insufficient_space_before_any_download() {
    let mut tally = Tally::default();
    let f = fleet(2, |s| s.url());
    let cache = f.device.join("cache");
    std::fs::remove_dir_all(&cache).unwrap();
    let Some(_tmpfs) = Tmpfs::mount(&cache, "1m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    let report = doctor(&f.device, &[]);
    tally.named(
        "tiny filesystem for the cache",
        &report,
        "INSUFFICIENT_SPACE",
        "space",
    );
    let space = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "space")
        .unwrap();
    let short: Vec<&serde_json::Value> = space["evidence"]["filesystems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|fs| fs["needed"].as_u64() > fs["free"].as_u64())
        .collect();
    assert_eq!(
        short.len(),
        1,
        "only the cache's filesystem is short: {space:#}"
    );
    assert!(
        short[0]["path"].as_str().unwrap().ends_with("cache/spool"),
        "{space:#}"
    );
    let out = run(&["install", "vm-2.0", "--json", "--device", s(&f.device)]);
    assert_eq!(json_error_code(&out), "INSUFFICIENT_SPACE");
    assert!(
        downloader_journal(&f.device).is_empty(),
        "nothing was downloaded before the sizing failed"
    );
    assert_still_on_v1(&f);
}

#[test]
fn a_full_disk_fails_before_the_download_or_with_a_clear_code_and_the_install_resumes() {
    let mut tally = Tally::default();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_owned();
    let data = root.join("server");
    let (v1, v2) = (root.join("v1.img"), root.join("v2.img"));
    make_image(&v1, 1, 8);
    make_image(&v2, 2, 8);
    publish(&data, &v1, "1.0");
    publish(&data, &v2, "2.0");
    let server = Server::start(&data);
    let proxy = Proxy::start(server.addr);
    let device = root.join("device");
    // The device directory alone on a filesystem too small for the update (slot a takes
    // 8 MiB of the 20): the install fails up front, with the numbers, writing nothing.
    let Some(disk) = Tmpfs::mount(&device, "20m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    };
    device_init_into(&device, &v1, &proxy.url(), &data);
    let out = run(&["install", "vm-2.0", "--json", "--device", s(&device)]);
    let failed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(failed["error"]["code"], "INSUFFICIENT_SPACE", "{failed:#}");
    assert!(
        failed["error"]["cause"].as_str().unwrap().contains("needs"),
        "{failed:#}"
    );
    assert_eq!(
        failed["diagnosis"]["cause"]["code"], "INSUFFICIENT_SPACE",
        "{failed:#}"
    );
    assert!(temp_files(&device).is_empty(), "{:?}", temp_files(&device));
    // Still bootable and installable: boot control, status and a second try work.
    ok(&["reboot", "--device", s(&device)]);
    let out = run(&["install", "vm-2.0", "--json", "--device", s(&device)]);
    assert_eq!(
        json_error_code(&out),
        "INSUFFICIENT_SPACE",
        "the same clear code, not STATE_IO"
    );
    let report = doctor(&device, &[]);
    tally.named(
        "filesystem too small for the update",
        &report,
        "INSUFFICIENT_SPACE",
        "space",
    );

    // Room enough, then another process fills the disk while the download stalls.
    disk.resize("48m");
    let config = device.join("config.toml");
    let text_config = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text_config.replace("read_timeout_secs = 30", "read_timeout_secs = 3"),
    )
    .unwrap();
    no_download_retries(&device);
    proxy.set_fault(Fault::StallAfter(3 << 20));
    let installing = ferry()
        .args(["install", "vm-2.0", "--json", "--device", s(&device)])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_for(60, || proxy
        .max_forwarded
        .load(std::sync::atomic::Ordering::SeqCst)
        >= 3 << 20));
    // Another process keeps the disk full: what ferry frees (its spool) is taken again.
    let fill = device.join("filler.bin");
    let filler = Filler::start(&fill);
    let out = installing.wait_with_output().unwrap();
    let failed: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    assert_eq!(
        failed["error"]["code"], "DISK_FULL",
        "a clear code: {failed:#}"
    );
    assert!(
        temp_files(&device).is_empty(),
        "a failed write leaves no temp file: {:?}",
        temp_files(&device)
    );
    let report = doctor(&device, &[]);
    tally.named(
        "disk filled during the download",
        &report,
        "INSUFFICIENT_SPACE",
        "space",
    );
    assert_eq!(status(&device)["running_slot"], "a");
    ok(&["log", "replay", "--device", s(&device)]);

    // Space back: the install resumes where it stopped and completes.
    filler.stop();
    std::fs::remove_file(&fill).unwrap();
    proxy.set_fault(Fault::None);
    let out = ok(&["install", "vm-2.0", "--json", "--device", s(&device)]);
    let installed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let resumed = installed["installed"]["resumed_from_frame"]
        .as_u64()
        .unwrap();
    assert!(resumed > 0, "resumed, not restarted: {installed:#}");
    ok(&["reboot", "--device", s(&device)]);
    assert_eq!(status(&device)["version"], "2.0");
    let len = std::fs::metadata(&v1).unwrap().len();
    assert_eq!(
        slot_digest(&device.join("slots/a.img"), len),
        slot_digest(&v1, len),
        "slot a intact"
    );
}
