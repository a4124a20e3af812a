//! Erasure ("delete all data from this app", "of this type") and data-key
//! rotation: the owner's handles on the data keys. Erasure destroys keys
//! rather than hiding rows; see `keys::data_keys`.

use axum::Json;

use super::auth::{Access, OwnerAccess};
use super::problem::{ApiPath, CommonErrors, Problem};
use super::samples::write_problem;
use crate::samples::lookup_type;
use crate::wire::erasure as wire;
use crate::wire::ProblemDetails;

async fn erase(
    access: &Access,
    source: Option<String>,
    type_id: Option<String>,
) -> Result<Json<wire::Erasure>, Problem> {
    let (keys, samples) = access
        .open
        .erase(source, type_id)
        .await
        .map_err(write_problem)?;
    Ok(Json(wire::Erasure {
        keys_destroyed: keys,
        samples_erased: samples,
    }))
}

/// Deletes all data from this source (an app, or `owner`): destroys the
/// data keys its samples were sealed under, so they cannot be recovered
/// from the database, even with the passphrase. Apps reading the change
/// feed see the samples as deleted. Copies of the database taken before
/// keep the old keys: erasure is not retroactive for backups.
#[utoipa::path(delete, path = "/v1/sources/{source}", tag = "samples", operation_id = "erase_source",
    params(("source" = String, Path, description = "The source: an app id, or `owner`")),
    responses(
        (status = 200, description = "Erased", body = wire::Erasure),
        (status = 400, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Only the owner may erase", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors,
    ),
    security(("owner" = [])))]
pub async fn erase_source(
    OwnerAccess(access): OwnerAccess,
    ApiPath(source): ApiPath<String>,
) -> Result<Json<wire::Erasure>, Problem> {
    if source.is_empty() || source.len() > 128 {
        return Err(Problem::invalid(
            None,
            "source",
            "a source name has 1 to 128 bytes",
        ));
    }
    erase(&access, Some(source), None).await
}

/// Deletes every sample of a type, of every source: destroys the data keys
/// they were sealed under, as for a source.
#[utoipa::path(delete, path = "/v1/types/{type}/samples", tag = "samples", operation_id = "erase_type",
    params(("type" = String, Path, description = "A type id from `GET /v1/types`")),
    responses(
        (status = 200, description = "Erased", body = wire::Erasure),
        (status = 400, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Only the owner may erase", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors,
    ),
    security(("owner" = [])))]
pub async fn erase_type(
    OwnerAccess(access): OwnerAccess,
    ApiPath(type_id): ApiPath<String>,
) -> Result<Json<wire::Erasure>, Problem> {
    let ty = lookup_type(None, &type_id)?;
    erase(
        &access,
        None,
        Some(crate::catalogue::get(ty).id.to_string()),
    )
    .await
}

/// Deletes all data of an import family: every source named
/// `<family>:…` (an Apple Health import writes one such source per app or
/// device of the export, under the family `apple-health`), in one commit,
/// by destroying their data keys as for a single source.
#[utoipa::path(delete, path = "/v1/source-families/{family}", tag = "samples", operation_id = "erase_source_family",
    params(("family" = String, Path, description = "The family: the part of its sources' names before `:`, e.g. `apple-health`")),
    responses(
        (status = 200, description = "Erased", body = wire::FamilyErasure),
        (status = 400, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Only the owner may erase", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors,
    ),
    security(("owner" = [])))]
pub async fn erase_source_family(
    OwnerAccess(access): OwnerAccess,
    ApiPath(family): ApiPath<String>,
) -> Result<Json<wire::FamilyErasure>, Problem> {
    let valid = !family.is_empty()
        && family.len() <= 64
        && family
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !valid {
        return Err(Problem::invalid(
            None,
            "family",
            "a family has 1 to 64 letters, digits, `-`, `_` or `.`",
        ));
    }
    let (keys, samples, sources) = access
        .open
        .erase_family(family)
        .await
        .map_err(write_problem)?;
    Ok(Json(wire::FamilyErasure {
        sources,
        keys_destroyed: keys,
        samples_erased: samples,
    }))
}

/// Rotates the data keys: every record written after the answer is sealed
/// under a new key of its source and type. Records written before stay
/// under their old keys (which stay stored and keep opening them); nothing
/// is re-encrypted.
#[utoipa::path(post, path = "/v1/owner/keys/rotate", tag = "lifecycle", operation_id = "rotate_keys",
    responses(
        (status = 200, description = "Rotated", body = wire::KeyRotation),
        (status = 403, description = "Only the owner may rotate keys", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors,
    ),
    security(("owner" = [])))]
pub async fn rotate_keys(
    OwnerAccess(access): OwnerAccess,
) -> Result<Json<wire::KeyRotation>, Problem> {
    let retired = access
        .open
        .writer
        .rotate_keys()
        .await
        .map_err(write_problem)?;
    Ok(Json(wire::KeyRotation {
        keys_retired: retired,
    }))
}
