//! Plausible samples: what a phone, a watch or a scale would send.

use chrono::{DateTime, FixedOffset, SecondsFormat};
use rand::Rng;
use serde_json::{json, Value};
use uuid::Uuid;

/// Generated data lies in 2025 (UTC): queries pick ranges inside it.
pub const YEAR_START: i64 = 1_735_689_600; // 2025-01-01T00:00:00Z
pub const YEAR_SECS: i64 = 365 * 86_400;

/// A quantity type the generator writes, with a plausible value range.
#[derive(Clone, Copy, Debug)]
pub struct Kind {
    pub type_id: &'static str,
    pub unit: &'static str,
    pub min: f64,
    pub max: f64,
    /// Seconds one sample covers.
    pub span: i64,
    pub integer: bool,
}

pub const STEPS: Kind = Kind {
    type_id: "step_count",
    unit: "count",
    min: 0.0,
    max: 180.0,
    span: 60,
    integer: true,
};
pub const HEART_RATE: Kind = Kind {
    type_id: "heart_rate",
    unit: "count/min",
    min: 48.0,
    max: 170.0,
    span: 0,
    integer: true,
};
pub const ENERGY: Kind = Kind {
    type_id: "active_energy_burned",
    unit: "kcal",
    min: 0.0,
    max: 12.0,
    span: 60,
    integer: false,
};
pub const DISTANCE: Kind = Kind {
    type_id: "distance_walking_running",
    unit: "m",
    min: 0.0,
    max: 140.0,
    span: 60,
    integer: false,
};
pub const BODY_MASS: Kind = Kind {
    type_id: "body_mass",
    unit: "kg",
    min: 68.0,
    max: 74.0,
    span: 0,
    integer: false,
};
pub const GLUCOSE: Kind = Kind {
    type_id: "blood_glucose",
    unit: "mg/dL",
    min: 70.0,
    max: 160.0,
    span: 0,
    integer: true,
};

/// What a phone syncs in batches.
pub const PHONE_KINDS: &[Kind] = &[STEPS, HEART_RATE, ENERGY, DISTANCE];
/// Everything the generator writes; dashboards query these.
pub const ALL_KINDS: &[Kind] = &[STEPS, HEART_RATE, ENERGY, DISTANCE, BODY_MASS, GLUCOSE];

/// RFC 3339 with a fixed `+01:00` offset, as a phone in Central Europe would send.
pub fn time(secs: i64) -> String {
    let offset = FixedOffset::east_opt(3600).expect("a valid offset");
    DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .with_timezone(&offset)
        .to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// A point in the generated year.
pub fn random_time(rng: &mut impl Rng) -> i64 {
    YEAR_START + rng.gen_range(0..YEAR_SECS)
}

/// One sample of `kind` starting at `start`, named by the sync identifier
/// `sync_id` so that sending it again is a no-op.
pub fn sample(rng: &mut impl Rng, kind: &Kind, start: i64, sync_id: Uuid) -> Value {
    let mut value = rng.gen_range(kind.min..=kind.max);
    if kind.integer {
        value = value.round();
    }
    let mut s = json!({
        "sync_id": sync_id.to_string(),
        "type": kind.type_id,
        "start": time(start),
        "end": time(start + kind.span),
        "value": value,
        "unit": kind.unit,
    });
    if rng.gen_ratio(1, 20) {
        s["metadata"] = json!({ "device": "loadgen", "motion": rng.gen_bool(0.5) });
    }
    s
}

/// `n` consecutive samples of `kind` from `*clock` on, advancing the clock.
/// Returns the body of `POST /v1/samples` and the sync identifiers it carries.
pub fn batch(rng: &mut impl Rng, kind: &Kind, clock: &mut i64, n: usize) -> (Value, Vec<Uuid>) {
    let step = kind.span.max(60);
    let mut ids = Vec::with_capacity(n);
    let samples: Vec<Value> = (0..n)
        .map(|_| {
            if *clock + step >= YEAR_START + YEAR_SECS {
                *clock = YEAR_START;
            }
            let id = Uuid::new_v4();
            ids.push(id);
            let s = sample(rng, kind, *clock, id);
            *clock += step;
            s
        })
        .collect();
    (json!({ "samples": samples }), ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn times_keep_their_offset() {
        assert_eq!(time(YEAR_START), "2025-01-01T01:00:00+01:00");
    }

    #[test]
    fn batches_advance_and_wrap() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut clock = YEAR_START + YEAR_SECS - 120;
        let (body, ids) = batch(&mut rng, &STEPS, &mut clock, 3);
        let samples = body["samples"].as_array().unwrap();
        assert_eq!(samples.len(), 3);
        assert_eq!(ids.len(), 3);
        assert_eq!(samples[0]["type"], "step_count");
        assert_eq!(samples[1]["start"], time(YEAR_START));
        assert_eq!(clock, YEAR_START + 120);
    }
}
