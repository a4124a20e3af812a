//! Statistics: one figure per range (`/v1/statistics`) or per calendar
//! bucket (`/v1/statistics/buckets`), with overlapping sources merged by
//! priority unless `by_source=true` asks for one series per source.

use axum::Json;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use utoipa::IntoParams;

use super::auth::Access;
use super::openapi;
use super::problem::{ApiPath, Problem};
use super::samples::{check_unit, flag, lookup_type, parse_time, time_bounds, ApiQuery};
use crate::catalogue::{self, units, Aggregation, SampleType, TypeIndex};
use crate::log::event::SourceKey;
use crate::policy;
use crate::projection::{Projection, TypeColumns, Visibility};
use crate::query::buckets::{self, BucketError, BucketRequest, Figures, Interval};
use crate::query::sources::{self, Origin, SourceTable};

fn sources_param(text: Option<&str>) -> Result<Option<Vec<SourceKey>>, Problem> {
    text.map(sources::parse_filter)
        .transpose()
        .map_err(|e| Problem::invalid(None, "sources", e))
}

/// Figures of samples starting in `[from, to)` for one view.
fn range_figures(
    projection: &Projection,
    ti: TypeIndex,
    cols: &TypeColumns,
    visibility: Visibility,
    selection: Option<Vec<Origin>>,
    table: &SourceTable,
    (from, to): (i64, i64),
) -> Figures {
    let rows = cols.start_range(from, to);
    let ty = catalogue::get(ti);
    let mut f = buckets::discrete_figures(cols, rows.clone(), visibility, selection.as_deref());
    if ty.aggregation() == Some(Aggregation::Cumulative) {
        let series = buckets::series_for(projection, ti, cols, visibility, selection, table);
        f.sum = series.sum_rows(cols, rows);
    }
    f
}

fn converter<'a>(ty: &'static SampleType, unit: Option<&'a str>) -> impl Fn(f64) -> Value + 'a {
    move |v: f64| match (ty.canonical_unit(), unit) {
        (Some(_), Some(u)) => json!(units::from_canonical(ty, v, u).unwrap_or(f64::NAN)),
        _ => json!(v),
    }
}

/// The figures a type offers, as JSON fields, limited to `wanted`.
fn figures_json(
    ty: &'static SampleType,
    f: &Figures,
    unit: Option<&str>,
    wanted: &[&str],
    out: &mut Map<String, Value>,
) {
    let convert = converter(ty, unit);
    let opt = |v: Option<f64>| v.map(&convert).unwrap_or(Value::Null);
    for &name in wanted {
        let value = match name {
            "sum" => convert(f.sum),
            "min" => opt(f.min),
            "max" => opt(f.max),
            "avg" => opt(f.avg),
            "most_recent" => opt(f.most_recent),
            "count" => json!(f.count),
            _ => continue,
        };
        out.insert(name.to_string(), value);
    }
}

const CUMULATIVE: &[&str] = &["sum"];
const DISCRETE: &[&str] = &["min", "max", "avg", "most_recent"];

