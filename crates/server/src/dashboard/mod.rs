//! The fleet dashboard (issue 17): pages rendered on the server with `maud`, readable
//! without JavaScript, behind a sign-in (`auth`); live updates by server-sent events
//! (`live`); charts drawn as SVG with `plotters` (`charts`); the reads the pages make
//! (`queries`); the pages (`pages`, `device_page`).
//!
//! Routes: `GET /` (the fleet), `/dashboard/{login,logout,failures}`,
//! `/dashboard/rollouts/{id}` (and `POST …/{action}`), `/dashboard/devices/{id}`,
//! `POST /dashboard/entitlements/{id}/revoke`,
//! `/dashboard/events` (SSE), `/dashboard/charts/…`, `/dashboard/assets/…`.

pub mod auth;
pub mod charts;
mod device_page;
mod grants;
pub mod hourly;
pub mod live;
mod pages;
pub mod queries;

use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use ferry_types::Diagnose;
use serde::Deserialize;

use crate::ServerError;
use crate::db::Db;
use crate::rollouts::Action;
pub use auth::{Role, Session};
pub use live::Feed;

/// What the dashboard's handlers share (cheap to clone).
#[derive(Clone)]
pub struct Dash {
    /// The database.
    pub db: Db,
    /// The admin token, which also signs in (as `admin`, an operator).
    pub admin_token: String,
    /// Reports as they are stored, for the live page.
    pub feed: Feed,
}

impl std::fmt::Debug for Dash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dash").finish_non_exhaustive()
    }
}

/// What a dashboard request can fail with (beyond the server's errors).
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// No session, or an expired one.
    #[error("this request needs a signed-in dashboard session")]
    NotSignedIn,
    /// Wrong user, password or token.
    #[error("the user name and password, or the admin token, are not right")]
    SignInFailed,
    /// The form did not carry the session's CSRF token.
    #[error("the form did not carry this session's CSRF token")]
    CsrfInvalid,
    /// A viewer asked for an operator's action.
    #[error("user {user} is a viewer and may not change rollouts")]
    NotOperator {
        /// Who asked.
        user: String,
    },
    /// The user already exists.
    #[error("dashboard user {name} already exists")]
    UserExists {
        /// The name.
        name: String,
    },
    /// A name that cannot be a user.
    #[error("{name:?} is not a valid dashboard user name")]
    UserNameInvalid {
        /// The name.
        name: String,
    },
    /// A password under 8 characters.
    #[error("the password is shorter than 8 characters")]
    PasswordTooShort,
    /// Hashing or reading a stored hash failed.
    #[error("the password hash could not be made or read: {0}")]
    Hash(String),
    /// An action the dashboard does not know.
    #[error("{action:?} is not a rollout action (halt, resume, pause)")]
    UnknownAction {
        /// What was asked.
        action: String,
    },
}

impl Diagnose for DashboardError {
    fn code(&self) -> &'static str {
        match self {
            DashboardError::NotSignedIn => "DASHBOARD_NOT_SIGNED_IN",
            DashboardError::SignInFailed => "DASHBOARD_SIGN_IN_FAILED",
            DashboardError::CsrfInvalid => "DASHBOARD_CSRF_INVALID",
            DashboardError::NotOperator { .. } => "DASHBOARD_NOT_OPERATOR",
            DashboardError::UserExists { .. } => "DASHBOARD_USER_EXISTS",
            DashboardError::UserNameInvalid { .. } => "DASHBOARD_USER_NAME_INVALID",
            DashboardError::PasswordTooShort => "DASHBOARD_PASSWORD_TOO_SHORT",
            DashboardError::Hash(_) => "DASHBOARD_PASSWORD_HASH",
            DashboardError::UnknownAction { .. } => "DASHBOARD_UNKNOWN_ACTION",
        }
    }

    fn fix(&self) -> String {
        match self {
            DashboardError::NotSignedIn => "Sign in at /dashboard/login".into(),
            DashboardError::SignInFailed => {
                "Check the user name and password (`ferry server user add` sets them), or paste the admin token from the data directory's pki/admin-token".into()
            }
            DashboardError::CsrfInvalid => {
                "Reload the page and press the button again; forms from other sites are refused".into()
            }
            DashboardError::NotOperator { .. } => {
                "Ask an operator, or give the user the operator role with `ferry server user add NAME --role operator --replace`".into()
            }
            DashboardError::UserExists { .. } => {
                "Choose another name, or pass --replace to set a new password and role".into()
            }
            DashboardError::UserNameInvalid { .. } => {
                "Use 1 to 64 letters, digits, '.', '_' or '-' (not 'admin', the admin token's name)".into()
            }
            DashboardError::PasswordTooShort => "Choose a password of at least 8 characters".into(),
            DashboardError::Hash(_) => {
                "Set the user's password again with `ferry server user add NAME --replace`".into()
            }
            DashboardError::UnknownAction { .. } => "Use halt, resume or pause".into(),
        }
    }
}

