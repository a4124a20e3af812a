//! A global limit on requests in progress. Beyond it a request is answered
//! `503 overloaded` at once, with `Retry-After`, instead of waiting in a
//! queue that grows without bound. The owner's lock lifecycle, the health
//! checks and the pages draw on a small pool of their own, so apps at the
//! limit never keep the owner from unlocking or the consent page from
//! loading.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use super::problem::Problem;
use crate::wire::ErrorCode;

/// Requests the owner's routes may have in progress, apart from the rest.
const OWNER_POOL: usize = 16;

/// Permits for requests in progress: one pool for the API, one for the
/// owner's routes.
pub struct ConcurrencyLimit {
    api: Arc<Semaphore>,
    owner: Arc<Semaphore>,
}

impl ConcurrencyLimit {
    pub fn new(max_concurrent_requests: usize) -> ConcurrencyLimit {
        ConcurrencyLimit {
            api: Arc::new(Semaphore::new(max_concurrent_requests.max(1))),
            owner: Arc::new(Semaphore::new(OWNER_POOL)),
        }
    }
}

/// Routes the owner needs even while apps keep the server busy.
fn owner_route(path: &str) -> bool {
    matches!(
        path,
        "/" | "/healthz" | "/readyz" | "/v1/setup" | "/v1/unlock" | "/v1/lock" | "/oauth/authorize"
    ) || path.starts_with("/static/")
}

/// Holds a permit for the whole request, body included.
pub async fn limit(
    State(limit): State<Arc<ConcurrencyLimit>>,
    request: Request,
    next: Next,
) -> Response {
    let pool = if owner_route(request.uri().path()) {
        &limit.owner
    } else {
        &limit.api
    };
    let Ok(_permit) = pool.clone().try_acquire_owned() else {
        return Problem {
            retry_after_secs: Some(1),
            ..Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Overloaded,
                "the server is at its limit of concurrent requests; retry in a moment",
            )
        }
        .into_response();
    };
    next.run(request).await
}
