//! Test harness: the real `ferry` binary, a real server on a free loopback port, and a
//! fault-injecting TCP proxy between device and server.
#![allow(dead_code)]

mod daemon;
pub mod doctor;
pub mod fleet;
mod https;
pub mod intercept;
pub mod lan_cache;
pub mod s3;
pub mod sim;
mod steps;
pub mod web;
#[allow(unused_imports)]
pub use daemon::*;
pub use https::*;
pub use steps::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub fn ferry() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
    c.env_remove("FERRY_DEVICE").env("FERRY_LOG", "warn");
    match test_database() {
        Some(url) => c.env("FERRY_DATABASE", url),
        None => c.env_remove("FERRY_DATABASE"),
    };
    match STORE.with(|store| store.borrow().clone()) {
        Some(url) => c.env("FERRY_STORE", url),
        None => c.env_remove("FERRY_STORE"),
    };
    c
}

thread_local! {
    static STORE: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Makes every later `ferry` command of this test (its thread) keep artifacts and the served
/// catalog in the store at `url` (FERRY_STORE: `ferry server` and `ferry publish` read it).
pub fn use_store(url: String) {
    STORE.with(|store| *store.borrow_mut() = Some(url));
}

#[path = "../../../../server/tests/support/postgres.rs"]
pub mod postgres;

/// The server database of this test's `ferry` commands.
enum TestDatabase {
    /// A cluster this test thread started (`FERRY_TEST_POSTGRES=1`), stopped when it ends.
    Own(#[allow(dead_code)] postgres::Postgres, String),
    /// A database the test chose ([`use_database`]).
    Chosen(String),
    /// Each data directory's SQLite file.
    Sqlite,
}

thread_local! {
    static DATABASE: std::cell::RefCell<Option<TestDatabase>> =
        const { std::cell::RefCell::new(None) };
}

/// Makes every later `ferry` command of this test (its thread) use the database at `url`.
pub fn use_database(url: String) {
    DATABASE.with(|db| *db.borrow_mut() = Some(TestDatabase::Chosen(url)));
}

/// The database URL this test's commands use: the one [`use_database`] chose; with
/// `FERRY_TEST_POSTGRES=1`, a PostgreSQL cluster of the test's own, started on its first
/// command (so any suite can run its server on PostgreSQL); otherwise none (SQLite).
fn test_database() -> Option<String> {
    DATABASE.with(|db| {
        let mut db = db.borrow_mut();
        if db.is_none() {
            // libtest names each test's thread after the test; on the main thread (one test
            // thread) tests would share one cluster, so they keep SQLite.
            let own_thread = std::thread::current().name().is_some_and(|n| n != "main");
            let wanted = std::env::var_os("FERRY_TEST_POSTGRES").is_some_and(|v| v == "1");
            let cluster = if wanted && own_thread {
                postgres::Postgres::start()
            } else {
                None
            };
            *db = Some(match cluster {
                Some(pg) => {
                    let url = pg.database();
                    TestDatabase::Own(pg, url)
                }
                None => TestDatabase::Sqlite,
            });
        }
        match db.as_ref() {
            Some(TestDatabase::Own(_, url) | TestDatabase::Chosen(url)) => Some(url.clone()),
            _ => None,
        }
    })
}

/// Runs `ferry ARGS`, returning its output.
pub fn run(args: &[&str]) -> Output {
    ferry().args(args).output().expect("run ferry")
}

/// Runs `ferry ARGS` and insists on success.
pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "ferry {args:?} failed:\nstdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The error code a failed `--json` command printed.
pub fn json_error_code(out: &Output) -> String {
    let stdout = text(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\nstderr: {}", text(&out.stderr)));
    v["error"]["code"].as_str().unwrap_or_default().to_owned()
}

/// Where each running test server keeps its certificate, by address: a proxy in front
/// of it answers injected HTTP statuses over TLS with the server's own certificate.
/// A server's entry goes when it is dropped.
static SERVER_PKI: Mutex<Option<std::collections::HashMap<SocketAddr, PathBuf>>> = Mutex::new(None);

fn server_tls(upstream: SocketAddr) -> Option<Arc<tokio_rustls::rustls::ServerConfig>> {
    let dir = SERVER_PKI.lock().unwrap().as_ref()?.get(&upstream)?.clone();
    let cert = std::fs::read_to_string(dir.join("server.pem")).ok()?;
    let key = std::fs::read_to_string(dir.join("server.key")).ok()?;
    ferry_tls::server_config(&cert, &key).ok().map(Arc::new)
}

/// A `ferry server` child process on 127.0.0.1 with a free port.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub data: PathBuf,
}

impl Server {
    pub fn start(data: &Path) -> Server {
        Server::start_with(data, &[])
    }

    /// [`Server::start`] with extra `ferry server` flags.
    pub fn start_with(data: &Path, extra: &[&str]) -> Server {
        Server::start_listening(data, "127.0.0.1:0", extra)
    }

    /// [`Server::start_with`] on `listen` (an address with port 0): its certificate, made
    /// on first start, names that address too.
    pub fn start_listening(data: &Path, listen: &str, extra: &[&str]) -> Server {
        let mut child = ferry()
            .args(["server", "--data"])
            .arg(data)
            .args(["--listen", listen])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ferry server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read address");
        let url = line
            .trim()
            .rsplit(' ')
            .next()
            .expect("address")
            .trim_start_matches("https://")
            .to_owned();
        let addr: SocketAddr = url.parse().expect("socket address");
        SERVER_PKI
            .lock()
            .unwrap()
            .get_or_insert_with(Default::default)
            .insert(addr, data.join("pki"));
        Server {
            child,
            addr,
            data: data.to_owned(),
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The CA the server made on first start (what devices pin).
    pub fn ca(&self) -> PathBuf {
        self.data.join("pki/ca.pem")
    }

    /// A fresh one-time enrollment token (`ferry server token`).
    pub fn token(&self) -> String {
        ok(&["server", "token", "--data", s(&self.data)])
            .trim()
            .to_owned()
    }

    /// `device init` arguments that pin this server's CA and enroll with a new token.
    pub fn enroll_args(&self) -> Vec<String> {
        vec![
            "--ca".into(),
            s(&self.ca()).to_owned(),
            "--enroll-token".into(),
            self.token(),
        ]
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        // All tests share one process: a later server given the same port must not find
        // this one's certificate.
        let mut pki = SERVER_PKI
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(pki) = pki.as_mut()
            && pki.get(&self.addr) == Some(&self.data.join("pki"))
        {
            pki.remove(&self.addr);
        }
    }
}

/// A deterministic image: `mib` MiB, mostly incompressible so payload sizes are
/// predictable, with version `n` differing from `n - 1` in a few blocks.
pub fn make_image(path: &Path, n: u32, mib: usize) {
    let mut state = 0x1234_5678_9abc_def1u64;
    let mut data = Vec::with_capacity(mib << 20);
    for block in 0..(mib << 20) / 4096 {
        for _ in 0..512 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            data.extend_from_slice(&state.to_le_bytes());
        }
        if block % 7 == 0 {
            let start = data.len() - 4096;
            data[start..start + 2048].fill(b'x');
        }
        if (2..=n).any(|v| (block as u32 * 13 + v).is_multiple_of(29)) {
            let start = data.len() - 4096;
            data[start..start + 16].copy_from_slice(&[n as u8; 16]);
        }
    }
    std::fs::write(path, data).expect("write image");
}

/// Publishes `image` as `version` of class `vm`, full payload only (`--no-chunks`): the
/// tests using it exercise the streaming path; `chunk_reuse.rs` publishes with chunks.
pub fn publish(data: &Path, image: &Path, version: &str) {
    publish_with(data, image, version, &["--no-chunks"]);
}

/// Where the tests keep a server's offline catalog keys (root, targets): beside its data
/// directory, never in it, as a real `ferry server` requires.
pub fn offline_keys(data: &Path) -> PathBuf {
    let name = data
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("server");
    data.with_file_name(format!("{name}-offline-keys"))
}

/// `ferry server init` for `data` (once), its offline keys in [`offline_keys`].
pub fn init_catalog(data: &Path) {
    if !data.join("tuf/metadata/1.root.json").exists() {
        ok(&[
            "server",
            "init",
            "--data",
            s(data),
            "--keys",
            s(&offline_keys(data)),
        ]);
    }
}

/// Publishes `image` as `version` of class `vm` with `extra` arguments, signing with the
/// offline keys (the catalog is made first if need be).
pub fn publish_with(data: &Path, image: &Path, version: &str, extra: &[&str]) {
    init_catalog(data);
    let keys = offline_keys(data);
    let mut args = publish_args(data, image, version);
    args.extend_from_slice(&["--level", "3", "--keys", s(&keys)]);
    args.extend_from_slice(extra);
    ok(&args);
}

/// Runs `ferry publish` of `image` as `version` of class `vm` on `data` with `extra` flags
/// (no keys unless given): what a refused publish answers.
pub fn try_publish(data: &Path, image: &Path, version: &str, extra: &[&str]) -> Output {
    let mut args = publish_args(data, image, version);
    args.extend_from_slice(extra);
    run(&args)
}

/// `ferry publish` of `image` as `version` of class `vm` on `data`, nothing more (add
/// `--keys` and the rest).
pub fn publish_args<'a>(data: &'a Path, image: &'a Path, version: &'a str) -> Vec<&'a str> {
    vec![
        "publish",
        "--data",
        s(data),
        "--image",
        s(image),
        "--version",
        version,
        "--class",
        "vm",
    ]
}

/// The newest `N.root.json` of the server's catalog: what devices pin.
pub fn root_file(data: &Path) -> PathBuf {
    ferry_catalog::repo::latest_root_path(&data.join("tuf/metadata"))
        .expect("the catalog has a root")
}

/// `ferry device init` a `vm` device on `image` (`version`), pinning the server's root.
pub fn device_init(
    device: &Path,
    image: &Path,
    version: &str,
    url: &str,
    data: &Path,
    audience: &str,
) {
    device_init_with(device, image, version, url, data, &["--audience", audience]);
}

/// [`device_init`] with `extra` flags instead of an audience.
pub fn device_init_with(
    device: &Path,
    image: &Path,
    version: &str,
    url: &str,
    data: &Path,
    extra: &[&str],
) {
    let (root, ca) = (root_file(data), data.join("pki/ca.pem"));
    let token = ok(&["server", "token", "--data", s(data)]);
    let mut args = device_init_args(device, image, version, url);
    args.extend_from_slice(&["--root", s(&root), "--ca", s(&ca)]);
    args.extend_from_slice(&["--enroll-token", token.trim()]);
    args.extend_from_slice(extra);
    ok(&args);
}

/// `ferry device init` of a `vm` device on `image` (`version`) talking to `url`, nothing
/// more (add the trust and enrollment flags).
pub fn device_init_args<'a>(
    device: &'a Path,
    image: &'a Path,
    version: &'a str,
    url: &'a str,
) -> Vec<&'a str> {
    vec![
        "device",
        "init",
        s(device),
        "--class",
        "vm",
        "--image",
        s(image),
        "--version",
        version,
        "--server",
        url,
    ]
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// What the proxy does to responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Pass everything.
    None,
    /// Close the connection after this many response bytes on any one connection.
    CutAfter(u64),
    /// Stop forwarding (but keep the connection open) after this many response bytes.
    StallAfter(u64),
    /// Answer every request with this HTTP status, as an overloaded server or a
    /// misconfigured gateway would.
    Status(u16),
    /// Answer every request with 503 and `Retry-After` of this many seconds, as an
    /// overloaded server shedding load does.
    Overloaded(u64),
    /// The network is down: new connections are accepted and get nothing, held open
    /// until the client gives up (connections made before keep their own fault).
    Down,
}

