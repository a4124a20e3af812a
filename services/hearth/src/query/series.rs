//! Cumulative sums without double counting, as prefix sums over a type's
//! columns.
//!
//! Building a [`Series`] is one pass over the type (two or more when sources
//! overlap): each visible, selected sample gets a *contribution*, its value
//! times the fraction of its duration that no higher-priority source covers
//! (HealthKit's merge). Prefix sums of the contributions then answer any
//! range with two binary searches, and a sample that straddles a bucket edge
//! is split in proportion to its overlap ([`Series::bucket_sums`]). A series
//! is cached per type until the type, the priority or the request changes.
//!
//! To stay within the projection's memory budget a series keeps about three
//! bits per sample, not a number: which rows count nothing (hidden, not
//! selected or fully covered), which count a fraction (the fractions in a
//! side map: partial overlaps are rare), and a prefix sum every 64 rows. A
//! range sum reads at most 63 values per end.

use std::sync::Arc;

use hashbrown::HashMap;
use parking_lot::Mutex;

use super::sources::{Origin, SourceTable};
use crate::log::event::SourceKey;
use crate::projection::TypeColumns;

/// Samples longer than this are kept on a side list so that finding the
/// samples that straddle an edge stays a short scan.
const LONG_US: i64 = 3_600_000_000;
/// Cached series per type (the owner's view and an app's, say).
const CACHE_ENTRIES: usize = 2;

/// What a series was built from.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesKey {
    pub generation: u64,
    pub priority_generation: u64,
    /// Only these origins count; `None`: all.
    pub selection: Option<Vec<Origin>>,
}

pub struct Series {
    pub key: SeriesKey,
    /// One bit per row: contributes nothing.
    silent: Vec<u64>,
    /// One bit per row: contributes `fractions[row]` of its value.
    partial: Vec<u64>,
    fractions: HashMap<u32, f64>,
    /// `blocks[k]`: sum of the contributions of rows `0..64 k`.
    blocks: Vec<f64>,
    /// Longest duration among contributing rows not on `long_rows`.
    short_max_us: i64,
    /// Contributing rows longer than `LONG_US`, in row order.
    long_rows: Vec<u32>,
    /// Rows covered.
    rows: usize,
    /// The one origin of all counted rows, if there is exactly one.
    origin: Option<Origin>,
    /// More than one origin: contributions depend on each other.
    merged: bool,
}

#[derive(Default)]
pub struct SeriesCache {
    entries: Mutex<Vec<Arc<Series>>>,
}

impl SeriesCache {
    /// The cached series for `key`; else one extended from a cached series
    /// that only lacks rows appended since (`extend`), else a new one.
    pub fn get_or_build(
        &self,
        key: SeriesKey,
        reshaped: u64,
        extend: impl FnOnce(&Series) -> Option<Series>,
        build: impl FnOnce() -> Series,
    ) -> Arc<Series> {
        let stale = {
            let mut entries = self.entries.lock();
            if let Some(at) = entries.iter().position(|s| s.key == key) {
                let hit = entries.remove(at);
                entries.insert(0, hit.clone());
                return hit;
            }
            entries
                .iter()
                .find(|s| {
                    s.key.generation >= reshaped
                        && s.key.generation < key.generation
                        && SeriesKey {
                            generation: key.generation,
                            ..s.key.clone()
                        } == key
                })
                .cloned()
        };
        let built = Arc::new(stale.and_then(|s| extend(&s)).unwrap_or_else(build));
        let mut entries = self.entries.lock();
        entries.retain(|s| s.key.generation == built.key.generation);
        entries.insert(0, built.clone());
        entries.truncate(CACHE_ENTRIES);
        built
    }

    pub fn clear(&self) {
        let mut entries = self.entries.lock();
        for e in entries.drain(..) {
            if let Ok(mut s) = Arc::try_unwrap(e) {
                zeroize::Zeroize::zeroize(&mut s.blocks);
                s.fractions.clear();
            }
        }
    }
}

