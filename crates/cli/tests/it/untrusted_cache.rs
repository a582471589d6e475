//! Issue 20's finding 4, staged: a LAN cache is not trusted, so what it answers must not
//! cost the device more than a small, fixed amount of memory or hold an install forever. A
//! cache answering `500` with an 800 MB body once drove `ferry install` to 1.6 GB RSS; one
//! that trickles a payload a byte at a time never ended the install.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::*;

/// How the hostile cache answers.
#[derive(Debug, Clone, Copy)]
enum Hostile {
    /// `500` with an 800 MB body, sent as fast as the device reads it.
    HugeError,
    /// The payload (`….payload.zst`) one byte every 100 ms; `502` for anything else.
    Trickle,
}

/// A plain-HTTP "cache" on 127.0.0.1 that answers every request as `how` says, counting the
/// body bytes it managed to send.
struct HostileCache {
    addr: SocketAddr,
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Drop for HostileCache {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

impl HostileCache {
    fn start(how: Hostile, payload: Vec<u8>) -> HostileCache {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let cache = HostileCache {
            addr: listener.local_addr().unwrap(),
            sent: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (sent, stop) = (cache.sent.clone(), cache.stop.clone());
        let payload = Arc::new(payload);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (sent, stop, payload) = (sent.clone(), stop.clone(), payload.clone());
                std::thread::spawn(move || answer(conn, how, &sent, &stop, &payload));
            }
        });
        cache
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn answer(conn: TcpStream, how: Hostile, sent: &AtomicU64, stop: &AtomicBool, payload: &[u8]) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let mut conn = conn;
    match how {
        Hostile::HugeError => {
            let head = "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\ncontent-length: 800000000\r\n\r\n";
            if conn.write_all(head.as_bytes()).is_err() {
                return;
            }
            let chunk = vec![b' '; 64 << 10];
            let mut left: u64 = 800_000_000;
            while left > 0 && !stop.load(Ordering::SeqCst) {
                let n = chunk.len().min(left as usize);
                if conn.write_all(&chunk[..n]).is_err() {
                    return;
                }
                sent.fetch_add(n as u64, Ordering::SeqCst);
                left -= n as u64;
            }
        }
        Hostile::Trickle if request_line.contains(".payload.zst") => {
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                payload.len()
            );
            if conn.write_all(head.as_bytes()).is_err() {
                return;
            }
            for byte in payload {
                if stop.load(Ordering::SeqCst) || conn.write_all(&[*byte]).is_err() {
                    return;
                }
                sent.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Hostile::Trickle => {
            let _ = conn.write_all(
                b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    }
    let _ = conn.flush();
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
}

/// Runs `ferry ARGS` to the end: (exit code, stdout, peak RSS in KiB of the `ferry` process).
///
/// The peak is its own address space's high-water mark (`VmHWM` in `/proc/PID/status`),
/// read every 10 ms while it runs: `wait4`'s `ru_maxrss` also counts the address space the
/// child was spawned from, that is this test process, which every test in the one test
/// binary shares (hundreds of MB while others run).
fn run_measured(args: &[&str]) -> (Option<i32>, String, i64) {
    let mut child = ferry()
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut pipe = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut stdout = String::new();
        pipe.read_to_string(&mut stdout).unwrap();
        stdout
    });
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        let high_water = std::fs::read_to_string(&status_file).ok().and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("VmHWM:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<i64>().ok()
        });
        peak_kib = peak_kib.max(high_water.unwrap_or(0));
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(peak_kib > 0, "no VmHWM read for the running install");
    (status.code(), reader.join().unwrap(), peak_kib)
}

fn set_config(device: &Path, key: &str, value: &str) {
    let path = device.join("config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with(&format!("{key} =")))
        .collect();
    std::fs::write(&path, format!("{key} = {value}\n{}\n", kept.join("\n"))).unwrap();
}

fn payload_bytes(data: &Path) -> Vec<u8> {
    let dir = data.join("artifacts/releases/vm/2.0");
    let path = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".payload.zst"))
        .unwrap();
    std::fs::read(path).unwrap()
}

#[test]
fn a_huge_error_body_from_the_cache_costs_the_device_no_memory() {
    let f = fleet(2, |s| s.url());
    let cache = HostileCache::start(Hostile::HugeError, Vec::new());
    set_config(&f.device, "cache", &format!("\"{}\"", cache.url()));
    let (code, stdout, max_rss_kib) =
        run_measured(&["install", "vm-2.0", "--json", "--device", s(&f.device)]);
    assert_eq!(code, Some(0), "the origin served the install: {stdout}");
    let sent = cache.sent.load(Ordering::SeqCst);
    eprintln!(
        "install peak RSS {} MiB; the cache got {sent} bytes of its 800 MB error bodies out",
        max_rss_kib / 1024
    );
    assert!(
        max_rss_kib < 200 << 10,
        "peak RSS {max_rss_kib} KiB (was 1.6 GB before the fix)"
    );
    assert!(
        sent < 64 << 20,
        "the device read {sent} bytes of error bodies; it should stop at 64 KiB each"
    );
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(status(&f.device)["version"], "2.0");
}

#[test]
fn a_cache_that_trickles_the_payload_is_cut_at_the_stream_deadline() {
    let f = fleet(2, |s| s.url());
    let payload = payload_bytes(&f.server.data);
    let cache = HostileCache::start(Hostile::Trickle, payload.clone());
    set_config(&f.device, "cache", &format!("\"{}\"", cache.url()));
    // A byte every 100 ms never trips the 2 s read timeout; the stream's deadline is 2 s plus
    // its size at 1 MiB/s.
    set_config(&f.device, "read_timeout_secs", "2");
    set_config(&f.device, "stream_min_rate", &(1u64 << 20).to_string());
    let deadline = 2 + payload.len() as u64 / (1 << 20);
    let started = Instant::now();
    let out = run(&["install", "vm-2.0", "--json", "--device", s(&f.device)]);
    let took = started.elapsed().as_secs_f64();
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert_eq!(
        json_error_code(&out),
        "STREAM_TOO_SLOW",
        "{}",
        text(&out.stdout)
    );
    assert!(
        took < deadline as f64 + 15.0,
        "the install ended after {took:.1} s (deadline {deadline} s)"
    );
    let sent = cache.sent.load(Ordering::SeqCst);
    assert!(sent > 0 && (sent as usize) < payload.len(), "{sent}");
    // Without the cache, the same install completes.
    drop(cache);
    let config = f.device.join("config.toml");
    let text_config = std::fs::read_to_string(&config).unwrap();
    let kept: Vec<&str> = text_config
        .lines()
        .filter(|l| !l.starts_with("cache ="))
        .collect();
    std::fs::write(&config, kept.join("\n") + "\n").unwrap();
    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(status(&f.device)["version"], "2.0");
}
