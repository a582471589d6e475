//! Issue 16 on loopback: a real `ferry server` (two of them on one database for the
//! halt-once test) and many simulated devices enrolled through the HTTP API, asking for
//! tickets and delivering event reports directly (not one process per device). Waves sign
//! only for their devices; failures that blame the release halt the rollout before the
//! second wave while environment failures do not; nobody gets a ticket while it is halted;
//! resume continues the waves; health checks failing in the post-commit watch halt the
//! rollout before its second wave; two servers on one database halt once; the demo shows a
//! two-wave rollout.

use crate::common::fleet::*;
use crate::common::*;
use ferry_events::EventKind;
use serde_json::{Value, json};

#[test]
fn waves_sign_only_for_their_devices_a_failing_first_wave_halts_and_resume_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let f = sim_fleet(tmp.path(), 120);

    // Bad specs are refused with their code, by the CLI and by the admin endpoint.
    assert_eq!(
        refused_rollout(&f.data, &["--waves", "10%@0,50%@1h"]),
        "ROLLOUT_WAVES_INVALID"
    );
    let (status, refused) = f.api.admin(
        "/v1/admin/rollouts",
        Some(json!({ "class": "vm", "version": "2.0", "threshold": 1.5 })),
    );
    assert_eq!(
        (status, refused["code"].as_str()),
        (400, Some("ROLLOUT_INVALID")),
        "{refused}"
    );

    let rollout = create_rollout(
        &f.data,
        &[
            "--waves",
            "10%@0,100%@30s",
            "--threshold",
            "0.2",
            "--min-attempts",
            "3",
        ],
    );
    let id = rollout["id"].as_i64().unwrap();
    assert_eq!(rollout["state"], "running");
    assert_eq!(rollout["waves"], "10%@0,100%@30s");
    let (status, again) = f.api.admin(
        "/v1/admin/rollouts",
        Some(json!({ "class": "vm", "version": "2.0" })),
    );
    assert_eq!(
        (status, again["code"].as_str()),
        (409, Some("ROLLOUT_EXISTS"))
    );

    // Each device's wave is fixed by the hash of the rollout and its id.
    let first_wave = |sim: &Sim| ferry_server::rollouts::place(id, &sim.id()) < 1000;
    let (wave0, wave1): (Vec<&Sim>, Vec<&Sim>) = f.sims.iter().partition(|s| first_wave(s));
    assert!(
        wave0.len() >= 4 && wave1.len() >= 80,
        "{} / {}",
        wave0.len(),
        wave1.len()
    );

    // Only the first wave gets tickets for 2.0; the others are told when their wave opens.
    for sim in &wave0 {
        assert_eq!(code(&ask(&f.api, sim, &f.v2)), "TICKET");
    }
    for sim in &wave1 {
        let answer = ask(&f.api, sim, &f.v2);
        assert_eq!(code(&answer), "ROLLOUT_NOT_YET", "{answer:?}");
        assert_eq!(answer.0, 422);
        assert_eq!(answer.1["data"]["wave"], 1);
        assert_eq!(answer.1["data"]["rollout_id"], id);
        let opens: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(answer.1["data"]["opens_at"].clone()).unwrap();
        let wait = opens - chrono::Utc::now();
        assert!(wait > chrono::Duration::seconds(5) && wait <= chrono::Duration::seconds(30));
    }
    // A release without a rollout is not held back.
    assert_eq!(code(&ask(&f.api, wave1[0], &f.v1)), "TICKET");
    let explained = rollout_cli(&f.data, &["explain", &wave1[0].id().to_string()]);
    assert_eq!(explained[0]["code"], "ROLLOUT_NOT_YET", "{explained}");
    let said = walk_through(&f.data, &["explain", &wave1[0].id().to_string()]);
    assert!(said.contains("ROLLOUT_NOT_YET"), "{said}");
    assert_eq!(explained[0]["wave"], 1);

    // Three first-wave devices go on with the install. An environment failure does not
    // count, one failure blaming the release of three does not halt (Wilson lower bound
    // 0.06), a second (a rollback after the reboot) does: 2 of 3, lower bound 0.208 > 0.2.
    let (a, b, c) = (wave0[0], wave0[1], wave0[2]);
    for sim in [a, b, c] {
        deliver(
            &f.api,
            sim,
            vec![report(sim, EventKind::Personalized, None)],
        );
    }
    deliver(
        &f.api,
        a,
        vec![report(a, EventKind::Failed, Some("BATTERY_LOW"))],
    );
    deliver(
        &f.api,
        b,
        vec![report(b, EventKind::Failed, Some("SEAL_MISMATCH"))],
    );
    let shown = rollout_cli(&f.data, &["show", &id.to_string()]);
    assert_eq!(shown["state"], "running", "{shown}");
    assert_eq!(shown["wave_counts"][0]["attempts"], 3);
    assert_eq!(shown["wave_counts"][0]["failures"], 1);
    let said = walk_through(&f.data, &["show", &id.to_string()]);
    assert!(said.contains("vm 2.0 running"), "{said}");
    // /metrics (promtool-checked): the wave open, its devices offered, the counts.
    assert_rollout_metrics(
        &metrics(&f.api),
        id,
        &[
            ("halted", 0),
            ("open_waves", 1),
            ("offered", wave0.len() as u64),
            ("attempted", 3),
            ("failed", 1),
            ("rolled_back", 0),
            ("silent", 0),
            ("installed", 0),
        ],
    );
    // The figure (README): from sending the report that crosses the threshold to the halt
    // visible to devices: a ticket refused, the signed decision saying halted.
    let crossing = std::time::Instant::now();
    deliver(
        &f.api,
        c,
        vec![report(
            c,
            EventKind::RolledBack,
            Some("BOOT_TRIES_EXHAUSTED"),
        )],
    );
    let stored = crossing.elapsed();
    assert_eq!(code(&ask(&f.api, a, &f.v2)), "ROLLOUT_HALTED");
    let refused = crossing.elapsed();
    let (status, signed) = f.api.call("/v1/decision", &a.credential, None);
    assert_eq!(status, 200, "{signed}");
    let decision: Value = serde_json::from_str(signed["decision"].as_str().unwrap()).unwrap();
    assert_eq!(decision["releases"][0]["state"], "halted", "{decision}");
    let decided = crossing.elapsed();
    println!(
        "figure: crossing report stored (and the rollout halted) {:.1} ms after it was sent; \
         the next ticket refused ROLLOUT_HALTED at {:.1} ms; the next signed decision says \
         halted at {:.1} ms",
        stored.as_secs_f64() * 1e3,
        refused.as_secs_f64() * 1e3,
        decided.as_secs_f64() * 1e3
    );

    let shown = rollout_cli(&f.data, &["show", &id.to_string()]);
    assert_eq!(shown["state"], "halted", "{shown}");
    let halt = &shown["changes"][0];
    assert_eq!(
        (
            &halt["action"],
            &halt["by"],
            &halt["wave"],
            &halt["attempts"],
            &halt["failures"]
        ),
        (
            &json!("halt"),
            &json!("halt-rule"),
            &json!(0),
            &json!(3),
            &json!(2)
        ),
        "{shown}"
    );
    assert!((halt["lower_bound"].as_f64().unwrap() - 0.2077).abs() < 1e-3);
    assert_rollout_metrics(
        &metrics(&f.api),
        id,
        &[
            ("halted", 1),
            ("offered", 0),
            ("attempted", 3),
            ("failed", 1),
            ("rolled_back", 1),
        ],
    );
    assert_eq!(
        shown["wave_counts"][0]["by_kind"],
        json!({"failed": 1, "rolled_back": 1})
    );

    // Halted: nobody gets a ticket for 2.0, the first wave included, at their next request.
    for sim in &f.sims {
        assert_eq!(code(&ask(&f.api, sim, &f.v2)), "ROLLOUT_HALTED");
    }
    let explained = rollout_cli(&f.data, &["explain", &a.id().to_string()]);
    assert_eq!(explained[0]["code"], "ROLLOUT_HALTED");
    let said = walk_through(&f.data, &["show", &id.to_string()]);
    assert!(
        said.contains("by halt-rule: wave 0: 2 of 3 attempts failed"),
        "{said}"
    );
    // The halt cannot be halted again; a pause of a halted rollout is refused too.
    let (status, refused) = f
        .api
        .admin(&format!("/v1/admin/rollouts/{id}/pause"), Some(json!({})));
    assert_eq!(
        (status, refused["code"].as_str()),
        (409, Some("ROLLOUT_WRONG_STATE"))
    );

    // Resume (over HTTP): counting starts afresh, the first wave signs again, the second
    // still waits (time halted does not count), then opens on schedule.
    let (status, resumed) = f
        .api
        .admin(&format!("/v1/admin/rollouts/{id}/resume"), Some(json!({})));
    assert_eq!(
        (status, &resumed["state"]),
        (200, &json!("running")),
        "{resumed}"
    );
    assert_eq!(resumed["epoch"], 1);
    let (_, shown) = f.api.admin(&format!("/v1/admin/rollouts/{id}"), None);
    assert_eq!(shown["wave_counts"][0]["attempts"], 0, "{shown}");
    assert_eq!(code(&ask(&f.api, a, &f.v2)), "TICKET");
    assert_eq!(code(&ask(&f.api, wave1[0], &f.v2)), "ROLLOUT_NOT_YET");

    // Pause holds everyone; resume continues.
    rollout_cli(&f.data, &["pause", &id.to_string()]);
    assert_eq!(code(&ask(&f.api, a, &f.v2)), "ROLLOUT_PAUSED");
    rollout_cli(&f.data, &["resume", &id.to_string()]);

    // The second wave opens when the refusal said it would (time paused not counted).
    let answer = ask(&f.api, wave1[0], &f.v2);
    assert_eq!(code(&answer), "ROLLOUT_NOT_YET", "{answer:?}");
    let opens: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(answer.1["data"]["opens_at"].clone()).unwrap();
    let wait = (opens - chrono::Utc::now()).to_std().unwrap_or_default();
    assert!(wait <= std::time::Duration::from_secs(30), "{wait:?}");
    std::thread::sleep(wait + std::time::Duration::from_millis(300));
    assert_eq!(code(&ask(&f.api, wave1[0], &f.v2)), "TICKET");
    for sim in wave1.iter().take(10) {
        assert_eq!(code(&ask(&f.api, sim, &f.v2)), "TICKET");
    }
    let explained = rollout_cli(&f.data, &["explain", &wave1[1].id().to_string()]);
    assert_eq!(explained[0]["code"], "OPEN", "{explained}");
    let said = walk_through(&f.data, &["show", &id.to_string()]);
    assert!(said.contains("resume by operator"), "{said}");
    // Open waves show when they opened (wave 0 at the start, wave 1 when the refusal said,
    // the halt's time not counted), not the time of asking.
    let shown = rollout_cli(&f.data, &["show", &id.to_string()]);
    let at = |w: usize| -> chrono::DateTime<chrono::Utc> {
        serde_json::from_value(shown["wave_counts"][w]["opens_at"].clone()).unwrap()
    };
    assert_eq!(
        at(0).timestamp_millis(),
        shown["started_ms"].as_i64().unwrap()
    );
    assert!(
        (at(1) - opens).num_milliseconds().abs() < 1000,
        "{} vs {opens}",
        at(1)
    );
    let list = rollout_cli(&f.data, &["list"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[test]
fn two_servers_on_one_database_halt_the_rollout_once() {
    let tmp = tempfile::tempdir().unwrap();
    let first = server_with_releases(tmp.path());
    let second = Server::start(&first.data);
    let (api1, api2) = (Api::new(&first), Api::new(&second));
    let sims = enroll(&api1, 24);
    let (status, rollout) = api2.admin(
        "/v1/admin/rollouts",
        Some(json!({ "class": "vm", "version": "2.0", "min_attempts": 4, "threshold": 0.1 })),
    );
    assert_eq!(status, 200, "{rollout}");
    let id = rollout["id"].as_i64().unwrap();

    // Every device fails with a code blaming the release, half through each server, both
    // at once: the rule crosses its threshold many times over, on both servers.
    let halves: Vec<&[Sim]> = sims.chunks(12).collect();
    std::thread::scope(|scope| {
        for (half, server) in halves.iter().zip([&first, &second]) {
            scope.spawn(move || {
                let api = Api::new(server);
                for sim in half.iter() {
                    deliver(
                        &api,
                        sim,
                        vec![
                            report(sim, EventKind::Personalized, None),
                            report(sim, EventKind::Failed, Some("SEAL_MISMATCH")),
                        ],
                    );
                }
            });
        }
    });
    let (_, shown) = api1.admin(&format!("/v1/admin/rollouts/{id}"), None);
    assert_eq!(shown["state"], "halted", "{shown}");
    let halts: Vec<&Value> = shown["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["action"] == "halt")
        .collect();
    assert_eq!(halts.len(), 1, "halted exactly once: {shown}");
    assert_eq!(shown["wave_counts"][0]["attempts"], 24);
    assert_eq!(shown["wave_counts"][0]["failures"], 24);
    let v2 = published(&api2, "2.0");
    assert_eq!(code(&ask(&api2, &sims[0], &v2)), "ROLLOUT_HALTED");
}

#[test]
fn a_device_silent_mid_update_counts_against_its_rollout() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("server");
    let (v1, v2) = (tmp.path().join("v1.img"), tmp.path().join("v2.img"));
    make_image(&v1, 1, 1);
    make_image(&v2, 2, 1);
    publish(&data, &v1, "1.0");
    publish(&data, &v2, "2.0");
    let server = Server::start_with(&data, &["--silent-after", "1"]);
    let api = Api::new(&server);
    let sims = enroll(&api, 3);
    create_rollout(&data, &["--min-attempts", "2"]);
    // Two devices start the update and go quiet: silent after 1 s, each a failure; 2 of 2
    // is a lower bound of 0.34 > 0.2.
    for sim in &sims[..2] {
        deliver(&api, sim, vec![report(sim, EventKind::Personalized, None)]);
    }
    assert!(
        wait_for(30, || rollout_cli(&data, &["show", "1"])["state"]
            == "halted"),
        "silent devices halt the rollout"
    );
    let shown = rollout_cli(&data, &["show", "1"]);
    assert_eq!(
        shown["wave_counts"][0]["by_kind"],
        json!({"silent": 2}),
        "{shown}"
    );
    let v2 = published(&api, "2.0");
    assert_eq!(code(&ask(&api, &sims[2], &v2)), "ROLLOUT_HALTED");
}

/// A health check failing in the post-commit watch, as the daemon reports it.
fn unhealthy(sim: &Sim) -> ferry_events::EventReport {
    let mut r = report(sim, EventKind::HealthFailed, Some("HEALTH_WATCH_FAILED"));
    r.result = ferry_events::EventResult::Failure;
    r.current_os_version = "2.0".parse().ok();
    if let Some(e) = r.error.as_mut() {
        (e.machine, e.state) = (Some("health_watch".into()), Some("WATCHING".into()));
    }
    r
}

#[test]
fn post_commit_health_failures_on_the_first_wave_halt_the_rollout_before_the_second() {
    let tmp = tempfile::tempdir().unwrap();
    let server = server_with_releases(tmp.path());
    let data = server.data.clone();
    let api = Api::new(&server);
    let sims = enroll(&api, 200);
    let v2 = published(&api, "2.0");
    let rollout = create_rollout(
        &data,
        &[
            "--waves",
            "5%@0,100%@1h",
            "--threshold",
            "0.2",
            "--min-attempts",
            "3",
        ],
    );
    let id = rollout["id"].as_i64().unwrap();
    let first_wave = |sim: &Sim| ferry_server::rollouts::place(id, &sim.id()) < 500;
    let (wave0, wave1): (Vec<&Sim>, Vec<&Sim>) = sims.iter().partition(|s| first_wave(s));
    assert!(wave0.len() >= 4, "{}", wave0.len());
    for sim in &wave1 {
        assert_eq!(code(&ask(&api, sim, &v2)), "ROLLOUT_NOT_YET");
    }
    // Every first-wave device installs and commits 2.0: no failure, no halt.
    for sim in &wave0 {
        assert_eq!(code(&ask(&api, sim, &v2)), "TICKET");
        deliver(
            &api,
            sim,
            vec![
                report(sim, EventKind::Personalized, None),
                report(sim, EventKind::Installed, None),
                report(sim, EventKind::Committed, None),
            ],
        );
    }
    let shown = rollout_cli(&data, &["show", &id.to_string()]);
    assert_eq!(shown["state"], "running", "{shown}");
    assert_eq!(shown["wave_counts"][0]["failures"], 0);
    // Then the watch finds them unwell: each such report is a failure of wave 0, and the
    // rollout halts as soon as the Wilson lower bound crosses 0.2.
    let mut sent = 0;
    for sim in &wave0 {
        deliver(&api, sim, vec![unhealthy(sim)]);
        sent += 1;
        if rollout_cli(&data, &["show", &id.to_string()])["state"] == "halted" {
            break;
        }
    }
    let shown = rollout_cli(&data, &["show", &id.to_string()]);
    assert_eq!(shown["state"], "halted", "{shown}");
    assert_eq!(
        shown["wave_counts"][0]["by_kind"],
        json!({ "health": sent }),
        "{shown}"
    );
    let halt = &shown["changes"][0];
    assert_eq!(
        (&halt["by"], &halt["wave"]),
        (&json!("halt-rule"), &json!(0))
    );
    assert!(
        halt["reason"].as_str().unwrap().contains("health"),
        "{halt}"
    );
    let said = walk_through(&data, &["show", &id.to_string()]);
    assert!(said.contains("health"), "{said}");
    assert_rollout_metrics(
        &metrics(&api),
        id,
        &[
            ("halted", 1),
            ("health", sent),
            ("failed", 0),
            ("rolled_back", 0),
        ],
    );
    // Before the second wave: nobody outside the first wave gets the release.
    for sim in &wave1 {
        assert_eq!(code(&ask(&api, sim, &v2)), "ROLLOUT_HALTED");
    }
    let explained = rollout_cli(&data, &["explain", &wave1[0].id().to_string()]);
    assert_eq!(explained[0]["code"], "ROLLOUT_HALTED", "{explained}");
    // A health report that blames the environment (an unknown code) counts for nothing.
    let (status, resumed) = api.admin(&format!("/v1/admin/rollouts/{id}/resume"), Some(json!({})));
    assert_eq!(status, 200, "{resumed}");
    let sim = wave0[0];
    assert_eq!(code(&ask(&api, sim, &v2)), "TICKET");
    let mut odd = unhealthy(sim);
    odd.error.as_mut().unwrap().code = "SOME_NEWER_CODE".into();
    deliver(
        &api,
        sim,
        vec![report(sim, EventKind::Personalized, None), odd],
    );
    let shown = rollout_cli(&data, &["show", &id.to_string()]);
    assert_eq!(shown["wave_counts"][0]["failures"], 0, "{shown}");
}

#[test]
fn a_real_device_follows_the_signed_decision_at_its_next_scan_and_refuses_forged_ones() {
    let mut f = fleet(1, |s| s.url());
    let data = f.server.data.clone();
    assert_eq!(offered(&f.device), Ok(vec!["vm-2.0".to_owned()]));
    create_rollout(&data, &[]);
    assert_eq!(offered(&f.device), Ok(vec!["vm-2.0".to_owned()]));
    // Halted: gone at the next scan, and the verified decision on disk says why.
    rollout_cli(&data, &["halt", "1"]);
    assert_eq!(offered(&f.device), Ok(vec![]));
    let stored: Value =
        serde_json::from_slice(&std::fs::read(f.device.join("trust/decision.json")).unwrap())
            .unwrap();
    let decision: Value = serde_json::from_str(stored["decision"].as_str().unwrap()).unwrap();
    assert_eq!(decision["releases"][0]["state"], "halted", "{decision}");
    assert_eq!(decision["releases"][0]["target"], "vm-2.0.payload.zst");
    // `ferry list` says why in words.
    let listed = ok(&["list", "--device", s(&f.device)]);
    assert!(
        listed.contains("Held back: 2.0 by rollout 1 [ROLLOUT_HALTED]"),
        "{listed}"
    );
    let said = why(&f.device);
    assert_eq!(
        (said[0].1.as_str(), said[0].2.as_str()),
        ("ROLLOUT_HALTED", "rollout 1 is halted"),
        "{said:?}"
    );
    rollout_cli(&data, &["resume", "1"]);
    assert_eq!(offered(&f.device), Ok(vec!["vm-2.0".to_owned()]));

    // Whoever holds the server and its online keys names 2.0 with another image hash: the
    // decision is validly signed, but the offline-signed catalog disagrees.
    let hash: String = {
        let out = std::process::Command::new("sqlite3")
            .arg(data.join("ferry.db"))
            .arg("SELECT payload_sha256 FROM releases WHERE version = '2.0'")
            .output()
            .expect("sqlite3 runs");
        text(&out.stdout).trim().to_owned()
    };
    sqlite(
        &data,
        &format!(
            "UPDATE releases SET payload_sha256 = '{}' WHERE version = '2.0'",
            "ab".repeat(32)
        ),
    );
    assert_eq!(
        offered(&f.device),
        Err("DECISION_TARGET_MISMATCH".to_owned())
    );
    sqlite(
        &data,
        &format!("UPDATE releases SET payload_sha256 = '{hash}' WHERE version = '2.0'"),
    );
    assert_eq!(offered(&f.device), Ok(vec!["vm-2.0".to_owned()]));

    // A director key the catalog does not publish (swapped in on the server): refused.
    let dir = data.join("keys-online/director");
    let key_file = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "pk8"))
        .unwrap();
    std::fs::write(&key_file, ferry_personalize::Signer::generate().to_pkcs8()).unwrap();
    f.restart_server();
    assert_eq!(
        offered(&f.device),
        Err("DECISION_KEY_NOT_TRUSTED".to_owned())
    );
}

