//! Issue 18's object storage, end to end against a real S3 server (`s3s-fs`, which checks
//! SigV4 signatures): releases published to a bucket, a delta, a chunk-reuse install (its
//! multi-range requests answered from the bucket by range) and a full install served from
//! it, and a second server process with its own data directory (no catalog, no artifacts of
//! its own) serving what the first published.
//!
//! `s3s-fs` comes from `cargo install s3s-fs --version 0.14.1 --features binary --locked
//! --root target/tools` (`.ci/run` does it); without it the test says so and passes, except
//! under CI, where its absence fails.

use std::path::{Path, PathBuf};

use crate::common::s3::{ACCESS_KEY, BUCKET, S3, SECRET_KEY};
use crate::common::*;

fn last_install(device: &Path) -> serde_json::Value {
    let history: serde_json::Value =
        serde_json::from_str(&ok(&["history", "--json", "--device", s(device)])).unwrap();
    history.as_array().unwrap().last().unwrap().clone()
}

/// `GET path` with a `Range` header on the server over its pinned CA: (status, content type,
/// body).
fn get_ranges(server: &Server, path: &str, range: &str) -> (u16, String, Vec<u8>) {
    let url = format!("{}{path}", server.url());
    let range = range.to_owned();
    on_pinned_client(server, |client| async move {
        let response = client
            .get(&url)
            .header("range", range)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (
            status,
            content_type,
            response.bytes().await.unwrap().to_vec(),
        )
    })
}

/// Copies the parts of a data directory a second replica needs (database, CA and server
/// certificate, online keys, admin token): not its catalog, not its artifacts.
fn replica_of(data: &Path, replica: &Path) {
    std::fs::create_dir_all(replica).unwrap();
    for entry in std::fs::read_dir(data).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "tuf" || name == "artifacts" || name == "tmp" {
            continue;
        }
        copy_tree(&entry.path(), &replica.join(&name));
    }
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else if let Err(e) = std::fs::copy(from, to) {
        // A file removed meanwhile (a temp file, the lock) is not needed.
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::NotFound,
            "{}: {e}",
            from.display()
        );
    }
}

