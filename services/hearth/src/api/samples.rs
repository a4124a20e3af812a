//! Samples: write a batch, list, read and delete by id, statistics.

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, FixedOffset, SecondsFormat};
use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use utoipa::IntoParams;

use super::auth::Access;
use super::openapi;
use super::problem::{parse_json, JsonBody, Problem};
use crate::catalogue::{self, units, Aggregation, Kind, SampleType, TypeIndex};
use crate::log::event::StoredSample;
use crate::log::writer::{NewSample, Write, WriteError, WriteOutcome};
use crate::policy;
use crate::projection::{Projection, Row, TypeColumns};

/// Most samples in one write.
pub const MAX_BATCH: usize = 10_000;
/// Largest metadata object per sample, serialised.
pub const MAX_METADATA_BYTES: usize = 4096;
const MAX_METADATA_KEYS: usize = 64;
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;
/// Accepted sample times: 1900-01-01 to 2200-01-01 UTC.
const EARLIEST_US: i64 = -2_208_988_800_000_000;
const LATEST_US: i64 = 7_258_118_400_000_000;

// Strings borrow from the request body: a 10,000-sample batch parses
// without a string allocation per field.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddSamples<'a> {
    #[serde(borrow)]
    samples: Vec<SampleIn<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SampleIn<'a> {
    id: Option<Uuid>,
    #[serde(rename = "type", borrow)]
    type_id: Cow<'a, str>,
    #[serde(borrow)]
    start: Cow<'a, str>,
    #[serde(borrow)]
    end: Cow<'a, str>,
    value: Value,
    #[serde(borrow)]
    unit: Option<Cow<'a, str>>,
    metadata: Option<Map<String, Value>>,
}

/// Query string extractor whose failures are problems.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e| Problem::bad_request("invalid_query", e.body_text()))
    }
}

fn parse_time(index: Option<usize>, field: &str, s: &str) -> Result<(i64, i16), Problem> {
    let t = DateTime::parse_from_rfc3339(s).map_err(|e| {
        Problem::invalid(
            index,
            field,
            format!("not an RFC 3339 time with offset: {e}"),
        )
    })?;
    let us = t.timestamp_micros();
    if !(EARLIEST_US..LATEST_US).contains(&us) {
        return Err(Problem::invalid(index, field, "time outside 1900–2200"));
    }
    Ok((us, (t.offset().local_minus_utc() / 60) as i16))
}

