//! Who is calling: the owner (session token) or an app (an OAuth access
//! token or a credential the owner minted).
//!
//! Data endpoints take [`Access`], which checks the lock state first (the
//! same answer for every caller) and then the caller's credentials.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method};

use super::problem::Problem;
use super::AppState;
use crate::apps::Apps;
pub use crate::caller::Caller;
use crate::store::OpenStore;
use crate::view::View;

pub const SESSION_COOKIE: &str = "hearth_session";

/// The `Set-Cookie` value of an owner session: never readable by scripts,
/// never sent cross-site, and over HTTPS never sent over plain HTTP.
pub(crate) fn session_cookie_header(token: &str, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200{secure}"
    ))
    .ok()
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
}

/// A cookie rides along on cross-site requests from the same host (another
/// port is the same site): state-changing requests authenticated by cookie
/// must come from our own origin.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        if site != "same-origin" && site != "none" {
            return false;
        }
    }
    match (headers.get(header::ORIGIN), headers.get(header::HOST)) {
        (None, _) => true,
        (Some(origin), Some(host)) => {
            let origin = origin.to_str().unwrap_or("");
            let host = host.to_str().unwrap_or("");
            origin == format!("http://{host}") || origin == format!("https://{host}")
        }
        (Some(_), None) => false,
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        if let Some(token) = bearer(parts) {
            if state.store.is_owner_session(token) {
                state.store.note_owner_activity();
                return Ok(Caller::Owner);
            }
            if state.store.registry_loaded() {
                if let Some(app) = state.store.apps().authenticate(token) {
                    return Ok(Caller::App(app));
                }
            }
            return Err(Problem::unauthenticated());
        }
        if let Some(token) = session_cookie(&parts.headers) {
            let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
            if state.store.is_owner_session(token) && (safe || same_origin(&parts.headers)) {
                state.store.note_owner_activity();
                return Ok(Caller::Owner);
            }
        }
        Err(Problem::unauthenticated())
    }
}

/// An authenticated caller of an unlocked store: what it may read (`view`)
/// and where its writes go (`open.writer`).
#[derive(Clone)]
pub struct Access {
    pub open: Arc<OpenStore>,
    pub view: View,
    pub caller: Caller,
    pub apps: Arc<Apps>,
}

impl FromRequestParts<AppState> for Access {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let open = state.store.open_store()?;
        let caller = Caller::from_request_parts(parts, state).await?;
        let apps = state.store.apps().clone();
        Ok(Access {
            view: open.view(caller.clone(), apps.clone()),
            open,
            caller,
            apps,
        })
    }
}

/// The owner, and only the owner, of an unlocked store.
#[derive(Clone)]
pub struct OwnerAccess(pub Access);

impl FromRequestParts<AppState> for OwnerAccess {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let access = Access::from_request_parts(parts, state).await?;
        if !access.caller.is_owner() {
            return Err(Problem::owner_only());
        }
        Ok(OwnerAccess(access))
    }
}
