//! `ferry bench personalize`: a load generator for `POST /v1/personalize`.
//!
//! It starts the real HTTPS server in-process on 127.0.0.1 (SQLite in a data directory, or
//! the PostgreSQL database and S3 store `--database`/`--store` name; nonce uniqueness
//! included), enrolls `--devices` devices, then keeps `--connections`
//! keep-alive HTTPS connections busy for `--seconds`, each request with a fresh nonce,
//! and reports tickets per second and latency percentiles. Server and load generator
//! share the machine's cores, as on a real two-core box with a local client: the server
//! runs on its own runtime (`--server-threads` workers named `ferry-server`, plus SQLite's
//! worker threads), and the CPU time of each thread is read from `/proc/self/task` over
//! the measured window, so the report says how much of the CPU the client itself took
//! (PostgreSQL's and the S3 server's processes are not counted: `load average` shows them).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_personalize::{BuildId, Component, Nonce, TicketRequest};
use ferry_server::tuf::KeyCustody;
use ferry_server::{DataDir, Https, PublishRequest, ServiceOptions};
use ferry_types::{DeviceClass, DeviceId, Identity, RootHash};

use crate::args::{BenchPersonalizeArgs, LoadArgs};
use crate::failure::Failure;

pub(crate) const CLASS: &str = "bench";
const BUILD: &str = "1.0-bench";

pub(crate) fn bench_failure(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure::new(
        "BENCH_FAILED",
        format!("the benchmark could not {what}: {e}"),
        "check the --dir path and that loopback networking works",
    )
}

/// Runs the benchmark and prints its figures.
pub async fn personalize(a: BenchPersonalizeArgs) -> Result<ExitCode, Failure> {
    let tmp = tempfile::tempdir().map_err(|e| bench_failure("make a directory", e))?;
    let dir = a.load.dir.clone().unwrap_or_else(|| tmp.path().to_owned());
    let data = open_data(&dir, a.load.database.as_deref(), a.load.store.as_deref()).await?;
    let options = ServiceOptions {
        rate_limit_per_minute: u32::MAX,
        ..ServiceOptions::default()
    };
    // A development catalog (keys in the data directory) and one real release, so the
    // tickets are for a build and seal root the server published.
    ferry_server::tuf::check_custody(&data.path, KeyCustody::DevInDataDir).await?;
    let root_hash = bench_release(&data, &dir).await?;
    data.db.set_signing_window(CLASS, BUILD, true).await?;

    let server = BenchServer::start(&data, a.load.server_threads, options).await?;
    let (addr, ca_pem) = (server.addr, server.ca_pem.clone());
    let devices = server.enroll(&data, a.load.devices).await?;
    let devices = Arc::new(devices);

    // Parsed once: parsing a URL string on every request costs the client more than it
    // should (IDNA normalisation).
    let url = reqwest::Url::parse(&format!("https://{addr}/v1/personalize"))
        .map_err(|e| bench_failure("make the URL", e))?;
    let components = vec![Component {
        name: "system"
            .parse()
            .map_err(|e| bench_failure("name the component", e))?,
        root_hash,
    }];
    let build_id: BuildId = BUILD
        .parse()
        .map_err(|e| bench_failure("name the build", e))?;
    let warmup = Duration::from_secs(1);
    let started = Instant::now();
    let measure_from = started + warmup;
    let deadline = measure_from + Duration::from_secs(a.load.seconds);
    let mut tasks = Vec::new();
    for connection in 0..a.connections.max(1) {
        let client = connection_client(&ca_pem)?;
        let devices = devices.clone();
        let url = url.clone();
        let components = components.clone();
        let build_id = build_id.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
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
                tally
                    .post(&client, url.clone(), credential, &request, measure_from)
                    .await;
            }
            tally
        }));
    }
    let window = Window::measure(measure_from, deadline, a.load.seconds).await;

    let tally = Tally::join(tasks).await?;
    server.stop().await;
    let n = tally.latencies.len();
    let per_second = n as f64 / a.load.seconds.max(1) as f64;
    let nonces: i64 = sqlx_count(&data).await;
    let run = Run::new(
        &a.load,
        a.connections,
        backend(&data, a.load.database.as_deref()),
    );
    let headline = format!(
        "{n} tickets {}: {per_second:.0} tickets/s, {}; {nonces} nonces recorded",
        run.text(),
        tally.latency_text(),
    );
    let fields = serde_json::json!({
        "tickets_per_second": per_second,
        "tickets": n,
        "nonces_recorded": nonces,
    });
    run.print(fields, &headline, &tally, &window, true);
    Ok(tally.exit_code(true))
}

