//! Health Auto Export's REST payloads as Hearth samples.
//!
//! The iPhone app posts `{"data":{"metrics":[…],"workouts":[…]}}` with dates
//! as `yyyy-MM-dd HH:mm:ss Z`. [`plan`] turns one payload into the request
//! samples `POST /v1/samples` takes (the wire type), each with a `sync_id`
//! derived from what identifies a reading — metric, date and source (and a
//! sleep stage's value) — so overlapping resends store each reading once.
//! Items that cannot be mapped are returned as [`Rejected`] with a reason;
//! nothing is dropped silently.
//!
//! Mapping choices, each documented in the README:
//! - heart rate `{Min, Avg, Max}` is one `heart_rate` sample at `Avg`, with
//!   `min` and `max` (in count/min) as metadata;
//! - a workout's `heartRateData` points are heart-rate readings like the
//!   metric's and get the same `sync_id`, so a reading sent both ways is
//!   stored once;
//! - `blood_pressure` is a correlation of systolic and diastolic members;
//! - `blood_glucose` keeps `mealTime` as `meal_time` metadata;
//! - `blood_oxygen_saturation` is stored in percent whether sent as 97 or
//!   0.97;
//! - unaggregated sleep is one `sleep_analysis` sample per stage segment;
//!   aggregated sleep (one summary per night) is an `in_bed` sample from
//!   `inBedStart` to `inBedEnd` and an `asleep_unspecified` sample from
//!   `sleepStart` to `sleepEnd`, the stage totals (hours) kept as metadata
//!   of the latter;
//! - a workout keeps its activity, energy and distance; its route is one
//!   `workout_route` sample per 20,000 points (altitude kept; course, speed
//!   and accuracies are not stored).

use std::borrow::Cow;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, SecondsFormat};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::catalogue;
use crate::samples::MAX_ROUTE_POINTS;
use crate::wire::samples::{Measure, NewDevice, NewMember, NewSample, RoutePoint};

/// Largest magnitude of a value accepted from the app: anything larger is a
/// corrupt or hostile reading, not a measurement.
const MAX_MAGNITUDE: f64 = 1e9;
/// Most items (metric data points, workouts and route points together) in
/// one payload.
pub const MAX_ITEMS: usize = 500_000;

/// What Health Auto Export calls a metric, and the Hearth type it becomes.
struct Metric {
    name: &'static str,
    type_id: &'static str,
    shape: Shape,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `{date, qty}`.
    Quantity,
    /// `{date, Min, Avg, Max}` or `{date, qty}`.
    HeartRate,
    /// `{date, qty}` as a fraction or a percentage.
    Saturation,
    /// `{date, qty, mealTime}`.
    Glucose,
    /// `{date, systolic, diastolic}`.
    BloodPressure,
    /// Unaggregated `{startDate, endDate, qty, value}` or aggregated
    /// `{date, totalSleep, core, deep, rem, sleepStart, …}`.
    Sleep,
    /// A temperature: the only readings that may be below zero.
    Temperature,
}

#[rustfmt::skip]
const METRICS: &[Metric] = &[
    Metric { name: "step_count", type_id: "step_count", shape: Shape::Quantity },
    Metric { name: "active_energy", type_id: "active_energy_burned", shape: Shape::Quantity },
    Metric { name: "basal_energy_burned", type_id: "basal_energy_burned", shape: Shape::Quantity },
    Metric { name: "walking_running_distance", type_id: "distance_walking_running", shape: Shape::Quantity },
    Metric { name: "heart_rate", type_id: "heart_rate", shape: Shape::HeartRate },
    Metric { name: "resting_heart_rate", type_id: "resting_heart_rate", shape: Shape::Quantity },
    Metric { name: "heart_rate_variability", type_id: "heart_rate_variability_sdnn", shape: Shape::Quantity },
    Metric { name: "blood_pressure", type_id: "blood_pressure", shape: Shape::BloodPressure },
    Metric { name: "blood_oxygen_saturation", type_id: "oxygen_saturation", shape: Shape::Saturation },
    Metric { name: "respiratory_rate", type_id: "respiratory_rate", shape: Shape::Quantity },
    Metric { name: "body_temperature", type_id: "body_temperature", shape: Shape::Temperature },
    Metric { name: "weight_body_mass", type_id: "body_mass", shape: Shape::Quantity },
    Metric { name: "height", type_id: "height", shape: Shape::Quantity },
    Metric { name: "body_mass_index", type_id: "body_mass_index", shape: Shape::Quantity },
    Metric { name: "blood_glucose", type_id: "blood_glucose", shape: Shape::Glucose },
    Metric { name: "sleep_analysis", type_id: "sleep_analysis", shape: Shape::Sleep },
    Metric { name: "vo2max", type_id: "vo2_max", shape: Shape::Quantity },
    Metric { name: "vo2_max", type_id: "vo2_max", shape: Shape::Quantity },
    Metric { name: "apple_exercise_time", type_id: "apple_exercise_time", shape: Shape::Quantity },
    Metric { name: "apple_sleeping_wrist_temperature", type_id: "apple_sleeping_wrist_temperature", shape: Shape::Temperature },
];

