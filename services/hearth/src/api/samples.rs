//! Samples: write a batch, list, read and delete by id; the type catalogue.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::auth::{Access, Caller};
use super::problem::{parse_json, ApiPath, BodyErrors, CommonErrors, JsonBody, Problem};
use super::AppState;
use crate::apps::{AppCaller, Apps};
use crate::catalogue::{self, TypeIndex};
use crate::lock::Unavailable;
use crate::log::writer::{NewEntry, Write, WriteError, WriteOutcome};
use crate::pending::Refusal;
use crate::policy;
use crate::projection::Row;
use crate::query::samples::{self as query, SampleQuery};
use crate::query::sources::{self, DEVICE_KINDS};
use crate::samples::{self, check_unit, lookup_type, time_bounds};
use crate::store::Store;
use crate::wire::samples as wire;
use crate::wire::{ErrorCode, ProblemDetails};

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

/// Query string extractor whose failures are problems.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e| Problem::bad_request(ErrorCode::InvalidQuery, e.body_text()))
    }
}

pub(crate) fn write_problem(e: WriteError) -> Problem {
    match e {
        WriteError::SyncConflict { index } => Problem {
            status: StatusCode::CONFLICT,
            ..Problem::invalid(
                Some(index),
                "sync_id",
                "this sync_id holds a sample with other content: send a higher sync_version to replace it",
            )
        }
        .with_code(ErrorCode::SyncConflict),
        e @ WriteError::TooManyDevices { .. } => {
            Problem::bad_request(ErrorCode::TooManyDevices, e.to_string())
        }
        WriteError::NotFound => Problem::not_found(),
        WriteError::Storage => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::StorageUnavailable,
            "the database did not accept the write; nothing was stored",
        ),
        WriteError::Unavailable => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::StoreLocked,
            "the store is locked",
        ),
    }
}

/// Where a write goes: the writer of an unlocked store, or, while locked,
/// the pending table (for an app; the owner has no session while locked).
pub enum WriteTarget {
    Open(Access),
    Locked {
        store: Arc<Store>,
        app: AppCaller,
        apps: Arc<Apps>,
    },
}

impl FromRequestParts<AppState> for WriteTarget {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        if !matches!(state.store.open_store(), Err(Unavailable::Locked)) {
            return Access::from_request_parts(parts, state)
                .await
                .map(WriteTarget::Open);
        }
        // Anyone else gets the lock state, the same answer as before.
        match Caller::from_request_parts(parts, state).await {
            Ok(Caller::App(app)) => Ok(WriteTarget::Locked {
                store: state.store.clone(),
                app,
                apps: state.store.apps().clone(),
            }),
            Ok(Caller::Owner | Caller::Study(_)) | Err(_) => Err(Unavailable::Locked.into()),
        }
    }
}

/// Writes a batch of samples, all or nothing.
///
/// A source writes with at most 64 distinct devices: a batch that would
/// give it a 65th is refused whole (`400 too_many_devices`).
///
/// While the store is locked, an app's write is checked exactly as when
/// unlocked, sealed to the store's public key, stored durably and answered
/// `202` with the number of samples accepted; it is added to the store, in
/// arrival order, when the owner next unlocks. A sealed store (not
/// unlocked since the server started) accepts nothing (`503 store_sealed`).
#[utoipa::path(post, path = "/v1/samples", tag = "samples", operation_id = "add_samples",
    request_body = wire::SampleBatch,
    responses(
        (status = 201, description = "At least one sample was added or replaced", body = wire::WriteOutcome),
        (status = 200, description = "Every sample was already stored", body = wire::WriteOutcome),
        (status = 202, description = "The store is locked: the batch is stored sealed and will be added at the next unlock", body = wire::PendingAccepted),
        (status = 403, description = "No write permission for a type", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "A `sync_id` of the caller's holds other content at the same or a higher `sync_version` (`sync_conflict`)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "Locked, and as many writes as allowed wait for the unlock (`pending_batches_full`)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 507, description = "Locked, and the writes waiting for the unlock fill the space allowed them (`pending_full`)", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors, BodyErrors,
    ),
    security(("owner" = []), ("apps" = [])))]
pub async fn add(target: WriteTarget, JsonBody(bytes): JsonBody) -> Result<Response, Problem> {
    let body: wire::SampleBatch<'_> = parse_json(&bytes)?;
    let (caller, apps) = match &target {
        WriteTarget::Open(access) => (access.caller.clone(), access.apps.clone()),
        WriteTarget::Locked { app, apps, .. } => (Caller::App(app.clone()), apps.clone()),
    };
    let entries = validated_entries(&caller, &apps, body)?;
    let access = match target {
        WriteTarget::Open(access) => access,
        WriteTarget::Locked { store, app, apps } => {
            match store.accept_pending(&app, &entries).await {
                Ok(count) => {
                    let body = wire::PendingAccepted {
                        accepted: count as u64,
                    };
                    return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
                }
                // Unlocked while this request waited for the merge.
                Err(Refusal::NotLocked) => {
                    let open = store.open_store()?;
                    Access {
                        view: open.view(caller.clone(), apps.clone()),
                        open,
                        caller,
                        apps,
                    }
                }
                Err(e) => return Err(pending_problem(e)),
            }
        }
    };
    write_now(&access, entries)
        .await
        .map(IntoResponse::into_response)
}

