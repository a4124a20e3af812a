//! De-identification: the one place that decides what of a sample may leave
//! for a study, and in what form. The written policy is
//! `docs/research-export.md`; each rule below is unit-tested on its own.
//!
//! The export builds its resources from this module's outputs only (a
//! pseudonym, shifted or reduced dates, numbers, catalogue codes): names,
//! sources, devices, free-text metadata, Hearth's ids and time zones are
//! never read into a resource in the first place.

use hmac::{Hmac, Mac};
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroize;

use crate::wire::research::DeidentificationLevel;

const DAY_US: i64 = 86_400_000_000;
const WEEK_DAYS: i64 = 7;
/// Ages above this leave as one category (Safe Harbor).
pub const OLDEST_AGE: i64 = 89;
pub const NINETY_OR_OLDER: &str = "90 or older";
/// Route coordinates leave rounded to this many decimal places (about 1.1 km).
pub const ROUTE_DECIMALS: i32 = 2;
/// At most one route point per this many seconds leaves.
pub const ROUTE_STEP_S: i64 = 60;

/// What a study's exports are de-identified with: drawn at random once per
/// study, never derived from anything of the owner's (164.514(c)), and kept
/// sealed with the study's export state.
#[derive(Clone, Serialize, Deserialize)]
pub struct StudySecrets {
    /// The id the owner has in this study's exports.
    pub pseudonym: String,
    /// Days added to every date: negative, never zero; a multiple of seven
    /// when the study keeps weekdays.
    pub shift_days: i64,
    /// Keys the resource ids (so they are stable across exports but say
    /// nothing of Hearth's own ids).
    pub id_key: [u8; 32],
}

impl Drop for StudySecrets {
    fn drop(&mut self) {
        self.id_key.zeroize();
    }
}

impl std::fmt::Debug for StudySecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StudySecrets(..)")
    }
}

impl StudySecrets {
    /// Fresh secrets for a study at `level`.
    pub fn draw(level: DeidentificationLevel) -> StudySecrets {
        let mut rng = rand::thread_rng();
        let shift_days = match level {
            DeidentificationLevel::ShiftedDatesKeepWeekday => -WEEK_DAYS * rng.gen_range(1..=52),
            _ => -rng.gen_range(1..=364),
        };
        StudySecrets {
            pseudonym: hex::encode(crate::crypto::random_bytes::<16>()),
            shift_days,
            id_key: crate::crypto::random_bytes::<32>(),
        }
    }
}

/// A point in time as it may leave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Moment {
    /// Shifted by the study's offset, in UTC, to the second.
    Shifted(String),
    /// The year only, and the day counted from the first day of the
    /// consented range (day 0).
    YearDay { year: i16, day: i64 },
}

/// The owner's birth as it may leave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Birth {
    Year(i16),
    NinetyOrOlder,
}

/// The policy for one study's export.
pub struct Policy<'a> {
    pub level: DeidentificationLevel,
    pub secrets: &'a StudySecrets,
    /// Midnight UTC of the first consented day: day 0 of relative days.
    pub range_start_us: i64,
    /// Whether the owner turned routes on for a study that asked for them.
    pub routes: bool,
}

