//! One type's samples in memory, as parallel columns.
//!
//! Samples sit in *slots* in arrival order and never move, so the id index
//! (id → slot) never needs rewriting. A separate permutation `order` lists
//! slots sorted by `(start, id)`: a back-filled batch only shifts 4-byte
//! entries of `order`, never the columns. Public positions (`pos`) are
//! indices into that sorted order.
//!
//! Per sample: start, end, value (8 bytes each), id (16), source (2), two UTC
//! offsets (2 each), a deleted bit, 4 bytes of order and 5–11 bytes of id
//! index: under 64 bytes. Metadata is rare and kept in a side map.

use std::hash::BuildHasher;
use std::ops::Range;

use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use zeroize::Zeroize;

/// One sample, as handed to and from the columns.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub id: u128,
    pub start_us: i64,
    pub start_offset_min: i16,
    pub end_us: i64,
    pub end_offset_min: i16,
    pub value: f64,
    pub source: u32,
    pub metadata: Option<Box<str>>,
}

impl Row {
    /// The sort order of samples within a type.
    pub fn sort_key(&self) -> (i64, u128) {
        (self.start_us, self.id)
    }
}

/// Which samples a reader may see: all of them, or only those one source wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visibility {
    All,
    OnlySource(u32),
}

#[derive(Default)]
pub struct TypeColumns {
    // Indexed by slot (arrival order).
    start: Vec<i64>,
    end: Vec<i64>,
    value: Vec<f64>,
    id: Vec<u128>,
    source: Vec<u16>,
    start_offset: Vec<i16>,
    end_offset: Vec<i16>,
    deleted: Vec<u64>,
    deleted_count: usize,
    /// Slots sorted by `(start, id)`.
    order: Vec<u32>,
    /// Slots, hashed by their id.
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    metadata: HashMap<u32, Box<str>>,
}

