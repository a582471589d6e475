//! Issue 16's deadlines, deferrals and emergency rollouts on loopback: a real `ferry
//! server`, simulated devices through the HTTP API, and a real device that defers. A
//! deferral is recorded within the rollout's maximum and never past its deadline, the
//! signed decision says `deferred` until then with the deadline, an emergency rollout opens
//! every wave at once and refuses deferrals but is still halted.

use crate::common::fleet::*;
use crate::common::*;
use serde_json::{Value, json};

fn defer(api: &Api, sim: &Sim, version: &str, for_: &str) -> (u16, Value) {
    api.call(
        "/v1/deferrals",
        &sim.credential,
        Some(json!({ "version": version, "for": for_ })),
    )
}

fn decided(api: &Api, sim: &Sim, version: &str) -> Value {
    let (status, signed) = api.call("/v1/decision", &sim.credential, None);
    assert_eq!(status, 200, "{signed}");
    let decision: Value = serde_json::from_str(signed["decision"].as_str().unwrap()).unwrap();
    decision["releases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["version"] == version)
        .cloned()
        .unwrap_or(Value::Null)
}

/// `ferry defer 2.0` on a real device: for 4 h it is recorded; for 3 d (past the rollout's
/// maximum of 1 d) the agent reports the server's refusal with the server's code in it.
fn defer_4h_then_3d_refused(device: &std::path::Path) {
    let out = ok(&["defer", "2.0", "--for", "4h", "--device", s(device)]);
    assert!(out.contains("Deferred 2.0 until"), "{out}");
    let out = run(&[
        "defer",
        "2.0",
        "--for",
        "3d",
        "--device",
        s(device),
        "--json",
    ]);
    assert_eq!(json_error_code(&out), "SERVER_REFUSED");
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(said.contains("DEFERRAL_TOO_LONG"), "{said}");
}

/// `list --why` names the deferral as what holds the offer back.
fn why_says_deferred(device: &std::path::Path) {
    let said = why(device);
    assert_eq!(said[0].1, "ROLLOUT_DEFERRED", "{said:?}");
    assert!(
        said[0].2.starts_with("deferred on this device until"),
        "{said:?}"
    );
}

fn time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    serde_json::from_value(v.clone()).unwrap()
}

#[test]
fn deferrals_stay_within_the_maximum_and_the_deadline_and_the_decision_carries_them() {
    let tmp = tempfile::tempdir().unwrap();
    let f = sim_fleet(tmp.path(), 3);
    // A deadline in the past is refused.
    assert_eq!(
        refused_rollout(&f.data, &["--deadline", "2020-01-01T00:00:00Z"]),
        "ROLLOUT_INVALID"
    );
    let created = create_rollout(&f.data, &["--deadline", "1d", "--max-deferral", "2h"]);
    let deadline = created["deadline_ms"].as_i64().unwrap();
    let in_a_day = chrono::Utc::now().timestamp_millis() + 86_400_000;
    assert!((deadline - in_a_day).abs() < 60_000, "{created}");
    assert_eq!(created["max_deferral_ms"], 7_200_000);

    // Open, with the deadline and how far it may be deferred.
    let before = decided(&f.api, &f.sims[0], "2.0");
    assert_eq!(before["state"], "open", "{before}");
    assert_eq!(time(&before["deadline"]).timestamp_millis(), deadline);
    assert!(before["defer_latest"].is_string(), "{before}");

    let (status, deferred) = defer(&f.api, &f.sims[0], "2.0", "1h");
    assert_eq!(status, 200, "{deferred}");
    let until = time(&deferred["until"]);
    let wait = until - chrono::Utc::now();
    assert!(wait > chrono::Duration::minutes(59) && wait <= chrono::Duration::hours(1));
    let after = decided(&f.api, &f.sims[0], "2.0");
    assert_eq!(after["state"], "deferred", "{after}");
    assert_eq!(time(&after["deferred_until"]), until);
    // The others are not deferred; the deferral is the device's choice, so a ticket is
    // still signed if it asks (a user's `ferry install`).
    assert_eq!(decided(&f.api, &f.sims[1], "2.0")["state"], "open");
    assert_eq!(code(&ask(&f.api, &f.sims[0], &f.v2)), "TICKET");

    // Beyond the maximum (2 h after the first deferral): refused with the latest allowed.
    let (status, refused) = defer(&f.api, &f.sims[0], "2.0", "3h");
    assert_eq!(
        (status, refused["code"].as_str()),
        (422, Some("DEFERRAL_TOO_LONG")),
        "{refused}"
    );
    assert!(refused["fix"].as_str().unwrap().contains("at the latest"));
    // A second deferral within it replaces the first.
    let (status, again) = defer(&f.api, &f.sims[0], "2.0", "90m");
    assert_eq!(status, 200, "{again}");
    assert!(time(&again["until"]) > until);
    // No rollout, or not a time: refused with their codes.
    let (_, none) = defer(&f.api, &f.sims[1], "1.0", "1h");
    assert_eq!(none["code"], "DEFERRAL_NO_ROLLOUT", "{none}");
    let (_, bad) = defer(&f.api, &f.sims[1], "2.0", "soon");
    assert_eq!(bad["code"], "DEFERRAL_INVALID", "{bad}");
    // Not without a credential.
    let (status, _) = f.api.call(
        "/v1/deferrals",
        "",
        Some(json!({"version": "2.0", "for": "1h"})),
    );
    assert_eq!(status, 401);
}

