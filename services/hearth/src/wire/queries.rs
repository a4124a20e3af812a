//! Statistics, sources, characteristics, the change feed and permission
//! status.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::samples::{Device, Sample};

/// Figures over a set of samples, in the requested unit: `sum` for
/// cumulative types; `min`, `max`, `avg` and `most_recent` for discrete
/// types. A figure the type offers is present, null without samples.
#[derive(Default, Serialize, ToSchema)]
pub struct Figures {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    pub sum: Option<Option<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    pub min: Option<Option<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    pub max: Option<Option<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    pub avg: Option<Option<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    pub most_recent: Option<Option<f64>>,
}

/// Statistics of one type over a time range.
#[derive(Serialize, ToSchema)]
pub struct Statistics {
    #[serde(rename = "type")]
    pub type_id: &'static str,
    pub count: u64,
    /// The unit of the figures (quantity types).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub unit: Option<String>,
    #[serde(flatten)]
    pub figures: Figures,
    /// With `by_source=true`: the figures of each source.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub sources: Option<Vec<SourceStatistics>>,
}

/// One source's figures (`by_source=true`).
#[derive(Serialize, ToSchema)]
pub struct SourceStatistics {
    pub source: String,
    pub device: Option<Device>,
    pub count: u64,
    #[serde(flatten)]
    pub figures: Figures,
}

/// One calendar bucket. Discrete types also count their samples.
#[derive(Serialize, ToSchema)]
pub struct Bucket {
    /// RFC 3339 in the requested time zone.
    pub start: String,
    pub end: String,
    #[serde(flatten)]
    pub figures: Figures,
    /// Discrete types: the number of samples.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub count: Option<u64>,
}

/// One source's buckets (`by_source=true`).
#[derive(Serialize, ToSchema)]
pub struct SourceBuckets {
    pub source: String,
    pub device: Option<Device>,
    pub buckets: Vec<Bucket>,
}

/// A statistics collection: `buckets`, or `sources` with `by_source=true`.
#[derive(Serialize, ToSchema)]
pub struct BucketCollection {
    #[serde(rename = "type")]
    pub type_id: &'static str,
    pub unit: String,
    /// As requested, e.g. `1d`, `1h`, `1w`, `1mo`.
    pub interval: String,
    /// The IANA time zone the buckets follow.
    pub tz: String,
    /// The start of the bucket grid.
    pub anchor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub buckets: Option<Vec<Bucket>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub sources: Option<Vec<SourceBuckets>>,
}

/// Statistics of one type over a workout's time.
#[derive(Serialize, ToSchema)]
pub struct WorkoutFigures {
    #[serde(rename = "type")]
    pub type_id: &'static str,
    pub count: u64,
    pub unit: String,
    #[serde(flatten)]
    pub figures: Figures,
}

/// The workout sample, with `statistics` when a `type` was asked for.
#[derive(Serialize, ToSchema)]
pub struct WorkoutStatistics {
    #[serde(flatten)]
    pub workout: Sample,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub statistics: Option<WorkoutFigures>,
}

/// A source of samples: an app (`owner` for the owner) and its device.
#[derive(Serialize, ToSchema)]
pub struct SourceInfo {
    pub source: String,
    pub device: Option<Device>,
}

/// Sources in the order statistics prefer them.
#[derive(Serialize, ToSchema)]
pub struct SourceList {
    pub sources: Vec<SourceInfo>,
}

/// An app, or one of its devices.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceKey {
    /// 1 to 128 bytes.
    pub source: String,
    /// 1 to 128 bytes; null or absent for the app as a whole.
    pub device: Option<String>,
}

/// The owner's priority order, highest first.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourcePriority {
    /// At most 64 entries, none twice.
    pub order: Vec<SourceKey>,
}

/// The types pinned to the owner's summary, in the order it shows them.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PinnedTypes {
    /// At most 12 type ids from the catalogue (characteristics aside),
    /// none twice.
    pub types: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BiologicalSex {
    Female,
    Male,
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BloodType {
    APositive,
    ANegative,
    BPositive,
    BNegative,
    AbPositive,
    AbNegative,
    OPositive,
    ONegative,
}

/// The Fitzpatrick skin type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SkinType {
    I,
    Ii,
    Iii,
    Iv,
    V,
    Vi,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WheelchairUse {
    No,
    Yes,
}

/// The owner's characteristics. Answers carry every key, null when unset
/// or not readable; a `PUT` replaces the set (absent or null unsets).
#[derive(Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Characteristics {
    /// `YYYY-MM-DD`, from 1900 to today.
    #[schema(value_type = Option<String>, format = Date)]
    pub date_of_birth: Option<String>,
    pub biological_sex: Option<BiologicalSex>,
    pub blood_type: Option<BloodType>,
    pub fitzpatrick_skin_type: Option<SkinType>,
    pub wheelchair_use: Option<WheelchairUse>,
}

/// A deleted sample in the change feed.
#[derive(Serialize, ToSchema)]
pub struct DeletedSample {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub type_id: &'static str,
}

/// Changes after an anchor, oldest first.
#[derive(Serialize, ToSchema)]
pub struct ChangePage {
    pub added: Vec<Sample>,
    pub deleted: Vec<DeletedSample>,
    /// Pass as `anchor` for the changes after this page.
    pub anchor: String,
    /// More changes wait after `anchor`.
    pub has_more: bool,
}

#[derive(Serialize, ToSchema)]
pub enum ObserveEventName {
    #[serde(rename = "ready")]
    Ready,
    #[serde(rename = "change")]
    Change,
    #[serde(rename = "store_locked")]
    StoreLocked,
    #[serde(rename = "token_revoked")]
    TokenRevoked,
}

/// One Server-Sent Event: `ready` first (data `ReadyData`), then `change`
/// (data `ChangeData`) per changed type; last, `store_locked` when the store
/// locks or `token_revoked` when the token stops working (data `EndData`).
/// Heartbeats are comments.
#[derive(Serialize, ToSchema)]
pub struct ObserveEvent {
    pub event: ObserveEventName,
    /// JSON text: `ReadyData`, `ChangeData` or `EndData`.
    #[schema(content_media_type = "application/json")]
    pub data: String,
    /// The anchor; send it back as `Last-Event-ID` when reconnecting.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub id: Option<String>,
}

/// The data of a `ready` event.
#[derive(Serialize, ToSchema)]
pub struct ReadyData {
    pub anchor: String,
}

/// The data of a `change` event.
#[derive(Serialize, ToSchema)]
pub struct ChangeData {
    #[serde(rename = "type")]
    pub type_id: &'static str,
    pub anchor: String,
}

/// The data of the last event, `store_locked` or `token_revoked`.
#[derive(Serialize, ToSchema)]
pub struct EndData {
    pub code: super::ErrorCode,
    pub detail: &'static str,
}

/// An app's write status for one type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WriteStatus {
    NotDetermined,
    Denied,
    Authorized,
}

/// The caller's write status per requested type.
#[derive(Serialize, ToSchema)]
pub struct WriteStatuses {
    /// Keyed by type id.
    pub write: BTreeMap<String, WriteStatus>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatusValue {
    ShouldRequest,
    Unnecessary,
}

/// Whether asking the owner for these types would show anything new.
#[derive(Serialize, ToSchema)]
pub struct RequestStatus {
    pub status: RequestStatusValue,
}
