//! Samples as they are written and read.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

/// A batch of samples to write.
// Strings borrow from the request body: a 10,000-sample batch parses
// without a string allocation per field.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SampleBatch<'a> {
    /// 1 to 10,000 samples, stored all or nothing.
    #[serde(borrow)]
    pub samples: Vec<NewSample<'a>>,
}

/// One sample to write. Which fields apply depends on the type's `kind`
/// (`GET /v1/types`): quantities take `value` (a number) and `unit`;
/// categories take `value` (one of the type's values); correlations take
/// `members`; workouts take `activity` and optionally `energy` and
/// `distance`; workout routes take `workout` and `route`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSample<'a> {
    /// The writing app's own identifier for the sample, 1 to 128 bytes
    /// without control characters: it makes retries idempotent and later
    /// versions replace earlier ones. It is scoped to the app (the owner's
    /// writes are one app), so apps never collide. Without it every write
    /// stores a new sample.
    #[serde(borrow)]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 128, example = "walk-2026-01-01-1")]
    pub sync_id: Option<Cow<'a, str>>,
    /// With `sync_id`: 0 or more, default 0. A higher version replaces the
    /// sample stored under the same `sync_id`; the same version with the
    /// same content is a no-op; anything else is `409 sync_conflict`.
    #[schema(minimum = 0)]
    pub sync_version: Option<i64>,
    #[serde(rename = "type", borrow)]
    #[schema(value_type = String, example = "step_count")]
    pub type_id: Cow<'a, str>,
    /// RFC 3339 with an offset, 1900–2200.
    #[serde(borrow)]
    #[schema(value_type = String, example = "2026-01-01T10:00:00+01:00")]
    pub start: Cow<'a, str>,
    /// Not before `start`.
    #[serde(borrow)]
    #[schema(value_type = String, example = "2026-01-01T10:01:00+01:00")]
    pub end: Cow<'a, str>,
    /// Quantity and category types only (required there). A quantity is
    /// at most 1e16 in size in its type's canonical unit, and not negative
    /// for a type whose samples add up.
    #[serde(default)]
    #[schema(value_type = Option<SampleValue>)]
    pub value: Value,
    /// Quantity types only (required there): any unit compatible with the type.
    #[serde(borrow)]
    #[schema(value_type = Option<String>, example = "count")]
    pub unit: Option<Cow<'a, str>>,
    /// Up to 64 keys with string, number or boolean values, 4 KiB in all.
    /// Keys starting with `hearth:` are reserved.
    #[schema(value_type = Option<std::collections::BTreeMap<String, MetadataValue>>)]
    pub metadata: Option<Map<String, Value>>,
    /// The device that measured the sample.
    pub device: Option<NewDevice>,
    /// Correlations only (required there): the member samples, each of a
    /// member type of the correlation. They share its times and device.
    pub members: Option<Vec<NewMember>>,
    /// Workouts only (required there): one of the type's `activities`.
    #[schema(example = "running")]
    pub activity: Option<String>,
    /// Workouts only: the energy burned, in an energy unit.
    pub energy: Option<Measure>,
    /// Workouts only: the distance covered, in a length unit.
    pub distance: Option<Measure>,
    /// Workout routes only (required there): the id of a stored workout
    /// (as returned in `ids` when it was written).
    pub workout: Option<Uuid>,
    /// Workout routes only (required there): 1 to 20,000 points, each
    /// between `start` and `end`.
    pub route: Option<Vec<RoutePoint>>,
}

/// A metadata value.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum MetadataValue {
    String(String),
    Number(f64),
    Boolean(bool),
}

/// A device to record with a sample.
#[derive(Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDevice {
    /// 1 to 128 bytes, without `/` or `,`.
    pub name: String,
    /// 1 to 128 bytes, without `/` or `,`.
    pub model: Option<String>,
    /// 1 to 128 bytes, without `/` or `,`.
    pub manufacturer: Option<String>,
    /// One of `device_kinds` from `GET /v1/types`.
    pub kind: Option<String>,
}

/// A member of a correlation to write.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    /// A member type of the correlation (`GET /v1/types`, `members`).
    #[serde(rename = "type")]
    #[schema(example = "blood_pressure_systolic")]
    pub type_id: String,
    pub value: f64,
    #[schema(example = "mmHg")]
    pub unit: String,
}

/// A number with its unit.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Measure {
    pub value: f64,
    #[schema(example = "kcal")]
    pub unit: String,
}

/// One point of a workout route.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutePoint {
    /// RFC 3339 with an offset.
    pub time: String,
    /// Degrees, -90 to 90.
    pub lat: f64,
    /// Degrees, -180 to 180.
    pub lon: f64,
    /// Metres.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alt: Option<f64>,
}

/// A number for quantity types, one of the type's values for category types.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum SampleValue {
    Quantity(f64),
    Category(&'static str),
}