/// The metric names this module maps, in the order of the table.
pub fn metric_names() -> impl Iterator<Item = &'static str> {
    METRICS.iter().map(|m| m.name)
}

/// One sample to write, and the payload item it came from.
pub struct Planned {
    /// Where in the payload: `metrics[2].data[14]`, `workouts[0]`.
    pub item: String,
    pub type_id: &'static str,
    pub sample: NewSample<'static>,
}

/// A workout's route, written once its workout is stored (a route names
/// its workout by the id the store gave it).
pub struct PlannedRoute {
    pub item: String,
    /// Index of the workout in [`Plan::samples`].
    pub workout: usize,
    sync_id: String,
    start: String,
    end: String,
    points: Vec<RoutePoint>,
}

impl PlannedRoute {
    /// The route sample for the stored workout `workout_id`.
    pub fn sample(self, workout_id: Uuid) -> NewSample<'static> {
        let mut s = blank(self.sync_id, "workout_route", self.start, self.end);
        s.workout = Some(workout_id);
        s.route = Some(self.points);
        s
    }
}

/// An item that is not stored, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    pub item: String,
    /// Not an error in the item: Hearth does not import this kind of data.
    pub not_imported: bool,
    /// The Hearth type it would have been, when known.
    pub type_id: Option<&'static str>,
    pub reason: String,
}

/// A payload as samples to write, and what could not be mapped.
#[derive(Default)]
pub struct Plan {
    pub samples: Vec<Planned>,
    pub routes: Vec<PlannedRoute>,
    pub rejected: Vec<Rejected>,
    /// Items that repeat a reading already planned from this payload (a
    /// workout's heart-rate points that the heart-rate metric also holds).
    pub repeated: usize,
    /// Items read from the payload.
    pub received: usize,
}

/// Why a payload as a whole cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error("{0}")]
    Shape(String),
    #[error("more than {MAX_ITEMS} items in one payload")]
    TooManyItems,
}

/// Maps a payload.
pub fn plan(payload: &Value) -> Result<Plan, PayloadError> {
    let data = payload
        .get("data")
        .and_then(Value::as_object)
        .ok_or_else(|| PayloadError::Shape("expected an object with a `data` object".into()))?;
    let mut plan = Plan::default();
    let mut seen = hashbrown::HashSet::new();
    let count = count_items(data);
    if count > MAX_ITEMS {
        return Err(PayloadError::TooManyItems);
    }
    for (key, value) in data {
        match key.as_str() {
            "metrics" => {
                let metrics = value
                    .as_array()
                    .ok_or_else(|| PayloadError::Shape("`data.metrics` must be an array".into()))?;
                for (i, metric) in metrics.iter().enumerate() {
                    plan_metric(&mut plan, &mut seen, i, metric);
                }
            }
            "workouts" => {
                let workouts = value.as_array().ok_or_else(|| {
                    PayloadError::Shape("`data.workouts` must be an array".into())
                })?;
                for (i, workout) in workouts.iter().enumerate() {
                    plan_workout(&mut plan, &mut seen, i, workout);
                }
            }
            // stateOfMind, medications, symptoms, cycleTracking, ecg,
            // heartRateNotifications: reported, item by item.
            other => {
                let items = value.as_array().map_or(1, Vec::len);
                for i in 0..items {
                    plan.received += 1;
                    plan.rejected.push(Rejected {
                        not_imported: true,
                        item: format!("{other}[{i}]"),
                        type_id: None,
                        reason: format!("`{other}` is not imported by Hearth"),
                    });
                }
            }
        }
    }
    Ok(plan)
}