fn aggregates(ty: &'static SampleType, text: Option<&str>) -> Result<Vec<&'static str>, Problem> {
    let offered = match ty.aggregation() {
        Some(Aggregation::Cumulative) => CUMULATIVE,
        Some(Aggregation::Discrete) => DISCRETE,
        None => {
            return Err(Problem::invalid(
                None,
                "type",
                format!(
                    "{} is a {} type; statistics need a quantity type",
                    ty.id,
                    ty.kind_name()
                ),
            ))
        }
    };
    let Some(text) = text else {
        return Ok(offered.to_vec());
    };
    text.split(',')
        .map(|a| {
            offered
                .iter()
                .copied()
                .find(|o| *o == a.trim())
                .ok_or_else(|| {
                    Problem::invalid(None, "aggregate", format!("{} offers {offered:?}", ty.id))
                })
        })
        .collect()
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
    /// Only these sources (`app` or `app/device`, comma-separated).
    sources: Option<String>,
    /// `true` for one set of figures per source.
    by_source: Option<String>,
}

/// Statistics over samples whose start lies in `[start, end)`; overlapping
/// sources of cumulative types are merged by priority.
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
    let range = time_bounds(q.start.as_deref(), q.end.as_deref())?;
    let filter = sources_param(q.sources.as_deref())?;
    let by_source = flag(q.by_source.as_deref(), "by_source")?;
    let projection = &access.open.projection;
    let visibility = policy::visibility(&access.caller, &access.apps, ti, projection);
    let table = SourceTable::of(projection);
    let cols = projection.columns(ti);
    let origins = (filter.is_some() || by_source)
        .then(|| buckets::selected_origins(&cols, visibility, &table, filter.as_deref()));
    let wanted: Vec<&str> = match ty.aggregation() {
        Some(Aggregation::Cumulative) => vec!["sum"],
        Some(Aggregation::Discrete) => DISCRETE.to_vec(),
        None => vec![],
    };
    let unit = q.unit.as_deref();
    let mut out = Map::new();
    out.insert("type".into(), json!(ty.id));
    let f = range_figures(
        projection,
        ti,
        &cols,
        visibility,
        origins.clone(),
        &table,
        range,
    );
    out.insert("count".into(), json!(f.count));
    if let Some(u) = unit.or(ty.canonical_unit()) {
        out.insert("unit".into(), json!(u));
    }
    figures_json(ty, &f, unit, &wanted, &mut out);
    if by_source {
        let per: Vec<Value> = origins
            .unwrap_or_default()
            .into_iter()
            .map(|o| {
                let f = range_figures(
                    projection,
                    ti,
                    &cols,
                    visibility,
                    Some(vec![o]),
                    &table,
                    range,
                );
                let mut m = Map::new();
                m.insert("source".into(), table.describe(o)["source"].clone());
                m.insert("device".into(), table.describe(o)["device"].clone());
                m.insert("count".into(), json!(f.count));
                figures_json(ty, &f, unit, &wanted, &mut m);
                Value::Object(m)
            })
            .collect();
        out.insert("sources".into(), json!(per));
    }
    Ok(Json(Value::Object(out)))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BucketsQuery {
    /// A quantity type id from `GET /v1/types`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    type_id: String,
    /// RFC 3339; the first bucket holds this instant.
    #[param(required = true)]
    start: Option<String>,
    /// RFC 3339; buckets up to this instant.
    #[param(required = true)]
    end: Option<String>,
    /// A positive duration of whole seconds, at most 50 years, ISO 8601 or
    /// friendly (`P1D`, `1d`, `1h 30m`, `1w`, `1mo`).
    #[param(required = true)]
    interval: Option<String>,
    /// Where the bucket grid starts: RFC 3339, or a local date or date-time
    /// in `tz`; default local midnight of `start`'s day, week or month.
    anchor: Option<String>,
    /// An IANA time zone; default `UTC`.
    tz: Option<String>,
    /// Comma-separated figures: `sum` (cumulative types) or `min`, `max`,
    /// `avg`, `most_recent` (discrete types); default all the type offers.
    aggregate: Option<String>,
    /// A unit compatible with the type; default its canonical unit.
    unit: Option<String>,
    /// Only these sources (`app` or `app/device`, comma-separated).
    sources: Option<String>,
    /// `true` for one series per source.
    by_source: Option<String>,
}

fn bucket_problem(e: BucketError) -> Problem {
    let field = match &e {
        BucketError::Interval(_) => "interval",
        BucketError::TimeZone(_) => "tz",
        BucketError::Anchor(_) => "anchor",
        BucketError::Range => "end",
        BucketError::NotQuantity(_) => "type",
        BucketError::TooMany => {
            return Problem::bad_request("too_many_buckets", e.to_string());
        }
    };
    Problem::invalid(None, field, e.to_string())
}

fn format_zoned(us: i64, tz: &TimeZone) -> String {
    match Timestamp::from_microsecond(us) {
        Ok(t) => t
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string(),
        Err(_) => String::new(),
    }
}

/// A statistics collection: figures per calendar bucket, sources merged by
/// priority unless `by_source=true`.
#[utoipa::path(get, path = "/v1/statistics/buckets", tag = "queries", params(BucketsQuery),
    responses(
        (status = 200, body = openapi::BucketCollection),
        openapi::CommonErrors,
    ),
    security(("owner" = []), ("apps" = [])))]
