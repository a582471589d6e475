//! Issue 17 in a real browser: headless Chromium driven through ChromeDriver (WebDriver,
//! `fantoccini`) against `ferry demo --keep-serving`. Sign in with the admin token, see the
//! demo device's committed update, watch a device's progress bar move as its reports
//! arrive (no reload), halt the demo's rollout with the button and see a device of its
//! open wave refused the ticket it got a moment before, revoke a device's entitlement with
//! its button and see its ticket refused, and a viewer refused the button.
//! Screenshots of each page go to the test's temp dir, and to docs/dashboard/ with
//! FERRY_UPDATE_SCREENSHOTS=1.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::sim::*;
use crate::common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use ferry_events::EventKind;
use ferry_types::DeviceId;

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `ferry demo --keep-serving` in `dir`: the process and the dashboard's URL. Its output
/// is read to the end by a thread (a closed pipe would fail the demo's later lines).
fn demo(dir: &Path) -> (Killed, String) {
    let mut child = ferry()
        .args([
            "demo",
            "--keep-serving",
            "--image-mib",
            "8",
            "--dir",
            s(dir),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ferry demo");
    let stdout = child.stdout.take().unwrap();
    let child = Killed(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut said = String::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(120)) {
        said.push_str(&line);
        said.push('\n');
        if let Some(url) = line.strip_prefix("== dashboard: ") {
            let url = url
                .split(' ')
                .next()
                .unwrap()
                .trim_end_matches('/')
                .to_owned();
            assert!(said.contains("demo passed"), "{said}");
            return (child, url);
        }
    }
    panic!("ferry demo --keep-serving did not print the dashboard's address:\n{said}");
}

/// ChromeDriver on a free loopback port.
fn chromedriver() -> (Killed, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (Debian package chromium-driver) must be installed");
    let child = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, format!("http://127.0.0.1:{port}"))
}

async fn browser(webdriver: &str) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            // The demo's CA is its own: the browser is told to accept the certificate.
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--ignore-certificate-errors", "--window-size=1280,1400"],
        }),
    );
    ClientBuilder::rustls()
        .expect("TLS roots")
        .capabilities(caps)
        .connect(webdriver)
        .await
        .expect("a Chromium session")
}

/// Saves a screenshot of the page as `name`.png in `shots` (and in docs/dashboard/ when
/// FERRY_UPDATE_SCREENSHOTS=1).
async fn shot(c: &Client, shots: &Path, name: &str) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    println!(
        "screenshot {name} at +{:.1} s",
        start.elapsed().as_secs_f64()
    );
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::write(shots.join(format!("{name}.png")), &png).unwrap();
    if std::env::var("FERRY_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/dashboard");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join(format!("{name}.png")), &png).unwrap();
    }
}

