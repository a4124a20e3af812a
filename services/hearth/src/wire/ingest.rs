//! What `POST /v1/ingest/health-auto-export` answers.

use serde::Serialize;
use utoipa::ToSchema;

use super::ErrorCode;

/// The outcome of one push. Counts of stored samples count a blood-pressure
/// reading as three (the correlation and its two members), as
/// `POST /v1/samples` does.
#[derive(Serialize, ToSchema)]
pub struct IngestOutcome {
    /// Items read from the payload: metric data points, workouts, and their
    /// heart-rate and route points.
    pub received: u64,
    /// Samples stored new.
    pub added: u64,
    /// Samples stored in place of an earlier send of the same reading with
    /// other values.
    pub replaced: u64,
    /// Samples already stored from an earlier send.
    pub unchanged: u64,
    /// Items that repeat a reading the payload already holds (a workout's
    /// heart-rate points that the heart-rate metric also sends): stored once.
    pub repeated: u64,
    /// Every item that was not stored, with why. Empty when the answer is
    /// `200`.
    pub errors: Vec<IngestError>,
}

/// One item that was not stored.
#[derive(Serialize, ToSchema)]
pub struct IngestError {
    /// Where in the payload: `metrics[2].data[14]`, `workouts[0].route`.
    #[schema(example = "metrics[0].data[3]")]
    pub item: String,
    /// The Hearth type it maps to, when known.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, example = "heart_rate")]
    pub type_id: Option<&'static str>,
    /// `invalid_input`, `write_not_authorized` (the credential may not write
    /// the type), `not_imported` (a metric or section Hearth does not take)
    /// or `sync_conflict`.
    pub code: ErrorCode,
    pub message: String,
}
