//! Issue 5's promises, end to end: every personalization refusal staged for real against
//! a loopback HTTPS server, each with its code and message, and the device still on its
//! old version with nothing lost.

use std::path::Path;

use crate::common::intercept::InterceptingProxy;
use crate::common::*;

/// The device runs 1.0 from slot a, nothing else boots, slot a is untouched.
fn assert_still_on_v1(f: &Fleet) {
    let st = status(&f.device);
    assert_eq!(st["version"], "1.0", "{st}");
    assert_eq!(st["running_slot"], "a", "{st}");
    assert_eq!(st["next_boot"], "a", "{st}");
    let len = std::fs::metadata(&f.v1).unwrap().len();
    assert_eq!(
        slot_digest(&f.device.join("slots/a.img"), len),
        slot_digest(&f.v1, len),
        "slot a must be untouched"
    );
}

/// `ferry install vm-2.0 --json` that must fail: (code, the whole error object).
fn failed_install(device: &Path, env: &[(&str, &str)]) -> (String, serde_json::Value) {
    let out = ferry()
        .args(["install", "vm-2.0", "--json", "--device", s(device)])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out.stdout));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)));
    (
        v["error"]["code"].as_str().unwrap_or_default().to_owned(),
        v["error"].clone(),
    )
}

fn install_and_reboot(device: &Path) {
    ok(&["install", "vm-2.0", "--device", s(device)]);
    ok(&["reboot", "--device", s(device)]);
    assert_eq!(status(device)["version"], "2.0");
}

#[test]
fn personalized_install_stores_the_ticket_and_consumes_the_nonce_at_boot() {
    let f = fleet(2, |s| s.url());
    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
    let ticket = std::fs::read_to_string(f.device.join("boot/ticket-b.json")).unwrap();
    assert!(ticket.contains(&device_id(&f.device)), "{ticket}");
    assert!(f.device.join("boot/nonce").exists());
    let journal = std::fs::read_to_string(f.device.join("journal/journal.jsonl")).unwrap();
    let personalize = journal
        .find("\"PREFLIGHT_PERSONALIZE\"")
        .expect("state journaled");
    let download = journal
        .find("\"DOWNLOADING_UPDATE\"")
        .expect("download journaled");
    assert!(personalize < download, "personalized before downloading");
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(status(&f.device)["version"], "2.0");
    assert!(!f.device.join("boot/nonce").exists(), "nonce consumed");
    assert!(f.device.join("boot/nonce-b").exists());
    // The committed slot still passes its boot check (ticket, seal) on later boots.
    ok(&["boot-check", "--device", s(&f.device)]);
    ok(&["log", "replay", "--device", s(&f.device)]);
}

#[test]
fn skewed_clock_is_clock_skew_with_both_times_and_the_limit() {
    let f = fleet(2, |s| s.url());
    let (code, error) = failed_install(&f.device, &[("FERRY_CLOCK_OFFSET", "300")]);
    assert_eq!(code, "CLOCK_SKEW", "{error}");
    let cause = error["cause"].as_str().unwrap();
    assert!(cause.contains("60 s limit"), "{cause}");
    assert!(error["data"]["device_time"].is_string(), "{error}");
    assert!(error["data"]["server_time"].is_string(), "{error}");
    assert_eq!(error["data"]["limit_seconds"], 60, "{error}");
    let skew = error["data"]["skew_seconds"].as_i64().unwrap();
    assert!((295..=305).contains(&skew), "{error}");
    assert!(error["fix"].as_str().unwrap().contains("clock"), "{error}");
    assert_still_on_v1(&f);

    // The config key does the same; the environment overrides it.
    let config = f.device.join("config.toml");
    let text_config = std::fs::read_to_string(&config).unwrap();
    assert!(
        text_config.contains("clock_offset_secs = 0"),
        "{text_config}"
    );
    std::fs::write(
        &config,
        text_config.replace("clock_offset_secs = 0", "clock_offset_secs = -500"),
    )
    .unwrap();
    let (code, error) = failed_install(&f.device, &[]);
    assert_eq!(code, "CLOCK_SKEW", "{error}");
    assert!(error["data"]["skew_seconds"].as_i64().unwrap() < -490);
    ferry()
        .args(["install", "vm-2.0", "--device", s(&f.device)])
        .env("FERRY_CLOCK_OFFSET", "0")
        .output()
        .map(|o| assert!(o.status.success(), "{}", text(&o.stderr)))
        .unwrap();
    std::fs::write(&config, text_config).unwrap();
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(status(&f.device)["version"], "2.0");
}