/// Items in a payload, counted before anything is mapped.
fn count_items(data: &Map<String, Value>) -> usize {
    let mut n = 0;
    for (key, value) in data {
        let Some(items) = value.as_array() else {
            continue;
        };
        n += items.len();
        for item in items {
            let inner = match key.as_str() {
                "metrics" => item.get("data").and_then(Value::as_array).map(Vec::len),
                "workouts" => Some(
                    ["heartRateData", "route"]
                        .iter()
                        .filter_map(|k| item.get(*k).and_then(Value::as_array))
                        .map(Vec::len)
                        .sum(),
                ),
                _ => None,
            };
            n += inner.unwrap_or(0);
        }
    }
    n
}

fn plan_metric(
    plan: &mut Plan,
    seen: &mut hashbrown::HashSet<String>,
    index: usize,
    metric: &Value,
) {
    let at = format!("metrics[{index}]");
    let Some(name) = metric.get("name").and_then(Value::as_str) else {
        plan.received += 1;
        plan.rejected.push(Rejected {
            not_imported: false,
            item: at,
            type_id: None,
            reason: "a metric needs a `name`".into(),
        });
        return;
    };
    let Some(points) = metric.get("data").and_then(Value::as_array) else {
        plan.received += 1;
        plan.rejected.push(Rejected {
            not_imported: false,
            item: at,
            type_id: None,
            reason: format!("metric `{name}` needs a `data` array"),
        });
        return;
    };
    let Some(mapping) = METRICS.iter().find(|m| m.name == name) else {
        for i in 0..points.len().max(1) {
            plan.received += 1;
            plan.rejected.push(Rejected {
                not_imported: true,
                item: format!("{at}.data[{i}]"),
                type_id: None,
                reason: format!("metric `{name}` is not imported by Hearth"),
            });
        }
        return;
    };
    let units = metric.get("units").and_then(Value::as_str).unwrap_or("");
    for (i, point) in points.iter().enumerate() {
        plan.received += 1;
        let item = format!("{at}.data[{i}]");
        match map_point(mapping, units, point) {
            Ok(samples) => {
                for sample in samples {
                    push_unique(plan, seen, item.clone(), mapping.type_id, sample);
                }
            }
            Err(reason) => plan.rejected.push(Rejected {
                not_imported: false,
                item,
                type_id: Some(mapping.type_id),
                reason,
            }),
        }
    }
}

/// Plans a sample unless the payload already holds the same reading.
fn push_unique(
    plan: &mut Plan,
    seen: &mut hashbrown::HashSet<String>,
    item: String,
    type_id: &'static str,
    sample: NewSample<'static>,
) {
    let key = sample.sync_id.as_deref().unwrap_or_default().to_string();
    if !seen.insert(key) {
        plan.repeated += 1;
        return;
    }
    plan.samples.push(Planned {
        item,
        type_id,
        sample,
    });
}

fn map_point(m: &Metric, units: &str, point: &Value) -> Result<Vec<NewSample<'static>>, String> {
    let source = source_of(point)?;
    match m.shape {
        Shape::Sleep => return sleep(units, point, source),
        Shape::BloodPressure => return blood_pressure(units, point, source).map(|s| vec![s]),
        Shape::HeartRate => return heart_rate(units, point, source).map(|s| vec![s]),
        _ => {}
    }
    let date_text = text(point, "date")?;
    let date = parse_date(date_text, "date")?;
    let unit = hearth_unit(m.type_id, units)?;
    let mut qty = number(point, "qty", m.shape == Shape::Temperature)?;
    if m.shape == Shape::Saturation {
        // The app sends 97 or 0.97 depending on its version and settings;
        // no one has a saturation of 1 % or less.
        if qty <= 1.0 {
            qty *= 100.0;
        }
        if qty > 100.0 {
            return Err("qty: a saturation above 100 %".into());
        }
    }
    let mut s = blank(
        sync_id(&[m.name, &date.canonical, source.unwrap_or("")]),
        m.type_id,
        date.rfc3339.clone(),
        date.rfc3339,
    );
    s.value = json!(qty);
    s.unit = Some(Cow::Owned(unit));
    s.device = device(source);
    if m.shape == Shape::Glucose {
        if let Some(meal) = point.get("mealTime") {
            let meal = meal
                .as_str()
                .ok_or("mealTime: expected a string such as \"Before Meal\"")?;
            let mut meta = Map::new();
            meta.insert("meal_time".into(), json!(meal_time(meal)?));
            s.metadata = Some(meta);
        }
    }
    Ok(vec![s])
}