fn format_time(us: i64, offset_min: i16) -> String {
    let offset =
        FixedOffset::east_opt(offset_min as i32 * 60).unwrap_or(FixedOffset::east_opt(0).unwrap());
    DateTime::from_timestamp_micros(us)
        .unwrap_or_default()
        .with_timezone(&offset)
        .to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

pub(crate) fn lookup_type(index: Option<usize>, id: &str) -> Result<TypeIndex, Problem> {
    catalogue::lookup(id).ok_or_else(|| {
        Problem::invalid(
            index,
            "type",
            format!("unknown sample type '{id}' (see GET /v1/types)"),
        )
    })
}

fn validate(index: usize, s: SampleIn<'_>) -> Result<NewSample, Problem> {
    let at = Some(index);
    let type_index = lookup_type(at, &s.type_id)?;
    let ty = catalogue::get(type_index);
    let (start_us, start_offset_min) = parse_time(at, "start", &s.start)?;
    let (end_us, end_offset_min) = parse_time(at, "end", &s.end)?;
    if start_us > end_us {
        return Err(Problem::invalid(at, "end", "end is before start"));
    }
    let value = match &ty.kind {
        Kind::Quantity { .. } => {
            let v = s
                .value
                .as_f64()
                .ok_or_else(|| Problem::invalid(at, "value", "expected a number"))?;
            let unit = s
                .unit
                .as_deref()
                .ok_or_else(|| Problem::invalid(at, "unit", "a unit is required"))?;
            let canonical = units::to_canonical(ty, v, unit)
                .map_err(|e| Problem::invalid(at, "unit", e.to_string()))?;
            if !canonical.is_finite() {
                return Err(Problem::invalid(at, "value", "value must be finite"));
            }
            canonical
        }
        Kind::Category { values } => {
            if s.unit.is_some() {
                return Err(Problem::invalid(
                    at,
                    "unit",
                    format!("{} takes no unit", ty.id),
                ));
            }
            let name = s.value.as_str().ok_or_else(|| {
                Problem::invalid(at, "value", format!("expected one of {values:?}"))
            })?;
            ty.category_index(name).ok_or_else(|| {
                Problem::invalid(at, "value", format!("expected one of {values:?}"))
            })? as f64
        }
    };
    let metadata = match s.metadata {
        None => None,
        Some(m) => Some(validate_metadata(at, m)?),
    };
    Ok(NewSample {
        type_index,
        sample: StoredSample {
            id: s.id.unwrap_or_else(Uuid::new_v4).into_bytes(),
            start_us,
            start_offset_min,
            end_us,
            end_offset_min,
            value,
            metadata,
        },
    })
}

fn validate_metadata(at: Option<usize>, m: Map<String, Value>) -> Result<String, Problem> {
    if m.len() > MAX_METADATA_KEYS {
        return Err(Problem::invalid(
            at,
            "metadata",
            format!("more than {MAX_METADATA_KEYS} keys"),
        ));
    }
    for (k, v) in &m {
        if k.is_empty() || k.len() > 128 {
            return Err(Problem::invalid(
                at,
                "metadata",
                "keys must have 1 to 128 bytes",
            ));
        }
        if !(v.is_string() || v.is_number() || v.is_boolean()) {
            return Err(Problem::invalid(
                at,
                "metadata",
                format!("value of '{k}' must be a string, number or boolean"),
            ));
        }
    }
    // serde_json's map is ordered by key: the text is canonical, so equal
    // metadata compares equal on retries.
    let text = serde_json::to_string(&m).expect("a JSON map serialises");
    if text.len() > MAX_METADATA_BYTES {
        return Err(Problem::invalid(
            at,
            "metadata",
            format!("larger than {MAX_METADATA_BYTES} bytes"),
        ));
    }
    Ok(text)
}

fn write_problem(e: WriteError) -> Problem {
    match e {
        WriteError::Conflict { index } => Problem {
            status: StatusCode::CONFLICT,
            ..Problem::invalid(
                Some(index),
                "id",
                "this id is already used by a sample with other content",
            )
        }
        .with_code("id_conflict"),
        WriteError::Deleted { index } => Problem {
            status: StatusCode::CONFLICT,
            ..Problem::invalid(Some(index), "id", "this id belonged to a deleted sample")
        }
        .with_code("id_deleted"),
        WriteError::NotFound => Problem::not_found(),
        WriteError::Storage => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "the database did not accept the write; nothing was stored",
        ),
        WriteError::Unavailable => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_locked",
            "the store is locked",
        ),
    }
}

/// Writes a batch of samples, all or nothing.
#[utoipa::path(post, path = "/v1/samples", tag = "samples",
    request_body = openapi::SampleBatch,
    responses(
        (status = 201, description = "At least one sample was added", body = openapi::WriteOutcome),
        (status = 200, description = "Every sample was already stored", body = openapi::WriteOutcome),
        (status = 403, description = "No write permission for a type", body = openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "An id is taken by other content or a deleted sample", body = openapi::ProblemDetails, content_type = "application/problem+json"),
        openapi::CommonErrors, openapi::BodyErrors,
    ),
    security(("owner" = []), ("apps" = [])))]
pub async fn add(access: Access, JsonBody(bytes): JsonBody) -> Result<Response, Problem> {
    let body: AddSamples<'_> = parse_json(&bytes)?;
    if body.samples.is_empty() {
        return Err(Problem::invalid(
            None,
            "samples",
            "at least one sample is required",
        ));
    }
    if body.samples.len() > MAX_BATCH {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_samples",
            format!("at most {MAX_BATCH} samples per request"),
        ));
    }
    let mut samples = Vec::with_capacity(body.samples.len());
    for (i, s) in body.samples.into_iter().enumerate() {
        let new = validate(i, s)?;
        policy::check_write(&access.caller, &access.apps, new.type_index)?;
        samples.push(new);
    }
    let ids: Vec<String> = samples
        .iter()
        .map(|s| Uuid::from_bytes(s.sample.id).to_string())
        .collect();
    let outcome = access
        .open
        .writer
        .write(Write::AddSamples {
            source: access.caller.source().to_string(),
            samples,
        })
        .await
        .map_err(write_problem)?;
    let WriteOutcome::Added { added, unchanged } = outcome else {
        return Err(Problem::internal());
    };
    let status = if added > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(json!({ "added": added, "unchanged": unchanged, "ids": ids })),
    )
        .into_response())
}

