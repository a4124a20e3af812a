//! The owner's summary: which types it shows first. The choice is the
//! owner's alone and is kept in the log, encrypted, like the data: the
//! types someone watches say something about their health.

use axum::http::StatusCode;
use axum::Json;

use super::auth::{Access, Caller};
use super::problem::{ApiJson, BodyErrors, CommonErrors, Problem};
use crate::catalogue;
use crate::log::writer::Write;
use crate::wire::queries::PinnedTypes;
use crate::wire::{ErrorCode, ProblemDetails};

/// Pins a summary shows at most: a summary, not the whole catalogue.
const MAX_PINNED: usize = 12;

/// The types pinned to the owner's summary, in order.
#[utoipa::path(get, path = "/v1/owner/pinned-types", tag = "queries", operation_id = "get_pinned_types",
    responses(
        (status = 200, body = PinnedTypes),
        (status = 403, description = "Only the owner may read them", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors,
    ),
    security(("owner" = [])))]
pub async fn get_pinned(access: Access) -> Result<Json<PinnedTypes>, Problem> {
    if !matches!(access.caller, Caller::Owner) {
        return Err(Problem::owner_only());
    }
    Ok(Json(PinnedTypes {
        types: access.view.pinned_types(),
    }))
}

/// Sets the types pinned to the owner's summary, replacing the previous
/// set; an empty list unpins every type.
#[utoipa::path(put, path = "/v1/owner/pinned-types", tag = "queries", operation_id = "set_pinned_types",
    request_body = PinnedTypes,
    responses(
        (status = 200, description = "The types now pinned", body = PinnedTypes),
        (status = 403, description = "Only the owner may pin types", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors, BodyErrors,
    ),
    security(("owner" = [])))]
pub async fn put_pinned(
    access: Access,
    ApiJson(body): ApiJson<PinnedTypes>,
) -> Result<Json<PinnedTypes>, Problem> {
    if !matches!(access.caller, Caller::Owner) {
        return Err(Problem::owner_only());
    }
    let type_ids = validate(body.types)?;
    access
        .open
        .writer
        .write(Write::PinTypes {
            type_ids: type_ids.clone(),
        })
        .await
        .map_err(|_| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::StorageUnavailable,
                "the pinned types were not stored",
            )
        })?;
    Ok(Json(PinnedTypes { types: type_ids }))
}

/// Catalogue ids of types that can be charted (characteristics have no
/// figures), none twice, at most [`MAX_PINNED`].
fn validate(types: Vec<String>) -> Result<Vec<String>, Problem> {
    if types.len() > MAX_PINNED {
        return Err(Problem::invalid(
            None,
            "types",
            format!("at most {MAX_PINNED} types"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(types.len());
    for (i, id) in types.into_iter().enumerate() {
        let Some(ty) = catalogue::lookup(&id).map(catalogue::get) else {
            return Err(Problem::invalid(
                None,
                "types",
                format!("entry {i}: no such type"),
            ));
        };
        if ty.is_characteristic() {
            return Err(Problem::invalid(
                None,
                "types",
                format!("entry {i}: characteristics cannot be pinned"),
            ));
        }
        if out.iter().any(|o| o == ty.id) {
            return Err(Problem::invalid(
                None,
                "types",
                format!("entry {i}: listed twice"),
            ));
        }
        out.push(ty.id.to_string());
    }
    Ok(out)
}