#[test]
fn closed_signing_window_is_not_signed_and_reopening_it_works() {
    let f = fleet(2, |s| s.url());
    let build = offered_build_id(&f.device);
    signing_window(&f.server.data, &build, "close");
    let (code, error) = failed_install(&f.device, &[]);
    assert_eq!(code, "NOT_SIGNED", "{error}");
    assert_eq!(error["data"]["build_id"], build.as_str(), "{error}");
    assert_eq!(error["data"]["device_class"], "vm", "{error}");
    assert_still_on_v1(&f);
    signing_window(&f.server.data, &build, "open");
    install_and_reboot(&f.device);
}

#[test]
fn revoked_device_is_revoked_device() {
    let f = fleet(2, |s| s.url());
    let id = device_id(&f.device);
    let data = s(&f.server.data);
    let listed = ok(&["server", "devices", "--data", data, "--json"]);
    assert!(listed.contains(&id), "{listed}");
    // The server has verified (and remembers) this credential: a request that passes the
    // credential check and fails on its body.
    let credential = std::fs::read_to_string(f.device.join("trust/credential")).unwrap();
    let credential = credential.trim();
    let (status, answer) = post(
        &f.server,
        "/v1/personalize",
        credential,
        &serde_json::json!({}),
    );
    assert_eq!(
        (status, answer["code"].as_str()),
        (422, Some("BAD_REQUEST")),
        "{answer}"
    );
    // The same claims with another signature are not the remembered credential.
    let (claims, signature) = credential.split_once('.').unwrap();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let forged = format!("{claims}.{flipped}{}", &signature[1..]);
    let (status, answer) = post(
        &f.server,
        "/v1/personalize",
        &forged,
        &serde_json::json!({}),
    );
    assert_eq!(status, 401, "{answer}");
    ok(&["server", "devices", "--data", data, "--revoke", &id]);
    let (code, error) = failed_install(&f.device, &[]);
    assert_eq!(code, "REVOKED_DEVICE", "{error}");
    assert_eq!(error["data"]["device_id"], id.as_str(), "{error}");
    assert_still_on_v1(&f);
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&["server", "devices", "--data", data, "--json"])).unwrap();
    assert!(listed[0]["revoked_at"].is_string(), "{listed}");
}

#[test]
fn zero_identity_is_bad_identity_a_hardware_fault() {
    let f = fleet(2, |s| s.url());
    let path = f.device.join("identity.json");
    let saved = std::fs::read(&path).unwrap();
    let mut identity: serde_json::Value = serde_json::from_slice(&saved).unwrap();
    identity["hardware_uuid"] = "00000000-0000-0000-0000-000000000000".into();
    identity["board_id"] = "0x0000".into();
    std::fs::write(&path, serde_json::to_vec(&identity).unwrap()).unwrap();
    let (code, error) = failed_install(&f.device, &[]);
    assert_eq!(code, "BAD_IDENTITY", "{error}");
    assert!(
        error["cause"].as_str().unwrap().contains("hardware fault"),
        "{error}"
    );
    let zero = error["data"]["zero_fields"].to_string();
    assert!(
        zero.contains("hardware_uuid") && zero.contains("board_id"),
        "{error}"
    );
    assert!(
        error["fix"].as_str().unwrap().contains("hardware"),
        "{error}"
    );
    std::fs::write(&path, saved).unwrap();
    assert_still_on_v1(&f);
    install_and_reboot(&f.device);
}

