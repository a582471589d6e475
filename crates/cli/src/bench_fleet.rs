//! `ferry bench fleet`: a fleet simulator against a running server (one, or replicas behind a
//! load balancer). Thousands of lightweight devices live in one process, each with its own
//! identity, credential and report sequence, and no slot image; they talk through the
//! agent's own client ([`ferry_agent::client::Client`]): scans (the catalog's
//! `timestamp.json`, what a device refreshes on every scan), tickets (`/v1/personalize`),
//! event reports (`/v1/events`) and installs of the class's newest (small) payload, each
//! kind at its own rate; or, with `--burst`, every device asks for a ticket at once, as
//! after a release (the thundering herd). It reports throughput, latency p50/p99 and every
//! error by its code.
//!
//! Devices are enrolled through `/v1/enroll` with tokens from the admin API the first time,
//! and kept in `--state FILE` so later runs reuse them.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_agent::AgentError;
use ferry_agent::client::{Artifact, Client};
use ferry_events::{EventBatch, OutboxHealth};
use ferry_personalize::{BuildId, Component, Nonce, TicketRequest};
use ferry_types::{DeviceClass, DeviceId, Diagnose, Identity};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::args::BenchFleetArgs;
use crate::bench::{bench_failure, uuid_random};
use crate::failure::Failure;

/// One simulated device: what a real one keeps between runs.
#[derive(Serialize, Deserialize)]
struct SimDevice {
    identity: Identity,
    credential: String,
    /// The last report sequence sent.
    sequence: AtomicU64,
}

/// What the devices ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Scan,
    Ticket,
    Report,
    Install,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Scan => "scans",
            Kind::Ticket => "tickets",
            Kind::Report => "reports",
            Kind::Install => "installs",
        }
    }
}

/// The release the devices install and ask tickets for.
struct Target {
    build_id: BuildId,
    components: Vec<Component>,
    payload: Artifact,
    class: DeviceClass,
}

/// Latencies and errors of one kind.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: BTreeMap<String, u64>,
}

type Tallies = Arc<Mutex<BTreeMap<Kind, Tally>>>;

/// Runs the simulator and prints its figures; fails when any request failed.
pub async fn run(a: BenchFleetArgs) -> Result<ExitCode, Failure> {
    ferry_server::serve::raise_descriptor_limit();
    let ca = std::fs::read_to_string(&a.ca).map_err(|e| bench_failure("read the CA", e))?;
    let client = Client::pinned(&a.server, Some(&ca), Duration::from_secs(60))?;
    let class: DeviceClass = a
        .class
        .parse()
        .map_err(|e| bench_failure("name the class", e))?;
    let target = target(&client, class).await?;
    let devices = Arc::new(devices(&a, &client, &ca, &target.class).await?);
    let target = Arc::new(target);
    let tallies: Tallies = Arc::default();
    let in_flight = Arc::new(Semaphore::new(a.connections.max(1)));
    let started = Instant::now();
    if a.burst {
        let mut tasks = Vec::with_capacity(devices.len());
        for index in 0..devices.len() {
            let (client, devices, target, tallies, in_flight) = (
                client.clone(),
                devices.clone(),
                target.clone(),
                tallies.clone(),
                in_flight.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let _permit = in_flight.acquire_owned().await;
                // The time a device waits counts from the release, not from its turn.
                ask(
                    &client,
                    &devices[index],
                    &target,
                    Kind::Ticket,
                    &tallies,
                    started,
                )
                .await;
            }));
        }
        for task in tasks {
            task.await.map_err(|e| bench_failure("run a device", e))?;
        }
    } else {
        let deadline = started + Duration::from_secs(a.seconds.max(1));
        let rates = [
            (Kind::Scan, a.rate_scans),
            (Kind::Ticket, a.rate_tickets),
            (Kind::Report, a.rate_reports),
            (Kind::Install, a.rate_installs),
        ];
        let mut drivers = Vec::new();
        for (offset, (kind, rate)) in rates.into_iter().enumerate() {
            if rate <= 0.0 {
                continue;
            }
            let (client, devices, target, tallies, in_flight) = (
                client.clone(),
                devices.clone(),
                target.clone(),
                tallies.clone(),
                in_flight.clone(),
            );
            drivers.push(tokio::spawn(async move {
                let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let mut next = offset * devices.len() / 4;
                let mut running = Vec::new();
                while Instant::now() < deadline {
                    ticker.tick().await;
                    let Ok(permit) = in_flight.clone().acquire_owned().await else {
                        break;
                    };
                    let index = next % devices.len();
                    next += 1;
                    let (client, devices, target, tallies) = (
                        client.clone(),
                        devices.clone(),
                        target.clone(),
                        tallies.clone(),
                    );
                    running.push(tokio::spawn(async move {
                        let _permit = permit;
                        let sent = Instant::now();
                        ask(&client, &devices[index], &target, kind, &tallies, sent).await;
                    }));
                }
                for task in running {
                    let _ = task.await;
                }
            }));
        }
        for driver in drivers {
            driver.await.map_err(|e| bench_failure("run a driver", e))?;
        }
    }
    let elapsed = started.elapsed();
    save_state(&a, &devices)?;
    Ok(print(&a, &tallies, elapsed, devices.len()))
}

