//! Many simulated devices against one real server through its HTTP API (issue 16's
//! rollout and entitlement tests): enroll, ask for tickets, deliver event reports, and the
//! `ferry rollout` CLI on the data directory.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;
use ferry_events::{
    EventBatch, EventKind, EventReport, EventResult, OutboxHealth, REPORT_VERSION, Transition,
};
use ferry_types::{DeviceId, Identity};
use serde_json::{Value, json};

/// One runtime and one pinned client for many requests to one server.
pub struct Api {
    pub runtime: tokio::runtime::Runtime,
    pub client: reqwest::Client,
    pub base: String,
    pub admin: String,
}

impl Api {
    pub fn new(server: &Server) -> Api {
        let ca = std::fs::read_to_string(server.ca()).unwrap();
        let (config, _) = ferry_tls::client_config_pinned(&ca).unwrap();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .build()
            .unwrap();
        Api {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client,
            base: server.url(),
            admin: std::fs::read_to_string(server.data.join("admin-token"))
                .unwrap()
                .trim()
                .to_owned(),
        }
    }

    /// `POST path` with `body` (or `GET` without), bearer `token`: (status, JSON or null).
    pub fn call(&self, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        self.runtime.block_on(async {
            let request = || match &body {
                Some(body) => self.client.post(&url).json(body),
                None => self.client.get(&url),
            };
            // A pooled connection the server closed while idle fails once: send again.
            let response = match request().bearer_auth(token).send().await {
                Ok(response) => response,
                Err(_) => request().bearer_auth(token).send().await.unwrap(),
            };
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        })
    }

    /// `PUT path` with `body` and the admin token: (status, JSON or null).
    pub fn call_put(&self, path: &str, body: Value) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        self.runtime.block_on(async {
            let response = self
                .client
                .put(&url)
                .bearer_auth(&self.admin)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        })
    }

    pub fn admin(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call(path, &self.admin, body)
    }
}

/// A simulated device: its identity, credential and next report sequence.
pub struct Sim {
    pub identity: Identity,
    pub credential: String,
    pub sequence: AtomicU64,
}

impl Sim {
    pub fn id(&self) -> DeviceId {
        self.identity.device_id
    }
}

/// Enrolls `n` devices of class `vm` through the HTTP API (an admin token, then
/// `POST /v1/enroll`).
pub fn enroll(api: &Api, n: usize) -> Vec<Sim> {
    (0..n)
        .map(|i| {
            let (status, token) = api.admin("/v1/admin/enrollment-tokens", Some(json!({})));
            assert_eq!(status, 200, "{token}");
            let identity = Identity {
                device_id: DeviceId::new(0x5100_0000_0000_0000 + i as u64 * 7919 + 1).unwrap(),
                board_id: 0xa1,
                chip_id: 0x8103,
                hardware_uuid: format!("00000000-0000-4000-8000-{:012x}", i + 1)
                    .parse()
                    .unwrap(),
                device_class: "vm".parse().unwrap(),
            };
            let body = json!({ "token": token["token"], "identity": identity });
            let (status, enrolled) = api.call("/v1/enroll", "", Some(body));
            assert_eq!(status, 200, "{enrolled}");
            Sim {
                identity,
                credential: enrolled["credential"].as_str().unwrap().to_owned(),
                sequence: AtomicU64::new(0),
            }
        })
        .collect()
}

/// A release's build id and seal root, as `GET /v1/releases` and its manifest say.
pub fn published(api: &Api, version: &str) -> (String, String) {
    let (status, releases) = api.call("/v1/releases?class=vm", "", None);
    assert_eq!(status, 200, "{releases}");
    let release = releases
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["version"] == version)
        .unwrap()
        .clone();
    let (_, manifest) = api.call(release["manifest"]["url"].as_str().unwrap(), "", None);
    (
        release["build_id"].as_str().unwrap().to_owned(),
        manifest["seal"]["root_hash"].as_str().unwrap().to_owned(),
    )
}

/// Asks for a ticket for `build` (`root`): (status, code or "TICKET").
pub fn ask(api: &Api, sim: &Sim, (build, root): &(String, String)) -> (u16, Value) {
    let body = json!({
        "identity": sim.identity,
        "nonce": ferry_personalize::Nonce::random().to_string(),
        "build_id": build,
        "components": [{ "name": "system", "root_hash": root }],
        "device_time": chrono::Utc::now(),
    });
    api.call("/v1/personalize", &sim.credential, Some(body))
}

pub fn code(answer: &(u16, Value)) -> String {
    match answer {
        (200, v) if v["ticket"].is_object() => "TICKET".into(),
        (_, v) => v["code"].as_str().unwrap_or("?").to_owned(),
    }
}

