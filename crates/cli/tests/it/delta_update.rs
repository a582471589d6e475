//! Issue 7's device-side promises: a tailored delta installs with a fraction of the
//! bytes, and a delta that cannot apply (wrong base, corrupted) falls back to the full
//! payload automatically, recorded in history, never silent. Issue 11's rule: a network
//! cut during a delta is not the delta's fault, so it ends the install without a
//! fallback and the next install resumes through the delta.

use std::path::{Path, PathBuf};

use crate::common::*;

struct DeltaFleet {
    _tmp: tempfile::TempDir,
    server: Server,
    data: PathBuf,
    device: PathBuf,
}

fn delta_fleet() -> DeltaFleet {
    delta_fleet_of(4, 0)
}

/// 1.0 and 2.0 (`mib` MiB images, the last `rewritten_mib` of 2.0 new content), 2.0
/// with a delta from 1.0 and no chunks; a device on 1.0.
fn delta_fleet_of(mib: usize, rewritten_mib: usize) -> DeltaFleet {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("server");
    let (v1, v2) = (tmp.path().join("v1.img"), tmp.path().join("v2.img"));
    make_image(&v1, 1, mib);
    make_image(&v2, 2, mib);
    if rewritten_mib > 0 {
        let mut bytes = std::fs::read(&v2).unwrap();
        let from = bytes.len() - (rewritten_mib << 20);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for chunk in bytes[from..].chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        std::fs::write(&v2, bytes).unwrap();
    }
    publish(&data, &v1, "1.0");
    publish_with(&data, &v2, "2.0", &["--delta-from", "1.0", "--no-chunks"]);
    let server = Server::start(&data);
    let device = tmp.path().join("device");
    device_init(&device, &v1, "1.0", &server.url(), &data, "customer");
    DeltaFleet {
        _tmp: tmp,
        server,
        data,
        device,
    }
}

fn last_install(device: &Path) -> serde_json::Value {
    let history: serde_json::Value =
        serde_json::from_str(&ok(&["history", "--json", "--device", s(device)])).unwrap();
    history.as_array().unwrap().last().unwrap().clone()
}

fn full_payload_size(data: &Path) -> u64 {
    artifact(data, ".payload.zst").1
}

#[test]
fn tailored_delta_installs_with_a_fraction_of_the_bytes() {
    let f = delta_fleet();
    let list: serde_json::Value =
        serde_json::from_str(&ok(&["list", "--json", "--device", s(&f.device)])).unwrap();
    assert_eq!(list[0]["kind"], "delta", "{list}");
    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
    let receipt = last_install(&f.device);
    assert_eq!(receipt["payload_kind"], "delta", "{receipt}");
    assert!(receipt["fallback"].is_null());
    let downloaded = receipt["bytes_downloaded"].as_u64().unwrap();
    let full = full_payload_size(&f.data);
    assert!(
        downloaded * 4 < full,
        "delta {downloaded} B against full {full} B"
    );
    assert!(receipt["bytes_reused"].as_u64().unwrap() > 0);
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(status(&f.device)["version"], "2.0");
    ok(&["log", "replay", "--device", s(&f.device)]);
}

#[test]
fn delta_on_the_wrong_base_falls_back_to_the_full_image_and_says_so() {
    let f = delta_fleet();
    // The running slot is not the base the delta was made for.
    let slot_a = f.device.join("slots/a.img");
    let mut bytes = std::fs::read(&slot_a).unwrap();
    for b in bytes[..2 << 20].iter_mut() {
        *b = b.wrapping_add(1);
    }
    std::fs::write(&slot_a, bytes).unwrap();
    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
    let receipt = last_install(&f.device);
    assert_eq!(receipt["payload_kind"], "full", "{receipt}");
    assert_eq!(receipt["fallback"]["code"], "BASE_MISMATCH", "{receipt}");
    let journal = ok(&[
        "log",
        "show",
        "--json",
        "--fsm",
        "downloader",
        "--device",
        s(&f.device),
    ]);
    assert!(
        journal.contains("\"fallback\":\"full\""),
        "the fallback is journaled: {journal}"
    );
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(status(&f.device)["version"], "2.0");
}

