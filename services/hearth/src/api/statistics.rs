//! Statistics: one figure per range (`/v1/statistics`) or per calendar
//! bucket (`/v1/statistics/buckets`), with overlapping sources merged by
//! priority unless `by_source=true` asks for one series per source.

use axum::Json;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::Access;
use super::problem::{ApiPath, CommonErrors, Problem};
use super::samples::{flag, parse_id, visible_sample, ApiQuery};
use crate::catalogue::{self, units, Aggregation, SampleType, TypeIndex};
use crate::log::event::SourceKey;
use crate::query::buckets::{self, BucketError, BucketRequest, Figures, Interval};
use crate::query::sources::{self, Origin, SourceTable};
use crate::samples::{self, check_unit, lookup_type, parse_time, time_bounds};
use crate::view::{Columns, View};
use crate::wire::queries as wire;
use crate::wire::queries::SourceInfo;
use crate::wire::{ErrorCode, ProblemDetails};

fn sources_param(text: Option<&str>) -> Result<Option<Vec<SourceKey>>, Problem> {
    text.map(sources::parse_filter)
        .transpose()
        .map_err(|e| Problem::invalid(None, "sources", e))
}

/// Figures of samples starting in `[from, to)` for one view.
/// Figures of the samples of `ti` starting in `[from, to)`, overlapping
/// sources merged for a cumulative sum.
fn range_figures(
    view: &View,
    ti: TypeIndex,
    cols: &Columns<'_>,
    selection: Option<Vec<Origin>>,
    table: &SourceTable,
    (from, to): (i64, i64),
) -> Figures {
    let rows = cols.start_range(from, to);
    let ty = catalogue::get(ti);
    view.disclose(ty.id, 0, 1);
    let mut f = buckets::discrete_figures(cols, rows.clone(), selection.as_deref());
    if ty.aggregation() == Some(Aggregation::Cumulative) {
        f.sum = view.series(ti, cols, selection, table).sum_rows(cols, rows);
    }
    f
}

/// Runs a computation over the projection on a blocking thread, so a long
/// one never holds up the async workers that serve everyone else.
async fn off_workers<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Problem> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        tracing::error!(error = %e, "a statistics computation failed");
        Problem::internal()
    })
}

/// The figures a type offers, limited to `wanted`, in `unit`.
fn figures(
    ty: &'static SampleType,
    f: &Figures,
    unit: Option<&str>,
    wanted: &[&str],
) -> wire::Figures {
    // A value the unit cannot express comes out as null, as JSON has no NaN.
    let convert = |v: f64| match (ty.canonical_unit(), unit) {
        (Some(_), Some(u)) => units::from_canonical(ty, v, u).unwrap_or(f64::NAN),
        _ => v,
    };
    let opt = |v: Option<f64>| Some(v.map(convert));
    let mut out = wire::Figures::default();
    for &name in wanted {
        match name {
            "sum" => out.sum = Some(Some(convert(f.sum))),
            "min" => out.min = opt(f.min),
            "max" => out.max = opt(f.max),
            "avg" => out.avg = opt(f.avg),
            "most_recent" => out.most_recent = opt(f.most_recent),
            _ => {}
        }
    }
    out
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
    /// `true` for one set of figures per source: at most 65 (one source's
    /// 64 devices and its samples without a device); more is `400
    /// too_many_series`, narrowed with `sources=`.
    #[param(value_type = Option<bool>)]
    by_source: Option<String>,
}

/// Statistics over samples whose start lies in `[start, end)`; overlapping
/// sources of cumulative types are merged by priority.
#[utoipa::path(get, path = "/v1/statistics", tag = "samples", operation_id = "statistics",
    params(StatisticsQuery),
    responses((status = 200, body = wire::Statistics), CommonErrors),
    security(("owner" = []), ("apps" = [])))]
pub async fn statistics(
    access: Access,
    ApiQuery(q): ApiQuery<StatisticsQuery>,
) -> Result<Json<wire::Statistics>, Problem> {
    let ti = lookup_type(None, &q.type_id)?;
    let ty = catalogue::get(ti);
    check_unit(ty, q.unit.as_deref())?;
    let range = time_bounds(q.start.as_deref(), q.end.as_deref())?;
    let filter = sources_param(q.sources.as_deref())?;
    let by_source = flag(q.by_source.as_deref(), "by_source")?;
    let wanted: Vec<&str> = match ty.aggregation() {
        Some(Aggregation::Cumulative) => vec!["sum"],
        Some(Aggregation::Discrete) => DISCRETE.to_vec(),
        None => vec![],
    };
    let unit = q.unit.as_deref();
    let view = access.view.clone();
    let (f, per_origin) = off_workers(move || {
        let cols = view.columns(ti);
        let table = view.source_table();
        let origins = (filter.is_some() || by_source)
            .then(|| buckets::selected_origins(&cols, &table, filter.as_deref()));
        if by_source
            && origins
                .as_ref()
                .is_some_and(|o| o.len() > sources::MAX_SERIES)
        {
            return Err(bucket_problem(BucketError::TooManySeries));
        }
        let f = range_figures(&view, ti, &cols, origins.clone(), &table, range);
        let per_origin = by_source.then(|| {
            let origins = origins.unwrap_or_default();
            let rows = cols.start_range(range.0, range.1);
            let per = buckets::figures_by_origin(&cols, rows, &origins);
            origins
                .into_iter()
                .map(|o| table.describe(o))
                .zip(per)
                .collect::<Vec<_>>()
        });
        Ok((f, per_origin))
    })
    .await??;
    let sources = per_origin.map(|per| {
        per.into_iter()
            .map(|(origin, f)| wire::SourceStatistics {
                source: origin.source,
                device: origin.device,
                count: f.count,
                figures: figures(ty, &f, unit, &wanted),
            })
            .collect()
    });
    Ok(Json(wire::Statistics {
        type_id: ty.id,
        count: f.count,
        unit: unit.or(ty.canonical_unit()).map(String::from),
        figures: figures(ty, &f, unit, &wanted),
        sources,
    }))
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
    /// `true` for one series per source: at most 65 (one source's 64
    /// devices and its samples without a device); more is `400
    /// too_many_series`, narrowed with `sources=`.
    #[param(value_type = Option<bool>)]
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
            return Problem::bad_request(ErrorCode::TooManyBuckets, e.to_string());
        }
        BucketError::TooManySeries => {
            return Problem::bad_request(ErrorCode::TooManySeries, e.to_string());
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
#[utoipa::path(get, path = "/v1/statistics/buckets", tag = "queries", operation_id = "statistics_buckets",
    params(BucketsQuery),
    responses(
        (status = 200, body = wire::BucketCollection),
        CommonErrors,
    ),
    security(("owner" = []), ("apps" = [])))]