#[test]
fn replayed_nonce_is_nonce_reused() {
    let f = fleet(2, |s| s.url());
    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
    // Replay the request the device just made: same identity, nonce, build and
    // components (from its ticket and boot/nonce), with its own credential.
    let ticket: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f.device.join("boot/ticket-b.json")).unwrap())
            .unwrap();
    let signed = ticket["ticket"].clone();
    let nonce = std::fs::read_to_string(f.device.join("boot/nonce")).unwrap();
    let body = serde_json::json!({
        "identity": signed["identity"],
        "nonce": nonce.trim(),
        "build_id": signed["build_id"],
        "components": signed["components"],
        "device_time": chrono::Utc::now(),
    });
    let credential = std::fs::read_to_string(f.device.join("trust/credential")).unwrap();
    let (status, answer) = post(&f.server, "/v1/personalize", credential.trim(), &body);
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["code"], "NONCE_REUSED", "{answer}");
    assert!(answer["data"]["nonce_sha256"].is_string(), "{answer}");
    // Without a credential nothing is signed at all.
    let (status, answer) = post(&f.server, "/v1/personalize", "", &body);
    assert_eq!(status, 401, "{answer}");
    // The device itself is unharmed.
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(status_of(&f.device)["version"], "2.0");
}

fn status_of(device: &Path) -> serde_json::Value {
    status(device)
}

/// A second device (`name`) on 1.0, enrolled with the fleet's server.
#[test]
fn ticket_moved_to_another_device_is_refused_at_boot_and_the_device_falls_back() {
    let f = fleet(2, |s| s.url());
    let other = f.another_device("device-y");
    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
    ok(&["install", "vm-2.0", "--device", s(&other)]);
    std::fs::copy(
        f.device.join("boot/ticket-b.json"),
        other.join("boot/ticket-b.json"),
    )
    .unwrap();
    let out = run(&["reboot", "--json", "--device", s(&other)]);
    assert!(!out.status.success());
    let outcome: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        outcome["failure"]["code"], "TICKET_OTHER_DEVICE",
        "{outcome}"
    );
    assert_eq!(outcome["running"], "a", "{outcome}");
    let st = status(&other);
    assert_eq!(st["version"], "1.0", "{st}");
    assert_eq!(
        st["last_boot_failure"]["code"], "TICKET_OTHER_DEVICE",
        "{st}"
    );
    // Device X's own ticket is good.
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(status(&f.device)["version"], "2.0");
}

#[test]
fn ticket_with_one_byte_changed_is_bad_signature_at_boot() {
    let f = fleet(2, |s| s.url());
    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
    let path = f.device.join("boot/ticket-b.json");
    let mut bytes = std::fs::read(&path).unwrap();
    // One hex digit of the signed nonce hash: still JSON, still a ticket, not signed.
    let at = text(&bytes).find("\"nonce_sha256\":\"").unwrap() + 16;
    bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
    std::fs::write(&path, &bytes).unwrap();
    let out = run(&["reboot", "--json", "--device", s(&f.device)]);
    assert!(!out.status.success());
    let outcome: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        outcome["failure"]["code"], "TICKET_BAD_SIGNATURE",
        "{outcome}"
    );
    assert_still_on_v1(&f);
    assert_eq!(
        status(&f.device)["last_boot_failure"]["code"],
        "TICKET_BAD_SIGNATURE"
    );
    // Installing again gets a new ticket and works.
    install_and_reboot(&f.device);
}

#[test]
fn tls_interception_is_reported_naming_the_proxy_issuer() {
    let f = fleet(2, |s| s.url());
    let proxy = InterceptingProxy::start(f.server.addr, &f.server.ca());
    let config = f.device.join("config.toml");
    let text_config = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text_config.replace(&f.server.url(), &proxy.url)).unwrap();
    let (code, error) = failed_install(&f.device, &[]);
    assert_eq!(code, "TLS_INTERCEPTED", "{error}");
    let cause = error["cause"].as_str().unwrap();
    assert!(
        cause.contains("Corp Inspection CA"),
        "names the issuer: {cause}"
    );
    assert_still_on_v1(&f);
    // The proxy itself works (it trusts the real server): only the pin refuses it.
    assert!(proxy.relayed_ok(), "the proxy reaches the server");
    std::fs::write(&config, text_config).unwrap();
    install_and_reboot(&f.device);
}