#[test]
fn corrupted_delta_falls_back_to_the_full_image() {
    let f = delta_fleet();
    let (delta, size) = artifact(&f.data, ".ferrydelta");
    let mut bytes = std::fs::read(&delta).unwrap();
    let pos = (size as usize) * 3 / 4;
    bytes[pos] ^= 0x55;
    std::fs::write(&delta, bytes).unwrap();
    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
    let receipt = last_install(&f.device);
    assert_eq!(receipt["payload_kind"], "full");
    let code = receipt["fallback"]["code"].as_str().unwrap().to_owned();
    assert!(
        ["DELTA_CORRUPT", "DIGEST_MISMATCH", "DELTA_COMPRESSION"].contains(&code.as_str()),
        "{code}"
    );
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(status(&f.device)["version"], "2.0");
}

#[test]
fn a_network_cut_during_a_delta_ends_the_install_and_the_next_install_resumes_the_delta() {
    // New content in 2.0 makes a delta big enough to cut in the middle.
    let f = delta_fleet_of(4, 1);
    // Artifact bytes go through a proxy set as the device's cache; the catalog and the
    // personalization go straight to the server, so only the artifacts are cut.
    let proxy = Proxy::start(f.server.addr);
    use_cache(&f.device, &proxy.url());
    let (_, delta_size) = artifact(&f.data, ".ferrydelta");
    let (_, manifest_size) = artifact(&f.data, ".manifest.json");
    // The manifest comes first, maybe on the same connection: with at most 800 bytes of
    // HTTP headers in all, this cuts inside the delta's body either way.
    let cut_at = manifest_size + delta_size / 2 + 800;
    assert!(
        manifest_size + 800 < delta_size / 2,
        "the delta ({delta_size} B) is too small to cut after the manifest ({manifest_size} B)"
    );
    proxy.set_fault(Fault::CutAfter(cut_at));
    let out = run(&["install", "vm-2.0", "--json", "--device", s(&f.device)]);
    assert!(!out.status.success(), "the cut install fails");
    assert_eq!(
        json_error_code(&out),
        "PAYLOAD_TRUNCATED",
        "the network's code"
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f.device.join("cache/install.json")).unwrap())
            .unwrap();
    assert!(
        record["fallback"].is_null(),
        "no fallback recorded: {record}"
    );
    assert!(record["fallback_from"].is_null(), "{record}");
    assert_eq!(record["frames_done"], 0, "{record}");
    let cut_bytes = record["bytes_downloaded"].as_u64().unwrap();
    assert!(
        cut_bytes > 0 && cut_bytes < delta_size,
        "the cut came inside the delta, and its bytes count: {cut_bytes} of {delta_size} B"
    );
    let journal = downloader_journal(&f.device);
    let payloads: Vec<(&str, &str)> = journal
        .iter()
        .map(|r| {
            (
                r["e"].as_str().unwrap_or_default(),
                r["data"]["payload"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        payloads,
        [("Begin", "delta"), ("Fail", "delta")],
        "the delta began and failed, nothing else: {journal:?}"
    );
    assert!(journal[1]["data"]["fallback"].is_null(), "{journal:?}");
    assert_eq!(journal[1]["data"]["error"]["code"], "PAYLOAD_TRUNCATED");
    on_v1(&f.device);

    // The network is back: the same attempt, the delta, runs again and installs.
    proxy.set_fault(Fault::None);
    let out = ok(&["install", "vm-2.0", "--json", "--device", s(&f.device)]);
    let outcome: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(outcome["installed"]["payload_kind"], "delta", "{outcome}");
    let receipt = last_install(&f.device);
    assert_eq!(receipt["payload_kind"], "delta", "{receipt}");
    assert!(receipt["fallback"].is_null(), "{receipt}");
    assert!(receipt["fallback_from"].is_null(), "{receipt}");
    let total = receipt["bytes_downloaded"].as_u64().unwrap();
    assert_eq!(
        total,
        cut_bytes + delta_size,
        "the cut part and the whole delta, once each"
    );
    assert!(total < full_payload_size(&f.data), "{total} B");
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(status(&f.device)["version"], "2.0");
    ok(&["log", "replay", "--device", s(&f.device)]);
}

fn on_v1(device: &Path) {
    let st = status(device);
    assert_eq!(st["version"], "1.0", "{st}");
    assert_eq!(st["running_slot"], "a", "{st}");
}

/// Text-like file content: compressible, different per seed.
fn text(seed: u64, len: usize) -> Vec<u8> {
    let words = [
        "update ", "slot ", "seal ", "kernel ", "verity ", "boot\n", "ferry ",
    ];
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(words[(x % 7) as usize].as_bytes());
    }
    out.truncate(len);
    out
}

fn mksquashfs(tree: &Path, image: &Path) {
    let out = std::process::Command::new("mksquashfs")
        .arg(tree)
        .arg(image)
        .args([
            "-noappend",
            "-comp",
            "zstd",
            "-mkfs-time",
            "0",
            "-all-time",
            "0",
        ])
        .args(["-all-root", "-no-xattrs", "-quiet", "-no-progress"])
        .output()
        .expect("mksquashfs runs (Debian: squashfs-tools)");
    assert!(out.status.success(), "{}", text_of(&out.stderr));
}

fn text_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_squashfs_release_installs_through_a_delta_below_its_compression() {
    let tmp = tempfile::tempdir().unwrap();
    let (t1, t2) = (tmp.path().join("t1"), tmp.path().join("t2"));
    std::fs::create_dir_all(&t1).unwrap();
    std::fs::create_dir_all(&t2).unwrap();
    for i in 0..24u64 {
        let content = text(i, 100_000 + (i as usize * 7919) % 150_000);
        std::fs::write(t1.join(format!("f{i}")), &content).unwrap();
        let mut changed = content;
        if i % 3 == 0 {
            let at = changed.len() / 2;
            changed[at..at + 12].copy_from_slice(b"v2 was here!");
        }
        std::fs::write(t2.join(format!("f{i}")), &changed).unwrap();
    }
    let (v1, v2) = (tmp.path().join("v1.sqfs"), tmp.path().join("v2.sqfs"));
    mksquashfs(&t1, &v1);
    mksquashfs(&t2, &v2);
    let data = tmp.path().join("server");
    publish(&data, &v1, "1.0");
    publish_with(&data, &v2, "2.0", &["--delta-from", "1.0"]);
    let server = Server::start(&data);
    let device = tmp.path().join("device");
    device_init(&device, &v1, "1.0", &server.url(), &data, "customer");
    ok(&["install", "vm-2.0", "--device", s(&device)]);
    let receipt = last_install(&device);
    assert_eq!(receipt["payload_kind"], "delta", "{receipt}");
    assert!(receipt["fallback"].is_null(), "{receipt}");
    let downloaded = receipt["bytes_downloaded"].as_u64().unwrap();
    let full = full_payload_size(&data);
    // Every changed file's compressed blocks differ byte-wise; below the compression
    // only the twelve changed bytes per file do.
    assert!(
        downloaded * 10 < full,
        "delta {downloaded} B against the full payload {full} B"
    );
    ok(&["reboot", "--device", s(&device)]);
    let st = status(&device);
    assert_eq!(st["version"], "2.0", "{st}");
    ok(&["boot-check", "--device", s(&device)]);
}

/// Issue 20's finding 7: bytes of a delta reached the inactive slot before its digest was
/// checked at the end. The catalog now signs the pin of the delta's manifest and the device
/// checks it first: a substituted delta (self-consistent, built from the right base, for
/// another image) is refused before it writes a byte.
#[test]
fn a_substituted_delta_is_refused_before_it_writes_a_byte() {
    let f = delta_fleet();
    let catalog_delta = signed_delta_custom(&f.data);
    assert!(
        catalog_delta["delta_manifest_digest"].is_string(),
        "the pin is signed: {catalog_delta}"
    );
    // Another image, delta'd from the right base, stored under the real delta's name.
    let dir = f.data.parent().unwrap().to_owned();
    let (v1, other) = (dir.join("v1.img"), dir.join("other.img"));
    make_image(&other, 7, 4);
    let mut hostile = Vec::new();
    ferry_delta::encode_delta_bytes(
        &std::fs::read(&v1).unwrap(),
        &std::fs::read(&other).unwrap(),
        &mut hostile,
        &ferry_delta::EncodeOptions::default(),
    )
    .unwrap();
    let (delta_path, _) = artifact(&f.data, ".ferrydelta");
    std::fs::write(&delta_path, &hostile).unwrap();
    // Without the full payload nothing can fall back and write the slot either.
    let (payload_path, _) = artifact(&f.data, ".payload.zst");
    let payload = std::fs::read(&payload_path).unwrap();
    std::fs::remove_file(&payload_path).unwrap();
    let slot_b = f.device.join("slots/b.img");
    let slot_len = std::fs::metadata(&slot_b).unwrap().len();
    let before = slot_digest(&slot_b, slot_len);

    let out = run(&["install", "vm-2.0", "--json", "--device", s(&f.device)]);
    assert!(!out.status.success(), "{}", text_of(&out.stdout));
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f.device.join("cache/install.json")).unwrap())
            .unwrap();
    assert_eq!(record["fallback"]["code"], "MANIFEST_MISMATCH", "{record}");
    assert_eq!(record["fallback_from"], "delta", "{record}");
    assert_eq!(
        slot_digest(&slot_b, slot_len),
        before,
        "no byte of the substituted delta reached the slot"
    );
    on_v1(&f.device);

    // The full payload is back: the install completes without the delta.
    std::fs::write(&payload_path, payload).unwrap();
    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
    assert_eq!(last_install(&f.device)["payload_kind"], "full");
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(status(&f.device)["version"], "2.0");
}