/// A request's samples validated for `caller`: sizes, types, units, times,
/// sync identifiers and write permission, the same whether the store is
/// unlocked or locked.
fn validated_entries(
    caller: &Caller,
    apps: &Apps,
    body: wire::SampleBatch<'_>,
) -> Result<Vec<NewEntry>, Problem> {
    samples::check_batch(&body)?;
    let mut entries = Vec::with_capacity(body.samples.len());
    for (i, s) in body.samples.into_iter().enumerate() {
        let entry = samples::validate(i, s)?;
        for new in &entry.samples {
            policy::check_write(caller, apps, new.type_index)?;
        }
        entries.push(entry);
    }
    Ok(entries)
}

fn pending_problem(e: Refusal) -> Problem {
    match e {
        Refusal::BytesFull { .. } => Problem::new(
            StatusCode::INSUFFICIENT_STORAGE,
            ErrorCode::PendingFull,
            format!("{e}; the owner's next unlock makes room"),
        ),
        Refusal::BatchesFull { .. } => Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::PendingBatchesFull,
            format!("{e}; the owner's next unlock makes room"),
        ),
        Refusal::NoKey | Refusal::NotLocked => Unavailable::Locked.into(),
        Refusal::Storage => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::StorageUnavailable,
            "the database did not accept the write; nothing was stored",
        ),
    }
}

/// Checks route references against what the caller sees and hands the
/// batch to the writer.
async fn write_now(
    access: &Access,
    entries: Vec<NewEntry>,
) -> Result<(StatusCode, Json<wire::WriteOutcome>), Problem> {
    samples::check_routes(&access.view, &entries)?;
    let outcome = access
        .open
        .writer
        .write(Write::AddSamples {
            source: access.caller.source().to_string(),
            entries,
        })
        .await
        .map_err(write_problem)?;
    let WriteOutcome::Added {
        added,
        replaced,
        unchanged,
        ids,
        ..
    } = outcome
    else {
        return Err(Problem::internal());
    };
    let status = if added + replaced > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(wire::WriteOutcome {
            added: added as u64,
            replaced: replaced as u64,
            unchanged: unchanged as u64,
            ids: ids.into_iter().map(Uuid::from_u128).collect(),
        }),
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// A type id from `GET /v1/types`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    type_id: String,
    /// RFC 3339; samples starting at or after it.
    start: Option<String>,
    /// RFC 3339; samples starting before it.
    end: Option<String>,
    /// 1 to 1000; default 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// A unit compatible with the type; default its canonical unit.
    unit: Option<String>,
    /// `asc` (default) or `desc`.
    #[param(value_type = Option<SortOrder>, inline)]
    order: Option<String>,
    /// Comma-separated `app` or `app/device name`.
    sources: Option<String>,
    /// A device name.
    device: Option<String>,
    /// `true`: only the most recent sample (as `order=desc&limit=1`).
    #[param(value_type = Option<bool>)]
    most_recent: Option<String>,
}

/// The order of a page.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum SortOrder {
    Asc,
    Desc,
}

fn encode_cursor(start_us: i64, id: u128) -> String {
    let mut bytes = [0u8; 24];
    bytes[..8].copy_from_slice(&start_us.to_be_bytes());
    bytes[8..].copy_from_slice(&id.to_be_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

fn decode_cursor(s: &str) -> Result<(i64, u128), Problem> {
    let bad = || Problem::invalid(None, "cursor", "not a cursor returned by this endpoint");
    let bytes: [u8; 24] = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| bad())?
        .try_into()
        .map_err(|_| bad())?;
    Ok((
        i64::from_be_bytes(bytes[..8].try_into().unwrap()),
        u128::from_be_bytes(bytes[8..].try_into().unwrap()),
    ))
}

/// A page size from `limit=`.
pub(crate) fn page_limit(text: Option<&str>) -> Result<usize, Problem> {
    match text {
        None => Ok(DEFAULT_PAGE),
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_PAGE).contains(l))
            .ok_or_else(|| {
                Problem::invalid(None, "limit", format!("an integer from 1 to {MAX_PAGE}"))
            }),
    }
}

