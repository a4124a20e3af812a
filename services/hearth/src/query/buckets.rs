//! Statistics collections: one figure per calendar bucket.
//!
//! Bucket edges are `anchor + k × interval` for whole `k`, computed in an
//! IANA time zone, so `P1D` buckets in `Europe/Berlin` start at local
//! midnight and a DST day is 23 or 25 hours long; `P1M` buckets follow the
//! calendar (anchor + k months from the anchor, never accumulated, so the
//! 31st stays the 31st where it exists). Time-zone math happens once per
//! edge, never per sample: per edge a binary search on the sorted start
//! column, per bucket a difference of prefix sums ([`super::series`]).
//!
//! In-process use (benchmarks): parse an [`Interval`] and a time zone once,
//! then call [`run`] with a [`BucketRequest`].

use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, Zoned};

use super::series::{Series, SeriesKey};
use super::sources::{Origin, SourceTable, MAX_SERIES};
use crate::catalogue::{self, Aggregation, TypeIndex};
use crate::log::event::SourceKey;
use crate::projection::{Projection, TypeColumns};
use crate::view::View;

/// Most buckets one request may ask for.
pub const MAX_BUCKETS: usize = 10_000;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BucketError {
    #[error("not an ISO 8601 duration such as PT1H, P1D, P1W or P1M: {0}")]
    Interval(String),
    #[error("not an IANA time zone such as Europe/Berlin: {0}")]
    TimeZone(String),
    #[error("not an RFC 3339 time or a local date-time: {0}")]
    Anchor(String),
    #[error(
        "the range holds more than {MAX_BUCKETS} buckets; use a longer interval or a shorter range"
    )]
    TooMany,
    #[error("by_source would answer more than {MAX_SERIES} series; narrow it with sources=")]
    TooManySeries,
    #[error("end must be after start")]
    Range,
    #[error("{0} has no buckets (only quantity types do)")]
    NotQuantity(&'static str),
}

/// A bucket length: fixed (hours, minutes, seconds) or calendar (days and up).
#[derive(Clone, Debug)]
pub struct Interval {
    span: Span,
    /// Microseconds, for intervals without calendar units.
    fixed_us: Option<i64>,
    /// Average length, to estimate bucket counts.
    approx_us: i64,
}

const SECOND: i64 = 1_000_000;
const DAY: i64 = 86_400 * SECOND;

/// The longest bucket interval.
const MAX_INTERVAL_DAYS: i128 = 50 * 366;

impl Interval {
    pub fn parse(text: &str) -> Result<Interval, BucketError> {
        let bad = |why: &str| BucketError::Interval(format!("'{text}' ({why})"));
        let span: Span = text.parse().map_err(|_| bad("unparseable"))?;
        if span.is_negative() || span.is_zero() {
            return Err(bad("must be positive"));
        }
        if span.get_milliseconds() != 0
            || span.get_microseconds() != 0
            || span.get_nanoseconds() != 0
        {
            return Err(bad("whole seconds only"));
        }
        // Refused before the arithmetic below could overflow: longer than
        // any useful bucket of sample times (1900–2200). Upper bounds: a
        // year as 366 days, a month as 31.
        let bound_secs = (i128::from(span.get_years()) * 366
            + i128::from(span.get_months()) * 31
            + i128::from(span.get_weeks()) * 7
            + i128::from(span.get_days()))
            * 86_400
            + i128::from(span.get_hours()) * 3600
            + i128::from(span.get_minutes()) * 60
            + i128::from(span.get_seconds());
        if bound_secs > MAX_INTERVAL_DAYS * 86_400 {
            return Err(bad("at most 50 years"));
        }
        let calendar_days = i64::from(span.get_years()) * 146_097 * DAY / 400
            + i64::from(span.get_months()) * 146_097 * DAY / 4800
            + i64::from(span.get_weeks()) * 7 * DAY
            + i64::from(span.get_days()) * DAY;
        let time_us =
            (i64::from(span.get_hours()) * 3600 + span.get_minutes() * 60 + span.get_seconds())
                * SECOND;
        let calendar = span.get_years() != 0
            || span.get_months() != 0
            || span.get_weeks() != 0
            || span.get_days() != 0;
        Ok(Interval {
            span,
            fixed_us: (!calendar).then_some(time_us),
            approx_us: (calendar_days + time_us).max(SECOND),
        })
    }

    fn has_months(&self) -> bool {
        self.span.get_years() != 0 || self.span.get_months() != 0
    }

