//! Issue 18's "done when": `ferry demo`'s whole story (publish with a delta and chunks,
//! enroll, a two-wave rollout, scan, personalize, download by range, install, reboot,
//! commit, event reports, the dashboard under `--keep-serving`) with its server on a
//! PostgreSQL cluster (FERRY_DATABASE) and an S3 store (`--store`, `s3s-fs`) this test
//! starts: no SQLite file and no artifacts in the demo's directory. A second demo on the
//! same database and bucket is refused rather than mixed in.
//!
//! Skipped loudly when PostgreSQL or s3s-fs is missing; both fail under CI.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use crate::common::s3::postgres_and_s3;
use crate::common::sim::Api;
use crate::common::*;

/// The demo process, killed if the test fails before it stops it.
struct Demo {
    child: Child,
    lines: Receiver<String>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Demo {
    /// Starts `ferry demo --keep-serving ARGS`; its output is read by a thread.
    fn start(args: &[&str]) -> Demo {
        let mut child = ferry()
            .args(["demo", "--keep-serving", "--image-mib", "8"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ferry demo");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Demo { child, lines }
    }

    /// Everything printed until a line starting with `prefix` (included).
    fn until(&self, prefix: &str) -> String {
        let mut said = String::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(180)) {
            said.push_str(&line);
            said.push('\n');
            if line.starts_with(prefix) {
                return said;
            }
        }
        panic!("ferry demo did not print {prefix:?}:\n{said}");
    }
}

#[test]
fn the_demo_runs_its_whole_story_on_postgresql_and_s3() {
    let tmp = tempfile::tempdir().unwrap();
    let Some((pg, s3)) = postgres_and_s3(tmp.path()) else {
        return;
    };
    // The database through FERRY_DATABASE (every `ferry` command below), the store by flag.
    use_database(pg.database());
    let store = s3.url();
    let dir = tmp.path().join("demo");
    let demo = Demo::start(&["--dir", s(&dir), "--store", &store]);
    let said = demo.until("== dashboard: ");
    assert!(said.contains("== demo passed"), "{said}");
    assert!(said.contains("== server database: postgres://"), "{said}");
    assert!(
        !said.contains("ferry-test-secret"),
        "no credential is printed: {said}"
    );
    let url = said
        .lines()
        .find_map(|l| l.strip_prefix("== dashboard: "))
        .and_then(|l| l.split(' ').next())
        .unwrap()
        .trim_end_matches('/')
        .to_owned();

    // Nothing in the data directory a replica would need to share: the database is
    // PostgreSQL, the releases and the served catalog are in the bucket.
    let data = dir.join("server");
    assert!(!data.join("ferry.db").exists(), "no SQLite file");
    assert!(
        !data.join("artifacts/releases").exists(),
        "no local artifacts"
    );
    assert_eq!(s3.find("releases/demo-vm/1.0", ".payload.zst").len(), 1);
    assert_eq!(s3.find("releases/demo-vm/2.0", ".payload.zst").len(), 1);
    assert_eq!(s3.find("releases/demo-vm/2.0", ".chunks.zst").len(), 1);
    assert!(s3.object("tuf/metadata/timestamp.json").exists());

    // The device downloaded 2.0's delta from the bucket through the server, and committed.
    let device = dir.join("device");
    let history: serde_json::Value =
        serde_json::from_str(&ok(&["history", "--json", "--device", s(&device)])).unwrap();
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["version"], "2.0", "{last}");
    assert_eq!(last["payload_kind"], "delta", "{last}");
    assert_eq!(status(&device)["version"], "2.0");

    // The server side, read from PostgreSQL by other commands: the device, its committed
    // update in the fleet, the rollout's first wave counting it.
    let devices: serde_json::Value =
        serde_json::from_str(&ok(&["server", "devices", "--data", s(&data), "--json"])).unwrap();
    assert_eq!(devices.as_array().map(Vec::len), Some(1), "{devices}");
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&["rollout", "show", "1", "--json", "--data", s(&data)])).unwrap();
    assert_eq!(shown["wave_counts"][0]["attempts"], 1, "{shown}");

    // The dashboard of the server the demo keeps serving: signed in with the admin token,
    // the rollout's page shows it.
    let api = Api::at(&url, &data);
    let (status_code, page) = api.runtime.block_on(async {
        // The sign-in form first: its pre-session cookie and the CSRF token it carries.
        let form = api
            .client
            .get(format!("{url}/dashboard/login"))
            .send()
            .await
            .unwrap();
        let form_cookie = form
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("__Host-ferry_login="))
            .and_then(|v| v.split(';').next())
            .expect("a sign-in form cookie")
            .to_owned();
        let form_page = form.text().await.unwrap();
        let at = form_page
            .find(r#"name="csrf" value=""#)
            .expect("a sign-in form with a CSRF token")
            + 19;
        let csrf = form_page[at..].split('"').next().unwrap().to_owned();
        let signed_in = api
            .client
            .post(format!("{url}/dashboard/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", form_cookie)
            .body(format!("token={}&csrf={csrf}", api.admin))
            .send()
            .await
            .unwrap();
        assert_eq!(signed_in.status().as_u16(), 303);
        let cookie = signed_in
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("ferry_session="))
            .and_then(|v| v.split(';').next())
            .expect("a session cookie")
            .to_owned();
        let page = api
            .client
            .get(format!("{url}/dashboard/rollouts/1"))
            .header("accept", "text/html")
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        (page.status().as_u16(), page.text().await.unwrap())
    });
    assert_eq!(status_code, 200, "{page}");
    assert!(page.contains("demo-vm") && page.contains("2.0"), "{page}");

    // Ranges (what chunk reuse and resumed downloads ask) answered from the bucket.
    let key = &s3.find("releases/demo-vm/2.0", ".chunks.zst")[0];
    let stored = std::fs::read(s3.object(key)).unwrap();
    let (code, body) = api.runtime.block_on(async {
        let r = api
            .client
            .get(format!("{url}/artifacts/{key}"))
            .header("range", "bytes=100-199")
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
    });
    assert_eq!((code, body.as_slice()), (206, &stored[100..200]));

    // SIGTERM stops the demo's server cleanly.
    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &demo.child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    demo.until("== server stopped");

    // The same database and bucket again: refused, nothing mixed in.
    let again = ferry()
        .args(["demo", "--image-mib", "8", "--dir"])
        .arg(tmp.path().join("demo-again"))
        .args(["--store", &store])
        .output()
        .unwrap();
    assert!(!again.status.success());
    let stderr = text(&again.stderr);
    assert!(stderr.contains("DEMO_NOT_EMPTY"), "{stderr}");
}
