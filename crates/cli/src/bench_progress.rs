//! `ferry bench progress` (run by `bench/progress`): real installs of a ≥ 1 GiB image from
//! a real server through a rate-shaping loopback proxy, under five scenarios, and the
//! figures of issue 13 computed from each install's progress log:
//!
//! - (a) steady network; (b) the rate dropping fourfold at 40 % of the download; (c) a 20 s
//!   network cut mid-download (the proxy stops forwarding, the connection stays up);
//!   (d) a slow slot disk (`FERRY_SLOT_IO_LIMIT`, writes and read-back) on a fast network;
//!   (e) a tailored delta (tiny download, long apply).
//! - The figures ([`figures`], one definition with the estimator's replay tests): the
//!   longest visible stall while work proceeds (at the log's resolution), the
//!   time-remaining error (median, p90, and for (b) and (c) the seconds after the change
//!   until it is back within 15 %), the linearity of ferry's bar and of the
//!   fixed-checkpoint bar. `figures.json` also has when the change came (`change_secs`,
//!   on the log's clock) so a recorded log replays with it.
//!
//! One chart per scenario goes to `--out` (SVG). The scenarios run on fresh devices, each
//! given the rates history (`progress/history.json`) the one before it left, as one device
//! installing updates over time would have; the first starts with none.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferry_agent::progress::figures::{self, Point};
use ferry_agent::progress::log::Sample;

use crate::args::BenchProgressArgs;
use crate::failure::Failure;

fn fail(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure::new(
        "BENCH_FAILED",
        format!("the benchmark could not {what}: {e}"),
        "check the --dir path (it needs about 4 GB free), that loopback networking works and that the ferry binary runs",
    )
}

/// The proxy's shaping, changed by the scenario while the install runs.
#[derive(Debug, Default)]
struct Shaper {
    /// Bytes per second towards the device (0: unlimited).
    rate: AtomicU64,
    /// Forward nothing (the connection stays open).
    paused: AtomicBool,
    /// Bytes forwarded towards the device, in all.
    forwarded: AtomicU64,
    stop: AtomicBool,
}

/// A TCP proxy on loopback that shapes the server-to-device direction with one token
/// bucket shared by all connections.
fn proxy(upstream: SocketAddr, shaper: Arc<Shaper>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        let bucket = Arc::new(std::sync::Mutex::new((Instant::now(), 0u64, 0u64)));
        for client in listener.incoming() {
            if shaper.stop.load(Ordering::SeqCst) {
                return;
            }
            let Ok(client) = client else { continue };
            let Ok(server) = TcpStream::connect(upstream) else {
                continue;
            };
            let (Ok(mut c_read), Ok(mut s_write)) = (client.try_clone(), server.try_clone()) else {
                continue;
            };
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_read, &mut s_write);
                let _ = s_write.shutdown(Shutdown::Write);
            });
            let shaper = shaper.clone();
            let bucket = bucket.clone();
            std::thread::spawn(move || relay_down(server, client, &shaper, &bucket));
        }
    });
    Ok(addr)
}

type Bucket = std::sync::Mutex<(Instant, u64, u64)>;

