//! The Device page: its state, progress (bar and chart), last error with cause and fix,
//! doctor result, why it has not taken the current release, and its reports' timeline.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use ferry_events::{EventReport, EventResult};
use ferry_types::DeviceId;
use maud::{Markup, html};

use super::pages::{PageQuery, duration, error_page, layout, pager, progress_bar, when};
use super::{Dash, Session};
use crate::ServerError;
use crate::fleet::Filter;

/// `GET /dashboard/devices/{id}`.
pub(super) async fn device(
    State(dash): State<Dash>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    match body(&dash, &session, &id, q.page()).await {
        Ok(body) => layout(&format!("Device {id}"), Some(&session), body).into_response(),
        Err(e) => error_page(e, Some(&session)),
    }
}

fn result_word(r: EventResult) -> &'static str {
    match r {
        EventResult::Success => "success",
        EventResult::Failure => "failure",
        EventResult::InProgress => "in progress",
    }
}

fn report_line(r: &EventReport) -> String {
    let mut parts = Vec::new();
    if let Some(t) = &r.transition {
        parts.push(format!("{}: {} → {}", t.machine, t.from, t.to));
    }
    if let Some(p) = &r.progress {
        let eta = p
            .eta_secs
            .map(|s| format!(", {} left", duration(s)))
            .unwrap_or_default();
        parts.push(format!("{} {:.1} %{eta}", p.phase, p.percent));
    }
    if let Some(e) = &r.error {
        parts.push(format!("{}: {}", e.code, e.cause));
    }
    parts.join("; ")
}

async fn body(dash: &Dash, session: &Session, id: &str, page: i64) -> Result<Markup, ServerError> {
    let device_id: DeviceId = id
        .parse()
        .map_err(|_| ServerError::NotFound(format!("device {id:?}")))?;
    let state = dash
        .db
        .device_states(&Filter {
            device: Some(id.to_owned()),
            ..Filter::default()
        })
        .await?
        .into_iter()
        .next();
    let explain = match dash.db.explain(&device_id).await {
        Ok(e) => Some(e),
        Err(ServerError::NotFound(_)) if state.is_some() => None,
        Err(e) => return Err(e),
    };
    let last_error = dash.db.dashboard_latest(id, None).await?;
    let doctor = dash.db.dashboard_latest(id, Some("doctor_result")).await?;
    let timeline = dash.db.dashboard_timeline(id, page).await?;
    let grants = super::grants::of_device(dash, &device_id).await?;
    let now = Utc::now().timestamp_millis();
    Ok(html! {
        section {
            h2 { "State" }
            @match &state {
                None => p.muted { "Enrolled; no report yet." }
                Some(s) => {
                    table.kv {
                        tr { th { "class" } td { (s.device_class) } }
                        tr { th { "version" } td #device-version { (s.version.as_deref().unwrap_or("?")) } }
                        tr { th { "slot" } td { (s.slot.as_deref().unwrap_or("?")) } }
                        tr { th { "status" } td data-status=(s.device_id) {
                            (s.status) @if s.silent_since_ms.is_some() { " (silent since " (when(s.silent_since_ms.unwrap_or(0))) ")" }
                        } }
                        tr { th { "update" } td {
                            @if let Some(u) = &s.update_id {
                                code { (u) } " " (s.from_version.as_deref().unwrap_or("?")) " → " (s.target_version.as_deref().unwrap_or("?"))
                                " (" (s.update_state.as_deref().unwrap_or("?")) ")"
                            } @else { "none" }
                        } }
                        tr { th { "progress" } td { (progress_bar(s, now)) } }
                        tr { th { "last report" } td { (when(s.last_report_ms)) " (" (s.last_event) ")" } }
                        @if s.outbox_dropped > 0 {
                            tr { th { "outbox" } td { (s.outbox_dropped) " reports dropped on the device" } }
                        }
                    }
                    img #progress-chart src=(format!("/dashboard/charts/devices/{}.svg", s.device_id)) alt="progress of the current update" width="900";
                }
            }
        }
        section {
            h2 { "Last error" }
            @match last_error.as_ref().and_then(|r| r.error.as_ref().map(|e| (r, e))) {
                None => p.muted { "None reported." }
                Some((r, e)) => div.error {
                    p { code.code { (e.code) } " " (e.cause) }
                    p { "Fix: " (e.fix) }
                    p.muted { (r.event.as_str()) " at " (when(r.event_time.timestamp_millis()))
                        @if let Some(st) = &e.state { ", in " (st) } }
                }
            }
        }
        section {
            h2 { "Doctor" }
            @match &doctor {
                None => p.muted { "No doctor result reported yet (the device reports one when `ferry doctor` runs)." }
                Some(r) => p {
                    (result_word(r.result)) " at " (when(r.event_time.timestamp_millis()))
                    @if let Some(e) = &r.error { ": " code.code { (e.code) } " " (e.cause) " Fix: " (e.fix) }
                }
            }
        }
        section {
            h2 { "The current release" }
            @match &explain {
                None => p.muted { "The device is not enrolled any more." }
                Some(list) if list.is_empty() => p.muted { "No rollout of its class: every published release is offered to it." }
                Some(list) => ul {
                    @for e in list {
                        li {
                            @if let Some(id) = e.rollout_id {
                                a href=(format!("/dashboard/rollouts/{id}")) { "rollout #" (id) }
                            } @else {
                                "no rollout"
                            }
                            " (" (e.version) "): " code.code { (e.code) } " " (e.reason)
                        }
                    }
                }
            }
        }
        section {
            h2 { "Entitlements" }
            p.muted { "Grants of its class that cover the device. A release with any grant goes only to devices an unrevoked grant covers." }
            @if grants.is_empty() { p.muted { "No grant covers the device." } }
            @else { (super::grants::table(&grants, session, &format!("/dashboard/devices/{id}"))) }
        }
        section {
            h2 { "Reports" }
            table #timeline {
                thead { tr { th { "seq" } th { "time" } th { "event" } th { "result" } th { "detail" } } }
                tbody {
                    @for (_, r) in &timeline.rows {
                        tr { td.num { (r.sequence) } td { (when(r.event_time.timestamp_millis())) } td { (r.event.as_str()) }
                            td { (result_word(r.result)) } td { (report_line(r)) } }
                    }
                }
            }
            (pager(&format!("/dashboard/devices/{id}"), &timeline))
        }
    })
}
