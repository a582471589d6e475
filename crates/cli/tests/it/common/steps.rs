//! One step of a test story as the operator or the device takes it (a signing window, a
//! listed offer, an install), and what the tests read back afterwards.

use std::path::{Path, PathBuf};

use super::{ok, s};

/// `ferry server signing-window ACTION` (`open` or `close`) for build `build` of class `vm`.
pub fn signing_window(data: &Path, build: &str, action: &str) {
    ok(&[
        "server",
        "signing-window",
        "--data",
        s(data),
        "--class",
        "vm",
        "--build",
        build,
        action,
    ]);
}

/// The build id of the device's first offer (`ferry list`).
pub fn offered_build_id(device: &Path) -> String {
    let offers: serde_json::Value =
        serde_json::from_str(&ok(&["list", "--json", "--device", s(device)])).unwrap();
    offers[0]["build_id"].as_str().unwrap().to_owned()
}

/// The stored 2.0 artifact whose name ends with `suffix`, and its size.
pub fn artifact(data: &Path, suffix: &str) -> (PathBuf, u64) {
    let dir = data.join("artifacts/releases/vm/2.0");
    let path = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(suffix))
        .unwrap_or_else(|| panic!("no {suffix} in {}", dir.display()));
    let size = std::fs::metadata(&path).unwrap().len();
    (path, size)
}

/// The codes of the repairs the device recorded for the doctor.
pub fn repair_codes(device: &Path) -> Vec<String> {
    let device = ferry_agent::device::Device::open(device).unwrap();
    ferry_agent::journal::repairs(&device)
        .unwrap()
        .into_iter()
        .map(|r| r.report.code)
        .collect()
}

/// `ferry list` recommends 2.0 and `ferry install vm-2.0` writes it to slot b: its answer.
pub fn lists_then_installs_2_0(device: &Path) -> serde_json::Value {
    let list = ok(&["list", "--device", s(device)]);
    assert!(
        list.contains("Label: vm-2.0") && list.contains("Recommended: YES"),
        "{list}"
    );
    let out = ok(&["install", "vm-2.0", "--json", "--device", s(device)]);
    let installed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(installed["installed"]["slot"], "b");
    installed
}