    fn has_weeks(&self) -> bool {
        self.span.get_weeks() != 0
    }
}

pub fn parse_tz(name: &str) -> Result<TimeZone, BucketError> {
    TimeZone::get(name).map_err(|_| BucketError::TimeZone(format!("'{name}'")))
}

/// An anchor: an RFC 3339 time, or a local date-time (`2026-01-01T00:00`)
/// or date read in `tz`.
pub fn parse_anchor(text: &str, tz: &TimeZone) -> Result<Zoned, BucketError> {
    if let Ok(ts) = text.parse::<Timestamp>() {
        return Ok(ts.to_zoned(tz.clone()));
    }
    let civil: Option<jiff::civil::DateTime> = text.parse().ok().or_else(|| {
        text.parse::<jiff::civil::Date>()
            .ok()
            .map(|d| d.at(0, 0, 0, 0))
    });
    civil
        .and_then(|dt| dt.to_zoned(tz.clone()).ok())
        .ok_or_else(|| BucketError::Anchor(format!("'{text}'")))
}

fn zoned(us: i64, tz: &TimeZone) -> Result<Zoned, BucketError> {
    Timestamp::from_microsecond(us)
        .map(|t| t.to_zoned(tz.clone()))
        .map_err(|_| BucketError::Range)
}

/// The anchor when none is given: local midnight of `start`'s day, of its
/// week's Monday for weeks, of its month's first day for months and years
/// (January 1st for whole years).
pub fn default_anchor(
    start_us: i64,
    interval: &Interval,
    tz: &TimeZone,
) -> Result<Zoned, BucketError> {
    let at = zoned(start_us, tz)?;
    let day = if interval.has_months() {
        if interval.span.get_months() == 0 {
            at.date().first_of_year()
        } else {
            at.date().first_of_month()
        }
    } else if interval.has_weeks() {
        let back = i64::from(at.date().weekday().to_monday_zero_offset());
        at.date()
            .checked_sub(Span::new().days(back))
            .map_err(|_| BucketError::Range)?
    } else {
        at.date()
    };
    day.to_zoned(tz.clone()).map_err(|_| BucketError::Range)
}

/// Edge `k`: the anchor plus `k` intervals, in microseconds.
fn edge(anchor: &Zoned, interval: &Interval, k: i64) -> Option<i64> {
    let anchor_us = anchor.timestamp().as_microsecond();
    match interval.fixed_us {
        Some(len) => len.checked_mul(k)?.checked_add(anchor_us),
        None => {
            let span = interval.span.checked_mul(k).ok()?;
            let z = anchor.checked_add(span).ok()?;
            Some(z.timestamp().as_microsecond())
        }
    }
}

/// Bucket edges covering `[start, end)`: the last edge at or before `start`
/// to the first at or after `end`. At most `max` buckets.
pub fn edges(
    start_us: i64,
    end_us: i64,
    interval: &Interval,
    anchor: &Zoned,
    max: usize,
) -> Result<Vec<i64>, BucketError> {
    if end_us <= start_us {
        return Err(BucketError::Range);
    }
    let estimate = (end_us - start_us) / interval.approx_us;
    if estimate > max as i64 + 2 {
        return Err(BucketError::TooMany);
    }
    let anchor_us = anchor.timestamp().as_microsecond();
    let mut k = (start_us - anchor_us).div_euclid(interval.approx_us);
    let at = |k: i64| edge(anchor, interval, k).ok_or(BucketError::Range);
    while at(k)? > start_us {
        k -= 1;
    }
    while at(k + 1)? <= start_us {
        k += 1;
    }
    let mut out = vec![at(k)?];
    while *out.last().expect("one edge") < end_us {
        if out.len() > max {
            return Err(BucketError::TooMany);
        }
        k += 1;
        out.push(at(k)?);
    }
    Ok(out)
}

/// One bucket's figures, in canonical units. Cumulative types fill `sum`;
/// discrete types fill the rest (`None` when the bucket is empty).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    pub sum: f64,
    pub count: u64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub avg: Option<f64>,
    pub most_recent: Option<f64>,
}

/// One series of buckets: merged over every selected source (`origin:
/// None`), or of one origin.
#[derive(Clone, Debug)]
pub struct BucketSeries {
    pub origin: Option<Origin>,
    pub buckets: Vec<Figures>,
}

