//! Sources: who wrote samples (app and device), and the owner's priority
//! order that decides which of overlapping sources counts in statistics.

use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use utoipa::IntoParams;

use super::auth::{Access, Caller};
use super::openapi;
use super::problem::{ApiJson, Problem};
use super::samples::{lookup_type, ApiQuery};
use crate::log::event::SourceKey;
use crate::log::writer::Write;
use crate::policy;
use crate::query::buckets::selected_origins;
use crate::query::sources::SourceTable;

const MAX_ORDER: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityIn {
    order: Vec<SourceKeyIn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceKeyIn {
    source: String,
    device: Option<String>,
}

fn owner_only(caller: &Caller) -> Result<(), Problem> {
    if matches!(caller, Caller::Owner) {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::FORBIDDEN,
            "owner_only",
            "only the owner may do this",
        ))
    }
}

fn key_json(k: &SourceKey) -> Value {
    json!({ "source": k.source, "device": k.device })
}

/// Sets the owner's priority order of sources, highest first; overlapping
/// samples of cumulative types count from the highest.
#[utoipa::path(put, path = "/v1/sources/priority", tag = "queries",
    request_body = openapi::SourcePriority,
    responses(
        (status = 200, description = "The order now in force", body = openapi::SourcePriority),
        (status = 403, description = "Only the owner may set it", body = openapi::ProblemDetails, content_type = "application/problem+json"),
        openapi::CommonErrors, openapi::BodyErrors,
    ),
    security(("owner" = [])))]
pub async fn put_priority(
    access: Access,
    ApiJson(body): ApiJson<PriorityIn>,
) -> Result<Json<Value>, Problem> {
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
    let out: Vec<Value> = order.iter().map(key_json).collect();
    access
        .open
        .writer
        .write(Write::SetSourcePriority { order })
        .await
        .map_err(|_| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "the priority order was not stored",
            )
        })?;
    Ok(Json(json!({ "order": out })))
}

/// The owner's priority order of sources, highest first.
#[utoipa::path(get, path = "/v1/sources/priority", tag = "queries",
    responses(
        (status = 200, body = openapi::SourcePriority),
        (status = 403, description = "Only the owner may read it", body = openapi::ProblemDetails, content_type = "application/problem+json"),
        openapi::CommonErrors,
    ),
    security(("owner" = [])))]
pub async fn get_priority(access: Access) -> Result<Json<Value>, Problem> {
    owner_only(&access.caller)?;
    let (_, order) = access.open.projection.priority();
    let out: Vec<Value> = order.iter().map(key_json).collect();
    Ok(Json(json!({ "order": out })))
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
#[utoipa::path(get, path = "/v1/sources", tag = "queries", params(SourcesQuery),
    responses((status = 200, body = openapi::SourceList), openapi::CommonErrors),
    security(("owner" = []), ("apps" = [])))]
pub async fn list(
    access: Access,
    ApiQuery(q): ApiQuery<SourcesQuery>,
) -> Result<Json<Value>, Problem> {
    let ti = lookup_type(None, &q.type_id)?;
    let projection = &access.open.projection;
    let visibility = policy::visibility(&access.caller, &access.apps, ti, projection);
    let table = SourceTable::of(projection);
    let (_, order) = projection.priority();
    let mut origins = {
        let cols = projection.columns(ti);
        selected_origins(&cols, visibility, &table, None)
    };
    origins.sort_by_key(|&o| table.rank(o, &order));
    let out: Vec<Value> = origins.into_iter().map(|o| table.describe(o)).collect();
    Ok(Json(json!({ "sources": out })))
}