pub async fn buckets(
    access: Access,
    ApiQuery(q): ApiQuery<BucketsQuery>,
) -> Result<Json<Value>, Problem> {
    let ti = lookup_type(None, &q.type_id)?;
    let ty = catalogue::get(ti);
    check_unit(ty, q.unit.as_deref())?;
    let wanted = aggregates(ty, q.aggregate.as_deref())?;
    let required = |v: &Option<String>, field: &str| {
        v.clone()
            .ok_or_else(|| Problem::invalid(None, field, "required"))
    };
    let (start_us, _) = parse_time(None, "start", &required(&q.start, "start")?)?;
    let (end_us, _) = parse_time(None, "end", &required(&q.end, "end")?)?;
    let interval_text = required(&q.interval, "interval")?;
    let interval = Interval::parse(&interval_text).map_err(bucket_problem)?;
    let tz_name = q.tz.clone().unwrap_or_else(|| "UTC".into());
    let tz = buckets::parse_tz(&tz_name).map_err(bucket_problem)?;
    let anchor = match q.anchor.as_deref() {
        Some(a) => buckets::parse_anchor(a, &tz),
        None => buckets::default_anchor(start_us, &interval, &tz),
    }
    .map_err(bucket_problem)?;
    let filter = sources_param(q.sources.as_deref())?;
    let by_source = flag(q.by_source.as_deref(), "by_source")?;
    let projection = &access.open.projection;
    let visibility = policy::visibility(&access.caller, &access.apps, ti, projection);
    let result = buckets::run(
        projection,
        &BucketRequest {
            ty: ti,
            start_us,
            end_us,
            interval: &interval,
            anchor: &anchor,
            visibility,
            sources: filter.as_deref(),
            by_source,
        },
    )
    .map_err(bucket_problem)?;
    let mut wanted_out = wanted.clone();
    if ty.aggregation() == Some(Aggregation::Discrete) {
        wanted_out.push("count");
    }
    let unit = q.unit.as_deref();
    let starts: Vec<String> = result.edges.iter().map(|&e| format_zoned(e, &tz)).collect();
    let series_json = |figures: &[Figures]| -> Vec<Value> {
        figures
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let mut m = Map::new();
                m.insert("start".into(), json!(starts[i]));
                m.insert("end".into(), json!(starts[i + 1]));
                figures_json(ty, f, unit, &wanted_out, &mut m);
                Value::Object(m)
            })
            .collect()
    };
    let mut out = json!({
        "type": ty.id,
        "unit": unit.or(ty.canonical_unit()),
        "interval": interval_text,
        "tz": tz_name,
        "anchor": format_zoned(anchor.timestamp().as_microsecond(), &tz),
    });
    if by_source {
        let table = SourceTable::of(projection);
        out["sources"] = result
            .series
            .iter()
            .map(|s| {
                let o = s.origin.expect("by_source series name their origin");
                let d = table.describe(o);
                json!({ "source": d["source"], "device": d["device"], "buckets": series_json(&s.buckets) })
            })
            .collect();
    } else {
        out["buckets"] = json!(series_json(&result.series[0].buckets));
    }
    Ok(Json(out))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WorkoutQuery {
    /// A quantity type id: its statistics over the workout's time.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    type_id: Option<String>,
    /// With `type`: a unit compatible with it.
    unit: Option<String>,
    /// With `type`: only these sources (`app` or `app/device`, comma-separated).
    sources: Option<String>,
}

/// `GET /v1/workouts/{id}/statistics?type=`: the workout (activity,
/// duration, energy, distance) and, for a quantity type, its statistics over
/// the workout's time (sources merged as everywhere).
#[utoipa::path(get, path = "/v1/workouts/{id}/statistics", tag = "queries",
    params(("id" = uuid::Uuid, Path, description = "The workout's UUID"), WorkoutQuery),
    responses(
        (status = 200, body = openapi::WorkoutStatistics),
        (status = 404, description = "No such workout, or not visible to the caller", body = openapi::ProblemDetails, content_type = "application/problem+json"),
        openapi::CommonErrors,
    ),
    security(("owner" = []), ("apps" = [])))]
pub async fn workout(
    access: Access,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<WorkoutQuery>,
) -> Result<Json<Value>, Problem> {
    let id = uuid::Uuid::parse_str(&id)
        .map_err(|_| Problem::invalid(None, "id", "not a UUID"))?
        .as_u128();
    let projection = &access.open.projection;
    let workout_ty = catalogue::lookup("workout").expect("catalogue type");
    let (ti, row) = projection
        .find(id)
        .filter(|(ti, _)| *ti == workout_ty)
        .ok_or_else(Problem::not_found)?;
    let seen = match policy::visibility(&access.caller, &access.apps, ti, projection) {
        Visibility::All => true,
        Visibility::OnlySource(s) => row.source == s,
    };
    if !seen {
        return Err(Problem::not_found());
    }
    let mut out = super::samples::sample_json(projection, catalogue::get(ti), &row, None)?;
    if let Some(type_id) = q.type_id.as_deref() {
        let sti = lookup_type(None, type_id)?;
        let ty = catalogue::get(sti);
        check_unit(ty, q.unit.as_deref())?;
        let wanted = aggregates(ty, None)?;
        let filter = sources_param(q.sources.as_deref())?;
        let visibility = policy::visibility(&access.caller, &access.apps, sti, projection);
        let table = SourceTable::of(projection);
        let cols = projection.columns(sti);
        let selection = filter
            .as_deref()
            .map(|f| buckets::selected_origins(&cols, visibility, &table, Some(f)));
        // Samples starting during the workout (an instant one at its end too).
        let range = (row.start_us, row.end_us.saturating_add(1));
        let f = range_figures(projection, sti, &cols, visibility, selection, &table, range);
        let mut m = Map::new();
        m.insert("type".into(), json!(ty.id));
        m.insert("count".into(), json!(f.count));
        m.insert(
            "unit".into(),
            json!(q.unit.as_deref().or(ty.canonical_unit())),
        );
        figures_json(ty, &f, q.unit.as_deref(), &wanted, &mut m);
        out["statistics"] = Value::Object(m);
    } else if q.unit.is_some() || q.sources.is_some() {
        return Err(Problem::invalid(
            None,
            "type",
            "unit and sources need a type",
        ));
    }
    Ok(Json(out))
}