#[test]
fn an_emergency_rollout_skips_the_waves_refuses_deferrals_and_still_halts() {
    let tmp = tempfile::tempdir().unwrap();
    let f = sim_fleet(tmp.path(), 20);
    create_rollout(&f.data, &["--waves", "1%@0,100%@7d", "--emergency"]);
    // Every device, whatever its wave, may take it now.
    for sim in &f.sims {
        assert_eq!(code(&ask(&f.api, sim, &f.v2)), "TICKET");
    }
    let release = decided(&f.api, &f.sims[0], "2.0");
    assert_eq!(
        (release["state"].as_str(), &release["emergency"]),
        (Some("open"), &json!(true))
    );
    let (status, refused) = defer(&f.api, &f.sims[0], "2.0", "1h");
    assert_eq!(
        (status, refused["code"].as_str()),
        (422, Some("DEFERRAL_EMERGENCY"))
    );
    // Still halted by an operator (and by the halt rule, which counts it like any other).
    rollout_cli(&f.data, &["halt", "1"]);
    assert_eq!(code(&ask(&f.api, &f.sims[3], &f.v2)), "ROLLOUT_HALTED");
    assert_eq!(decided(&f.api, &f.sims[3], "2.0")["state"], "halted");
}

#[test]
fn a_real_device_defers_and_ferry_list_shows_the_deadline_and_the_deferral() {
    let f = fleet(1, |s| s.url());
    let data = f.server.data.clone();
    create_rollout(&data, &["--deadline", "2d", "--max-deferral", "1d"]);
    assert_eq!(offered(&f.device), Ok(vec!["vm-2.0".to_owned()]));
    defer_4h_then_3d_refused(&f.device);
    // Still offered (a user may install it), but the agent waits: why_not_now says so.
    let listed: Vec<Value> =
        serde_json::from_str(&ok(&["list", "--json", "--device", s(&f.device)])).unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        listed[0]["why_not_now"]["code"], "ROLLOUT_DEFERRED",
        "{listed:?}"
    );
    why_says_deferred(&f.device);
    let words = ok(&["list", "--device", s(&f.device)]);
    for line in [
        "Deadline: 2.0 installs at the first allowed moment after",
        "Deferral: 2.0 may be deferred until",
        "Deferred: 2.0 until",
    ] {
        assert!(words.contains(line), "{line} missing:\n{words}");
    }
}

#[test]
fn with_the_agent_running_ferry_defer_and_list_why_go_through_it() {
    let f = fleet(1, |s| s.url());
    let data = f.server.data.clone();
    let device = &f.device;
    create_rollout(&data, &["--deadline", "2d", "--max-deferral", "1d"]);
    set_policy(device, "[policy]\nauto_download = false\n");
    let agent = Agent::start(device);
    assert_eq!(why(device)[0].1, "OFFERED");
    // The agent holds the device lock: both commands go through its local API.
    defer_4h_then_3d_refused(device);
    why_says_deferred(device);
    // The agent's own decision follows the new signed decision (it scanned after the
    // deferral), and it is the same agent that ran throughout.
    let held = || status(device)["agent"]["offers"][0]["why_not_now"]["code"] == "ROLLOUT_DEFERRED";
    assert!(wait_for(30, held), "{}", status(device));
    assert_eq!(
        status(device)["agent"]["pid"].as_u64(),
        Some(u64::from(agent.child.id()))
    );
    // The human output, through the agent too.
    let words = ok(&["list", "--why", "--device", s(device)]);
    assert!(
        words.contains("2.0: deferred on this device until"),
        "{words}"
    );
}
