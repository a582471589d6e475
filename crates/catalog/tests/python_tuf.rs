//! Independence check: python-tuf's ngclient (a different TUF implementation) refreshes the
//! catalog from the test server and downloads a target with its hashes verified, and the
//! tuf-conformance protocol functions do the same in-process.

mod support;

use ferry_catalog::conformance::{tuf_download, tuf_init, tuf_refresh};
use std::path::{Path, PathBuf};
use support::{Fixture, publish_gateway_releases};

const NGCLIENT_SCRIPT: &str = r#"
import os, sys
try:
    from tuf.ngclient import Updater
except ImportError as error:
    print(f"python-tuf is missing: {error}", file=sys.stderr)
    sys.exit(3)
metadata_dir, root, metadata_url, targets_url, target_dir, name = sys.argv[1:7]
os.makedirs(metadata_dir, exist_ok=True)
os.makedirs(target_dir, exist_ok=True)
with open(root, "rb") as pinned:
    bootstrap = pinned.read()
updater = Updater(metadata_dir, metadata_url, target_dir, targets_url, bootstrap=bootstrap)
updater.refresh()
info = updater.get_targetinfo(name)
if info is None:
    print(f"no target {name}", file=sys.stderr)
    sys.exit(4)
path = updater.download_target(info, os.path.join(target_dir, name))
print(info.custom.get("version", ""))
print(path)
"#;

fn run_ngclient(fixture: &Fixture, name: &str) -> std::process::Output {
    let work = fixture.dir.path().join("python");
    std::process::Command::new("python3")
        .arg("-c")
        .arg(NGCLIENT_SCRIPT)
        .arg(work.join("metadata"))
        .arg(fixture.metadata().join("1.root.json"))
        .arg(fixture.server.metadata_url().as_str())
        .arg(fixture.server.targets_url().as_str())
        .arg(work.join("targets"))
        .arg(name)
        .output()
        .expect("python3 must be installed to run the python-tuf independence check")
}

#[tokio::test(flavor = "multi_thread")]
async fn python_tuf_refreshes_and_downloads_a_verified_target() {
    let fixture = Fixture::new().await;
    publish_gateway_releases(&fixture).await;
    ferry_catalog::repo::rotate_root(
        &fixture.keys(),
        &fixture.metadata(),
        chrono::TimeDelta::days(365),
    )
    .await
    .expect("rotate root");
    let output = tokio::task::block_in_place(|| run_ngclient(&fixture, "gw-1.10.full"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(
        output.status.code(),
        Some(3),
        "python-tuf (PyPI package `tuf`) is not installed: {stderr}"
    );
    assert!(
        output.status.success(),
        "python-tuf refused the catalog: {stderr}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut lines = stdout.lines();
    assert_eq!(
        lines.next(),
        Some("1.10"),
        "custom metadata as python-tuf reads it"
    );
    let path = lines.next().expect("downloaded path");
    assert_eq!(std::fs::read(path).expect("downloaded"), b"full image 1.10");

    // The same download with the served bytes swapped must fail in python-tuf too.
    let catalog = fixture.refresh().await.expect("refresh");
    let target = catalog.target("gw-1.9.full").expect("listed");
    let served = fixture
        .targets()
        .join(ferry_catalog::repo::target_file_name(
            &target.name,
            &target.sha256,
        ));
    std::fs::write(&served, b"full image X.Y").expect("swap");
    let output = tokio::task::block_in_place(|| run_ngclient(&fixture, "gw-1.9.full"));
    assert!(
        !output.status.success(),
        "python-tuf must refuse a swapped target"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_conformance_protocol_functions_refresh_and_download() {
    let fixture = Fixture::new().await;
    publish_gateway_releases(&fixture).await;
    let metadata_dir = fixture.dir.path().join("cut/metadata");
    let target_dir = fixture.dir.path().join("cut/targets");
    tuf_init(&metadata_dir, &fixture.metadata().join("1.root.json")).expect("init");
    tuf_refresh(&metadata_dir, &fixture.server.metadata_url())
        .await
        .expect("refresh");
    for file in [
        "root.json",
        "timestamp.json",
        "snapshot.json",
        "targets.json",
    ] {
        assert!(
            metadata_dir.join(file).exists(),
            "{file} is kept under its unversioned name"
        );
    }
    let paths = download(&fixture, &metadata_dir, &target_dir, "gw-1.10.manifest")
        .await
        .expect("download");
    assert_eq!(std::fs::read(&paths[0]).expect("read"), br#"{"chunks":3}"#);

    // Cached: with the served file gone, the verified local copy is used.
    let catalog = fixture.refresh().await.expect("refresh");
    let target = catalog.target("gw-1.10.manifest").expect("listed");
    let served = fixture
        .targets()
        .join(ferry_catalog::repo::target_file_name(
            &target.name,
            &target.sha256,
        ));
    std::fs::remove_file(&served).expect("remove");
    download(&fixture, &metadata_dir, &target_dir, "gw-1.10.manifest")
        .await
        .expect("cached download");
    let error = download(&fixture, &metadata_dir, &target_dir, "gw-1.9.full").await;
    assert!(
        error.is_ok(),
        "an untouched target still downloads: {error:?}"
    );
}

/// The conformance client's download of one target from the fixture's server.
async fn download(
    fixture: &Fixture,
    metadata_dir: &Path,
    target_dir: &Path,
    name: &str,
) -> Result<Vec<PathBuf>, ferry_catalog::CatalogError> {
    tuf_download(
        metadata_dir,
        &fixture.server.metadata_url(),
        &[name.to_owned()],
        &fixture.server.targets_url(),
        target_dir,
    )
    .await
}