#[test]
fn the_demo_shows_a_two_wave_rollout_with_its_device_in_the_first_wave() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = ok(&["demo", "--dir", s(&dir), "--image-mib", "8"]);
    // Created with two waves, the device's wave open before the scan...
    let created = out
        .lines()
        .find(|l| l.starts_with("rollout 1: demo-vm 2.0 running (waves "))
        .unwrap_or_else(|| panic!("no rollout created: {out}"));
    assert!(created.contains("%@0,100%@1h"), "{created}");
    assert!(
        out.contains("rollout 1 (2.0): OPEN — wave 0 is open"),
        "{out}"
    );
    // ...the update installed, and counted in the first wave while the second waits.
    let wave = |n: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{n}     ")))
            .unwrap_or_else(|| panic!("no wave {n} row: {out}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    let (first, second) = (wave("0"), wave("1"));
    assert_eq!((first[2], first[5], first[6]), ("yes", "1", "0"), "{out}");
    assert_eq!(
        (second[1], second[2], second[5]),
        ("100%", "no", "0"),
        "{out}"
    );
    assert!(out.contains("== demo passed"), "{out}");
    // The rollout is in the demo's server database, as `ferry rollout show` reads it.
    let shown = rollout_cli(&dir.join("server"), &["show", "1"]);
    assert_eq!(shown["wave_counts"][0]["attempts"], 1, "{shown}");
}

/// The key that signed the device's stored (verified) decision.
fn decision_key(device: &std::path::Path) -> String {
    let stored: Value =
        serde_json::from_slice(&std::fs::read(device.join("trust/decision.json")).unwrap())
            .unwrap();
    stored["key_id"].as_str().unwrap().to_owned()
}

#[test]
fn the_director_key_rotates_through_the_catalog_and_the_old_key_is_refused_after() {
    let mut f = fleet(1, |s| s.url());
    let data = f.server.data.clone();
    create_rollout(&data, &[]);
    assert_eq!(offered(&f.device), Ok(vec!["vm-2.0".to_owned()]));
    let old = decision_key(&f.device);
    let keys_dir = offline_keys(&data);
    let key_cli = |action: &str| -> Value {
        serde_json::from_str(&ok(&[
            "server",
            "director-key",
            action,
            "--data",
            s(&data),
            "--keys",
            s(&keys_dir),
            "--json",
        ]))
        .unwrap()
    };
    assert_eq!(key_cli("list")["current"], old.as_str());
    let old_pk8 = std::fs::read(data.join(format!("keys-online/director/{old}.pk8"))).unwrap();

    // Rotated with the offline targets key while the server runs: the set lists only the
    // new key, the server signs with it within a second or two, and the device takes the
    // new set from the catalog at its next scan and accepts the new key's decisions.
    let rotated = key_cli("rotate");
    let new = rotated["current"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(rotated["keys"], json!([new]), "{rotated}");
    assert!(
        wait_for(15, || offered(&f.device) == Ok(vec!["vm-2.0".to_owned()])
            && decision_key(&f.device) == new),
        "the device never accepted a decision by the new key"
    );
    let keys: Value =
        serde_json::from_slice(&std::fs::read(f.device.join("trust/director-keys.json")).unwrap())
            .unwrap();
    assert!(!keys.to_string().contains(&old), "{keys}");

    // The old key (a copy someone kept) signing again after the rotation: refused.
    std::fs::write(
        data.join(format!("keys-online/director/{new}.pk8")),
        &old_pk8,
    )
    .unwrap();
    f.restart_server();
    assert_eq!(
        offered(&f.device),
        Err("DECISION_KEY_NOT_TRUSTED".to_owned())
    );
}
