//! `ferry bench events`: a load generator for `POST /v1/events`.
//!
//! It starts the real HTTPS server in-process on 127.0.0.1 (SQLite with
//! `synchronous=FULL`: every committed transaction is fsynced; or the PostgreSQL database
//! and S3 store `--database`/`--store` name), enrolls `--devices`
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
    Transition,
};
use ferry_server::ServiceOptions;
use ferry_types::{DeviceId, PayloadKind};

use crate::args::BenchEventsArgs;
use crate::bench::{
    BenchServer, CLASS, Run, Tally, Window, backend, bench_failure, connection_client, open_data,
};
use crate::failure::Failure;

/// One device's report, as an install's `installed` step carries it.
pub(crate) fn report(device_id: DeviceId, sequence: u64) -> EventReport {
    let version = |v: &str| v.parse().ok();
    let identity = ferry_types::Identity {
        device_id,
        board_id: 0xa1,
        chip_id: 0x8103,
        hardware_uuid: uuid::Uuid::from_u128(u128::from(device_id.get())),
        device_class: CLASS.parse().expect("a valid class"),
    };
    let mut r = EventReport::new(&identity, EventKind::Installed, EventResult::Success);
    r.sequence = sequence;
    r.uuid = Some(uuid::Uuid::from_u128(u128::from(device_id.get())));
    r.transition = Some(Transition {
        machine: "update".into(),
        from: "INSTALLING".into(),
        event: "Installed".into(),
        to: "STAGED".into(),
    });
    r.current_os_version = version("1.0");
    r.current_base_os_version = version("1.0");
    r.current_slot = Some(ferry_boot::Slot::A);
    r.target_os_version = version("2.0");
    r.update_type = Some(ferry_events::UpdateType::Major);
    r.preferred_type = Some(PayloadKind::Delta);
    r.battery_level = Some(87);
    r.battery_is_charging = true;
    r.on_ac_power = true;
    r.metered_network = Some(false);
    r.data_fs_capacity = 32 << 30;
    r.data_fs_free = 20 << 30;
    r.system_fs_capacity = 32 << 30;
    r.system_fs_free = 20 << 30;
    r.storage_capacity = 32 << 30;
    r.phases = [
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
    .collect();
    r.payload = Some(PayloadReport {
        kind: PayloadKind::Delta,
        bytes_downloaded: 12_329_852,
        bytes_reused: 100_000_000,
        image_size: Some(134_217_728),
    });
    r
}

/// Runs the benchmark and prints its figures.
pub async fn run(a: BenchEventsArgs) -> Result<ExitCode, Failure> {
    let tmp = tempfile::tempdir().map_err(|e| bench_failure("make a directory", e))?;
    let dir = a.load.dir.clone().unwrap_or_else(|| tmp.path().to_owned());
    let data = open_data(&dir, a.load.database.as_deref(), a.load.store.as_deref()).await?;
    let server =
        BenchServer::start(&data, a.load.server_threads, ServiceOptions::default()).await?;
    let (addr, ca_pem) = (server.addr, server.ca_pem.clone());
    let devices: Vec<_> = server
        .enroll(&data, a.load.devices)
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
    let deadline = measure_from + Duration::from_secs(a.load.seconds);
    let batch_size = a.batch;
    let mut tasks = Vec::new();
    for connection in 0..a.connections.max(1) {
        let client = connection_client(&ca_pem)?;
        let devices = devices.clone();
        let url = url.clone();
        let connections = a.connections.max(1);
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
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
                tally
                    .post(&client, url.clone(), credential, &batch, measure_from)
                    .await;
            }
            tally
        }));
    }
    let window = Window::measure(measure_from, deadline, a.load.seconds).await;
    let seconds = window.seconds;

    let tally = Tally::join(tasks).await?;
    server.stop().await;
    let n = tally.latencies.len();
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
    let run = Run::new(
        &a.load,
        a.connections,
        backend(&data, a.load.database.as_deref()),
    );
    let headline = format!(
        "{n} batches of {batch_size} {}: {reports_per_second:.0} reports/s, batch {}",
        run.text(),
        tally.latency_text(),
    );
    let fields = serde_json::json!({
        "reports_per_second": reports_per_second,
        "batches": n,
        "batch": batch_size,
    });
    run.print(fields, &headline, &tally, &window, false);
    Ok(tally.exit_code(stored > 0))
}