/// A report of `event` for the update to 2.0 (an error `code` for failures).
pub fn report(sim: &Sim, event: EventKind, error: Option<&str>) -> EventReport {
    let version = |v: &str| v.parse().ok();
    let failed = matches!(event, EventKind::Failed | EventKind::RolledBack);
    EventReport {
        report_version: REPORT_VERSION,
        sequence: sim.sequence.fetch_add(1, Ordering::SeqCst) + 1,
        device_id: sim.id(),
        uuid: Some(uuid::Uuid::from_u128(u128::from(sim.id().get()))),
        event,
        event_time: chrono::Utc::now(),
        result: if failed {
            EventResult::Failure
        } else {
            EventResult::Success
        },
        transition: Some(Transition {
            machine: "update".into(),
            from: "INSTALLING".into(),
            event: event.to_string(),
            to: "NEXT".into(),
        }),
        audience_type: "customer".into(),
        device_class: "vm".parse().unwrap(),
        device_model: "000000a1-00008103".into(),
        platform: "linux-x86_64".into(),
        core_version: "0.1.0".into(),
        current_os_type: "system".into(),
        current_os_version: version("1.0"),
        current_base_os_version: version("1.0"),
        current_slot: None,
        target_os_version: version("2.0"),
        update_type: None,
        preferred_type: None,
        battery_level: None,
        battery_is_charging: false,
        on_ac_power: true,
        low_power_mode: false,
        metered_network: None,
        data_fs_capacity: 1 << 30,
        data_fs_free: 1 << 29,
        system_fs_capacity: 1 << 30,
        system_fs_free: 1 << 29,
        storage_capacity: 1 << 30,
        total_required_free_space: None,
        mandatory_update_eligible: false,
        mandatory_update_optional: true,
        pre_staging_enabled: false,
        pre_staging_max_size: None,
        pre_staging_optional_size: None,
        pre_staging_required_size: None,
        ramp_enabled: true,
        rapid_security_response_installed: false,
        rapid_security_response_semi_splat: false,
        facts_error: None,
        phases: Vec::new(),
        payload: None,
        progress: None,
        error: error.map(|code| ferry_events::ErrorReport {
            code: code.into(),
            cause: format!("{code} happened"),
            fix: "Do something".into(),
            machine: Some("controller".into()),
            state: Some("PREPARING_UPDATE".into()),
        }),
        fallback: None,
        boot_counter_rolled_back: None,
    }
}

/// Delivers `reports` of `sim` in one batch; they must be stored.
pub fn deliver(api: &Api, sim: &Sim, reports: Vec<EventReport>) {
    let batch = EventBatch {
        device_id: sim.id(),
        outbox: OutboxHealth::default(),
        reports,
    };
    let (status, ack) = api.call(
        "/v1/events",
        &sim.credential,
        Some(serde_json::to_value(&batch).unwrap()),
    );
    assert_eq!(status, 200, "{ack}");
}

pub fn rollout_cli(data: &Path, args: &[&str]) -> Value {
    let mut all = vec!["rollout"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--data", s(data), "--json"]);
    serde_json::from_str(&ok(&all)).unwrap()
}

/// `ferry rollout ARGS --data DATA` in words, printed (the README's walk-through quotes it).
pub fn walk_through(data: &Path, args: &[&str]) -> String {
    let mut all = vec!["rollout"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--data", s(data)]);
    let out = ok(&all);
    println!("$ ferry rollout {}\n{out}", args.join(" "));
    out
}

/// A server with 1.0 and 2.0 of class `vm` published (tiny images).
pub fn server_with_releases(root: &Path) -> Server {
    let data = root.join("server");
    let (v1, v2) = (root.join("v1.img"), root.join("v2.img"));
    make_image(&v1, 1, 1);
    make_image(&v2, 2, 1);
    publish(&data, &v1, "1.0");
    publish(&data, &v2, "2.0");
    Server::start(&data)
}

/// The labels `ferry list` offers the device (a scan each time), or the error code.
pub fn offered(device: &Path) -> Result<Vec<String>, String> {
    let out = run(&["list", "--json", "--device", s(device)]);
    if !out.status.success() {
        return Err(json_error_code(&out));
    }
    let offers: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    Ok(offers
        .iter()
        .map(|o| o["label"].as_str().unwrap().to_owned())
        .collect())
}

pub fn sqlite(data: &Path, sql: &str) {
    let status = std::process::Command::new("sqlite3")
        .arg(data.join("ferry.db"))
        .arg(sql)
        .status()
        .expect("sqlite3 runs (the test alters the server's database as an attacker would)");
    assert!(status.success());
}

/// `GET /metrics` with the admin token; the text must pass `promtool check metrics`.
pub fn metrics(api: &Api) -> String {
    let url = format!("{}/metrics", api.base);
    let text = api.runtime.block_on(async {
        let response = api
            .client
            .get(&url)
            .bearer_auth(&api.admin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        response.text().await.unwrap()
    });
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) must be installed: .ci/run installs it");
    use std::io::Write;
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Rollout `id`'s series for 2.0 of class vm: `(kind, value)` lines present in `text`.
pub fn assert_rollout_metrics(text: &str, id: i64, expected: &[(&str, u64)]) {
    for (kind, n) in expected {
        let line = match *kind {
            "halted" => {
                format!("ferry_rollout_halted{{class=\"vm\",rollout=\"{id}\",version=\"2.0\"}} {n}")
            }
            "open_waves" => format!(
                "ferry_rollout_open_waves{{class=\"vm\",rollout=\"{id}\",version=\"2.0\"}} {n}"
            ),
            kind => format!(
                "ferry_rollout_devices{{class=\"vm\",kind=\"{kind}\",rollout=\"{id}\",version=\"2.0\"}} {n}"
            ),
        };
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
}

/// `ferry list --why --json` on the device: (version, code, reason) for each release.
pub fn why(device: &Path) -> Vec<(String, String, String)> {
    let answer: Vec<Value> =
        serde_json::from_str(&ok(&["list", "--why", "--json", "--device", s(device)])).unwrap();
    answer
        .iter()
        .map(|w| {
            let f = |k: &str| w[k].as_str().unwrap_or_default().to_owned();
            (f("version"), f("code"), f("reason"))
        })
        .collect()
}