/// `{date, Min, Avg, Max}` (or `{date, qty}`): one sample at `Avg`.
fn heart_rate(
    units: &str,
    point: &Value,
    source: Option<&str>,
) -> Result<NewSample<'static>, String> {
    let date = parse_date(text(point, "date")?, "date")?;
    let units = point.get("units").and_then(Value::as_str).unwrap_or(units);
    let unit = hearth_unit("heart_rate", units)?;
    let ty = catalogue::get(catalogue::lookup("heart_rate").expect("catalogue type"));
    let mut s = blank(
        sync_id(&["heart_rate", &date.canonical, source.unwrap_or("")]),
        "heart_rate",
        date.rfc3339.clone(),
        date.rfc3339,
    );
    if point.get("Avg").is_some() {
        let avg = number(point, "Avg", false)?;
        let min = number(point, "Min", false)?;
        let max = number(point, "Max", false)?;
        if !(min <= avg && avg <= max) {
            return Err("Min, Avg and Max must be in order".into());
        }
        let canonical = |v: f64| {
            catalogue::units::to_canonical(ty, v, &unit).map_err(|e| format!("units: {e}"))
        };
        let mut meta = Map::new();
        meta.insert("min".into(), json!(canonical(min)?));
        meta.insert("max".into(), json!(canonical(max)?));
        s.metadata = Some(meta);
        s.value = json!(avg);
    } else {
        s.value = json!(number(point, "qty", false)?);
    }
    s.unit = Some(Cow::Owned(unit));
    s.device = device(source);
    Ok(s)
}

fn blood_pressure(
    units: &str,
    point: &Value,
    source: Option<&str>,
) -> Result<NewSample<'static>, String> {
    let date = parse_date(text(point, "date")?, "date")?;
    let unit = match units {
        "" | "mmHg" => "mmHg".to_string(),
        other => hearth_unit("blood_pressure_systolic", other)?,
    };
    let systolic = number(point, "systolic", false)?;
    let diastolic = number(point, "diastolic", false)?;
    let mut s = blank(
        sync_id(&["blood_pressure", &date.canonical, source.unwrap_or("")]),
        "blood_pressure",
        date.rfc3339.clone(),
        date.rfc3339,
    );
    s.members = Some(vec![
        NewMember {
            type_id: "blood_pressure_systolic".into(),
            value: systolic,
            unit: unit.clone(),
        },
        NewMember {
            type_id: "blood_pressure_diastolic".into(),
            value: diastolic,
            unit,
        },
    ]);
    s.device = device(source);
    Ok(s)
}

