//! Entitlements on the dashboard: the grants of a rollout's release and the grants that
//! cover a device, each with a Revoke button (`POST /dashboard/entitlements/{id}/revoke`,
//! the operator role and the session's CSRF token). A revoked grant stops the device's
//! offer at its next scan and its ticket with `NOT_ENTITLED` (`rollouts::entitle`).

use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use ferry_types::DeviceId;
use maud::{Markup, html};
use serde::Deserialize;

use super::pages::{error_page, when};
use super::{Dash, Session};
use crate::ServerError;
use crate::rollouts::cohort::Selector;
use crate::rollouts::entitle::Entitlement;

/// Grants of release `version` of `class` (and the class's `*` grants), newest first.
pub(super) async fn of_release(
    dash: &Dash,
    class: &str,
    version: &str,
) -> Result<Vec<Entitlement>, ServerError> {
    let mut all = dash.db.entitlements().await?;
    all.retain(|e| e.class == class && (e.version == version || e.version == "*"));
    Ok(all)
}

/// Grants of the device's class whose selector covers the device (revoked ones too),
/// newest first; none when the device is not enrolled.
pub(super) async fn of_device(
    dash: &Dash,
    device_id: &DeviceId,
) -> Result<Vec<Entitlement>, ServerError> {
    let Some(class) = dash
        .db
        .dashboard_device_class(&device_id.to_string())
        .await?
    else {
        return Ok(Vec::new());
    };
    let facts = dash.db.cohort_facts(device_id, false).await?;
    let mut all = dash.db.entitlements().await?;
    all.retain(|e| {
        e.class == class
            && e.selector
                .parse::<Selector>()
                .is_ok_and(|s| s.matches(&facts))
    });
    Ok(all)
}

/// The grants as a table, each unrevoked one with a Revoke button that comes back to
/// `back` (an operator's only; a viewer sees the table without buttons).
pub(super) fn table(grants: &[Entitlement], session: &Session, back: &str) -> Markup {
    let operator = session.role == super::Role::Operator;
    html! {
        @if grants.is_empty() {
            p.muted { "No entitlement: every device of the class may get the release." }
        } @else {
            table #entitlements {
                thead { tr { th { "grant" } th { "version" } th { "devices" } th { "granted" } th { "revoked" } th {} } }
                tbody {
                    @for e in grants {
                        tr data-entitlement=(e.id) {
                            td.num { (e.id) }
                            td { (e.version) }
                            td { code { (e.selector) } }
                            td { (when(e.granted_ms)) }
                            td { @if let Some(at) = e.revoked_ms { (when(at)) } @else { "—" } }
                            td {
                                @if e.revoked_ms.is_none() && operator {
                                    form.inline method="post" action=(format!("/dashboard/entitlements/{}/revoke", e.id)) {
                                        input type="hidden" name="csrf" value=(session.csrf);
                                        input type="hidden" name="back" value=(back);
                                        button.danger id=(format!("revoke-{}", e.id)) type="submit" { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The revoke form: the session's CSRF token and the page to return to.
#[derive(Deserialize)]
pub(super) struct RevokeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    back: String,
}

/// Where to go after a revoke: `back` when it is one of the dashboard's own pages (never
/// another site), else the fleet.
fn back_to(back: &str) -> &str {
    let own = back.starts_with("/dashboard/")
        && back
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'));
    if own { back } else { "/" }
}

/// `POST /dashboard/entitlements/{id}/revoke`: an operator revokes a grant.
pub(super) async fn revoke(
    State(dash): State<Dash>,
    session: Session,
    Path(id): Path<i64>,
    Form(form): Form<RevokeForm>,
) -> Response {
    let done = async {
        session.check_action(&form.csrf)?;
        let grant = dash.db.revoke_entitlement(id).await?;
        tracing::info!(entitlement = id, class = %grant.class, version = %grant.version,
            user = %session.user, "dashboard revoked an entitlement");
        Ok::<_, ServerError>(())
    };
    match done.await {
        Ok(()) => Redirect::to(back_to(&form.back)).into_response(),
        Err(e) => error_page(e, Some(&session)),
    }
}

#[cfg(test)]
mod tests {
    use super::back_to;

    #[test]
    fn a_revoke_returns_only_to_the_dashboards_own_pages() {
        assert_eq!(back_to("/dashboard/rollouts/3"), "/dashboard/rollouts/3");
        assert_eq!(
            back_to("/dashboard/devices/00000000000000ab"),
            "/dashboard/devices/00000000000000ab"
        );
        for other in [
            "https://evil.example/",
            "//evil.example/",
            "/dashboard/x?y=//z",
            "",
        ] {
            assert_eq!(back_to(other), "/", "{other}");
        }
    }
}
