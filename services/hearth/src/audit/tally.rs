//! Apps' reads and writes counted in memory between flushes: an app may
//! read thousands of times a day, and one event per read would fill the
//! log with audit records. The counts are written as one
//! [`AuditEvent::AppUsage`](super::event::AuditEvent::AppUsage) every
//! minute, before the store locks and when the owner asks for the audit.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::event::{Direction, UsageEntry};

const DAY_US: i64 = 86_400_000_000;

/// UTC day number (days since 1970-01-01) of `us`.
pub fn day_of(us: i64) -> i32 {
    us.div_euclid(DAY_US) as i32
}

/// Microseconds at the start of UTC day `day`.
pub fn day_start_us(day: i32) -> i64 {
    i64::from(day) * DAY_US
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    day: i32,
    app_id: Arc<str>,
    type_id: &'static str,
    direction: Direction,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    samples: u64,
    summaries: u64,
}

/// Counts not yet in the log.
#[derive(Default)]
pub struct Tally {
    counts: Mutex<HashMap<Key, Counts>>,
}

impl Tally {
    /// Notes that `app_id` was handed `samples` samples and `summaries`
    /// aggregate answers of `type_id` (or stored `samples`, for writes).
    pub fn note(
        &self,
        at_us: i64,
        app_id: &Arc<str>,
        type_id: &'static str,
        direction: Direction,
        samples: u64,
        summaries: u64,
    ) {
        if samples == 0 && summaries == 0 {
            return;
        }
        let key = Key {
            day: day_of(at_us),
            app_id: app_id.clone(),
            type_id,
            direction,
        };
        let mut counts = self.counts.lock();
        let c = counts.entry(key).or_default();
        c.samples += samples;
        c.summaries += summaries;
    }

    /// Everything counted so far, in a fixed order; the tally starts again
    /// from zero. A flush that fails gives them back with [`Tally::restore`].
    pub fn take(&self) -> Vec<UsageEntry> {
        let taken = std::mem::take(&mut *self.counts.lock());
        let mut entries: Vec<UsageEntry> = taken
            .into_iter()
            .map(|(k, c)| UsageEntry {
                day: k.day,
                app_id: k.app_id.to_string(),
                type_id: k.type_id.to_string(),
                direction: k.direction,
                samples: c.samples,
                summaries: c.summaries,
            })
            .collect();
        entries.sort_by(|a, b| {
            (a.day, &a.app_id, &a.type_id, a.direction).cmp(&(
                b.day,
                &b.app_id,
                &b.type_id,
                b.direction,
            ))
        });
        entries
    }

    /// Puts back counts a flush could not write.
    pub fn restore(&self, entries: Vec<UsageEntry>) {
        for e in entries {
            // Only catalogue ids are ever counted.
            let Some(ty) = crate::catalogue::lookup(&e.type_id) else {
                continue;
            };
            self.note(
                day_start_us(e.day),
                &Arc::from(e.app_id.as_str()),
                crate::catalogue::get(ty).id,
                e.direction,
                e.samples,
                e.summaries,
            );
        }
    }

    pub fn is_empty(&self) -> bool {
        self.counts.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_per_app_type_day_and_direction() {
        let tally = Tally::default();
        let a: Arc<str> = "a".into();
        let b: Arc<str> = "b".into();
        let day = 20_000 * DAY_US;
        tally.note(day + 5, &a, "step_count", Direction::Read, 3, 0);
        tally.note(day + 9, &a, "step_count", Direction::Read, 2, 1);
        tally.note(day + DAY_US, &a, "step_count", Direction::Read, 1, 0);
        tally.note(day, &a, "step_count", Direction::Write, 4, 0);
        tally.note(day, &b, "heart_rate", Direction::Read, 0, 0);
        let entries = tally.take();
        assert!(tally.is_empty());
        let got: Vec<_> = entries
            .iter()
            .map(|e| {
                (
                    e.day,
                    e.app_id.as_str(),
                    e.direction,
                    e.samples,
                    e.summaries,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (20_000, "a", Direction::Read, 5, 1),
                (20_000, "a", Direction::Write, 4, 0),
                (20_001, "a", Direction::Read, 1, 0),
            ]
        );
        tally.restore(entries.clone());
        assert_eq!(tally.take(), entries);
    }

    #[test]
    fn days_are_utc_and_floor_before_the_epoch() {
        assert_eq!(day_of(0), 0);
        assert_eq!(day_of(DAY_US - 1), 0);
        assert_eq!(day_of(-1), -1);
        assert_eq!(day_start_us(day_of(3 * DAY_US + 7)), 3 * DAY_US);
    }
}
