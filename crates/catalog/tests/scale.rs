//! Scale: 1,000 releases × 10 device classes, flat and in 256 hashed bins. Prints the sizes
//! (run with `--nocapture`) and checks that tough refreshes both layouts and finds the offers.

mod support;

use ferry_catalog::offer::select_offer;
use ferry_catalog::repo::{self, Bins, Expiries, RepoSettings};
use ferry_catalog::{DeviceQuery, NewTarget};
use ferry_types::{Sha256, Version};
use support::{Fixture, release};

const N_CLASSES: usize = 10;
const N_VERSIONS: usize = 1000;

fn catalog_targets() -> Vec<NewTarget> {
    let mut targets = Vec::with_capacity(N_CLASSES * N_VERSIONS);
    for class_idx in 0..N_CLASSES {
        for version_idx in 0..N_VERSIONS {
            let class = format!("class{class_idx}");
            let version = format!("1.{version_idx}");
            let name = format!("{class}-{version}.full");
            let sha256 = Sha256::of(name.as_bytes());
            let mut custom = release(&class, &version, &["customer", "beta"], None, &[0; 16]);
            custom["download_size"] = serde_json::json!(1_500_000_000u64);
            custom["unarchived_size"] = serde_json::json!(4_000_000_000u64);
            targets.push(NewTarget {
                name,
                length: 1_500_000_000,
                sha256,
                custom,
            });
        }
    }
    targets
}

/// The size of `dir/name`, which must exist and hold something: a wrong name must fail the
/// test, not measure 0 bytes and pass the size checks.
fn file_size(dir: &std::path::Path, name: &str) -> u64 {
    let path = dir.join(name);
    let metadata = std::fs::metadata(&path)
        .unwrap_or_else(|error| panic!("{} is not there to measure: {error}", path.display()));
    assert!(metadata.is_file(), "{} is not a file", path.display());
    assert!(metadata.len() > 0, "{} is empty", path.display());
    metadata.len()
}

async fn measure(bins: Bins) -> (u64, u64, u64, u64) {
    let fixture = Fixture::with_settings(RepoSettings {
        bins,
        ..RepoSettings::default()
    })
    .await;
    let started = std::time::Instant::now();
    repo::add_targets(
        &fixture.keys(),
        &fixture.online_keys(),
        &fixture.metadata(),
        catalog_targets(),
        &Expiries::default(),
    )
    .await
    .expect("publish 10,000 targets");
    let publish_ms = started.elapsed().as_millis();

    let started = std::time::Instant::now();
    let catalog = fixture.refresh().await.expect("refresh");
    let refresh_ms = started.elapsed().as_millis();
    assert_eq!(catalog.releases().len(), N_CLASSES * N_VERSIONS);
    let current = Version::parse("1.500").expect("version");
    let offer = select_offer(
        catalog.releases(),
        &DeviceQuery {
            device_class: "class7",
            audience: "beta",
            current_version: &current,
        },
    )
    .expect("offer");
    assert_eq!(
        offer.release.target.name,
        format!("class7-1.{}.full", N_VERSIONS - 1)
    );

    let versions = catalog.versions();
    let targets_size = file_size(
        &fixture.metadata(),
        &format!("{}.targets.json", versions.targets),
    );
    let snapshot_size = file_size(
        &fixture.metadata(),
        &format!("{}.snapshot.json", versions.snapshot),
    );
    let mut bins_total = 0;
    let mut bins_max = 0;
    for entry in std::fs::read_dir(fixture.metadata()).expect("read") {
        let entry = entry.expect("entry");
        let name = entry.file_name().into_string().expect("utf8");
        if name.starts_with("2.bins-") {
            let size = entry.metadata().expect("metadata").len();
            bins_total += size;
            bins_max = bins_max.max(size);
        }
    }
    println!(
        "{bins:?}: targets {targets_size} B, snapshot {snapshot_size} B, bins total {bins_total} B (largest {bins_max} B), publish {publish_ms} ms, refresh {refresh_ms} ms (debug build)"
    );

    // One more release touches one bin only (or the whole targets file when flat).
    let extra = NewTarget {
        name: "class0-2.0.full".into(),
        length: 1,
        sha256: Sha256::of(b"2.0"),
        custom: release("class0", "2.0", &["customer"], None, b"x"),
    };
    repo::add_targets(
        &fixture.keys(),
        &fixture.online_keys(),
        &fixture.metadata(),
        vec![extra],
        &Expiries::default(),
    )
    .await
    .expect("publish one more");
    let catalog = fixture.refresh().await.expect("refresh after one more");
    assert_eq!(catalog.releases().len(), N_CLASSES * N_VERSIONS + 1);
    (targets_size, snapshot_size, bins_total, bins_max)
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_releases_flat_and_in_hashed_bins() {
    let (flat_targets, _, _, _) = measure(Bins::None).await;
    let (binned_targets, binned_snapshot, bins_total, bins_max) =
        measure(Bins::TwoHundredFiftySix).await;
    assert!(
        flat_targets > 1_000_000,
        "flat targets metadata is large: {flat_targets} B"
    );
    assert!(
        binned_targets < 100_000,
        "with bins the top-level targets only delegates: {binned_targets} B"
    );
    assert!(bins_max < 100_000, "each bin stays small: {bins_max} B");
    assert!(bins_total > flat_targets / 2);
    assert!(binned_snapshot < 100_000, "{binned_snapshot} B");
}