/// A TCP proxy on 127.0.0.1 that forwards to an upstream it can be re-pointed at, and
/// injects one [`Fault`] into responses.
pub struct Proxy {
    pub addr: SocketAddr,
    upstream: Arc<Mutex<SocketAddr>>,
    fault: Arc<Mutex<Fault>>,
    /// Response bytes forwarded on the connection that forwarded most.
    pub max_forwarded: Arc<AtomicU64>,
    /// HTTP requests forwarded upstream for payload bytes (`/artifacts/`, `/tuf/targets/`).
    pub artifact_requests: Arc<AtomicU64>,
    /// Response bytes forwarded on all connections together, ever.
    pub total_forwarded: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let proxy = Proxy {
            addr,
            upstream: Arc::new(Mutex::new(upstream)),
            fault: Arc::new(Mutex::new(Fault::None)),
            max_forwarded: Arc::new(AtomicU64::new(0)),
            artifact_requests: Arc::new(AtomicU64::new(0)),
            total_forwarded: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (up, fault, max, stop) = (
            proxy.upstream.clone(),
            proxy.fault.clone(),
            proxy.max_forwarded.clone(),
            proxy.stop.clone(),
        );
        let requests = proxy.artifact_requests.clone();
        let total = proxy.total_forwarded.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let upstream = *up.lock().unwrap();
                let fault = *fault.lock().unwrap();
                let max = max.clone();
                let counters = Counters {
                    max: max.clone(),
                    requests: requests.clone(),
                    total: total.clone(),
                };
                std::thread::spawn(move || relay(client, upstream, fault, counters));
            }
        });
        proxy
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn set_fault(&self, f: Fault) {
        *self.fault.lock().unwrap() = f;
        self.max_forwarded.store(0, Ordering::SeqCst);
    }

    pub fn set_upstream(&self, a: SocketAddr) {
        *self.upstream.lock().unwrap() = a;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

/// What a proxy counts, shared by its relays.
struct Counters {
    max: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
    total: Arc<AtomicU64>,
}

fn relay(client: TcpStream, upstream: SocketAddr, fault: Fault, counters: Counters) {
    let Counters {
        max,
        requests,
        total,
    } = counters;
    if fault == Fault::Down {
        let mut client = client;
        let mut buf = [0u8; 4096];
        while client.read(&mut buf).is_ok_and(|n| n > 0) {}
        return;
    }
    let answer = match fault {
        Fault::Status(code) => Some((code, String::new())),
        Fault::Overloaded(secs) => Some((503, format!("retry-after: {secs}\r\n"))),
        _ => None,
    };
    if let Some((code, extra)) = answer {
        // The server speaks HTTPS: answer over TLS with its own certificate, as a
        // TLS-terminating gateway in front of it would.
        let Some(config) = server_tls(upstream) else {
            return;
        };
        let Ok(conn) = tokio_rustls::rustls::ServerConnection::new(config) else {
            return;
        };
        let mut client = tokio_rustls::rustls::StreamOwned::new(conn, client);
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && client.read(&mut byte).is_ok_and(|n| n == 1) {
            head.push(byte[0]);
        }
        let _ = write!(
            client,
            "HTTP/1.1 {code} Injected\r\n{extra}content-length: 0\r\nconnection: close\r\n\r\n"
        );
        client.conn.send_close_notify();
        let _ = client.flush();
        return;
    }
    let Ok(server) = TcpStream::connect(upstream) else {
        return;
    };
    let (mut c_read, mut s_write) = (
        client.try_clone().expect("clone"),
        server.try_clone().expect("clone"),
    );
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        while let Ok(n) = c_read.read(&mut buf) {
            if n == 0 {
                break;
            }
            let seen = buf[..n]
                .windows(15)
                .filter(|w| *w == b"GET /artifacts/")
                .count()
                + buf[..n]
                    .windows(17)
                    .filter(|w| *w == b"GET /tuf/targets/")
                    .count();
            requests.fetch_add(seen as u64, Ordering::SeqCst);
            if s_write.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = s_write.shutdown(Shutdown::Write);
    });
    let (mut s_read, mut c_write) = (server, client);
    let mut forwarded = 0u64;
    let mut buf = [0u8; 16384];
    loop {
        let n = match s_read.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let limit = match fault {
            Fault::None | Fault::Status(_) | Fault::Overloaded(_) | Fault::Down => u64::MAX,
            Fault::CutAfter(l) | Fault::StallAfter(l) => l,
        };
        let allowed = (limit.saturating_sub(forwarded)).min(n as u64) as usize;
        if c_write.write_all(&buf[..allowed]).is_err() {
            break;
        }
        forwarded += allowed as u64;
        total.fetch_add(allowed as u64, Ordering::SeqCst);
        max.fetch_max(forwarded, Ordering::SeqCst);
        if allowed < n {
            if let Fault::StallAfter(_) = fault {
                // Hold the connection open; keep reading upstream until it dies.
                while let Ok(k) = s_read.read(&mut buf) {
                    if k == 0 {
                        break;
                    }
                }
            }
            break;
        }
    }
    let _ = c_write.shutdown(Shutdown::Both);
}

