//! The HTTP API.

pub mod auth;
mod changes;
mod characteristics;
mod composed;
pub mod host;
mod lifecycle;
pub mod openapi;
pub mod problem;
pub(crate) mod samples;
mod sources;
mod statistics;
mod status;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use axum::Router;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use crate::apps::http as apps;
use crate::oauth::http as oauth;
use crate::oauth::OAuthState;
use crate::store::Store;
use lifecycle::{PerClientLimiter, RateLimiter};
use problem::Problem;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub(crate) passphrase_limiter: Arc<RateLimiter>,
    pub(crate) token_limiter: Arc<PerClientLimiter>,
    pub(crate) authorize_limiter: Arc<PerClientLimiter>,
    pub(crate) oauth: Arc<OAuthState>,
    /// The URL apps reach this store by; the OAuth issuer.
    pub(crate) public_url: Option<String>,
    /// Served over HTTPS: session cookies are `Secure`.
    pub(crate) tls: bool,
}

pub struct Limits {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub public_url: Option<String>,
    /// The names requests may give as `Host`.
    pub allowed_hosts: host::AllowedHosts,
    /// Served over HTTPS: cookies are `Secure` and responses carry HSTS.
    pub tls: bool,
}

pub fn router(store: Arc<Store>, limits: Limits) -> Router {
    let state = AppState {
        store,
        // Argon2id per attempt already makes guessing slow; this also caps
        // how much CPU anyone on the network can make us burn.
        passphrase_limiter: Arc::new(RateLimiter::new(30, 10)),
        // Token requests are cheap, but each may append to the log.
        token_limiter: Arc::new(PerClientLimiter::new(300, 60)),
        // Each consent page holds a pending request in memory.
        authorize_limiter: Arc::new(PerClientLimiter::new(60, 30)),
        oauth: Arc::new(OAuthState::default()),
        public_url: limits.public_url.clone(),
        tls: limits.tls,
    };
    let router = Router::new()
        .route("/", get(lifecycle::unlock_page))
        .route("/static/unlock.js", get(lifecycle::unlock_script))
        .route("/healthz", get(lifecycle::healthz))
        .route("/readyz", get(lifecycle::readyz))
        .route("/openapi.yaml", get(openapi::serve_spec))
        .route("/v1/setup", post(lifecycle::setup))
        .route("/v1/unlock", post(lifecycle::unlock))
        .route("/v1/lock", post(lifecycle::lock))
        .route("/v1/types", get(samples::types))
        .route("/v1/samples", post(samples::add).get(samples::list))
        .route(
            "/v1/samples/{id}",
            get(samples::get_one).merge(delete(samples::delete)),
        )
        .route("/v1/statistics", get(statistics::statistics))
        .route("/v1/statistics/buckets", get(statistics::buckets))
        .route("/v1/sources", get(sources::list))
        .route(
            "/v1/sources/priority",
            put(sources::put_priority).merge(get(sources::get_priority)),
        )
        .route(
            "/v1/characteristics",
            get(characteristics::get).merge(put(characteristics::put)),
        )
        .route("/v1/workouts/{id}/statistics", get(statistics::workout))
        .route("/v1/changes", get(changes::changes))
        .route("/v1/observe", get(changes::observe))
        .route("/v1/authorization/status", get(status::write_status))
        .route(
            "/v1/authorization/request-status",
            get(status::request_status),
        )
        .route("/v1/apps", post(apps::create).get(apps::list))
        .route(
            "/v1/apps/{id}",
            get(apps::get_one).patch(apps::update).delete(apps::remove),
        )
        .route("/v1/apps/{id}/grants", patch(apps::set_grants))
        .route(
            "/v1/apps/{id}/credentials",
            post(apps::mint_credential).get(apps::list_credentials),
        )
        .route(
            "/v1/apps/{id}/credentials/{credential}",
            delete(apps::revoke_credential),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(oauth::metadata),
        )
        .route(
            "/oauth/authorize",
            get(oauth::authorize).post(oauth::decide),
        )
        .route("/oauth/token", post(oauth::token))
        .route("/oauth/revoke", post(oauth::revoke))
        .route("/static/consent.js", get(oauth::consent_script))
        .route("/static/consent.css", get(oauth::consent_style))
        .fallback(|| async { Problem::not_found() })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this method is not allowed here",
            )
        })
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(middleware::from_fn(crate::telemetry::record_request))
        .layer(middleware::from_fn_with_state(
            Arc::new(limits.allowed_hosts),
            host::check_host,
        ))
        .layer(middleware::from_fn(security_headers))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .with_state(state);
    if limits.tls {
        // Browsers that reached us over HTTPS keep to it.
        router.layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        ))
    } else {
        router
    }
}

/// Headers every response carries: no caching of health data, no sniffing,
/// no framing, no referrers, and a strict content policy for the page.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let too_large = response.status() == StatusCode::PAYLOAD_TOO_LARGE;
    let h = response.headers_mut();
    if too_large {
        // The rest of the body is never read: the connection cannot carry
        // another request, so tell the client not to reuse it.
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("no-referrer"));
    // A page may bring its own, stricter-tailored policy (the consent page).
    h.entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ));
    response
}

impl IntoResponse for crate::lock::Unavailable {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}