/// A sample as the API shows it, in `unit` (default: canonical).
fn sample_json(
    projection: &Projection,
    ty: &SampleType,
    row: &Row,
    unit: Option<&str>,
) -> Result<Value, Problem> {
    let mut out = json!({
        "id": Uuid::from_u128(row.id).to_string(),
        "type": ty.id,
        "start": format_time(row.start_us, row.start_offset_min),
        "end": format_time(row.end_us, row.end_offset_min),
        "source": &*projection.source_name(row.source),
    });
    match &ty.kind {
        Kind::Quantity { canonical_unit, .. } => {
            let unit = unit.unwrap_or(canonical_unit);
            let value = units::from_canonical(ty, row.value, unit)
                .map_err(|e| Problem::invalid(None, "unit", e.to_string()))?;
            out["value"] = json!(value);
            out["unit"] = json!(unit);
        }
        Kind::Category { .. } => {
            out["value"] = json!(ty.category_name(row.value as u16));
        }
    }
    if let Some(m) = &row.metadata {
        out["metadata"] = serde_json::from_str(m).unwrap_or(Value::Null);
    }
    Ok(out)
}

fn check_unit(ty: &SampleType, unit: Option<&str>) -> Result<(), Problem> {
    match unit {
        Some(u) if !units::compatible(ty, u) => Err(Problem::invalid(
            None,
            "unit",
            match units::to_canonical(ty, 1.0, u) {
                Err(e) => e.to_string(),
                Ok(_) => format!("unit '{u}' cannot express {}", ty.id),
            },
        )),
        _ => Ok(()),
    }
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
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// A unit compatible with the type; default its canonical unit.
    unit: Option<String>,
}

fn time_bounds(start: Option<&str>, end: Option<&str>) -> Result<(i64, i64), Problem> {
    let from = match start {
        Some(s) => parse_time(None, "start", s)?.0,
        None => i64::MIN,
    };
    let to = match end {
        Some(s) => parse_time(None, "end", s)?.0,
        None => i64::MAX,
    };
    if from > to {
        return Err(Problem::invalid(None, "end", "end is before start"));
    }
    Ok((from, to))
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

/// Samples of one type in `(start, id)` order, a page at a time.
#[utoipa::path(get, path = "/v1/samples", tag = "samples", params(ListQuery),
    responses((status = 200, body = openapi::SamplePage), openapi::CommonErrors),
    security(("owner" = []), ("apps" = [])))]
pub async fn list(
    access: Access,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, Problem> {
    let ti = lookup_type(None, &q.type_id)?;
    let ty = catalogue::get(ti);
    check_unit(ty, q.unit.as_deref())?;
    let (from, to) = time_bounds(q.start.as_deref(), q.end.as_deref())?;
    let limit = match q.limit.as_deref() {
        None => DEFAULT_PAGE,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=MAX_PAGE).contains(l))
            .ok_or_else(|| {
                Problem::invalid(None, "limit", format!("an integer from 1 to {MAX_PAGE}"))
            })?,
    };
    let after = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let projection = &access.open.projection;
    let visibility = policy::visibility(&access.caller, &access.apps, ti, projection);
    let rows: Vec<Row> = {
        let cols: &TypeColumns = &projection.columns(ti);
        let range = cols.start_range(from, to);
        let first = match after {
            Some((s, id)) => cols.after(s, id).max(range.start),
            None => range.start,
        };
        (first..range.end.max(first))
            .filter(|&r| cols.visible(r, visibility))
            .take(limit + 1)
            .map(|r| cols.row(r))
            .collect()
    };
    let more = rows.len() > limit;
    let page = &rows[..rows.len().min(limit)];
    let samples = page
        .iter()
        .map(|r| sample_json(projection, ty, r, q.unit.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = match (more, page.last()) {
        (true, Some(last)) => Some(encode_cursor(last.start_us, last.id)),
        _ => None,
    };
    Ok(Json(
        json!({ "samples": samples, "next_cursor": next_cursor }),
    ))
}

fn parse_id(id: &str) -> Result<u128, Problem> {
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
#[utoipa::path(get, path = "/v1/samples/{id}", tag = "samples",
    params(("id" = uuid::Uuid, Path, description = "The sample's UUID"), UnitQuery),
    responses(
        (status = 200, body = openapi::Sample),
        (status = 404, body = openapi::ProblemDetails, content_type = "application/problem+json"),
        openapi::CommonErrors,
    ),
    security(("owner" = []), ("apps" = [])))]