/// Samples of one type in `(start, id)` order, a page at a time.
#[utoipa::path(get, path = "/v1/samples", tag = "samples", operation_id = "list_samples",
    params(ListQuery),
    responses((status = 200, body = wire::SamplePage), CommonErrors),
    security(("owner" = []), ("apps" = [])))]
pub async fn list(
    access: Access,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<wire::SamplePage>, Problem> {
    let ti = lookup_type(None, &q.type_id)?;
    let ty = catalogue::get(ti);
    check_unit(ty, q.unit.as_deref())?;
    let range = time_bounds(q.start.as_deref(), q.end.as_deref())?;
    let limit = page_limit(q.limit.as_deref())?;
    let most_recent = flag(q.most_recent.as_deref(), "most_recent")?;
    let limit = if most_recent { 1 } else { limit };
    let descending = match q.order.as_deref() {
        None | Some("asc") => most_recent,
        Some("desc") => true,
        Some(_) => return Err(Problem::invalid(None, "order", "asc or desc")),
    };
    let filter = q
        .sources
        .as_deref()
        .map(sources::parse_filter)
        .transpose()
        .map_err(|e| Problem::invalid(None, "sources", e))?;
    let after = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let (rows, more) = query::page(
        &access.view,
        &SampleQuery {
            ty: ti,
            range,
            sources: filter.as_deref(),
            device: q.device.as_deref(),
            after,
            descending,
            limit,
        },
    );
    let samples = rows
        .iter()
        .map(|r| samples::present(&access.view, ty, r, q.unit.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = match (more && !most_recent, rows.last()) {
        (true, Some(last)) => Some(encode_cursor(last.start_us, last.id)),
        _ => None,
    };
    Ok(Json(wire::SamplePage {
        samples,
        next_cursor,
    }))
}

/// A `true`/`false` query flag.
pub(crate) fn flag(value: Option<&str>, field: &str) -> Result<bool, Problem> {
    match value {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(Problem::invalid(None, field, "true or false")),
    }
}

pub(crate) fn parse_id(id: &str) -> Result<u128, Problem> {
    Uuid::parse_str(id)
        .map(|u| u.as_u128())
        .map_err(|_| Problem::invalid(None, "id", "not a UUID"))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UnitQuery {
    /// A unit compatible with the type; default its canonical unit.
    unit: Option<String>,
}

/// One sample; `404` for unknown ids and for samples the caller cannot see alike.
#[utoipa::path(get, path = "/v1/samples/{id}", tag = "samples", operation_id = "get_sample",
    params(("id" = uuid::Uuid, Path, description = "The sample's UUID"), UnitQuery),
    responses(
        (status = 200, body = wire::Sample),
        (status = 404, body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors,
    ),
    security(("owner" = []), ("apps" = [])))]
pub async fn get_one(
    access: Access,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<UnitQuery>,
) -> Result<Json<wire::Sample>, Problem> {
    let id = parse_id(&id)?;
    let (ti, row) = visible_sample(&access, id)?;
    let ty = catalogue::get(ti);
    check_unit(ty, q.unit.as_deref())?;
    let out = samples::present(&access.view, ty, &row, q.unit.as_deref())?;
    Ok(Json(out))
}

/// The sample with this id, if the caller sees it; `404` alike otherwise.
pub(crate) fn visible_sample(access: &Access, id: u128) -> Result<(TypeIndex, Row), Problem> {
    access.view.find(id).ok_or_else(Problem::not_found)
}

/// Deletes a sample (a deletion event). A deleted sample's `sync_id` is free
/// again: writing it stores a new sample.
#[utoipa::path(delete, path = "/v1/samples/{id}", tag = "samples", operation_id = "delete_sample",
    params(("id" = uuid::Uuid, Path, description = "The sample's UUID")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors,
    ),
    security(("owner" = []), ("apps" = [])))]
pub async fn delete(access: Access, ApiPath(id): ApiPath<String>) -> Result<StatusCode, Problem> {
    let id = parse_id(&id)?;
    let (_, row) = visible_sample(&access, id)?;
    let source = access.view.source_name(row.source);
    if !policy::may_delete(&access.caller, &source) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            ErrorCode::DeleteNotAuthorized,
            "apps may delete only samples they wrote",
        ));
    }
    access
        .open
        .writer
        .write(Write::Delete {
            source: access.caller.source().to_string(),
            id,
            only_own: !access.caller.is_owner(),
        })
        .await
        .map_err(write_problem)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The catalogue of sample types, units and aggregation styles.
#[utoipa::path(get, path = "/v1/types", tag = "samples", operation_id = "list_types",
    responses((status = 200, body = wire::TypeList)))]
pub async fn types() -> Json<wire::TypeList> {
    Json(wire::TypeList {
        types: catalogue::describe(),
        device_kinds: DEVICE_KINDS,
    })
}