impl TypeColumns {
    /// Samples held, deleted ones included.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub fn live_len(&self) -> usize {
        self.len() - self.deleted_count
    }

    fn slot(&self, pos: usize) -> usize {
        self.order[pos] as usize
    }

    fn slot_deleted(&self, slot: usize) -> bool {
        self.deleted[slot / 64] & (1 << (slot % 64)) != 0
    }

    fn key(&self, slot: usize) -> (i64, u128) {
        (self.start[slot], self.id[slot])
    }

    pub fn is_deleted(&self, pos: usize) -> bool {
        self.slot_deleted(self.slot(pos))
    }

    pub fn start_at(&self, pos: usize) -> i64 {
        self.start[self.slot(pos)]
    }

    pub fn source_of(&self, pos: usize) -> u32 {
        self.source[self.slot(pos)] as u32
    }

    /// The sample at sorted position `pos`.
    pub fn row(&self, pos: usize) -> Row {
        self.slot_row(self.slot(pos))
    }

    fn slot_row(&self, slot: usize) -> Row {
        Row {
            id: self.id[slot],
            start_us: self.start[slot],
            start_offset_min: self.start_offset[slot],
            end_us: self.end[slot],
            end_offset_min: self.end_offset[slot],
            value: self.value[slot],
            source: self.source[slot] as u32,
            metadata: self.metadata.get(&(slot as u32)).cloned(),
        }
    }

    fn find_slot(&self, id: u128) -> Option<usize> {
        let hash = self.hasher.hash_one(id);
        self.index
            .find(hash, |&s| self.id[s as usize] == id)
            .map(|&s| s as usize)
    }

    /// The sample with `id` and whether it is deleted.
    pub fn find(&self, id: u128) -> Option<(Row, bool)> {
        let slot = self.find_slot(id)?;
        Some((self.slot_row(slot), self.slot_deleted(slot)))
    }

    /// Adds rows whose ids are not present yet.
    pub fn insert(&mut self, rows: Vec<Row>) {
        if rows.is_empty() {
            return;
        }
        let first = self.start.len();
        for row in rows {
            self.push(row);
        }
        let mut fresh: Vec<u32> = (first as u32..self.start.len() as u32).collect();
        fresh.sort_by_key(|&s| self.key(s as usize));
        for &s in &fresh {
            self.index_slot(s as usize);
        }
        let appends = match self.order.last() {
            None => true,
            Some(&last) => self.key(fresh[0] as usize) > self.key(last as usize),
        };
        if appends {
            self.order.extend_from_slice(&fresh);
        } else {
            self.merge_into_order(&fresh);
        }
    }

    /// Back-fill: places sorted `fresh` slots into `order`, moving only the
    /// entries after each insertion point, from the back so each moves once.
    fn merge_into_order(&mut self, fresh: &[u32]) {
        let positions: Vec<usize> = fresh
            .iter()
            .map(|&s| {
                let key = self.key(s as usize);
                self.order.partition_point(|&o| self.key(o as usize) < key)
            })
            .collect();
        let old_len = self.order.len();
        self.order.resize(old_len + fresh.len(), 0);
        let mut end = old_len;
        for j in (0..fresh.len()).rev() {
            let p = positions[j];
            self.order.copy_within(p..end, p + j + 1);
            self.order[p + j] = fresh[j];
            end = p;
        }
    }

    /// Marks the sample with `id` deleted; false if absent or already deleted.
    pub fn delete(&mut self, id: u128) -> bool {
        match self.find_slot(id) {
            Some(slot) if !self.slot_deleted(slot) => {
                self.deleted[slot / 64] |= 1 << (slot % 64);
                self.deleted_count += 1;
                if let Some(mut m) = self.metadata.remove(&(slot as u32)) {
                    m.zeroize();
                }
                true
            }
            _ => false,
        }
    }

    /// Positions of samples with `start` in `[from, to)`.
    pub fn start_range(&self, from: i64, to: i64) -> Range<usize> {
        let lo = self
            .order
            .partition_point(|&s| self.start[s as usize] < from);
        let hi = self.order.partition_point(|&s| self.start[s as usize] < to);
        lo..hi.max(lo)
    }

    /// The first position strictly after `(start, id)`.
    pub fn after(&self, start: i64, id: u128) -> usize {
        self.order
            .partition_point(|&s| self.key(s as usize) <= (start, id))
    }

    pub fn visible(&self, pos: usize, visibility: Visibility) -> bool {
        self.slot_visible(self.slot(pos), visibility)
    }

    fn slot_visible(&self, slot: usize, visibility: Visibility) -> bool {
        !self.slot_deleted(slot)
            && match visibility {
                Visibility::All => true,
                Visibility::OnlySource(s) => self.source[slot] as u32 == s,
            }
    }

    /// Values of the visible samples at positions `range`.
    pub fn values(
        &self,
        range: Range<usize>,
        visibility: Visibility,
    ) -> impl Iterator<Item = f64> + '_ {
        let everything = self.deleted_count == 0 && visibility == Visibility::All;
        self.order[range]
            .iter()
            .map(|&s| s as usize)
            .filter(move |&s| everything || self.slot_visible(s, visibility))
            .map(|s| self.value[s])
    }

    /// Bytes held, counting allocated capacity.
    pub fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        self.start.capacity() * size_of::<i64>()
            + self.end.capacity() * size_of::<i64>()
            + self.value.capacity() * size_of::<f64>()
            + self.id.capacity() * size_of::<u128>()
            + self.source.capacity() * size_of::<u16>()
            + self.start_offset.capacity() * size_of::<i16>()
            + self.end_offset.capacity() * size_of::<i16>()
            + self.deleted.capacity() * size_of::<u64>()
            + self.order.capacity() * size_of::<u32>()
            // hashbrown: one control byte beside each slot, buckets = capacity * 8 / 7.
            + self.index.capacity() * 8 / 7 * (size_of::<u32>() + 1)
            + self
                .metadata
                .values()
                .map(|m| m.len() + size_of::<u32>() + size_of::<Box<str>>())
                .sum::<usize>()
    }

    pub fn shrink_to_fit(&mut self) {
        self.start.shrink_to_fit();
        self.end.shrink_to_fit();
        self.value.shrink_to_fit();
        self.id.shrink_to_fit();
        self.source.shrink_to_fit();
        self.start_offset.shrink_to_fit();
        self.end_offset.shrink_to_fit();
        self.deleted.shrink_to_fit();
        self.order.shrink_to_fit();
        let (hasher, ids) = (&self.hasher, &self.id);
        self.index
            .shrink_to_fit(|&s| hasher.hash_one(ids[s as usize]));
    }

    /// Builds indexed columns from rows in log order, leaving out the ids in
    /// `dropped` (deleted samples, at replay).
    pub fn from_rows(rows: Vec<Row>, dropped: &hashbrown::HashSet<u128>) -> TypeColumns {
        let mut cols = TypeColumns::default();
        let kept = rows.len() - rows.iter().filter(|r| dropped.contains(&r.id)).count();
        cols.reserve_exact(kept);
        for row in rows {
            if !dropped.contains(&row.id) {
                cols.push(row);
            }
        }
        cols.index = HashTable::with_capacity(kept);
        for slot in 0..kept {
            cols.index_slot(slot);
        }
        let mut order: Vec<u32> = (0..kept as u32).collect();
        // Stable sort: runs already in order (the usual case) cost one pass.
        order.sort_by_key(|&s| cols.key(s as usize));
        cols.order = order;
        cols
    }

    /// Overwrites every column with zeros, then frees it.
    pub fn wipe(&mut self) {
        self.start.zeroize();
        self.end.zeroize();
        self.value.zeroize();
        self.id.zeroize();
        self.source.zeroize();
        self.start_offset.zeroize();
        self.end_offset.zeroize();
        self.deleted.zeroize();
        self.order.zeroize();
        for (_, mut m) in self.metadata.drain() {
            m.zeroize();
        }
        *self = TypeColumns::default();
    }

    fn reserve_exact(&mut self, n: usize) {
        self.start.reserve_exact(n);
        self.end.reserve_exact(n);
        self.value.reserve_exact(n);
        self.id.reserve_exact(n);
        self.source.reserve_exact(n);
        self.start_offset.reserve_exact(n);
        self.end_offset.reserve_exact(n);
        self.deleted.reserve_exact(n.div_ceil(64));
        self.order.reserve_exact(n);
    }

    fn push(&mut self, row: Row) {
        let slot = self.start.len();
        self.start.push(row.start_us);
        self.end.push(row.end_us);
        self.value.push(row.value);
        self.id.push(row.id);
        self.source
            .push(u16::try_from(row.source).expect("at most 65,536 distinct sources"));
        self.start_offset.push(row.start_offset_min);
        self.end_offset.push(row.end_offset_min);
        if slot.is_multiple_of(64) {
            self.deleted.push(0);
        }
        if let Some(m) = row.metadata {
            self.metadata.insert(slot as u32, m);
        }
    }

    fn index_slot(&mut self, slot: usize) {
        let (hasher, ids) = (&self.hasher, &self.id);
        self.index
            .insert_unique(hasher.hash_one(ids[slot]), slot as u32, |&s| {
                hasher.hash_one(ids[s as usize])
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u128, start: i64) -> Row {
        Row {
            id,
            start_us: start,
            start_offset_min: 0,
            end_us: start + 10,
            end_offset_min: 0,
            value: id as f64,
            source: 0,
            metadata: id
                .is_multiple_of(3)
                .then(|| format!("{{\"n\":{id}}}").into()),
        }
    }

    fn keys(c: &TypeColumns) -> Vec<(i64, u128)> {
        (0..c.len()).map(|p| c.row(p).sort_key()).collect()
    }

    #[test]
    fn back_fills_stay_sorted_and_indexed() {
        let mut c = TypeColumns::default();
        c.insert(vec![row(1, 100), row(2, 200)]);
        c.insert(vec![row(3, 300)]);
        assert!(c.delete(2));
        assert!(!c.delete(2));
        c.insert(vec![row(4, 150), row(5, 50), row(6, 200), row(7, 400)]);
        assert_eq!(
            keys(&c),
            vec![
                (50, 5),
                (100, 1),
                (150, 4),
                (200, 2),
                (200, 6),
                (300, 3),
                (400, 7)
            ]
        );
        for id in 1..=7u128 {
            let (r, deleted) = c.find(id).unwrap();
            assert_eq!(r.id, id);
            assert_eq!(deleted, id == 2);
            assert_eq!(r.metadata.is_some(), id.is_multiple_of(3) && id != 2);
        }
        assert_eq!(c.live_len(), 6);
        assert!(c.find(99).is_none());
        assert!(c.is_deleted(3));
        assert_eq!(c.after(200, 2), 4);
        assert_eq!(c.after(200, 6), 5);
        assert_eq!(c.start_range(100, 201), 1..5);
        let vals: Vec<f64> = c.values(0..c.len(), Visibility::All).collect();
        assert_eq!(vals, vec![5.0, 1.0, 4.0, 6.0, 3.0, 7.0]);
    }

    #[test]
    fn random_back_fills_match_a_sorted_reference() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut c = TypeColumns::default();
        let mut reference = Vec::new();
        let mut next_id = 1u128;
        for _ in 0..60 {
            let batch: Vec<Row> = (0..rng.gen_range(1..40))
                .map(|_| {
                    next_id += 1;
                    row(next_id, rng.gen_range(0..500))
                })
                .collect();
            reference.extend(batch.iter().map(Row::sort_key));
            c.insert(batch);
        }
        reference.sort();
        assert_eq!(keys(&c), reference);
    }

    #[test]
    fn from_rows_sorts_and_drops() {
        let dropped: hashbrown::HashSet<u128> = [2u128].into_iter().collect();
        let c = TypeColumns::from_rows(vec![row(3, 30), row(2, 20), row(1, 10)], &dropped);
        assert_eq!(keys(&c), vec![(10, 1), (30, 3)]);
        assert_eq!(c.find(3).unwrap().0.start_us, 30);
        assert!(c.find(2).is_none());
    }
}
