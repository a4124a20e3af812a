//! Import jobs.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// The body of `POST /v1/imports`: an Apple Health `export.zip`, or its
/// export XML, as raw bytes. It describes the body for the API description;
/// the handler streams the body to a file and never holds it whole.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct ExportUpload(pub Vec<u8>);

/// Where an import job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportState {
    Running,
    Succeeded,
    Failed,
}

/// An import job: its progress while it runs, its summary once it succeeded.
#[derive(Serialize, ToSchema)]
pub struct ImportJob {
    pub id: Uuid,
    /// What is imported: `apple_health`.
    #[schema(example = "apple_health")]
    pub format: &'static str,
    pub state: ImportState,
    /// Why it failed, and whether part of it was stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub error: Option<String>,
    pub progress: ImportProgress,
    /// Once succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub summary: Option<ImportSummary>,
}

/// How far an import got.
#[derive(Serialize, ToSchema)]
pub struct ImportProgress {
    /// Size of the export XML, uncompressed.
    pub bytes_total: u64,
    /// Bytes of it read so far.
    pub bytes_read: u64,
    /// Elements (records, correlations, workouts, ...) read so far.
    pub records: u64,
    /// Samples stored new.
    pub added: u64,
    /// Samples stored in place of an earlier version.
    pub replaced: u64,
    /// Samples already stored by an earlier import.
    pub unchanged: u64,
    /// Seconds since the job started (until it ended).
    pub elapsed_s: f64,
}

/// What an import stored and what it left out.
#[derive(Serialize, ToSchema)]
pub struct ImportSummary {
    /// Elements read below `<HealthData>`.
    pub records: u64,
    /// Samples imported, by type (a correlation counts itself and each member).
    pub samples: BTreeMap<String, u64>,
    /// Records of types Hearth does not have, by HealthKit identifier.
    pub unknown: BTreeMap<String, u64>,
    /// Records and parts left out, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Records that repeat a member of a correlation, stored once as the member.
    pub correlation_duplicates: u64,
    /// Characteristics taken from the export (those the owner had not set).
    pub characteristics: u64,
    /// The sources the samples were stored as.
    pub sources: Vec<String>,
    /// Samples stored new.
    pub added: u64,
    /// Samples stored in place of an earlier version.
    pub replaced: u64,
    /// Samples already stored by an earlier import.
    pub unchanged: u64,
    /// Samples whose `sync_id` already held other content (left as stored).
    pub conflicts: u64,
}
