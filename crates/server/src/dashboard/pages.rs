//! The pages (maud): the layout, sign-in, Fleet, Rollout and Failures. Every page is
//! whole HTML that reads without JavaScript; `live.js` only moves progress bars and
//! counters as reports arrive.

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use ferry_types::Diagnose;
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use super::queries::Paged;
use super::{Dash, Session};
use crate::ServerError;
use crate::fleet::{DeviceState, time_of};
use crate::rollouts::RolloutState;

/// `?page=N` (from 0) and an optional status filter.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    /// Page number.
    #[serde(default)]
    pub page: i64,
    /// Devices with this status only (`silent` for silent ones).
    #[serde(default)]
    pub status: Option<String>,
}

impl PageQuery {
    pub(super) fn page(&self) -> i64 {
        self.page.clamp(0, 100_000)
    }
}

/// A whole page: head, navigation (with sign-out when signed in), `body`.
pub(super) fn layout(title: &str, session: Option<&Session>, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · ferry" }
                    link rel="stylesheet" href="/dashboard/assets/style.css";
                    @if session.is_some() {
                        script src="/dashboard/assets/live.js" defer {}
                    }
                }
                body {
                    header {
                        nav {
                            strong { "ferry" }
                            @if let Some(s) = session {
                                a href="/" { "Fleet" }
                                a href="/dashboard/failures" { "Failures" }
                                span.who { (s.user) " (" (s.role.as_str()) ")" }
                                form.inline method="post" action="/dashboard/logout" {
                                    input type="hidden" name="csrf" value=(s.csrf);
                                    button type="submit" { "Sign out" }
                                }
                                span #live-status .muted { "" }
                            }
                        }
                    }
                    main { h1 { (title) } (body) }
                }
            }
        }
        .into_string(),
    )
}

/// The sign-in page, with the refusal if a try failed, and a fresh pre-session token
/// (its cookie and the form's hidden field).
pub(super) fn login_response(status: StatusCode, error: Option<&ServerError>) -> Response {
    let (token, cookie) = super::auth::login_token();
    (
        status,
        [(header::SET_COOKIE, cookie)],
        login_markup(error, &token),
    )
        .into_response()
}

fn login_markup(error: Option<&ServerError>, csrf: &str) -> Html<String> {
    layout(
        "Sign in",
        None,
        html! {
            @if let Some(e) = error {
                (error_box(e))
            }
            form.card method="post" action="/dashboard/login" {
                input type="hidden" name="csrf" value=(csrf);
                fieldset {
                    legend { "User and password" }
                    label { "User " input type="text" name="user" autocomplete="username"; }
                    label { "Password " input type="password" name="password" autocomplete="current-password"; }
                }
                fieldset {
                    legend { "Or the admin token" }
                    label { "Token " input type="password" name="token" autocomplete="off"; }
                }
                button #sign-in type="submit" { "Sign in" }
            }
        },
    )
}

/// An error as the pages show it: code, cause, fix.
pub(super) fn error_box(e: &dyn Diagnose) -> Markup {
    html! {
        div.error role="alert" {
            p { code.code { (e.code()) } " " (e.to_string()) }
            p { "Fix: " (e.fix()) }
        }
    }
}

/// An error answered as a page.
pub(super) fn error_page(e: ServerError, session: Option<&Session>) -> Response {
    let status = match &e {
        ServerError::Dashboard(d) => d.status(),
        ServerError::Rollout(
            crate::rollouts::RolloutError::NotFound { .. }
            | crate::rollouts::RolloutError::EntitlementNotFound { .. },
        )
        | ServerError::NotFound(_) => StatusCode::NOT_FOUND,
        ServerError::Rollout(_) => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, layout("Refused", session, error_box(&e))).into_response()
}

pub(super) async fn login_page() -> Response {
    login_response(StatusCode::OK, None)
}