/// The benchmarks' server: HTTPS on loopback with a development catalog, on a runtime of
/// its own (so its threads' CPU can be told from the client's), until [`BenchServer::stop`].
pub(crate) struct BenchServer {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// The CA its clients pin.
    pub ca_pem: String,
    credential_signer: ferry_personalize::CredentialSigner,
    runtime: tokio::runtime::Runtime,
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl BenchServer {
    /// Starts the server on `data` with `threads` worker threads.
    pub(crate) async fn start(
        data: &DataDir,
        threads: usize,
        options: ServiceOptions,
    ) -> Result<BenchServer, Failure> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
            .map_err(|e| bench_failure("listen on loopback", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| bench_failure("read the address", e))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name(SERVER_THREAD)
            .enable_all()
            .build()
            .map_err(|e| bench_failure("start the server runtime", e))?;
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server_data = data.clone();
        let task = runtime.spawn(async move {
            let prepared =
                Https::prepare(server_data, Some(addr), options, KeyCustody::DevInDataDir).await;
            let listener = tokio::net::TcpListener::from_std(listener);
            let (https, listener) = match (prepared, listener) {
                (Ok(https), Ok(listener)) => (https, listener),
                (Err(e), _) => {
                    let _ = ready_tx.send(Err(Failure::from(e)));
                    return;
                }
                (_, Err(e)) => {
                    let _ = ready_tx.send(Err(bench_failure("listen on loopback", e)));
                    return;
                }
            };
            let secrets = (
                https.secrets.ca_pem.clone(),
                https.secrets.credential_signer.clone(),
            );
            let _ = ready_tx.send(Ok(secrets));
            if let Err(error) = https
                .serve_until(listener, async {
                    let _ = stop_rx.await;
                })
                .await
            {
                tracing::error!(%error, "the benchmark's server failed");
            }
        });
        let (ca_pem, credential_signer) = ready_rx
            .await
            .map_err(|e| bench_failure("start the server", e))??;
        Ok(BenchServer {
            addr,
            ca_pem,
            credential_signer,
            runtime,
            task,
            stop,
        })
    }

    /// Enrolls `n` (at least one) devices of class [`CLASS`] through the same database path
    /// `/v1/enroll` takes: each identity with its credential token.
    pub(crate) async fn enroll(
        &self,
        data: &DataDir,
        n: usize,
    ) -> Result<Vec<(Identity, String)>, Failure> {
        let mut devices = Vec::with_capacity(n.max(1));
        for _ in 0..n.max(1) {
            let identity = Identity {
                device_id: DeviceId::random(),
                board_id: rand::random::<u32>() | 1,
                chip_id: rand::random::<u32>() | 1,
                hardware_uuid: uuid_random(),
                device_class: CLASS
                    .parse::<DeviceClass>()
                    .map_err(|e| bench_failure("name the class", e))?,
            };
            let issued = self
                .credential_signer
                .issue(identity.device_id, chrono::Utc::now());
            let token = data.db.create_enrollment_token(&Default::default()).await?;
            data.db
                .enroll(
                    &token,
                    &identity,
                    &issued.credential.credential_id.to_string(),
                )
                .await?;
            devices.push((identity, issued.token));
        }
        Ok(devices)
    }

    /// Stops serving and lets the runtime go.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
        self.runtime.shutdown_background();
    }
}

