//! Issue 13's promises, end to end: a network cut longer than the read timeout shows the
//! waiting state with its reason within 2 s and is waited out in the same run, and `ferry log chart` draws a real install's progress log as a
//! valid SVG and PNG.

use std::io::BufRead;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;

/// Every line the (non-terminal) bar of `child` prints on stderr, with when it arrived.
fn bar_lines(child: &mut std::process::Child) -> Lines {
    let lines: Lines = Arc::default();
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
    lines
}

/// Every bar line so far, joined: what a failed assertion shows.
fn all_lines(lines: &Mutex<Vec<(Instant, String)>>) -> Vec<String> {
    lines
        .lock()
        .unwrap()
        .iter()
        .map(|(_, l)| l.clone())
        .collect()
}

/// A device behind a proxy whose connection stalls once `CUT_AT` bytes have gone through,
/// with a 3 s read timeout and `retries` download retries, installing 2.0 (`--json`): the
/// fleet, the proxy, the running install and its bar lines.
fn install_into_a_cut(retries: u32) -> (Fleet, Proxy, std::process::Child, Lines) {
    let (f, proxy) = fleet_behind_proxy(12);
    let config = f.device.join("config.toml");
    let saved = std::fs::read_to_string(&config).unwrap();
    assert!(saved.contains("download_retries = 5"), "{saved}");
    std::fs::write(
        &config,
        saved
            .replace("read_timeout_secs = 30", "read_timeout_secs = 3")
            .replace(
                "download_retries = 5",
                &format!("download_retries = {retries}"),
            ),
    )
    .unwrap();
    proxy.set_fault(Fault::StallAfter(CUT_AT));
    let mut child = ferry()
        .args(["install", "vm-2.0", "--json", "--device", s(&f.device)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = bar_lines(&mut child);
    (f, proxy, child, lines)
}

/// Where [`install_into_a_cut`] cuts the download.
const CUT_AT: u64 = 3 << 20;

type Lines = Arc<Mutex<Vec<(Instant, String)>>>;

/// The first line of `lines` containing `needle`.
fn first_with(lines: &Mutex<Vec<(Instant, String)>>, needle: &str) -> Option<(Instant, String)> {
    lines
        .lock()
        .unwrap()
        .iter()
        .find(|(_, l)| l.contains(needle))
        .cloned()
}

#[test]
fn a_network_cut_longer_than_the_read_timeout_is_waited_out_in_the_same_run() {
    let (f, proxy, child, lines) = install_into_a_cut(5);
    const CUT: Duration = Duration::from_secs(8);
    let max = proxy.max_forwarded.clone();
    assert!(
        wait_for(60, || max.load(Ordering::SeqCst) >= CUT_AT),
        "the download never reached the cut"
    );
    // The network goes down: the connection under way stalls, new ones get nothing.
    let cut = Instant::now();
    proxy.set_fault(Fault::Down);
    let waiting = "waiting for the network: no bytes for";
    let shown = wait_for(10, || first_with(&lines, waiting).is_some());
    // The connection is given up after 3 s and asked for again after a back-off: the
    // wait says so, with its countdown and its reason.
    let retrying = wait_for(15, || first_with(&lines, "(retry 1 of 5").is_some());
    let left = CUT.saturating_sub(cut.elapsed());
    std::thread::sleep(left);
    proxy.set_fault(Fault::None);
    let out = child.wait_with_output().unwrap();
    let all = all_lines(&lines);
    let text_all = all.join("\n");
    assert!(shown, "no waiting state shown:\n{text_all}");
    let (at, line) = first_with(&lines, waiting).unwrap();
    let after = at.saturating_duration_since(cut);
    assert!(
        after <= Duration::from_secs(2),
        "the wait showed {after:?} after the cut: {line}"
    );
    assert!(line.contains("DOWNLOADING_UPDATE"), "{line}");
    assert!(
        line.contains("retrying in") && line.contains("given up after 3 s without a byte"),
        "the wait says what happens next: {line}"
    );
    assert!(retrying, "the back-off was not shown:\n{text_all}");
    let (_, line) = first_with(&lines, "(retry 1 of 5").unwrap();
    assert!(
        line.contains("timed out after 3 s without a byte"),
        "the retry says why: {line}"
    );
    // The same run finished.
    assert!(
        out.status.success(),
        "the run ended: {}\n{text_all}",
        text(&out.stdout)
    );
    assert!(
        cut.elapsed() >= CUT,
        "the cut lasted longer than the read timeout"
    );
    // The scan has its units: metadata files and bytes fetched and verified.
    assert!(
        all.iter()
            .any(|l| l.contains("SCANNING") && l.contains("metadata files (")),
        "{text_all}"
    );
    // Bytes moved before the cut, with their units in the action text.
    assert!(
        all.iter()
            .any(|l| l.contains("Downloading update… ") && l.contains(" of ")),
        "{text_all}"
    );
    // The progress log has the wait and its countdown too.
    let logs: Vec<_> = std::fs::read_dir(f.device.join("progress"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let log = std::fs::read_to_string(&logs[0]).unwrap();
    assert!(log.contains("retrying in"), "{log}");
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(status(&f.device)["version"], "2.0");
}

#[test]
fn retries_are_bounded_and_a_network_that_stays_down_ends_the_run_for_the_next_to_resume() {
    let (f, proxy, child, lines) = install_into_a_cut(2);
    let max = proxy.max_forwarded.clone();
    let reached = wait_for(120, || max.load(Ordering::SeqCst) >= CUT_AT);
    proxy.set_fault(Fault::Down);
    let out = child.wait_with_output().unwrap();
    assert!(
        reached,
        "the download never reached the cut: {}\n{}",
        text(&out.stdout),
        all_lines(&lines).join("\n")
    );
    let all = all_lines(&lines);
    let text_all = all.join("\n");
    assert!(
        !out.status.success(),
        "the network never came back: {text_all}"
    );
    let code = json_error_code(&out);
    assert!(
        ["NETWORK_TIMEOUT", "SERVER_UNREACHABLE"].contains(&code.as_str()),
        "{code}: {}",
        text(&out.stdout)
    );
    assert!(first_with(&lines, "(retry 2 of 2").is_some(), "{text_all}");
    assert!(first_with(&lines, "(retry 3 of").is_none(), "{text_all}");
    // What arrived is kept: the next run resumes from it and finishes.
    let st = status(&f.device);
    assert!(
        st["install_in_progress"]["frames_done"].as_u64().unwrap() >= 1,
        "progress was kept: {st}"
    );
    proxy.set_fault(Fault::None);
    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(status(&f.device)["version"], "2.0");
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
