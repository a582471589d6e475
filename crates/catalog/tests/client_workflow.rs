//! The device's TUF client where tough's client was wrong (found by the tuf-conformance
//! suite), each case staged with the repository editor and served on loopback.

mod support;

use chrono::TimeDelta;
use ferry_catalog::repo::{self, Bins, RepoSettings};
use ferry_catalog::trusted_metadata_dir;
use ferry_types::{Diagnose, Sha256};
use sha2::Digest;
use support::{Fixture, publish_gateway_releases, release};

/// §5.4.3.1: a timestamp with the trusted version is not taken, even with other content.
#[tokio::test(flavor = "multi_thread")]
async fn a_timestamp_changed_without_a_version_bump_is_not_taken() {
    let fixture = Fixture::new().await;
    publish_gateway_releases(&fixture).await;
    let catalog = fixture.refresh().await.expect("refresh");
    let trusted_dir = trusted_metadata_dir(&fixture.datastore()).expect("trusted");
    let served = std::fs::read(fixture.metadata().join("timestamp.json")).expect("read");
    assert_eq!(
        std::fs::read(trusted_dir.join("timestamp.json")).expect("read"),
        served,
        "the device keeps the timestamp byte for byte as served"
    );
    let before = catalog.versions();

    fixture
        .resign_timestamp_same_version(|timestamp| {
            let meta = timestamp.meta.get_mut("snapshot.json").expect("meta");
            meta.version = meta.version.checked_add(98).expect("version");
            meta.length = None;
            meta.hashes = None;
        })
        .await;
    let catalog = fixture
        .refresh()
        .await
        .expect("the same version is not an error: the trusted timestamp is kept");
    assert_eq!(catalog.versions(), before);
    let trusted_dir = trusted_metadata_dir(&fixture.datastore()).expect("trusted");
    assert_eq!(
        std::fs::read(trusted_dir.join("timestamp.json")).expect("read"),
        served,
        "the changed timestamp is not stored"
    );
}

/// §5.4: an expired trusted timestamp is the rollback reference, not a reason to stop.
#[tokio::test(flavor = "multi_thread")]
async fn an_expired_local_timestamp_does_not_block_the_next_refresh() {
    let fixture = Fixture::new().await;
    publish_gateway_releases(&fixture).await;
    repo::refresh_timestamp(
        &fixture.online_keys(),
        &fixture.metadata(),
        TimeDelta::seconds(3),
    )
    .await
    .expect("short-lived timestamp");
    let catalog = fixture.refresh().await.expect("refresh");
    assert_eq!(catalog.versions().timestamp, 3);
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;

    let error = fixture
        .refresh()
        .await
        .expect_err("the served timestamp expired too");
    assert_eq!(error.code(), "CATALOG_EXPIRED", "{error}");
    fixture
        .publish(&[(
            "gw-2.0.full",
            b"2.0".to_vec(),
            release("gw", "2.0", &["customer"], None, b"2.0"),
        )])
        .await;
    let catalog = fixture
        .refresh()
        .await
        .expect("a new timestamp replaces the expired local one");
    assert_eq!(catalog.versions().timestamp, 4);
    assert!(catalog.target("gw-2.0.full").is_some());
}