/// Sets `download_retries = 0` in `device`'s config: a cut or stalled download ends the
/// run (the next run resumes it) instead of being asked for again in the same run.
pub fn no_download_retries(device: &Path) {
    let path = device.join("config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("download_retries = 5"), "{text}");
    std::fs::write(
        &path,
        text.replace("download_retries = 5", "download_retries = 0"),
    )
    .unwrap();
}

/// Waits until `f` holds, up to `secs`.
pub fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// SHA-256 of a file's first `len` bytes, via the agent's own helper.
pub fn slot_digest(path: &Path, len: u64) -> ferry_types::Sha256 {
    ferry_agent::device::hash_prefix(path, len).expect("hash slot")
}

pub struct Fleet {
    pub _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub server: Server,
    pub device: PathBuf,
    pub v1: PathBuf,
}

/// A server with 1.0 and 2.0 published and a device on 1.0 talking to `server_url`
/// (the server itself, or a proxy in front of it).
pub fn fleet(mib: usize, via: impl FnOnce(&Server) -> String) -> Fleet {
    fleet_with(mib, &[], via)
}

/// [`fleet`] with the device talking to the server through a fault-injecting [`Proxy`].
pub fn fleet_behind_proxy(mib: usize) -> (Fleet, Proxy) {
    let slot = std::cell::RefCell::new(None);
    let fleet = fleet(mib, |server| {
        let proxy = Proxy::start(server.addr);
        let url = proxy.url();
        *slot.borrow_mut() = Some(proxy);
        url
    });
    (fleet, slot.into_inner().expect("the proxy was started"))
}

/// [`fleet`] with extra `device init` arguments.
pub fn fleet_with(mib: usize, init_args: &[&str], via: impl FnOnce(&Server) -> String) -> Fleet {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_owned();
    let data = root.join("server");
    let (v1, v2) = (root.join("v1.img"), root.join("v2.img"));
    make_image(&v1, 1, mib);
    make_image(&v2, 2, mib);
    publish(&data, &v1, "1.0");
    publish(&data, &v2, "2.0");
    let server = Server::start(&data);
    let url = via(&server);
    let device = root.join("device");
    let pinned_root = root_file(&data);
    let mut args = device_init_args(&device, &v1, "1.0", &url);
    args.extend_from_slice(&["--root", s(&pinned_root)]);
    args.extend_from_slice(init_args);
    let enroll = server.enroll_args();
    args.extend(enroll.iter().map(String::as_str));
    ok(&args);
    Fleet {
        _tmp: tmp,
        root,
        server,
        device,
        v1,
    }
}

impl Fleet {
    /// Another device on 1.0, in `root/name`, enrolled with this fleet's server.
    pub fn another_device(&self, name: &str) -> PathBuf {
        let other = self.root.join(name);
        let (url, root) = (self.server.url(), root_file(&self.server.data));
        let enroll = self.server.enroll_args();
        let mut args = device_init_args(&other, &self.v1, "1.0", &url);
        args.extend_from_slice(&["--root", s(&root)]);
        args.extend(enroll.iter().map(String::as_str));
        ok(&args);
        other
    }

    /// Kills the server and starts it again on its data (a new port), and points the
    /// device at it: what the server reads at start (keys, database) is read again.
    pub fn restart_server(&mut self) {
        self.server.kill();
        self.server = Server::start(&self.server.data);
        let config = self.device.join("config.toml");
        let text = std::fs::read_to_string(&config).unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("server"))
            .unwrap()
            .to_owned();
        let now = format!("server = \"{}\"", self.server.url());
        std::fs::write(&config, text.replace(&line, &now)).unwrap();
    }
}

