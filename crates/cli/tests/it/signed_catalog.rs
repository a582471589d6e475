//! Issue 4's promises, end to end: the server's release store is a TUF repository, the device
//! scans it from the root pinned at `device init`, and every attack staged for real against
//! the loopback server (by editing what it serves, or by a proxy in front of it) is refused
//! with its own code while the device stays on its version with its last good metadata.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};

use crate::common::*;
use chrono::TimeDelta;
use ferry_catalog::repo::{self, Expiries};

struct Fleet {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
    server: Server,
    device: PathBuf,
    v1: PathBuf,
}

impl Fleet {
    fn metadata(&self) -> PathBuf {
        self.data.join("tuf/metadata")
    }
    fn offline_keys(&self) -> PathBuf {
        offline_keys(&self.data)
    }
    fn online_keys(&self) -> PathBuf {
        self.data.join("keys-online")
    }
}

/// A server with 1.0 and 2.0 (customer) published and a device on 1.0 pinning its root.
fn fleet() -> Fleet {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_owned();
    let data = root.join("server");
    let (v1, v2) = (root.join("v1.img"), root.join("v2.img"));
    make_image(&v1, 1, 2);
    make_image(&v2, 2, 2);
    publish(&data, &v1, "1.0");
    publish(&data, &v2, "2.0");
    let server = Server::start(&data);
    let device = root.join("device");
    device_init(&device, &v1, "1.0", &server.url(), &data, "customer");
    Fleet {
        _tmp: tmp,
        root,
        data,
        server,
        device,
        v1,
    }
}

fn status(device: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(&["status", "--json", "--device", s(device)])).unwrap()
}

fn list(device: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(&["list", "--json", "--device", s(device)])).unwrap()
}

fn labels(device: &Path) -> Vec<String> {
    list(device)
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["label"].as_str().unwrap().to_owned())
        .collect()
}

/// The device's trusted metadata, file by file (without `latest_known_time`, which every
/// successful refresh rewrites).
fn trusted_metadata(device: &Path) -> BTreeMap<String, Vec<u8>> {
    let dir = device.join("tuf/current");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap())
        .filter(|entry| {
            entry.file_type().unwrap().is_file() && entry.file_name() != "latest_known_time"
        })
        .map(|entry| {
            (
                entry.file_name().into_string().unwrap(),
                std::fs::read(entry.path()).unwrap(),
            )
        })
        .collect()
}

/// The scan is refused with `code`; the device still runs 1.0 and keeps `trusted`.
fn assert_refused(f: &Fleet, code: &str, trusted: &BTreeMap<String, Vec<u8>>) {
    let out = run(&["list", "--json", "--device", s(&f.device)]);
    assert!(!out.status.success(), "the scan must fail with {code}");
    assert_eq!(json_error_code(&out), code, "{}", text(&out.stdout));
    let st = status(&f.device);
    assert_eq!(st["version"], "1.0", "{st}");
    assert_eq!(st["last_scan"]["result"], code, "{st}");
    assert_eq!(st["last_scan"]["n_offers"], 0, "{st}");
    assert_eq!(
        &trusted_metadata(&f.device),
        trusted,
        "the last good metadata must stay as it was"
    );
    let len = std::fs::metadata(&f.v1).unwrap().len();
    assert_eq!(
        slot_digest(&f.device.join("slots/a.img"), len),
        slot_digest(&f.v1, len)
    );
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

fn http_get(server: &Server, path: &str) -> (String, Vec<u8>) {
    // The server speaks HTTPS with its own CA: curl shows the raw head and body (HTTP/1.1:
    // the server also offers HTTP/2, which `http2::` tests).
    let out = std::process::Command::new("curl")
        .args(["-s", "-i", "--http1.1", "--cacert", s(&server.ca())])
        .arg(format!("{}{path}", server.url()))
        .output()
        .expect("curl");
    let response = out.stdout;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP head");
    (
        String::from_utf8_lossy(&response[..split]).to_lowercase(),
        response[split + 4..].to_vec(),
    )
}

#[test]
fn v1_to_v2_update_goes_through_the_signed_catalog() {
    let f = fleet();
    assert!(
        status(&f.device)["last_scan"].is_null(),
        "no scan before the first command"
    );
    let offers = list(&f.device);
    assert_eq!(offers.as_array().unwrap().len(), 1, "{offers}");
    assert_eq!(offers[0]["label"], "vm-2.0");
    assert_eq!(offers[0]["kind"], "full");
    assert_eq!(offers[0]["recommended"], true);
    let st = status(&f.device);
    assert_eq!(st["last_scan"]["result"], "ok", "{st}");
    assert_eq!(st["last_scan"]["n_offers"], 1, "{st}");
    assert!(f.device.join("tuf/root.json").is_file());
    assert!(trusted_metadata(&f.device).contains_key("targets.json"));

    // The catalog names the payload and manifest, each served by digest.
    let targets: serde_json::Value =
        serde_json::from_slice(&trusted_metadata(&f.device)["targets.json"]).unwrap();
    let payload = &targets["signed"]["targets"]["vm-2.0.payload.zst"];
    assert_eq!(payload["custom"]["version"], "2.0", "{targets}");
    assert_eq!(payload["custom"]["audiences"][0], "customer");
    assert_eq!(payload["custom"]["component"], "system");
    assert_eq!(payload["custom"]["payload"]["kind"], "full");
    let manifest = &targets["signed"]["targets"]["vm-2.0.manifest.json"];
    let digest = manifest["hashes"]["sha256"].as_str().unwrap();
    let (head, body) = http_get(
        &f.server,
        &format!("/tuf/targets/{digest}.vm-2.0.manifest.json"),
    );
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body.len() as u64, manifest["length"].as_u64().unwrap());
    let (head, _) = http_get(&f.server, "/tuf/metadata/timestamp.json");
    assert!(head.contains("cache-control: no-cache"), "{head}");
    let (head, _) = http_get(&f.server, "/tuf/metadata/1.root.json");
    assert!(!head.contains("no-cache"), "{head}");
    let (head, _) = http_get(&f.server, &format!("/tuf/targets/{}.x", "0".repeat(64)));
    assert!(head.starts_with("http/1.1 404"), "{head}");

    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(status(&f.device)["version"], "2.0");
    assert!(labels(&f.device).is_empty(), "nothing newer than 2.0");
}