/// Whether this binary is a debug or a release build (figures differ by several times).
pub(crate) const BUILD_PROFILE: &str = if cfg!(debug_assertions) {
    "debug"
} else {
    "release"
};

/// The benchmark server's data directory `DIR/server`, on the database and store asked for
/// (`None`: SQLite and a directory inside it).
pub(crate) async fn open_data(
    dir: &std::path::Path,
    database: Option<&str>,
    store: Option<&str>,
) -> Result<DataDir, Failure> {
    Ok(DataDir::open_with(&dir.join("server"), database, store).await?)
}

/// Which database and store the server runs on, in words (the password left out).
pub(crate) fn backend(data: &DataDir, database: Option<&str>) -> String {
    let database = match database {
        Some(url) => ferry_server::db::redact_url(url),
        None => format!("SQLite {}", data.path.join("ferry.db").display()),
    };
    format!("database {database}, store {}", data.store.name())
}

/// The thread-name prefix of the server's runtime.
pub(crate) const SERVER_THREAD: &str = "ferry-server";

/// A client of its own for one bench connection (one keep-alive connection), pinned to
/// the server's CA.
pub(crate) fn connection_client(ca_pem: &str) -> Result<reqwest::Client, Failure> {
    let (config, _probe) =
        ferry_tls::client_config_pinned(ca_pem).map_err(|e| bench_failure("pin the CA", e))?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .pool_max_idle_per_host(1)
        .build()
        .map_err(|e| bench_failure("build the client", e))
}

