//! Issue 6's promises: a sealed slot is checked at every boot and anything off rolls
//! the device back to the slot that worked, with the cause named; three real
//! bootloader-environment backends; `veritysetup` accepts the device's trees.

use std::path::Path;
use std::process::Command;

use crate::common::*;

fn install_v2(device: &Path) {
    ok(&["install", "vm-2.0", "--device", s(device)]);
}

fn last_failure_code(device: &Path) -> String {
    status(device)["last_boot_failure"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn assert_fell_back(device: &Path, code: &str) {
    let st = status(device);
    assert_eq!(st["version"], "1.0", "{st}");
    assert_eq!(st["running_slot"], "a");
    assert_eq!(st["next_boot"], "a");
    assert_eq!(st["last_boot_failure"]["slot"], "b");
    assert_eq!(st["last_boot_failure"]["code"], code, "{st}");
}

#[test]
fn flipped_byte_in_new_slot_falls_back_and_names_seal_mismatch() {
    let f = fleet(2, |s| s.url());
    install_v2(&f.device);
    let slot_b = f.device.join("slots/b.img");
    let mut bytes = std::fs::read(&slot_b).unwrap();
    let block = 37;
    bytes[block * 4096 + 100] ^= 0x20;
    std::fs::write(&slot_b, bytes).unwrap();

    let out = run(&["reboot", "--device", s(&f.device)]);
    assert!(
        !out.status.success(),
        "a reboot that falls back reports failure"
    );
    assert!(
        text(&out.stdout).contains("Fell back to slot a"),
        "{}",
        text(&out.stdout)
    );
    assert_fell_back(&f.device, "SEAL_MISMATCH");
    let message = status(&f.device)["last_boot_failure"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains(&format!("block {block} is the first")),
        "the first bad block is named: {message}"
    );
    // The old slot keeps booting.
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(status(&f.device)["version"], "1.0");
}

#[test]
fn failing_health_check_rolls_back() {
    let f = fleet_with(
        2,
        &[
            "--health-check",
            "test \"$FERRY_VERSION\" != 2.0 || { echo 'service foo did not start' >&2; exit 3; }",
        ],
        |s| s.url(),
    );
    install_v2(&f.device);
    let out = run(&["reboot", "--device", s(&f.device)]);
    assert!(!out.status.success());
    assert_fell_back(&f.device, "HEALTH_CHECK_FAILED");
    let message = status(&f.device)["last_boot_failure"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("service foo did not start") && message.contains("exit status: 3"),
        "{message}"
    );
}

#[test]
fn three_crashed_boots_roll_back() {
    let f = fleet(2, |s| s.url());
    install_v2(&f.device);
    for tries_left in [2, 1, 0] {
        let out = ok(&["reboot", "--simulate-crash", "--device", s(&f.device)]);
        assert!(out.contains("crashed before its boot check"), "{out}");
        assert_eq!(status(&f.device)["slots"][1]["tries_left"], tries_left);
        assert_eq!(
            status(&f.device)["version"],
            "1.0",
            "nothing is committed by a crashed boot"
        );
    }
    ok(&["reboot", "--device", s(&f.device)]);
    assert_fell_back(&f.device, "BOOT_TRIES_EXHAUSTED");
}

#[test]
fn tree_of_another_release_is_refused() {
    let f = fleet(2, |s| s.url());
    install_v2(&f.device);
    // Slot a's tree belongs to release 1.0: put it where slot b's should be.
    std::fs::copy(
        f.device.join("slots/a.verity"),
        f.device.join("slots/b.verity"),
    )
    .unwrap();
    let out = run(&["reboot", "--device", s(&f.device)]);
    assert!(!out.status.success());
    let code = last_failure_code(&f.device);
    assert!(code.starts_with("SEAL_"), "refused by the seal, got {code}");
    assert_eq!(status(&f.device)["version"], "1.0");
}

#[test]
fn veritysetup_accepts_the_devices_trees() {
    let f = fleet(2, |s| s.url());
    install_v2(&f.device);
    ok(&["reboot", "--device", s(&f.device)]);
    let st = status(&f.device);
    for (idx, slot) in ["a", "b"].iter().enumerate() {
        let content = &st["slots"][idx]["content"];
        let root = content["seal"]["root_hash"].as_str().unwrap();
        let size = content["image_size"].as_u64().unwrap();
        // veritysetup verifies the whole data device: give it exactly the image.
        let image = f.root.join(format!("{slot}.data"));
        let bytes = std::fs::read(f.device.join(format!("slots/{slot}.img"))).unwrap();
        std::fs::write(&image, &bytes[..size as usize]).unwrap();
        let tree = f.device.join(content["seal"]["tree"].as_str().unwrap());
        let out = Command::new("veritysetup")
            .args(["verify", s(&image), s(&tree), root])
            .output()
            .expect("veritysetup must be installed (Debian package cryptsetup-bin)");
        assert!(
            out.status.success(),
            "veritysetup refused slot {slot}: {}",
            text(&out.stderr)
        );
    }
}

fn flip_byte(slot: &Path, block: usize) {
    let mut bytes = std::fs::read(slot).unwrap();
    bytes[block * 4096 + 100] ^= 0x20;
    std::fs::write(slot, bytes).unwrap();
}

/// Issue 19, item 2: a committed, running slot whose bytes change no longer boots (a real
/// device's dm-verity fails the read): the reboot falls back to the other slot, which is
/// good, says so and exits 1, and the damaged slot is no longer good, so the next install
/// rewrites it. Before, the reboot booted it again and `status` said good.
#[test]
fn a_committed_slot_whose_bytes_change_falls_back_at_reboot() {
    let f = fleet(2, |s| s.url());
    install_v2(&f.device);
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(status(&f.device)["running_slot"], "b");
    flip_byte(&f.device.join("slots/b.img"), 11);

    let out = run(&["reboot", "--json", "--device", s(&f.device)]);
    assert!(!out.status.success(), "a fall-back is a failure");
    let outcome: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outcome["running"], "a", "{outcome}");
    assert_eq!(outcome["version"], "1.0", "{outcome}");
    assert_eq!(outcome["fell_back"]["from"], "b", "{outcome}");
    assert_eq!(outcome["fell_back"]["failure"]["code"], "SEAL_MISMATCH");
    let st = status(&f.device);
    assert_eq!(st["running_slot"], "a", "{st}");
    assert_eq!(st["version"], "1.0", "{st}");
    assert_eq!(st["slots"][1]["good"], false, "{st}");
    assert_eq!(st["last_boot_failure"]["slot"], "b", "{st}");
    assert_eq!(last_failure_code(&f.device), "SEAL_MISMATCH");
    let text_out = run(&["reboot", "--device", s(&f.device)]);
    assert!(text_out.status.success(), "slot a boots cleanly now");

    // The next install rewrites the damaged slot and it boots again.
    install_v2(&f.device);
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(status(&f.device)["version"], "2.0");
    ok(&["boot-check", "--device", s(&f.device)]);
}

/// With no good slot to fall back to, the reboot stops with the code of the recovery to
/// take, and boot control is left as it was.
#[test]
fn a_damaged_slot_with_nothing_to_fall_back_to_names_the_recovery() {
    let f = fleet(2, |s| s.url());
    let before = status(&f.device);
    flip_byte(&f.device.join("slots/a.img"), 3);
    let out = run(&["reboot", "--json", "--device", s(&f.device)]);
    assert!(!out.status.success());
    let error: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(error["error"]["code"], "BOOT_REFLASH_REQUIRED", "{error}");
    let cause = error["error"]["cause"].as_str().unwrap();
    assert!(
        cause.contains("slot a")
            && cause.contains("block 3 is the first")
            && cause.contains("slot b"),
        "{cause}"
    );
    assert!(
        error["error"]["fix"]
            .as_str()
            .unwrap()
            .starts_with("Reflash"),
        "{error}"
    );
    assert_eq!(status(&f.device), before, "boot control unchanged");

    // A trial that fails its check, over a damaged primary, stops the same way.
    install_v2(&f.device);
    flip_byte(&f.device.join("slots/b.img"), 5);
    let out = run(&["reboot", "--json", "--device", s(&f.device)]);
    assert_eq!(json_error_code(&out), "BOOT_REFLASH_REQUIRED");
}

#[test]
fn doctor_names_a_corrupt_running_slot() {
    let f = fleet(2, |s| s.url());
    let out = run(&["doctor", "--json", "--device", s(&f.device)]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    let slot_a = f.device.join("slots/a.img");
    let mut bytes = std::fs::read(&slot_a).unwrap();
    bytes[5 * 4096] ^= 1;
    std::fs::write(&slot_a, bytes).unwrap();
    let out = run(&["doctor", "--json", "--device", s(&f.device)]);
    assert!(!out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let seal = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "running_slot_seal")
        .unwrap()
        .clone();
    assert_eq!(seal["problem"]["code"], "SEAL_MISMATCH", "{seal}");
    assert_eq!(
        report["cause"]["code"], "SEAL_MISMATCH",
        "named first: {report}"
    );
    assert!(
        seal["problem"]["cause"]
            .as_str()
            .unwrap()
            .contains("block 5 is the first"),
        "{seal}"
    );
}

#[test]
fn grub_environment_backend_updates_and_grub_editenv_reads_it() {
    let f = fleet_with(2, &["--boot", "grub"], |s| s.url());
    let env = f.device.join("boot/grubenv");
    install_v2(&f.device);
    let listed = grub_list(&env);
    assert!(
        listed.contains("ORDER=B A"),
        "the new slot is tried first: {listed}"
    );
    assert!(listed.contains("FERRY_TRIAL=B"), "{listed}");
    ok(&["reboot", "--device", s(&f.device)]);
    let listed = grub_list(&env);
    assert!(listed.contains("FERRY_PRIMARY=B"), "{listed}");
    assert_eq!(status(&f.device)["version"], "2.0");
}

fn grub_list(env: &Path) -> String {
    let out = Command::new("grub-editenv")
        .arg(env)
        .arg("list")
        .output()
        .expect("grub-editenv (Debian grub-common)");
    assert!(out.status.success(), "grub-editenv: {}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn uboot_environment_backend_updates_and_fw_printenv_reads_it() {
    let f = fleet_with(2, &["--boot", "uboot"], |s| s.url());
    let config = f.device.join("boot/fw_env.config");
    install_v2(&f.device);
    let printed = fw_printenv(&config);
    assert!(printed.contains("BOOT_ORDER=B A"), "{printed}");
    assert!(
        printed.contains("bootcmd=run ferry_boot"),
        "other variables are kept: {printed}"
    );
    ok(&["reboot", "--device", s(&f.device)]);
    assert!(fw_printenv(&config).contains("FERRY_PRIMARY=B"));
    assert_eq!(status(&f.device)["version"], "2.0");
    // A crashed boot is counted in the environment the bootloader reads.
    let g = fleet_with(2, &["--boot", "uboot"], |s| s.url());
    install_v2(&g.device);
    ok(&["reboot", "--simulate-crash", "--device", s(&g.device)]);
    assert!(fw_printenv(&g.device.join("boot/fw_env.config")).contains("BOOT_B_LEFT=2"));
}

fn fw_printenv(config: &Path) -> String {
    let out = Command::new("fw_printenv")
        .arg("-c")
        .arg(config)
        .output()
        .expect("fw_printenv (Debian libubootenv-tool)");
    assert!(out.status.success(), "fw_printenv: {}", text(&out.stderr));
    text(&out.stdout)
}
