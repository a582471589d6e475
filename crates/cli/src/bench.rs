//! `ferry bench personalize`: a load generator for `POST /v1/personalize`.
//!
//! It starts the real HTTPS server in-process on 127.0.0.1 (SQLite in a data directory,
//! nonce uniqueness included), enrolls `--devices` devices, then keeps `--connections`
//! keep-alive HTTPS connections busy for `--seconds`, each request with a fresh nonce,
//! and reports tickets per second and latency percentiles. Server and load generator
//! share the machine's cores, as on a real two-core box with a local client.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_personalize::{
    BuildId, Component, DeviceClass, DeviceId, Identity, Nonce, RootHash, TicketRequest,
};
use ferry_server::{DataDir, Https, ServiceOptions};

use crate::Failure;
use crate::args::BenchPersonalizeArgs;

const CLASS: &str = "bench";
const BUILD: &str = "1.0-bench";

fn bench_failure(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure::new(
        "BENCH_FAILED",
        format!("the benchmark could not {what}: {e}"),
        "check the --dir path and that loopback networking works",
    )
}

/// Runs the benchmark and prints its figures.
pub async fn personalize(a: BenchPersonalizeArgs) -> Result<ExitCode, Failure> {
    let tmp = tempfile::tempdir().map_err(|e| bench_failure("make a directory", e))?;
    let dir = a.dir.clone().unwrap_or_else(|| tmp.path().to_owned());
    let data = DataDir::open(&dir.join("server")).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| bench_failure("listen on loopback", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| bench_failure("read the address", e))?;
    let options = ServiceOptions {
        rate_limit_per_minute: u32::MAX,
        ..ServiceOptions::default()
    };
    let https = Https::prepare(data.clone(), Some(addr), options).await?;
    let ca_pem = https.secrets.ca_pem.clone();
    let credential_signer = https.secrets.credential_signer.clone();
    data.db.set_signing_window(CLASS, BUILD, true).await?;

    // Enroll the devices through the same database path /v1/enroll takes.
    let mut devices = Vec::with_capacity(a.devices);
    for _ in 0..a.devices.max(1) {
        let identity = Identity {
            device_id: DeviceId(rand::random::<u64>() | 1),
            board_id: rand::random::<u32>() | 1,
            chip_id: rand::random::<u32>() | 1,
            hardware_uuid: uuid_random(),
            device_class: CLASS
                .parse::<DeviceClass>()
                .map_err(|e| bench_failure("name the class", e))?,
        };
        let issued = credential_signer.issue(identity.device_id, chrono::Utc::now());
        let token = data.db.create_enrollment_token().await?;
        data.db
            .enroll(
                &token,
                &identity,
                &issued.credential.credential_id.to_string(),
            )
            .await?;
        devices.push((identity, issued.token));
    }
    let devices = Arc::new(devices);

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(https.serve_until(listener, async {
        let _ = stop_rx.await;
    }));

    let url = format!("https://{addr}/v1/personalize");
    let components = vec![Component {
        name: "system"
            .parse()
            .map_err(|e| bench_failure("name the component", e))?,
        root_hash: RootHash([7u8; 32]),
    }];
    let build_id: BuildId = BUILD
        .parse()
        .map_err(|e| bench_failure("name the build", e))?;
    let warmup = Duration::from_secs(1);
    let started = Instant::now();
    let measure_from = started + warmup;
    let deadline = measure_from + Duration::from_secs(a.seconds);
    let mut tasks = Vec::new();
    for connection in 0..a.connections.max(1) {
        let (config, _probe) = ferry_personalize::tls::client_config_pinned(&ca_pem)
            .map_err(|e| bench_failure("pin the CA", e))?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .pool_max_idle_per_host(1)
            .build()
            .map_err(|e| bench_failure("build the client", e))?;
        let devices = devices.clone();
        let url = url.clone();
        let components = components.clone();
        let build_id = build_id.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut first_error = None;
            let mut i = connection;
            while Instant::now() < deadline {
                let (identity, credential) = &devices[i % devices.len()];
                i += 7;
                let request = TicketRequest {
                    identity: identity.clone(),
                    nonce: Nonce::random(),
                    build_id: build_id.clone(),
                    components: components.clone(),
                    device_time: chrono::Utc::now(),
                };
                let sent = Instant::now();
                let result = client
                    .post(&url)
                    .bearer_auth(credential)
                    .json(&request)
                    .send()
                    .await;
                let ok = match result {
                    Ok(response) => {
                        let status = response.status();
                        let body = response.bytes().await;
                        if status.is_success() && body.is_ok() {
                            true
                        } else {
                            first_error.get_or_insert_with(|| {
                                format!(
                                    "{status}: {}",
                                    String::from_utf8_lossy(&body.unwrap_or_default())
                                )
                            });
                            false
                        }
                    }
                    Err(e) => {
                        first_error.get_or_insert_with(|| e.to_string());
                        false
                    }
                };
                if sent >= measure_from {
                    if ok {
                        latencies.push(sent.elapsed());
                    } else {
                        errors += 1;
                    }
                }
            }
            (latencies, errors, first_error)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for task in tasks {
        let (l, e, f) = task
            .await
            .map_err(|e| bench_failure("run a connection", e))?;
        latencies.extend(l);
        errors += e;
        first_error = first_error.or(f);
    }
    let _ = stop_tx.send(());
    let _ = server.await;

    latencies.sort_unstable();
    let n = latencies.len();
    let pct = |p: f64| {
        latencies
            .get(((n as f64 * p) as usize).min(n.saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let per_second = n as f64 / a.seconds.max(1) as f64;
    let nonces: i64 = sqlx_count(&data).await;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "tickets_per_second": per_second,
                "tickets": n,
                "errors": errors,
                "p50_ms": pct(0.50),
                "p99_ms": pct(0.99),
                "max_ms": pct(1.0),
                "connections": a.connections,
                "devices": a.devices,
                "seconds": a.seconds,
                "cores": std::thread::available_parallelism().map_or(0, |c| c.get()),
                "nonces_recorded": nonces,
            })
        );
    } else {
        println!(
            "{n} tickets in {} s over {} connections ({} devices, {} cores): {per_second:.0} tickets/s, \
             p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {errors} errors; {nonces} nonces recorded",
            a.seconds,
            a.connections,
            a.devices,
            std::thread::available_parallelism().map_or(0, |c| c.get()),
            pct(0.50),
            pct(0.99),
            pct(1.0),
        );
    }
    if let Some(e) = first_error {
        eprintln!("first error: {e}");
    }
    Ok(if errors == 0 && n > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn uuid_random() -> uuid::Uuid {
    uuid::Uuid::from_u128(rand::random::<u128>() | 1)
}

async fn sqlx_count(data: &DataDir) -> i64 {
    data.db.count_nonces().await.unwrap_or(-1)
}
