//! Issue 17, over plain HTTPS (no browser): the dashboard behind its sign-in. Every page
//! and action without a session goes to the sign-in page (pages) or answers 401 (actions,
//! the event stream, charts); a forged form without the session's CSRF token is refused;
//! a viewer is refused the operator's actions; an operator's halt stops the tickets; the
//! event stream pushes a report within a second of its delivery; the pages show the
//! fleet, the rollout, the device and the failures.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::common::sim::*;
use crate::common::web::{csrf, percent_encode};
use crate::common::*;
use ferry_events::EventKind;
use futures_util::StreamExt;

/// A response as the tests look at it.
struct Answer {
    status: u16,
    location: Option<String>,
    /// Every `Set-Cookie`.
    set_cookie: Vec<String>,
    body: String,
}

impl Answer {
    /// The `Set-Cookie` of cookie `name`, if one was set.
    fn cookie(&self, name: &str) -> Option<&str> {
        self.set_cookie
            .iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(String::as_str)
    }
}

async fn answer(r: reqwest::Response) -> Answer {
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let location = header("location");
    let set_cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    Answer {
        status: r.status().as_u16(),
        location,
        set_cookie,
        body: r.text().await.unwrap_or_default(),
    }
}

fn get(api: &Api, path: &str, cookie: Option<&str>) -> Answer {
    api.runtime.block_on(async {
        let mut request = api
            .client
            .get(format!("{}{path}", api.base))
            .header("accept", "text/html");
        if let Some(c) = cookie {
            request = request.header("cookie", c);
        }
        answer(request.send().await.unwrap()).await
    })
}

fn post(api: &Api, path: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Answer {
    api.runtime.block_on(async {
        let body: String = form
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut request = api
            .client
            .post(format!("{}{path}", api.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(c) = cookie {
            request = request.header("cookie", c);
        }
        answer(request.send().await.unwrap()).await
    })
}

/// The sign-in page's pre-session cookie (as a `Cookie` header value) and the token its
/// form carries.
fn login_form(api: &Api) -> (String, String) {
    let page = get(api, "/dashboard/login", None);
    assert_eq!(page.status, 200);
    let set = page
        .cookie("__Host-ferry_login")
        .expect("a sign-in form cookie");
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attribute), "{set} lacks {attribute}");
    }
    (set.split(';').next().unwrap().to_owned(), csrf(&page.body))
}

/// Posts the sign-in form `form` as a browser would after loading the sign-in page.
fn post_login(api: &Api, form: &[(&str, &str)]) -> Answer {
    let (cookie, token) = login_form(api);
    let mut form = form.to_vec();
    form.push(("csrf", &token));
    post(api, "/dashboard/login", Some(&cookie), &form)
}

/// Signs in; the `Cookie` header value of the session.
fn sign_in(api: &Api, form: &[(&str, &str)]) -> String {
    let a = post_login(api, form);
    assert_eq!(a.status, 303, "{}", a.body);
    let set = a.cookie("ferry_session").expect("a session cookie");
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attribute), "{set} lacks {attribute}");
    }
    assert!(
        a.cookie("__Host-ferry_login")
            .is_some_and(|c| c.contains("Max-Age=0")),
        "signing in ends the sign-in form's cookie"
    );
    set.split(';').next().unwrap().to_owned()
}

fn code_of(a: &Answer) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&a.body) {
        return v["code"].as_str().unwrap_or("?").to_owned();
    }
    // An HTML refusal shows its code first.
    let at = a.body.find(r#"<code class="code">"#).map(|i| i + 19);
    at.map(|i| a.body[i..].split('<').next().unwrap().to_owned())
        .unwrap_or_else(|| "?".into())
}

