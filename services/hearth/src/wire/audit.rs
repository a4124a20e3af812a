//! The audit: what left the store, for whom, and how much.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

/// A page of the audit, newest first.
#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// One disclosure, by `kind`.
#[derive(Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditEntry {
    /// What the store handed one app of one type on one day.
    AppRead(AppUsage),
    /// What one app stored of one type on one day.
    AppWrite(AppUsage),
    /// One export job's files for a study.
    StudyExport(StudyExport),
}

/// One app's use of one type on one day (UTC): counts only.
#[derive(Serialize, ToSchema)]
pub struct AppUsage {
    pub app_id: String,
    /// The app's name now; absent once the app is removed.
    pub app_name: Option<String>,
    #[serde(rename = "type")]
    pub type_id: String,
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    /// Samples handed over in full (reads: lists, by id, the change feed,
    /// workouts, correlation members) or stored (writes).
    pub samples: u64,
    /// Aggregate answers (statistics, buckets) computed over the type.
    pub summaries: u64,
}

/// What one export job sent a study.
#[derive(Serialize, ToSchema)]
pub struct StudyExport {
    pub study_id: String,
    /// The study's name now; absent once the study is removed.
    pub study_name: Option<String>,
    pub job_id: String,
    /// Type ids that left.
    pub types: Vec<String>,
    /// Resources that left, per type id.
    pub counts: BTreeMap<String, u64>,
    /// RFC 3339, UTC: the range of the data that left, as asked for
    /// (before any date shift); absent: unbounded.
    pub range_start: Option<String>,
    pub range_end: Option<String>,
    /// Bytes of the files written for the study.
    pub bytes: u64,
    /// RFC 3339, UTC: when the export completed.
    pub at: String,
}