pub async fn get_one(
    access: Access,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<UnitQuery>,
) -> Result<Json<Value>, Problem> {
    let id = parse_id(&id)?;
    let projection = &access.open.projection;
    let (ti, row) = projection.find(id).ok_or_else(Problem::not_found)?;
    if !visible_to(&access, ti, &row) {
        return Err(Problem::not_found());
    }
    let ty = catalogue::get(ti);
    check_unit(ty, q.unit.as_deref())?;
    Ok(Json(sample_json(projection, ty, &row, q.unit.as_deref())?))
}

fn visible_to(access: &Access, ti: TypeIndex, row: &Row) -> bool {
    match policy::visibility(&access.caller, &access.apps, ti, &access.open.projection) {
        crate::projection::Visibility::All => true,
        crate::projection::Visibility::OnlySource(s) => row.source == s,
    }
}

/// Deletes a sample (a tombstone event; the id is never reused).
#[utoipa::path(delete, path = "/v1/samples/{id}", tag = "samples",
    params(("id" = uuid::Uuid, Path, description = "The sample's UUID")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, body = openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 404, body = openapi::ProblemDetails, content_type = "application/problem+json"),
        openapi::CommonErrors,
    ),
    security(("owner" = []), ("apps" = [])))]
pub async fn delete(access: Access, Path(id): Path<String>) -> Result<StatusCode, Problem> {
    let id = parse_id(&id)?;
    let (ti, row) = access
        .open
        .projection
        .find(id)
        .ok_or_else(Problem::not_found)?;
    if !visible_to(&access, ti, &row) {
        return Err(Problem::not_found());
    }
    let source = access.open.projection.source_name(row.source);
    if !policy::may_delete(&access.caller, &source) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "delete_not_authorized",
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatisticsQuery {
    /// A type id from `GET /v1/types`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    type_id: String,
    /// RFC 3339; samples starting at or after it.
    start: Option<String>,
    /// RFC 3339; samples starting before it.
    end: Option<String>,
    /// A unit compatible with the type; default its canonical unit.
    unit: Option<String>,
}

/// Statistics over samples whose start lies in `[start, end)`.
#[utoipa::path(get, path = "/v1/statistics", tag = "samples", params(StatisticsQuery),
    responses((status = 200, body = openapi::Statistics), openapi::CommonErrors),
    security(("owner" = []), ("apps" = [])))]
pub async fn statistics(
    access: Access,
    ApiQuery(q): ApiQuery<StatisticsQuery>,
) -> Result<Json<Value>, Problem> {
    let ti = lookup_type(None, &q.type_id)?;
    let ty = catalogue::get(ti);
    check_unit(ty, q.unit.as_deref())?;
    let (from, to) = time_bounds(q.start.as_deref(), q.end.as_deref())?;
    let projection = &access.open.projection;
    let visibility = policy::visibility(&access.caller, &access.apps, ti, projection);
    let stats = {
        let cols = projection.columns(ti);
        Summary::of(cols.values(cols.start_range(from, to), visibility))
    };
    let convert = |v: f64| -> Value {
        match (ty.canonical_unit(), q.unit.as_deref()) {
            (Some(_), Some(u)) => json!(units::from_canonical(ty, v, u).unwrap_or(f64::NAN)),
            _ => json!(v),
        }
    };
    let mut out = json!({ "type": ty.id, "count": stats.count });
    if let Some(unit) = q.unit.as_deref().or(ty.canonical_unit()) {
        out["unit"] = json!(unit);
    }
    match ty.aggregation() {
        Some(Aggregation::Cumulative) => {
            out["sum"] = convert(stats.sum);
        }
        Some(Aggregation::Discrete) => {
            let some = stats.count > 0;
            out["min"] = if some {
                convert(stats.min)
            } else {
                Value::Null
            };
            out["max"] = if some {
                convert(stats.max)
            } else {
                Value::Null
            };
            out["avg"] = if some {
                convert(stats.sum / stats.count as f64)
            } else {
                Value::Null
            };
        }
        None => {}
    }
    Ok(Json(out))
}

/// Count, sum, min and max in one pass.
pub struct Summary {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(values: impl Iterator<Item = f64>) -> Summary {
        values.fold(
            Summary {
                count: 0,
                sum: 0.0,
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
            },
            |s, v| Summary {
                count: s.count + 1,
                sum: s.sum + v,
                min: s.min.min(v),
                max: s.max.max(v),
            },
        )
    }
}

/// The catalogue of sample types, units and aggregation styles.
#[utoipa::path(get, path = "/v1/types", tag = "samples",
    responses((status = 200, body = openapi::TypeList)))]
pub async fn types() -> Json<Value> {
    Json(json!({ "types": catalogue::describe() }))
}