/// The answer to a write. Counts are of stored samples (a correlation is
/// itself and each of its members).
#[derive(Serialize, ToSchema)]
pub struct WriteOutcome {
    /// Samples stored new.
    pub added: u64,
    /// Samples stored in place of an earlier version with the same
    /// `sync_id` (which is deleted).
    pub replaced: u64,
    /// Samples already stored with the same `sync_id`, version and content.
    pub unchanged: u64,
    /// For every sample of the request, in order, the id of the stored
    /// sample that holds it (for an unchanged one, the earlier sample's).
    pub ids: Vec<Uuid>,
}

/// The answer to a write accepted while the store is locked: how many
/// samples will be added at the next unlock, and nothing else (no ids).
#[derive(Serialize, ToSchema)]
pub struct PendingAccepted {
    /// Samples in the request.
    pub accepted: u64,
}

/// A sample as the API returns it.
#[derive(Serialize, ToSchema)]
pub struct Sample {
    /// Assigned by Hearth.
    pub id: Uuid,
    /// The writing app's identifier for the sample, if it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub sync_id: Option<String>,
    /// With `sync_id`: its version.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub sync_version: Option<i64>,
    /// The type's id from `GET /v1/types`.
    #[serde(rename = "type")]
    #[schema(example = "step_count")]
    pub type_id: &'static str,
    /// RFC 3339 with the offset the sample was written with.
    #[schema(example = "2026-01-01T10:00:00+01:00")]
    pub start: String,
    #[schema(example = "2026-01-01T10:01:00+01:00")]
    pub end: String,
    /// Quantity and category types only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub value: Option<SampleValue>,
    /// Quantity types only: the unit of `value`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub unit: Option<String>,
    /// The app that wrote the sample (`owner` for the owner).
    pub source: String,
    /// String, number or boolean values, as written. A correlation's only
    /// for a caller that reads the type of every member (or wrote it).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<std::collections::BTreeMap<String, MetadataValue>>, nullable = false)]
    pub metadata: Option<Map<String, Value>>,
    /// The device that measured it, if one was named.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub device: Option<Device>,
    /// Correlations: the members the caller may read. A caller sees a
    /// correlation only if it may read at least one of them (or wrote it).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(no_recursion, nullable = false)]
    pub members: Option<Vec<Sample>>,
    /// Workouts: the activity type.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub activity: Option<&'static str>,
    /// Workouts: seconds from start to end.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub duration_s: Option<f64>,
    /// Workouts: total energy, in kcal.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub energy: Option<Measure>,
    /// Workouts: total distance, in m.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub distance: Option<Measure>,
    /// Routes: the workout's id (null if unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Uuid>)]
    pub workout: Option<Option<String>>,
    /// Routes: the points.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub route: Option<Vec<RoutePoint>>,
}

/// A device as recorded with a sample: absent fields are left out.
#[derive(Clone, Serialize, ToSchema)]
pub struct Device {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub manufacturer: Option<String>,
    /// One of `device_kinds` from `GET /v1/types`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub kind: Option<String>,
}

impl From<&crate::log::event::Device> for Device {
    fn from(d: &crate::log::event::Device) -> Device {
        Device {
            name: d.name.to_string(),
            model: d.model.as_deref().map(str::to_string),
            manufacturer: d.manufacturer.as_deref().map(str::to_string),
            kind: d.kind.as_deref().map(str::to_string),
        }
    }
}

/// One page of samples.
#[derive(Serialize, ToSchema)]
pub struct SamplePage {
    pub samples: Vec<Sample>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The catalogue of sample types.
#[derive(Serialize, ToSchema)]
pub struct TypeList {
    pub types: Vec<TypeInfo>,
    /// The values a device's `kind` may take.
    pub device_kinds: &'static [&'static str],
}

/// How a quantity type aggregates.
#[derive(Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AggregationStyle {
    /// `sum`.
    Cumulative,
    /// `min`, `max`, `avg`, `most_recent`.
    Discrete,
}

/// The format of a characteristic without a value set.
#[derive(Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ValueFormat {
    /// `YYYY-MM-DD`.
    Date,
}

/// One sample type, by `kind`.
#[derive(Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TypeInfo {
    Quantity {
        id: &'static str,
        group: &'static str,
        canonical_unit: &'static str,
        aggregation: AggregationStyle,
        compatible_units: Vec<&'static str>,
    },
    Category {
        id: &'static str,
        group: &'static str,
        values: &'static [&'static str],
    },
    Correlation {
        id: &'static str,
        group: &'static str,
        /// The member types.
        members: &'static [&'static str],
    },
    Workout {
        id: &'static str,
        group: &'static str,
        activities: &'static [&'static str],
        energy_unit: &'static str,
        distance_unit: &'static str,
    },
    WorkoutRoute {
        id: &'static str,
        group: &'static str,
        /// The type a route belongs to: `workout`.
        belongs_to: &'static str,
    },
    Characteristic {
        id: &'static str,
        group: &'static str,
        /// The values it may take; absent for dates.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false)]
        values: Option<&'static [&'static str]>,
        /// `date` when it takes a date.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false)]
        format: Option<ValueFormat>,
    },
}