#[derive(Debug)]
pub struct BucketResult {
    /// `buckets + 1` edges, microseconds.
    pub edges: Vec<i64>,
    pub series: Vec<BucketSeries>,
}

pub struct BucketRequest<'a> {
    pub ty: TypeIndex,
    pub start_us: i64,
    pub end_us: i64,
    pub interval: &'a Interval,
    /// In the time zone of the buckets.
    pub anchor: &'a Zoned,
    /// `sources=`: only these count.
    pub sources: Option<&'a [SourceKey]>,
    /// One series per origin instead of one merged series.
    pub by_source: bool,
}

/// Origins with live samples in `cols` that `sources` selects, in the order
/// of their names (never of when they were first seen).
pub fn selected_origins(
    cols: &TypeColumns,
    table: &SourceTable,
    sources: Option<&[SourceKey]>,
) -> Vec<Origin> {
    let mut seen: Vec<Origin> = cols
        .live_origins()
        .iter()
        .map(|&(source, device)| Origin { source, device })
        .filter(|&o| sources.is_none_or(|keys| keys.iter().any(|k| table.matches(o, k))))
        .collect();
    table.sort(&mut seen);
    seen
}

/// The cumulative series of the shared columns of `ty`, cached per type.
/// A caller's own rows get theirs from [`crate::view::View::series`].
pub fn series_for(
    projection: &Projection,
    ty: TypeIndex,
    cols: &TypeColumns,
    selection: Option<Vec<Origin>>,
    table: &SourceTable,
) -> std::sync::Arc<Series> {
    let (priority_generation, order) = projection.priority();
    let key = SeriesKey {
        generation: cols.generation(),
        priority_generation,
        selection,
    };
    projection.series_cache(ty).get_or_build(
        key.clone(),
        cols.reshaped(),
        |stale| stale.extend(cols, key.clone()),
        || Series::build(cols, key.clone(), table, &order),
    )
}

/// Accumulates discrete figures one value at a time.
#[derive(Clone, Copy)]
struct Tally {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    last: f64,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally {
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            last: 0.0,
        }
    }
}

impl Tally {
    fn add(&mut self, v: f64) {
        self.count += 1;
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.last = v;
    }

    fn figures(&self) -> Figures {
        let mut f = Figures {
            count: self.count,
            sum: self.sum,
            ..Figures::default()
        };
        if self.count > 0 {
            f.min = Some(self.min);
            f.max = Some(self.max);
            f.avg = Some(self.sum / self.count as f64);
            f.most_recent = Some(self.last);
        }
        f
    }
}

/// Discrete figures of the live rows in `rows` that `selection` selects.
pub fn discrete_figures(
    cols: &TypeColumns,
    rows: std::ops::Range<usize>,
    selection: Option<&[Origin]>,
) -> Figures {
    let values = cols.value_slice();
    let mut tally = Tally::default();
    for r in rows {
        if !cols.live(r) {
            continue;
        }
        if let Some(sel) = selection {
            let o = Origin::of(cols, r);
            if !sel.contains(&o) {
                continue;
            }
        }
        tally.add(values[r]);
    }
    tally.figures()
}

/// Figures per origin, in one pass over the live rows starting in `rows`:
/// what [`discrete_figures`] gives for each origin alone, with `sum` the
/// plain sum of the values (one origin has nothing to merge).
pub fn figures_by_origin(
    cols: &TypeColumns,
    rows: std::ops::Range<usize>,
    origins: &[Origin],
) -> Vec<Figures> {
    let slot: hashbrown::HashMap<Origin, usize> =
        origins.iter().enumerate().map(|(i, &o)| (o, i)).collect();
    let values = cols.value_slice();
    let mut tallies = vec![Tally::default(); origins.len()];
    for r in rows {
        let o = Origin::of(cols, r);
        if let Some(&i) = slot.get(&o) {
            if cols.live(r) {
                tallies[i].add(values[r]);
            }
        }
    }
    tallies.iter().map(Tally::figures).collect()
}

