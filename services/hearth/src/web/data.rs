//! The owner's data pages: the summary of today and this week, every type
//! that has data grouped as the Health app groups them, and a type's page
//! with its chart by day, week, month or year, the numbers behind it, and
//! the latest samples with their source and device.
//!
//! Every figure comes from the same handlers as the JSON API, called as the
//! owner, so the pages read through the read boundary like any caller.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{ToSpan, Zoned};
use serde::Deserialize;

use super::chart::{self, Point};
use super::owner::{api_query, message_page, urlencoding, OwnerForm, OwnerFrame, OwnerPage};
use super::{display_name, render};
use crate::api::auth::Access;
use crate::api::problem::ApiJson;
use crate::api::problem::{ApiPath, Problem};
use crate::api::samples::ApiQuery;
use crate::api::{samples, sources, statistics, summary, AppState};
use crate::catalogue::{self, Aggregation, Kind, SampleType};
use crate::wire::queries::{BucketCollection, PinnedTypes, SourceKey, SourceList, SourcePriority};
use crate::wire::samples::{SamplePage, SampleValue};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/summary", get(summary_page))
        .route("/types", get(browse_page))
        .route("/types/{type}", get(type_page))
        .route("/types/{type}/samples/{id}/delete", post(delete_form))
        .route("/types/{type}/sources/move", post(move_source_form))
        .route("/types/{type}/pin", post(pin_form))
        .route("/import", get(import_page))
        .route("/lock", post(lock_form))
}

/// The time zone the owner's pages count days in: `tz=` when the page
/// names one, else the server's own.
fn time_zone(requested: Option<&str>) -> TimeZone {
    requested
        .and_then(|name| TimeZone::get(name).ok())
        .unwrap_or_else(TimeZone::system)
}

/// The owner's current date in `tz`, by the store's clock.
fn today(access: &Access, tz: &TimeZone) -> Date {
    jiff::Timestamp::from_microsecond(access.apps.clock.now_us())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(tz.clone())
        .date()
}

fn tz_name(tz: &TimeZone) -> String {
    tz.iana_name().unwrap_or("UTC").to_string()
}

/// A period the type page shows, and how it is cut into buckets.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Period {
    Day,
    Week,
    Month,
    Year,
}

impl Period {
    const ALL: [Period; 4] = [Period::Day, Period::Week, Period::Month, Period::Year];

    fn parse(text: Option<&str>) -> Option<Period> {
        match text.unwrap_or("week") {
            "day" => Some(Period::Day),
            "week" => Some(Period::Week),
            "month" => Some(Period::Month),
            "year" => Some(Period::Year),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::Year => "year",
        }
    }

    /// Start, end and bucket interval, ending with the current day (or
    /// month), in `tz`: local midnights, so days are 23 or 25 hours long
    /// across a DST change.
    fn range(self, today: Date, tz: &TimeZone) -> Option<(Zoned, Zoned, &'static str)> {
        let midnight = |d: Date| d.to_zoned(tz.clone()).ok();
        let tomorrow = today.checked_add(1.day()).ok()?;
        Some(match self {
            Period::Day => (midnight(today)?, midnight(tomorrow)?, "1h"),
            Period::Week => (
                midnight(today.checked_sub(6.days()).ok()?)?,
                midnight(tomorrow)?,
                "1d",
            ),
            Period::Month => (
                midnight(today.checked_sub(29.days()).ok()?)?,
                midnight(tomorrow)?,
                "1d",
            ),
            Period::Year => {
                let first = today.first_of_month();
                (
                    midnight(first.checked_sub(11.months()).ok()?)?,
                    midnight(first.checked_add(1.month()).ok()?)?,
                    "1mo",
                )
            }
        })
    }

    /// The axis label of a bucket starting at `start`: RFC 3339 in the
    /// page's time zone, so its first 19 characters are the local time.
    fn label(self, start: &str) -> String {
        let Some(local) = start
            .get(..19)
            .and_then(|t| t.parse::<jiff::civil::DateTime>().ok())
        else {
            return start.to_string();
        };
        let format = match self {
            Period::Day => "%H",
            Period::Week => "%a",
            Period::Month => "%d",
            Period::Year => "%b",
        };
        local.strftime(format).to_string()
    }
}

