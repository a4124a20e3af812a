//! The HTTP API.

pub mod auth;
mod changes;
mod characteristics;
mod composed;
mod lifecycle;
pub mod problem;
mod samples;
mod sources;
mod statistics;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use tower_http::timeout::TimeoutLayer;

use crate::lock::Store;
use lifecycle::RateLimiter;
use problem::Problem;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    passphrase_limiter: Arc<RateLimiter>,
}

pub struct Limits {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
}

pub fn router(store: Arc<Store>, limits: Limits) -> Router {
    let state = AppState {
        store,
        // Argon2id per attempt already makes guessing slow; this also caps
        // how much CPU anyone on the network can make us burn.
        passphrase_limiter: Arc::new(RateLimiter::new(30, 10)),
    };
    Router::new()
        .route("/", get(lifecycle::unlock_page))
        .route("/static/unlock.js", get(lifecycle::unlock_script))
        .route("/healthz", get(lifecycle::healthz))
        .route("/readyz", get(lifecycle::readyz))
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
        .fallback(|| async { Problem::not_found() })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this method is not allowed here",
            )
        })
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(middleware::from_fn(security_headers))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .with_state(state)
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
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    response
}

impl IntoResponse for crate::lock::Unavailable {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}