/// Bucket figures per origin, in one pass over the rows that can touch the
/// buckets. Cumulative: each sample's value split over the buckets it
/// overlaps in proportion to the overlap (an instant one in the bucket it
/// starts in). Discrete: figures of the samples starting in each bucket.
fn buckets_by_origin(
    cols: &TypeColumns,
    edges: &[i64],
    origins: &[Origin],
    aggregation: Aggregation,
) -> Vec<Vec<Figures>> {
    let buckets = edges.len().saturating_sub(1);
    let slot: hashbrown::HashMap<Origin, usize> =
        origins.iter().enumerate().map(|(i, &o)| (o, i)).collect();
    let (Some(&first), Some(&last)) = (edges.first(), edges.last()) else {
        return vec![Vec::new(); origins.len()];
    };
    let (starts, ends, values) = (cols.starts(), cols.ends(), cols.value_slice());
    let reach = match aggregation {
        Aggregation::Cumulative => cols.longest_us(),
        Aggregation::Discrete => 0,
    };
    let rows = cols.start_range(first.saturating_sub(reach), last);
    let bucket_of = |t: i64| edges.partition_point(|&e| e <= t).saturating_sub(1);
    match aggregation {
        Aggregation::Discrete => {
            let mut tallies = vec![vec![Tally::default(); buckets]; origins.len()];
            let mut b = 0;
            for r in rows {
                let Some(&i) = slot.get(&Origin::of(cols, r)) else {
                    continue;
                };
                if !cols.live(r) {
                    continue;
                }
                while b + 1 < buckets && edges[b + 1] <= starts[r] {
                    b += 1;
                }
                tallies[i][b].add(values[r]);
            }
            tallies
                .iter()
                .map(|t| t.iter().map(Tally::figures).collect())
                .collect()
        }
        Aggregation::Cumulative => {
            let mut sums = vec![vec![0.0f64; buckets]; origins.len()];
            for r in rows {
                let Some(&i) = slot.get(&Origin::of(cols, r)) else {
                    continue;
                };
                let (s, e, v) = (starts[r], ends[r], values[r]);
                if !cols.live(r) || e < first || (e == first && s < first) {
                    continue;
                }
                if e <= s {
                    if s >= first {
                        sums[i][bucket_of(s)] += v;
                    }
                    continue;
                }
                let mut b = if s < first { 0 } else { bucket_of(s) };
                while b < buckets && edges[b] < e {
                    let overlap = e.min(edges[b + 1]) - s.max(edges[b]);
                    if overlap > 0 {
                        sums[i][b] += v * (overlap as f64 / (e - s) as f64);
                    }
                    b += 1;
                }
            }
            sums.into_iter()
                .map(|per| {
                    per.into_iter()
                        .map(|sum| Figures {
                            sum,
                            ..Figures::default()
                        })
                        .collect()
                })
                .collect()
        }
    }
}

