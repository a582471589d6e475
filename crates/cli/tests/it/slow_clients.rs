//! Issue 20's finding 2, staged: the real `ferry server` (and `ferry cache`) under a
//! 256-descriptor limit (`prlimit`), hundreds of connections that stall after the handshake,
//! trickle header lines, or promise a body and trickle it, and an honest client that must
//! still be served within seconds while every stalled connection is closed by its deadline.
//! Before the fix, 241 such connections made the server refuse every client (`accept failed:
//! Too many open files`) until the attacker let go.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::web::runtime;
use crate::common::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The descriptor limit the server runs under.
const NOFILE: u32 = 256;
/// Stalled connections opened of each kind: more than the server can hold at once.
const STALLED: usize = 300;
/// The deadlines the server runs with here (seconds).
const TIMEOUT: u64 = 1;

/// A child process killed when dropped; its stderr goes to `log`.
struct Limited {
    child: Child,
    addr: SocketAddr,
    log: std::path::PathBuf,
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Limited {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Runs `ferry ARGS` under `prlimit --nofile=NOFILE` with short deadlines, returning once it
/// prints its address (`scheme://ADDR`).
fn start_limited(args: &[&str], scheme: &str, log: &Path) -> Limited {
    let t = TIMEOUT.to_string();
    let mut child = Command::new("prlimit")
        .arg(format!("--nofile={NOFILE}:{NOFILE}"))
        .arg(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .args(["--listen", "127.0.0.1:0", "--handshake-timeout", &t])
        .args(["--header-timeout", &t, "--body-timeout", &t])
        .args(["--idle-timeout", &(TIMEOUT + 1).to_string()])
        .env("FERRY_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("prlimit (util-linux) runs ferry");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let prefix = format!("{scheme}://");
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .parse()
        .unwrap();
    Limited {
        child,
        addr,
        log: log.to_owned(),
    }
}

/// How an attacking connection stalls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stall {
    /// Connects (and completes TLS), then sends nothing.
    Idle,
    /// Sends a request line, then a header line every 500 ms, never the blank line.
    TrickleHeaders,
    /// Promises a 1,000-byte body, then sends one byte every 500 ms.
    TrickleBody,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Opens one connection (over TLS when `tls` is given).
async fn connect(addr: SocketAddr, tls: Option<&tokio_rustls::TlsConnector>) -> Box<dyn Io> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    match tls {
        Some(connector) => {
            let name = tokio_rustls::rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            match connector.connect(name, tcp).await {
                Ok(stream) => Box::new(stream),
                // The server gave up on the handshake: a closed connection all the same.
                Err(_) => Box::new(tokio::io::empty()),
            }
        }
        None => Box::new(tcp),
    }
}

/// One attacking connection: stalls as told until the server closes it. Returns the seconds
/// it stayed open, or `None` if it was still open after `give_up`.
async fn stall(
    addr: SocketAddr,
    tls: Option<Arc<tokio_rustls::TlsConnector>>,
    how: Stall,
    give_up: Duration,
) -> Option<f64> {
    let started = Instant::now();
    let work = async {
        let mut io = connect(addr, tls.as_deref()).await;
        let head: &[u8] = match how {
            Stall::Idle => b"",
            Stall::TrickleHeaders => b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
            Stall::TrickleBody => {
                b"POST /v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
            }
        };
        if io.write_all(head).await.is_err() {
            return;
        }
        let mut buf = [0u8; 4096];
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.tick().await;
        loop {
            tokio::select! {
                read = io.read(&mut buf) => match read {
                    // An answer (a 408 or 400) may come first; the close follows.
                    Ok(n) if n > 0 => {}
                    _ => return,
                },
                _ = tick.tick(), if how != Stall::Idle => {
                    let more: &[u8] = if how == Stall::TrickleHeaders { b"X-Slow: 1\r\n" } else { b" " };
                    if io.write_all(more).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    tokio::time::timeout(give_up, work)
        .await
        .ok()
        .map(|()| started.elapsed().as_secs_f64())
}

/// An honest `GET /healthz`: seconds until it was answered `ok`.
async fn honest(url: &str, ca: Option<&str>) -> f64 {
    let started = Instant::now();
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(30));
    if let Some(ca) = ca {
        builder = builder.tls_backend_preconfigured(ferry_tls::client_config_pinned(ca).unwrap().0);
    }
    let response = builder
        .build()
        .unwrap()
        .get(format!("{url}/healthz"))
        .send()
        .await;
    let body = response.unwrap().text().await.unwrap();
    assert_eq!(body, "ok");
    started.elapsed().as_secs_f64()
}

/// Opens `STALLED` connections stalling `how`, then asks honestly; asserts the honest client
/// was served within a few seconds and every stalled connection was closed by its deadline.
async fn attack(addr: SocketAddr, url: &str, ca: Option<&str>, how: Stall) {
    let tls = ca.map(|ca| {
        let config = ferry_tls::client_config_pinned(ca).unwrap().0;
        Arc::new(tokio_rustls::TlsConnector::from(Arc::new(config)))
    });
    let give_up = Duration::from_secs(40);
    // Opened 2 ms apart (600 ms in all), so the attack itself does not overflow the listen
    // backlog: a connection the kernel dropped there is no state of the server's.
    let attackers: Vec<_> = (0..STALLED)
        .map(|idx| {
            let tls = tls.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(2 * idx as u64)).await;
                stall(addr, tls, how, give_up).await
            })
        })
        .collect();
    // Let the attack take every slot first.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let served_after = honest(url, ca).await;
    let mut open_for = Vec::new();
    for attacker in attackers {
        open_for.push(attacker.await.unwrap());
    }
    let still_open = open_for.iter().filter(|o| o.is_none()).count();
    assert_eq!(still_open, 0, "{how:?}: connections never closed");
    let open_for: Vec<f64> = open_for.into_iter().flatten().collect();
    let first = open_for.iter().copied().fold(f64::MAX, f64::min);
    let last = open_for.iter().copied().fold(0.0, f64::max);
    eprintln!(
        "{how:?}: honest client served after {served_after:.2} s; stalled connections closed after {first:.2}-{last:.2} s"
    );
    assert!(
        served_after < 8.0,
        "{how:?}: the honest client waited {served_after:.2} s"
    );
    assert!(
        first >= TIMEOUT as f64 - 0.5,
        "{how:?}: a stalled connection was closed after {first:.2} s, before any deadline"
    );
    assert!(
        last <= 10.0 * TIMEOUT as f64,
        "{how:?}: a stalled connection stayed open {last:.2} s"
    );
}

#[test]
fn stalled_connections_are_closed_and_honest_clients_served_under_a_small_descriptor_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("server");
    let image = tmp.path().join("v1.img");
    make_image(&image, 1, 1);
    publish(&data, &image, "1.0");
    let server = start_limited(
        &["server", "--data", s(&data)],
        "https",
        &tmp.path().join("server.log"),
    );
    let ca = std::fs::read_to_string(data.join("pki/ca.pem")).unwrap();
    let url = format!("https://{}", server.addr);
    let rt = runtime();
    for how in [Stall::Idle, Stall::TrickleHeaders, Stall::TrickleBody] {
        rt.block_on(attack(server.addr, &url, Some(&ca), how));
    }
    // Still serving, and it never ran out of descriptors.
    rt.block_on(honest(&url, Some(&ca)));
    let log = server.log();
    assert!(
        !log.contains("accept failed") && !log.contains("Too many open files"),
        "{log}"
    );
}

#[test]
fn the_cache_closes_stalled_connections_too() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("server");
    let image = tmp.path().join("v1.img");
    make_image(&image, 1, 1);
    publish(&data, &image, "1.0");
    let origin = Server::start(&data);
    let cache = start_limited(
        &[
            "cache",
            "--upstream",
            &origin.url(),
            "--upstream-ca",
            s(&origin.ca()),
            "--dir",
            s(&tmp.path().join("cache")),
        ],
        "http",
        &tmp.path().join("cache.log"),
    );
    let url = format!("http://{}", cache.addr);
    let rt = runtime();
    for how in [Stall::Idle, Stall::TrickleHeaders] {
        rt.block_on(attack(cache.addr, &url, None, how));
    }
    let log = cache.log();
    assert!(
        !log.contains("accept failed") && !log.contains("Too many open files"),
        "{log}"
    );
}
