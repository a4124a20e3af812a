//! The audit as the log says it stands: apps' usage summed per app, type,
//! day and direction, and every study export. Rebuilt at unlock from the
//! newest snapshot and the records after it, answered from memory, and
//! wiped at lock with the health data.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::event::{AuditEvent, Direction, StudyExportDisclosure, UsageEntry};
use super::tally::day_start_us;

const DAY_US: i64 = 86_400_000_000;

/// Which disclosures to list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditKind {
    AppRead,
    AppWrite,
    StudyExport,
}

/// What the owner asks of the audit; every field narrows.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub kind: Option<AuditKind>,
    pub app_id: Option<String>,
    pub study_id: Option<String>,
    pub type_id: Option<String>,
    /// `[since, until)`, UTC microseconds; a day of usage counts when it
    /// overlaps.
    pub since_us: Option<i64>,
    pub until_us: Option<i64>,
}

/// One line of the audit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditRecord {
    Usage(UsageEntry),
    StudyExport(StudyExportDisclosure),
}

/// Where a record stands in the listing (newest first): also the cursor.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AuditPosition {
    time_us: i64,
    rank: u8,
    first: String,
    second: String,
    n: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    samples: u64,
    summaries: u64,
}

#[derive(Default)]
pub struct AuditIndex {
    usage: BTreeMap<(i32, String, String, Direction), Counts>,
    exports: Vec<StudyExportDisclosure>,
}

/// The audit as a snapshot keeps it, in a fixed order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditState {
    usage: Vec<UsageEntry>,
    exports: Vec<StudyExportDisclosure>,
}

impl AuditIndex {
    pub fn apply(&mut self, event: &AuditEvent) {
        match event {
            AuditEvent::AppUsage { entries } => {
                for e in entries {
                    let c = self
                        .usage
                        .entry((e.day, e.app_id.clone(), e.type_id.clone(), e.direction))
                        .or_default();
                    c.samples = c.samples.saturating_add(e.samples);
                    c.summaries = c.summaries.saturating_add(e.summaries);
                }
            }
            AuditEvent::StudyExport(d) => self.exports.push(d.clone()),
        }
    }