/// A sleep stage segment, or a night's summary.
fn sleep(
    units: &str,
    point: &Value,
    source: Option<&str>,
) -> Result<Vec<NewSample<'static>>, String> {
    if point.get("startDate").is_some() {
        let start = parse_date(text(point, "startDate")?, "startDate")?;
        let end = parse_date(text(point, "endDate")?, "endDate")?;
        let stage = text(point, "value")?;
        let value = sleep_stage(stage)?;
        let mut s = blank(
            // In-bed and asleep segments may start together: the stage is
            // part of what identifies a segment.
            sync_id(&[
                "sleep_analysis",
                &start.canonical,
                source.unwrap_or(""),
                value,
            ]),
            "sleep_analysis",
            start.rfc3339,
            end.rfc3339,
        );
        s.value = json!(value);
        s.device = device(source);
        return Ok(vec![s]);
    }
    let night = text(point, "date")?;
    let night = parse_date(night, "date")?;
    // Hours are the app's unit for every aggregated field.
    if !(units.is_empty() || units == "hr") {
        return Err(format!(
            "units: aggregated sleep is in hours (`hr`), not `{units}`"
        ));
    }
    let mut out = Vec::new();
    if point.get("inBedStart").is_some() || point.get("inBedEnd").is_some() {
        let start = parse_date(text(point, "inBedStart")?, "inBedStart")?;
        let end = parse_date(text(point, "inBedEnd")?, "inBedEnd")?;
        let mut s = blank(
            sync_id(&[
                "sleep_analysis",
                &night.canonical,
                source.unwrap_or(""),
                "in_bed",
            ]),
            "sleep_analysis",
            start.rfc3339,
            end.rfc3339,
        );
        s.value = json!("in_bed");
        s.device = device(source);
        let mut meta = Map::new();
        if point.get("inBed").is_some() {
            meta.insert("in_bed_hours".into(), json!(number(point, "inBed", false)?));
        }
        s.metadata = (!meta.is_empty()).then_some(meta);
        out.push(s);
    }
    let start = parse_date(text(point, "sleepStart")?, "sleepStart")?;
    let end = parse_date(text(point, "sleepEnd")?, "sleepEnd")?;
    let mut meta = Map::new();
    for (field, key) in [
        ("totalSleep", "total_sleep_hours"),
        ("asleep", "asleep_hours"),
        ("core", "core_hours"),
        ("deep", "deep_hours"),
        ("rem", "rem_hours"),
        ("awake", "awake_hours"),
    ] {
        if point.get(field).is_some() {
            meta.insert(key.into(), json!(number(point, field, false)?));
        }
    }
    let mut s = blank(
        sync_id(&[
            "sleep_analysis",
            &night.canonical,
            source.unwrap_or(""),
            "asleep_unspecified",
        ]),
        "sleep_analysis",
        start.rfc3339,
        end.rfc3339,
    );
    s.value = json!("asleep_unspecified");
    s.device = device(source);
    s.metadata = (!meta.is_empty()).then_some(meta);
    out.push(s);
    Ok(out)
}

fn sleep_stage(value: &str) -> Result<&'static str, String> {
    Ok(match value.trim().to_ascii_lowercase().as_str() {
        "core" | "asleep core" | "light" => "asleep_core",
        "deep" | "asleep deep" => "asleep_deep",
        "rem" | "asleep rem" => "asleep_rem",
        "awake" => "awake",
        "in bed" | "inbed" | "in_bed" => "in_bed",
        "asleep" | "asleep unspecified" | "unspecified" => "asleep_unspecified",
        _ => {
            return Err(format!(
                "value: unknown sleep stage `{value}` (Core, Deep, REM, Awake, In Bed or Asleep)"
            ))
        }
    })
}

fn meal_time(text: &str) -> Result<&'static str, String> {
    Ok(match text.trim().to_ascii_lowercase().as_str() {
        "before meal" | "before_meal" | "preprandial" => "before_meal",
        "after meal" | "after_meal" | "postprandial" => "after_meal",
        "" | "unspecified" => "unspecified",
        _ => {
            return Err(format!(
                "mealTime: `{text}` is not Before Meal, After Meal or Unspecified"
            ))
        }
    })
}

fn plan_workout(
    plan: &mut Plan,
    seen: &mut hashbrown::HashSet<String>,
    index: usize,
    workout: &Value,
) {
    let at = format!("workouts[{index}]");
    plan.received += 1;
    match map_workout(workout) {
        Err(reason) => {
            // Its heart-rate points and route depend on it: report them too.
            plan.rejected.push(Rejected {
                not_imported: false,
                item: at,
                type_id: Some("workout"),
                reason,
            });
        }
        Ok((sample, start, end, sync)) => {
            let workout_slot = plan.samples.len();
            push_unique(plan, seen, at.clone(), "workout", sample);
            let stored = plan.samples.len() > workout_slot;
            if let Some(points) = workout.get("heartRateData").and_then(Value::as_array) {
                let source = workout.get("source").and_then(Value::as_str);
                for (i, point) in points.iter().enumerate() {
                    plan.received += 1;
                    let item = format!("{at}.heartRateData[{i}]");
                    let point = with_default_source(point, source);
                    match source_of(&point).and_then(|s| heart_rate("", &point, s)) {
                        Ok(s) => push_unique(plan, seen, item, "heart_rate", s),
                        Err(reason) => plan.rejected.push(Rejected {
                            not_imported: false,
                            item,
                            type_id: Some("heart_rate"),
                            reason,
                        }),
                    }
                }
            }
            if let Some(points) = workout.get("route").and_then(Value::as_array) {
                plan.received += points.len();
                if !stored {
                    return;
                }
                match route_points(points) {
                    Err(reason) => plan.rejected.push(Rejected {
                        not_imported: false,
                        item: format!("{at}.route"),
                        type_id: Some("workout_route"),
                        reason,
                    }),
                    Ok(points) => {
                        for (chunk_index, chunk) in points.chunks(MAX_ROUTE_POINTS).enumerate() {
                            let first = &chunk[0].time;
                            let last = &chunk[chunk.len() - 1].time;
                            plan.routes.push(PlannedRoute {
                                item: format!("{at}.route"),
                                workout: workout_slot,
                                sync_id: sync_id(&[&sync, "route", &chunk_index.to_string()]),
                                start: if chunk_index == 0 {
                                    start.clone()
                                } else {
                                    first.clone()
                                },
                                end: if (chunk_index + 1) * MAX_ROUTE_POINTS >= points.len() {
                                    end.clone()
                                } else {
                                    last.clone()
                                },
                                points: chunk
                                    .iter()
                                    .map(|p| RoutePoint {
                                        time: p.time.clone(),
                                        lat: p.lat,
                                        lon: p.lon,
                                        alt: p.alt,
                                    })
                                    .collect(),
                            });
                        }
                    }
                }
            }
        }
    }
}