/// A time as UTC text.
pub(super) fn when(ms: i64) -> String {
    time_of(ms).map_or_else(
        || "?".into(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

pub(super) fn when_dt(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Seconds as `1 h 2 min`, `3 min 4 s`, `5 s`.
pub(super) fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as i64;
    match s {
        s if s >= 3600 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{} min {} s", s / 60, s % 60),
        s => format!("{s} s"),
    }
}

/// Time remaining from how long the update has run and how far it is.
pub(super) fn remaining(state: &DeviceState, now_ms: i64) -> Option<f64> {
    let percent = state.update_percent.filter(|p| *p > 0.5 && *p < 100.0)?;
    let elapsed = (now_ms - state.update_started_ms?) as f64 / 1000.0;
    Some(elapsed * (100.0 - percent) / percent)
}

/// A device's progress bar and the time remaining, with the ids `live.js` updates.
pub(super) fn progress_bar(state: &DeviceState, now_ms: i64) -> Markup {
    let percent = state.update_percent.unwrap_or(0.0);
    html! {
        span.progress {
            progress data-progress=(state.device_id) max="100" value=(format!("{percent:.1}")) {
                (format!("{percent:.0} %"))
            }
            " "
            span data-percent=(state.device_id) { (format!("{percent:.0} %")) }
            " · "
            span data-remaining=(state.device_id) {
                @match remaining(state, now_ms) {
                    Some(r) => { (duration(r)) " left" }
                    None => { "—" }
                }
            }
        }
    }
}

pub(super) fn pager(base: &str, p: &Paged<impl Sized>) -> Markup {
    let sep = if base.contains('?') { '&' } else { '?' };
    html! {
        nav.pager {
            @if p.page > 0 {
                a rel="prev" href=(format!("{base}{sep}page={}", p.page - 1)) { "← previous" }
            }
            " page " (p.page + 1) " "
            @if p.more {
                a rel="next" href=(format!("{base}{sep}page={}", p.page + 1)) { "next →" }
            }
        }
    }
}

fn devices_table(rows: &[DeviceState], now_ms: i64) -> Markup {
    html! {
        table {
            thead { tr { th { "device" } th { "class" } th { "version" } th { "status" } th { "update" } th { "last report" } } }
            tbody {
                @for d in rows {
                    tr data-device=(d.device_id) {
                        td { a href=(format!("/dashboard/devices/{}", d.device_id)) { code { (d.device_id) } } }
                        td { (d.device_class) }
                        td { (d.version.as_deref().unwrap_or("?")) }
                        td data-status=(d.device_id) {
                            (d.status)
                            @if d.silent_since_ms.is_some() { " (silent)" }
                            @if let Some(code) = &d.last_error_code {
                                @if matches!(d.status.as_str(), "failed" | "rolled_back" | "dropped" | "unhealthy") {
                                    " " code.code { (code) }
                                }
                            }
                        }
                        td {
                            @if d.status == "updating" {
                                (d.from_version.as_deref().unwrap_or("?")) " → " (d.target_version.as_deref().unwrap_or("?")) " "
                                (progress_bar(d, now_ms))
                            } @else if let Some(t) = &d.target_version {
                                "→ " (t)
                            }
                        }
                        td { (when(d.last_report_ms)) }
                    }
                }
            }
        }
    }
}

/// `GET /`: the fleet.
pub(super) async fn fleet(
    State(dash): State<Dash>,
    session: Session,
    Query(q): Query<PageQuery>,
) -> Response {
    match fleet_body(&dash, &q).await {
        Ok(body) => layout("Fleet", Some(&session), body).into_response(),
        Err(e) => error_page(e, Some(&session)),
    }
}

async fn fleet_body(dash: &Dash, q: &PageQuery) -> Result<Markup, ServerError> {
    let now = Utc::now().timestamp_millis();
    let o = dash.db.dashboard_overview(now).await?;
    let updating = dash.db.dashboard_devices(Some("updating"), 0).await?;
    let rollouts = dash.db.rollouts().await?;
    let status = q.status.as_deref().filter(|s| !s.is_empty());
    let devices = dash.db.dashboard_devices(status, q.page()).await?;
    let count = |s: &str| o.by_status.get(s).copied().unwrap_or(0);
    let trend = |e: &str| {
        let (now, before) = (
            o.last_hour.get(e).copied().unwrap_or(0),
            o.hour_before.get(e).copied().unwrap_or(0),
        );
        let arrow = match now.cmp(&before) {
            std::cmp::Ordering::Greater => "↑",
            std::cmp::Ordering::Less => "↓",
            std::cmp::Ordering::Equal => "→",
        };
        format!("{now} {arrow} (hour before: {before})")
    };
    let base = match status {
        Some(s) => format!("/?status={s}"),
        None => "/".into(),
    };
    Ok(html! {
        section.cards {
            div.card { h3 { "Devices" } p.big { (o.devices) } }
            div.card { h3 { a href="/?status=updating" { "Updating now" } } p.big #count-updating { (count("updating")) } }
            div.card { h3 { a href="/?status=failed" { "Failed" } } p.big { (count("failed")) } }
            div.card { h3 { a href="/?status=rolled_back" { "Rolled back" } } p.big { (count("rolled_back")) } }
            div.card { h3 { a href="/?status=silent" { "Silent" } } p.big { (o.silent) } }
            div.card { h3 { a href="/?status=unhealthy" { "Unhealthy" } } p.big #count-unhealthy { (count("unhealthy")) } }
            div.card { h3 { "Committed" } p.big { (count("committed")) } }
        }
        section {
            h2 { "Last hour" }
            table {
                thead { tr { th { "result" } th { "last hour (trend)" } } }
                tbody {
                    @for e in ["installed", "committed", "failed", "rolled_back"] {
                        tr { td { (e) } td { (trend(e)) } }
                    }
                }
            }
        }
        section {
            h2 { "By class and version" }
            table {
                thead { tr { th { "class" } th { "version" } th { "devices" } } }
                tbody {
                    @for (class, version, n) in &o.by_class_version {
                        tr { td { (class) } td { (version) } td { (n) } }
                    }
                }
            }
        }
        section {
            h2 { "Rollouts" }
            @if rollouts.is_empty() { p.muted { "No rollouts yet (ferry rollout create)." } }
            @else {
                table {
                    thead { tr { th { "rollout" } th { "class" } th { "version" } th { "state" } th { "waves" } } }
                    tbody {
                        @for r in rollouts.iter().rev().take(20) {
                            tr {
                                td { a href=(format!("/dashboard/rollouts/{}", r.id)) { "#" (r.id) } }
                                td { (r.class) } td { (r.version) }
                                td.state { (r.state.as_str()) }
                                td { code { (r.waves) } }
                            }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Updating now" }
            @if updating.rows.is_empty() { p.muted #none-updating { "No device is updating." } }
            @else { (devices_table(&updating.rows, now)) }
        }
        section.charts {
            h2 { "Charts" }
            img src="/dashboard/charts/installs.svg" alt="updates per hour by result, last 24 hours" width="900" height="420";
            img src="/dashboard/charts/phases.svg" alt="seconds per phase by class" width="900";
        }
        section {
            h2 {
                "Devices"
                @if let Some(s) = status { " — " (s) " " a href="/" { "(all)" } }
            }
            (devices_table(&devices.rows, now))
            (pager(&base, &devices))
        }
    })
}

/// `GET /dashboard/failures`: failure codes ranked by devices affected.
pub(super) async fn failures(
    State(dash): State<Dash>,
    session: Session,
    Query(q): Query<PageQuery>,
) -> Response {
    let codes = match dash.db.dashboard_failures(q.page()).await {
        Ok(codes) => codes,
        Err(e) => return error_page(e, Some(&session)),
    };
    let body = html! {
        p.muted { "Devices whose last update failed, rolled back, was dropped or failed its health watch, by the code of their last error." }
        @if codes.rows.is_empty() { p { "No device has failed." } }
        table {
            thead { tr { th { "code" } th { "devices" } th { "cause and fix" } th { "devices behind it" } } }
            tbody {
                @for f in &codes.rows {
                    tr {
                        td { code.code { (f.code) } }
                        td.num { (f.devices) }
                        td {
                            @if let Some(e) = &f.error {
                                p { (e.cause) }
                                p { "Fix: " (e.fix) }
                            } @else { span.muted { "no report with this code is stored" } }
                        }
                        td {
                            @for d in &f.sample {
                                a href=(format!("/dashboard/devices/{d}")) { code { (d) } } " "
                            }
                            @if f.devices > f.sample.len() as i64 {
                                span.muted { "and " (f.devices - f.sample.len() as i64) " more" }
                            }
                        }
                    }
                }
            }
        }
        (pager("/dashboard/failures", &codes))
    };
    layout("Failures", Some(&session), body).into_response()
}

/// The funnel's steps.
const STEPS: [&str; 5] = ["offered", "downloading", "staged", "installed", "committed"];

/// The furthest funnel step a device's update state shows.
fn step_of(status: &str, update_state: Option<&str>) -> usize {
    match (status, update_state.unwrap_or("")) {
        ("committed", _) => 4,
        ("staged", _) | ("rolled_back", _) => 3,
        ("prestaged", _) => 2,
        (_, s) if s.starts_with("DOWNLOADING") => 1,
        (_, "DOWNLOADED_UPDATE" | "PREPARING_UPDATE" | "PREPARED" | "INSTALLING") => 2,
        (_, "STAGED") => 3,
        _ => 0,
    }
}

/// Per step: devices that reached it, and of those stopped there, failed / rolled back /
/// silent.
fn funnel(rows: &[(String, Option<String>, bool, i64)]) -> [[i64; 4]; 5] {
    let mut f = [[0i64; 4]; 5];
    for (status, state, silent, n) in rows {
        let step = step_of(status, state.as_deref());
        for reached in f.iter_mut().take(step + 1) {
            reached[0] += n;
        }
        match status.as_str() {
            "failed" | "dropped" => f[step][1] += n,
            "rolled_back" => f[step][2] += n,
            _ if *silent => f[step][3] += n,
            _ => {}
        }
    }
    f
}

/// `GET /dashboard/rollouts/{id}`.
pub(super) async fn rollout(
    State(dash): State<Dash>,
    session: Session,
    Path(id): Path<i64>,
) -> Response {
    match rollout_body(&dash, &session, id).await {
        Ok(body) => layout(&format!("Rollout #{id}"), Some(&session), body).into_response(),
        Err(e) => error_page(e, Some(&session)),
    }
}

async fn rollout_body(dash: &Dash, session: &Session, id: i64) -> Result<Markup, ServerError> {
    let view = dash.db.rollout_view(id).await?;
    let r = &view.rollout;
    let funnel = funnel(&dash.db.dashboard_funnel_rows(&r.class, &r.version).await?);
    let grants = super::grants::of_release(dash, &r.class, &r.version).await?;
    let mut waves = Vec::with_capacity(view.wave_counts.len());
    for w in &view.wave_counts {
        waves.push(
            dash.db
                .dashboard_wave_devices(id, r.epoch, w.wave, 20)
                .await?,
        );
    }
    let next = view.wave_counts.iter().find(|w| !w.open);
    let action = |name: &str, label: &str| {
        html! {
            form.inline method="post" action=(format!("/dashboard/rollouts/{id}/{name}")) {
                input type="hidden" name="csrf" value=(session.csrf);
                button #(format!("{name}-button")) type="submit" { (label) }
            }
        }
    };
    Ok(html! {
        p {
            "Release " strong { (r.version) } " of class " strong { (r.class) }
            @if let Some(a) = &r.audience { ", audience " (a) }
            ", started " (when(r.started_ms)) ". State: "
            strong #rollout-state .state { (r.state.as_str()) }
        }
        p {
            @match r.state {
                RolloutState::Running => { (action("halt", "Halt")) " " (action("pause", "Pause")) }
                RolloutState::Paused => { (action("resume", "Resume")) " " (action("halt", "Halt")) }
                RolloutState::Halted => { (action("resume", "Resume")) }
            }
        }
        @match next {
            Some(w) if r.state == RolloutState::Running => p { "Next wave (" (w.wave) ") opens at " strong { (when_dt(w.opens_at)) } "." }
            Some(_) => p { "The schedule's clock is stopped while the rollout is " (r.state.as_str()) "." }
            None => p { "Every wave is open." }
        }
        section {
            h2 { "Funnel" }
            table {
                thead { tr { th { "step" } th { "reached" } th { "failed here" } th { "rolled back" } th { "silent here" } } }
                tbody {
                    @for (i, step) in STEPS.iter().enumerate() {
                        tr { td { (step) } td.num { (funnel[i][0]) } td.num { (funnel[i][1]) } td.num { (funnel[i][2]) } td.num { (funnel[i][3]) } }
                    }
                }
            }
        }
        section {
            h2 { "Waves" }
            table {
                thead { tr { th { "wave" } th { "share" } th { "opens" } th { "attempts" } th { "failures" } th { "lower bound" } th { "devices" } } }
                tbody {
                    @for (w, devices) in view.wave_counts.iter().zip(&waves) {
                        tr {
                            td { (w.wave) }
                            td { (format!("{:.1} %", w.percent)) }
                            td { @if w.open { "open" } @else { (when_dt(w.opens_at)) } }
                            td.num { (w.attempts) }
                            td.num { (w.failures) }
                            td.num { (format!("{:.3}", w.lower_bound)) }
                            td {
                                @for (d, failure) in devices {
                                    a href=(format!("/dashboard/devices/{d}")) { code { (d) } }
                                    @if let Some(f) = failure { " (" (f) ")" }
                                    " "
                                }
                                @if w.attempts > devices.len() as u64 { span.muted { "…" } }
                            }
                        }
                    }
                }
            }
        }
        section {
            h2 { "Entitlements" }
            p.muted { "Grants of " (r.version) " (and of every release of " (r.class) "): with any grant, only the devices an unrevoked grant covers get the release." }
            (super::grants::table(&grants, session, &format!("/dashboard/rollouts/{id}")))
        }
        section {
            h2 { "Halt rule" }
            p {
                "Halts a wave when, with at least " (r.min_attempts) " attempts, the 95 % lower bound of its failure rate exceeds "
                strong { (r.threshold) } " (failures: a code that blames the release, a rollback, silence)."
            }
            img src=(format!("/dashboard/charts/rollouts/{id}.svg")) alt="failure rate against the threshold" width="900";
            @if !view.changes.is_empty() {
                table {
                    thead { tr { th { "when" } th { "action" } th { "by" } th { "wave" } th { "attempts" } th { "failures" } th { "lower bound" } th { "threshold" } th { "reason" } } }
                    tbody {
                        @for c in &view.changes {
                            tr {
                                td { (when(c.at_ms)) } td { (c.action) } td { (c.by) }
                                td { (opt(c.wave)) } td { (opt(c.attempts)) } td { (opt(c.failures)) }
                                td { (c.lower_bound.map_or_else(String::new, |b| format!("{b:.3}"))) }
                                td { (c.threshold.map_or_else(String::new, |t| t.to_string())) }
                                td { (c.reason.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
    })
}

fn opt(v: Option<i64>) -> String {
    v.map_or_else(String::new, |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn funnel_counts_each_device_at_every_step_it_reached() {
        let rows = vec![
            (
                "committed".to_owned(),
                Some("COMMITTED".to_owned()),
                false,
                2,
            ),
            (
                "updating".to_owned(),
                Some("DOWNLOADING_UPDATE".to_owned()),
                true,
                1,
            ),
            (
                "failed".to_owned(),
                Some("PREPARING_UPDATE".to_owned()),
                false,
                1,
            ),
            (
                "rolled_back".to_owned(),
                Some("ROLLED_BACK".to_owned()),
                false,
                1,
            ),
        ];
        let f = funnel(&rows);
        assert_eq!(f.map(|s| s[0]), [5, 5, 4, 3, 2]);
        assert_eq!(f[2][1], 1, "failed while staged");
        assert_eq!(f[3][2], 1, "rolled back after installing");
        assert_eq!(f[1][3], 1, "silent while downloading");
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(5.2), "5 s");
        assert_eq!(duration(125.0), "2 min 5 s");
        assert_eq!(duration(3_720.0), "1 h 2 min");
    }
}
