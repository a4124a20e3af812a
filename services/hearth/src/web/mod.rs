//! Pages for the owner's browser: the unlock and setup page, the pages of
//! the OAuth consent flow, and the privacy notice.
//!
//! Pages are askama templates (in `templates/`, checked at compile time,
//! HTML-escaped by default) that extend `base.html`; scripts and styles are
//! served from `/static/`, never inline, so the content security policy can
//! forbid inline code.

pub mod access;
pub mod apps;
pub mod chart;
pub mod consent;
pub mod data;
pub mod owner;
pub mod privacy;
pub mod settings;
pub mod study;

use askama::Template;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const UNLOCK_SCRIPT: &str = include_str!("static/unlock.js");
const CONSENT_SCRIPT: &str = include_str!("static/consent.js");
const CONSENT_STYLE: &str = include_str!("static/consent.css");
const PAGES_STYLE: &str = include_str!("static/pages.css");
const IMPORT_SCRIPT: &str = include_str!("static/import.js");
const IDLE_SCRIPT: &str = include_str!("static/idle.js");

/// The pages that need no state, and the static assets of every page.
/// `tls_fingerprint` is the certificate's SHA-256 fingerprint when Hearth
/// serves HTTPS itself: the home page shows it, so the owner can compare it
/// with what a browser or phone was shown.
pub fn routes<S>(tls_fingerprint: Option<String>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let home = UnlockPage {
        tls_fingerprint: tls_fingerprint.map(Into::into),
    };
    Router::new()
        .route("/", get(move || unlock_page(home.clone())))
        .route(
            "/static/unlock.js",
            get(|| asset(JAVASCRIPT, UNLOCK_SCRIPT)),
        )
        .route(
            "/static/consent.js",
            get(|| asset(JAVASCRIPT, CONSENT_SCRIPT)),
        )
        .route("/static/consent.css", get(|| asset(CSS, CONSENT_STYLE)))
        .route("/static/pages.css", get(|| asset(CSS, PAGES_STYLE)))
        .route(
            "/static/import.js",
            get(|| asset(JAVASCRIPT, IMPORT_SCRIPT)),
        )
        .route("/static/idle.js", get(|| asset(JAVASCRIPT, IDLE_SCRIPT)))
}

/// A type's (or value's) id as a page shows it: `step_count` → `Step count`.
pub fn display_name(id: &str) -> String {
    let spaced = id.replace('_', " ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().collect::<String>() + chars.as_str(),
        None => spaced,
    }
}

/// A rendered page with `status`. Pages send `Referrer-Policy:
/// same-origin`: with `no-referrer` a browser posts their forms with
/// `Origin: null`, which cannot be told from a cross-site post and is
/// refused; `same-origin` still tells no other site anything.
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => {
            let mut response = (status, Html(html)).into_response();
            response.headers_mut().insert(
                header::REFERRER_POLICY,
                header::HeaderValue::from_static("same-origin"),
            );
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "a page failed to render");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The home page: unlock the store, or set it up on first run. It asks the
/// API for the lock state itself, so it is the same page in every state.
#[derive(Clone, Template)]
#[template(path = "unlock.html")]
struct UnlockPage {
    tls_fingerprint: Option<std::sync::Arc<str>>,
}

async fn unlock_page(page: UnlockPage) -> Response {
    render(StatusCode::OK, &page)
}

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}
