//! What the log keeps of disclosures: each one an event sealed under the
//! management key, like app registrations and study decisions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One audit event, carried by `Event::Audit`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AuditEvent {
    /// Apps' reads and writes since the last flush, per app, type and day.
    AppUsage { entries: Vec<UsageEntry> },
    /// Data left for a study in an export.
    StudyExport(StudyExportDisclosure),
}

/// Which way data went between an app and the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Direction {
    /// The store disclosed samples to the app.
    Read,
    /// The app stored samples.
    Write,
}

/// What one app did with one type on one day (UTC), counts only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageEntry {
    /// Days since 1970-01-01, UTC.
    pub day: i32,
    pub app_id: String,
    pub type_id: String,
    pub direction: Direction,
    /// Samples handed over in full (reads) or stored (writes).
    pub samples: u64,
    /// Aggregate answers (statistics, buckets) computed over the type.
    pub summaries: u64,
}

/// One export job's disclosure to a study: what left, how much of it, and
/// when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StudyExportDisclosure {
    pub study_id: String,
    pub job_id: String,
    /// Catalogue type ids that left.
    pub types: Vec<String>,
    /// Resources (or samples) that left, per type id.
    pub counts: BTreeMap<String, u64>,
    /// The date range of the data that left, UTC microseconds, as the
    /// export was asked for (before any date shift); `None`: unbounded.
    pub range_start_us: Option<i64>,
    pub range_end_us: Option<i64>,
    /// Bytes of the files written for the study.
    pub bytes: u64,
    /// When the export completed, UTC microseconds.
    pub at_us: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::event::{Envelope, Event};

    #[test]
    fn audit_events_round_trip_through_the_log_encoding() {
        let usage = Envelope {
            at_us: 7,
            event: Event::Audit(AuditEvent::AppUsage {
                entries: vec![UsageEntry {
                    day: 20_454,
                    app_id: "app_1".into(),
                    type_id: "step_count".into(),
                    direction: Direction::Read,
                    samples: 12,
                    summaries: 1,
                }],
            }),
        };
        assert_eq!(Envelope::decode(&usage.encode()).unwrap(), usage);
        let export = Envelope {
            at_us: 8,
            event: Event::Audit(AuditEvent::StudyExport(StudyExportDisclosure {
                study_id: "study_1".into(),
                job_id: "job_1".into(),
                types: vec!["heart_rate".into()],
                counts: BTreeMap::from([("heart_rate".into(), 3)]),
                range_start_us: Some(1),
                range_end_us: None,
                bytes: 900,
                at_us: 8,
            })),
        };
        assert_eq!(Envelope::decode(&export.encode()).unwrap(), export);
    }
}
