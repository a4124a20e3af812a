//! What an app may learn about its own permissions: its write status per
//! type, and whether asking the owner would show anything new. Never its
//! read status (invariant 3).

use std::collections::BTreeMap;

use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::{Access, Caller};
use super::problem::{CommonErrors, Problem};
use super::samples::ApiQuery;
use crate::catalogue::TypeIndex;
use crate::policy;
use crate::samples::lookup_type;
use crate::wire::queries as wire;

/// Most types in one status query.
const MAX_TYPES: usize = 200;

fn type_list(field: &str, list: Option<&str>) -> Result<Vec<(String, TypeIndex)>, Problem> {
    let items: Vec<&str> = list
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if items.len() > MAX_TYPES {
        return Err(Problem::invalid(
            None,
            field,
            format!("at most {MAX_TYPES} types"),
        ));
    }
    items
        .into_iter()
        .map(|t| {
            lookup_type(None, t)
                .map(|i| (t.to_string(), i))
                .map_err(|_| Problem::invalid(None, field, format!("unknown sample type '{t}'")))
        })
        .collect()
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatusQuery {
    /// Comma-separated type ids, 1 to 200.
    #[param(required = true)]
    types: Option<String>,
}

/// The caller's write status per type (never its read status).
#[utoipa::path(get, path = "/v1/authorization/status", tag = "apps", operation_id = "write_status",
    params(StatusQuery),
    responses((status = 200, body = wire::WriteStatuses), CommonErrors),
    security(("owner" = []), ("apps" = [])))]
pub async fn write_status(
    access: Access,
    ApiQuery(q): ApiQuery<StatusQuery>,
) -> Result<Json<wire::WriteStatuses>, Problem> {
    let types = type_list("types", q.types.as_deref())?;
    if types.is_empty() {
        return Err(Problem::invalid(None, "types", "name at least one type"));
    }
    let write: BTreeMap<String, wire::WriteStatus> = types
        .into_iter()
        .map(|(name, ti)| (name, policy::write_status(&access.caller, &access.apps, ti)))
        .collect();
    Ok(Json(wire::WriteStatuses { write }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RequestStatusQuery {
    /// Comma-separated type ids to read, at most 200.
    read: Option<String>,
    /// Comma-separated type ids to write, at most 200.
    write: Option<String>,
}

/// Whether asking the owner for these types would show anything new; for
/// the owner, never.
#[utoipa::path(get, path = "/v1/authorization/request-status", tag = "apps", operation_id = "request_status",
    params(RequestStatusQuery),
    responses((status = 200, body = wire::RequestStatus), CommonErrors),
    security(("owner" = []), ("apps" = [])))]
pub async fn request_status(
    access: Access,
    ApiQuery(q): ApiQuery<RequestStatusQuery>,
) -> Result<Json<wire::RequestStatus>, Problem> {
    let read: Vec<TypeIndex> = type_list("read", q.read.as_deref())?
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    let write: Vec<TypeIndex> = type_list("write", q.write.as_deref())?
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    let should = match &access.caller {
        Caller::Owner => false,
        Caller::App(app) => policy::should_request(app, &access.apps, &read, &write),
        Caller::Study(_) => false,
    };
    Ok(Json(wire::RequestStatus {
        status: if should {
            wire::RequestStatusValue::ShouldRequest
        } else {
            wire::RequestStatusValue::Unnecessary
        },
    }))
}
