//! Issue 20's security review, each finding staged for real against a loopback server:
//! signing only the images a build published, enrollment that cannot take a device over,
//! the offline keys kept off the serving host, a LAN cache that forwards only artifact
//! paths, and local secrets that other users cannot read. (Slow clients: `slow_clients.rs`;
//! an untrusted cache's answers: `untrusted_cache.rs`; the delta pin: `delta_update.rs`.)

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Stdio};

use crate::common::lan_cache::LanCache;
use crate::common::*;

/// A release as `GET /v1/releases` lists it, with its seal root from its manifest.
struct Published {
    build_id: String,
    seal_root: String,
}

fn published(server: &Server, version: &str) -> Published {
    let (status, releases) = https_json(server, "/v1/releases?class=vm", "", None);
    assert_eq!(status, 200, "{releases}");
    let release = releases
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["version"] == version)
        .unwrap_or_else(|| panic!("{version} in {releases}"))
        .clone();
    let manifest_url = release["manifest"]["url"].as_str().unwrap();
    let (status, manifest) = https_json(server, manifest_url, "", None);
    assert_eq!(status, 200, "{manifest}");
    Published {
        build_id: release["build_id"].as_str().unwrap().to_owned(),
        seal_root: manifest["seal"]["root_hash"].as_str().unwrap().to_owned(),
    }
}

/// A ticket request from `device` for `build_id` covering the system image `root_hash`.
fn ticket_request(device: &Path, build_id: &str, root_hash: &str) -> serde_json::Value {
    serde_json::json!({
        "identity": identity_json(device),
        "nonce": ferry_personalize::Nonce::random().to_string(),
        "build_id": build_id,
        "components": [{ "name": "system", "root_hash": root_hash }],
        "device_time": chrono::Utc::now(),
    })
}

/// Finding 1: with build 1.0's signing window closed, a request naming the open build 2.0
/// with 1.0's seal root (or a made-up one) was signed. Now only the root hashes a build
/// published for the class are signed.
#[test]
fn only_the_root_hashes_a_build_published_are_signed() {
    let f = fleet(2, |s| s.url());
    let (v1, v2) = (published(&f.server, "1.0"), published(&f.server, "2.0"));
    signing_window(&f.server.data, &v1.build_id, "close");
    let credential = credential(&f.device);
    let ask = |build: &str, root: &str| {
        let body = ticket_request(&f.device, build, root);
        https_json(&f.server, "/v1/personalize", &credential, Some(&body))
    };

    let (status, answer) = ask(&v1.build_id, &v1.seal_root);
    assert_eq!(
        (status, answer["code"].as_str()),
        (422, Some("NOT_SIGNED")),
        "{answer}"
    );
    // The attack: the closed build's image under the open build's name.
    let (status, answer) = ask(&v2.build_id, &v1.seal_root);
    assert_eq!(
        (status, answer["code"].as_str()),
        (422, Some("IMAGE_NOT_PUBLISHED")),
        "{answer}"
    );
    assert_eq!(answer["data"]["root_hash"], v1.seal_root.as_str());
    assert_eq!(answer["data"]["build_id"], v2.build_id.as_str());
    assert_eq!(answer["data"]["component"], "system");
    // A made-up image is not signed either.
    let made_up = "ab".repeat(32);
    let (status, answer) = ask(&v2.build_id, &made_up);
    assert_eq!(
        (status, answer["code"].as_str()),
        (422, Some("IMAGE_NOT_PUBLISHED")),
        "{answer}"
    );
    // The build's own image is.
    let (status, ticket) = ask(&v2.build_id, &v2.seal_root);
    assert_eq!(status, 200, "{ticket}");
    assert_eq!(ticket["ticket"]["build_id"], v2.build_id.as_str());

    // The device's own install of 2.0 is untouched by all this, and boots.
    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(crate::common::status(&f.device)["version"], "2.0");
}

/// `POST /v1/enroll` with `token` for `identity`: (status, answer).
fn enroll(server: &Server, token: &str, identity: &serde_json::Value) -> (u16, serde_json::Value) {
    let body = serde_json::json!({ "token": token, "identity": identity });
    https_json(server, "/v1/enroll", "", Some(&body))
}