impl DashboardError {
    /// The HTTP status it answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            DashboardError::NotSignedIn | DashboardError::SignInFailed => StatusCode::UNAUTHORIZED,
            DashboardError::CsrfInvalid | DashboardError::NotOperator { .. } => {
                StatusCode::FORBIDDEN
            }
            DashboardError::UserExists { .. } => StatusCode::CONFLICT,
            DashboardError::UserNameInvalid { .. }
            | DashboardError::PasswordTooShort
            | DashboardError::UnknownAction { .. } => StatusCode::BAD_REQUEST,
            DashboardError::Hash(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The answer to a request without a session: a page (`GET` of HTML) goes to the sign-in
/// page; anything else (a form, the event stream, a chart, JSON) is `401` with its code.
pub(crate) fn not_signed_in(parts: &Parts) -> Response {
    let wants_html = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|accept| accept.contains("text/html") || accept.contains("*/*"));
    let is_page = parts.method == axum::http::Method::GET
        && !parts.uri.path().starts_with("/dashboard/events")
        && !parts.uri.path().starts_with("/dashboard/charts/")
        && wants_html;
    if is_page {
        Redirect::to("/dashboard/login").into_response()
    } else {
        ServerError::from(DashboardError::NotSignedIn).into_response()
    }
}

/// The dashboard's routes.
pub fn routes(dash: Dash) -> Router {
    Router::new()
        .route("/", get(pages::fleet))
        .route("/dashboard", get(|| async { Redirect::to("/") }))
        .route("/dashboard/login", get(pages::login_page).post(login))
        .route("/dashboard/logout", post(logout))
        .route("/dashboard/failures", get(pages::failures))
        .route("/dashboard/rollouts/{id}", get(pages::rollout))
        .route("/dashboard/rollouts/{id}/{action}", post(act))
        .route("/dashboard/devices/{id}", get(device_page::device))
        .route("/dashboard/entitlements/{id}/revoke", post(grants::revoke))
        .route("/dashboard/events", get(live::events))
        .route("/dashboard/charts/installs.svg", get(charts::installs_svg))
        .route("/dashboard/charts/phases.svg", get(charts::phases_svg))
        .route("/dashboard/charts/rollouts/{id}", get(charts::rollout_svg))
        .route("/dashboard/charts/devices/{id}", get(charts::progress_svg))
        .route("/dashboard/assets/style.css", get(style))
        .route("/dashboard/assets/live.js", get(script))
        .with_state(dash)
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("assets/style.css"),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("assets/live.js"),
    )
        .into_response()
}

/// The sign-in form.
#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    token: String,
    /// The pre-session token (`auth::LOGIN_COOKIE`).
    #[serde(default)]
    csrf: String,
}

async fn login(
    State(dash): State<Dash>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let signed_in = async {
        auth::check_login_csrf(&headers, &form.csrf)?;
        auth::sign_in(&dash, form.user.trim(), &form.password, form.token.trim()).await
    };
    match signed_in.await {
        Ok(id) => (
            AppendHeaders([
                (header::SET_COOKIE, auth::set_cookie(&id)),
                (header::SET_COOKIE, auth::clear_login_cookie()),
            ]),
            Redirect::to("/"),
        )
            .into_response(),
        Err(e) => {
            let status = match &e {
                ServerError::Dashboard(d) => d.status(),
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            pages::login_response(status, Some(&e))
        }
    }
}

/// A form that carries only the CSRF token.
#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(dash): State<Dash>,
    session: Session,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, ServerError> {
    if form.csrf.is_empty() || form.csrf != session.csrf {
        return Err(DashboardError::CsrfInvalid.into());
    }
    auth::sign_out(&dash, &headers).await?;
    Ok((
        [(header::SET_COOKIE, auth::clear_cookie())],
        Redirect::to("/dashboard/login"),
    )
        .into_response())
}

/// `POST /dashboard/rollouts/{id}/{halt|resume|pause}`: an operator's action, with the
/// session's CSRF token; back to the rollout's page.
async fn act(
    State(dash): State<Dash>,
    session: Session,
    Path((id, action)): Path<(i64, String)>,
    Form(form): Form<CsrfForm>,
) -> Response {
    match act_on(&dash, &session, id, &action, &form.csrf).await {
        Ok(()) => Redirect::to(&format!("/dashboard/rollouts/{id}")).into_response(),
        Err(e) => pages::error_page(e, Some(&session)),
    }
}

async fn act_on(
    dash: &Dash,
    session: &Session,
    id: i64,
    action: &str,
    csrf: &str,
) -> Result<(), ServerError> {
    session.check_action(csrf)?;
    let action = match action {
        "halt" => Action::Halt,
        "resume" => Action::Resume,
        "pause" => Action::Pause,
        _ => {
            return Err(DashboardError::UnknownAction {
                action: action.into(),
            }
            .into());
        }
    };
    dash.db.act_on_rollout_by(id, action, &session.user).await?;
    tracing::info!(rollout = id, action = action.as_str(), user = %session.user, "dashboard action");
    dash.feed.rollout_changed(id);
    Ok(())
}