#[test]
fn a_beta_device_sees_the_beta_build_and_a_customer_device_does_not() {
    let f = fleet();
    let v3 = f.root.join("v3.img");
    make_image(&v3, 3, 2);
    ok(&[
        "publish",
        "--data",
        s(&f.data),
        "--image",
        s(&v3),
        "--version",
        "3.0",
        "--class",
        "vm",
        "--audience",
        "beta",
        "--audience",
        "seed",
        "--level",
        "3",
        "--keys",
        s(&f.offline_keys()),
    ]);
    let beta = f.root.join("beta-device");
    device_init(&beta, &f.v1, "1.0", &f.server.url(), &f.data, "beta");
    assert_eq!(labels(&beta), ["vm-3.0"]);
    assert_eq!(
        labels(&f.device),
        ["vm-2.0"],
        "customers do not see the beta build"
    );

    // Enrolling and leaving is durable.
    ok(&["audience", "set", "seed", "--device", s(&f.device)]);
    assert_eq!(status(&f.device)["audience"], "seed");
    assert_eq!(labels(&f.device), ["vm-3.0"]);
    ok(&["audience", "set", "customer", "--device", s(&f.device)]);
    assert_eq!(labels(&f.device), ["vm-2.0"]);
    let out = run(&[
        "audience",
        "set",
        "Not Valid",
        "--json",
        "--device",
        s(&f.device),
    ]);
    assert_eq!(json_error_code(&out), "AUDIENCE_INVALID");

    // list-full shows every full image open to the audience.
    let full: serde_json::Value =
        serde_json::from_str(&ok(&["list-full", "--json", "--device", s(&beta)])).unwrap();
    let versions: Vec<_> = full
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["version"].clone())
        .collect();
    assert_eq!(versions, ["3.0", "2.0", "1.0"]);
}

#[test]
fn an_old_timestamp_replayed_is_a_rollback() {
    let f = fleet();
    list(&f.device);
    let old_timestamp = std::fs::read(f.metadata().join("timestamp.json")).unwrap();
    block_on(repo::refresh_timestamp(
        &f.online_keys(),
        &f.metadata(),
        TimeDelta::days(1),
    ))
    .unwrap();
    list(&f.device);
    let trusted = trusted_metadata(&f.device);
    std::fs::write(f.metadata().join("timestamp.json"), old_timestamp).unwrap();
    assert_refused(&f, "CATALOG_ROLLBACK", &trusted);
}

