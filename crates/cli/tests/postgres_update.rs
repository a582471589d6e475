//! The end-to-end update (issue 2's story) with the server on PostgreSQL instead of its
//! SQLite file: publish, enroll, personalize, download, install, reboot, report, every
//! server-side command pointed at a real PostgreSQL cluster this test starts
//! (`FERRY_DATABASE`). Skipped loudly when PostgreSQL is not installed (failed in CI).

mod common;

use common::*;

#[test]
fn v1_to_v2_with_the_server_on_postgresql() {
    let Some(pg) = postgres::Postgres::start() else {
        return;
    };
    use_database(pg.database());
    let f = fleet(6, |s| s.url());
    assert!(
        !f.root.join("server/ferry.db").exists(),
        "the server used PostgreSQL, not a SQLite file"
    );
    let list = ok(&["list", "--device", s(&f.device)]);
    assert!(
        list.contains("Label: vm-2.0") && list.contains("Recommended: YES"),
        "{list}"
    );
    let out = ok(&["install", "vm-2.0", "--json", "--device", s(&f.device)]);
    let installed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(installed["installed"]["slot"], "b");
    let reboot = ok(&["reboot", "--device", s(&f.device)]);
    assert!(reboot.contains("now running 2.0"), "{reboot}");
    let st = status(&f.device);
    assert_eq!(st["version"], "2.0");
    assert_eq!(st["slots"][1]["good"], true);
    // The device is in PostgreSQL: listed by `ferry server devices` (on the same database),
    // and its reports reached the fleet read side.
    let data = f.root.join("server");
    let devices = ok(&["server", "devices", "--data", s(&data), "--json"]);
    let devices: serde_json::Value = serde_json::from_str(&devices).unwrap();
    assert_eq!(devices.as_array().map(Vec::len), Some(1), "{devices}");
    let list = ok(&["list", "--device", s(&f.device)]);
    assert!(list.contains("No new software available."), "{list}");
}