/// One connection's count: how long each request answered with success in the measured
/// window took, the failures there, and the first failure's words (whenever it came).
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub latencies: Vec<Duration>,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Tally {
    /// POSTs `body` as JSON to `url` with bearer `credential` and counts the answer.
    pub(crate) async fn post(
        &mut self,
        client: &reqwest::Client,
        url: impl reqwest::IntoUrl,
        credential: &str,
        body: &impl serde::Serialize,
        measure_from: Instant,
    ) {
        let sent = Instant::now();
        let result = client
            .post(url)
            .bearer_auth(credential)
            .json(body)
            .send()
            .await;
        self.count(result, sent, measure_from).await;
    }

    /// Counts the answer to a request sent at `sent`, its body read; only requests sent from
    /// `measure_from` on count.
    pub(crate) async fn count(
        &mut self,
        result: reqwest::Result<reqwest::Response>,
        sent: Instant,
        measure_from: Instant,
    ) {
        let ok = match result {
            Ok(response) => {
                let status = response.status();
                let body = response.bytes().await;
                if status.is_success() && body.is_ok() {
                    true
                } else {
                    self.first_error.get_or_insert_with(|| {
                        format!(
                            "{status}: {}",
                            String::from_utf8_lossy(&body.unwrap_or_default())
                        )
                    });
                    false
                }
            }
            Err(e) => {
                self.first_error.get_or_insert_with(|| e.to_string());
                false
            }
        };
        if sent >= measure_from {
            if ok {
                self.latencies.push(sent.elapsed());
            } else {
                self.errors += 1;
            }
        }
    }

    /// Every connection's tally in one, latencies sorted.
    pub(crate) async fn join(tasks: Vec<tokio::task::JoinHandle<Tally>>) -> Result<Tally, Failure> {
        let mut all = Tally::default();
        for task in tasks {
            let one = task
                .await
                .map_err(|e| bench_failure("run a connection", e))?;
            all.latencies.extend(one.latencies);
            all.errors += one.errors;
            all.first_error = all.first_error.or(one.first_error);
        }
        all.latencies.sort_unstable();
        Ok(all)
    }

    /// Prints the first error, if any; success when requests were answered, none failed and
    /// `also` (the benchmark's own check) holds.
    pub(crate) fn exit_code(&self, also: bool) -> ExitCode {
        if let Some(e) = &self.first_error {
            eprintln!("first error: {e}");
        }
        if self.errors == 0 && !self.latencies.is_empty() && also {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        }
    }

    /// "p50 X ms, p99 Y ms, max Z ms, E errors".
    pub(crate) fn latency_text(&self) -> String {
        format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {} errors",
            self.percentile_ms(0.50),
            self.percentile_ms(0.99),
            self.percentile_ms(1.0),
            self.errors
        )
    }

    /// The latency at quantile `p` (0 to 1) in milliseconds; 0 without any.
    pub(crate) fn percentile_ms(&self, p: f64) -> f64 {
        let n = self.latencies.len();
        self.latencies
            .get(((n as f64 * p) as usize).min(n.saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    }
}

/// How a benchmark ran (its arguments), as its result states it.
pub(crate) struct Run {
    seconds: u64,
    connections: usize,
    devices: usize,
    server_threads: usize,
    json: bool,
    /// The database and store the server ran on ([`backend`]).
    backend: String,
}

impl Run {
    pub(crate) fn new(load: &LoadArgs, connections: usize, backend: String) -> Run {
        Run {
            seconds: load.seconds,
            connections,
            devices: load.devices,
            server_threads: load.server_threads,
            json: load.json,
            backend,
        }
    }

    /// The cores this machine has (0 when unknown).
    fn cores() -> usize {
        std::thread::available_parallelism().map_or(0, |c| c.get())
    }

    /// "in S s over C connections (D devices, N cores)".
    pub(crate) fn text(&self) -> String {
        format!(
            "in {} s over {} connections ({} devices, {} cores)",
            self.seconds,
            self.connections,
            self.devices,
            Run::cores()
        )
    }

    /// Prints the result: with --json, `fields` and the run's, the tally's and the window's
    /// figures as one object; else the backend, `headline` and the CPU line (`share`: with
    /// the load generator's share of the CPU this process used).
    pub(crate) fn print(
        &self,
        mut fields: serde_json::Value,
        headline: &str,
        tally: &Tally,
        window: &Window,
        share: bool,
    ) {
        if !self.json {
            println!("{} ({BUILD_PROFILE} build)", self.backend);
            println!("{headline}");
            println!("{}", window.cpu_line(share));
            return;
        }
        if let Some(object) = fields.as_object_mut() {
            let figures = serde_json::json!({
                "connections": self.connections,
                "devices": self.devices,
                "seconds": self.seconds,
                "cores": Run::cores(),
                "server_threads": self.server_threads,
                "errors": tally.errors,
                "p50_ms": tally.percentile_ms(0.50),
                "p99_ms": tally.percentile_ms(0.99),
                "max_ms": tally.percentile_ms(1.0),
                "backend": self.backend,
                "build": BUILD_PROFILE,
            });
            if let serde_json::Value::Object(figures) = figures {
                object.extend(figures);
            }
            if share {
                object.insert(
                    "client_cpu_share_percent".into(),
                    window.client_share().into(),
                );
            }
        }
        window.add_json(&mut fields);
        println!("{fields}");
    }
}

/// The measured window: CPU of the server's and the load generator's threads in percent of
/// one core (/proc counts in 1/100 s), and the load average before and after.
pub(crate) struct Window {
    pub seconds: f64,
    pub server_cpu: f64,
    pub client_cpu: f64,
    pub load_before: String,
    pub load_after: String,
}

impl Window {
    /// Waits out the warm-up until `measure_from`, then the window until `deadline`.
    pub(crate) async fn measure(measure_from: Instant, deadline: Instant, seconds: u64) -> Window {
        let load_before = load_average();
        tokio::time::sleep_until(measure_from.into()).await;
        let cpu_before = thread_cpu_ticks();
        tokio::time::sleep_until(deadline.into()).await;
        let cpu_after = thread_cpu_ticks();
        let load_after = load_average();
        let seconds = seconds.max(1) as f64;
        Window {
            seconds,
            server_cpu: cpu_after.0.saturating_sub(cpu_before.0) as f64 / seconds,
            client_cpu: cpu_after.1.saturating_sub(cpu_before.1) as f64 / seconds,
            load_before,
            load_after,
        }
    }

    /// The load generator's share of the CPU this process used, in percent.
    pub(crate) fn client_share(&self) -> f64 {
        100.0 * self.client_cpu / (self.server_cpu + self.client_cpu).max(1.0)
    }

    /// Adds the window's figures to a benchmark's JSON result (an object): CPU percents of
    /// the server and the load generator, the load average before and after.
    pub(crate) fn add_json(&self, result: &mut serde_json::Value) {
        if let Some(fields) = result.as_object_mut() {
            fields.insert("server_cpu_percent".into(), self.server_cpu.into());
            fields.insert("client_cpu_percent".into(), self.client_cpu.into());
            fields.insert(
                "load_average_before".into(),
                self.load_before.clone().into(),
            );
            fields.insert("load_average_after".into(), self.load_after.clone().into());
        }
    }

    /// The window's figures as a line of text; `share`: with the load generator's share.
    pub(crate) fn cpu_line(&self, share: bool) -> String {
        let share = if share {
            format!(
                " ({:.0}% of the CPU this process used)",
                self.client_share()
            )
        } else {
            String::new()
        };
        format!(
            "CPU over the window (100% = one core): server {:.0}%, load generator {:.0}%{share}; \
             load average {} before, {} after",
            self.server_cpu, self.client_cpu, self.load_before, self.load_after
        )
    }
}

/// CPU time so far of this process's threads in 1/100 s: (server, everything else). The
/// server is its runtime's threads and SQLite's worker threads; the rest is the load
/// generator (and the idle main thread). Zeros where /proc is missing.
pub(crate) fn thread_cpu_ticks() -> (u64, u64) {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return (0, 0);
    };
    let (mut server, mut client) = (0, 0);
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state … utime stime …": the name may hold spaces, so split at ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = &stat[open + 1..close];
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks = |idx: usize| {
            fields
                .get(idx)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // After the name: state is field 0, utime 11, stime 12.
        let used = ticks(11) + ticks(12);
        if name.starts_with(SERVER_THREAD) || name.starts_with("sqlx-sqlite") {
            server += used;
        } else {
            client += used;
        }
    }
    (server, client)
}

