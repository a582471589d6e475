//! Many simulated devices against one real server through its HTTP API (issue 16's
//! rollout and entitlement tests): enroll, ask for tickets, deliver event reports, and the
//! `ferry rollout` CLI on the data directory.

use std::path::Path;

use super::*;
use ferry_events::{EventKind, EventReport, Transition};
use serde_json::Value;

#[allow(unused_imports)]
pub use super::sim::{Api, Sim, ask, code, deliver};

/// The first id [`enroll`] gives.
const FIRST_ID: u64 = 0x5100_0000_0000_0001;

/// Enrolls `n` devices of class `vm` through the HTTP API.
pub fn enroll(api: &Api, n: usize) -> Vec<Sim> {
    super::sim::enroll(api, "vm", FIRST_ID, n)
}

/// A `vm` release's build id and seal root.
pub fn published(api: &Api, version: &str) -> (String, String) {
    super::sim::published(api, "vm", version)
}

/// A report of `event` for the update to 2.0 (an error `code` for failures), with the
/// update machine's transition.
pub fn report(sim: &Sim, event: EventKind, error: Option<&str>) -> EventReport {
    let mut report = super::sim::report(sim, event, None, error);
    report.transition = Some(Transition {
        machine: "update".into(),
        from: "INSTALLING".into(),
        event: event.to_string(),
        to: "NEXT".into(),
    });
    report
}

/// `ferry rollout ARGS --data DATA --json`, parsed.
pub fn rollout_cli(data: &Path, args: &[&str]) -> Value {
    let mut all = vec!["rollout"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--data", s(data), "--json"]);
    serde_json::from_str(&ok(&all)).unwrap()
}

/// `ferry rollout create` of `vm` 2.0 with `extra` flags, parsed.
pub fn create_rollout(data: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["create", "--class", "vm", "--version", "2.0"];
    args.extend_from_slice(extra);
    rollout_cli(data, &args)
}

/// The error code `ferry rollout create` of `vm` 2.0 with `extra` flags refuses with.
pub fn refused_rollout(data: &Path, extra: &[&str]) -> String {
    let mut args = vec!["rollout", "create", "--data", s(data)];
    args.extend_from_slice(&["--class", "vm", "--version", "2.0"]);
    args.extend_from_slice(extra);
    args.push("--json");
    json_error_code(&run(&args))
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

/// What the rollout, entitlement and deadline tests start from: [`server_with_releases`],
/// a client, `n` enrolled `vm` devices and the two releases' (build, root).
pub struct SimFleet {
    pub server: Server,
    pub data: std::path::PathBuf,
    pub api: Api,
    pub sims: Vec<Sim>,
    pub v1: (String, String),
    pub v2: (String, String),
}

/// A [`SimFleet`] of `n` devices, its server's files under `root`.
pub fn sim_fleet(root: &Path, n: usize) -> SimFleet {
    let server = server_with_releases(root);
    let api = Api::new(&server);
    let sims = enroll(&api, n);
    let (v1, v2) = (published(&api, "1.0"), published(&api, "2.0"));
    SimFleet {
        data: server.data.clone(),
        server,
        api,
        sims,
        v1,
        v2,
    }
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
    promtool_check(&text);
    text
}

/// `text` passes `promtool check metrics` (Prometheus' own exposition-format checker).
pub fn promtool_check(text: &str) {
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
