//! Issue 7's LAN cache: a miss is fetched from upstream once, a second device is
//! served without touching upstream, disk use stays in its budget, and a device whose
//! cache is down goes to the origin. Every byte is still verified on the device.

use crate::common::lan_cache::LanCache;
use crate::common::*;

/// Fetches the cache made upstream (its own count: the upstream link is TLS, so the
/// proxy in front of the server cannot see the requests).
fn upstream_fetches(cache: &str) -> u64 {
    let out = std::process::Command::new("curl")
        .args(["-sf", &format!("{cache}/cache/stats")])
        .output()
        .unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    stats["upstream_fetches"].as_u64().unwrap()
}

#[test]
fn second_device_is_served_from_the_cache_and_a_dead_cache_falls_back_to_origin() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("server");
    let (v1, v2) = (tmp.path().join("v1.img"), tmp.path().join("v2.img"));
    make_image(&v1, 1, 4);
    make_image(&v2, 2, 4);
    publish(&data, &v1, "1.0");
    publish(&data, &v2, "2.0");
    let server = Server::start(&data);
    let upstream = Proxy::start(server.addr);
    let cache = LanCache::start(
        &upstream.url(),
        &server.ca(),
        &tmp.path().join("cache"),
        Some(1 << 30),
    );

    let mut devices = Vec::new();
    for n in 0..3 {
        let device = tmp.path().join(format!("device{n}"));
        device_init(&device, &v1, "1.0", &server.url(), &data, "customer");
        use_cache(&device, &cache.url);
        devices.push(device);
    }
    ok(&["install", "vm-2.0", "--device", s(&devices[0])]);
    let after_first = upstream_fetches(&cache.url);
    assert_eq!(
        after_first, 2,
        "the manifest and the payload, fetched upstream once each"
    );
    ok(&["install", "vm-2.0", "--device", s(&devices[1])]);
    assert_eq!(
        upstream_fetches(&cache.url),
        after_first,
        "the second device never touched upstream"
    );
    for device in &devices[..2] {
        ok(&["reboot", "--device", s(device)]);
        assert_eq!(status(device)["version"], "2.0");
    }

    // The cache goes down: the third device gets everything from the origin.
    drop(cache);
    ok(&["install", "vm-2.0", "--device", s(&devices[2])]);
    ok(&["reboot", "--device", s(&devices[2])]);
    assert_eq!(status(&devices[2])["version"], "2.0");
}

#[test]
fn concurrent_misses_fetch_once_and_disk_use_stays_in_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("server");
    let images: Vec<_> = (1..=3)
        .map(|n| tmp.path().join(format!("v{n}.img")))
        .collect();
    for (n, img) in images.iter().enumerate() {
        make_image(img, n as u32 + 1, 3);
        publish(&data, img, &format!("{}.0", n + 1));
    }
    let server = Server::start(&data);
    let upstream = Proxy::start(server.addr);
    let payload_path = |version: &str| {
        let dir = data.join(format!("artifacts/releases/vm/{version}"));
        let file = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .find(|n| n.ends_with(".payload.zst"))
            .unwrap();
        format!("/artifacts/releases/vm/{version}/{file}")
    };
    let budget = 5 << 20;
    let cache = LanCache::start(
        &upstream.url(),
        &server.ca(),
        &tmp.path().join("cache"),
        Some(budget),
    );

    // Eight clients ask for the same object at once: one upstream fetch.
    let url = format!("{}{}", cache.url, payload_path("2.0"));
    let expected = std::fs::read(data.join(payload_path("2.0").trim_start_matches('/'))).unwrap();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                std::process::Command::new("curl")
                    .args(["-sf", &url])
                    .output()
                    .unwrap()
                    .stdout
            })
        })
        .collect();
    for h in handles {
        assert_eq!(
            h.join().unwrap(),
            expected,
            "every client gets the whole object"
        );
    }
    assert_eq!(
        upstream_fetches(&cache.url),
        1,
        "concurrent misses share one upstream fetch"
    );

    // A range from the cached copy.
    let out = std::process::Command::new("curl")
        .args(["-sf", "-r", "100-199", &url])
        .output()
        .unwrap();
    assert_eq!(out.stdout, &expected[100..200]);

    // Two more objects push it over budget: the least recently used goes.
    for v in ["1.0", "3.0"] {
        let out = std::process::Command::new("curl")
            .args(["-sf", &format!("{}{}", cache.url, payload_path(v))])
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let stats: serde_json::Value = serde_json::from_slice(
        &std::process::Command::new("curl")
            .args(["-sf", &format!("{}/cache/stats", cache.url)])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(stats["bytes_cached"].as_u64().unwrap() <= budget, "{stats}");
    assert!(stats["evictions"].as_u64().unwrap() >= 1, "{stats}");
}
