//! The owner's keys: passphrase change, recovery key, key-file slots. The
//! work is [`crate::keys`]; these handlers check the caller and the body.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::Json;
use zeroize::Zeroizing;

use super::auth::OwnerAccess;
use super::lifecycle::lock_problem;
use super::problem::{ApiJson, ApiPath, BodyErrors, CommonErrors, Problem};
use super::AppState;
use crate::keys::{self, Secret};
use crate::wire::keys as wire;
use crate::wire::ProblemDetails;

/// The one secret a body gives: the passphrase or the recovery key.
pub(super) fn secret<'a>(
    passphrase: &'a Option<Zeroizing<String>>,
    recovery_key: &'a Option<Zeroizing<String>>,
) -> Result<Secret<'a>, Problem> {
    match (passphrase, recovery_key) {
        (Some(p), None) => Ok(Secret::Passphrase(p)),
        (None, Some(r)) => Ok(Secret::RecoveryKey(r)),
        _ => Err(Problem::invalid(
            None,
            "passphrase",
            "give either `passphrase` or `recovery_key`",
        )),
    }
}

/// Sets a new passphrase. Proven by the current passphrase or, when it is
/// lost, the recovery key; only the passphrase slot changes.
#[utoipa::path(post, path = "/v1/owner/passphrase", tag = "keys", operation_id = "change_passphrase",
    request_body = wire::PassphraseChange,
    responses(
        (status = 204, description = "Changed: the old passphrase no longer opens the store"),
        (status = 401, description = "No owner session, or wrong passphrase or recovery key", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Only the owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "Back-off after failures", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors, BodyErrors,
    ),
    security(("owner" = [])))]
pub async fn change_passphrase(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    _owner: OwnerAccess,
    ApiJson(body): ApiJson<wire::PassphraseChange>,
) -> Result<StatusCode, Problem> {
    state.passphrase_limiter.take(peer.ip())?;
    let current = secret(&body.passphrase, &body.recovery_key)?;
    keys::change_passphrase(&state.store, current, &body.new_passphrase, Some(peer.ip()))
        .await
        .map_err(lock_problem)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Makes a new recovery key, shown this once; the old one stops working.
#[utoipa::path(post, path = "/v1/owner/recovery", tag = "keys", operation_id = "recreate_recovery_key",
    request_body = wire::CurrentSecret,
    responses(
        (status = 200, description = "The new recovery key", body = wire::NewRecoveryKey),
        (status = 401, description = "No owner session, or wrong passphrase or recovery key", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Only the owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "Back-off after failures", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors, BodyErrors,
    ),
    security(("owner" = [])))]
pub async fn recreate_recovery_key(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    _owner: OwnerAccess,
    ApiJson(body): ApiJson<wire::CurrentSecret>,
) -> Result<Json<wire::NewRecoveryKey>, Problem> {
    state.passphrase_limiter.take(peer.ip())?;
    let current = secret(&body.passphrase, &body.recovery_key)?;
    let key = keys::recreate_recovery_key(&state.store, current, Some(peer.ip()))
        .await
        .map_err(lock_problem)?;
    Ok(Json(wire::NewRecoveryKey {
        recovery_key: Zeroizing::new(key.as_str().to_string()),
    }))
}

/// The key slots: their ids and kinds, nothing secret.
#[utoipa::path(get, path = "/v1/owner/keyslots", tag = "keys", operation_id = "list_key_slots",
    responses(
        (status = 200, body = wire::KeySlots),
        (status = 403, description = "Only the owner", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors,
    ),
    security(("owner" = [])))]
pub async fn list_slots(
    State(state): State<AppState>,
    _owner: OwnerAccess,
) -> Result<Json<wire::KeySlots>, Problem> {
    let slots = keys::list_slots(&**state.store.storage())
        .await
        .map_err(lock_problem)?;
    Ok(Json(wire::KeySlots { slots }))
}

/// Adds a key-file slot for unattended unlock; the answer holds the file's
/// contents, shown this once.
#[utoipa::path(post, path = "/v1/owner/keyslots", tag = "keys", operation_id = "add_key_slot",
    request_body = wire::CurrentSecret,
    responses(
        (status = 201, description = "The new slot and its key file", body = wire::NewKeySlot),
        (status = 401, description = "No owner session, or wrong passphrase or recovery key", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Only the owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "Back-off after failures", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors, BodyErrors,
    ),
    security(("owner" = [])))]
pub async fn add_slot(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    _owner: OwnerAccess,
    ApiJson(body): ApiJson<wire::CurrentSecret>,
) -> Result<(StatusCode, Json<wire::NewKeySlot>), Problem> {
    state.passphrase_limiter.take(peer.ip())?;
    let current = secret(&body.passphrase, &body.recovery_key)?;
    let (id, key_file) = keys::add_key_file_slot(&state.store, current, Some(peer.ip()))
        .await
        .map_err(lock_problem)?;
    Ok((StatusCode::CREATED, Json(wire::NewKeySlot { id, key_file })))
}

/// Revokes a key-file slot: its file no longer opens the store.
#[utoipa::path(delete, path = "/v1/owner/keyslots/{id}", tag = "keys", operation_id = "revoke_key_slot",
    params(("id" = i64, Path, description = "The slot's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "Only the owner", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No key-file slot of this id", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors,
    ),
    security(("owner" = [])))]
pub async fn revoke_slot(
    State(state): State<AppState>,
    _owner: OwnerAccess,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, Problem> {
    keys::revoke_key_file_slot(&**state.store.storage(), id)
        .await
        .map_err(lock_problem)?;
    Ok(StatusCode::NO_CONTENT)
}