impl Series {
    /// Builds the series of `cols` for `key`, ranking origins with `table`
    /// and the owner's `order`.
    pub fn build(
        cols: &TypeColumns,
        key: SeriesKey,
        table: &SourceTable,
        order: &[SourceKey],
    ) -> Series {
        let n = cols.len();
        let starts = cols.starts();
        let ends = cols.ends();
        // Which origin each row belongs to; u16::MAX: not counted.
        const SKIP: u16 = u16::MAX;
        let mut origins: Vec<Origin> = Vec::new();
        let mut group: Vec<u16> = Vec::with_capacity(n);
        let fast = cols.none_deleted();
        let mut last: Option<(Origin, u16)> = None;
        for r in 0..n {
            let o = Origin::of(cols, r);
            let g = match last {
                Some((lo, lg)) if lo == o => lg,
                _ => {
                    let selected = key.selection.as_ref().is_none_or(|s| s.contains(&o));
                    let g = if !selected {
                        SKIP
                    } else {
                        match origins.iter().position(|&x| x == o) {
                            Some(g) => g as u16,
                            None if origins.len() < usize::from(SKIP) - 1 => {
                                origins.push(o);
                                (origins.len() - 1) as u16
                            }
                            None => SKIP,
                        }
                    };
                    last = Some((o, g));
                    g
                }
            };
            let visible = fast || cols.live(r);
            group.push(if visible { g } else { SKIP });
        }

        let words = n.div_ceil(64);
        let mut silent = vec![!0u64; words];
        let mut partial = vec![0u64; words];
        let mut fractions = HashMap::new();
        let set = |bits: &mut Vec<u64>, r: usize, on: bool| {
            if on {
                bits[r / 64] |= 1 << (r % 64);
            } else {
                bits[r / 64] &= !(1 << (r % 64));
            }
        };
        if origins.len() <= 1 {
            for (r, &g) in group.iter().enumerate() {
                if g != SKIP {
                    set(&mut silent, r, false);
                }
            }
        } else {
            let mut ranked: Vec<u16> = (0..origins.len() as u16).collect();
            ranked.sort_by_key(|&g| table.rank(origins[g as usize], order));
            // Union of the intervals of the origins ranked so far.
            let mut covered: Vec<(i64, i64)> = Vec::new();
            for g in ranked {
                let mut mine: Vec<(i64, i64)> = Vec::new();
                let mut j = 0;
                for r in 0..n {
                    if group[r] != g {
                        continue;
                    }
                    let (s, e) = (starts[r], ends[r]);
                    while j < covered.len() && covered[j].1 <= s {
                        j += 1;
                    }
                    let fraction = if e > s {
                        let mut hidden = 0i64;
                        let mut k = j;
                        while k < covered.len() && covered[k].0 < e {
                            hidden += covered[k].1.min(e) - covered[k].0.max(s);
                            k += 1;
                        }
                        1.0 - hidden as f64 / (e - s) as f64
                    } else if j < covered.len() && covered[j].0 <= s {
                        0.0
                    } else {
                        1.0
                    };
                    if fraction > 0.0 {
                        set(&mut silent, r, false);
                        if fraction < 1.0 {
                            set(&mut partial, r, true);
                            fractions.insert(r as u32, fraction);
                        }
                    }
                    if e > s {
                        match mine.last_mut() {
                            Some(last) if s <= last.1 => last.1 = last.1.max(e),
                            _ => mine.push((s, e)),
                        }
                    }
                }
                covered = union(&covered, &mine);
            }
        }
        drop(group);
        let mut series = Series {
            key,
            silent,
            partial,
            fractions,
            blocks: Vec::with_capacity(n / 64 + 1),
            short_max_us: 0,
            long_rows: Vec::new(),
            rows: n,
            origin: (origins.len() == 1).then(|| origins[0]),
            merged: origins.len() > 1,
        };
        series.blocks.push(0.0);
        series.finish(cols, 0, 0.0);
        series
    }