pub async fn buckets(
    access: Access,
    ApiQuery(q): ApiQuery<BucketsQuery>,
) -> Result<Json<wire::BucketCollection>, Problem> {
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
    let view = access.view.clone();
    let request_anchor = anchor.clone();
    let (result, described) = off_workers(move || {
        let result = buckets::run(
            &view,
            &BucketRequest {
                ty: ti,
                start_us,
                end_us,
                interval: &interval,
                anchor: &request_anchor,
                sources: filter.as_deref(),
                by_source,
            },
        )?;
        let table = view.source_table();
        let described: Vec<Option<SourceInfo>> = result
            .series
            .iter()
            .map(|s| s.origin.map(|o| table.describe(o)))
            .collect();
        Ok((result, described))
    })
    .await?
    .map_err(bucket_problem)?;
    access.view.disclose(ty.id, 0, 1);
    let discrete = ty.aggregation() == Some(Aggregation::Discrete);
    let unit = q.unit.as_deref();
    let starts: Vec<String> = result.edges.iter().map(|&e| format_zoned(e, &tz)).collect();
    let series = |figures_per_bucket: &[Figures]| -> Vec<wire::Bucket> {
        figures_per_bucket
            .iter()
            .enumerate()
            .map(|(i, f)| wire::Bucket {
                start: starts[i].clone(),
                end: starts[i + 1].clone(),
                figures: figures(ty, f, unit, &wanted),
                count: discrete.then_some(f.count),
            })
            .collect()
    };
    let (buckets, sources) = if by_source {
        let per = result
            .series
            .iter()
            .zip(described)
            .map(|(s, origin)| {
                let origin = origin.expect("by_source series name their origin");
                wire::SourceBuckets {
                    source: origin.source,
                    device: origin.device,
                    buckets: series(&s.buckets),
                }
            })
            .collect();
        (None, Some(per))
    } else {
        (Some(series(&result.series[0].buckets)), None)
    };
    Ok(Json(wire::BucketCollection {
        type_id: ty.id,
        unit: unit.or(ty.canonical_unit()).unwrap_or_default().to_string(),
        interval: interval_text,
        tz: tz_name,
        anchor: format_zoned(anchor.timestamp().as_microsecond(), &tz),
        buckets,
        sources,
    }))
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
#[utoipa::path(get, path = "/v1/workouts/{id}/statistics", tag = "queries", operation_id = "workout_statistics",
    params(("id" = uuid::Uuid, Path, description = "The workout's UUID"), WorkoutQuery),
    responses(
        (status = 200, body = crate::wire::queries::WorkoutStatistics),
        (status = 404, description = "No such workout, or not visible to the caller", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors,
    ),
    security(("owner" = []), ("apps" = [])))]
pub async fn workout(
    access: Access,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<WorkoutQuery>,
) -> Result<Json<wire::WorkoutStatistics>, Problem> {
    let id = parse_id(&id)?;
    let workout_ty = catalogue::lookup("workout").expect("catalogue type");
    let (ti, row) = visible_sample(&access, id)?;
    if ti != workout_ty {
        return Err(Problem::not_found());
    }
    let workout = samples::present(&access.view, catalogue::get(ti), &row, None)?;
    let mut statistics = None;
    if let Some(type_id) = q.type_id.as_deref() {
        let sti = lookup_type(None, type_id)?;
        let ty = catalogue::get(sti);
        check_unit(ty, q.unit.as_deref())?;
        let wanted = aggregates(ty, None)?;
        let filter = sources_param(q.sources.as_deref())?;
        // Samples starting during the workout (an instant one at its end too).
        let range = (row.start_us, row.end_us.saturating_add(1));
        let view = access.view.clone();
        let f = off_workers(move || {
            let cols = view.columns(sti);
            let table = view.source_table();
            let selection = filter
                .as_deref()
                .map(|f| buckets::selected_origins(&cols, &table, Some(f)));
            range_figures(&view, sti, &cols, selection, &table, range)
        })
        .await?;
        statistics = Some(wire::WorkoutFigures {
            type_id: ty.id,
            count: f.count,
            unit: q
                .unit
                .as_deref()
                .or(ty.canonical_unit())
                .unwrap_or_default()
                .to_string(),
            figures: figures(ty, &f, q.unit.as_deref(), &wanted),
        });
    } else if q.unit.is_some() || q.sources.is_some() {
        return Err(Problem::invalid(
            None,
            "type",
            "unit and sources need a type",
        ));
    }
    Ok(Json(wire::WorkoutStatistics {
        workout,
        statistics,
    }))
}