/// §5.7.3: a target is checked against every hash the catalog signs, and one listed with an
/// algorithm the client cannot compute is refused rather than half-checked.
#[tokio::test(flavor = "multi_thread")]
async fn every_signed_hash_of_a_target_is_checked() {
    let fixture = Fixture::new().await;
    let files: [(&str, &[u8]); 3] = [
        ("good.bin", b"good bytes"),
        ("bad-sha512.bin", b"bytes"),
        ("unknown-hash.bin", b"more bytes"),
    ];
    fixture
        .publish(
            &files
                .iter()
                .map(|(name, bytes)| (*name, bytes.to_vec(), serde_json::json!({})))
                .collect::<Vec<_>>(),
        )
        .await;
    fixture
        .resign_targets_role("targets", |targets| {
            let mut hash = |name: &str, algorithm: &str, value: String| {
                let target_name = tough::TargetName::new(name).expect("name");
                let target = targets.targets.get_mut(&target_name).expect("listed");
                target
                    .hashes
                    ._extra
                    .insert(algorithm.into(), serde_json::Value::String(value));
            };
            hash(
                "good.bin",
                "sha512",
                hex::encode(sha2::Sha512::digest(b"good bytes")),
            );
            hash(
                "bad-sha512.bin",
                "sha512",
                hex::encode(sha2::Sha512::digest(b"other")),
            );
            hash("unknown-hash.bin", "blake9", "00".repeat(32));
        })
        .await;
    let catalog = fixture
        .refresh()
        .await
        .expect("targets with sha512 and unknown algorithms still parse");
    assert_eq!(
        catalog.read_target("good.bin").await.expect("good"),
        b"good bytes"
    );
    let error = catalog
        .read_target("bad-sha512.bin")
        .await
        .expect_err("the sha256 matches, the sha512 does not");
    assert_eq!(error.code(), "CATALOG_TARGET_MISMATCH", "{error}");
    assert!(error.to_string().contains("sha512"), "{error}");
    let error = catalog
        .read_target("unknown-hash.bin")
        .await
        .expect_err("an unknown algorithm cannot be checked");
    assert_eq!(error.code(), "CATALOG_HASH_UNSUPPORTED", "{error}");
}

/// §5.7.5: a delegated role is trusted only for the paths delegated to it; tough listed every
/// target of every role it loaded.
#[tokio::test(flavor = "multi_thread")]
async fn a_bin_cannot_sign_a_target_outside_its_prefix() {
    let fixture = Fixture::with_settings(RepoSettings {
        bins: Bins::Sixteen,
        ..RepoSettings::default()
    })
    .await;
    publish_gateway_releases(&fixture).await;
    let smuggled = "gw-9.9.full";
    let own_bin = hex::encode(sha2::Sha256::digest(smuggled))[..1].to_owned();
    let other_bin = if own_bin == "0" { "1" } else { "0" };
    fixture
        .resign_targets_role(&format!("bins-{other_bin}"), |bin| {
            let custom = release("gw", "9.9", &["customer"], None, b"evil");
            bin.targets.insert(
                tough::TargetName::new(smuggled).expect("name"),
                tough::schema::Target {
                    length: 4,
                    hashes: tough::schema::Hashes {
                        sha256: Sha256::of(b"evil").0.to_vec().into(),
                        _extra: Default::default(),
                    },
                    custom: custom
                        .as_object()
                        .expect("object")
                        .clone()
                        .into_iter()
                        .collect(),
                    _extra: Default::default(),
                },
            );
        })
        .await;
    let catalog = fixture.refresh().await.expect("refresh");
    assert!(
        catalog.target(smuggled).is_none(),
        "listed by the wrong bin"
    );
    assert!(
        catalog
            .releases()
            .iter()
            .all(|release| release.target.name != smuggled)
    );
    assert_eq!(
        catalog.releases().len(),
        4,
        "the real releases are all there"
    );
    assert!(catalog.target("gw-1.10.manifest").is_some());
}

/// §5.3.3: only "not found" (403/404) for the next root ends the root chain; tough took any
/// error as the end, so a fault hiding a new root let the refresh go on under the old one.
#[tokio::test(flavor = "multi_thread")]
async fn an_unanswered_next_root_fails_the_refresh() {
    let fixture = Fixture::new().await;
    publish_gateway_releases(&fixture).await;
    fixture.refresh().await.expect("refresh");
    repo::rotate_root(&fixture.keys(), &fixture.metadata(), TimeDelta::days(365))
        .await
        .expect("rotate root");
    fixture.server.make_unavailable("2.root.json");
    let error = fixture
        .refresh()
        .await
        .expect_err("the next root could not be fetched");
    // The fixture answers 503, which the device treats as CATALOG_THROTTLED (it waits,
    // honouring Retry-After, before its next scan): a failure all the same.
    assert_eq!(error.code(), "CATALOG_THROTTLED", "{error}");
    assert!(error.to_string().contains("2.root.json"), "{error}");
    assert_eq!(fixture.trusted_version("root.json"), 1);
}