fn relay_down(mut from: TcpStream, mut to: TcpStream, shaper: &Shaper, bucket: &Bucket) {
    let mut buf = [0u8; 16 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut sent = 0;
        while sent < n {
            while shaper.paused.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let piece = (n - sent).min(4096);
            let rate = shaper.rate.load(Ordering::SeqCst);
            if rate > 0 {
                let wait = {
                    let Ok(mut b) = bucket.lock() else { return };
                    // (clock start, bytes since, rate they were counted at)
                    let now = Instant::now();
                    let due = Duration::from_secs_f64(b.1 as f64 / rate as f64);
                    if b.2 != rate || now.duration_since(b.0) > due + Duration::from_millis(200) {
                        *b = (now, 0, rate);
                    }
                    b.1 += piece as u64;
                    (b.0 + Duration::from_secs_f64(b.1 as f64 / rate as f64))
                        .saturating_duration_since(now)
                };
                std::thread::sleep(wait);
            }
            if to.write_all(&buf[sent..sent + piece]).is_err() {
                return;
            }
            shaper.forwarded.fetch_add(piece as u64, Ordering::SeqCst);
            sent += piece;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
}

/// One scenario.
struct Scenario {
    key: &'static str,
    name: &'static str,
    /// A delta install (the device runs 1.0), else the full payload (the device runs 0.5).
    delta: bool,
    /// Seconds the download should take on the shaped network (None: unlimited).
    seconds: Option<f64>,
    /// Slot I/O limit, bytes per second.
    slot_io: Option<u64>,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        key: "a",
        name: "steady network",
        delta: false,
        seconds: Some(40.0),
        slot_io: None,
    },
    Scenario {
        key: "b",
        name: "rate drops fourfold at 40 %",
        delta: false,
        seconds: Some(60.0),
        slot_io: None,
    },
    Scenario {
        key: "c",
        name: "20 s network cut mid-download",
        delta: false,
        seconds: Some(30.0),
        slot_io: None,
    },
    Scenario {
        key: "d",
        name: "slow slot disk",
        delta: false,
        seconds: None,
        slot_io: Some(24_000_000),
    },
    Scenario {
        key: "e",
        name: "tailored delta",
        delta: true,
        seconds: None,
        // The slow disk of (d): on the page cache a 1 GiB apply takes 2 s, which is not the
        // long apply this scenario is about.
        slot_io: Some(24_000_000),
    },
];

/// The figures of one install (see [`figures`]), its scenario, when the change came (on
/// the log's clock) and its chart.
#[derive(Debug, serde::Serialize)]
struct Figures {
    scenario: String,
    #[serde(flatten)]
    figures: figures::Figures,
    change_secs: Option<f64>,
    chart: PathBuf,
}

fn run(f: &Path, args: &[&str], env: &[(&str, String)]) -> Result<String, Failure> {
    let out = Command::new(f)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail(&format!("run ferry {}", args.join(" ")), e))?;
    if !out.status.success() {
        return Err(fail(
            &format!("run ferry {}", args.join(" ")),
            String::from_utf8_lossy(&out.stderr),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// Runs the benchmark and prints its figures.
pub async fn progress(a: BenchProgressArgs) -> Result<ExitCode, Failure> {
    tokio::task::spawn_blocking(move || run_all(&a))
        .await
        .map_err(|e| fail("run", e))?
}

fn run_all(a: &BenchProgressArgs) -> Result<ExitCode, Failure> {
    let f = match &a.ferry {
        Some(f) => f.clone(),
        None => std::env::current_exe().map_err(|e| fail("find the ferry binary", e))?,
    };
    let dir = a.dir.clone();
    std::fs::create_dir_all(&dir).map_err(|e| fail("make the directory", e))?;
    std::fs::create_dir_all(&a.out).map_err(|e| fail("make the chart directory", e))?;
    let (v0, v1, v2) = (dir.join("v0.img"), dir.join("v1.img"), dir.join("v2.img"));
    for (path, n) in [(&v1, 1), (&v2, 2)] {
        if !path.exists() {
            eprintln!("== making image {} ({} MiB)", path.display(), a.size_mib);
            crate::images::make(path, n, a.size_mib).map_err(|e| fail("make an image", e))?;
        }
    }
    if !v0.exists() {
        std::fs::write(&v0, vec![0u8; 4 << 20]).map_err(|e| fail("write v0", e))?;
    }
    let image_size = std::fs::metadata(&v2)
        .map_err(|e| fail("stat v2", e))?
        .len();
    let data = dir.join("server");
    let keys = dir.join("offline-keys");
    let release_file = dir.join("release-2.0.json");
    if !release_file.exists() {
        let _ = std::fs::remove_dir_all(&data);
        let _ = std::fs::remove_dir_all(&keys);
        eprintln!("== publishing 1.0 and 2.0 (with a tailored delta from 1.0)");
        run(
            &f,
            &["server", "init", "--data", s(&data), "--keys", s(&keys)],
            &[],
        )?;
        let publish = |img: &Path, v: &str, extra: &[&str]| {
            let mut args = vec![
                "publish",
                "--data",
                s(&data),
                "--image",
                s(img),
                "--version",
                v,
                "--class",
                "bench",
                "--no-chunks",
                "--keys",
                s(&keys),
                "--json",
            ];
            args.extend_from_slice(extra);
            run(&f, &args, &[])
        };
        publish(&v1, "1.0", &[])?;
        let release = publish(&v2, "2.0", &["--delta-from", "1.0"])?;
        std::fs::write(&release_file, release).map_err(|e| fail("store the release", e))?;
    }
    let release: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&release_file).map_err(|e| fail("read the release", e))?,
    )
    .map_err(|e| fail("parse the release", e))?;
    let payload_size = release["payload"]["size"]
        .as_u64()
        .ok_or_else(|| fail("read the payload size", &release))?;
    eprintln!("== image {image_size} bytes, full payload {payload_size} bytes");

    // The server, as its own process.
    let mut server = Command::new(&f)
        .args(["server", "--data", s(&data), "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| fail("start the server", e))?;
    let url = {
        let mut out = server
            .stdout
            .take()
            .ok_or_else(|| fail("read the server", "no stdout"))?;
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while out.read(&mut byte).is_ok_and(|n| n == 1) {
            if byte[0] != b'\n' {
                line.push(byte[0]);
            } else if String::from_utf8_lossy(&line).contains("listening") {
                break;
            } else {
                line.clear();
            }
        }
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        String::from_utf8_lossy(&line)
            .split_whitespace()
            .last()
            .unwrap_or_default()
            .to_owned()
    };
    let result = scenarios(a, &f, &dir, &data, &url, image_size, payload_size, &v0, &v1);
    let _ = server.kill();
    let _ = server.wait();
    let figures = result?;
    println!(
        "\n| scenario | total | longest visible stall (ferry) | time-remaining error median / p90 | back within 15 % after the change | linearity: ferry / fixed-checkpoint |"
    );
    println!("|---|---|---|---|---|---|");
    let pct = |v: Option<f64>| v.map_or("–".into(), |v| format!("{:.1} %", v * 100.0));
    for fig in &figures {
        let (name, fig) = (&fig.scenario, &fig.figures);
        println!(
            "| {} | {:.0} s | {} | {} / {} | {} | {:.1} / {:.1} points |",
            name,
            fig.total_secs,
            if fig.longest_stall_secs < 1.0 {
                "< 1 s (every 1 s sample changed)".to_owned()
            } else {
                format!("{:.1} s", fig.longest_stall_secs)
            },
            pct(fig.error_median),
            pct(fig.error_p90),
            fig.recovery_secs
                .map_or("–".into(), |r| format!("{r:.1} s")),
            fig.linearity_ferry,
            fig.linearity_fixed
        );
    }
    let json = serde_json::to_string_pretty(&figures).unwrap_or_default();
    std::fs::write(a.out.join("figures.json"), json).map_err(|e| fail("write the figures", e))?;
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::too_many_arguments)]
fn scenarios(
    a: &BenchProgressArgs,
    f: &Path,
    dir: &Path,
    data: &Path,
    url: &str,
    image_size: u64,
    payload_size: u64,
    v0: &Path,
    v1: &Path,
) -> Result<Vec<Figures>, Failure> {
    let upstream: SocketAddr = url
        .trim_start_matches("https://")
        .parse()
        .map_err(|e| fail(&format!("read the server address {url}"), e))?;
    let mut figures = Vec::new();
    let mut previous: Option<PathBuf> = None;
    for sc in SCENARIOS.iter().filter(|sc| a.scenarios.contains(sc.key)) {
        let shaper = Arc::new(Shaper::default());
        let addr = proxy(upstream, shaper.clone()).map_err(|e| fail("start the proxy", e))?;
        let device = dir.join(format!("device-{}", sc.key));
        let _ = std::fs::remove_dir_all(&device);
        let (image, version) = if sc.delta { (v1, "1.0") } else { (v0, "0.5") };
        let slot_size = (image_size + (64 << 20)).to_string();
        let token = run(f, &["server", "token", "--data", s(data)], &[])?;
        run(
            f,
            &[
                "device",
                "init",
                s(&device),
                "--class",
                "bench",
                "--image",
                s(image),
                "--version",
                version,
                "--server",
                &format!("https://{addr}"),
                "--slot-size",
                &slot_size,
                "--root",
                s(&data.join("tuf/metadata/1.root.json")),
                "--ca",
                s(&data.join("pki/ca.pem")),
                "--enroll-token",
                token.trim(),
            ],
            &[],
        )?;
        // One device installing over time: each scenario starts with the rates history
        // the installs before it left (the first starts with none).
        if let Some(prev) = &previous {
            let history = |d: &Path| d.join("progress/history.json");
            if history(prev).exists() {
                std::fs::create_dir_all(device.join("progress"))
                    .and_then(|()| std::fs::copy(history(prev), history(&device)))
                    .map_err(|e| fail("carry the rates history over", e))?;
            }
        }
        previous = Some(device.clone());
        let rate = sc
            .seconds
            .map_or(0, |secs| (payload_size as f64 / secs) as u64);
        // (b) starts four times faster and drops to `rate` at 40 %.
        let start_rate = if sc.key == "b" { rate * 4 } else { rate };
        shaper.rate.store(start_rate, Ordering::SeqCst);
        let mut env = Vec::new();
        if let Some(limit) = sc.slot_io {
            env.push((
                ferry_agent::install::pace::SLOT_IO_LIMIT_VAR,
                limit.to_string(),
            ));
        }
        eprintln!("== ({}) {}: ferry install bench-2.0", sc.key, sc.name);
        let mut child = Command::new(f)
            .args(["install", "bench-2.0", "--device", s(&device)])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.join(format!("install-{}.log", sc.key)))
                    .map_err(|e| fail("make the install log", e))?,
            )
            .spawn()
            .map_err(|e| fail("start the install", e))?;
        let mut change: Option<chrono::DateTime<chrono::Utc>> = None;
        let status = loop {
            if let Some(status) = child
                .try_wait()
                .map_err(|e| fail("wait for the install", e))?
            {
                break status;
            }
            let forwarded = shaper.forwarded.load(Ordering::SeqCst);
            if change.is_none() && sc.key == "b" && forwarded >= payload_size * 4 / 10 {
                shaper.rate.store(rate, Ordering::SeqCst);
                change = Some(chrono::Utc::now());
            }
            if change.is_none() && sc.key == "c" && forwarded >= payload_size / 2 {
                shaper.paused.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_secs(20));
                shaper.paused.store(false, Ordering::SeqCst);
                change = Some(chrono::Utc::now());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        shaper.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(addr);
        if !status.success() {
            return Err(fail(
                &format!("install in scenario ({})", sc.key),
                format!(
                    "it exited with {status}; see {}",
                    dir.join(format!("install-{}.log", sc.key)).display()
                ),
            ));
        }
        let log = ferry_agent::progress::log::latest(&device.join("progress"))
            .ok_or_else(|| fail("find the progress log", device.display()))?;
        let samples = ferry_agent::progress::log::read(&log);
        let chart = a.out.join(format!(
            "{}-{}.svg",
            sc.key,
            sc.name
                .replace([' ', '%'], "-")
                .replace("--", "-")
                .trim_end_matches('-')
        ));
        crate::chart::draw(
            &samples,
            &format!(
                "({}) {}: ferry install of a {} MiB image",
                sc.key,
                sc.name,
                image_size >> 20
            ),
            &chart,
        )
        .map_err(|e| fail("draw the chart", e))?;
        let fig = figures_of(
            &format!("({}) {}", sc.key, sc.name),
            &samples,
            change,
            chart,
        );
        eprintln!("   {fig:?}");
        figures.push(fig);
    }
    Ok(figures)
}

/// The figures of one install's samples (see the module docs); `change`: when the rate
/// dropped or the cut ended.
fn figures_of(
    scenario: &str,
    samples: &[Sample],
    change: Option<chrono::DateTime<chrono::Utc>>,
    chart: PathBuf,
) -> Figures {
    let change_secs = change.and_then(|at| {
        let first = samples.first()?;
        Some(first.t + (at - first.at).num_milliseconds() as f64 / 1000.0)
    });
    let points: Vec<Point> = samples.iter().map(Point::recorded).collect();
    Figures {
        scenario: scenario.to_owned(),
        figures: figures::of(&points, change_secs),
        change_secs,
        chart,
    }
}
