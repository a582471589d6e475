//! `ferry bench events`: a load generator for `POST /v1/events`.
//!
//! It starts the real HTTPS server in-process on 127.0.0.1 (SQLite with
//! `synchronous=FULL`: every committed transaction is fsynced), enrolls `--devices`
//! devices, then keeps `--connections` keep-alive HTTPS connections busy for `--seconds`,
//! each request a batch of `--batch` new reports of one device (every report a full
//! install step: phases, payload, facts), and reports reports per second, batch latency
//! percentiles and the CPU of server and load generator (as `ferry bench personalize`).

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferry_events::{
    EventBatch, EventKind, EventReport, EventResult, OutboxHealth, PayloadReport, PhaseDuration,
    REPORT_VERSION, Transition,
};
use ferry_server::{DataDir, ServiceOptions};
use ferry_types::{DeviceId, PayloadKind};

use crate::args::BenchEventsArgs;
use crate::bench::{BenchServer, CLASS, bench_failure, load_average, thread_cpu_ticks};
use crate::failure::Failure;

/// One device's report, as an install's `installed` step carries it.
pub(crate) fn report(device_id: DeviceId, sequence: u64) -> EventReport {
    let version = |v: &str| v.parse().ok();
    EventReport {
        report_version: REPORT_VERSION,
        sequence,
        device_id,
        uuid: Some(uuid::Uuid::from_u128(u128::from(device_id.get()))),
        event: EventKind::Installed,
        event_time: chrono::Utc::now(),
        result: EventResult::Success,
        transition: Some(Transition {
            machine: "update".into(),
            from: "INSTALLING".into(),
            event: "Installed".into(),
            to: "STAGED".into(),
        }),
        audience_type: "customer".into(),
        device_class: CLASS.parse().expect("a valid class"),
        device_model: "000000a1-00008103".into(),
        platform: "linux-x86_64".into(),
        core_version: env!("CARGO_PKG_VERSION").into(),
        current_os_type: "system".into(),
        current_os_version: version("1.0"),
        current_base_os_version: version("1.0"),
        current_slot: Some(ferry_boot::Slot::A),
        target_os_version: version("2.0"),
        update_type: Some(ferry_events::UpdateType::Major),
        preferred_type: Some(PayloadKind::Delta),
        battery_level: Some(87),
        battery_is_charging: true,
        on_ac_power: true,
        low_power_mode: false,
        metered_network: Some(false),
        data_fs_capacity: 32 << 30,
        data_fs_free: 20 << 30,
        system_fs_capacity: 32 << 30,
        system_fs_free: 20 << 30,
        storage_capacity: 32 << 30,
        total_required_free_space: None,
        mandatory_update_eligible: false,
        mandatory_update_optional: true,
        pre_staging_enabled: false,
        pre_staging_max_size: None,
        pre_staging_optional_size: None,
        pre_staging_required_size: None,
        ramp_enabled: false,
        rapid_security_response_installed: false,
        rapid_security_response_semi_splat: false,
        facts_error: None,
        phases: [
            ("ACCEPTED", 0.001),
            ("STARTUP", 0.002),
            ("LOADING_PERSISTED", 0.2),
            ("READY", 0.001),
            ("PREFLIGHT_PERSONALIZE", 0.05),
            ("DOWNLOADING_UPDATE", 12.5),
            ("DOWNLOADED_UPDATE", 0.001),
            ("PREPARING_UPDATE", 1.5),
            ("PREPARED", 0.02),
        ]
        .into_iter()
        .map(|(phase, secs)| PhaseDuration {
            phase: phase.into(),
            secs,
        })
        .collect(),
        payload: Some(PayloadReport {
            kind: PayloadKind::Delta,
            bytes_downloaded: 12_329_852,
            bytes_reused: 100_000_000,
            image_size: Some(134_217_728),
        }),
        progress: None,
        error: None,
        fallback: None,
        boot_counter_rolled_back: None,
    }
}

