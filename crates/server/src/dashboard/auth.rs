//! Who may open the dashboard: users (`ferry server user add`, argon2id password hashes),
//! sessions (a random id in an HttpOnly, Secure, SameSite=Strict cookie, only its SHA-256
//! stored, with an expiry) and the CSRF token each session's forms carry.

use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};

use super::{Dash, DashboardError};
use crate::ServerError;
use crate::db::Db;

/// The session cookie's name.
pub const COOKIE: &str = "ferry_session";
/// The sign-in form's pre-session cookie: a random token the form must carry back (double
/// submit), so another site cannot sign a browser in as the attacker. `__Host-`: only
/// this origin, over HTTPS, may set it.
pub const LOGIN_COOKIE: &str = "__Host-ferry_login";
/// How long a sign-in form stays good.
pub const LOGIN_SECS: i64 = 60 * 60;
/// How long a session lasts after signing in.
pub const SESSION_SECS: i64 = 12 * 60 * 60;

/// What a signed-in person may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reads every page.
    Viewer,
    /// Reads, and halts, resumes and pauses rollouts.
    Operator,
}

impl Role {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }

    /// The stored spelling read back.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            _ => None,
        }
    }
}

/// A signed-in browser, as a handler sees it.
#[derive(Debug, Clone)]
pub struct Session {
    /// The user (`admin` for the admin token).
    pub user: String,
    /// What they may do.
    pub role: Role,
    /// The token every form of this session carries.
    pub csrf: String,
}