#[test]
fn an_expired_snapshot_is_refused() {
    let f = fleet();
    list(&f.device);
    let trusted = trusted_metadata(&f.device);
    let expired_snapshot = Expiries {
        snapshot: TimeDelta::hours(-1),
        ..Expiries::default()
    };
    block_on(repo::add_targets(
        &f.offline_keys(),
        &f.online_keys(),
        &f.metadata(),
        Vec::new(),
        &expired_snapshot,
    ))
    .unwrap();
    assert_refused(&f, "CATALOG_EXPIRED", &trusted);
}

#[test]
fn targets_signed_by_a_revoked_key_are_refused() {
    let f = fleet();
    list(&f.device);
    // The attacker keeps the targets key and the metadata from before the rotation.
    let stolen = f.root.join("stolen");
    copy_dir(&f.offline_keys(), &stolen.join("keys"));
    copy_dir(&f.metadata(), &stolen.join("metadata"));
    block_on(repo::rotate_targets_key(
        &f.offline_keys(),
        &f.online_keys(),
        &f.metadata(),
        &Expiries::default(),
    ))
    .unwrap();
    list(&f.device);
    let trusted = trusted_metadata(&f.device);
    let root: serde_json::Value = serde_json::from_slice(&trusted["root.json"]).unwrap();
    assert_eq!(
        root["signed"]["version"], 2,
        "the device walked to the new root"
    );

    // Signed with the revoked key (and the online keys), versions above the device's.
    for round in 0..3 {
        block_on(repo::add_targets(
            &stolen.join("keys"),
            &f.online_keys(),
            &stolen.join("metadata"),
            vec![ferry_catalog::NewTarget {
                name: format!("vm-9.{round}.payload.zst"),
                length: 4,
                sha256: ferry_types::Sha256::of(b"evil"),
                custom: serde_json::Value::Null,
            }],
            &Expiries::default(),
        ))
        .unwrap();
    }
    for entry in std::fs::read_dir(stolen.join("metadata")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if !name.ends_with(".root.json") {
            std::fs::copy(entry.path(), f.metadata().join(&name)).unwrap();
        }
    }
    assert_refused(&f, "CATALOG_BAD_SIGNATURE", &trusted);
}

#[test]
fn targets_that_do_not_match_the_snapshot_are_mix_and_match() {
    let f = fleet();
    list(&f.device);
    let trusted = trusted_metadata(&f.device);
    let v3 = f.root.join("v3.img");
    make_image(&v3, 3, 2);
    publish(&f.data, &v3, "3.0");
    // A stale cache serves the previous targets under the new version's name.
    let mut versions: Vec<u64> = std::fs::read_dir(f.metadata())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".targets.json")?.parse().ok()
        })
        .collect();
    versions.sort();
    let newest = versions.last().copied().unwrap();
    std::fs::copy(
        f.metadata().join(format!("{}.targets.json", newest - 1)),
        f.metadata().join(format!("{newest}.targets.json")),
    )
    .unwrap();
    assert_refused(&f, "CATALOG_MIX_AND_MATCH", &trusted);
}

#[test]
fn a_target_swapped_for_another_of_the_same_length_is_refused() {
    let f = fleet();
    list(&f.device);
    let dir = f.data.join("artifacts/releases/vm/2.0");
    let manifest = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".manifest.json"))
        .expect("manifest of 2.0");
    let good = std::fs::read(&manifest).unwrap();
    // Another manifest of the same length: 1.0's, with its version patched to 2.0.
    let mut swapped = good.clone();
    let pos = swapped
        .iter()
        .position(|b| b.is_ascii_hexdigit() && *b != b'0')
        .unwrap();
    swapped[pos] = b'0';
    assert_eq!(swapped.len(), good.len());
    std::fs::write(&manifest, &swapped).unwrap();

    let out = run(&["install", "vm-2.0", "--json", "--device", s(&f.device)]);
    assert!(!out.status.success());
    assert_eq!(
        json_error_code(&out),
        "CATALOG_TARGET_MISMATCH",
        "{}",
        text(&out.stdout)
    );
    let st = status(&f.device);
    assert_eq!(st["version"], "1.0");
    assert!(st["slots"][1]["content"].is_null(), "{st}");

    std::fs::write(&manifest, &good).unwrap();
    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(status(&f.device)["version"], "2.0");
}

#[test]
fn an_endless_response_is_cut_off() {
    let f = fleet();
    list(&f.device);
    let trusted = trusted_metadata(&f.device);
    let proxy = EndlessProxy::start("timestamp.json");
    let config = f.device.join("config.toml");
    let text_config = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text_config.replace(&f.server.url(), &proxy.url())).unwrap();
    assert_refused(&f, "CATALOG_ENDLESS_DATA", &trusted);
    std::fs::write(&config, text_config).unwrap();
    assert_eq!(labels(&f.device), ["vm-2.0"], "the real server still works");
}