/// Runs the benchmark and prints its figures.
pub async fn run(a: BenchEventsArgs) -> Result<ExitCode, Failure> {
    let tmp = tempfile::tempdir().map_err(|e| bench_failure("make a directory", e))?;
    let dir = a.dir.clone().unwrap_or_else(|| tmp.path().to_owned());
    let data = DataDir::open(&dir.join("server")).await?;
    let server = BenchServer::start(&data, a.server_threads, ServiceOptions::default()).await?;
    let (addr, ca_pem) = (server.addr, server.ca_pem.clone());
    let devices: Vec<_> = server
        .enroll(&data, a.devices)
        .await?
        .into_iter()
        .map(|(identity, token)| (identity.device_id, token, AtomicU64::new(0)))
        .collect();
    let devices = Arc::new(devices);
    let url = reqwest::Url::parse(&format!("https://{addr}/v1/events"))
        .map_err(|e| bench_failure("make the URL", e))?;
    let warmup = Duration::from_secs(1);
    let started = Instant::now();
    let measure_from = started + warmup;
    let deadline = measure_from + Duration::from_secs(a.seconds);
    let batch_size = a.batch;
    let mut tasks = Vec::new();
    for connection in 0..a.connections.max(1) {
        let (config, _probe) =
            ferry_tls::client_config_pinned(&ca_pem).map_err(|e| bench_failure("pin the CA", e))?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .pool_max_idle_per_host(1)
            .build()
            .map_err(|e| bench_failure("build the client", e))?;
        let devices = devices.clone();
        let url = url.clone();
        let connections = a.connections.max(1);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut first_error = None;
            // Each connection owns the devices congruent to it: a device's batches are
            // sent one at a time, in sequence order, as a device's outbox sends them.
            let mut i = connection;
            while Instant::now() < deadline {
                if i >= devices.len() {
                    i = connection % devices.len().max(1);
                }
                let (device_id, credential, next) = &devices[i];
                i += connections;
                let first = next.fetch_add(batch_size, Ordering::SeqCst) + 1;
                let batch = EventBatch {
                    device_id: *device_id,
                    outbox: OutboxHealth {
                        queued: batch_size,
                        ..OutboxHealth::default()
                    },
                    reports: (first..first + batch_size)
                        .map(|seq| report(*device_id, seq))
                        .collect(),
                };
                let sent = Instant::now();
                let result = client
                    .post(url.clone())
                    .bearer_auth(credential)
                    .json(&batch)
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
    let load_before = load_average();
    tokio::time::sleep_until(measure_from.into()).await;
    let cpu_before = thread_cpu_ticks();
    tokio::time::sleep_until(deadline.into()).await;
    let cpu_after = thread_cpu_ticks();
    let load_after = load_average();
    let seconds = a.seconds.max(1) as f64;
    let server_cpu = cpu_after.0.saturating_sub(cpu_before.0) as f64 / seconds;
    let client_cpu = cpu_after.1.saturating_sub(cpu_before.1) as f64 / seconds;

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
    server.stop().await;

    latencies.sort_unstable();
    let n = latencies.len();
    let pct = |p: f64| {
        latencies
            .get(((n as f64 * p) as usize).min(n.saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let reports_per_second = (n as u64 * batch_size) as f64 / seconds;
    let stored = data
        .db
        .event_reports(&ferry_server::fleet::Filter {
            limit: Some(1),
            ..Default::default()
        })
        .await
        .map(|r| r.len())
        .unwrap_or(0);
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "reports_per_second": reports_per_second,
                "batches": n,
                "batch": batch_size,
                "errors": errors,
                "p50_ms": pct(0.50),
                "p99_ms": pct(0.99),
                "max_ms": pct(1.0),
                "connections": a.connections,
                "devices": a.devices,
                "seconds": a.seconds,
                "server_threads": a.server_threads,
                "server_cpu_percent": server_cpu,
                "client_cpu_percent": client_cpu,
                "load_average_before": load_before,
                "load_average_after": load_after,
            })
        );
    } else {
        println!(
            "{n} batches of {batch_size} in {} s over {} connections ({} devices, {} cores): \
             {reports_per_second:.0} reports/s, batch p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {errors} errors",
            a.seconds,
            a.connections,
            a.devices,
            std::thread::available_parallelism().map_or(0, |c| c.get()),
            pct(0.50),
            pct(0.99),
            pct(1.0),
        );
        println!(
            "CPU over the window (100% = one core): server {server_cpu:.0}%, load generator \
             {client_cpu:.0}%; load average {load_before} before, {load_after} after"
        );
    }
    if let Some(e) = first_error {
        eprintln!("first error: {e}");
    }
    Ok(if errors == 0 && n > 0 && stored > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