/// A workout point inherits the workout's source when it names none.
fn with_default_source(point: &Value, source: Option<&str>) -> Value {
    let mut point = point.clone();
    if let (Some(source), Some(obj)) = (source, point.as_object_mut()) {
        obj.entry("source").or_insert_with(|| json!(source));
    }
    point
}

/// The workout sample, its start and end (RFC 3339) and its sync id.
fn map_workout(w: &Value) -> Result<(NewSample<'static>, String, String, String), String> {
    let name = text(w, "name")?;
    let activity = activity(name);
    let start = parse_date(text(w, "start")?, "start")?;
    let end = parse_date(text(w, "end")?, "end")?;
    let source = source_of(w)?;
    // Version 2 gives every workout an id; earlier ones are known by name
    // and start.
    let key = match w.get("id").and_then(Value::as_str) {
        Some(id) => sync_id(&["workout", id]),
        None => sync_id(&["workout", name, &start.canonical, source.unwrap_or("")]),
    };
    let mut s = blank(
        key.clone(),
        "workout",
        start.rfc3339.clone(),
        end.rfc3339.clone(),
    );
    s.activity = Some(activity.to_string());
    let energy = w
        .get("activeEnergyBurned")
        .or_else(|| w.get("activeEnergy").filter(|v| v.is_object()));
    if let Some(e) = energy {
        s.energy = Some(measure(e, "activeEnergyBurned", "active_energy_burned")?);
    }
    if let Some(d) = w.get("distance") {
        s.distance = Some(measure(d, "distance", "distance_walking_running")?);
    }
    let mut meta = Map::new();
    meta.insert("name".into(), json!(name));
    s.metadata = Some(meta);
    s.device = device(source);
    Ok((s, start.rfc3339, end.rfc3339, key))
}

/// `{qty, units}` as a measure in Hearth's units for `as_type`.
fn measure(v: &Value, field: &str, as_type: &str) -> Result<Measure, String> {
    let qty = number(v, "qty", false).map_err(|e| format!("{field}.{e}"))?;
    let units = v.get("units").and_then(Value::as_str).unwrap_or("");
    let unit = hearth_unit(as_type, units).map_err(|e| format!("{field}.{e}"))?;
    Ok(Measure { value: qty, unit })
}

struct Point {
    time: String,
    lat: f64,
    lon: f64,
    alt: Option<f64>,
}

fn route_points(points: &[Value]) -> Result<Vec<Point>, String> {
    let mut out = Vec::with_capacity(points.len());
    for (i, p) in points.iter().enumerate() {
        let fail = |e: String| format!("point {i}: {e}");
        let time = parse_date(text(p, "timestamp").map_err(fail)?, "timestamp").map_err(fail)?;
        let lat = number(p, "latitude", true).map_err(fail)?;
        let lon = number(p, "longitude", true).map_err(fail)?;
        let alt = match p.get("altitude") {
            None | Some(Value::Null) => None,
            Some(_) => Some(number(p, "altitude", true).map_err(fail)?),
        };
        if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
            return Err(fail("latitude or longitude out of range".into()));
        }
        out.push(Point {
            time: time.rfc3339,
            lat,
            lon,
            alt,
        });
    }
    if out.is_empty() {
        return Err("a route needs points".into());
    }
    Ok(out)
}