async fn sign_in(c: &Client, base: &str, fields: &[(&str, &str)]) {
    c.goto(&format!("{base}/dashboard/login")).await.unwrap();
    for (name, value) in fields {
        c.find(Locator::Css(&format!("input[name={name}]")))
            .await
            .unwrap()
            .send_keys(value)
            .await
            .unwrap();
    }
    c.find(Locator::Id("sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Waits until the page's source satisfies `f`; the source.
async fn wait_source(c: &Client, what: &str, f: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let source = c.source().await.unwrap();
        if f(&source) {
            return source;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the page never showed it:\n{source}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Devices of class demo-vm in the first wave of the demo's rollout 1 (whose first wave
/// holds the demo device: places below the demo device's are in it too).
fn first_wave_ids(demo_device: DeviceId, n: usize) -> Vec<u64> {
    let limit = ferry_server::rollouts::place(1, &demo_device);
    (0x5300_0000_0000_0001u64..)
        .step_by(7919)
        .filter(|id| ferry_server::rollouts::place(1, &DeviceId::new(*id).unwrap()) <= limit)
        .take(n)
        .collect()
}

/// Runs a blocking call (the simulated devices' own runtime) from inside the browser's.
fn sync<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[test]
fn browser_signs_in_sees_the_demo_watches_progress_halts_and_refuses_a_viewer() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let shots = tmp.path().join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let dir = tmp.path().join("demo");
    let (_demo, base) = demo(&dir);
    let data = dir.join("server");
    let api = Api::at(&base, &data);
    let (_driver, webdriver) = chromedriver();
    let (_, devices) = api.admin("/v1/admin/devices", None);
    let demo_device: DeviceId = devices[0]["device_id"].as_str().unwrap().parse().unwrap();
    println!("demo ready after {:.1} s", started.elapsed().as_secs_f64());

    // Devices of the demo's class in the rollout's first wave, through the HTTP API.
    let ids = first_wave_ids(demo_device, 2);
    let mut sims = Vec::new();
    for id in ids {
        sims.extend(enroll(&api, "demo-vm", id, 1));
    }
    let v2 = published(&api, "demo-vm", "2.0");
    assert_eq!(
        ticket(&api, &sims[0], &v2),
        "TICKET",
        "the first wave is open"
    );
    // A viewer, made by the CLI with the password on standard input.
    let mut add = ferry()
        .args([
            "server",
            "user",
            "add",
            "vera",
            "--role",
            "viewer",
            "--data",
            s(&data),
        ])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(add.stdin.take().unwrap(), "vera-password").unwrap();
    assert!(add.wait().unwrap().success());

    // Multi-threaded, so the blocking API calls can leave the runtime (`block_in_place`).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let c = browser(&webdriver).await;
        // Sign in with the admin token; the fleet shows the demo device on 2.0, committed.
        c.goto(&format!("{base}/")).await.unwrap();
        assert!(
            c.current_url()
                .await
                .unwrap()
                .path()
                .ends_with("/dashboard/login")
        );
        shot(&c, &shots, "login").await;
        sign_in(&c, &base, &[("token", &api.admin)]).await;
        let fleet = wait_source(&c, "the fleet", |s| s.contains("By class and version")).await;
        let demo_id = demo_device.to_string();
        assert!(fleet.contains(&demo_id), "{fleet}");
        assert!(
            fleet.contains("<td>demo-vm</td><td>2.0</td><td>1</td>"),
            "{fleet}"
        );
        shot(&c, &shots, "fleet").await;
        // The browser speaks HTTP/2 to the server (ALPN `h2`): its tabs' live streams share
        // one connection instead of six HTTP/1.1 ones.
        let protocol = c
            .execute(
                "return performance.getEntriesByType('navigation')[0].nextHopProtocol",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(protocol.as_str(), Some("h2"), "{protocol:?}");

        // The demo device: committed 2.0, its reports, its progress chart.
        c.goto(&format!("{base}/dashboard/devices/{demo_id}"))
            .await
            .unwrap();
        let page = c.source().await.unwrap();
        assert!(
            page.contains("committed") && page.contains("installed"),
            "{page}"
        );
        shot(&c, &shots, "device").await;

        // A device installing: its bar moves as its reports arrive, without a reload.
        let moving = &sims[1];
        sync(|| {
            deliver(
                &api,
                moving,
                vec![report(moving, EventKind::InstallStarted, None, None)],
            )
        });
        let id = moving.id().to_string();
        c.goto(&format!("{base}/dashboard/devices/{id}"))
            .await
            .unwrap();
        wait_source(&c, "live connection", |s| {
            s.contains(r#"id="live-status" class="muted">live<"#) || s.contains(">live<")
        })
        .await;
        let mut seen = Vec::new();
        for percent in [15.0, 40.0, 75.0] {
            let sent = Instant::now();
            sync(|| {
                deliver(
                    &api,
                    moving,
                    vec![report(moving, EventKind::Progress, Some(percent), None)],
                )
            });
            loop {
                // The bar's value as the page's script set it (a number).
                let v = c
                    .execute(
                        "return document.querySelector('progress[data-progress]').value",
                        vec![],
                    )
                    .await
                    .unwrap()
                    .as_f64()
                    .unwrap_or(-1.0);
                if (v - percent).abs() < 0.01 {
                    seen.push((percent, sent.elapsed()));
                    break;
                }
                assert!(
                    sent.elapsed() < Duration::from_secs(2),
                    "the bar shows {v}, not {percent}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        println!("report → bar in the browser: {:?}", seen);
        let text = c
            .find(Locator::Css("[data-percent]"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(text, "75 %");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        shot(&c, &shots, "progress").await;

        // A failure, for the failures page.
        sync(|| {
            deliver(
                &api,
                moving,
                vec![report(
                    moving,
                    EventKind::Failed,
                    None,
                    Some("PAYLOAD_TRUNCATED"),
                )],
            )
        });
        c.goto(&format!("{base}/dashboard/failures")).await.unwrap();
        let failures = c.source().await.unwrap();
        assert!(
            failures.contains("PAYLOAD_TRUNCATED") && failures.contains(&id),
            "{failures}"
        );
        shot(&c, &shots, "failures").await;

        // Halt the demo's rollout with the button: the first wave's device that got a
        // ticket a moment ago is refused the next.
        c.goto(&format!("{base}/dashboard/rollouts/1"))
            .await
            .unwrap();
        shot(&c, &shots, "rollout").await;
        c.find(Locator::Id("halt-button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_source(&c, "the halt", |s| s.contains(">halted<")).await;
        assert_eq!(sync(|| ticket(&api, &sims[0], &v2)), "ROLLOUT_HALTED");
        shot(&c, &shots, "rollout-halted").await;

        // Revoke an entitlement with its button: 2.0 granted to each of the two devices;
        // the moving device's grant revoked, its ticket is refused NOT_ENTITLED (before the
        // halt); the other's grant still stands.
        let mut grants = Vec::new();
        for sim in &sims {
            let body = serde_json::json!({
                "class": "demo-vm", "version": "2.0", "to": format!("device:{}", sim.id()),
            });
            let (status, grant) = sync(|| api.admin("/v1/admin/entitlements", Some(body)));
            assert_eq!(status, 200, "{grant}");
            grants.push(grant["id"].as_i64().unwrap());
        }
        c.goto(&format!("{base}/dashboard/devices/{id}"))
            .await
            .unwrap();
        c.find(Locator::Id(&format!("revoke-{}", grants[1])))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let revoked = wait_source(&c, "the revoke", |s| {
            s.contains(&format!(r#"data-entitlement="{}""#, grants[1]))
                && !s.contains(&format!(r#"id="revoke-{}""#, grants[1]))
        })
        .await;
        assert!(revoked.contains("NOT_ENTITLED"), "{revoked}");
        assert_eq!(sync(|| ticket(&api, moving, &v2)), "NOT_ENTITLED");
        assert_eq!(sync(|| ticket(&api, &sims[0], &v2)), "ROLLOUT_HALTED");
        c.execute(
            "document.getElementById('entitlements').scrollIntoView()",
            vec![],
        )
        .await
        .unwrap();
        shot(&c, &shots, "device-revoked").await;

        // Sign out; a viewer signs in and is refused the resume button.
        c.find(Locator::Css("header form button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_source(&c, "signed out", |s| s.contains(r#"name="password""#)).await;
        sign_in(
            &c,
            &base,
            &[("user", "vera"), ("password", "vera-password")],
        )
        .await;
        wait_source(&c, "the viewer's fleet", |s| s.contains("vera (viewer)")).await;
        c.goto(&format!("{base}/dashboard/rollouts/1"))
            .await
            .unwrap();
        c.find(Locator::Id("resume-button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let refused =
            wait_source(&c, "the refusal", |s| s.contains("DASHBOARD_NOT_OPERATOR")).await;
        assert!(refused.contains("is a viewer"), "{refused}");
        shot(&c, &shots, "viewer-refused").await;
        assert_eq!(
            sync(|| ticket(&api, &sims[0], &v2)),
            "ROLLOUT_HALTED",
            "still halted"
        );
        c.close().await.unwrap();
    });
    for name in [
        "login",
        "fleet",
        "device",
        "progress",
        "failures",
        "rollout",
        "rollout-halted",
        "device-revoked",
        "viewer-refused",
    ] {
        assert!(shots.join(format!("{name}.png")).exists(), "{name}.png");
    }
    println!("browser test took {:.1} s", started.elapsed().as_secs_f64());
}