impl Policy<'_> {
    /// A stored instant as it leaves: never itself.
    pub fn moment(&self, us: i64) -> Moment {
        match self.level {
            DeidentificationLevel::SafeHarbor => {
                let ts = jiff::Timestamp::from_microsecond(us).unwrap_or_default();
                let year = ts.to_zoned(jiff::tz::TimeZone::UTC).year();
                Moment::YearDay {
                    year,
                    day: (us - self.range_start_us).div_euclid(DAY_US),
                }
            }
            _ => {
                let shifted = us.saturating_add(self.secrets.shift_days * DAY_US);
                let seconds = shifted.div_euclid(1_000_000);
                let ts = jiff::Timestamp::from_second(seconds).unwrap_or_default();
                Moment::Shifted(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            }
        }
    }

    /// A stored instant shifted, in whole UTC seconds; `None` at the Safe
    /// Harbor level, where no instant leaves. The same instant
    /// [`Policy::moment`] gives, for writing it out directly.
    pub fn shifted_second(&self, us: i64) -> Option<i64> {
        match self.level {
            DeidentificationLevel::SafeHarbor => None,
            _ => Some(
                us.saturating_add(self.secrets.shift_days * DAY_US)
                    .div_euclid(1_000_000),
            ),
        }
    }

    /// The owner's birth from the date of birth (`YYYY-MM-DD`), as of
    /// `now_us` (real time): ages over 89 are one category; otherwise the
    /// year, of the shifted date when dates are shifted.
    pub fn birth(&self, date_of_birth: &str, now_us: i64) -> Option<Birth> {
        let born: jiff::civil::Date = date_of_birth.parse().ok()?;
        let today = jiff::Timestamp::from_microsecond(now_us)
            .ok()?
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date();
        let mut age = i64::from(today.year()) - i64::from(born.year());
        if (today.month(), today.day()) < (born.month(), born.day()) {
            age -= 1;
        }
        if age > OLDEST_AGE {
            return Some(Birth::NinetyOrOlder);
        }
        let year = match self.level {
            DeidentificationLevel::SafeHarbor => born.year(),
            _ => born
                .checked_add(jiff::Span::new().days(self.secrets.shift_days))
                .ok()?
                .year(),
        };
        Some(Birth::Year(year))
    }

    /// The id a sample (or aggregate) has in this study's exports: keyed by
    /// the study's secret, so stable across its exports and unlinkable to
    /// Hearth's ids or to another study's.
    pub fn resource_id(&self, what: &[u8]) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.secrets.id_key).expect("any key length");
        mac.update(what);
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// A workout route as it may leave, if at all: only when the owner
    /// turned routes on and the level is not Safe Harbor (which allows no
    /// geography below a state); then without altitude, speed or accuracy,
    /// coordinates rounded to [`ROUTE_DECIMALS`] places, at most one point
    /// per [`ROUTE_STEP_S`] seconds, times as seconds from the route's
    /// first point. Input points: (time µs, latitude, longitude).
    pub fn route(&self, points: &[(i64, f64, f64)]) -> Option<Vec<(i64, f64, f64)>> {
        if !self.routes || self.level == DeidentificationLevel::SafeHarbor {
            return None;
        }
        let first = points.first()?.0;
        let scale = 10f64.powi(ROUTE_DECIMALS);
        let round = |v: f64| (v * scale).round() / scale;
        let mut out: Vec<(i64, f64, f64)> = Vec::new();
        for &(t, lat, lon) in points {
            let s = (t - first).div_euclid(1_000_000);
            if out
                .last()
                .is_some_and(|&(last, _, _)| s - last < ROUTE_STEP_S)
            {
                continue;
            }
            out.push((s, round(lat), round(lon)));
        }
        Some(out)
    }
}

/// The FHIR `gender` for the owner's biological sex, if consented.
pub fn gender(biological_sex: &str) -> &'static str {
    match biological_sex {
        "female" => "female",
        "male" => "male",
        _ => "other",
    }
}

/// The numbers a workout may carry out of its metadata: energy (kcal) and
/// distance (m), read from Hearth's reserved keys alone. Everything else in
/// the metadata is free text the writer chose, and never leaves.
pub fn workout_measures(metadata: Option<&str>) -> (Option<f64>, Option<f64>) {
    let Some(map) = metadata
        .and_then(|m| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(m).ok())
    else {
        return (None, None);
    };
    let number = |k: &str| {
        map.get(k)
            .and_then(serde_json::Value::as_f64)
            .filter(|v| v.is_finite())
    };
    (number("hearth:energy"), number("hearth:distance"))
}