/// Runs a bucket query over what `view` shows.
pub fn run(view: &View, req: &BucketRequest) -> Result<BucketResult, BucketError> {
    let ty = catalogue::get(req.ty);
    let aggregation = ty.aggregation().ok_or(BucketError::NotQuantity(ty.id))?;
    let edges = edges(
        req.start_us,
        req.end_us,
        req.interval,
        req.anchor,
        MAX_BUCKETS,
    )?;
    let cols = view.columns(req.ty);
    let table = view.source_table();
    if req.by_source {
        let origins = selected_origins(&cols, &table, req.sources);
        if origins.len() > MAX_SERIES {
            return Err(BucketError::TooManySeries);
        }
        let per = buckets_by_origin(&cols, &edges, &origins, aggregation);
        let series = origins
            .into_iter()
            .zip(per)
            .map(|(o, buckets)| BucketSeries {
                origin: Some(o),
                buckets,
            })
            .collect();
        return Ok(BucketResult { edges, series });
    }
    let selection = req
        .sources
        .map(|keys| selected_origins(&cols, &table, Some(keys)));
    let buckets = match aggregation {
        Aggregation::Cumulative => view
            .series(req.ty, &cols, selection, &table)
            .bucket_sums(&cols, &edges)
            .into_iter()
            .map(|sum| Figures {
                sum,
                ..Figures::default()
            })
            .collect(),
        Aggregation::Discrete => {
            let starts = cols.starts();
            let rows: Vec<usize> = edges
                .iter()
                .map(|&e| starts.partition_point(|&s| s < e))
                .collect();
            rows.windows(2)
                .map(|w| discrete_figures(&cols, w[0]..w[1], selection.as_deref()))
                .collect()
        }
    };
    Ok(BucketResult {
        edges,
        series: vec![BucketSeries {
            origin: None,
            buckets,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_microsecond()
    }

    fn lengths_h(e: &[i64]) -> Vec<i64> {
        e.windows(2)
            .map(|w| (w[1] - w[0]) / 3_600_000_000)
            .collect()
    }

    #[test]
    fn days_follow_dst_in_berlin_and_new_york() {
        let tz = parse_tz("Europe/Berlin").unwrap();
        let day = Interval::parse("P1D").unwrap();
        let (s, e) = (us("2026-03-28T00:00:00Z"), us("2026-03-31T00:00:00Z"));
        let anchor = default_anchor(s, &day, &tz).unwrap();
        let edges = edges(s, e, &day, &anchor, 100).unwrap();
        assert_eq!(edges[0], us("2026-03-27T23:00:00Z"));
        assert_eq!(lengths_h(&edges), vec![24, 23, 24, 24]);
        let (s, e) = (us("2026-10-24T12:00:00Z"), us("2026-10-26T12:00:00Z"));
        let edges = super::edges(s, e, &day, &default_anchor(s, &day, &tz).unwrap(), 9).unwrap();
        assert_eq!(lengths_h(&edges), vec![24, 25, 24]);

        let ny = parse_tz("America/New_York").unwrap();
        let (s, e) = (us("2026-03-08T06:00:00Z"), us("2026-03-09T06:00:00Z"));
        let edges = super::edges(s, e, &day, &default_anchor(s, &day, &ny).unwrap(), 9).unwrap();
        assert_eq!(edges[0], us("2026-03-08T05:00:00Z"));
        assert_eq!(lengths_h(&edges), vec![23, 24]);
    }

    #[test]
    fn months_weeks_and_hours() {
        let tz = parse_tz("UTC").unwrap();
        let month = Interval::parse("P1M").unwrap();
        let (s, e) = (us("2026-01-15T00:00:00Z"), us("2026-04-01T00:00:00Z"));
        let edges = edges(s, e, &month, &default_anchor(s, &month, &tz).unwrap(), 9).unwrap();
        assert_eq!(lengths_h(&edges), vec![31 * 24, 28 * 24, 31 * 24]);
        // Anchored on the 31st: each edge is computed from the anchor.
        let anchor = parse_anchor("2026-01-31T00:00:00Z", &tz).unwrap();
        let e2 = super::edges(s, us("2026-05-01T00:00:00Z"), &month, &anchor, 9).unwrap();
        assert_eq!(e2[0], us("2025-12-31T00:00:00Z"));
        assert_eq!(e2[4], us("2026-04-30T00:00:00Z"));
        assert_eq!(e2[5], us("2026-05-31T00:00:00Z"));

        let week = Interval::parse("P1W").unwrap();
        let s = us("2026-01-01T12:00:00Z"); // a Thursday
        let a = default_anchor(s, &week, &tz).unwrap();
        assert_eq!(a.timestamp().as_microsecond(), us("2025-12-29T00:00:00Z"));

        let hours = Interval::parse("PT2H").unwrap();
        let anchor = parse_anchor("2026-01-01T00:30", &tz).unwrap();
        let e = super::edges(
            us("2026-01-01T03:00:00Z"),
            us("2026-01-01T06:00:00Z"),
            &hours,
            &anchor,
            9,
        )
        .unwrap();
        assert_eq!(
            e,
            vec![
                us("2026-01-01T02:30:00Z"),
                us("2026-01-01T04:30:00Z"),
                us("2026-01-01T06:30:00Z")
            ]
        );
    }

    #[test]
    fn bad_input_is_refused() {
        for bad in [
            "",
            "1D",
            "P",
            "-P1D",
            "PT0S",
            "PT0.5S",
            "P1X",
            "PT1H garbage",
            "P51Y",
            "P19998Y",
            "P700M",
            "PT500000H",
        ] {
            assert!(Interval::parse(bad).is_err(), "{bad}");
        }
        assert!(Interval::parse("P49Y").is_ok());
        assert!(parse_tz("Mars/Olympus").is_err());
        let tz = parse_tz("UTC").unwrap();
        assert!(parse_anchor("noon", &tz).is_err());
        let minute = Interval::parse("PT1M").unwrap();
        let a = parse_anchor("2026-01-01", &tz).unwrap();
        let (s, e) = (us("2026-01-01T00:00:00Z"), us("2027-01-01T00:00:00Z"));
        assert_eq!(
            edges(s, e, &minute, &a, MAX_BUCKETS),
            Err(BucketError::TooMany)
        );
        assert_eq!(
            edges(e, s, &minute, &a, MAX_BUCKETS),
            Err(BucketError::Range)
        );
    }
}