/// [`enroll`], refused with 409 `DEVICE_ALREADY_ENROLLED`: the answer.
fn refused_as_enrolled(
    server: &Server,
    token: &str,
    identity: &serde_json::Value,
) -> serde_json::Value {
    let (status, answer) = enroll(server, token, identity);
    assert_eq!(
        (status, answer["code"].as_str()),
        (409, Some("DEVICE_ALREADY_ENROLLED")),
        "{answer}"
    );
    answer
}

fn token(data: &Path, extra: &[&str]) -> String {
    let mut args = vec!["server", "token", "--data", s(data)];
    args.extend_from_slice(extra);
    ok(&args).trim().to_owned()
}

fn devices(data: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(&["server", "devices", "--data", s(data), "--json"])).unwrap()
}

/// A ticket request for 2.0 as `identity` with `credential`: (status, code).
fn ask_ticket(f: &Fleet, credential: &str, identity: &serde_json::Value) -> (u16, String) {
    let v2 = published(&f.server, "2.0");
    let mut body = ticket_request(&f.device, &v2.build_id, &v2.seal_root);
    body["identity"] = identity.clone();
    let (status, answer) = https_json(&f.server, "/v1/personalize", credential, Some(&body));
    (
        status,
        answer["code"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Finding 3: a fresh token and a device's (public) id re-enrolled over it, replaced its
/// credential and lifted its revocation. Now only an operator's re-enrollment token for that
/// device does, and tokens can be bound to a device and class.
#[test]
fn enrollment_cannot_take_over_a_device_or_undo_its_revocation() {
    let f = fleet(2, |s| s.url());
    let data = &f.server.data;
    let victim = identity_json(&f.device);
    let id = victim["device_id"].as_str().unwrap().to_owned();
    let mut attacker = victim.clone();
    attacker["hardware_uuid"] = "0badc0de-0000-4000-8000-000000000001".into();
    let real_credential = credential(&f.device);

    // Over an enrolled device: refused, the token unspent, the real device unharmed.
    let fresh = token(data, &[]);
    let answer = refused_as_enrolled(&f.server, &fresh, &attacker);
    assert!(
        answer["fix"].as_str().unwrap().contains("--reenroll"),
        "{answer}"
    );
    assert_eq!(ask_ticket(&f, &real_credential, &victim).0, 200);
    let mut newcomer = victim.clone();
    newcomer["device_id"] = "00000000000c0ffe".into();
    let (status, answer) = enroll(&f.server, &fresh, &newcomer);
    assert_eq!(
        status, 200,
        "the refused attempt did not spend the token: {answer}"
    );

    // Over a revoked device: refused, and the revocation stays.
    ok(&["server", "devices", "--data", s(data), "--revoke", &id]);
    let answer = refused_as_enrolled(&f.server, &token(data, &[]), &attacker);
    assert!(
        answer["cause"].as_str().unwrap().contains("revoked"),
        "{answer}"
    );
    let listed = devices(data);
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device_id"] == id.as_str())
        .unwrap()
        .clone();
    assert!(row["revoked_at"].is_string(), "{row}");
    assert_eq!(row["hardware_uuid"], victim["hardware_uuid"], "{row}");

    // Tokens bound to a device id or a class enroll nothing else.
    let for_other = token(data, &["--device", "00000000000000aa"]);
    let (status, answer) = enroll(&f.server, &for_other, &newcomer);
    assert_eq!(
        (status, answer["code"].as_str()),
        (403, Some("ENROLLMENT_TOKEN_OTHER_DEVICE")),
        "{answer}"
    );
    let for_class = token(data, &["--class", "gateway"]);
    let mut vm = newcomer.clone();
    vm["device_id"] = "00000000000000bb".into();
    let (status, answer) = enroll(&f.server, &for_class, &vm);
    assert_eq!(
        (status, answer["code"].as_str()),
        (403, Some("ENROLLMENT_TOKEN_OTHER_DEVICE")),
        "{answer}"
    );
    let out = run(&["server", "token", "--data", s(data), "--reenroll"]);
    assert_eq!(out.status.code(), Some(2), "--reenroll needs --device");

    // The device's own CLI names the server's refusal and keeps no half-made device.
    let other = f.root.join("device-bound-elsewhere");
    let out = ferry()
        .args(["device", "init", s(&other), "--class", "vm", "--image"])
        .arg(&f.v1)
        .args(["--version", "1.0", "--server", &f.server.url(), "--root"])
        .arg(root_file(data))
        .args(["--ca", s(&f.server.ca()), "--enroll-token"])
        .arg(token(data, &["--device", "00000000000000aa"]))
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("ENROLLMENT_REFUSED") && stderr.contains("ENROLLMENT_TOKEN_OTHER_DEVICE"),
        "{stderr}"
    );
    assert!(!other.exists(), "a device that could not enroll is removed");

    // The operator re-enrolls the device explicitly (a repaired board): new identity, new
    // credential, revocation lifted; the old credential is dead.
    let reenroll = token(data, &["--device", &id, "--reenroll"]);
    let (status, answer) = enroll(&f.server, &reenroll, &attacker);
    assert_eq!(status, 200, "{answer}");
    let row = devices(data)
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device_id"] == id.as_str())
        .unwrap()
        .clone();
    assert!(row["revoked_at"].is_null(), "{row}");
    assert_eq!(row["hardware_uuid"], attacker["hardware_uuid"], "{row}");
    assert_eq!(
        ask_ticket(&f, &real_credential, &victim),
        (403, "REVOKED_DEVICE".to_owned())
    );
    let new_credential = answer["credential"].as_str().unwrap();
    assert_eq!(ask_ticket(&f, new_credential, &attacker).0, 200);
}

/// `ferry server --data DIR [extra]` that must exit by itself: (exit code, stderr).
fn server_refusal(data: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let out = ferry()
        .args(["server", "--data", s(data), "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out.status.code(), text(&out.stderr))
}

/// Starts `ferry server … extra` and returns it once it prints its address.
fn start_server(data: &Path, extra: &[&str]) -> (Child, String) {
    let mut child = ferry()
        .args(["server", "--data", s(data), "--listen", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line)
}

/// Finding 5: without `ferry server init`, `ferry server` made the root and targets keys in
/// the directory it serves from. Now a real server refuses to start without a catalog, or
/// with those keys in its data directory, and says how; `--dev-keys` keeps the convenience.
#[test]
fn a_real_server_starts_only_with_its_offline_keys_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("server");

    let (code, stderr) = server_refusal(&data, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("error[CATALOG_MISSING]"), "{stderr}");
    assert!(stderr.contains("ferry server init"), "{stderr}");
    assert!(!data.join("keys-offline").exists(), "no keys were made");
    let image = tmp.path().join("v1.img");
    make_image(&image, 1, 1);
    let out = try_publish(&data, &image, "1.0", &["--json"]);
    assert_eq!(json_error_code(&out), "CATALOG_MISSING");

    // Offline keys inside the data directory are refused at init and at start.
    let inside = data.join("my-keys");
    let out = run(&["server", "init", "--data", s(&data), "--keys", s(&inside)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("OFFLINE_KEYS_ON_SERVER"));
    assert!(!inside.exists());
    let out = run(&["server", "init", "--data", s(&data)]);
    assert_eq!(out.status.code(), Some(2), "--keys is required");
    ok(&["server", "init", "--data", s(&data), "--dev-keys"]);
    assert!(data.join("keys-offline/root.pk8").is_file());
    let (code, stderr) = server_refusal(&data, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("error[OFFLINE_KEYS_ON_SERVER]"), "{stderr}");
    assert!(stderr.contains("keys-offline/root.pk8"), "{stderr}");
    // A development server opts in.
    let (mut child, line) = start_server(&data, &["--dev-keys"]);
    assert!(line.contains("listening on https://"), "{line}");
    let _ = child.kill();
    let _ = child.wait();

    // Moved offline, the same catalog serves.
    let offline = tmp.path().join("offline");
    std::fs::rename(data.join("keys-offline"), &offline).unwrap();
    let (mut child, line) = start_server(&data, &[]);
    assert!(line.contains("listening on https://"), "{line}");
    let _ = child.kill();
    let _ = child.wait();
    let mut publish = publish_args(&data, &image, "1.0");
    publish.extend_from_slice(&["--keys", s(&offline)]);
    ok(&publish);
}

/// Sends one raw request line to `addr` and returns the whole answer.
fn raw_get(addr: &str, path: &str) -> String {
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    answer
}

/// Finding 6: `/artifacts/%2e%2e/v1/time` reached the origin's other routes through the
/// cache and was cached under that name. Now only artifact and target paths, decoded and
/// checked, are fetched, from a URL built of the checked parts.
#[test]
fn the_cache_forwards_only_artifact_and_target_paths() {
    let f = fleet(2, |s| s.url());
    let dir = f.root.join("cache");
    let cache = LanCache::start(&f.server.url(), &f.server.ca(), &dir, None);
    let addr = cache.addr().to_owned();
    for path in [
        "/artifacts/%2e%2e/v1/time",
        "/artifacts/%2E%2E/%2e%2e/v1/time",
        "/artifacts/releases/vm/..%2f..%2f..%2fv1/time",
        "/artifacts/releases/%2e%2e/%2e%2e/v1/time",
        "/tuf/targets/%2e%2e%2fmetadata%2ftimestamp.json",
        "/tuf/targets/..%2fmetadata%2f1.root.json",
    ] {
        let answer = raw_get(&addr, path);
        assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer}");
        assert!(
            !answer.contains("unix"),
            "{path} reached /v1/time: {answer}"
        );
    }
    let stats = raw_get(&addr, "/cache/stats");
    assert!(stats.contains("\"upstream_fetches\":0"), "{stats}");
    let cached: Vec<_> = walk(&dir.join("objects"));
    assert!(cached.is_empty(), "nothing was cached: {cached:?}");
    // What devices fetch still goes through.
    use_cache(&f.device, &format!("http://{addr}"));
    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
    assert!(!walk(&dir.join("objects")).is_empty());
    drop(cache);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Finding 8: the credential was briefly world-readable, the server's database and WAL were
/// world-readable, and `--enroll-token` showed in the process list. Now the secrets are 0600
/// from creation on and the token can come from a file or standard input.
#[test]
fn local_secrets_are_private_and_the_token_need_not_be_an_argument() {
    let f = fleet(2, |s| s.url());
    assert_eq!(mode(&f.device.join("trust/credential")), 0o600);
    let db = f.server.data.join("ferry.db");
    // The running server has its WAL and shared memory open.
    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
    for file in ["ferry.db", "ferry.db-wal", "ferry.db-shm"] {
        assert_eq!(mode(&f.server.data.join(file)), 0o600, "{file}");
    }
    // A database left readable by an older version is narrowed when it is next opened.
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    token(&f.server.data, &[]);
    assert_eq!(mode(&db), 0o600);

    let init = |dir: &Path| {
        let mut command = ferry();
        command
            .args(["device", "init", s(dir), "--class", "vm", "--image"])
            .arg(&f.v1)
            .args(["--version", "1.0", "--server", &f.server.url(), "--root"])
            .arg(root_file(&f.server.data))
            .args(["--ca", s(&f.server.ca())]);
        command
    };
    let token_file = f.root.join("token");
    std::fs::write(&token_file, format!("{}\n", token(&f.server.data, &[]))).unwrap();
    let from_file = f.root.join("device-token-file");
    let out = init(&from_file)
        .arg("--enroll-token-file")
        .arg(&token_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(mode(&from_file.join("trust/credential")), 0o600);

    let from_stdin = f.root.join("device-token-stdin");
    let mut child = init(&from_stdin)
        .args(["--enroll-token-file", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let secret = token(&f.server.data, &[]);
    writeln!(child.stdin.take().unwrap(), "{secret}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = devices(&f.server.data);
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");
}