/// The API's answer to `path?query` as the owner, through its handler.
async fn api_buckets(access: Access, query: String) -> Result<BucketCollection, Problem> {
    let q = api_query::<statistics::BucketsQuery>(&query)?;
    statistics::buckets(access, ApiQuery(q))
        .await
        .map(|Json(b)| b)
}

async fn api_sources(access: Access, type_id: &str) -> Result<SourceList, Problem> {
    let q = api_query::<sources::SourcesQuery>(&format!("type={type_id}"))?;
    sources::list(access, ApiQuery(q)).await.map(|Json(l)| l)
}

async fn api_samples(access: Access, query: String) -> Result<SamplePage, Problem> {
    let q = api_query::<samples::ListQuery>(&query)?;
    samples::list(access, ApiQuery(q)).await.map(|Json(p)| p)
}

fn rfc3339(z: &Zoned) -> String {
    urlencoding(&z.timestamp().to_string())
}

/// A type's chart over `period`, and the rows of the table behind it.
struct Chart {
    svg: String,
    unit: String,
    rows: Vec<ChartRow>,
    /// Per bucket: low, high and mark (a sum's low is 0, its mark the sum).
    figures: Vec<Option<(f64, f64, f64)>>,
}

struct ChartRow {
    label: String,
    figures: String,
}

fn format_figure(v: Option<f64>) -> String {
    match v {
        None => "—".into(),
        Some(v) if v.abs() >= 100.0 || v.fract() == 0.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.1}"),
    }
}

async fn chart_of(
    access: Access,
    ty: &SampleType,
    period: Period,
    tz: &TimeZone,
) -> Result<Option<Chart>, Problem> {
    let Kind::Quantity { aggregation, .. } = ty.kind else {
        return Ok(None);
    };
    let today = today(&access, tz);
    let (start, end, interval) = period.range(today, tz).ok_or_else(Problem::internal)?;
    let aggregate = match aggregation {
        Aggregation::Cumulative => "sum",
        Aggregation::Discrete => "min,max,avg",
    };
    let query = format!(
        "type={}&start={}&end={}&interval={interval}&tz={}&aggregate={aggregate}",
        ty.id,
        rfc3339(&start),
        rfc3339(&end),
        urlencoding(&tz_name(tz)),
    );
    let collection = api_buckets(access, query).await?;
    let buckets = collection.buckets.unwrap_or_default();
    let mut points = Vec::with_capacity(buckets.len());
    let mut rows = Vec::with_capacity(buckets.len());
    let mut raw = Vec::with_capacity(buckets.len());
    for b in &buckets {
        let label = period.label(&b.start);
        let f = &b.figures;
        let (point, figures) = match aggregation {
            Aggregation::Cumulative => {
                let sum = f.sum.flatten();
                (
                    Point {
                        label: label.clone(),
                        low: sum.map(|_| 0.0),
                        high: sum,
                        mark: None,
                    },
                    format_figure(sum),
                )
            }
            Aggregation::Discrete => {
                let (min, max, avg) = (f.min.flatten(), f.max.flatten(), f.avg.flatten());
                (
                    Point {
                        label: label.clone(),
                        low: min,
                        high: max,
                        mark: avg,
                    },
                    match (min, max, avg) {
                        (Some(_), Some(_), Some(_)) => format!(
                            "{} – {} (average {})",
                            format_figure(min),
                            format_figure(max),
                            format_figure(avg)
                        ),
                        _ => "—".into(),
                    },
                )
            }
        };
        raw.push(match (point.low, point.high) {
            (Some(low), Some(high)) => Some((low, high, point.mark.unwrap_or(high))),
            _ => None,
        });
        points.push(point);
        rows.push(ChartRow {
            label: b.start.get(..16).unwrap_or(&b.start).replace('T', " "),
            figures,
        });
    }
    let title = format!(
        "{} by {}, {}",
        display_name(ty.id),
        match period {
            Period::Day => "hour",
            Period::Year => "month",
            _ => "day",
        },
        collection.unit
    );
    Ok(Some(Chart {
        svg: chart::svg(&title, &collection.unit, &points),
        unit: collection.unit,
        rows,
        figures: raw,
    }))
}