/// The 1-minute load average, as /proc/loadavg gives it.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// The seal root of the benchmark's release (build [`BUILD`] of class [`CLASS`]), publishing
/// it from a 1 MiB generated image the first time a data directory is used.
async fn bench_release(data: &DataDir, dir: &std::path::Path) -> Result<RootHash, Failure> {
    let published = data
        .db
        .releases(CLASS)
        .await?
        .into_iter()
        .find(|release| release.build_id == BUILD);
    let release = match published {
        Some(release) => release,
        None => {
            let image = dir.join("bench.img");
            let mut bytes = vec![0u8; 1 << 20];
            rand::fill(&mut bytes[..]);
            std::fs::write(&image, &bytes).map_err(|e| bench_failure("write an image", e))?;
            ferry_server::publish(
                data,
                PublishRequest {
                    image,
                    version: "1.0"
                        .parse()
                        .map_err(|e| bench_failure("name the version", e))?,
                    class: CLASS.into(),
                    audiences: vec!["customer".into()],
                    offline_keys: None,
                    build_id: Some(BUILD.into()),
                    level: 3,
                    delta_from: Vec::new(),
                    chunks: false,
                },
            )
            .await?
        }
    };
    release
        .seal_root
        .ok_or_else(|| bench_failure("seal the release", "its manifest names no seal root"))
}

pub(crate) fn uuid_random() -> uuid::Uuid {
    uuid::Uuid::from_u128(rand::random::<u128>() | 1)
}

async fn sqlx_count(data: &DataDir) -> i64 {
    data.db.count_nonces().await.unwrap_or(-1)
}