/// One request of `kind` by `device`, its latency counted from `since`.
async fn ask(
    client: &Client,
    device: &SimDevice,
    target: &Target,
    kind: Kind,
    tallies: &Tallies,
    since: Instant,
) {
    let result: Result<(), AgentError> = match kind {
        Kind::Scan => client
            .small_file("/tuf/metadata/timestamp.json", 64 << 10)
            .await
            .map(drop),
        Kind::Ticket => {
            let request = TicketRequest {
                identity: device.identity.clone(),
                nonce: Nonce::random(),
                build_id: target.build_id.clone(),
                components: target.components.clone(),
                device_time: chrono::Utc::now(),
            };
            client
                .personalize(&device.credential, &request)
                .await
                .map(drop)
        }
        Kind::Report => {
            let device_id = device.identity.device_id;
            let sequence = device.sequence.fetch_add(1, Ordering::SeqCst) + 1;
            let mut report = crate::bench_events::report(device_id, sequence);
            report.device_class = target.class.clone();
            let batch = EventBatch {
                device_id,
                outbox: OutboxHealth {
                    queued: 1,
                    ..OutboxHealth::default()
                },
                reports: vec![report],
            };
            client
                .post_events(&device.credential, &batch)
                .await
                .map(drop)
        }
        Kind::Install => client.artifact(&target.payload, "payload").await.map(drop),
    };
    let latency = since.elapsed();
    let mut tallies = tallies.lock().unwrap_or_else(|e| e.into_inner());
    let tally = tallies.entry(kind).or_default();
    match result {
        Ok(()) => tally.latencies.push(latency),
        Err(error) => *tally.errors.entry(error.code().to_owned()).or_default() += 1,
    }
}

/// The class's newest release: its build, seal root (from its manifest) and payload.
async fn target(client: &Client, class: DeviceClass) -> Result<Target, Failure> {
    let listing = client
        .small_file(&format!("/v1/releases?class={class}"), 16 << 20)
        .await?;
    let releases: Vec<ferry_server::api::Release> =
        serde_json::from_slice(&listing).map_err(|e| bench_failure("read the releases", e))?;
    let release = releases.last().ok_or_else(|| {
        Failure::new(
            "BENCH_NO_RELEASE",
            format!("the server has no release of class {class}"),
            "publish one (ferry publish --class CLASS …) and open its signing window",
        )
    })?;
    let artifact = |a: &ferry_server::api::Artifact| Artifact {
        url: a.url.clone(),
        size: a.size,
        sha256: a.sha256,
    };
    let manifest = client
        .artifact(&artifact(&release.manifest), "manifest")
        .await?;
    let manifest = ferry_payload::Manifest::from_json(&manifest)
        .map_err(|e| bench_failure("read the manifest", e))?;
    let root_hash = manifest
        .seal
        .map(|seal| seal.root_hash)
        .ok_or_else(|| bench_failure("find the seal root", "the manifest names none"))?;
    Ok(Target {
        build_id: release
            .build_id
            .parse()
            .map_err(|e| bench_failure("name the build", e))?,
        components: vec![Component {
            name: "system"
                .parse()
                .map_err(|e| bench_failure("name the component", e))?,
            root_hash,
        }],
        payload: artifact(&release.payload),
        class,
    })
}