struct SampleRow {
    id: String,
    start: String,
    value: String,
    source: String,
    device: String,
}

fn sample_rows(page: SamplePage) -> Vec<SampleRow> {
    page.samples
        .into_iter()
        .map(|s| SampleRow {
            id: s.id.to_string(),
            start: s.start.get(..16).unwrap_or(&s.start).replace('T', " "),
            value: match (&s.value, &s.unit) {
                (Some(SampleValue::Quantity(v)), Some(unit)) => {
                    format!("{} {unit}", format_figure(Some(*v)))
                }
                (Some(SampleValue::Quantity(v)), None) => format_figure(Some(*v)),
                (Some(SampleValue::Category(c)), _) => display_name(c),
                (None, _) => match (s.activity, s.duration_s) {
                    (Some(a), Some(d)) => format!("{} · {:.0} min", display_name(a), d / 60.0),
                    _ => String::new(),
                },
            },
            source: s.source,
            device: s.device.map(|d| d.name).unwrap_or_default(),
        })
        .collect()
}

#[derive(Deserialize)]
struct PageQuery {
    period: Option<String>,
    tz: Option<String>,
}

struct SourceRow {
    name: String,
    device: String,
}

struct PeriodLink {
    name: &'static str,
    href: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "type.html")]
struct TypePage {
    frame: OwnerFrame,
    type_id: &'static str,
    name: String,
    chart: Option<Chart>,
    periods: Vec<PeriodLink>,
    samples: Vec<SampleRow>,
    /// In the order statistics prefer them.
    sources: Vec<SourceRow>,
    /// Whether the summary shows this type first.
    pinned: bool,
}

