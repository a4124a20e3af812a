//! Sample times: RFC 3339 with an offset, kept with that offset.

use chrono::DateTime;

use super::SampleError;

/// Accepted sample times: 1900-01-01 to 2200-01-01 UTC.
const EARLIEST_US: i64 = -2_208_988_800_000_000;
const LATEST_US: i64 = 7_258_118_400_000_000;

/// Microseconds since the epoch and the offset in minutes.
pub fn parse_time(index: Option<usize>, field: &str, s: &str) -> Result<(i64, i16), SampleError> {
    let t = DateTime::parse_from_rfc3339(s).map_err(|e| {
        SampleError::invalid(
            index,
            field,
            format!("not an RFC 3339 time with offset: {e}"),
        )
    })?;
    let us = t.timestamp_micros();
    if !(EARLIEST_US..LATEST_US).contains(&us) {
        return Err(SampleError::invalid(index, field, "time outside 1900–2200"));
    }
    Ok((us, (t.offset().local_minus_utc() / 60) as i16))
}

/// A query's optional `[start, end)`, unbounded where absent.
pub fn time_bounds(start: Option<&str>, end: Option<&str>) -> Result<(i64, i64), SampleError> {
    let from = match start {
        Some(s) => parse_time(None, "start", s)?.0,
        None => i64::MIN,
    };
    let to = match end {
        Some(s) => parse_time(None, "end", s)?.0,
        None => i64::MAX,
    };
    if from > to {
        return Err(SampleError::invalid(None, "end", "end is before start"));
    }
    Ok((from, to))
}