/// Enrollments at once while the fleet is made.
const ENROLLING_AT_ONCE: usize = 8;
/// Tries of one enrollment: a refusal with `SERVER_DATABASE` (SQLite's "database is locked"
/// under concurrent enrollments) is tried again, and counted.
const ENROLL_TRIES: u32 = 30;
/// The waits between enrollment tries: full jitter under 20 ms doubling to 1 s, so the
/// enrollments the database turned away together do not come back together.
const ENROLL_BACKOFF: ferry_types::Backoff = ferry_types::Backoff {
    base: Duration::from_millis(20),
    cap: Duration::from_secs(1),
};

/// The fleet: the devices in `--state` (if any), and as many more enrolled as `--devices`
/// asks for ([`ENROLLING_AT_ONCE`] at a time).
async fn devices(
    a: &BenchFleetArgs,
    client: &Client,
    ca: &str,
    class: &DeviceClass,
) -> Result<Vec<SimDevice>, Failure> {
    let mut devices: Vec<SimDevice> = match &a.state {
        Some(path) if path.exists() => {
            let bytes = std::fs::read(path).map_err(|e| bench_failure("read --state", e))?;
            serde_json::from_slice(&bytes).map_err(|e| bench_failure("read --state", e))?
        }
        _ => Vec::new(),
    };
    devices.retain(|d| d.identity.device_class == *class);
    devices.truncate(a.devices);
    let missing = a.devices.saturating_sub(devices.len());
    if missing == 0 {
        return Ok(devices);
    }
    let token_path = a.admin_token.as_deref().ok_or_else(|| {
        Failure::new(
            "USAGE",
            format!("{missing} devices need enrolling and no --admin-token was given"),
            "pass the server's DATA/admin-token with --admin-token, or a --state file with the devices",
        )
    })?;
    let admin = admin_client(ca, token_path, &a.server)?;
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(ENROLLING_AT_ONCE));
    let retried = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(missing);
    for _ in 0..missing {
        let (client, admin, gate, class, retried) = (
            client.clone(),
            admin.clone(),
            gate.clone(),
            class.clone(),
            retried.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            let mut tries = 1;
            loop {
                match enroll_one(&client, &admin, class.clone()).await {
                    Err(e)
                        if tries < ENROLL_TRIES && e.report.cause.contains("SERVER_DATABASE") =>
                    {
                        retried.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(ENROLL_BACKOFF.wait(tries)).await;
                        tries += 1;
                    }
                    other => return other,
                }
            }
        }));
    }
    for task in tasks {
        devices.push(task.await.map_err(|e| bench_failure("enroll", e))??);
    }
    eprintln!(
        "enrolled {missing} devices in {:.1} s ({} enrollments tried again after SERVER_DATABASE)",
        started.elapsed().as_secs_f64(),
        retried.load(Ordering::Relaxed)
    );
    save_state(a, &devices)?;
    Ok(devices)
}

/// The admin API: a pinned client, the base URL and the bearer token.
#[derive(Clone)]
struct Admin {
    http: reqwest::Client,
    tokens_url: String,
    token: String,
}