#[test]
fn releases_in_s3_install_by_delta_chunks_and_full_through_two_servers() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(s3) = S3::start(&tmp.path().join("s3")) else {
        return;
    };
    let store = s3.url();
    let data = tmp.path().join("server");
    let images: Vec<PathBuf> = (1..=4)
        .map(|n| {
            let path = tmp.path().join(format!("v{n}.img"));
            make_image(&path, n, 4);
            path
        })
        .collect();
    let with_store = |extra: &[&'static str]| {
        let mut args = vec!["--store", store.as_str()];
        args.extend_from_slice(extra);
        args
    };
    publish_with(&data, &images[0], "1.0", &with_store(&[]));
    publish_with(
        &data,
        &images[1],
        "2.0",
        &with_store(&["--delta-from", "1.0"]),
    );

    // The artifacts and the catalog are in the bucket, none in the data directory.
    assert!(!data.join("artifacts/releases").exists());
    assert_eq!(s3.find("releases/vm/2.0", ".payload.zst").len(), 1);
    assert_eq!(s3.find("releases/vm/2.0", ".chunks.zst").len(), 1);
    assert!(s3.object("tuf/metadata/timestamp.json").exists());
    assert!(s3.object("tuf/metadata/1.root.json").exists());
    // A wrong secret key is refused by the S3 server (SigV4 is checked), with its code.
    let refused = run(&[
        "publish",
        "--json",
        "--data",
        s(&data),
        "--store",
        &s3.url_with("not-the-secret"),
        "--image",
        s(&images[2]),
        "--version",
        "3.0",
        "--class",
        "vm",
        "--keys",
        s(&offline_keys(&data)),
    ]);
    assert!(!refused.status.success());
    assert_eq!(json_error_code(&refused), "SERVER_STORE");

    let first = Server::start_with(&data, &["--store", &store]);
    let proxy = Proxy::start(first.addr);
    let device = tmp.path().join("device");
    device_init(&device, &images[0], "1.0", &proxy.url(), &data, "customer");

    // A delta, then chunk reuse (multi-range requests), both from the bucket; 3.0 published
    // while the server runs (by another process, as an operator would).
    ok(&["install", "vm-2.0", "--json", "--device", s(&device)]);
    assert_eq!(last_install(&device)["payload_kind"], "delta");
    ok(&["reboot", "--device", s(&device)]);
    // Credentials from the standard AWS variables, none in the URL.
    let published = ferry()
        .args(["publish", "--data", s(&data), "--image", s(&images[2])])
        .args(["--version", "3.0", "--class", "vm", "--level", "3"])
        .args(["--keys", s(&offline_keys(&data)), "--store"])
        .arg(format!(
            "s3://{BUCKET}?endpoint=http://{}&region=us-east-1",
            s3.addr
        ))
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .output()
        .unwrap();
    assert!(published.status.success(), "{}", text(&published.stderr));
    ok(&["install", "vm-3.0", "--json", "--device", s(&device)]);
    let chunks = last_install(&device);
    assert_eq!(chunks["payload_kind"], "chunks", "{chunks}");
    assert!(chunks["fallback"].is_null(), "{chunks}");
    assert!(
        downloader_journal(&device)
            .iter()
            .any(|r| r["data"]["multi_range"] == true),
        "chunk reuse asked several ranges in one request"
    );
    ok(&["reboot", "--device", s(&device)]);
    assert_eq!(status(&device)["version"], "3.0");
    publish_with(&data, &images[3], "4.0", &with_store(&["--no-chunks"]));

    // A second replica: its own data directory with the secrets and the database, no
    // catalog and no artifacts; it serves both from the bucket.
    let mut first = first;
    first.kill();
    let replica = tmp.path().join("replica");
    replica_of(&data, &replica);
    let second = Server::start_with(&replica, &["--store", &store]);
    assert!(!replica.join("artifacts/releases").exists());
    proxy.set_upstream(second.addr);
    ok(&["install", "vm-4.0", "--json", "--device", s(&device)]);
    assert_eq!(last_install(&device)["payload_kind"], "full");
    ok(&["reboot", "--device", s(&device)]);
    assert_eq!(status(&device)["version"], "4.0");
    ok(&["log", "replay", "--device", s(&device)]);

    // A multi-range request answered from the bucket: each part the stored bytes.
    let key = &s3.find("releases/vm/3.0", ".chunks.zst")[0];
    let stored = std::fs::read(s3.object(key)).unwrap();
    let (code, content_type, body) = get_ranges(
        &second,
        &format!("/artifacts/{key}"),
        "bytes=0-99,1000-1099,5000-5010",
    );
    assert_eq!(code, 206);
    assert!(
        content_type.starts_with("multipart/byteranges"),
        "{content_type}"
    );
    for (start, end) in [(0usize, 100usize), (1000, 1100), (5000, 5011)] {
        let needle = &stored[start..end];
        assert!(
            body.windows(needle.len()).any(|w| w == needle),
            "part {start}-{end} is in the answer"
        );
        let range_line = format!("Content-Range: bytes {start}-{}/{}", end - 1, stored.len());
        assert!(
            String::from_utf8_lossy(&body)
                .to_ascii_lowercase()
                .contains(&range_line.to_ascii_lowercase()),
            "{range_line}"
        );
    }
    let (code, _, body) = get_ranges(&second, &format!("/artifacts/{key}"), "bytes=10-19");
    assert_eq!((code, body.as_slice()), (206, &stored[10..20]));

    // A personalization key rotated on the running replica's data directory with --store:
    // the replica signs with it within seconds, the bucket holds the new catalog and the key
    // sealed (never served), and a third replica made before the rotation (nothing from the
    // second) takes the key from the bucket and signs with it.
    let signing = |server: &Server| {
        let (_, _, body) = get_ranges(server, "/v1/keys/personalization.pub", "bytes=0-");
        let file: serde_json::Value = serde_json::from_slice(&body).unwrap();
        file["keyid"].as_str().unwrap_or_default().to_owned()
    };
    // `ferry server KIND rotate` on the second replica's data directory, with the store.
    let rotate = |kind: &str| -> serde_json::Value {
        let offline = offline_keys(&data);
        let args = ["server", kind, "rotate", "--json", "--data", s(&replica)];
        serde_json::from_str(&ok(&[
            &args[..],
            &["--keys", s(&offline), "--store", &store],
        ]
        .concat()))
        .unwrap()
    };
    let before = signing(&second);
    let rotated = rotate("personalization-key");
    let new_key = rotated["current"].as_str().unwrap().to_owned();
    assert_ne!(new_key, before);
    assert!(wait_for(10, || signing(&second) == new_key));
    let sealed_key = format!("keys-sealed/personalization/{new_key}.pk8.sealed");
    let sealed = std::fs::read(s3.object(&sealed_key)).unwrap();
    let key_file = format!("keys-online/personalization/{new_key}.pk8");
    let private = std::fs::read(replica.join(&key_file)).unwrap();
    assert!(
        !sealed
            .windows(16)
            .any(|w| private.windows(16).any(|p| p == w)),
        "the key is sealed in the bucket"
    );
    let (code, _, _) = get_ranges(&second, &format!("/artifacts/{sealed_key}"), "bytes=0-");
    assert_eq!(code, 404, "the sealed keys are never served");
    let third = tmp.path().join("replica-3");
    replica_of(&data, &third);
    assert!(!third.join(&key_file).exists());
    let third_server = Server::start_with(&third, &["--store", &store]);
    assert_eq!(signing(&third_server), new_key);
    assert_eq!(std::fs::read(third.join(&key_file)).unwrap(), private);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(third.join(&key_file))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // The director key the same way: rotated on the second, taken by a fourth at its start.
    let rotated = rotate("director-key");
    let director_key = rotated["current"].as_str().unwrap().to_owned();
    assert!(
        s3.object(&format!("keys-sealed/director/{director_key}.pk8.sealed"))
            .exists()
    );
    let fourth = tmp.path().join("replica-4");
    replica_of(&data, &fourth);
    let _fourth_server = Server::start_with(&fourth, &["--store", &store]);
    let director_file = fourth.join(format!("keys-online/director/{director_key}.pk8"));
    assert_eq!(
        std::fs::read(director_file).unwrap(),
        std::fs::read(replica.join(format!("keys-online/director/{director_key}.pk8"))).unwrap()
    );
}