/// A plain-HTTP stand-in for the server that answers requests for paths ending in `endless`
/// with a body that never ends and every other request (the probe for the next root) with
/// 404, one request per connection. (It cannot forward: the real server speaks only HTTPS, and
/// the device's client treats anything but 403/404 for the next root as a failed refresh.)
struct EndlessProxy {
    addr: SocketAddr,
}

impl EndlessProxy {
    fn start(endless: &'static str) -> EndlessProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                std::thread::spawn(move || serve_one(client, endless));
            }
        });
        EndlessProxy { addr }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn serve_one(mut client: TcpStream, endless: &str) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" {
            break;
        }
        head.push(line);
    }
    let path = head[0].split(' ').nth(1).unwrap_or_default().to_owned();
    if path.ends_with(endless) {
        let _ = client.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n",
        );
        let chunk = vec![b' '; 64 * 1024];
        while client.write_all(&chunk).is_ok() {}
        return;
    }
    let _ = client
        .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    let _ = client.shutdown(Shutdown::Both);
}

#[test]
fn python_tuf_reads_the_catalog_and_downloads_a_verified_target() {
    let check = std::process::Command::new("python3")
        .args(["-c", "import tuf.ngclient"])
        .output()
        .expect("python3 must be installed");
    assert!(
        check.status.success(),
        "python-tuf is missing: install it with `pip install tuf` (.ci/run does): {}",
        text(&check.stderr)
    );
    let f = fleet();
    let client_dir = f.root.join("python-tuf");
    let (metadata_dir, target_dir) = (client_dir.join("metadata"), client_dir.join("targets"));
    std::fs::create_dir_all(&metadata_dir).unwrap();
    std::fs::create_dir_all(&target_dir).unwrap();
    std::fs::copy(root_file(&f.data), metadata_dir.join("root.json")).unwrap();
    let script = r#"
import sys
from tuf.ngclient import Updater
metadata_dir, metadata_url, target_url, target_dir, name = sys.argv[1:]
with open(metadata_dir + "/root.json", "rb") as pinned:
    bootstrap = pinned.read()
updater = Updater(metadata_dir=metadata_dir, metadata_base_url=metadata_url,
                  target_base_url=target_url, target_dir=target_dir, bootstrap=bootstrap)
updater.refresh()
info = updater.get_targetinfo(name)
if info is None:
    sys.exit(f"python-tuf: no target {name}")
path = updater.download_target(info)
print(path)
print(info.length)
print((info.custom or {}).get("version", "-"))
"#;
    // The script's download of target `name` from the server into `target_dir`.
    let python_tuf = |name: &str| {
        std::process::Command::new("python3")
            // python-tuf fetches with urllib3, which trusts what OpenSSL's SSL_CERT_FILE names.
            .env("SSL_CERT_FILE", f.data.join("pki/ca.pem"))
            .args(["-c", script])
            .arg(&metadata_dir)
            .arg(format!("{}/tuf/metadata/", f.server.url()))
            .arg(format!("{}/tuf/targets/", f.server.url()))
            .arg(&target_dir)
            .arg(name)
            .output()
            .unwrap()
    };
    let out = python_tuf("vm-2.0.manifest.json");
    assert!(
        out.status.success(),
        "python-tuf failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let printed = text(&out.stdout);
    let lines: Vec<&str> = printed.lines().collect();
    let downloaded = std::fs::read(lines[0]).unwrap();
    assert_eq!(downloaded.len().to_string(), lines[1]);
    let manifest: serde_json::Value = serde_json::from_slice(&downloaded).unwrap();
    assert_eq!(manifest["version"], "2.0", "{manifest}");

    // And the payload, whose custom metadata python-tuf reads too.
    let out = python_tuf("vm-1.0.payload.zst");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().nth(2), Some("1.0"));
}