/// Health Auto Export's workout names as Hearth activities.
fn activity(name: &str) -> &'static str {
    let lower = name.trim().to_ascii_lowercase();
    let stripped = ["outdoor ", "indoor ", "pool ", "open water "]
        .iter()
        .fold(lower.as_str(), |s, p| s.strip_prefix(p).unwrap_or(s));
    let alias = match stripped {
        "run" | "running" | "treadmill" => "running",
        "walk" | "walking" => "walking",
        "cycle" | "cycling" | "bike" | "biking" => "cycling",
        "swim" | "swimming" => "swimming",
        "hike" | "hiking" => "hiking",
        "hiit" => "high_intensity_interval_training",
        "strength training" => "traditional_strength_training",
        "row" | "rowing" | "rower" => "rowing",
        other => other,
    };
    let id = alias.replace([' ', '-'], "_");
    let workout = catalogue::get(catalogue::lookup("workout").expect("catalogue type"));
    workout
        .category_index(&id)
        .and_then(|i| workout.category_name(i))
        .unwrap_or("other")
}

/// A date as the app sends it, as RFC 3339 and as the UTC instant that
/// identifies it (an offset may change between resends; the instant not).
struct Date {
    rfc3339: String,
    canonical: String,
}

fn parse_date(text: &str, field: &str) -> Result<Date, String> {
    let t = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S %z")
        .or_else(|_| DateTime::parse_from_rfc3339(text))
        .or_else(|_| {
            // Aggregated sleep names its night by day alone.
            NaiveDate::parse_from_str(text, "%Y-%m-%d").map(|d| {
                NaiveDateTime::from(d)
                    .and_utc()
                    .with_timezone(&FixedOffset::east_opt(0).expect("zero offset"))
            })
        })
        .map_err(|_| {
            format!(
                "{field}: `{}` is not a date as yyyy-MM-dd HH:mm:ss Z",
                clip(text)
            )
        })?;
    Ok(Date {
        rfc3339: t.to_rfc3339_opts(SecondsFormat::AutoSi, false),
        canonical: t.timestamp_micros().to_string(),
    })
}

/// At most 40 characters of a value, for messages.
fn clip(text: &str) -> Cow<'_, str> {
    super::clip(text, 40)
}

fn text<'a>(v: &'a Value, field: &str) -> Result<&'a str, String> {
    match v.get(field) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("{field}: expected a string")),
        None => Err(format!("{field}: missing")),
    }
}

/// A finite number within [`MAX_MAGNITUDE`]; below zero only if `signed`.
fn number(v: &Value, field: &str, signed: bool) -> Result<f64, String> {
    let n = match v.get(field) {
        Some(Value::Number(n)) => n.as_f64().ok_or(format!("{field}: not a number"))?,
        Some(Value::String(s)) => {
            return Err(format!(
                "{field}: expected a number, got the string `{}`",
                clip(s)
            ))
        }
        Some(_) => return Err(format!("{field}: expected a number")),
        None => return Err(format!("{field}: missing")),
    };
    if !n.is_finite() || n.abs() > MAX_MAGNITUDE {
        // In exponent form: a huge reading echoed in full is hundreds of digits.
        return Err(format!(
            "{field}: {n:e} is not a plausible reading (at most {MAX_MAGNITUDE:e} in size)"
        ));
    }
    if n < 0.0 && !signed {
        return Err(format!("{field}: must not be negative"));
    }
    Ok(n)
}

fn source_of(v: &Value) -> Result<Option<&str>, String> {
    match v.get("source") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err("source: expected a string".into()),
    }
}

/// The app's `source` (the device or app that measured, several joined by
/// `|`) as the sample's device; `/` and `,` separate sources and devices in
/// Hearth's filters, so they become spaces.
fn device(source: Option<&str>) -> Option<NewDevice> {
    let source = source?;
    let mut name: String = source
        .chars()
        .map(|c| {
            if matches!(c, '/' | ',') || c.is_control() {
                ' '
            } else {
                c
            }
        })
        .collect();
    while name.len() > 128 {
        name.pop();
    }
    let name = name.trim().to_string();
    (!name.is_empty()).then_some(NewDevice {
        name,
        model: None,
        manufacturer: None,
        kind: None,
    })
}

