//! The end-to-end update (issue 2's story) with the server on PostgreSQL instead of its
//! SQLite file: publish, enroll, personalize, download, install, reboot, report, every
//! server-side command pointed at a real PostgreSQL cluster this test starts
//! (`FERRY_DATABASE`); then the same with the artifacts and the served catalog in S3 too
//! (`FERRY_STORE`, `s3s-fs`). Skipped loudly when PostgreSQL or s3s-fs is not installed
//! (failed in CI).

use crate::common::s3::postgres_and_s3;
use crate::common::*;

#[test]
fn v1_to_v2_with_the_server_on_postgresql() {
    let Some(pg) = postgres::Postgres::start() else {
        return;
    };
    use_database(pg.database());
    let f = fleet(6, |s| s.url());
    update_story(&f);
}

#[test]
fn v1_to_v2_with_the_server_on_postgresql_and_s3() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((pg, s3)) = postgres_and_s3(tmp.path()) else {
        return;
    };
    use_database(pg.database());
    use_store(s3.url());
    let f = fleet(6, |s| s.url());
    assert!(
        !f.root.join("server/artifacts/releases").exists(),
        "the releases are in the bucket, not the data directory"
    );
    assert_eq!(s3.find("releases/vm/2.0", ".payload.zst").len(), 1);
    assert!(s3.object("tuf/metadata/timestamp.json").exists());
    update_story(&f);
}

/// Install 2.0, reboot into it, and find the device and its reports on the server.
fn update_story(f: &Fleet) {
    assert!(
        !f.root.join("server/ferry.db").exists(),
        "the server used PostgreSQL, not a SQLite file"
    );
    lists_then_installs_2_0(&f.device);
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