/// The race a shared catalog has: a leader re-signing the timestamp between a publish's pull
/// and push. With the catalog lock every publish lands: after a leader (its own data
/// directory, as a replica) re-signed the timestamp in a loop while releases were published
/// from another, the catalog in the store names every release through its timestamp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_land_while_a_leader_re_signs_the_timestamp() {
    use ferry_server::tuf::{CatalogPaths, KeyCustody};
    use ferry_server::{DataDir, PublishRequest, catalog_store};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let tmp = tempfile::tempdir().unwrap();
    let Some(s3) = S3::start(&tmp.path().join("s3")) else {
        return;
    };
    let store = s3.url();
    let database = format!("sqlite://{}", tmp.path().join("shared.db").display());
    let publisher_dir = tmp.path().join("publisher");
    let publisher = DataDir::open_with(&publisher_dir, Some(&database), Some(&store))
        .await
        .unwrap();
    ferry_server::tuf::check_custody(&publisher.path, KeyCustody::DevInDataDir)
        .await
        .unwrap();
    catalog_store::push(&publisher).await.unwrap();
    // The leader: another data directory with the same online keys, its catalog from the store.
    let leader_dir = tmp.path().join("leader");
    replica_of(&publisher_dir, &leader_dir);
    let leader = DataDir::open_with(&leader_dir, Some(&database), Some(&store))
        .await
        .unwrap();
    catalog_store::pull(&leader).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let signed = Arc::new(AtomicU64::new(0));
    let re_signing = {
        let (stop, signed) = (stop.clone(), signed.clone());
        tokio::spawn(async move {
            let paths = CatalogPaths::new(&leader.path, None);
            while !stop.load(Ordering::SeqCst) {
                catalog_store::change(&leader, async {
                    ferry_catalog::repo::refresh_timestamp(
                        &paths.online_keys,
                        &paths.metadata,
                        chrono::TimeDelta::days(1),
                    )
                    .await
                    .map_err(ferry_server::ServerError::from)
                })
                .await
                .unwrap();
                signed.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let versions = ["1.0", "1.1", "1.2", "1.3", "1.4", "1.5"];
    for (n, version) in versions.iter().enumerate() {
        let image = tmp.path().join(format!("v{version}.img"));
        make_image(&image, n as u32 + 1, 1);
        ferry_server::publish(
            &publisher,
            PublishRequest {
                image,
                version: version.parse().unwrap(),
                class: "vm".into(),
                audiences: vec!["customer".into()],
                offline_keys: None,
                build_id: None,
                level: 1,
                delta_from: Vec::new(),
                chunks: false,
            },
        )
        .await
        .unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    re_signing.await.unwrap();
    assert!(
        signed.load(Ordering::SeqCst) >= versions.len() as u64,
        "the leader re-signed {} times: the race was not exercised",
        signed.load(Ordering::SeqCst)
    );

    // What a new replica serves: the store's catalog, through its timestamp.
    let reader = DataDir::open_with(&tmp.path().join("reader"), Some(&database), Some(&store))
        .await
        .unwrap();
    catalog_store::pull(&reader).await.unwrap();
    let metadata = CatalogPaths::new(&reader.path, None).metadata;
    for version in versions {
        let target = ferry_catalog::payload_target_name("vm", version);
        assert!(
            ferry_catalog::repo::published_target(&metadata, &target)
                .unwrap()
                .is_some(),
            "release {version} is not in the catalog the store serves"
        );
    }
}
