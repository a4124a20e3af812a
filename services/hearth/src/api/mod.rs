//! The HTTP API.

pub(crate) mod apps;
pub(crate) mod audit;
pub mod auth;
mod bulk;
mod changes;
mod characteristics;
pub(crate) mod erasure;
mod export;
pub mod host;
mod imports;
mod inflight;
mod ingest;
pub(crate) mod keys;
mod lifecycle;
mod oauth;
pub mod openapi;
mod overload;
mod privacy;
pub mod problem;
pub(crate) mod research;
pub(crate) mod samples;
pub(crate) mod sources;
pub(crate) mod statistics;
mod status;
pub(crate) mod summary;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::oauth::OAuthState;
use crate::store::Store;
use crate::wire::ErrorCode;
use lifecycle::PerClientLimiter;
use problem::Problem;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub(crate) passphrase_limiter: Arc<PerClientLimiter>,
    pub(crate) token_limiter: Arc<PerClientLimiter>,
    pub(crate) authorize_limiter: Arc<PerClientLimiter>,
    pub(crate) oauth: Arc<OAuthState>,
    /// The URL apps reach this store by; the OAuth issuer.
    pub(crate) public_url: Option<String>,
    /// Served over HTTPS: session cookies are `Secure`.
    pub(crate) tls: bool,
    /// Open observer streams, capped per token and in all.
    pub(crate) observers: Arc<changes::StreamSlots>,
    /// Import jobs, and the largest export an upload may be.
    pub(crate) imports: Arc<crate::import::Imports>,
    pub(crate) max_import_bytes: u64,
    /// How long an upload may go without a byte before it is dropped.
    pub(crate) upload_idle: Duration,
    /// Studies' access tokens and fetched key sets.
    pub(crate) research: Arc<crate::research::Research>,
}

pub struct Limits {
    pub max_body_bytes: usize,
    /// Requests in progress at once; more are answered `503 overloaded`.
    pub max_concurrent_requests: usize,
    pub request_timeout: Duration,
    pub public_url: Option<String>,
    /// The names requests may give as `Host`.
    pub allowed_hosts: host::AllowedHosts,
    /// The certificate's fingerprint when serving HTTPS: cookies are then
    /// `Secure` and responses carry HSTS.
    pub tls_fingerprint: Option<String>,
    /// The largest export `POST /v1/imports` takes, in bytes.
    pub max_import_bytes: u64,
    /// Where research export files are written; no exports run without.
    pub export_dir: Option<std::path::PathBuf>,
}

pub fn router(store: Arc<Store>, limits: Limits) -> Router {
    let tls = limits.tls_fingerprint.is_some();
    let state = AppState {
        store,
        // Argon2id per attempt already makes guessing slow; this also caps
        // how much CPU anyone on the network can make us burn.
        passphrase_limiter: Arc::new(PerClientLimiter::new(30, 10)),
        // Token requests are cheap, but each may append to the log.
        token_limiter: Arc::new(PerClientLimiter::new(300, 60)),
        // Each consent page holds a pending request in memory.
        authorize_limiter: Arc::new(PerClientLimiter::new(60, 30)),
        oauth: Arc::new(OAuthState::default()),
        public_url: limits.public_url.clone(),
        tls,
        observers: Arc::default(),
        imports: Arc::default(),
        max_import_bytes: limits.max_import_bytes,
        upload_idle: limits.request_timeout,
        research: Arc::default(),
    };
    if let Some(dir) = limits.export_dir.clone() {
        state.research.exports.set_dir(dir);
        state.research.exports.spawn_runner(&state.store);
    }
    let (routes, _) = documented_routes().split_for_parts();
    let router = routes
        // Pages and their assets: not part of the JSON API.
        .merge(crate::web::routes(limits.tls_fingerprint))
        .merge(crate::web::study::routes())
        .merge(crate::web::data::routes())
        .merge(crate::web::apps::routes())
        .merge(crate::web::access::routes())
        .merge(crate::web::settings::routes())
        .route("/privacy", axum::routing::get(privacy::page))
        .fallback(|| async { Problem::not_found() })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                ErrorCode::MethodNotAllowed,
                "this method is not allowed here",
            )
        })
        .layer(middleware::from_fn_with_state(
            state.store.clone(),
            inflight::reads_finish_before_lock,
        ))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            Arc::new(overload::ConcurrencyLimit::new(
                limits.max_concurrent_requests,
            )),
            overload::limit,
        ))
        .layer(middleware::from_fn(crate::telemetry::record_request))
        .layer(middleware::from_fn_with_state(
            Arc::new(limits.allowed_hosts),
            host::check_host,
        ))
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn_with_state(
            limits.request_timeout,
            request_deadline,
        ))
        .with_state(state);
    if tls {
        // Browsers that reached us over HTTPS keep to it.
        router.layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        ))
    } else {
        router
    }
}

