//! Health checks and the lock lifecycle: setup, unlock, lock.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use parking_lot::Mutex;
use zeroize::Zeroizing;

use super::auth::{session_cookie_header, Caller};
use super::problem::{ApiJson, BodyErrors, Problem};
use super::AppState;
use crate::keys::RecoveryKey;
use crate::lock::{LockError, LockStateName};
use crate::pending::merge::MergeReport;
use crate::store::SessionToken;
use crate::wire::lifecycle as wire;
use crate::wire::{ErrorCode, ProblemDetails};

/// Liveness: answers whenever the process runs.
#[utoipa::path(get, path = "/healthz", tag = "lifecycle", operation_id = "healthz",
    responses((status = 200, body = wire::Health)))]
pub async fn healthz() -> Json<wire::Health> {
    Json(wire::Health { status: "ok" })
}

/// Ready means unlocked; the body names the state either way.
#[utoipa::path(get, path = "/readyz", tag = "lifecycle", operation_id = "readyz", responses(
    (status = 200, description = "Unlocked", body = wire::Readiness),
    (status = 503, description = "Uninitialised, sealed or locked", body = wire::Readiness),
))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let lock_state = state.store.state();
    let status = if lock_state == LockStateName::Unlocked {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(wire::Readiness { state: lock_state })).into_response()
}

/// Token buckets per client address, for the endpoints that take
/// passphrases, setup codes and tokens: one noisy host on the network cannot
/// starve the others, and cannot lock the owner out.
pub struct PerClientLimiter {
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
    per_second: f64,
    burst: f64,
}

/// Most addresses tracked; full buckets are forgotten beyond this.
const MAX_TRACKED_CLIENTS: usize = 4096;

impl PerClientLimiter {
    pub fn new(per_minute: u32, burst: u32) -> PerClientLimiter {
        PerClientLimiter {
            buckets: Mutex::new(HashMap::new()),
            per_second: per_minute as f64 / 60.0,
            burst: burst as f64,
        }
    }

    pub(crate) fn take(&self, client: IpAddr) -> Result<(), Problem> {
        let mut buckets = self.buckets.lock();
        let now = Instant::now();
        if buckets.len() >= MAX_TRACKED_CLIENTS {
            let (rate, burst) = (self.per_second, self.burst);
            buckets
                .retain(|_, (t, last)| *t + now.duration_since(*last).as_secs_f64() * rate < burst);
        }
        let (tokens, last) = buckets.entry(client).or_insert((self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*last).as_secs_f64() * self.per_second).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - *tokens) / self.per_second).ceil() as u64;
            Err(too_many(Duration::from_secs(wait)))
        }
    }
}

fn too_many(retry_after: Duration) -> Problem {
    Problem {
        retry_after_secs: Some(retry_after.as_secs().max(1)),
        ..Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TooManyAttempts,
            "too many attempts; wait before trying again",
        )
    }
}

pub(super) fn lock_problem(e: LockError) -> Problem {
    match e {
        LockError::WrongPassphrase => Problem::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::WrongPassphrase,
            "wrong passphrase",
        ),
        LockError::WrongSetupCode => Problem::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::WrongSetupCode,
            "wrong setup code",
        ),
        LockError::BackOff { retry_after } => too_many(retry_after),
        LockError::AlreadyInitialised => Problem::new(
            StatusCode::CONFLICT,
            ErrorCode::AlreadyInitialised,
            "the store is already initialised",
        ),
        LockError::NotInitialised => Problem::new(
            StatusCode::CONFLICT,
            ErrorCode::StoreUninitialised,
            "the store is not initialised yet",
        ),
        e @ LockError::WeakPassphrase => Problem::invalid(None, "passphrase", e.to_string()),
        e @ LockError::Tampered { .. } => {
            tracing::error!(error = %e, "unlock refused");
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::LogTampered,
                e.to_string(),
            )
        }
        e @ LockError::RolledBack(_) => {
            tracing::error!(error = %e, "unlock refused");
            Problem::new(
                StatusCode::CONFLICT,
                ErrorCode::RollbackDetected,
                e.to_string(),
            )
        }
        LockError::Storage(e) => {
            tracing::error!(error = %e, "unlock failed");
            Problem::internal()
        }
        LockError::WrongRecoveryKey => Problem::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::WrongRecoveryKey,
            "wrong recovery key",
        ),
        e @ LockError::MalformedRecoveryKey => {
            Problem::invalid(None, "recovery_key", e.to_string())
        }
        // Key files are read from disk at start, never sent over HTTP.
        LockError::WrongKeyFile => Problem::unauthenticated(),
        e @ LockError::KeySlot(_) => {
            tracing::error!(error = %e, "key slot refused");
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::KeySlotInvalid,
                e.to_string(),
            )
        }
        LockError::NoSuchKeySlot(_) => Problem::not_found(),
    }
}