/// The key set the server's catalog signs (`ferry server personalization-key list`).
fn published_keys(data: &Path) -> serde_json::Value {
    let listed = ok(&[
        "server",
        "personalization-key",
        "list",
        "--data",
        s(data),
        "--json",
    ]);
    serde_json::from_str(&listed).unwrap()
}

/// The key ids the device trusts (its stored key set), sorted as stored.
fn trusted_keys(device: &Path) -> Vec<String> {
    let set: serde_json::Value = serde_json::from_slice(
        &std::fs::read(device.join("trust/personalization-keys.json")).unwrap(),
    )
    .unwrap();
    set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["keyid"].as_str().unwrap().to_owned())
        .collect()
}

/// The id of the key that signed a slot's ticket.
fn ticket_key(device: &Path, slot: &str) -> String {
    let ticket: serde_json::Value = serde_json::from_slice(
        &std::fs::read(device.join(format!("boot/ticket-{slot}.json"))).unwrap(),
    )
    .unwrap();
    ticket["key_id"].as_str().unwrap().to_owned()
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// Waits until the running server signs with `key_id` (its diagnostics endpoint).
fn wait_until_signing_with(server: &Server, key_id: &str) {
    let url = format!("{}/v1/keys/personalization.pub", server.url());
    let signing = on_pinned_client(server, |client| async move {
        let mut signing = String::new();
        for _ in 0..100 {
            let key: serde_json::Value =
                client.get(&url).send().await.unwrap().json().await.unwrap();
            signing = key["keyid"].as_str().unwrap_or_default().to_owned();
            if signing == key_id {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        signing
    });
    assert_eq!(signing, key_id, "the server picks up the rotated key");
}

#[test]
fn personalization_key_reaches_devices_through_the_catalog_and_rotates_the_tuf_way() {
    let f = fleet(2, |s| s.url());
    let data = f.server.data.clone();
    let key1 = published_keys(&data)["current"]
        .as_str()
        .unwrap()
        .to_owned();
    // Device Y holds a ticket under key 1 until key 1 is retired.
    let other = f.another_device("device-y");
    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
    ok(&["install", "vm-2.0", "--device", s(&other)]);
    assert_eq!(ticket_key(&f.device, "b"), key1);
    assert_eq!(ticket_key(&other, "b"), key1);
    // The device took the key from the catalog's signed target, not from enrollment.
    assert_eq!(trusted_keys(&f.device), vec![key1.clone()]);
    assert!(!f.device.join("trust/personalization.pub").exists());

    // Rotate: key 2 signs from now on, key 1 stays accepted (the overlap).
    let rotated: serde_json::Value = serde_json::from_str(&ok(&[
        "server",
        "personalization-key",
        "rotate",
        "--data",
        s(&data),
        "--keys",
        s(&offline_keys(&data)),
        "--json",
    ]))
    .unwrap();
    let key2 = rotated["current"].as_str().unwrap().to_owned();
    assert_ne!(key2, key1);
    assert_eq!(rotated["version"], 2, "{rotated}");
    assert_eq!(rotated["changed"], "rotated", "{rotated}");
    wait_until_signing_with(&f.server, &key2);
    ok(&["list", "--device", s(&f.device)]);
    assert_eq!(
        sorted(trusted_keys(&f.device)),
        sorted(vec![key1.clone(), key2.clone()])
    );
    // During the overlap the slot personalized with key 1 still boots.
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(status(&f.device)["version"], "2.0");
    // A ticket signed under key 2 verifies after the device's scan (install scans first).
    let v3 = f.root.join("v3.img");
    make_image(&v3, 3, 2);
    publish(&data, &v3, "3.0");
    ok(&["install", "vm-3.0", "--device", s(&f.device)]);
    assert_eq!(ticket_key(&f.device, "a"), key2);
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(status(&f.device)["version"], "3.0");

    // The current key cannot be retired; key 1 can.
    let out = run(&[
        "server",
        "personalization-key",
        "retire",
        &key2,
        "--data",
        s(&data),
        "--keys",
        s(&offline_keys(&data)),
        "--json",
    ]);
    assert!(!out.status.success());
    assert_eq!(json_error_code(&out), "KEYSET_RETIRE_CURRENT");
    let retired: serde_json::Value = serde_json::from_str(&ok(&[
        "server",
        "personalization-key",
        "retire",
        &key1,
        "--data",
        s(&data),
        "--keys",
        s(&offline_keys(&data)),
        "--json",
    ]))
    .unwrap();
    assert_eq!(retired["keys"], serde_json::json!([key2]), "{retired}");
    assert_eq!(retired["version"], 3, "{retired}");

    // The key set file changed on the server's disk is not what the catalog signs: TUF
    // refuses it and device Y keeps the set it trusts (key 1 only, from its install).
    let (_, sha256) = ferry_catalog::repo::published_target(
        &data.join("tuf/metadata"),
        ferry_personalize::KEY_SET_TARGET,
    )
    .unwrap()
    .expect("the catalog lists the key set");
    let file = data
        .join("tuf/targets")
        .join(ferry_catalog::repo::target_file_name(
            ferry_personalize::KEY_SET_TARGET,
            &sha256,
        ));
    let genuine = std::fs::read(&file).unwrap();
    let tampered = text(&genuine).replacen(&key2[..8], &key1[..8], 1);
    assert_eq!(tampered.len(), genuine.len());
    std::fs::write(&file, &tampered).unwrap();
    let out = run(&["list", "--json", "--device", s(&other)]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert_eq!(json_error_code(&out), "CATALOG_TARGET_MISMATCH");
    assert_eq!(trusted_keys(&other), vec![key1.clone()]);

    // With the genuine file back, device Y takes the set without key 1, and its slot
    // personalized with key 1 is refused at boot, naming both keys: it stays on 1.0.
    std::fs::write(&file, &genuine).unwrap();
    ok(&["list", "--device", s(&other)]);
    assert_eq!(trusted_keys(&other), vec![key2.clone()]);
    let out = run(&["reboot", "--json", "--device", s(&other)]);
    assert!(!out.status.success());
    let outcome: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        outcome["failure"]["code"], "TICKET_KEY_NOT_TRUSTED",
        "{outcome}"
    );
    let cause = outcome["failure"]["cause"].as_str().unwrap();
    assert!(cause.contains(&key1) && cause.contains(&key2), "{cause}");
    assert_eq!(outcome["running"], "a", "{outcome}");
    let st = status(&other);
    assert_eq!(st["version"], "1.0", "{st}");
    assert_eq!(
        st["last_boot_failure"]["code"], "TICKET_KEY_NOT_TRUSTED",
        "{st}"
    );
    // Installing again gets a ticket under key 2, which boots.
    ok(&["install", "vm-3.0", "--device", s(&other)]);
    assert_eq!(ticket_key(&other, "b"), key2);
    ok(&["reboot", "--device", s(&other)]);
    assert_eq!(status(&other)["version"], "3.0");
}

/// `POST path` with a bearer credential: (status, JSON body).
fn post(
    server: &Server,
    path: &str,
    bearer: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let url = format!("{}{path}", server.url());
    let body = body.clone();
    let bearer = bearer.to_owned();
    on_pinned_client(server, |client| async move {
        let mut request = client.post(&url).json(&body);
        if !bearer.is_empty() {
            request = request.bearer_auth(bearer);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let value = response.json().await.unwrap_or(serde_json::Value::Null);
        (status, value)
    })
}