async fn type_page(
    page: OwnerPage,
    Path(type_id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    let Some(ty) = catalogue::lookup(&type_id).map(catalogue::get) else {
        return message_page(
            StatusCode::NOT_FOUND,
            "No such type",
            "Hearth has no type of this name.",
        );
    };
    let Some(period) = Period::parse(q.period.as_deref()) else {
        return message_page(
            StatusCode::BAD_REQUEST,
            "No such period",
            "Choose a day, a week, a month or a year.",
        );
    };
    let tz = time_zone(q.tz.as_deref());
    let access = page.access.0.clone();
    let chart = match chart_of(access.clone(), ty, period, &tz).await {
        Ok(chart) => chart,
        Err(p) => return message_page(p.status, "This chart cannot be drawn", &p.detail),
    };
    let sources = match api_sources(access.clone(), ty.id).await {
        Ok(list) => list
            .sources
            .into_iter()
            .map(|s| SourceRow {
                name: s.source,
                device: s.device.map(|d| d.name).unwrap_or_default(),
            })
            .collect(),
        Err(p) => return message_page(p.status, "These sources cannot be listed", &p.detail),
    };
    let latest = match api_samples(access, format!("type={}&limit=20&order=desc", ty.id)).await {
        Ok(latest) => latest,
        Err(p) => return message_page(p.status, "These samples cannot be listed", &p.detail),
    };
    let tz_param =
        q.tz.as_deref()
            .map(|t| format!("&tz={}", urlencoding(t)))
            .unwrap_or_default();
    let periods = Period::ALL
        .iter()
        .map(|p| PeriodLink {
            name: p.as_str(),
            href: format!("/types/{}?period={}{tz_param}", ty.id, p.as_str()),
            current: *p == period,
        })
        .collect();
    render(
        StatusCode::OK,
        &TypePage {
            frame: page.frame,
            type_id: ty.id,
            name: display_name(ty.id),
            chart,
            periods,
            samples: sample_rows(latest),
            sources,
            pinned: page.access.0.view.pinned_types().iter().any(|p| p == ty.id),
        },
    )
}

/// Moves one of a type's sources up or down: the type's sources, in their
/// new order, go to the front of the owner's priority order, ahead of the
/// rest as it stood. Statistics of every type follow the new order.
async fn move_source_form(
    Path(type_id): Path<String>,
    OwnerForm { page, params }: OwnerForm,
) -> Response {
    let index = params.one("index").and_then(|i| i.parse::<usize>().ok());
    let up = match params.one("direction") {
        Some("up") => true,
        Some("down") => false,
        _ => {
            return message_page(
                StatusCode::BAD_REQUEST,
                "This move cannot be made",
                "Move a source up or down.",
            )
        }
    };
    let access = page.access.0;
    let listed = match api_sources(access.clone(), &type_id).await {
        Ok(list) => list.sources,
        Err(p) => return message_page(p.status, "These sources cannot be listed", &p.detail),
    };
    let mut keys: Vec<SourceKey> = listed
        .into_iter()
        .map(|s| SourceKey {
            source: s.source,
            device: s.device.map(|d| d.name),
        })
        .collect();
    let other = match (index, up) {
        (Some(i), true) if i > 0 && i < keys.len() => i - 1,
        (Some(i), false) if i + 1 < keys.len() => i + 1,
        _ => {
            return message_page(
                StatusCode::BAD_REQUEST,
                "This move cannot be made",
                "There is no source to swap with.",
            )
        }
    };
    keys.swap(index.unwrap_or(0), other);
    let (_, current) = access.view.priority();
    let same = |a: &SourceKey, source: &str, device: Option<&str>| {
        a.source == source && a.device.as_deref() == device
    };
    let rest = current
        .iter()
        .filter(|k| !keys.iter().any(|n| same(n, &k.source, k.device.as_deref())))
        .map(|k| SourceKey {
            source: k.source.clone(),
            device: k.device.clone(),
        })
        .collect::<Vec<_>>();
    let order: Vec<SourceKey> = keys.into_iter().chain(rest).take(64).collect();
    match sources::put_priority(access, ApiJson(SourcePriority { order })).await {
        Ok(_) => Redirect::to(&format!("/types/{}#sources", urlencoding(&type_id))).into_response(),
        Err(p) => message_page(p.status, "The order cannot be changed", &p.detail),
    }
}

struct TypeLink {
    id: &'static str,
    name: String,
    latest: String,
}

struct Group {
    name: String,
    types: Vec<TypeLink>,
}

#[derive(Template)]
#[template(path = "types.html")]
struct BrowsePage {
    frame: OwnerFrame,
    groups: Vec<Group>,
}

/// Every type that has data the owner can see, by group, with its latest
/// sample's time: one sample per type, so the page costs the same on a
/// store of ten samples or ten million.
async fn browse_page(page: OwnerPage) -> Response {
    let mut groups: Vec<Group> = Vec::new();
    for &group in catalogue::GROUPS {
        let mut types = Vec::new();
        for ty in catalogue::all().iter().filter(|t| t.group == group) {
            if matches!(ty.kind, Kind::Characteristic { .. }) {
                continue;
            }
            let latest = match api_samples(
                page.access.0.clone(),
                format!("type={}&limit=1&order=desc", ty.id),
            )
            .await
            {
                Ok(p) => p,
                Err(p) => return message_page(p.status, "Your data cannot be listed", &p.detail),
            };
            if let Some(s) = latest.samples.first() {
                types.push(TypeLink {
                    id: ty.id,
                    name: display_name(ty.id),
                    latest: s.start.get(..16).unwrap_or(&s.start).replace('T', " "),
                });
            }
        }
        if !types.is_empty() {
            groups.push(Group {
                name: display_name(group),
                types,
            });
        }
    }
    render(
        StatusCode::OK,
        &BrowsePage {
            frame: page.frame,
            groups,
        },
    )
}

/// The summary's own types, after the ones the owner pinned.
const SUMMARY_TYPES: &[&str] = &[
    "step_count",
    "active_energy_burned",
    "heart_rate",
    "resting_heart_rate",
    "sleep_analysis",
    "workout",
];

struct Tile {
    type_id: &'static str,
    name: String,
    pinned: bool,
    /// The tile's main figure, with what it is of (`Today`, `Last night`).
    label: &'static str,
    headline: String,
    /// A second line, such as the week's figure.
    detail: Option<String>,
    chart: Option<Chart>,
}

#[derive(Template)]
#[template(path = "summary.html")]
struct SummaryPage {
    frame: OwnerFrame,
    tiles: Vec<Tile>,
}

/// Today's figure and the week's, from the week's daily buckets.
fn today_and_week(ty: &SampleType, figures: &[Option<(f64, f64, f64)>]) -> (String, String) {
    if let Kind::Quantity {
        aggregation: Aggregation::Cumulative,
        ..
    } = ty.kind
    {
        let sums: Vec<f64> = figures.iter().map(|r| r.map_or(0.0, |r| r.1)).collect();
        return (
            format_figure(sums.last().copied()),
            format_figure(Some(sums.iter().sum())),
        );
    }
    let range = |rows: &[Option<(f64, f64, f64)>]| {
        let present: Vec<(f64, f64, f64)> = rows.iter().flatten().copied().collect();
        if present.is_empty() {
            return "—".to_string();
        }
        let min = present.iter().map(|r| r.0).fold(f64::INFINITY, f64::min);
        let max = present
            .iter()
            .map(|r| r.1)
            .fold(f64::NEG_INFINITY, f64::max);
        if min == max {
            return format_figure(Some(min));
        }
        format!(
            "{} – {}",
            format_figure(Some(min)),
            format_figure(Some(max))
        )
    };
    (
        range(&figures[figures.len().saturating_sub(1)..]),
        range(figures),
    )
}

/// What the summary's week is: its bounds in the owner's time zone.
struct Week {
    start: Zoned,
    end: Zoned,
    tz: TimeZone,
}

impl Week {
    fn query(&self) -> String {
        format!(
            "start={}&end={}&limit=1000",
            rfc3339(&self.start),
            rfc3339(&self.end)
        )
    }
}

/// One type's tile, or none when a type the owner did not pin has nothing
/// to show this week.
async fn tile(
    access: &Access,
    ty: &'static SampleType,
    pinned: bool,
    week: &Week,
) -> Result<Option<Tile>, Problem> {
    let tile = |label, headline, detail, chart| Tile {
        type_id: ty.id,
        name: display_name(ty.id),
        pinned,
        label,
        headline,
        detail,
        chart,
    };
    match (ty.id, &ty.kind) {
        ("workout", _) => {
            let p = api_samples(access.clone(), format!("type=workout&{}", week.query())).await?;
            let minutes = p
                .samples
                .iter()
                .filter_map(|s| s.duration_s)
                .fold(0.0, |a, d| a + d)
                / 60.0;
            Ok(Some(tile(
                "This week",
                format!("{}, {minutes:.0} min", p.samples.len()),
                None,
                None,
            )))
        }
        ("sleep_analysis", _) => {
            // Last night: the time asleep in sleep samples ending since
            // yesterday noon.
            let noon = week
                .end
                .checked_sub(36.hours())
                .map(|z| rfc3339(&z))
                .unwrap_or_default();
            let p = api_samples(
                access.clone(),
                format!("type=sleep_analysis&start={noon}&limit=1000"),
            )
            .await?;
            let asleep_s: f64 = p
                .samples
                .iter()
                .filter(|s| matches!(s.value, Some(SampleValue::Category(v)) if v.starts_with("asleep")))
                .filter_map(|s| {
                    let start = s.start.parse::<jiff::Timestamp>().ok()?;
                    let end = s.end.parse::<jiff::Timestamp>().ok()?;
                    Some((end.as_second() - start.as_second()) as f64)
                })
                .sum();
            let headline = if asleep_s > 0.0 {
                format!(
                    "{}h {:02}m",
                    (asleep_s / 3600.0) as i64,
                    ((asleep_s % 3600.0) / 60.0) as i64
                )
            } else {
                "—".into()
            };
            Ok(Some(tile("Last night", headline, None, None)))
        }
        (_, Kind::Quantity { .. }) => {
            let Some(chart) = chart_of(access.clone(), ty, Period::Week, &week.tz).await? else {
                return Ok(None);
            };
            let empty = chart
                .figures
                .iter()
                .all(|f| f.is_none_or(|f| f.1 == 0.0 && f.0 == 0.0));
            if empty && !pinned {
                return Ok(None);
            }
            let (today_text, week_text) = today_and_week(ty, &chart.figures);
            Ok(Some(tile(
                "Today",
                format!("{today_text} {}", chart.unit),
                Some(format!("This week: {week_text} {}", chart.unit)),
                Some(chart),
            )))
        }
        // Categories other than sleep: how many this week, and when the
        // latest was.
        _ => {
            let p = api_samples(access.clone(), format!("type={}&{}", ty.id, week.query())).await?;
            if p.samples.is_empty() && !pinned {
                return Ok(None);
            }
            let count = match p.samples.len() {
                1000.. => "1000 or more".to_string(),
                n => n.to_string(),
            };
            let latest = p
                .samples
                .iter()
                .map(|s| s.start.as_str())
                .max()
                .map(|t| format!("Latest: {}", t.get(..16).unwrap_or(t).replace('T', " ")));
            Ok(Some(tile("This week", count, latest, None)))
        }
    }
}

/// Today and this week: the types the owner pinned first, in their order,
/// then the summary's own.
async fn summary_page(page: OwnerPage, Query(q): Query<PageQuery>) -> Response {
    let tz = time_zone(q.tz.as_deref());
    let today = today(&page.access.0, &tz);
    let Some((start, end, _)) = Period::Week.range(today, &tz) else {
        return message_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "No summary",
            "The date is out of range.",
        );
    };
    let week = Week { start, end, tz };
    let access = page.access.0.clone();
    let pinned = access.view.pinned_types();
    let own = SUMMARY_TYPES
        .iter()
        .filter(|id| !pinned.iter().any(|p| p == *id))
        .map(|id| (*id, false));
    let chosen = pinned.iter().map(|id| (id.as_str(), true));
    let mut tiles = Vec::new();
    for (id, is_pinned) in chosen.chain(own) {
        let Some(ty) = catalogue::lookup(id).map(catalogue::get) else {
            continue;
        };
        match tile(&access, ty, is_pinned, &week).await {
            Ok(Some(t)) => tiles.push(t),
            Ok(None) => {}
            Err(p) => return message_page(p.status, "The summary cannot be shown", &p.detail),
        }
    }
    render(
        StatusCode::OK,
        &SummaryPage {
            frame: page.frame,
            tiles,
        },
    )
}

