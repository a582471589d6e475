//! Issue 7's chunk reuse, end to end: a device with no tailored delta for its version
//! downloads only the chunks its running slot lacks, in batched multi-range requests,
//! resumes a cut download where its batch was (checkpoints within a batch: see also
//! `crash.rs`), fetches a corrupted chunk exactly once
//! more before falling back to the full payload (recorded), and works with servers that
//! refuse multi-range requests.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::common::*;

struct ChunkFleet {
    tmp: tempfile::TempDir,
    server: Server,
    data: PathBuf,
    device: PathBuf,
}

/// 1.0 and 2.0 published with their chunked payloads (2.0 hinted by 1.0), no delta; a
/// device on 1.0 (through `via`).
fn chunk_fleet(mib: usize, via: impl FnOnce(&Server) -> String) -> ChunkFleet {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("server");
    let (v1, v2) = (tmp.path().join("v1.img"), tmp.path().join("v2.img"));
    make_image(&v1, 1, mib);
    make_image(&v2, 2, mib);
    publish_with(&data, &v1, "1.0", &[]);
    publish_with(&data, &v2, "2.0", &[]);
    let server = Server::start(&data);
    let url = via(&server);
    let device = tmp.path().join("device");
    device_init(&device, &v1, "1.0", &url, &data, "customer");
    ChunkFleet {
        tmp,
        server,
        data,
        device,
    }
}

fn history(device: &Path) -> Vec<serde_json::Value> {
    let history: serde_json::Value =
        serde_json::from_str(&ok(&["history", "--json", "--device", s(device)])).unwrap();
    history.as_array().unwrap().clone()
}

fn install_json(device: &Path) -> std::process::Output {
    run(&["install", "vm-2.0", "--json", "--device", s(device)])
}

#[test]
fn a_device_without_a_delta_installs_by_chunk_reuse_with_a_fraction_of_the_bytes() {
    let f = chunk_fleet(8, Server::url);
    // A slot disk of 2 MB/s: the assembly lasts about 4 s, sampled about once a second.
    let out = ferry()
        .args(["install", "vm-2.0", "--json", "--device", s(&f.device)])
        .env(ferry_agent::install::pace::SLOT_IO_LIMIT_VAR, "2000000")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let outcome: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(outcome["installed"]["payload_kind"], "chunks", "{outcome}");
    let last = history(&f.device).pop().unwrap();
    assert_eq!(last["payload_kind"], "chunks", "{last}");
    assert!(last["fallback"].is_null(), "{last}");
    let downloaded = last["bytes_downloaded"].as_u64().unwrap();
    let reused = last["bytes_reused"].as_u64().unwrap();
    let (_, full) = artifact(&f.data, ".payload.zst");
    assert!(
        downloaded * 5 < full,
        "chunk reuse downloaded {downloaded} B against the full payload's {full} B"
    );
    assert!(
        reused > (6 << 20),
        "reused only {reused} B of an 8 MiB image"
    );
    // The plan asked several ranges in one request: no fallback to single ranges.
    let journal = downloader_journal(&f.device);
    assert!(
        journal
            .iter()
            .any(|r| r["data"]["multi_range"] == true && r["data"]["batches_done"] == 1),
        "{journal:?}"
    );
    // The assembly is measured work: image bytes written, sampled as they grow.
    let log = ferry_agent::progress::log::latest(&f.device.join("progress")).unwrap();
    let assembly: Vec<(u64, u64)> = ferry_agent::progress::log::read(&log)
        .into_iter()
        .filter(|s| s.action.starts_with("Assembling update (chunk reuse)"))
        .map(|s| (s.done, s.total))
        .collect();
    assert!(
        assembly.iter().all(|&(_, total)| total == 8 << 20),
        "{assembly:?}"
    );
    assert!(
        assembly.windows(2).any(|w| w[1].0 > w[0].0 && w[0].0 > 0),
        "the assembly's written bytes were not seen growing: {assembly:?}"
    );
    ok(&["reboot", "--device", s(&f.device)]);
    let st = status(&f.device);
    assert_eq!(st["version"], "2.0", "{st}");
    assert_eq!(st["running_slot"], "b", "{st}");
    ok(&["log", "replay", "--device", s(&f.device)]);
}

#[test]
fn a_corrupted_chunk_is_fetched_once_more_then_the_install_falls_back_to_full() {
    let f = chunk_fleet(4, Server::url);
    // Storage (or a CDN) hands out a flipped byte in the first chunk, whoever asks.
    let (chunks, _) = artifact(&f.data, ".chunks.zst");
    let mut bytes = std::fs::read(&chunks).unwrap();
    bytes[100] ^= 0x40;
    std::fs::write(&chunks, bytes).unwrap();
    let out = ok(&["install", "vm-2.0", "--json", "--device", s(&f.device)]);
    let outcome: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(outcome["installed"]["payload_kind"], "full", "{outcome}");
    let last = history(&f.device).pop().unwrap();
    assert_eq!(last["payload_kind"], "full", "{last}");
    assert_eq!(last["fallback"]["code"], "CHUNK_CORRUPT", "{last}");
    assert_eq!(last["fallback_from"], "chunks", "{last}");
    let journal = downloader_journal(&f.device);
    let refetches: Vec<_> = journal.iter().filter(|r| r["e"] == "Refetch").collect();
    assert_eq!(refetches.len(), 1, "exactly one more fetch: {journal:?}");
    assert_eq!(refetches[0]["data"]["chunk"], 0);
    assert!(
        journal
            .iter()
            .any(|r| r["e"] == "Fail" && r["data"]["fallback"] == "full"),
        "the fallback is journaled: {journal:?}"
    );
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(status(&f.device)["version"], "2.0");
    ok(&["log", "replay", "--device", s(&f.device)]);
}