fn session_response(
    token: SessionToken,
    recovery_key: Option<RecoveryKey>,
    secure: bool,
    pending: Option<MergeReport>,
) -> Response {
    let mut response = Json(wire::Session {
        token: token.0.as_str().to_string(),
        state: LockStateName::Unlocked,
        recovery_key: recovery_key.map(|k| Zeroizing::new(k.as_str().to_string())),
        pending,
    })
    .into_response();
    if let Some(v) = session_cookie_header(token.0.as_str(), secure) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// First-run setup with the code printed on the server console.
#[utoipa::path(post, path = "/v1/setup", tag = "lifecycle", operation_id = "setup",
    request_body = wire::SetupRequest,
    responses(
        (status = 200, description = "Initialised and unlocked; the body holds the recovery key, shown this once", body = wire::Session),
        (status = 400, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Wrong setup code", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Already initialised", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "Back-off after failures", body = ProblemDetails, content_type = "application/problem+json"),
        BodyErrors,
    ))]
pub async fn setup(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<wire::SetupRequest>,
) -> Result<Response, Problem> {
    state.passphrase_limiter.take(peer.ip())?;
    let (token, recovery_key) = state
        .store
        .setup_with_recovery(&body.setup_code, &body.passphrase, Some(peer.ip()))
        .await
        .map_err(lock_problem)?;
    Ok(session_response(token, Some(recovery_key), state.tls, None))
}

/// Unlocks with the passphrase (or the recovery key) and opens an owner
/// session.
#[utoipa::path(post, path = "/v1/unlock", tag = "lifecycle", operation_id = "unlock",
    request_body = wire::UnlockRequest,
    responses(
        (status = 200, description = "Unlocked", body = wire::Session),
        (status = 400, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "Wrong passphrase or recovery key", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Not initialised", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "Back-off after failures", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 500, description = "The log failed verification, or a key slot is invalid", body = ProblemDetails, content_type = "application/problem+json"),
        BodyErrors,
    ))]
pub async fn unlock(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<wire::UnlockRequest>,
) -> Result<Response, Problem> {
    state.passphrase_limiter.take(peer.ip())?;
    let secret = super::keys::secret(&body.passphrase, &body.recovery_key)?;
    let token = state
        .store
        .unlock_with(secret, Some(peer.ip()))
        .await
        .map_err(lock_problem)?;
    let merged = state.store.pending().take_merge_report();
    Ok(session_response(token, None, state.tls, merged))
}

/// Locks: keys and projection are wiped; every owner session ends.
#[utoipa::path(post, path = "/v1/lock", tag = "lifecycle", operation_id = "lock",
    responses(
        (status = 204, description = "Locked"),
        (status = 401, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Only the owner may lock", body = ProblemDetails, content_type = "application/problem+json"),
    ),
    security(("owner" = [])))]
pub async fn lock(State(state): State<AppState>, caller: Caller) -> Result<StatusCode, Problem> {
    if !caller.is_owner() {
        return Err(Problem::owner_only());
    }
    state.store.lock().await;
    Ok(StatusCode::NO_CONTENT)
}