    /// The series after rows were appended to `cols` (a newer generation):
    /// `None` when that needs a full build (several origins to merge).
    pub fn extend(&self, cols: &TypeColumns, key: SeriesKey) -> Option<Series> {
        if self.merged {
            return None;
        }
        let n = cols.len();
        let mut origin = self.origin;
        let mut silent = self.silent.clone();
        let mut partial = self.partial.clone();
        silent.resize(n.div_ceil(64), !0);
        partial.resize(n.div_ceil(64), 0);
        for r in self.rows..n {
            let o = Origin::of(cols, r);
            let selected = key.selection.as_ref().is_none_or(|s| s.contains(&o));
            if !selected || !cols.live(r) {
                continue;
            }
            match origin {
                Some(known) if known != o => return None,
                _ => origin = Some(o),
            }
            silent[r / 64] &= !(1 << (r % 64));
        }
        let old_rows = self.rows;
        let block = old_rows / 64;
        let mut series = Series {
            key,
            silent,
            partial,
            fractions: self.fractions.clone(),
            blocks: self.blocks[..=block].to_vec(),
            short_max_us: self.short_max_us,
            long_rows: self.long_rows.clone(),
            rows: n,
            origin,
            merged: false,
        };
        // The running sum at the first row of the last, unfinished block.
        let sum = series.blocks[block];
        series.finish(cols, block * 64, sum);
        Some(series)
    }

    /// Fills `blocks`, `short_max_us` and `long_rows` from row `from` on,
    /// `sum` being the contributions of the rows before it (`from` is a
    /// multiple of 64, and `blocks` ends with `sum`).
    fn finish(&mut self, cols: &TypeColumns, from: usize, mut sum: f64) {
        let (starts, ends, values) = (cols.starts(), cols.ends(), cols.value_slice());
        let n = self.rows;
        for r in from..n {
            let c = self.contribution(values, r);
            if c != 0.0 && self.long_rows.last().is_none_or(|&l| (l as usize) < r) {
                let d = ends[r] - starts[r];
                if d > LONG_US {
                    self.long_rows.push(r as u32);
                } else {
                    self.short_max_us = self.short_max_us.max(d);
                }
            }
            sum += c;
            if (r + 1) % 64 == 0 {
                self.blocks.push(sum);
            }
        }
    }

    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        (self.silent.capacity() + self.partial.capacity()) * 8
            + self.blocks.capacity() * 8
            + self.long_rows.capacity() * 4
            + self.fractions.capacity() * 13
    }

    fn contribution(&self, values: &[f64], r: usize) -> f64 {
        let (w, b) = (r / 64, 1u64 << (r % 64));
        if self.silent[w] & b != 0 {
            0.0
        } else if self.partial[w] & b != 0 {
            values[r] * self.fractions.get(&(r as u32)).copied().unwrap_or(1.0)
        } else {
            values[r]
        }
    }

    /// Sum of the contributions of rows `0..r`.
    fn prefix(&self, values: &[f64], r: usize) -> f64 {
        let block = r / 64;
        self.blocks[block]
            + (block * 64..r)
                .map(|i| self.contribution(values, i))
                .sum::<f64>()
    }

    /// Sum of the contributions of rows `rows` (by start, no splitting).
    pub fn sum_rows(&self, cols: &TypeColumns, rows: std::ops::Range<usize>) -> f64 {
        let values = cols.value_slice();
        if rows.end <= rows.start {
            return 0.0;
        }
        if rows.end - rows.start <= 64 {
            return rows.map(|r| self.contribution(values, r)).sum();
        }
        self.prefix(values, rows.end) - self.prefix(values, rows.start)
    }

    /// The part of samples starting before `t` that lies after `t`.
    pub fn after(&self, cols: &TypeColumns, t: i64) -> f64 {
        let values = cols.value_slice();
        let starts = cols.starts();
        let ends = cols.ends();
        let hi = starts.partition_point(|&s| s < t);
        let lo = starts[..hi].partition_point(|&s| s < t.saturating_sub(self.short_max_us));
        let mut out = 0.0;
        let mut split = |r: usize| {
            let (s, e) = (starts[r], ends[r]);
            if e > t {
                let c = self.contribution(values, r);
                if c != 0.0 {
                    out += c * ((e - t) as f64 / (e - s) as f64);
                }
            }
        };
        for r in lo..hi {
            if ends[r] - starts[r] <= LONG_US {
                split(r);
            }
        }
        for &r in &self.long_rows {
            if starts[r as usize] >= t {
                break;
            }
            split(r as usize);
        }
        out
    }

    /// Sums for consecutive buckets `[edges[i], edges[i + 1])`, splitting
    /// samples that straddle an edge in proportion to their overlap.
    pub fn bucket_sums(&self, cols: &TypeColumns, edges: &[i64]) -> Vec<f64> {
        let starts = cols.starts();
        let rows: Vec<usize> = edges
            .iter()
            .map(|&e| starts.partition_point(|&s| s < e))
            .collect();
        let after: Vec<f64> = edges.iter().map(|&e| self.after(cols, e)).collect();
        (0..edges.len().saturating_sub(1))
            .map(|i| self.sum_rows(cols, rows[i]..rows[i + 1]) + after[i] - after[i + 1])
            .collect()
    }
}