#[test]
fn a_cut_connection_resumes_and_downloads_at_most_one_batch_again() {
    // Payload bytes go through a proxy set as the device's cache; everything else goes
    // straight to the server, so the proxy's byte count is the artifacts' alone.
    let f = chunk_fleet(8, Server::url);
    let proxy = Proxy::start(f.server.addr);
    use_cache(&f.device, &proxy.url());
    // Damage the running slot in places so that many hinted chunks are missing, far
    // apart: the plan then needs several batches of ranges.
    let slot_a = f.device.join("slots/a.img");
    let mut slot = std::fs::read(&slot_a).unwrap();
    for at in (0..slot.len()).step_by(300 << 10) {
        slot[at + 5000] ^= 0xff;
    }
    std::fs::write(&slot_a, &slot).unwrap();
    // The same plan the device will make.
    let (index_path, index_size) = artifact(&f.data, ".chunks.index");
    let index = ferry_delta::PayloadIndex::from_bytes(&std::fs::read(index_path).unwrap()).unwrap();
    let plan = ferry_delta::plan_reuse(
        &std::fs::File::open(&slot_a).unwrap(),
        &index,
        &ferry_delta::PlanOptions {
            max_ranges_per_request: 16,
            ..Default::default()
        },
    )
    .unwrap();
    let batch_bytes: Vec<u64> = plan
        .requests
        .iter()
        .map(|b| b.iter().map(|r| r.end - r.start).sum())
        .collect();
    assert!(
        batch_bytes.len() >= 2,
        "the plan needs batches: {batch_bytes:?}"
    );
    let (_, manifest_size) = artifact(&f.data, ".manifest.json");
    // Cut the artifact connection in the middle of the second batch.
    let cut_at = manifest_size + index_size + batch_bytes[0] + batch_bytes[1] / 2;
    proxy.set_fault(Fault::CutAfter(cut_at));
    let out = install_json(&f.device);
    assert!(!out.status.success(), "the cut install fails");
    let code = json_error_code(&out);
    assert!(
        ["PAYLOAD_TRUNCATED", "SERVER_UNREACHABLE"].contains(&code.as_str()),
        "{code}"
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f.device.join("cache/install.json")).unwrap())
            .unwrap();
    assert_eq!(record["chunks"]["batches_done"], 1, "{record}");
    // Back on: the install resumes at the second batch.
    proxy.set_fault(Fault::None);
    let out = ok(&["install", "vm-2.0", "--json", "--device", s(&f.device)]);
    let outcome: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(outcome["installed"]["payload_kind"], "chunks", "{outcome}");
    assert_eq!(outcome["installed"]["resumed_from_batch"], 1, "{outcome}");
    let last = history(&f.device).pop().unwrap();
    let total = last["bytes_downloaded"].as_u64().unwrap();
    let planned: u64 = batch_bytes.iter().sum();
    let framing = 16 << 10; // multipart part headers
    // The index is fetched by each run.
    assert!(
        total <= planned + 2 * index_size + batch_bytes[1] + framing,
        "downloaded {total} B in all for a {planned} B plan: more than one batch ({}) again",
        batch_bytes[1]
    );
    assert!(
        total > planned + 2 * index_size,
        "the cut batch was partly fetched twice"
    );
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(status(&f.device)["version"], "2.0");
}

/// How a test CDN answers a request for several ranges.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    /// `416`, as tower-http's ServeFile does.
    RangeNotSatisfiable,
    /// `200` with the whole body, which RFC 9110 allows.
    WholeBody,
}

