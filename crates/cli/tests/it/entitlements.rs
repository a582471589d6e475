//! Issue 16's entitlements and cohorts on loopback: a real `ferry server`, simulated
//! devices asking for tickets through the HTTP API, and a real device scanning. A release
//! with a grant is signed only for the devices a grant selects (by the operator's tenant,
//! region and tags), a revoked grant stops tickets and offers at the next scan, the signed
//! decision says `not_entitled`, and a rollout's cohort selects by the same terms.

use crate::common::fleet::*;
use crate::common::*;
use serde_json::{Value, json};

fn entitlement_cli(data: &std::path::Path, args: &[&str]) -> Value {
    let mut all = vec!["entitlement"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--data", s(data), "--json"]);
    serde_json::from_str(&ok(&all)).unwrap()
}

/// `ferry entitlement grant` of release 2.0 of class vm to the devices `to` selects.
fn grant_2_0(data: &std::path::Path, to: &str) -> Value {
    entitlement_cli(
        data,
        &["grant", "--class", "vm", "--version", "2.0", "--to", to],
    )
}

fn entitlement_fails(data: &std::path::Path, args: &[&str]) -> String {
    let mut all = vec!["entitlement"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--data", s(data), "--json"]);
    let out = run(&all);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    json_error_code(&out)
}

fn tag(api: &Api, sim: &Sim, body: Value) {
    let (status, facts) = api.call_put(&format!("/v1/admin/devices/{}/tags", sim.id()), body);
    assert_eq!(status, 200, "{facts}");
}

#[test]
fn grants_sign_only_for_their_devices_and_a_revoked_grant_stops_tickets() {
    let tmp = tempfile::tempdir().unwrap();
    let f = sim_fleet(tmp.path(), 6);
    // Before any grant every device of the class may have every release.
    assert!(
        f.sims
            .iter()
            .all(|sim| code(&ask(&f.api, sim, &f.v2)) == "TICKET")
    );
    // Tenant and region by the admin API for three, by the CLI for two; one has none.
    for sim in &f.sims[..3] {
        tag(&f.api, sim, json!({"tenant": "acme", "region": "eu"}));
    }
    for sim in &f.sims[3..5] {
        let id = sim.id().to_string();
        let facts = entitlement_cli(
            &f.data,
            &["set-tags", &id, "--tenant", "acme", "--region", "us"],
        );
        assert_eq!(facts["region"], "us", "{facts}");
    }
    let eu = grant_2_0(&f.data, "region:eu,tenant:acme");
    assert_eq!(eu["selector"], "tenant:acme,region:eu");
    let codes = |v: &(String, String)| -> Vec<String> {
        f.sims
            .iter()
            .map(|sim| code(&ask(&f.api, sim, v)))
            .collect()
    };
    assert_eq!(
        codes(&f.v2),
        [
            "TICKET",
            "TICKET",
            "TICKET",
            "NOT_ENTITLED",
            "NOT_ENTITLED",
            "NOT_ENTITLED"
        ]
    );
    // The refusal carries its cause, fix and data; 1.0 has no grant and stays open.
    let refused = ask(&f.api, &f.sims[5], &f.v2);
    assert_eq!(refused.0, 422, "{}", refused.1);
    assert!(
        refused.1["fix"]
            .as_str()
            .unwrap()
            .contains("entitlement grant")
    );
    assert!(codes(&f.v1).iter().all(|c| c == "TICKET"));

    // A grant by the admin API to a programme (a tag), and the tag set by the CLI.
    let (status, beta) = f.api.admin(
        "/v1/admin/entitlements",
        Some(json!({"class": "vm", "version": "*", "to": "programme:beta"})),
    );
    assert_eq!(status, 200, "{beta}");
    let id5 = f.sims[5].id().to_string();
    entitlement_cli(&f.data, &["set-tags", &id5, "--tags", "beta,kiosk"]);
    assert_eq!(code(&ask(&f.api, &f.sims[5], &f.v2)), "TICKET");
    // `*` restricts 1.0 too now: only the beta device and nobody else.
    assert_eq!(
        codes(&f.v1),
        [
            "NOT_ENTITLED",
            "NOT_ENTITLED",
            "NOT_ENTITLED",
            "NOT_ENTITLED",
            "NOT_ENTITLED",
            "TICKET"
        ]
    );

    // Revoked: the eu devices are refused at once; the grant stays listed as revoked.
    let eu_id = eu["id"].as_i64().unwrap();
    let (status, revoked) = f.api.admin(
        &format!("/v1/admin/entitlements/{eu_id}/revoke"),
        Some(json!({})),
    );
    assert_eq!(status, 200, "{revoked}");
    assert!(revoked["revoked_ms"].is_i64());
    assert_eq!(
        codes(&f.v2),
        [
            "NOT_ENTITLED",
            "NOT_ENTITLED",
            "NOT_ENTITLED",
            "NOT_ENTITLED",
            "NOT_ENTITLED",
            "TICKET"
        ]
    );
    let listed = entitlement_cli(&f.data, &["list"]);
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    // The director's signed decision says so, without a rollout.
    let (status, signed) = f.api.call("/v1/decision", &f.sims[0].credential, None);
    assert_eq!(status, 200, "{signed}");
    let decision: Value = serde_json::from_str(signed["decision"].as_str().unwrap()).unwrap();
    let v2_decided = decision["releases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["version"] == "2.0")
        .unwrap()
        .clone();
    assert_eq!(v2_decided["state"], "not_entitled", "{decision}");
    assert_eq!(v2_decided["rollout_id"], Value::Null);
    // explain names the revoked grant.
    let explained: Value = serde_json::from_str(&ok(&[
        "rollout",
        "explain",
        &f.sims[0].id().to_string(),
        "--data",
        s(&f.data),
        "--json",
    ]))
    .unwrap();
    let line = explained
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["version"] == "2.0")
        .unwrap()
        .clone();
    assert_eq!(line["code"], "NOT_ENTITLED");
    assert!(
        line["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("entitlement {eu_id}")),
        "{line}"
    );

    // Failure cases, each with its code.
    let (status, again) = f.api.admin(
        &format!("/v1/admin/entitlements/{eu_id}/revoke"),
        Some(json!({})),
    );
    assert_eq!(
        (status, again["code"].as_str()),
        (409, Some("ROLLOUT_ENTITLEMENT_REVOKED"))
    );
    assert_eq!(
        entitlement_fails(&f.data, &["revoke", "999"]),
        "ROLLOUT_ENTITLEMENT_NOT_FOUND"
    );
    let (status, bad) = f.api.admin(
        "/v1/admin/entitlements",
        Some(json!({"class": "vm", "version": "2.0", "to": "colour:red"})),
    );
    assert_eq!(
        (status, bad["code"].as_str()),
        (400, Some("ROLLOUT_COHORT_INVALID"))
    );
    assert_eq!(
        entitlement_fails(
            &f.data,
            &["set-tags", "00000000000000ff", "--tenant", "acme"]
        ),
        "NOT_FOUND"
    );
    assert_eq!(
        entitlement_fails(&f.data, &["set-tags", &id5, "--tags", "no spaces"]),
        "ROLLOUT_INVALID"
    );
}

#[test]
fn a_cohort_selects_by_tags_region_and_tenant() {
    let tmp = tempfile::tempdir().unwrap();
    let f = sim_fleet(tmp.path(), 4);
    tag(
        &f.api,
        &f.sims[0],
        json!({"tenant": "acme", "region": "eu", "tags": ["beta"]}),
    );
    tag(
        &f.api,
        &f.sims[1],
        json!({"tenant": "acme", "region": "us", "tags": ["beta"]}),
    );
    tag(
        &f.api,
        &f.sims[2],
        json!({"tenant": "other", "region": "eu", "tags": ["beta"]}),
    );
    let created = create_rollout(&f.data, &["--cohort", "tag:beta,region:eu,tenant:acme"]);
    assert_eq!(
        created["cohort"], "tenant:acme,region:eu,tag:beta",
        "{created}"
    );
    let codes: Vec<String> = f
        .sims
        .iter()
        .map(|sim| code(&ask(&f.api, sim, &f.v2)))
        .collect();
    assert_eq!(
        codes,
        [
            "TICKET",
            "ROLLOUT_NOT_IN_COHORT",
            "ROLLOUT_NOT_IN_COHORT",
            "ROLLOUT_NOT_IN_COHORT"
        ]
    );
    let refused = ask(&f.api, &f.sims[3], &f.v2);
    assert_eq!(
        refused.1["data"]["cohort"],
        "tenant:acme,region:eu,tag:beta"
    );
    // Moving a device into the cohort lets it in at its next request.
    tag(&f.api, &f.sims[1], json!({"region": "eu"}));
    assert_eq!(code(&ask(&f.api, &f.sims[1], &f.v2)), "TICKET");
    // A cohort that does not parse is refused with its code.
    let out = run(&[
        "rollout",
        "create",
        "--class",
        "vm",
        "--version",
        "1.0",
        "--cohort",
        "size:large",
        "--data",
        s(&f.data),
        "--json",
    ]);
    assert!(!out.status.success());
    assert_eq!(json_error_code(&out), "ROLLOUT_COHORT_INVALID");
}

#[test]
fn a_real_device_stops_being_offered_a_release_at_the_scan_after_its_grant_is_revoked() {
    let f = fleet(1, |s| s.url());
    let data = f.server.data.clone();
    let device_id = identity_json(&f.device)["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(offered(&f.device), Ok(vec!["vm-2.0".to_owned()]));
    let beta = grant_2_0(&data, "tag:beta");
    // Not entitled: the offer is gone at the next scan and `ferry list` says why.
    assert_eq!(offered(&f.device), Ok(vec![]));
    let listed = ok(&["list", "--device", s(&f.device)]);
    assert!(
        listed.contains("Held back: 2.0 by the release's entitlements [NOT_ENTITLED]"),
        "{listed}"
    );
    let said = why(&f.device);
    assert_eq!(said.len(), 1, "{said:?}");
    assert_eq!(
        (said[0].0.as_str(), said[0].1.as_str()),
        ("2.0", "NOT_ENTITLED")
    );
    let words = ok(&["list", "--why", "--device", s(&f.device)]);
    assert!(
        words.contains("2.0: the device is not entitled to it [NOT_ENTITLED]"),
        "{words}"
    );
    entitlement_cli(&data, &["set-tags", &device_id, "--tags", "beta"]);
    assert_eq!(offered(&f.device), Ok(vec!["vm-2.0".to_owned()]));
    assert_eq!(why(&f.device)[0].1, "OFFERED");
    let id = beta["id"].as_i64().unwrap().to_string();
    entitlement_cli(&data, &["revoke", &id]);
    assert_eq!(offered(&f.device), Ok(vec![]));
}

#[test]
fn a_token_made_with_tags_gives_them_to_the_device_it_enrolls() {
    let f = fleet(1, |s| s.url());
    let data = &f.server.data;
    let refused = run(&[
        "server",
        "token",
        "--data",
        s(data),
        "--tags",
        "no spaces",
        "--json",
    ]);
    assert!(!refused.status.success());
    assert_eq!(json_error_code(&refused), "ROLLOUT_INVALID");
    let token = ok(&[
        "server",
        "token",
        "--data",
        s(data),
        "--tenant",
        "acme",
        "--region",
        "eu",
        "--tags",
        "line-3,beta",
    ]);
    let tagged = f.root.join("tagged");
    let (root, ca, url) = (root_file(data), f.server.ca(), f.server.url());
    let mut args = device_init_args(&tagged, &f.v1, "1.0", &url);
    args.extend_from_slice(&["--root", s(&root), "--ca", s(&ca)]);
    args.extend_from_slice(&["--enroll-token", token.trim()]);
    ok(&args);
    let id = identity_json(&tagged)["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let facts = entitlement_cli(data, &["tags", &id]);
    assert_eq!(facts["tenant"], "acme", "{facts}");
    assert_eq!(facts["region"], "eu", "{facts}");
    assert_eq!(facts["tags"], json!(["beta", "line-3"]), "{facts}");
    // The fleet's own device enrolled with a plain token: no tags.
    let plain = identity_json(&f.device)["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        entitlement_cli(data, &["tags", &plain])["tenant"],
        Value::Null
    );
}

#[test]
fn the_admin_api_makes_tokens_that_tag_the_devices_they_enroll() {
    let tmp = tempfile::tempdir().unwrap();
    let f = sim_fleet(tmp.path(), 0);
    let path = "/v1/admin/enrollment-tokens";
    let (status, refused) = f
        .api
        .admin(path, Some(json!({"device_tags": {"tags": ["a b"]}})));
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["code"], "ROLLOUT_INVALID", "{refused}");
    let (status, refused) = f
        .api
        .admin(path, Some(json!({"device_tags": {"tennant": "x"}})));
    assert_eq!(
        status, 400,
        "an unknown field is refused, not ignored: {refused}"
    );
    let body = json!({"device_tags": {"tenant": "acme", "region": "eu", "tags": ["line-3"]}});
    let (status, token) = f.api.admin(path, Some(body));
    assert_eq!(status, 200, "{token}");
    let identity = json!({
        "device_id": "00000000000a11ce",
        "board_id": "000000a1",
        "chip_id": "00008103",
        "hardware_uuid": "00000000-0000-4000-8000-000000000a11",
        "device_class": "vm",
    });
    let enroll = json!({ "token": token["token"], "identity": identity });
    let (status, enrolled) = f.api.call("/v1/enroll", "", Some(enroll));
    assert_eq!(status, 200, "{enrolled}");
    let (status, facts) = f.api.admin("/v1/admin/devices/00000000000a11ce/tags", None);
    assert_eq!(status, 200, "{facts}");
    assert_eq!(
        (&facts["tenant"], &facts["region"], &facts["tags"]),
        (&json!("acme"), &json!("eu"), &json!(["line-3"])),
        "{facts}"
    );
}