/// A catalog from before the pin was signed (its delta target has none): the delta is not
/// applied, and the fallback says why.
#[test]
fn a_delta_the_catalog_does_not_pin_is_not_applied() {
    let f = delta_fleet();
    let (name, mut custom, length, sha256) = signed_delta(&f.data);
    custom
        .as_object_mut()
        .unwrap()
        .remove("delta_manifest_digest");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(ferry_catalog::repo::add_targets(
            &offline_keys(&f.data),
            &f.data.join("keys-online"),
            &f.data.join("tuf/metadata"),
            vec![ferry_catalog::NewTarget {
                name,
                length,
                sha256,
                custom,
            }],
            &ferry_catalog::repo::Expiries::default(),
        ))
        .unwrap();
    ok(&["install", "vm-2.0", "--device", s(&f.device)]);
    let receipt = last_install(&f.device);
    assert_eq!(receipt["payload_kind"], "full", "{receipt}");
    assert_eq!(receipt["fallback"]["code"], "DELTA_NOT_PINNED", "{receipt}");
    assert!(
        receipt["fallback"]["cause"]
            .as_str()
            .unwrap()
            .contains("older ferry"),
        "{receipt}"
    );
    ok(&["reboot", "--device", s(&f.device)]);
    assert_eq!(status(&f.device)["version"], "2.0");
}

/// The delta target the catalog signs now: (name, custom, length, sha256).
fn signed_delta(data: &Path) -> (String, serde_json::Value, u64, ferry_types::Sha256) {
    let metadata = data.join("tuf/metadata");
    let latest = std::fs::read_dir(&metadata)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            let version: u64 = name.strip_suffix(".targets.json")?.parse().ok()?;
            Some((version, name))
        })
        .max()
        .unwrap()
        .1;
    let targets: serde_json::Value =
        serde_json::from_slice(&std::fs::read(metadata.join(latest)).unwrap()).unwrap();
    let (name, target) = targets["signed"]["targets"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(name, _)| name.ends_with(".ferrydelta"))
        .unwrap();
    (
        name.clone(),
        target["custom"].clone(),
        target["length"].as_u64().unwrap(),
        target["hashes"]["sha256"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
    )
}

fn signed_delta_custom(data: &Path) -> serde_json::Value {
    signed_delta(data).1
}