fn admin_client(ca: &str, token_path: &Path, server: &str) -> Result<Admin, Failure> {
    let token = std::fs::read_to_string(token_path)
        .map_err(|e| bench_failure("read --admin-token", e))?
        .trim()
        .to_owned();
    let (config, _) =
        ferry_tls::client_config_pinned(ca).map_err(|e| bench_failure("pin the CA", e))?;
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .build()
        .map_err(|e| bench_failure("build the admin client", e))?;
    Ok(Admin {
        http,
        tokens_url: format!(
            "{}/v1/admin/enrollment-tokens",
            server.trim_end_matches('/')
        ),
        token,
    })
}

/// A new identity, enrolled with a fresh token as a device would be (`/v1/enroll`).
async fn enroll_one(
    client: &Client,
    admin: &Admin,
    class: DeviceClass,
) -> Result<SimDevice, Failure> {
    #[derive(Deserialize)]
    struct Token {
        token: String,
    }
    let response = admin
        .http
        .post(&admin.tokens_url)
        .bearer_auth(&admin.token)
        .json(&serde_json::json!({ "device_class": class.to_string() }))
        .send()
        .await
        .map_err(|e| bench_failure("ask for an enrollment token", e))?;
    if !response.status().is_success() {
        return Err(bench_failure(
            "get an enrollment token",
            format!("HTTP {} (check --admin-token)", response.status()),
        ));
    }
    let token: Token = response
        .json()
        .await
        .map_err(|e| bench_failure("read an enrollment token", e))?;
    let identity = Identity {
        device_id: DeviceId::random(),
        board_id: rand::random::<u32>() | 1,
        chip_id: rand::random::<u32>() | 1,
        hardware_uuid: uuid_random(),
        device_class: class,
    };
    let credential = client.enroll(&token.token, &identity).await?;
    Ok(SimDevice {
        identity,
        credential,
        sequence: AtomicU64::new(0),
    })
}

fn save_state(a: &BenchFleetArgs, devices: &[SimDevice]) -> Result<(), Failure> {
    match &a.state {
        Some(path) => {
            ferry_durable::write_json(path, devices).map_err(|e| bench_failure("write --state", e))
        }
        None => Ok(()),
    }
}

/// Prints the figures (text or `--json`); the exit code says whether every request succeeded.
fn print(a: &BenchFleetArgs, tallies: &Tallies, elapsed: Duration, devices: usize) -> ExitCode {
    let mut tallies = tallies.lock().unwrap_or_else(|e| e.into_inner());
    let seconds = elapsed.as_secs_f64().max(0.001);
    let mut kinds = serde_json::Map::new();
    let mut failed = 0u64;
    for (kind, tally) in tallies.iter_mut() {
        tally.latencies.sort_unstable();
        let n = tally.latencies.len();
        let pct = |p: f64| {
            tally
                .latencies
                .get(((n as f64 * p) as usize).min(n.saturating_sub(1)))
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        let errors: u64 = tally.errors.values().sum();
        failed += errors;
        let per_second = n as f64 / seconds;
        if !a.json {
            let codes: Vec<String> = tally
                .errors
                .iter()
                .map(|(code, count)| format!("{code} ×{count}"))
                .collect();
            println!(
                "{:<9} {n:>7} ok {per_second:>8.0}/s  p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  errors {errors}{}",
                kind.name(),
                pct(0.50),
                pct(0.99),
                pct(1.0),
                if codes.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", codes.join(", "))
                }
            );
        }
        kinds.insert(
            kind.name().into(),
            serde_json::json!({
                "ok": n,
                "per_second": per_second,
                "p50_ms": pct(0.50),
                "p99_ms": pct(0.99),
                "max_ms": pct(1.0),
                "errors": tally.errors,
            }),
        );
    }
    let mode = if a.burst { "burst" } else { "sustained" };
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "mode": mode,
                "devices": devices,
                "seconds": seconds,
                "connections": a.connections,
                "server": a.server,
                "kinds": kinds,
            })
        );
    } else {
        println!(
            "{mode}: {devices} devices, {seconds:.2} s, at most {} requests in flight against {}",
            a.connections, a.server
        );
    }
    if failed == 0 && !kinds.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