/// A route's points out of its metadata: (time µs, latitude, longitude);
/// altitude and every other field are dropped here.
pub fn route_points(metadata: Option<&str>) -> Vec<(i64, f64, f64)> {
    let Some(map) = metadata
        .and_then(|m| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(m).ok())
    else {
        return Vec::new();
    };
    map.get("hearth:route")
        .and_then(serde_json::Value::as_array)
        .map(|points| {
            points
                .iter()
                .filter_map(|p| Some((p[0].as_i64()?, p[1].as_f64()?, p[2].as_f64()?)))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_735_732_800_000_000; // 2025-01-01T12:00:00Z

    fn secrets(shift_days: i64) -> StudySecrets {
        StudySecrets {
            pseudonym: "p".into(),
            shift_days,
            id_key: [7; 32],
        }
    }

    fn policy(level: DeidentificationLevel, s: &StudySecrets, routes: bool) -> Policy<'_> {
        Policy {
            level,
            secrets: s,
            range_start_us: T - 12 * 3_600_000_000 - 10 * DAY_US,
            routes,
        }
    }

    #[test]
    fn shifts_are_random_negative_whole_days_and_weeks_when_asked() {
        for _ in 0..200 {
            let s = StudySecrets::draw(DeidentificationLevel::ShiftedDates);
            assert!((-364..=-1).contains(&s.shift_days));
            let w = StudySecrets::draw(DeidentificationLevel::ShiftedDatesKeepWeekday);
            assert!(w.shift_days < 0 && w.shift_days % 7 == 0 && w.shift_days >= -364);
        }
        let a = StudySecrets::draw(DeidentificationLevel::ShiftedDates);
        let b = StudySecrets::draw(DeidentificationLevel::ShiftedDates);
        assert_ne!(
            a.pseudonym, b.pseudonym,
            "pseudonyms are drawn, not derived"
        );
        assert_ne!(a.id_key, b.id_key);
    }

    #[test]
    fn shifted_dates_move_every_instant_by_the_same_days_in_utc() {
        let s = secrets(-10);
        let p = policy(DeidentificationLevel::ShiftedDates, &s, false);
        assert_eq!(p.moment(T), Moment::Shifted("2024-12-22T12:00:00Z".into()));
        // Sub-second precision and the owner's offset do not leave.
        assert_eq!(
            p.moment(T + 123_456),
            Moment::Shifted("2024-12-22T12:00:00Z".into())
        );
        // Intervals are kept.
        assert_eq!(
            p.moment(T + 3_600_000_000),
            Moment::Shifted("2024-12-22T13:00:00Z".into())
        );
    }

    #[test]
    fn shifted_seconds_are_the_shifted_moments() {
        let s = secrets(-10);
        let p = policy(DeidentificationLevel::ShiftedDates, &s, false);
        let second = p.shifted_second(T + 123_456).unwrap();
        let ts = jiff::Timestamp::from_second(second).unwrap();
        assert_eq!(
            p.moment(T + 123_456),
            Moment::Shifted(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        );
        let harbor = policy(DeidentificationLevel::SafeHarbor, &s, false);
        assert_eq!(harbor.shifted_second(T), None);
    }

    #[test]
    fn weekday_keeping_shifts_keep_the_weekday() {
        let s = secrets(-14);
        let p = policy(DeidentificationLevel::ShiftedDatesKeepWeekday, &s, false);
        let Moment::Shifted(out) = p.moment(T) else {
            panic!("shifted")
        };
        let out: jiff::Timestamp = out.parse().unwrap();
        let before = jiff::Timestamp::from_microsecond(T).unwrap();
        let utc = jiff::tz::TimeZone::UTC;
        assert_eq!(
            out.to_zoned(utc.clone()).weekday(),
            before.to_zoned(utc).weekday()
        );
        assert_ne!(out, before);
    }

    #[test]
    fn safe_harbor_keeps_the_year_and_a_relative_day_only() {
        let s = secrets(-10);
        let p = policy(DeidentificationLevel::SafeHarbor, &s, false);
        assert_eq!(
            p.moment(T),
            Moment::YearDay {
                year: 2025,
                day: 10
            }
        );
        assert_eq!(
            p.moment(T + 13 * 3_600_000_000),
            Moment::YearDay {
                year: 2025,
                day: 11
            }
        );
    }

    #[test]
    fn ages_over_89_are_one_category() {
        let s = secrets(-10);
        let p = policy(DeidentificationLevel::SafeHarbor, &s, false);
        assert_eq!(p.birth("1930-01-01", T), Some(Birth::NinetyOrOlder));
        assert_eq!(p.birth("1935-01-02", T), Some(Birth::Year(1935)), "89");
        assert_eq!(p.birth("1934-12-31", T), Some(Birth::NinetyOrOlder), "90");
        assert_eq!(p.birth("1980-06-15", T), Some(Birth::Year(1980)));
        assert_eq!(p.birth("not a date", T), None);
        let shifted = policy(DeidentificationLevel::ShiftedDates, &s, false);
        assert_eq!(shifted.birth("1980-01-05", T), Some(Birth::Year(1979)));
        assert_eq!(shifted.birth("1920-06-01", T), Some(Birth::NinetyOrOlder));
    }

    #[test]
    fn resource_ids_are_keyed_stable_and_unlinkable() {
        let a = secrets(-1);
        let mut b = secrets(-1);
        b.id_key = [8; 32];
        let pa = policy(DeidentificationLevel::ShiftedDates, &a, false);
        let pb = policy(DeidentificationLevel::ShiftedDates, &b, false);
        let id = 42u128.to_be_bytes();
        assert_eq!(pa.resource_id(&id), pa.resource_id(&id));
        assert_ne!(pa.resource_id(&id), pb.resource_id(&id));
        assert!(!pa.resource_id(&id).contains("42"));
    }

    #[test]
    fn routes_leave_only_when_turned_on_coarsened_and_never_under_safe_harbor() {
        let s = secrets(-3);
        let points = [
            (T, 51.507_351_9, -0.127_758_3),
            (T + 10_000_000, 51.507_4, -0.127_8),
            (T + 70_000_000, 51.508_9, -0.129_1),
        ];
        assert!(policy(DeidentificationLevel::ShiftedDates, &s, false)
            .route(&points)
            .is_none());
        assert!(policy(DeidentificationLevel::SafeHarbor, &s, true)
            .route(&points)
            .is_none());
        let out = policy(DeidentificationLevel::ShiftedDates, &s, true)
            .route(&points)
            .unwrap();
        assert_eq!(out, vec![(0, 51.51, -0.13), (70, 51.51, -0.13)]);
    }

    #[test]
    fn free_text_metadata_never_leaves_a_workout() {
        let meta = r#"{"hearth:energy": 250.5, "hearth:distance": 5000,
            "note": "MARKER at home", "hearth:route": "x", "device": "MARKER watch"}"#;
        assert_eq!(workout_measures(Some(meta)), (Some(250.5), Some(5000.0)));
        assert_eq!(workout_measures(Some("not json")), (None, None));
        assert_eq!(workout_measures(None), (None, None));
    }

    #[test]
    fn route_points_keep_time_and_position_only() {
        let meta = r#"{"hearth:route": [[1, 51.5, -0.1, 30.0, "MARKER"], [2, 51.6]]}"#;
        assert_eq!(route_points(Some(meta)), vec![(1, 51.5, -0.1)]);
    }

    #[test]
    fn gender_is_one_of_fhirs_codes() {
        assert_eq!(gender("female"), "female");
        assert_eq!(gender("male"), "male");
        assert_eq!(gender("other"), "other");
        assert_eq!(gender("anything"), "other");
    }
}