/// Answers `408` to a request that takes longer than `timeout`. An export
/// upload is exempt: gigabytes take longer than that on a home network, so
/// its handler drops it instead when no byte arrives for as long.
async fn request_deadline(
    State(timeout): State<Duration>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    if req.method() == axum::http::Method::POST && req.uri().path() == "/v1/imports" {
        return next.run(req).await;
    }
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => StatusCode::REQUEST_TIMEOUT.into_response(),
    }
}

/// Every API route, registered together with its OpenAPI operation: a route
/// cannot exist undocumented, and the description lists nothing the server
/// does not route.
/// The largest body the endpoints that take passphrases, setup codes and
/// tokens read: theirs are a few hundred bytes, and nothing larger is read
/// (let alone parsed) before a rate limit has had its say.
const CREDENTIAL_BODY_BYTES: usize = 4096;

pub(crate) fn documented_routes() -> OpenApiRouter<AppState> {
    let credentials = OpenApiRouter::new()
        .routes(routes!(lifecycle::setup))
        .routes(routes!(lifecycle::unlock))
        .routes(routes!(oauth::token))
        .routes(routes!(oauth::revoke))
        .routes(routes!(keys::change_passphrase))
        .routes(routes!(keys::recreate_recovery_key))
        .routes(routes!(keys::add_slot, keys::list_slots))
        .layer(DefaultBodyLimit::max(CREDENTIAL_BODY_BYTES));
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(lifecycle::healthz))
        .routes(routes!(lifecycle::readyz))
        .merge(credentials)
        .routes(routes!(lifecycle::lock))
        .routes(routes!(samples::types))
        .routes(routes!(samples::add, samples::list))
        .routes(routes!(samples::get_one, samples::delete))
        .routes(routes!(statistics::statistics))
        .routes(routes!(statistics::buckets))
        .routes(routes!(statistics::workout))
        .routes(routes!(sources::list))
        .routes(routes!(sources::get_priority, sources::put_priority))
        .routes(routes!(characteristics::get, characteristics::put))
        .routes(routes!(summary::get_pinned, summary::put_pinned))
        .routes(routes!(changes::changes))
        .routes(routes!(changes::observe))
        .routes(routes!(status::write_status))
        .routes(routes!(status::request_status))
        .routes(routes!(apps::create, apps::list))
        .routes(routes!(apps::get_one, apps::update, apps::remove))
        .routes(routes!(apps::set_grants))
        .routes(routes!(apps::mint_credential, apps::list_credentials))
        .routes(routes!(apps::revoke_credential))
        .routes(routes!(oauth::metadata))
        .routes(routes!(oauth::authorize, oauth::decide))
        .routes(routes!(openapi::serve_spec))
        .routes(routes!(keys::revoke_slot))
        .routes(routes!(erasure::erase_source))
        .routes(routes!(erasure::erase_type))
        .routes(routes!(erasure::erase_source_family))
        .routes(routes!(erasure::rotate_keys))
        .merge(
            // An export is streamed to a file: the JSON body cap does not apply.
            OpenApiRouter::new()
                .routes(routes!(imports::create))
                .layer(DefaultBodyLimit::disable()),
        )
        .routes(routes!(imports::get_one))
        .routes(routes!(ingest::health_auto_export))
        .routes(routes!(export::export))
        .routes(routes!(research::create, research::list))
        .routes(routes!(research::get_one, research::remove))
        .routes(routes!(research::get_consent, research::give_consent))
        .routes(routes!(research::receipt))
        .routes(routes!(research::withdraw))
        .routes(routes!(research::jwks))
        .routes(routes!(research::smart_configuration))
        .routes(routes!(research::fhir_smart_configuration))
        .merge(
            OpenApiRouter::new()
                .routes(routes!(research::token))
                .layer(DefaultBodyLimit::max(CREDENTIAL_BODY_BYTES * 8)),
        )
        .routes(routes!(audit::list))
        .routes(routes!(privacy::notice))
        .routes(routes!(bulk::group_export))
        .routes(routes!(bulk::patient_export))
        .routes(routes!(bulk::status, bulk::delete))
        .routes(routes!(bulk::file))
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