    fn usage_entries(&self) -> impl Iterator<Item = UsageEntry> + '_ {
        self.usage
            .iter()
            .map(|((day, app_id, type_id, direction), c)| UsageEntry {
                day: *day,
                app_id: app_id.clone(),
                type_id: type_id.clone(),
                direction: *direction,
                samples: c.samples,
                summaries: c.summaries,
            })
    }

    /// Up to `limit` records matching `filter`, newest first, after
    /// `after` (a position a previous page ended at); and the position to
    /// continue from when more match.
    pub fn page(
        &self,
        filter: &AuditFilter,
        after: Option<&AuditPosition>,
        limit: usize,
    ) -> (Vec<AuditRecord>, Option<AuditPosition>) {
        let since = filter.since_us.unwrap_or(i64::MIN);
        let until = filter.until_us.unwrap_or(i64::MAX);
        let wants = |kind: AuditKind| filter.kind.is_none_or(|k| k == kind);
        let mut found: Vec<(AuditPosition, AuditRecord)> = Vec::new();
        if filter.study_id.is_none() {
            for e in self.usage_entries() {
                let kind = match e.direction {
                    Direction::Read => AuditKind::AppRead,
                    Direction::Write => AuditKind::AppWrite,
                };
                let start = day_start_us(e.day);
                if !wants(kind)
                    || filter.app_id.as_ref().is_some_and(|a| *a != e.app_id)
                    || filter.type_id.as_ref().is_some_and(|t| *t != e.type_id)
                    || start >= until
                    || start.saturating_add(DAY_US) <= since
                {
                    continue;
                }
                let position = AuditPosition {
                    time_us: start,
                    rank: if kind == AuditKind::AppRead { 0 } else { 1 },
                    first: e.app_id.clone(),
                    second: e.type_id.clone(),
                    n: 0,
                };
                found.push((position, AuditRecord::Usage(e)));
            }
        }
        if filter.app_id.is_none() && wants(AuditKind::StudyExport) {
            for (n, d) in self.exports.iter().enumerate() {
                if filter.study_id.as_ref().is_some_and(|s| *s != d.study_id)
                    || filter
                        .type_id
                        .as_ref()
                        .is_some_and(|t| !d.types.contains(t))
                    || d.at_us < since
                    || d.at_us >= until
                {
                    continue;
                }
                let position = AuditPosition {
                    time_us: d.at_us,
                    rank: 2,
                    first: d.study_id.clone(),
                    second: d.job_id.clone(),
                    n: n as u64,
                };
                found.push((position, AuditRecord::StudyExport(d.clone())));
            }
        }
        if let Some(after) = after {
            found.retain(|(p, _)| p < after);
        }
        found.sort_by(|a, b| b.0.cmp(&a.0));
        let more = found.len() > limit;
        found.truncate(limit);
        let next = more.then(|| found.last().map(|(p, _)| p.clone())).flatten();
        (found.into_iter().map(|(_, r)| r).collect(), next)
    }

    pub fn to_state(&self) -> AuditState {
        AuditState {
            usage: self.usage_entries().collect(),
            exports: self.exports.clone(),
        }
    }

    pub fn from_state(state: AuditState) -> AuditIndex {
        let mut index = AuditIndex::default();
        index.apply(&AuditEvent::AppUsage {
            entries: state.usage,
        });
        index.exports = state.exports;
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(day: i32, app: &str, ty: &str, direction: Direction, samples: u64) -> UsageEntry {
        UsageEntry {
            day,
            app_id: app.into(),
            type_id: ty.into(),
            direction,
            samples,
            summaries: 0,
        }
    }

    fn export(study: &str, job: &str, at_us: i64) -> StudyExportDisclosure {
        StudyExportDisclosure {
            study_id: study.into(),
            job_id: job.into(),
            types: vec!["heart_rate".into()],
            counts: BTreeMap::from([("heart_rate".into(), 2)]),
            range_start_us: None,
            range_end_us: None,
            bytes: 10,
            at_us,
        }
    }

    fn index() -> AuditIndex {
        let mut index = AuditIndex::default();
        index.apply(&AuditEvent::AppUsage {
            entries: vec![
                usage(10, "a", "step_count", Direction::Read, 3),
                usage(10, "a", "step_count", Direction::Write, 1),
                usage(11, "b", "heart_rate", Direction::Read, 4),
            ],
        });
        index.apply(&AuditEvent::AppUsage {
            entries: vec![usage(10, "a", "step_count", Direction::Read, 2)],
        });
        index.apply(&AuditEvent::StudyExport(export("s", "j1", 12 * DAY_US)));
        index
    }

    #[test]
    fn flushes_of_one_day_add_up() {
        let (records, next) = index().page(
            &AuditFilter {
                kind: Some(AuditKind::AppRead),
                app_id: Some("a".into()),
                ..AuditFilter::default()
            },
            None,
            10,
        );
        assert_eq!(
            records,
            [AuditRecord::Usage(usage(
                10,
                "a",
                "step_count",
                Direction::Read,
                5
            ))]
        );
        assert!(next.is_none());
    }

    #[test]
    fn newest_first_and_pages_meet_without_overlap() {
        let index = index();
        let all = index.page(&AuditFilter::default(), None, 10).0;
        assert_eq!(all.len(), 4);
        assert!(matches!(all[0], AuditRecord::StudyExport(_)));
        let mut paged = Vec::new();
        let mut after = None;
        loop {
            let (page, next) = index.page(&AuditFilter::default(), after.as_ref(), 1);
            paged.extend(page);
            match next {
                Some(p) => after = Some(p),
                None => break,
            }
        }
        assert_eq!(paged, all);
    }

    #[test]
    fn filters_narrow() {
        let index = index();
        let count = |f: AuditFilter| index.page(&f, None, 10).0.len();
        assert_eq!(
            count(AuditFilter {
                study_id: Some("s".into()),
                ..Default::default()
            }),
            1
        );
        assert_eq!(
            count(AuditFilter {
                type_id: Some("heart_rate".into()),
                ..Default::default()
            }),
            2
        );
        assert_eq!(
            count(AuditFilter {
                since_us: Some(11 * DAY_US),
                until_us: Some(12 * DAY_US),
                ..Default::default()
            }),
            1
        );
        // A day overlapping the window counts.
        assert_eq!(
            count(AuditFilter {
                since_us: Some(10 * DAY_US + 5),
                until_us: Some(10 * DAY_US + 6),
                ..Default::default()
            }),
            2
        );
    }

    #[test]
    fn the_snapshot_form_round_trips() {
        let index = index();
        let back = AuditIndex::from_state(index.to_state());
        assert_eq!(back.to_state(), index.to_state());
    }
}