/// A plain-HTTP static server of catalog targets that answers one range per request
/// only. Returns its URL and counters (requests, multi-range requests).
fn refusing_cdn(dir: PathBuf, refusal: Refusal) -> (String, Arc<AtomicU64>, Arc<AtomicU64>) {
    use axum::http::{HeaderMap, StatusCode, Uri, header};
    use axum::response::IntoResponse;
    let requests = Arc::new(AtomicU64::new(0));
    let multi = Arc::new(AtomicU64::new(0));
    let (requests2, multi2) = (requests.clone(), multi.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
                let (dir, requests, multi) = (dir.clone(), requests2.clone(), multi2.clone());
                async move {
                    requests.fetch_add(1, Ordering::SeqCst);
                    let Ok(bytes) = std::fs::read(dir.join(uri.path().trim_start_matches('/')))
                    else {
                        return StatusCode::NOT_FOUND.into_response();
                    };
                    let range = headers
                        .get(header::RANGE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("bytes="))
                        .map(str::to_owned);
                    match range {
                        Some(r) if r.contains(',') => {
                            multi.fetch_add(1, Ordering::SeqCst);
                            match refusal {
                                Refusal::RangeNotSatisfiable => {
                                    StatusCode::RANGE_NOT_SATISFIABLE.into_response()
                                }
                                Refusal::WholeBody => bytes.into_response(),
                            }
                        }
                        Some(r) => {
                            let (a, b) = r.split_once('-').unwrap();
                            let a: usize = a.parse().unwrap();
                            let b: usize = b
                                .parse::<usize>()
                                .map_or(bytes.len() - 1, |b| b.min(bytes.len() - 1));
                            (
                                StatusCode::PARTIAL_CONTENT,
                                [(
                                    header::CONTENT_RANGE,
                                    format!("bytes {a}-{b}/{}", bytes.len()),
                                )],
                                bytes[a..=b].to_vec(),
                            )
                                .into_response()
                        }
                        None => bytes.into_response(),
                    }
                }
            });
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (format!("http://{addr}"), requests, multi)
}

/// Lays the stored 2.0 artifacts out as `/tuf/targets/<sha256>.vm-2.0.<suffix>`.
fn cdn_dir(data: &Path, root: &Path) -> PathBuf {
    let targets = root.join("cdn/tuf/targets");
    std::fs::create_dir_all(&targets).unwrap();
    for entry in std::fs::read_dir(data.join("artifacts/releases/vm/2.0")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let (_, suffix) = name.split_once('.').unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let sha = ferry_types::Sha256::of(&bytes).to_hex();
        std::fs::write(targets.join(format!("{sha}.vm-2.0.{suffix}")), bytes).unwrap();
    }
    root.join("cdn")
}

#[test]
fn servers_that_refuse_multi_range_requests_still_serve_chunk_reuse() {
    for refusal in [Refusal::RangeNotSatisfiable, Refusal::WholeBody] {
        let f = chunk_fleet(4, Server::url);
        // Many far-apart missing chunks, so the plan asks several ranges per request.
        let slot_a = f.device.join("slots/a.img");
        let mut slot = std::fs::read(&slot_a).unwrap();
        for at in (0..slot.len()).step_by(300 << 10) {
            slot[at + 5000] ^= 0xff;
        }
        std::fs::write(&slot_a, &slot).unwrap();
        let (url, requests, multi) = refusing_cdn(cdn_dir(&f.data, f.tmp.path()), refusal);
        use_cache(&f.device, &url);
        let out = ok(&["install", "vm-2.0", "--json", "--device", s(&f.device)]);
        let outcome: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            outcome["installed"]["payload_kind"], "chunks",
            "{refusal:?}: {outcome}"
        );
        // One refused multi-range request, remembered: every later one is single.
        assert_eq!(multi.load(Ordering::SeqCst), 1, "{refusal:?}");
        assert!(requests.load(Ordering::SeqCst) > 3, "{refusal:?}");
        let journal = downloader_journal(&f.device);
        assert!(
            journal.iter().any(|r| r["data"]["multi_range"] == false),
            "{refusal:?}: {journal:?}"
        );
        ok(&["reboot", "--device", s(&f.device)]);
        assert_eq!(status(&f.device)["version"], "2.0", "{refusal:?}");
    }
}

#[test]
fn a_delta_for_another_base_falls_back_to_chunk_reuse_before_the_full_image() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("server");
    let (v1, v2) = (tmp.path().join("v1.img"), tmp.path().join("v2.img"));
    make_image(&v1, 1, 4);
    make_image(&v2, 2, 4);
    publish_with(&data, &v1, "1.0", &[]);
    publish_with(&data, &v2, "2.0", &["--delta-from", "1.0"]);
    let server = Server::start(&data);
    let device = tmp.path().join("device");
    device_init(&device, &v1, "1.0", &server.url(), &data, "customer");
    // The running slot is not quite the delta's base: its first blocks differ.
    let slot_a = device.join("slots/a.img");
    let mut bytes = std::fs::read(&slot_a).unwrap();
    for b in bytes[..256 << 10].iter_mut() {
        *b = b.wrapping_add(1);
    }
    std::fs::write(&slot_a, bytes).unwrap();
    ok(&["install", "vm-2.0", "--device", s(&device)]);
    let last = history(&device).pop().unwrap();
    assert_eq!(last["payload_kind"], "chunks", "{last}");
    assert_eq!(last["fallback"]["code"], "BASE_MISMATCH", "{last}");
    assert_eq!(last["fallback_from"], "delta", "{last}");
    let journal = downloader_journal(&device);
    assert!(
        journal
            .iter()
            .any(|r| r["e"] == "Fail" && r["data"]["fallback"] == "chunks"),
        "{journal:?}"
    );
    ok(&["reboot", "--device", s(&device)]);
    assert_eq!(status(&device)["version"], "2.0");
}
