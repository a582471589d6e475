//! Issue 13's promises, end to end: a cut download shows the waiting state with its
//! reason within 2 s, and `ferry log chart` draws a real install's progress log as a
//! valid SVG and PNG.

mod common;

use std::io::BufRead;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_cut_download_shows_the_waiting_state_with_its_reason_within_2_s() {
    let (f, proxy) = fleet_behind_proxy(12);
    const CUT_AT: u64 = 3 << 20;
    proxy.set_fault(Fault::StallAfter(CUT_AT));
    let mut child = ferry()
        .args(["install", "vm-2.0", "--device", s(&f.device)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Every line the (non-terminal) bar prints, with when it arrived.
    let lines: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let stderr = child.stderr.take().unwrap();
    let seen = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            seen.lock().unwrap().push((Instant::now(), line));
        }
    });
    let max = proxy.max_forwarded.clone();
    assert!(
        wait_for(60, || max.load(Ordering::SeqCst) >= CUT_AT),
        "the download never reached the cut"
    );
    let cut = Instant::now();
    let waiting = |lines: &[(Instant, String)]| {
        lines
            .iter()
            .find(|(_, l)| l.contains("waiting for the network: no bytes for"))
            .cloned()
    };
    let shown = wait_for(10, || waiting(&lines.lock().unwrap()).is_some());
    let _ = child.kill();
    let _ = child.wait();
    let all = lines.lock().unwrap().clone();
    let text: Vec<&str> = all.iter().map(|(_, l)| l.as_str()).collect();
    assert!(shown, "no waiting state shown:\n{}", text.join("\n"));
    let (at, line) = waiting(&all).unwrap();
    let after = at.saturating_duration_since(cut);
    assert!(
        after <= Duration::from_secs(2),
        "the wait showed {after:?} after the cut: {line}"
    );
    assert!(line.contains("DOWNLOADING_UPDATE"), "{line}");
    assert!(
        line.contains("the connection is given up in"),
        "the wait says what happens next: {line}"
    );
    // Bytes moved before the cut, with their units in the action text.
    assert!(
        text.iter()
            .any(|l| l.contains("Downloading update… ") && l.contains(" of ")),
        "{}",
        text.join("\n")
    );
    // The progress log has the wait too.
    let logs: Vec<_> = std::fs::read_dir(f.device.join("progress"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let log = std::fs::read_to_string(&logs[0]).unwrap();
    assert!(log.contains("waiting for the network"), "{log}");
}

#[test]
fn log_chart_writes_a_valid_svg_and_png_of_an_install() {
    let f = fleet(4, |s| s.url());
    let out_dir = f.root.join("charts");
    std::fs::create_dir_all(&out_dir).unwrap();
    let svg = out_dir.join("install.svg");
    // No install yet: no log, a named error.
    let out = run(&[
        "log",
        "chart",
        "--json",
        "--device",
        s(&f.device),
        "--out",
        s(&svg),
    ]);
    assert!(!out.status.success());
    assert_eq!(json_error_code(&out), "NO_PROGRESS_LOG");

    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
    ok(&["log", "chart", "--device", s(&f.device), "--out", s(&svg)]);
    let text = std::fs::read_to_string(&svg).unwrap();
    check_xml(&text);
    assert!(text.contains("<svg"), "an SVG document");
    assert!(
        text.contains("fixed-checkpoint bar"),
        "the legend names both bars"
    );
    assert!(
        text.contains("time remaining: real"),
        "a finished install shows the real time"
    );

    let png = out_dir.join("install.png");
    ok(&["log", "chart", "--device", s(&f.device), "--out", s(&png)]);
    let decoder = png::Decoder::new(std::fs::File::open(&png).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1200, 700));
    assert!(
        buf.iter().any(|b| *b != 255),
        "something is drawn on the white background"
    );

    let bad = run(&[
        "log",
        "chart",
        "--json",
        "--device",
        s(&f.device),
        "--out",
        s(&out_dir.join("install.gif")),
    ]);
    assert_eq!(json_error_code(&bad), "CHART_FAILED");
}

/// Checks `text` is well-formed XML: one root, every element closed in order, quoted
/// attributes (a small checker: no XML crate is vendored here).
fn check_xml(text: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut roots = 0;
    let mut rest = text;
    while let Some(open) = rest.find('<') {
        let tail = &rest[open..];
        if let Some(body) = tail.strip_prefix("<?") {
            rest = &body[body.find("?>").expect("an unclosed declaration") + 2..];
            continue;
        }
        if let Some(body) = tail.strip_prefix("<!--") {
            rest = &body[body.find("-->").expect("an unclosed comment") + 3..];
            continue;
        }
        let end = tail.find('>').expect("an unclosed tag");
        let tag = &tail[1..end];
        assert_eq!(
            tag.matches('"').count() % 2,
            0,
            "unbalanced quotes in <{tag}>"
        );
        if let Some(name) = tag.strip_prefix('/') {
            let top = stack.pop().expect("a closing tag with nothing open");
            assert_eq!(top, name.trim(), "tags closed out of order");
        } else {
            let name: String = tag
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '/')
                .collect();
            assert!(!name.is_empty(), "an empty tag");
            if stack.is_empty() {
                roots += 1;
            }
            if !tag.ends_with('/') {
                stack.push(name);
            }
        }
        rest = &tail[end + 1..];
    }
    assert!(stack.is_empty(), "unclosed elements: {stack:?}");
    assert_eq!(roots, 1, "one root element");
}
