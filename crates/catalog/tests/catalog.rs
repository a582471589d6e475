//! The catalog end to end: a repository built with `repo`, served on loopback, refreshed by a
//! device with `Catalog`; each attack staged for real against the served files.

mod support;

use chrono::TimeDelta;
use ferry_catalog::DeviceQuery;
use ferry_catalog::offer::{list_full, select_offer};
use ferry_catalog::repo::{self, Expiries};
use ferry_types::{Diagnose, Version};
use support::{Fixture, publish_gateway_releases, release};

/// What a gateway with `current` in `audience` asks the catalog.
fn gw<'a>(audience: &'a str, current: &'a Version) -> DeviceQuery<'a> {
    DeviceQuery {
        device_class: "gw",
        audience,
        current_version: current,
    }
}

/// The one-file 2.0 release for customers, published after the gateway releases.
fn gw_2_0() -> [(&'static str, Vec<u8>, serde_json::Value); 1] {
    [(
        "gw-2.0.full",
        b"2.0".to_vec(),
        release("gw", "2.0", &["customer"], None, b"2.0"),
    )]
}

/// A one-byte target named `name`, no release in it.
fn bare_target(name: &str) -> ferry_catalog::NewTarget {
    ferry_catalog::NewTarget {
        name: name.into(),
        length: 1,
        sha256: ferry_types::Sha256::of(b"x"),
        custom: serde_json::json!({}),
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_then_offers_follow_audience_and_current_version() {
    let fixture = Fixture::new().await;
    publish_gateway_releases(&fixture).await;
    let catalog = fixture.refresh().await.expect("refresh");
    assert_eq!(
        catalog.releases().len(),
        4,
        "the manifest is a target, not a release"
    );
    assert!(catalog.rejected_releases().is_empty());

    let current = Version::parse("1.9").expect("version");
    let beta = select_offer(catalog.releases(), &gw("beta", &current)).expect("beta offer");
    assert_eq!(beta.version.to_string(), "1.11");
    assert_eq!(
        beta.release.target.name, "gw-1.11.full",
        "no 1.9→1.11 delta is published"
    );

    let customer =
        select_offer(catalog.releases(), &gw("customer", &current)).expect("customer offer");
    assert_eq!(
        customer.version.to_string(),
        "1.10",
        "the beta build is not offered to customers"
    );
    assert_eq!(customer.release.target.name, "gw-1.9-1.10.delta");

    let older = Version::parse("1.8").expect("version");
    let from_older = select_offer(catalog.releases(), &gw("customer", &older)).expect("offer");
    assert_eq!(
        from_older.release.target.name, "gw-1.10.full",
        "no delta from 1.8: the full image"
    );

    let full = list_full(catalog.releases(), &gw("customer", &current));
    assert_eq!(
        full.iter()
            .map(|r| r.target.name.as_str())
            .collect::<Vec<_>>(),
        ["gw-1.10.full", "gw-1.9.full"]
    );

    let manifest = catalog
        .read_target("gw-1.10.manifest")
        .await
        .expect("read manifest");
    assert_eq!(manifest, br#"{"chunks":3}"#);
    let unknown = catalog
        .read_target("gw-9.manifest")
        .await
        .expect_err("unknown target");
    assert_eq!(unknown.code(), "CATALOG_TARGET_UNKNOWN");
    assert_eq!(fixture.trusted_version("timestamp.json"), 2);
    assert_eq!(catalog.versions().targets, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_old_timestamp_is_a_rollback_and_keeps_the_trusted_metadata() {
    let fixture = Fixture::new().await;
    publish_gateway_releases(&fixture).await;
    let old_timestamp = std::fs::read(fixture.metadata().join("timestamp.json")).expect("read");
    fixture.publish(&gw_2_0()).await;
    fixture.refresh().await.expect("refresh");
    assert_eq!(fixture.trusted_version("timestamp.json"), 3);

    std::fs::write(fixture.metadata().join("timestamp.json"), old_timestamp).expect("replay");
    let error = fixture
        .refresh()
        .await
        .expect_err("rollback must be refused");
    assert_eq!(error.code(), "CATALOG_ROLLBACK", "{error}");
    assert_eq!(fixture.trusted_version("timestamp.json"), 3);
    assert_eq!(fixture.trusted_version("targets.json"), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_snapshot_is_refused() {
    let fixture = Fixture::new().await;
    publish_gateway_releases(&fixture).await;
    fixture.refresh().await.expect("refresh");
    let expired_snapshot = Expiries {
        snapshot: TimeDelta::hours(-1),
        ..Expiries::default()
    };
    fixture.publish_with(&gw_2_0(), &expired_snapshot).await;
    let error = fixture
        .refresh()
        .await
        .expect_err("expired snapshot must be refused");
    assert_eq!(error.code(), "CATALOG_EXPIRED", "{error}");
    assert!(error.to_string().contains("snapshot"), "{error}");
    assert_eq!(fixture.trusted_version("snapshot.json"), 2);
    assert_eq!(fixture.trusted_version("timestamp.json"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn targets_signed_by_a_revoked_key_are_refused() {
    let fixture = Fixture::new().await;
    publish_gateway_releases(&fixture).await;
    // The attacker keeps a copy of the repository and of the targets key before rotation.
    let stolen = fixture.dir.path().join("stolen");
    copy_dir(&fixture.keys(), &stolen.join("keys"));
    copy_dir(&fixture.metadata(), &stolen.join("metadata"));

    fixture.rotate_targets_key().await;
    let catalog = fixture.refresh().await.expect("refresh after rotation");
    assert_eq!(catalog.versions().root, 2);
    let trusted_targets = fixture.trusted_version("targets.json");

    // With the revoked key (and the online keys), the attacker signs a malicious release with
    // versions above the device's, and serves it next to the real root.
    for round in 0..3 {
        let name = format!("gw-9.{round}.full");
        let custom = release("gw", &format!("9.{round}"), &["customer"], None, b"evil");
        let sha256 = ferry_types::Sha256::of(b"evil");
        std::fs::write(
            fixture
                .targets()
                .join(repo::target_file_name(&name, &sha256)),
            b"evil",
        )
        .expect("write");
        let forged = ferry_catalog::NewTarget {
            name,
            length: 4,
            sha256,
            custom,
        };
        fixture
            .sign_targets(
                &stolen.join("keys"),
                &stolen.join("metadata"),
                vec![forged],
                &Expiries::default(),
            )
            .await
            .expect("attacker signs with the old key");
    }
    for entry in std::fs::read_dir(stolen.join("metadata")).expect("read") {
        let entry = entry.expect("entry");
        let name = entry.file_name().into_string().expect("utf8");
        if !name.ends_with(".root.json") {
            std::fs::copy(entry.path(), fixture.metadata().join(&name)).expect("serve forged");
        }
    }
    let error = fixture
        .refresh()
        .await
        .expect_err("revoked key must be refused");
    assert_eq!(error.code(), "CATALOG_BAD_SIGNATURE", "{error}");
    assert!(error.to_string().contains("targets"), "{error}");
    assert_eq!(fixture.trusted_version("targets.json"), trusted_targets);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_swapped_or_longer_target_is_refused() {
    let fixture = Fixture::new().await;
    publish_gateway_releases(&fixture).await;
    let catalog = fixture.refresh().await.expect("refresh");
    let manifest = catalog.target("gw-1.10.manifest").expect("listed");
    let served = fixture
        .targets()
        .join(repo::target_file_name(&manifest.name, &manifest.sha256));

    std::fs::write(&served, br#"{"chunks":9}"#).expect("swap, same length");
    let error = catalog
        .read_target("gw-1.10.manifest")
        .await
        .expect_err("swapped target");
    assert_eq!(error.code(), "CATALOG_TARGET_MISMATCH", "{error}");

    std::fs::write(&served, br#"{"chunks":3}     and more"#).expect("longer");
    let error = catalog
        .read_target("gw-1.10.manifest")
        .await
        .expect_err("longer target");
    assert_eq!(error.code(), "CATALOG_TARGET_TOO_LONG", "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_timestamp_is_cut_off() {
    let fixture = Fixture::new().await;
    publish_gateway_releases(&fixture).await;
    fixture.refresh().await.expect("refresh");
    fixture.server.make_endless("timestamp.json");
    let error = fixture.refresh().await.expect_err("endless data");
    assert_eq!(error.code(), "CATALOG_ENDLESS_DATA", "{error}");
    assert_eq!(fixture.trusted_version("timestamp.json"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn targets_that_do_not_match_the_snapshot_are_mix_and_match() {
    let fixture = Fixture::new().await;
    publish_gateway_releases(&fixture).await;
    fixture.refresh().await.expect("refresh");
    fixture.publish(&gw_2_0()).await;
    // A stale cache serves the previous targets under the new name.
    std::fs::copy(
        fixture.metadata().join("2.targets.json"),
        fixture.metadata().join("3.targets.json"),
    )
    .expect("mix");
    let error = fixture.refresh().await.expect_err("mix and match");
    assert_eq!(error.code(), "CATALOG_MIX_AND_MATCH", "{error}");
    assert_eq!(fixture.trusted_version("targets.json"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_is_reported_and_keeps_the_trusted_metadata() {
    let fixture = Fixture::new().await;
    publish_gateway_releases(&fixture).await;
    fixture.refresh().await.expect("refresh");
    fixture.server.stop();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let error = fixture.refresh().await.expect_err("server is down");
    assert_eq!(error.code(), "CATALOG_UNREACHABLE", "{error}");
    assert_eq!(fixture.trusted_version("timestamp.json"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_that_missed_several_root_versions_catches_up() {
    let fixture = Fixture::new().await;
    publish_gateway_releases(&fixture).await;
    fixture.refresh().await.expect("refresh on root 1");
    for _ in 0..3 {
        repo::rotate_root(&fixture.keys(), &fixture.metadata(), TimeDelta::days(365))
            .await
            .expect("rotate root");
    }
    fixture.rotate_targets_key().await;
    let catalog = fixture.refresh().await.expect("walk the root chain");
    assert_eq!(catalog.versions().root, 5);
    assert_eq!(fixture.trusted_version("root.json"), 5);
    assert_eq!(catalog.releases().len(), 4);

    // A new device pinned to root 1 also walks 1 → 5.
    let fresh = fixture.dir.path().join("fresh-device");
    let catalog = fixture
        .refresh_into(&fresh, &Default::default())
        .await
        .expect("fresh device");
    assert_eq!(catalog.versions().root, 5);
}

/// A kept root that no longer verifies (it did when it was stored) is local damage: the
/// refresh walks the chain again from the pinned root and says so, instead of failing every
/// scan with PINNED_ROOT_INVALID.
#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_kept_root_is_walked_again_from_the_pinned_root() {
    let fixture = Fixture::new().await;
    publish_gateway_releases(&fixture).await;
    repo::rotate_root(&fixture.keys(), &fixture.metadata(), TimeDelta::days(365))
        .await
        .expect("rotate root");
    fixture.refresh().await.expect("refresh to root 2");
    let kept = fixture.datastore().join("current/root.json");
    let mut bytes = std::fs::read(&kept).expect("kept root");
    let signature = bytes
        .windows(5)
        .position(|w| w == b"\"sig\"")
        .expect("a signature");
    let at = signature + 8;
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    std::fs::write(&kept, bytes).expect("damage");

    let catalog = fixture.refresh().await.expect("walked again");
    assert_eq!(catalog.versions().root, 2);
    let codes: Vec<&str> = catalog.warnings().iter().map(|w| w.code()).collect();
    assert_eq!(codes, ["CATALOG_CACHE_DAMAGED"], "{:?}", catalog.warnings());
    assert!(catalog.warnings()[0].to_string().contains("root.json"));
    let catalog = fixture.refresh().await.expect("repaired");
    assert!(catalog.warnings().is_empty(), "{:?}", catalog.warnings());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_timestamp_is_refreshed_on_its_own() {
    let fixture = Fixture::new().await;
    publish_gateway_releases(&fixture).await;
    assert!(!repo::needs_refresh(
        &fixture.metadata(),
        TimeDelta::hours(1)
    ));
    assert!(repo::needs_refresh(&fixture.metadata(), TimeDelta::days(2)));
    let version = repo::refresh_timestamp(
        &fixture.online_keys(),
        &fixture.metadata(),
        TimeDelta::days(3),
    )
    .await
    .expect("refresh");
    assert_eq!(version, 3);
    assert!(!repo::needs_refresh(
        &fixture.metadata(),
        TimeDelta::days(2)
    ));
    let catalog = fixture.refresh().await.expect("device refresh");
    assert_eq!(catalog.versions().timestamp, 3);
    assert_eq!(catalog.versions().snapshot, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_offline_keys_are_not_needed_to_refresh_the_timestamp() {
    let fixture = Fixture::new().await;
    std::fs::remove_dir_all(fixture.keys()).expect("take the offline keys away");
    repo::refresh_timestamp(
        &fixture.online_keys(),
        &fixture.metadata(),
        TimeDelta::days(1),
    )
    .await
    .expect("refresh");
    let error = fixture
        .sign_targets(
            &fixture.keys(),
            &fixture.metadata(),
            vec![bare_target("gw-1.0.full")],
            &Expiries::default(),
        )
        .await
        .expect_err("publishing needs the targets key");
    assert_eq!(error.code(), "CATALOG_SIGNING", "{error}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unsafe_target_names_are_refused() {
    let fixture = Fixture::new().await;
    for name in ["a/b", "../x", "", ".hidden", "sp ace"] {
        let error = fixture
            .sign_targets(
                &fixture.keys(),
                &fixture.metadata(),
                vec![bare_target(name)],
                &Expiries::default(),
            )
            .await
            .expect_err(name);
        assert_eq!(error.code(), "CATALOG_TARGET_NAME_INVALID", "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_refresh_verifies_without_changing_the_datastore_and_inspection_reads_it() {
    let fixture = Fixture::new().await;
    publish_gateway_releases(&fixture).await;
    let datastore = fixture.datastore();
    assert_eq!(ferry_catalog::stored_metadata(&datastore).unwrap(), None);
    let root = ferry_catalog::check_root(&fixture.pinned_root()).expect("the pinned root checks");
    assert_eq!(root.version, 1);

    fixture.refresh().await.expect("refresh");
    let stored = ferry_catalog::stored_metadata(&datastore)
        .unwrap()
        .expect("a generation");
    let roles: Vec<&str> = stored.roles.iter().map(|r| r.role).collect();
    assert_eq!(roles, ["root", "timestamp", "snapshot", "targets"]);
    assert_eq!(stored.first_to_expire().unwrap().role, "timestamp");
    assert!(stored.refreshed_at.is_some());

    // Another publish, then a dry run: it sees the new version, the datastore keeps the old.
    let before = fixture.trusted_version("timestamp.json");
    let payload = b"gw 2.0 payload".to_vec();
    let info = release("gw", "2.0", &["customer"], None, &payload);
    fixture.publish(&[("gw-2.0.full", payload, info)]).await;
    let options = ferry_catalog::RefreshOptions {
        dry_run: true,
        ..Default::default()
    };
    let seen = fixture
        .refresh_into(&datastore, &options)
        .await
        .expect("dry run");
    assert!(seen.versions().timestamp > before);
    assert_eq!(
        fixture.trusted_version("timestamp.json"),
        before,
        "nothing stored"
    );

    // A damaged root is named as such.
    let mut damaged = fixture.pinned_root();
    let at = damaged.len() / 2;
    damaged[at] ^= 0x01;
    let error = ferry_catalog::check_root(&damaged).unwrap_err();
    assert_eq!(error.code(), "CATALOG_PINNED_ROOT_INVALID");
}

#[tokio::test(flavor = "multi_thread")]
async fn refreshes_at_once_in_one_process_all_succeed_and_keep_two_generations() {
    // The daemon's background scan and a `ferry defer` it serves refresh the same
    // datastore; once they staged the same generation and removed each other's directory.
    let fixture = Fixture::new().await;
    publish_gateway_releases(&fixture).await;
    let (datastore, root) = (fixture.datastore(), fixture.pinned_root());
    let (metadata, targets) = (fixture.server.metadata_url(), fixture.server.targets_url());
    // Each on a task of its own, so that they run in parallel on the runtime's threads.
    let refreshes: Vec<_> = (0..8)
        .map(|_| {
            let (datastore, root) = (datastore.clone(), root.clone());
            let (metadata, targets) = (metadata.clone(), targets.clone());
            tokio::spawn(async move {
                ferry_catalog::Catalog::refresh(&datastore, &root, &metadata, &targets).await
            })
        })
        .collect();
    for refresh in refreshes {
        let catalog = refresh
            .await
            .expect("the task")
            .expect("every refresh succeeds");
        assert_eq!(catalog.releases().len(), 4);
    }
    let generations = std::fs::read_dir(fixture.datastore())
        .expect("datastore")
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("gen-"))
        .count();
    assert_eq!(generations, 2, "the current generation and the one before");
    assert!(ferry_catalog::trusted_metadata_dir(&fixture.datastore()).is_some());
}
