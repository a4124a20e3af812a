//! Samples: write a batch, list, read and delete by id, statistics.

use axum::extract::{FromRequestParts, Query};
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
use super::composed;
use super::openapi;
use super::problem::{parse_json, ApiPath, JsonBody, Problem};
use crate::catalogue::{self, units, Kind, SampleType, TypeIndex};
use crate::log::event::{Device, StoredSample};
use crate::log::writer::{NewSample, Write, WriteError, WriteOutcome};
use crate::policy;
use crate::projection::{Projection, Row, TypeColumns};
use crate::query::sources::{self, DEVICE_KINDS};

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
    #[serde(default)]
    value: Value,
    #[serde(borrow)]
    unit: Option<Cow<'a, str>>,
    metadata: Option<Map<String, Value>>,
    /// The device that measured the sample: `{name, model?, manufacturer?, kind?}`.
    device: Option<DeviceIn>,
    /// A correlation's members.
    members: Option<Vec<composed::MemberIn>>,
    /// A workout's activity type, energy and distance.
    activity: Option<String>,
    energy: Option<composed::MeasureIn>,
    distance: Option<composed::MeasureIn>,
    /// A route's workout and points.
    workout: Option<Uuid>,
    route: Option<Vec<composed::PointIn>>,
}

impl SampleIn<'_> {
    fn take_composed(&mut self) -> composed::ComposedIn {
        composed::ComposedIn {
            members: self.members.take(),
            activity: self.activity.take(),
            energy: self.energy.take(),
            distance: self.distance.take(),
            workout: self.workout.take(),
            route: self.route.take(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceIn {
    name: String,
    model: Option<String>,
    manufacturer: Option<String>,
    kind: Option<String>,
}

const MAX_DEVICE_FIELD: usize = 128;

fn validate_device(at: Option<usize>, d: DeviceIn) -> Result<Device, Problem> {
    for (field, text) in [
        ("name", Some(&d.name)),
        ("model", d.model.as_ref()),
        ("manufacturer", d.manufacturer.as_ref()),
    ] {
        if let Some(text) = text {
            if text.is_empty() || text.len() > MAX_DEVICE_FIELD || text.contains(['/', ',']) {
                return Err(Problem::invalid(
                    at,
                    "device",
                    format!("{field} must have 1 to {MAX_DEVICE_FIELD} bytes, without '/' or ','"),
                ));
            }
        }
    }
    if let Some(kind) = &d.kind {
        if !DEVICE_KINDS.contains(&kind.as_str()) {
            return Err(Problem::invalid(
                at,
                "device",
                format!("kind must be one of {DEVICE_KINDS:?}"),
            ));
        }
    }
    Ok(Device {
        name: d.name,
        model: d.model,
        manufacturer: d.manufacturer,
        kind: d.kind,
    })
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

pub(crate) fn parse_time(
    index: Option<usize>,
    field: &str,
    s: &str,
) -> Result<(i64, i16), Problem> {
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

pub(crate) fn format_time(us: i64, offset_min: i16) -> String {
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

/// One request sample as the samples it is stored as (a correlation is its
/// members and itself), with the id the request gets back.
fn validate(index: usize, mut s: SampleIn<'_>) -> Result<(Uuid, Vec<NewSample>), Problem> {
    let at = Some(index);
    let parts = s.take_composed();
    let type_index = lookup_type(at, &s.type_id)?;
    let ty = catalogue::get(type_index);
    let (start_us, start_offset_min) = parse_time(at, "start", &s.start)?;
    let (end_us, end_offset_min) = parse_time(at, "end", &s.end)?;
    if start_us > end_us {
        return Err(Problem::invalid(at, "end", "end is before start"));
    }
    let id = s.id.unwrap_or_else(Uuid::new_v4);
    if !matches!(ty.kind, Kind::Quantity { .. } | Kind::Category { .. }) {
        let metadata = s.metadata.map(|m| validate_metadata(at, m)).transpose()?;
        let device = s.device.map(|d| validate_device(at, d)).transpose()?;
        let base = NewSample {
            type_index,
            device,
            sample: StoredSample {
                id: id.into_bytes(),
                start_us,
                start_offset_min,
                end_us,
                end_offset_min,
                value: 0.0,
                metadata,
            },
        };
        let stored = composed::validate(at, ty, base, s.value, s.unit.map(Cow::into_owned), parts)?;
        return Ok((id, stored));
    }
    parts.refuse_for(at, ty)?;
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
        _ => unreachable!("composed kinds returned above"),
    };
    let metadata = match s.metadata {
        None => None,
        Some(m) => Some(validate_metadata(at, m)?),
    };
    let device = s.device.map(|d| validate_device(at, d)).transpose()?;
    let new = NewSample {
        type_index,
        device,
        sample: StoredSample {
            id: id.into_bytes(),
            start_us,
            start_offset_min,
            end_us,
            end_offset_min,
            value,
            metadata,
        },
    };
    Ok((id, vec![new]))
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
        if k.starts_with(composed::RESERVED) {
            return Err(Problem::invalid(
                at,
                "metadata",
                format!("keys starting with '{}' are reserved", composed::RESERVED),
            ));
        }
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
    let mut ids = Vec::with_capacity(body.samples.len());
    for (i, s) in body.samples.into_iter().enumerate() {
        let (id, parts) = validate(i, s)?;
        for new in parts {
            policy::check_write(&access.caller, &access.apps, new.type_index)?;
            samples.push(new);
        }
        ids.push(id.to_string());
    }
    composed::check_routes(&access, &samples)?;
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
pub(crate) fn sample_json(
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
            // JSON has no infinity: it would come out as a null value.
            if !value.is_finite() {
                return Err(Problem::invalid(
                    None,
                    "unit",
                    format!("a value is too large to express in {unit}"),
                ));
            }
            out["value"] = json!(value);
            out["unit"] = json!(unit);
        }
        Kind::Category { .. } => {
            out["value"] = json!(ty.category_name(row.value as u16));
        }
        _ => {}
    }
    if let Some(m) = &row.metadata {
        out["metadata"] = serde_json::from_str(m).unwrap_or(Value::Null);
    }
    composed::present(ty, row, &mut out);
    if let Some(device) = projection.device(row.device) {
        out["device"] = sources::device_json(&device);
    }
    Ok(out)
}

pub(crate) fn check_unit(ty: &SampleType, unit: Option<&str>) -> Result<(), Problem> {
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
    /// `asc` (default) or `desc`.
    order: Option<String>,
    /// Comma-separated `app` or `app/device name`.
    sources: Option<String>,
    /// A device name.
    device: Option<String>,
    /// `true`: only the most recent sample (as `order=desc&limit=1`).
    most_recent: Option<String>,
}

pub(crate) fn time_bounds(start: Option<&str>, end: Option<&str>) -> Result<(i64, i64), Problem> {
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
    let projection = &access.open.projection;
    let visibility = policy::visibility(&access.caller, &access.apps, ti, projection);
    let table = sources::SourceTable::of(projection);
    let rows: Vec<Row> = {
        let cols: &TypeColumns = &projection.columns(ti);
        let wanted = |r: usize| {
            if !cols.visible(r, visibility) {
                return false;
            }
            let o = sources::Origin {
                source: cols.sources()[r],
                device: cols.devices()[r],
            };
            filter
                .as_ref()
                .is_none_or(|keys| keys.iter().any(|k| table.matches(o, k)))
                && q.device
                    .as_ref()
                    .is_none_or(|name| table.device(o).is_some_and(|d| d.name == *name))
        };
        let range = cols.start_range(from, to);
        if descending {
            let last = match after {
                Some((s, id)) => cols.before(s, id).min(range.end),
                None => range.end,
            };
            (range.start..last.max(range.start))
                .rev()
                .filter(|&r| wanted(r))
                .take(limit + 1)
                .map(|r| cols.row(r))
                .collect()
        } else {
            let first = match after {
                Some((s, id)) => cols.after(s, id).max(range.start),
                None => range.start,
            };
            (first..range.end.max(first))
                .filter(|&r| wanted(r))
                .take(limit + 1)
                .map(|r| cols.row(r))
                .collect()
        }
    };
    let more = rows.len() > limit && !most_recent;
    let page = &rows[..rows.len().min(limit)];
    let samples = page
        .iter()
        .map(|r| {
            let mut out = sample_json(projection, ty, r, q.unit.as_deref())?;
            composed::expand_members(&access.caller, &access.apps, projection, ty, &mut out)?;
            Ok(out)
        })
        .collect::<Result<Vec<_>, Problem>>()?;
    let next_cursor = match (more, page.last()) {
        (true, Some(last)) => Some(encode_cursor(last.start_us, last.id)),
        _ => None,
    };
    Ok(Json(
        json!({ "samples": samples, "next_cursor": next_cursor }),
    ))
}

/// A `true`/`false` query flag.
pub(crate) fn flag(value: Option<&str>, field: &str) -> Result<bool, Problem> {
    match value {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(Problem::invalid(None, field, "true or false")),
    }
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
    ApiPath(id): ApiPath<String>,
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
    let mut out = sample_json(projection, ty, &row, q.unit.as_deref())?;
    composed::expand_members(&access.caller, &access.apps, projection, ty, &mut out)?;
    Ok(Json(out))
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
pub async fn delete(access: Access, ApiPath(id): ApiPath<String>) -> Result<StatusCode, Problem> {
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

/// The catalogue of sample types, units and aggregation styles.
#[utoipa::path(get, path = "/v1/types", tag = "samples",
    responses((status = 200, body = openapi::TypeList)))]
pub async fn types() -> Json<Value> {
    Json(json!({ "types": catalogue::describe(), "device_kinds": DEVICE_KINDS }))
}