/// Pins a type to the summary (at the end of the pinned ones) or unpins
/// it, through the same handler as `PUT /v1/owner/pinned-types`.
async fn pin_form(Path(type_id): Path<String>, OwnerForm { page, params }: OwnerForm) -> Response {
    let pin = match params.one("pinned") {
        Some("true") => true,
        Some("false") => false,
        _ => {
            return message_page(
                StatusCode::BAD_REQUEST,
                "This type cannot be pinned",
                "Pin a type or unpin it.",
            )
        }
    };
    let access = page.access.0;
    let mut types = access.view.pinned_types();
    types.retain(|t| *t != type_id);
    if pin {
        types.push(type_id.clone());
    }
    match summary::put_pinned(access, ApiJson(PinnedTypes { types })).await {
        Ok(_) => Redirect::to(&format!("/types/{}", urlencoding(&type_id))).into_response(),
        Err(p) => message_page(p.status, "The summary cannot be changed", &p.detail),
    }
}

#[derive(Template)]
#[template(path = "import.html")]
struct ImportPage {
    frame: OwnerFrame,
}

/// Upload an export with a live progress bar (the script follows the
/// import job), and download a full export.
async fn import_page(page: OwnerPage) -> Response {
    render(StatusCode::OK, &ImportPage { frame: page.frame })
}

async fn delete_form(
    Path((type_id, id)): Path<(String, String)>,
    OwnerForm { page, .. }: OwnerForm,
) -> Response {
    match samples::delete(page.access.0, ApiPath(id)).await {
        Ok(_) => Redirect::to(&format!("/types/{}", urlencoding(&type_id))).into_response(),
        Err(p) => message_page(p.status, "This sample cannot be deleted", &p.detail),
    }
}

/// Locks the store from any owner page: nothing is readable until the next
/// unlock, and the browser goes back to the unlock page.
async fn lock_form(State(state): State<AppState>, OwnerForm { page, .. }: OwnerForm) -> Response {
    drop(page);
    state.store.lock().await;
    Redirect::to("/").into_response()
}