impl Session {
    /// Refuses unless the session may change things and `csrf` is its token.
    pub fn check_action(&self, csrf: &str) -> Result<(), DashboardError> {
        if !constant_time_eq(csrf.as_bytes(), self.csrf.as_bytes()) || csrf.is_empty() {
            return Err(DashboardError::CsrfInvalid);
        }
        if self.role != Role::Operator {
            return Err(DashboardError::NotOperator {
                user: self.user.clone(),
            });
        }
        Ok(())
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks a user name: 1–64 letters, digits, `.`, `_`, `-` (and not `admin`, the admin
/// token's name).
fn check_name(name: &str) -> Result<(), DashboardError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && name != "admin";
    if ok {
        Ok(())
    } else {
        Err(DashboardError::UserNameInvalid { name: name.into() })
    }
}

impl Db {
    /// Adds a dashboard user (or replaces their password and role when `replace`).
    pub async fn add_dashboard_user(
        &self,
        name: &str,
        role: Role,
        password: &str,
        replace: bool,
    ) -> Result<(), ServerError> {
        check_name(name)?;
        if password.chars().count() < 8 {
            return Err(DashboardError::PasswordTooShort.into());
        }
        let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
            .map_err(|e| DashboardError::Hash(e.to_string()))?;
        let hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| DashboardError::Hash(e.to_string()))?
            .to_string();
        let sql = if replace {
            "INSERT INTO dashboard_users (name, role, password_hash, created_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET role = excluded.role, password_hash = excluded.password_hash"
        } else {
            "INSERT INTO dashboard_users (name, role, password_hash, created_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO NOTHING"
        };
        let done = sqlx::query(sql)
            .bind(name)
            .bind(role.as_str())
            .bind(hash)
            .bind(now_ms())
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(DashboardError::UserExists { name: name.into() }.into());
        }
        // A changed password ends the user's sessions.
        sqlx::query("DELETE FROM dashboard_sessions WHERE user_name = $1")
            .bind(name)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The user's role if `password` is theirs.
    async fn check_password(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<Role>, ServerError> {
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT role, password_hash FROM dashboard_users WHERE name = $1")
                .bind(name)
                .fetch_optional(self.pool())
                .await?;
        let Some((role, hash)) = row else {
            return Ok(None);
        };
        let parsed = PasswordHash::new(&hash).map_err(|e| DashboardError::Hash(e.to_string()))?;
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(ok.then(|| Role::parse(&role)).flatten())
    }

    /// Starts a session; returns the cookie value (the only copy of the id).
    async fn start_session(&self, user: &str, role: Role) -> Result<String, ServerError> {
        let id = random_hex();
        let now = now_ms();
        sqlx::query("DELETE FROM dashboard_sessions WHERE expires_ms < $1")
            .bind(now)
            .execute(self.pool())
            .await?;
        sqlx::query(
            "INSERT INTO dashboard_sessions (id_sha256, user_name, role, csrf, created_ms, expires_ms)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(sha256_hex(&id))
        .bind(user)
        .bind(role.as_str())
        .bind(random_hex())
        .bind(now)
        .bind(now + SESSION_SECS * 1000)
        .execute(self.pool())
        .await?;
        Ok(id)
    }

    /// The unexpired session whose cookie value is `id`.
    async fn session(&self, id: &str) -> Result<Option<Session>, ServerError> {
        let row: Option<(String, String, String)> = sqlx::query_as(
            "SELECT user_name, role, csrf FROM dashboard_sessions
             WHERE id_sha256 = $1 AND expires_ms > $2",
        )
        .bind(sha256_hex(id))
        .bind(now_ms())
        .fetch_optional(self.pool())
        .await?;
        Ok(row.and_then(|(user, role, csrf)| {
            Some(Session {
                user,
                role: Role::parse(&role)?,
                csrf,
            })
        }))
    }

    async fn end_session(&self, id: &str) -> Result<(), ServerError> {
        sqlx::query("DELETE FROM dashboard_sessions WHERE id_sha256 = $1")
            .bind(sha256_hex(id))
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

/// The session cookie's value in `headers`, if any.
pub fn cookie(headers: &HeaderMap) -> Option<String> {
    cookie_named(headers, COOKIE)
}

fn cookie_named(headers: &HeaderMap, wanted: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| value.to_owned())
}

/// A new sign-in form's token and the `Set-Cookie` value that stores it.
pub fn login_token() -> (String, String) {
    let token = random_hex();
    let cookie = format!(
        "{LOGIN_COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={LOGIN_SECS}"
    );
    (token, cookie)
}

/// The `Set-Cookie` value that removes the sign-in form's cookie.
pub fn clear_login_cookie() -> String {
    format!("{LOGIN_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0")
}

/// Refuses a sign-in form whose `csrf` field is not the token in its pre-session cookie
/// (a form posted from another site, or without first loading the sign-in page).
pub fn check_login_csrf(headers: &HeaderMap, csrf: &str) -> Result<(), DashboardError> {
    match cookie_named(headers, LOGIN_COOKIE) {
        Some(token) if !csrf.is_empty() && constant_time_eq(token.as_bytes(), csrf.as_bytes()) => {
            Ok(())
        }
        _ => Err(DashboardError::CsrfInvalid),
    }
}

/// The `Set-Cookie` value that stores `id`.
pub fn set_cookie(id: &str) -> String {
    format!("{COOKIE}={id}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={SESSION_SECS}")
}

/// The `Set-Cookie` value that removes the cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0")
}

/// Signs in with the admin token (as `admin`, an operator) or a user's password; the
/// new session's cookie value.
pub async fn sign_in(
    dash: &Dash,
    user: &str,
    password: &str,
    token: &str,
) -> Result<String, ServerError> {
    if !token.is_empty() {
        if constant_time_eq(token.as_bytes(), dash.admin_token.as_bytes()) {
            return dash.db.start_session("admin", Role::Operator).await;
        }
        return Err(DashboardError::SignInFailed.into());
    }
    match dash.db.check_password(user, password).await? {
        Some(role) => dash.db.start_session(user, role).await,
        None => Err(DashboardError::SignInFailed.into()),
    }
}

/// Ends the session in `headers`, if any.
pub async fn sign_out(dash: &Dash, headers: &HeaderMap) -> Result<(), ServerError> {
    if let Some(id) = cookie(headers) {
        dash.db.end_session(&id).await?;
    }
    Ok(())
}

impl FromRequestParts<Dash> for Session {
    type Rejection = axum::response::Response;

    async fn from_request_parts(parts: &mut Parts, dash: &Dash) -> Result<Self, Self::Rejection> {
        use axum::response::IntoResponse;
        let found = match cookie(&parts.headers) {
            Some(id) => dash.db.session(&id).await.map_err(|e| e.into_response())?,
            None => None,
        };
        match found {
            Some(session) => Ok(session),
            None => Err(super::not_signed_in(parts)),
        }
    }
}