#[test]
fn ferry_tuf_speaks_the_conformance_client_protocol() {
    let f = fleet();
    let client = f.root.join("tuf-client");
    let (metadata_dir, target_dir) = (client.join("metadata"), client.join("targets"));
    std::fs::create_dir_all(&target_dir).unwrap();
    let metadata_url = format!("{}/tuf/metadata", f.server.url());
    let targets_url = format!("{}/tuf/targets", f.server.url());
    let ca = f.data.join("pki/ca.pem");
    let tuf = |args: &[&str]| {
        let mut all = vec!["tuf", "--metadata-dir", s(&metadata_dir)];
        all.extend_from_slice(args);
        ferry()
            .args(&all)
            .env("FERRY_CA_FILE", &ca)
            .output()
            .expect("run ferry tuf")
    };
    let code = |out: std::process::Output| out.status.code();
    assert_eq!(code(tuf(&["init", s(&root_file(&f.data))])), Some(0));
    assert_eq!(
        code(tuf(&["--metadata-url", &metadata_url, "refresh"])),
        Some(0)
    );
    assert!(metadata_dir.join("timestamp.json").is_file());
    let download = |name: &str| {
        tuf(&[
            "--metadata-url",
            &metadata_url,
            "--target-name",
            name,
            "--target-base-url",
            &targets_url,
            "--target-dir",
            s(&target_dir),
            "download",
        ])
    };
    assert_eq!(code(download("vm-1.0.manifest.json")), Some(0));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(target_dir.join("vm-1.0.manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["version"], "1.0");
    assert_eq!(
        code(download("vm-9.9.manifest.json")),
        Some(1),
        "unknown target"
    );
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = tuf(&[
        "--metadata-url",
        &format!("http://{dead}/tuf/metadata"),
        "refresh",
    ]);
    assert_eq!(code(out), Some(1), "unreachable server");
}

#[test]
fn server_init_keeps_the_offline_keys_apart_and_devices_must_pin_a_root() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, keys) = (tmp.path().join("server"), tmp.path().join("offline"));
    ok(&["server", "init", "--data", s(&data), "--keys", s(&keys)]);
    assert!(keys.join("root.pk8").is_file() && keys.join("targets.pk8").is_file());
    assert!(data.join("keys-online/snapshot.pk8").is_file());
    assert!(data.join("keys-online/timestamp.pk8").is_file());
    assert!(!data.join("keys-offline").exists());
    assert!(data.join("tuf/metadata/1.root.json").is_file());
    let out = run(&["server", "init", "--data", s(&data), "--keys", s(&keys)]);
    assert_eq!(out.status.code(), Some(1), "a second init is refused");

    // A timestamp about to expire is re-signed by the server on its own.
    block_on(repo::refresh_timestamp(
        &data.join("keys-online"),
        &data.join("tuf/metadata"),
        TimeDelta::minutes(5),
    ))
    .unwrap();
    let timestamp_version = |data: &Path| {
        let v: serde_json::Value = serde_json::from_slice(
            &std::fs::read(data.join("tuf/metadata/timestamp.json")).unwrap(),
        )
        .unwrap();
        v["signed"]["version"].as_u64().unwrap()
    };
    let before = timestamp_version(&data);
    let image = tmp.path().join("v1.img");
    make_image(&image, 1, 1);
    let server = Server::start(&data);
    assert!(
        wait_for(10, || timestamp_version(&data) > before),
        "the server did not re-sign the timestamp"
    );
    // Publishing needs the offline keys.
    let out = try_publish(&data, &image, "1.0", &["--json"]);
    assert_eq!(
        json_error_code(&out),
        "CATALOG_SIGNING",
        "{}",
        text(&out.stdout)
    );
    let mut publish = publish_args(&data, &image, "1.0");
    publish.extend_from_slice(&["--keys", s(&keys)]);
    ok(&publish);

    // device init needs --root, or an explicit --trust-on-first-use.
    let device = tmp.path().join("device");
    let url = server.url();
    let mut init = device_init_args(&device, &image, "0.9", &url);
    let out = run(&init);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let (ca, token) = (server.ca(), server.token());
    init.extend_from_slice(&[
        "--trust-on-first-use",
        "--ca",
        s(&ca),
        "--enroll-token",
        &token,
    ]);
    ok(&init);
    assert_eq!(labels(&device), ["vm-1.0"]);
}

#[test]
fn a_scan_that_finds_nothing_new_fetches_only_the_timestamp() {
    let f = fleet();
    assert_eq!(labels(&f.device), ["vm-2.0"]);
    // Hide every versioned snapshot and targets file: a no-op scan must not need them.
    let hidden = f.root.join("hidden");
    std::fs::create_dir_all(&hidden).unwrap();
    for entry in std::fs::read_dir(f.metadata()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".snapshot.json") || name.ends_with(".targets.json") {
            std::fs::rename(f.metadata().join(&name), hidden.join(&name)).unwrap();
        }
    }
    assert_eq!(
        labels(&f.device),
        ["vm-2.0"],
        "served from the trusted raw copies"
    );
    assert_eq!(status(&f.device)["last_scan"]["result"], "ok");
}