pub fn status(device: &Path) -> serde_json::Value {
    serde_json::from_str(&ok(&["status", "--json", "--device", s(device)])).unwrap()
}

/// The downloader's journal records of this device, as JSON lines.
pub fn downloader_journal(device: &Path) -> Vec<serde_json::Value> {
    ok(&[
        "log",
        "show",
        "--json",
        "--fsm",
        "downloader",
        "--device",
        s(device),
    ])
    .lines()
    .filter_map(|line| serde_json::from_str(line).ok())
    .collect()
}

/// Points the device's LAN cache at `url`: artifact and target bytes then go there
/// first (a proxy there sees only those).
pub fn use_cache(device: &Path, url: &str) {
    let config = device.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("cache = \"{url}\"\n{text}")).unwrap();
}

/// The device's identity file as JSON.
pub fn identity_json(device: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(device.join("identity.json")).unwrap()).unwrap()
}

/// The device's bearer credential.
pub fn credential(device: &Path) -> String {
    std::fs::read_to_string(device.join("trust/credential"))
        .unwrap()
        .trim()
        .to_owned()
}

/// The device id in `device`'s identity file.
pub fn device_id(device: &Path) -> String {
    let identity: serde_json::Value =
        serde_json::from_slice(&std::fs::read(device.join("identity.json")).unwrap()).unwrap();
    identity["device_id"].as_str().unwrap().to_owned()
}

/// The reports the server with data directory `data` stored for `device`, oldest first.
pub fn server_reports(data: &Path, device: &Path) -> Vec<serde_json::Value> {
    let out = ok(&[
        "server",
        "events",
        "--data",
        s(data),
        "--device",
        &device_id(device),
        "--json",
    ]);
    let stored: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    stored.into_iter().map(|r| r["report"].clone()).collect()
}