fn add_user(
    data: &std::path::Path,
    name: &str,
    role: &str,
    password: &str,
) -> std::process::Output {
    let mut child = ferry()
        .args([
            "server",
            "user",
            "add",
            name,
            "--role",
            role,
            "--data",
            s(data),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    child.wait_with_output().unwrap()
}

/// A server with releases 1.0 and 2.0 of class `vm`: its temp dir, data directory,
/// process and a client.
fn server_with_two_releases() -> (tempfile::TempDir, std::path::PathBuf, Server, Api) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("server");
    let (v1, v2) = (tmp.path().join("v1.img"), tmp.path().join("v2.img"));
    make_image(&v1, 1, 1);
    make_image(&v2, 2, 1);
    publish(&data, &v1, "1.0");
    publish(&data, &v2, "2.0");
    let server = Server::start(&data);
    let api = Api::at(&server.url(), &data);
    (tmp, data, server, api)
}

#[test]
fn dashboard_needs_a_session_csrf_and_the_operator_role_and_pushes_reports_live() {
    let (_tmp, data, _server, api) = server_with_two_releases();

    // Users: a short password and a taken name are refused with their codes.
    let out = add_user(&data, "vera", "viewer", "short");
    assert!(
        text(&out.stderr).contains("DASHBOARD_PASSWORD_TOO_SHORT"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        add_user(&data, "vera", "viewer", "vera-password")
            .status
            .success()
    );
    let again = add_user(&data, "vera", "operator", "another-password");
    assert!(
        text(&again.stderr).contains("DASHBOARD_USER_EXISTS"),
        "{}",
        text(&again.stderr)
    );

    let sims = enroll(&api, "vm", 0x5200_0000_0000_0001, 3);
    let rollout = {
        let (status, r) = api.admin(
            "/v1/admin/rollouts",
            Some(serde_json::json!({ "class": "vm", "version": "2.0" })),
        );
        assert_eq!(status, 200, "{r}");
        r["id"].as_i64().unwrap()
    };
    let v2 = published(&api, "vm", "2.0");
    assert_eq!(ticket(&api, &sims[0], &v2), "TICKET");
    deliver(
        &api,
        &sims[0],
        vec![report(&sims[0], EventKind::InstallStarted, None, None)],
    );
    deliver(
        &api,
        &sims[1],
        vec![report(
            &sims[1],
            EventKind::Failed,
            None,
            Some("PAYLOAD_TRUNCATED"),
        )],
    );
    let device = sims[0].id().to_string();

    // Without a session: every page goes to the sign-in page, every action, the event
    // stream and every chart answer 401 with the code.
    let pages = [
        "/".to_owned(),
        "/dashboard/failures".into(),
        format!("/dashboard/rollouts/{rollout}"),
        format!("/dashboard/devices/{device}"),
    ];
    for page in &pages {
        let a = get(&api, page, None);
        assert_eq!(
            (a.status, a.location.as_deref()),
            (303, Some("/dashboard/login")),
            "{page}"
        );
    }
    let login = get(&api, "/dashboard/login", None);
    assert_eq!(login.status, 200);
    assert!(login.body.contains(r#"name="password""#) && login.body.contains(r#"name="token""#));
    let streams = [
        "/dashboard/events".to_owned(),
        "/dashboard/charts/installs.svg".into(),
        "/dashboard/charts/phases.svg".into(),
        format!("/dashboard/charts/rollouts/{rollout}.svg"),
        format!("/dashboard/charts/devices/{device}.svg"),
    ];
    for path in &streams {
        let a = get(&api, path, None);
        assert_eq!(
            (a.status, code_of(&a).as_str()),
            (401, "DASHBOARD_NOT_SIGNED_IN"),
            "{path}"
        );
    }
    for action in ["halt", "resume", "pause"] {
        let a = post(
            &api,
            &format!("/dashboard/rollouts/{rollout}/{action}"),
            None,
            &[("csrf", "x")],
        );
        assert_eq!(
            (a.status, code_of(&a).as_str()),
            (401, "DASHBOARD_NOT_SIGNED_IN"),
            "{action}"
        );
    }
    let a = post(&api, "/dashboard/logout", None, &[("csrf", "x")]);
    assert_eq!(a.status, 401);

    // Wrong password, wrong token: 401, the sign-in page again with the code.
    for form in [
        vec![("user", "vera"), ("password", "not-veras")],
        vec![("user", "nobody"), ("password", "whatever-it-is")],
        vec![("token", "not-the-token")],
    ] {
        let a = post_login(&api, &form);
        assert_eq!(
            (a.status, code_of(&a).as_str()),
            (401, "DASHBOARD_SIGN_IN_FAILED")
        );
        assert!(a.cookie("ferry_session").is_none());
    }
    // A forged sign-in (another site's form: no sign-in cookie, or a token that is not
    // the cookie's) is refused even with the right token, and signs no one in.
    let (form_cookie, form_token) = login_form(&api);
    let (_, other_token) = login_form(&api);
    let admin = api.admin.clone();
    for (cookie, token) in [
        (None, ""),
        (None, form_token.as_str()),
        (Some(form_cookie.as_str()), ""),
        (Some(form_cookie.as_str()), other_token.as_str()),
    ] {
        let a = post(
            &api,
            "/dashboard/login",
            cookie,
            &[("token", &admin), ("csrf", token)],
        );
        assert_eq!(
            (a.status, code_of(&a).as_str()),
            (403, "DASHBOARD_CSRF_INVALID"),
            "{cookie:?} {token}"
        );
        assert!(a.cookie("ferry_session").is_none());
    }
    // A made-up cookie is no session.
    let a = get(&api, "/", Some("ferry_session=00ff"));
    assert_eq!(a.status, 303);

    // A viewer reads every page and is refused the actions (403 with the code), even
    // with the right CSRF token.
    let viewer = sign_in(&api, &[("user", "vera"), ("password", "vera-password")]);
    for page in &pages {
        let a = get(&api, page, Some(&viewer));
        assert_eq!(a.status, 200, "{page}: {}", a.body);
    }
    let page = get(
        &api,
        &format!("/dashboard/rollouts/{rollout}"),
        Some(&viewer),
    );
    let viewer_csrf = csrf(&page.body);
    let a = post(
        &api,
        &format!("/dashboard/rollouts/{rollout}/halt"),
        Some(&viewer),
        &[("csrf", &viewer_csrf)],
    );
    assert_eq!(
        (a.status, code_of(&a).as_str()),
        (403, "DASHBOARD_NOT_OPERATOR")
    );
    assert_eq!(
        ticket(&api, &sims[2], &v2),
        "TICKET",
        "the viewer's halt changed nothing"
    );

    // The operator (the admin token): a forged form (no token, another session's token)
    // is refused; the real one halts, and the devices stop getting tickets.
    let operator = sign_in(&api, &[("token", &api.admin)]);
    let page = get(
        &api,
        &format!("/dashboard/rollouts/{rollout}"),
        Some(&operator),
    );
    assert!(page.body.contains(r#"id="halt-button""#), "{}", page.body);
    let operator_csrf = csrf(&page.body);
    assert_ne!(operator_csrf, viewer_csrf);
    for forged in [
        vec![],
        vec![("csrf", "")],
        vec![("csrf", viewer_csrf.as_str())],
    ] {
        let a = post(
            &api,
            &format!("/dashboard/rollouts/{rollout}/halt"),
            Some(&operator),
            &forged,
        );
        assert_eq!(
            (a.status, code_of(&a).as_str()),
            (403, "DASHBOARD_CSRF_INVALID"),
            "{forged:?}"
        );
    }
    assert_eq!(
        ticket(&api, &sims[2], &v2),
        "TICKET",
        "a forged halt changed nothing"
    );

    // The event stream pushes a report within a second of its delivery.
    let (stream_api, cookie) = (&api, operator.clone());
    let delay = api.runtime.block_on(async {
        let response = stream_api
            .client
            .get(format!("{}/dashboard/events", stream_api.base))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let mut body = response.bytes_stream();
        let batch = ferry_events::EventBatch {
            device_id: sims[0].id(),
            outbox: Default::default(),
            reports: vec![report(&sims[0], EventKind::Progress, Some(42.0), None)],
        };
        let sent = Instant::now();
        let posted = stream_api
            .client
            .post(format!("{}/v1/events", stream_api.base))
            .bearer_auth(&sims[0].credential)
            .json(&batch)
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status().as_u16(), 200);
        let mut seen = String::new();
        let found = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(chunk) = body.next().await {
                seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
                if seen.contains(&device) && seen.contains("\"percent\":42") {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(found, Ok(true), "no live report within a second: {seen:?}");
        sent.elapsed()
    });
    println!(
        "report to event stream: {:.1} ms",
        delay.as_secs_f64() * 1000.0
    );

    // Pages show what they should.
    let fleet = get(&api, "/", Some(&operator)).body;
    assert!(
        fleet.contains(&device) && fleet.contains("Updating now"),
        "{fleet}"
    );
    assert!(
        fleet.contains(r#"value="42.0""#),
        "the progress bar shows 42 %: {fleet}"
    );
    let failures = get(&api, "/dashboard/failures", Some(&operator)).body;
    assert!(
        failures.contains("PAYLOAD_TRUNCATED") && failures.contains("PAYLOAD_TRUNCATED happened")
    );
    assert!(failures.contains(&sims[1].id().to_string()));
    let shown = get(
        &api,
        &format!("/dashboard/devices/{}", sims[1].id()),
        Some(&operator),
    )
    .body;
    assert!(
        shown.contains("PAYLOAD_TRUNCATED happened") && shown.contains("Fix: Do something"),
        "{shown}"
    );
    for chart in &streams[1..] {
        let a = get(&api, chart, Some(&operator));
        assert_eq!(a.status, 200, "{chart}");
        assert!(
            a.body.starts_with("<svg"),
            "{chart}: {}",
            &a.body[..a.body.len().min(80)]
        );
    }
    let progress = get(
        &api,
        &format!("/dashboard/charts/devices/{device}.svg"),
        Some(&operator),
    )
    .body;
    assert!(
        progress.contains("<polyline"),
        "the progress chart draws the reports"
    );

    // The halt: the rollout is halted, the devices are refused tickets.
    let a = post(
        &api,
        &format!("/dashboard/rollouts/{rollout}/halt"),
        Some(&operator),
        &[("csrf", &operator_csrf)],
    );
    assert_eq!(
        (a.status, a.location.as_deref()),
        (303, Some(format!("/dashboard/rollouts/{rollout}").as_str())),
        "{}",
        a.body
    );
    assert_eq!(ticket(&api, &sims[2], &v2), "ROLLOUT_HALTED");
    let page = get(
        &api,
        &format!("/dashboard/rollouts/{rollout}"),
        Some(&operator),
    )
    .body;
    assert!(
        page.contains(r#"class="state" id="rollout-state">halted<"#),
        "{page}"
    );
    assert!(
        page.contains("<td>halt</td><td>admin</td>"),
        "the halt is listed with who did it: {page}"
    );
    assert!(page.contains(r#"id="resume-button""#), "{page}");

    // Sign-out ends the session on the server, not only in the browser.
    let a = post(
        &api,
        "/dashboard/logout",
        Some(&operator),
        &[("csrf", &operator_csrf)],
    );
    assert_eq!(a.status, 303);
    assert_eq!(get(&api, "/", Some(&operator)).status, 303);
}

/// The state the director's signed decision gives release `version` for `sim` (what its
/// next scan sees).
fn decided(api: &Api, sim: &Sim, version: &str) -> String {
    let (status, signed) = api.call("/v1/decision", &sim.credential, None);
    assert_eq!(status, 200, "{signed}");
    let decision: serde_json::Value =
        serde_json::from_str(signed["decision"].as_str().unwrap()).unwrap();
    decision["releases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["version"] == version)
        .map(|r| r["state"].as_str().unwrap_or("?").to_owned())
        .unwrap_or_else(|| format!("no release {version}: {decision}"))
}

#[test]
fn an_operator_revokes_an_entitlement_and_the_device_loses_the_release() {
    let (_tmp, data, _server, api) = server_with_two_releases();
    assert!(
        add_user(&data, "vera", "viewer", "vera-password")
            .status
            .success()
    );
    let sims = enroll(&api, "vm", 0x5200_0000_0000_0001, 2);
    let device = sims[0].id().to_string();
    let (status, r) = api.admin(
        "/v1/admin/rollouts",
        Some(serde_json::json!({ "class": "vm", "version": "2.0" })),
    );
    assert_eq!(status, 200, "{r}");
    let rollout = r["id"].as_i64().unwrap();
    let (status, grant) = api.admin(
        "/v1/admin/entitlements",
        Some(serde_json::json!({ "class": "vm", "version": "2.0", "to": format!("device:{device}") })),
    );
    assert_eq!(status, 200, "{grant}");
    let grant = grant["id"].as_i64().unwrap();
    let v2 = published(&api, "vm", "2.0");
    assert_eq!(ticket(&api, &sims[0], &v2), "TICKET");
    assert_eq!(ticket(&api, &sims[1], &v2), "NOT_ENTITLED");
    let before = decided(&api, &sims[0], "2.0");
    assert_ne!(before, "not_entitled");
    let revoke = format!("/dashboard/entitlements/{grant}/revoke");
    let device_page = format!("/dashboard/devices/{device}");

    // Without a session: 401.
    let a = post(&api, &revoke, None, &[("csrf", "x")]);
    assert_eq!(
        (a.status, code_of(&a).as_str()),
        (401, "DASHBOARD_NOT_SIGNED_IN")
    );

    // A viewer sees the grant on the device's page, without the button, and is refused
    // the revoke even with the right CSRF token.
    let viewer = sign_in(&api, &[("user", "vera"), ("password", "vera-password")]);
    let page = get(&api, &device_page, Some(&viewer)).body;
    assert!(
        page.contains(&format!(r#"data-entitlement="{grant}""#)),
        "{page}"
    );
    assert!(!page.contains(&format!(r#"id="revoke-{grant}""#)), "{page}");
    let a = post(
        &api,
        &revoke,
        Some(&viewer),
        &[("csrf", &csrf(&page)), ("back", &device_page)],
    );
    assert_eq!(
        (a.status, code_of(&a).as_str()),
        (403, "DASHBOARD_NOT_OPERATOR")
    );

    // The operator sees the button on the device's and the rollout's pages; a form
    // without the session's token is refused.
    let operator = sign_in(&api, &[("token", &api.admin)]);
    let shown = get(
        &api,
        &format!("/dashboard/rollouts/{rollout}"),
        Some(&operator),
    )
    .body;
    assert!(
        shown.contains(&format!(r#"id="revoke-{grant}""#)),
        "{shown}"
    );
    let page = get(&api, &device_page, Some(&operator)).body;
    assert!(page.contains(&format!(r#"id="revoke-{grant}""#)), "{page}");
    for forged in [vec![], vec![("csrf", "")], vec![("csrf", "00ff")]] {
        let a = post(&api, &revoke, Some(&operator), &forged);
        assert_eq!(
            (a.status, code_of(&a).as_str()),
            (403, "DASHBOARD_CSRF_INVALID"),
            "{forged:?}"
        );
    }
    assert_eq!(
        ticket(&api, &sims[0], &v2),
        "TICKET",
        "refused revokes changed nothing"
    );
    assert_eq!(decided(&api, &sims[0], "2.0"), before);

    // The revoke: back to the device's page, which shows the grant revoked; the device's
    // next scan gets no offer and its ticket is refused.
    let a = post(
        &api,
        &revoke,
        Some(&operator),
        &[("csrf", &csrf(&page)), ("back", &device_page)],
    );
    assert_eq!(
        (a.status, a.location.as_deref()),
        (303, Some(device_page.as_str())),
        "{}",
        a.body
    );
    assert_eq!(decided(&api, &sims[0], "2.0"), "not_entitled");
    assert_eq!(ticket(&api, &sims[0], &v2), "NOT_ENTITLED");
    let page = get(&api, &device_page, Some(&operator)).body;
    assert!(!page.contains(&format!(r#"id="revoke-{grant}""#)), "{page}");
    assert!(
        page.contains("NOT_ENTITLED"),
        "why it has not taken 2.0: {page}"
    );
    // Twice: refused with its code, and a back to another site is not followed.
    let a = post(
        &api,
        &revoke,
        Some(&operator),
        &[("csrf", &csrf(&page)), ("back", "https://example.com/")],
    );
    assert_eq!(
        (a.status, code_of(&a).as_str()),
        (409, "ROLLOUT_ENTITLEMENT_REVOKED")
    );
    let a = post(
        &api,
        "/dashboard/entitlements/999/revoke",
        Some(&operator),
        &[("csrf", &csrf(&page))],
    );
    assert_eq!(
        (a.status, code_of(&a).as_str()),
        (404, "ROLLOUT_ENTITLEMENT_NOT_FOUND")
    );
}
