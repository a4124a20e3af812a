//! Sample times: RFC 3339 with an offset, kept with that offset.

use chrono::DateTime;

use super::SampleError;

/// Accepted sample times: 1900-01-01 to 2200-01-01 UTC.
const EARLIEST_US: i64 = -2_208_988_800_000_000;
const LATEST_US: i64 = 7_258_118_400_000_000;

/// Microseconds since the epoch and the offset in minutes.
pub fn parse_time(index: Option<usize>, field: &str, s: &str) -> Result<(i64, i16), SampleError> {
    let (us, offset) = match plain_time(s.as_bytes()) {
        Some(parsed) => parsed,
        None => parse_any(index, field, s)?,
    };
    if !(EARLIEST_US..LATEST_US).contains(&us) {
        return Err(SampleError::invalid(index, field, "time outside 1900–2200"));
    }
    Ok((us, offset))
}

/// Any RFC 3339 time, as chrono reads it.
fn parse_any(index: Option<usize>, field: &str, s: &str) -> Result<(i64, i16), SampleError> {
    let t = DateTime::parse_from_rfc3339(s).map_err(|e| {
        SampleError::invalid(
            index,
            field,
            format!("not an RFC 3339 time with offset: {e}"),
        )
    })?;
    Ok((
        t.timestamp_micros(),
        (t.offset().local_minus_utc() / 60) as i16,
    ))
}

/// The times nearly every sample has (`2024-03-01T07:30:00+01:00`, with
/// `Z` or up to nine digits of a second), read without chrono's general
/// parser: writes and imports read two per sample. Anything else (a leap
/// second, `-00:00`, lower-case letters, a space for `T`) is left to
/// [`parse_any`], as is anything invalid, so both give the same answers.
fn plain_time(b: &[u8]) -> Option<(i64, i16)> {
    fn digits(b: &[u8]) -> Option<i64> {
        b.iter().try_fold(0i64, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    }
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (digits(&b[..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (hour, minute, second) = (
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
    );
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if day == 0 || day > month_days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut rest = &b[19..];
    let mut micros = 0;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let n = fraction.iter().take_while(|d| d.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        // Truncated to microseconds, as chrono's timestamp is.
        let kept = &fraction[..n.min(6)];
        micros = digits(kept)? * 10i64.pow(6 - kept.len() as u32);
        rest = &fraction[n..];
    }
    let offset_minutes = match rest {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if h > 23 || m > 59 || (*sign == b'-' && h == 0 && m == 0) {
                return None;
            }
            if *sign == b'-' {
                -(h * 60 + m)
            } else {
                h * 60 + m
            }
        }
        _ => return None,
    };
    // Days from 1970-01-01 to the date (the proleptic Gregorian calendar,
    // counted in 400-year eras of 146,097 days).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Some((seconds * 1_000_000 + micros, offset_minutes as i16))
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn chrono_reads(s: &str) -> Option<(i64, i16)> {
        parse_any(None, "start", s).ok()
    }

    #[test]
    fn plain_times_read_as_chrono_reads_them() {
        for s in [
            "2024-03-01T07:30:00+01:00",
            "2024-02-29T23:59:59Z",
            "1900-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999999999-05:30",
            "2000-02-29T12:00:00.5+14:00",
            "2199-12-31T23:59:59.123456789+00:00",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.1Z",
        ] {
            assert_eq!(plain_time(s.as_bytes()), chrono_reads(s), "{s}");
            assert!(plain_time(s.as_bytes()).is_some(), "{s}");
        }
        // Left to chrono, which decides.
        for s in [
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-03-01T24:00:00Z",
            "2016-12-31T23:59:60Z",
            "2024-03-01T07:30:00-00:00",
            "2024-03-01t07:30:00z",
            "2024-03-01 07:30:00+01:00",
            "2024-03-01T07:30:00.Z",
            "2024-03-01T07:30:00.1234567891Z",
            "2024-03-01T07:30:00+01",
            "2024-03-01T07:30:00+0100",
            "+2024-03-01T07:30:00Z",
        ] {
            assert_eq!(plain_time(s.as_bytes()), None, "{s}");
        }
    }

    proptest! {
        #[test]
        fn any_plain_time_reads_as_chrono_reads_it(
            year in 0u32..10_000, month in 0u32..14, day in 0u32..33,
            hour in 0u32..25, minute in 0u32..61, second in 0u32..61,
            fraction in proptest::option::of("[0-9]{0,10}"),
            offset in proptest::option::of((any::<bool>(), 0u32..25, 0u32..61)),
        ) {
            let mut s = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}");
            if let Some(f) = &fraction {
                s.push('.');
                s.push_str(f);
            }
            match offset {
                None => s.push('Z'),
                Some((east, h, m)) => s.push_str(&format!("{}{h:02}:{m:02}", if east { '+' } else { '-' })),
            }
            if let Some(read) = plain_time(s.as_bytes()) {
                prop_assert_eq!(Some(read), chrono_reads(&s), "{}", s);
            }
        }
    }
}
