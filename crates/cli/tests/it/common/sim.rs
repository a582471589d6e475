//! Simulated devices over the HTTP API (enrolled with the admin token, asking for tickets,
//! delivering event reports directly) and an HTTPS client pinned to a server's CA: what the
//! dashboard, rollout, entitlement and deadline tests share (`fleet` adds the rollout CLI
//! and class-`vm` shorthands).

use std::sync::atomic::{AtomicU64, Ordering};

use ferry_events::{EventBatch, EventKind, EventReport, EventResult, OutboxHealth, ProgressReport};
use ferry_types::{DeviceId, Identity};
use serde_json::{Value, json};

use super::Server;

/// One runtime and one pinned client for many requests to one server.
pub struct Api {
    pub runtime: tokio::runtime::Runtime,
    pub client: reqwest::Client,
    pub base: String,
    pub admin: String,
}

impl Api {
    /// A client for a server this harness started.
    pub fn new(server: &Server) -> Api {
        Api::at(&server.url(), &server.data)
    }

    /// A client for the server at `base` whose data directory is `data`; redirects are not
    /// followed (the dashboard tests look at them).
    pub fn at(base: &str, data: &std::path::Path) -> Api {
        let ca = std::fs::read_to_string(data.join("pki/ca.pem")).unwrap();
        let (config, _) = ferry_tls::client_config_pinned(&ca).unwrap();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Api {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            client,
            base: base.trim_end_matches('/').to_owned(),
            admin: std::fs::read_to_string(data.join("admin-token"))
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

/// Enrolls `n` devices of `class` through the HTTP API (an admin token, then
/// `POST /v1/enroll`); ids from `first`, 7919 apart.
pub fn enroll(api: &Api, class: &str, first: u64, n: usize) -> Vec<Sim> {
    (0..n)
        .map(|i| {
            let (status, token) = api.admin("/v1/admin/enrollment-tokens", Some(json!({})));
            assert_eq!(status, 200, "{token}");
            let identity = Identity {
                device_id: DeviceId::new(first + i as u64 * 7919).unwrap(),
                board_id: 0xa1,
                chip_id: 0x8103,
                hardware_uuid: format!(
                    "00000000-0000-4000-8000-{:012x}",
                    (first + i as u64) & 0xffff_ffff_ffff
                )
                .parse()
                .unwrap(),
                device_class: class.parse().unwrap(),
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
pub fn published(api: &Api, class: &str, version: &str) -> (String, String) {
    let (status, releases) = api.call(&format!("/v1/releases?class={class}"), "", None);
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

/// Asks for a ticket for `build` (`root`): (status, answer).
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

/// An answer of [`ask`] in one word: "TICKET" or the refusal's code.
pub fn code(answer: &(u16, Value)) -> String {
    match answer {
        (200, v) if v["ticket"].is_object() => "TICKET".into(),
        (_, v) => v["code"].as_str().unwrap_or("?").to_owned(),
    }
}

/// Asks for a ticket for `build` (`root`): "TICKET" or the refusal's code.
pub fn ticket(api: &Api, sim: &Sim, release: &(String, String)) -> String {
    code(&ask(api, sim, release))
}

/// A report of `event` for `sim`'s update from 1.0 to 2.0 (`percent` for progress, an
/// error `code` for failures).
pub fn report(
    sim: &Sim,
    event: EventKind,
    percent: Option<f64>,
    error: Option<&str>,
) -> EventReport {
    let version = |v: &str| v.parse().ok();
    let failed = matches!(event, EventKind::Failed | EventKind::RolledBack);
    let result = if failed {
        EventResult::Failure
    } else if event == EventKind::Progress {
        EventResult::InProgress
    } else {
        EventResult::Success
    };
    let mut r = EventReport::new(&sim.identity, event, result);
    r.sequence = sim.sequence.fetch_add(1, Ordering::SeqCst) + 1;
    r.uuid = Some(uuid::Uuid::from_u128(u128::from(sim.id().get())));
    r.current_os_version = version("1.0");
    r.current_base_os_version = version("1.0");
    r.target_os_version = version("2.0");
    r.on_ac_power = true;
    r.data_fs_capacity = 1 << 30;
    r.data_fs_free = 1 << 29;
    r.system_fs_capacity = 1 << 30;
    r.system_fs_free = 1 << 29;
    r.storage_capacity = 1 << 30;
    r.ramp_enabled = true;
    r.progress = percent.map(|p| ProgressReport {
        phase: "DOWNLOADING_UPDATE".into(),
        percent: p,
        done: p as u64,
        total: 100,
        rate_bytes_per_sec: 1.0e6,
        eta_secs: Some((100.0 - p) * 0.5),
    });
    r.error = error.map(|code| ferry_events::ErrorReport {
        code: code.into(),
        cause: format!("{code} happened"),
        fix: "Do something".into(),
        machine: Some("controller".into()),
        state: Some("PREPARING_UPDATE".into()),
    });
    r
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