/// The app's unit names as Hearth's.
fn hearth_unit(type_id: &str, units: &str) -> Result<String, String> {
    let ty = catalogue::get(catalogue::lookup(type_id).expect("catalogue type"));
    let u = units.trim();
    let mapped = match u {
        "" => ty.canonical_unit().unwrap_or("").to_string(),
        "count/min" | "bpm" | "beats/min" => "count/min".into(),
        "°F" | "ºF" | "degF" | "F" => "degF".into(),
        "°C" | "ºC" | "degC" | "C" => "degC".into(),
        "ml/(kg·min)" | "ml/kg/min" | "mL/(kg·min)" | "ml/(kg*min)" => "mL/kg/min".into(),
        "mg/dl" => "mg/dL".into(),
        "mmol/l" => "mmol/L".into(),
        "breaths/min" => "count/min".into(),
        "lbs" => "lb".into(),
        "hours" | "h" => "hr".into(),
        other if other.starts_with("mmol<") => "mmol/L".into(),
        other => other.to_string(),
    };
    if catalogue::units::compatible(ty, &mapped) {
        Ok(mapped)
    } else {
        Err(format!("units: `{}` cannot express {type_id}", clip(u)))
    }
}

/// A stable identifier from the parts that identify a reading.
fn sync_id(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for p in parts {
        hash.update((p.len() as u64).to_be_bytes());
        hash.update(p.as_bytes());
    }
    format!("hae:{}", hex::encode(&hash.finalize()[..20]))
}

fn blank(sync_id: String, type_id: &'static str, start: String, end: String) -> NewSample<'static> {
    NewSample {
        sync_id: Some(Cow::Owned(sync_id)),
        sync_version: None,
        type_id: Cow::Borrowed(type_id),
        start: Cow::Owned(start),
        end: Cow::Owned(end),
        value: Value::Null,
        unit: None,
        metadata: None,
        device: None,
        members: None,
        activity: None,
        energy: None,
        distance: None,
        workout: None,
        route: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mapped_metric_names_a_catalogue_type() {
        for m in METRICS {
            assert!(catalogue::lookup(m.type_id).is_some(), "{}", m.type_id);
        }
    }

    #[test]
    fn dates_in_the_apps_format_keep_their_offset() {
        let d = parse_date("2024-02-06 14:30:00 -0800", "date").unwrap();
        assert_eq!(d.rfc3339, "2024-02-06T14:30:00-08:00");
        let same = parse_date("2024-02-06 23:30:00 +0100", "date").unwrap();
        assert_eq!(d.canonical, same.canonical);
        assert!(parse_date("2024-13-45 99:00:00 +0000", "date").is_err());
    }

    #[test]
    fn workout_names_become_activities() {
        assert_eq!(activity("Outdoor Run"), "running");
        assert_eq!(activity("Indoor Cycle"), "cycling");
        assert_eq!(activity("Pool Swim"), "swimming");
        assert_eq!(
            activity("Functional Strength Training"),
            "functional_strength_training"
        );
        assert_eq!(activity("Underwater Basket Weaving"), "other");
    }

    #[test]
    fn units_map_to_hearths() {
        assert_eq!(hearth_unit("vo2_max", "ml/(kg·min)").unwrap(), "mL/kg/min");
        assert_eq!(hearth_unit("body_temperature", "°F").unwrap(), "degF");
        assert_eq!(
            hearth_unit("blood_glucose", "mmol<180.1558800000541>/L").unwrap(),
            "mmol/L"
        );
        assert!(hearth_unit("step_count", "kg").is_err());
    }

    #[test]
    fn sync_ids_are_stable_and_bounded() {
        let a = sync_id(&["heart_rate", "1", "Apple Watch"]);
        assert_eq!(a, sync_id(&["heart_rate", "1", "Apple Watch"]));
        assert_ne!(a, sync_id(&["heart_rate", "1A", "pple Watch"]));
        assert!(a.len() <= crate::samples::MAX_SYNC_ID);
    }
}