/// Union of two sorted lists of disjoint intervals.
fn union(a: &[(i64, i64)], b: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let next = if j >= b.len() || (i < a.len() && a[i].0 <= b[j].0) {
            i += 1;
            a[i - 1]
        } else {
            j += 1;
            b[j - 1]
        };
        match out.last_mut() {
            Some(last) if next.0 <= last.1 => last.1 = last.1.max(next.1),
            _ => out.push(next),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue;
    use crate::log::event::{Device, DeviceGroup, Envelope, Event, StoredSample, TypeBatch};
    use crate::projection::ProjectionBuilder;
    use crate::query::buckets::series_for;
    use proptest::prelude::*;

    const KINDS: [&str; 3] = ["phone", "watch", "scale"];

    /// (origin 0..3, start, duration, value) in seconds.
    type Case = Vec<(usize, i64, i64, f64)>;

    fn projection(case: &Case) -> crate::projection::Projection {
        let mut b = ProjectionBuilder::new();
        for (i, &(o, s, d, v)) in case.iter().enumerate() {
            let sample = StoredSample {
                id: (i as u128 + 1).to_be_bytes(),
                start_us: s * 1_000_000,
                start_offset_min: 0,
                end_us: (s + d) * 1_000_000,
                end_offset_min: 0,
                value: v,
                metadata: None,
            };
            let device = Device {
                name: format!("d{o}").into(),
                model: None,
                manufacturer: None,
                kind: Some(KINDS[o].into()),
            };
            let event = Event::DeviceSamplesAdded {
                source: "owner".into(),
                groups: vec![DeviceGroup {
                    device: Some(device),
                    batches: vec![TypeBatch {
                        type_id: "step_count".into(),
                        samples: vec![sample],
                    }],
                }],
            };
            b.add(i as u64 + 1, Envelope { at_us: 0, event }).unwrap();
        }
        b.finish()
    }

    /// Rank of origin `o` by default kind: watch, phone, scale.
    fn rank(o: usize) -> usize {
        [1, 0, 2][o]
    }

    /// Brute force: each sample minus what higher-ranked origins cover,
    /// spread evenly over its duration.
    fn brute(case: &Case, a: i64, b: i64) -> f64 {
        let mut total = 0.0;
        for &(o, s, d, v) in case {
            let higher: Vec<(i64, i64)> = case
                .iter()
                .filter(|x| rank(x.0) < rank(o) && x.2 > 0)
                .map(|x| (x.1, x.1 + x.2))
                .collect();
            let mut sorted = higher.clone();
            sorted.sort();
            let merged = union(&sorted, &[]);
            let contrib = if d == 0 {
                if merged.iter().any(|&(x, y)| x <= s && s < y) {
                    0.0
                } else {
                    v
                }
            } else {
                let hidden: i64 = merged
                    .iter()
                    .map(|&(x, y)| (y.min(s + d) - x.max(s)).max(0))
                    .sum();
                v * (1.0 - hidden as f64 / d as f64)
            };
            total += if d == 0 {
                if (a..b).contains(&s) {
                    contrib
                } else {
                    0.0
                }
            } else {
                let overlap = ((s + d).min(b) - s.max(a)).max(0);
                contrib * overlap as f64 / d as f64
            };
        }
        total
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn merged_bucket_sums_match_brute_force(
            case in proptest::collection::vec(
                (0usize..3, 0i64..2000, prop_oneof![Just(0i64), 1i64..120, 3000i64..9000], 0.0f64..100.0),
                0..60,
            ),
            mut cuts in proptest::collection::vec(-100i64..12_000, 2..8),
        ) {
            let p = projection(&case);
            let ty = catalogue::lookup("step_count").unwrap();
            let cols = p.columns(ty);
            let table = SourceTable::of(&p);
            let series = series_for(&p, ty, &cols, None, &table);
            cuts.sort();
            cuts.dedup();
            let edges: Vec<i64> = cuts.iter().map(|c| c * 1_000_000).collect();
            let sums = series.bucket_sums(&cols, &edges);
            for (i, w) in cuts.windows(2).enumerate() {
                let want = brute(&case, w[0], w[1]);
                prop_assert!((sums[i] - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "bucket {w:?}: {} vs {want}", sums[i]);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// A series extended after appends answers as a fresh build does;
        /// a second source, a deletion or a back-fill forces a build.
        #[test]
        fn extended_series_match_fresh_builds(
            first in proptest::collection::vec((0i64..500, 0i64..200, 0.0f64..10.0), 0..150),
            more in proptest::collection::vec((0i64..500, 0i64..200, 0.0f64..10.0), 1..150),
            other_source in any::<bool>(),
            back_fill in any::<bool>(),
        ) {
            let p = crate::projection::Projection::default();
            let ty = catalogue::lookup("step_count").unwrap();
            let table = SourceTable::of;
            let write = |seq: u64, source: &str, rows: &[(i64, i64, f64)], base: i64, id0: u128| {
                let samples = rows
                    .iter()
                    .enumerate()
                    .map(|(i, &(s, d, v))| StoredSample {
                        id: (id0 + i as u128).to_be_bytes(),
                        start_us: (base + s) * 1_000_000,
                        start_offset_min: 0,
                        end_us: (base + s + d) * 1_000_000,
                        end_offset_min: 0,
                        value: v,
                        metadata: None,
                    })
                    .collect();
                let event = Event::SamplesAdded {
                    source: source.into(),
                    batches: vec![TypeBatch { type_id: "step_count".into(), samples }],
                };
                p.apply(seq, &Envelope { at_us: 0, event }).unwrap();
            };
            write(1, "a", &first, 0, 1);
            {
                let cols = p.columns(ty);
                series_for(&p, ty, &cols, None, &table(&p));
            }
            let base = if back_fill { -1000 } else { 1000 };
            write(2, if other_source { "b" } else { "a" }, &more, base, 1_000_000);
            let cols = p.columns(ty);
            let cached = series_for(&p, ty, &cols, None, &table(&p));
            let key = cached.key.clone();
            let fresh = Series::build(&cols, key, &table(&p), &[]);
            let edges: Vec<i64> = (-12..24).map(|k| k * 100_000_000).collect();
            let (a, b) = (cached.bucket_sums(&cols, &edges), fresh.bucket_sums(&cols, &edges));
            for (x, y) in a.iter().zip(&b) {
                prop_assert!((x - y).abs() <= 1e-9 * (1.0 + y.abs()), "{a:?} vs {b:?}");
            }
            prop_assert_eq!(cached.sum_rows(&cols, 0..cols.len()), fresh.sum_rows(&cols, 0..cols.len()));
        }
    }

    #[test]
    fn overlapping_phone_and_watch_count_each_minute_once() {
        let p = crate::query::fixture::overlapping_minute_steps(0, 3);
        let ty = catalogue::lookup("step_count").unwrap();
        let cols = p.columns(ty);
        let table = SourceTable::of(&p);
        let series = series_for(&p, ty, &cols, None, &table);
        let watch: f64 = (0..3 * 1440).map(|i| (i % 97) as f64).sum();
        let day = 86_400_000_000;
        let sums = series.bucket_sums(&cols, &[0, day, 2 * day, 3 * day]);
        let total: f64 = sums.iter().sum();
        // The phone's last sample runs 30 s past the watch's last one: half of
        // it is uncovered, and half of that lies inside the last bucket.
        let tail = (3 * 1440 - 1) % 97;
        let expected = watch + tail as f64 / 4.0;
        assert!((total - expected).abs() < 1e-6, "{total} vs {expected}");
    }

    #[test]
    fn union_merges_touching_and_overlapping() {
        assert_eq!(
            union(&[(0, 10), (20, 30)], &[(5, 12), (30, 40), (50, 60)]),
            vec![(0, 12), (20, 40), (50, 60)]
        );
        assert_eq!(union(&[], &[(1, 2)]), vec![(1, 2)]);
    }
}
