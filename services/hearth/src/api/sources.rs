//! Sources: who wrote samples (app and device), and the owner's priority
//! order that decides which of overlapping sources counts in statistics.

use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::{Access, Caller};
use super::problem::{ApiJson, BodyErrors, CommonErrors, Problem};
use super::samples::ApiQuery;
use crate::log::event::SourceKey;
use crate::log::writer::Write;
use crate::query::buckets::selected_origins;
use crate::samples::lookup_type;
use crate::wire::queries as wire;
use crate::wire::{ErrorCode, ProblemDetails};

const MAX_ORDER: usize = 64;

fn owner_only(caller: &Caller) -> Result<(), Problem> {
    if matches!(caller, Caller::Owner) {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::FORBIDDEN,
            ErrorCode::OwnerOnly,
            "only the owner may do this",
        ))
    }
}

fn key_wire(k: &SourceKey) -> wire::SourceKey {
    wire::SourceKey {
        source: k.source.clone(),
        device: k.device.clone(),
    }
}

/// Sets the owner's priority order of sources, highest first; overlapping
/// samples of cumulative types count from the highest.
#[utoipa::path(put, path = "/v1/sources/priority", tag = "queries", operation_id = "set_source_priority",
    request_body = wire::SourcePriority,
    responses(
        (status = 200, description = "The order now in force", body = wire::SourcePriority),
        (status = 403, description = "Only the owner may set it", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors, BodyErrors,
    ),
    security(("owner" = [])))]
pub async fn put_priority(
    access: Access,
    ApiJson(body): ApiJson<wire::SourcePriority>,
) -> Result<Json<wire::SourcePriority>, Problem> {
    owner_only(&access.caller)?;
    if body.order.len() > MAX_ORDER {
        return Err(Problem::invalid(
            None,
            "order",
            format!("at most {MAX_ORDER} sources"),
        ));
    }
    let mut order = Vec::with_capacity(body.order.len());
    for (i, k) in body.order.into_iter().enumerate() {
        let ok = |s: &str| !s.is_empty() && s.len() <= 128;
        if !ok(&k.source) || !k.device.as_deref().is_none_or(ok) {
            return Err(Problem::invalid(
                Some(i),
                "order",
                "source and device names have 1 to 128 bytes",
            ));
        }
        let key = SourceKey {
            source: k.source,
            device: k.device,
        };
        if order.contains(&key) {
            return Err(Problem::invalid(Some(i), "order", "listed twice"));
        }
        order.push(key);
    }
    let out = order.iter().map(key_wire).collect();
    access
        .open
        .writer
        .write(Write::SetSourcePriority { order })
        .await
        .map_err(|_| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::StorageUnavailable,
                "the priority order was not stored",
            )
        })?;
    Ok(Json(wire::SourcePriority { order: out }))
}

/// The owner's priority order of sources, highest first.
#[utoipa::path(get, path = "/v1/sources/priority", tag = "queries", operation_id = "get_source_priority",
    responses(
        (status = 200, body = wire::SourcePriority),
        (status = 403, description = "Only the owner may read it", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors,
    ),
    security(("owner" = [])))]
pub async fn get_priority(access: Access) -> Result<Json<wire::SourcePriority>, Problem> {
    owner_only(&access.caller)?;
    let (_, order) = access.view.priority();
    Ok(Json(wire::SourcePriority {
        order: order.iter().map(key_wire).collect(),
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SourcesQuery {
    /// A type id from `GET /v1/types`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    type_id: String,
}

/// The sources (app and device) of the samples of a type the caller sees,
/// in the order statistics prefer them.
#[utoipa::path(get, path = "/v1/sources", tag = "queries", operation_id = "list_sources",
    params(SourcesQuery),
    responses((status = 200, body = wire::SourceList), CommonErrors),
    security(("owner" = []), ("apps" = [])))]
pub async fn list(
    access: Access,
    ApiQuery(q): ApiQuery<SourcesQuery>,
) -> Result<Json<wire::SourceList>, Problem> {
    let ti = lookup_type(None, &q.type_id)?;
    let table = access.view.source_table();
    let (_, order) = access.view.priority();
    let mut origins = selected_origins(&access.view.columns(ti), &table, None);
    origins.sort_by_cached_key(|&o| table.rank(o, &order));
    Ok(Json(wire::SourceList {
        sources: origins.into_iter().map(|o| table.describe(o)).collect(),
    }))
}
