//! One type's samples in memory: parallel columns sorted by `(start, id)`.
//!
//! Layout per sample: start, end, value (8 bytes each), id (16), source (4),
//! log sequence number (4), device (2), two UTC offsets (2 each), a deleted
//! bit, and about 6–10 bytes of id index: under 64 bytes. A type whose rows
//! carry metadata has a column more (4 bytes per row), naming each row's
//! text in the type's [`TextPool`], where each distinct text is kept once:
//! rows from one device and app version share theirs.

use std::collections::HashMap;
use std::sync::OnceLock;

use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;
use zeroize::{Zeroize, Zeroizing};

use super::packed::{Packer, Unpacker};
use super::text_pool::TextPool;

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
    /// The device's slot within `source`; 0 when the sample names none.
    pub device: u16,
    /// For an id derived from the row's sync identifier (see
    /// [`super::derived_ids`]), the 6 bits its UUID shape overwrote.
    pub derived: Option<u8>,
    /// The log record that added the sample (saturates at `u32::MAX`).
    pub seq: u32,
    pub metadata: Option<Box<str>>,
}

impl Row {
    fn key(&self) -> (i64, u128) {
        (self.start_us, self.id)
    }
}

/// The highest device slot a row holds: a row's device cell (`u16`) keeps
/// its slot in the low 9 bits, and above them whether its id is derived
/// (see [`super::derived_ids`]), with the 6 bits that gives it back. Writes
/// are capped far below this (`MAX_DEVICES_PER_SOURCE`).
pub const MAX_DEVICE_SLOT: u16 = (1 << 9) - 1;
/// A device cell's mark of a derived id.
const DERIVED: u16 = 1 << 15;

fn device_cell(slot: u16, derived: Option<u8>) -> u16 {
    let slot = slot.min(MAX_DEVICE_SLOT);
    match derived {
        Some(bits) => slot | DERIVED | (u16::from(bits & 0x3f) << 9),
        None => slot,
    }
}

fn slot_of(cell: u16) -> u16 {
    cell & MAX_DEVICE_SLOT
}

fn derived_of(cell: u16) -> Option<u8> {
    (cell & DERIVED != 0).then_some(((cell >> 9) & 0x3f) as u8)
}

/// A column that repeats another until some row differs: a row's end and
/// its start, its end's time zone offset and its start's. Most types are
/// instants (heart rate among them) and most samples begin and end in one
/// time zone, so until a row differs the column is empty, ten bytes a row
/// saved for the two.
#[derive(Default)]
pub(crate) struct Echo<T>(pub(crate) Vec<T>);

impl<T: Copy + PartialEq + zeroize::DefaultIsZeroes> Echo<T> {
    /// The column, `other` being the one it repeats.
    fn of<'a>(&'a self, other: &'a [T]) -> &'a [T] {
        match self.0.is_empty() {
            true => other,
            false => &self.0,
        }
    }

    /// Row `r`'s value, `other` being the value it repeats.
    fn get(&self, r: usize, other: T) -> T {
        self.0.get(r).copied().unwrap_or(other)
    }

    /// Records `value` for the row just added, whose value in the column
    /// repeated is the last of `other`: the rows before it are filled in
    /// the first time a row differs.
    fn push(&mut self, other: &[T], value: T) {
        self.push_within(other, value, other.len());
    }

    /// [`Echo::push`], room made for `rows` rows in all the first time a
    /// row differs: a column decoded whole is never regrown.
    pub(crate) fn push_within(&mut self, other: &[T], value: T, rows: usize) {
        let Some((&last, before)) = other.split_last() else {
            return;
        };
        if self.0.is_empty() {
            if value == last {
                return;
            }
            self.0.reserve_exact(rows);
            self.0.extend_from_slice(before);
        }
        self.0.push(value);
    }

    /// Room for `n` more rows, once the column is held.
    fn reserve_exact(&mut self, n: usize) {
        if !self.0.is_empty() {
            self.0.reserve_exact(n);
        }
    }

    /// Moves row `from`'s value to row `to`, once the column is held.
    fn move_row(&mut self, from: usize, to: usize) {
        if !self.0.is_empty() {
            self.0[to] = self.0[from];
        }
    }

    /// `column` as given, empty if it repeats `other` (its bytes wiped
    /// then).
    fn from_column(mut column: Vec<T>, other: &[T]) -> Echo<T> {
        if column == other {
            column.zeroize();
            column = Vec::new();
        }
        Echo(column)
    }
}

/// Rows collected for columns, kept as columns from the start: a full
/// replay appends every sample here, and the columns it ends with are
/// these, moved rather than copied. Large columns grow by moving their
/// pages, not copying them (see the `zero-on-free` crate), so collecting
/// millions costs no more memory than the columns themselves. Metadata is
/// pooled as it comes (the pool becomes the columns'), and whether the rows
/// came in order is noted as they come rather than read again.
pub struct RowColumns {
    id: Vec<u128>,
    start: Vec<i64>,
    end: Echo<i64>,
    value: Vec<f64>,
    source: Vec<u32>,
    seq: Vec<u32>,
    device: Vec<u16>,
    start_offset: Vec<i16>,
    end_offset: Echo<i16>,
    /// Each row's slot in `texts`, 0 for none; empty until a row has
    /// metadata, then as long as the others.
    metadata: Vec<u32>,
    texts: TextPool,
    /// Whether every row so far came after the one before it.
    in_order: bool,
}

impl Default for RowColumns {
    fn default() -> RowColumns {
        RowColumns {
            id: Vec::new(),
            start: Vec::new(),
            end: Echo::default(),
            value: Vec::new(),
            source: Vec::new(),
            seq: Vec::new(),
            device: Vec::new(),
            start_offset: Vec::new(),
            end_offset: Echo::default(),
            metadata: Vec::new(),
            texts: TextPool::default(),
            in_order: true,
        }
    }
}

impl RowColumns {
    /// Appends `rows`, their metadata taken into the pool (and wiped).
    pub fn extend(&mut self, rows: impl IntoIterator<Item = Row>) {
        for mut row in rows {
            if self.in_order {
                if let (Some(&start), Some(&id)) = (self.start.last(), self.id.last()) {
                    self.in_order = (start, id) <= row.key();
                }
            }
            if let Some(mut text) = row.metadata.take() {
                if self.metadata.len() < self.id.len() {
                    self.metadata.resize(self.id.len(), 0);
                }
                self.metadata.push(self.texts.intern(&text));
                text.zeroize();
            } else if !self.metadata.is_empty() {
                self.metadata.push(0);
            }
            self.id.push(row.id);
            self.start.push(row.start_us);
            self.end.push(&self.start, row.end_us);
            self.value.push(row.value);
            self.source.push(row.source);
            self.seq.push(row.seq);
            self.device.push(device_cell(row.device, row.derived));
            self.start_offset.push(row.start_offset_min);
            self.end_offset.push(&self.start_offset, row.end_offset_min);
        }
    }

    /// Keeps the rows for which `keep(id, source)` holds (in the order
    /// they were), moving them down in place.
    pub fn retain(&mut self, mut keep: impl FnMut(u128, u32) -> bool) {
        let mut kept = 0;
        for r in 0..self.id.len() {
            if !keep(self.id[r], self.source[r]) {
                if let Some(&slot) = self.metadata.get(r) {
                    self.texts.release(slot);
                }
                continue;
            }
            if kept != r {
                self.id[kept] = self.id[r];
                self.start[kept] = self.start[r];
                self.end.move_row(r, kept);
                self.value[kept] = self.value[r];
                self.source[kept] = self.source[r];
                self.seq[kept] = self.seq[r];
                self.device[kept] = self.device[r];
                self.start_offset[kept] = self.start_offset[r];
                self.end_offset.move_row(r, kept);
                if !self.metadata.is_empty() {
                    self.metadata[kept] = self.metadata[r];
                }
            }
            kept += 1;
        }
        self.truncate(kept);
    }

    /// Drops the rows from `len` on (wiping what they held).
    fn truncate(&mut self, len: usize) {
        fn cut<T: zeroize::DefaultIsZeroes>(column: &mut Vec<T>, len: usize) {
            if column.len() > len {
                column[len..].zeroize();
                column.truncate(len);
            }
        }
        cut(&mut self.id, len);
        cut(&mut self.start, len);
        cut(&mut self.end.0, len);
        cut(&mut self.value, len);
        cut(&mut self.source, len);
        cut(&mut self.seq, len);
        cut(&mut self.device, len);
        cut(&mut self.start_offset, len);
        cut(&mut self.end_offset.0, len);
        cut(&mut self.metadata, len);
    }

    fn len(&self) -> usize {
        self.id.len()
    }

    fn row(&self, r: usize) -> Row {
        Row {
            id: self.id[r],
            start_us: self.start[r],
            start_offset_min: self.start_offset[r],
            end_us: self.end.get(r, self.start[r]),
            end_offset_min: self.end_offset.get(r, self.start_offset[r]),
            value: self.value[r],
            source: self.source[r],
            device: slot_of(self.device[r]),
            derived: derived_of(self.device[r]),
            seq: self.seq[r],
            metadata: self
                .metadata
                .get(r)
                .and_then(|&slot| self.texts.get(slot))
                .map(Box::from),
        }
    }

    /// The rows one by one, each with its metadata again.
    pub fn into_vec(self) -> Vec<Row> {
        (0..self.len()).map(|r| self.row(r)).collect()
    }

    /// Sorted by `(start, id)`: as they are when they came in order (as a
    /// log written in time order does), else each column rearranged by
    /// one sorted permutation.
    fn sort(&mut self) {
        if self.in_order {
            return;
        }
        let mut order: Vec<u32> = (0..self.len() as u32).collect();
        order.sort_unstable_by_key(|&r| (self.start[r as usize], self.id[r as usize]));
        // Only the rows held are wiped: the spare room a grown column has
        // never held any (a cut wipes what it cuts), and writing it would
        // bring in memory never touched.
        fn rearrange<T: zeroize::DefaultIsZeroes>(column: &mut Vec<T>, order: &[u32]) {
            if column.is_empty() {
                return;
            }
            let sorted: Vec<T> = order.iter().map(|&r| column[r as usize]).collect();
            column.as_mut_slice().zeroize();
            *column = sorted;
        }
        rearrange(&mut self.id, &order);
        rearrange(&mut self.start, &order);
        rearrange(&mut self.end.0, &order);
        rearrange(&mut self.value, &order);
        rearrange(&mut self.source, &order);
        rearrange(&mut self.seq, &order);
        rearrange(&mut self.device, &order);
        rearrange(&mut self.start_offset, &order);
        rearrange(&mut self.end_offset.0, &order);
        rearrange(&mut self.metadata, &order);
        self.in_order = true;
    }
}

impl From<Vec<Row>> for RowColumns {
    fn from(rows: Vec<Row>) -> RowColumns {
        let mut columns = RowColumns::default();
        columns.extend(rows);
        columns
    }
}

/// The rows one source wrote, as 64-row blocks with a bit per row: a source's
/// rows can be gathered without reading anyone else's. Sources write in runs,
/// so this costs a fraction of a byte per row; at worst (every row of a
/// block from another source) 12 bytes for each of the source's rows.
#[derive(Clone, Debug, Default)]
struct SourceRows {
    /// Block numbers (`row / 64`), ascending.
    blocks: Vec<u32>,
    /// The source's rows within each block.
    masks: Vec<u64>,
}

impl SourceRows {
    fn add(&mut self, row: usize) {
        let (block, bit) = ((row / 64) as u32, 1u64 << (row % 64));
        match self.blocks.last() {
            Some(&last) if last == block => *self.masks.last_mut().expect("parallel") |= bit,
            _ => {
                self.blocks.push(block);
                self.masks.push(bit);
            }
        }
    }

    /// Forgets rows `from..`.
    fn truncate(&mut self, from: usize) {
        let block = (from / 64) as u32;
        let keep = self.blocks.partition_point(|&b| b < block);
        let mut cut = keep;
        if self.blocks.get(keep) == Some(&block) && !from.is_multiple_of(64) {
            self.masks[keep] &= (1u64 << (from % 64)) - 1;
            if self.masks[keep] != 0 {
                cut += 1;
            }
        }
        self.blocks.truncate(cut);
        self.masks.truncate(cut);
    }

    fn rows(&self) -> impl Iterator<Item = usize> + '_ {
        self.blocks.iter().zip(&self.masks).flat_map(|(&b, &m)| {
            let base = b as usize * 64;
            let mut m = m;
            std::iter::from_fn(move || {
                (m != 0).then(|| {
                    let bit = m.trailing_zeros() as usize;
                    m &= m - 1;
                    base + bit
                })
            })
        })
    }

    fn memory_bytes(&self) -> usize {
        self.blocks.capacity() * 4 + self.masks.capacity() * 8
    }

    fn wipe(&mut self) {
        self.blocks.zeroize();
        self.masks.zeroize();
    }
}

/// (source, device slot) pairs, shared between the columns and callers.
pub type LiveOrigins = std::sync::Arc<[(u32, u16)]>;

#[derive(Default)]
pub struct TypeColumns {
    start: Vec<i64>,
    end: Echo<i64>,
    value: Vec<f64>,
    id: Vec<u128>,
    source: Vec<u32>,
    seq: Vec<u32>,
    device: Vec<u16>,
    start_offset: Vec<i16>,
    end_offset: Echo<i16>,
    /// Each row's slot in `texts`, 0 for none (a deleted row holds none);
    /// empty until a row carries metadata, then as long as the others.
    metadata: Vec<u32>,
    texts: TextPool,
    deleted: Vec<u64>,
    deleted_count: usize,
    /// Row numbers (deleted rows too), hashed by the row's id: built on
    /// first use, not when the columns are made, so that unlock does not
    /// wait for it (the store builds it in the background right after).
    index: OnceLock<HashTable<u32>>,
    hasher: DefaultHashBuilder,
    /// Each source's rows, so a caller who may read only its own never
    /// touches anyone else's.
    by_source: HashMap<u32, SourceRows>,
    /// Per source, bumped when a row of that source is added or deleted
    /// (never when rows of others move): a copy of a source's rows stays
    /// valid until its own rows change.
    source_generation: HashMap<u32, u64>,
    /// An upper bound on `end - start` of any row, so a range query knows
    /// how far back a sample overlapping its start can begin.
    longest_us: i64,
    /// Bumped on every change, so derived data knows when it is stale.
    generation: u64,
    /// Highest `seq` of any add or delete applied to this type.
    last_seq: u32,
    /// The generation of the last change other than an append at the end
    /// (a deletion, a back-fill): derived data older than it is stale.
    reshaped: u64,
    /// The distinct (source, device slot) pairs of the live rows and the
    /// generation they were found at: finding them walks every row.
    origins: parking_lot::Mutex<Option<(u64, LiveOrigins)>>,
}

impl TypeColumns {
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn last_seq(&self) -> u32 {
        self.last_seq
    }

    pub fn reshaped(&self) -> u64 {
        self.reshaped
    }

    /// Records that a change with `seq` touched this type.
    pub fn touch(&mut self, seq: u32) {
        self.generation += 1;
        self.reshaped = self.generation;
        self.last_seq = self.last_seq.max(seq);
    }

    pub fn longest_us(&self) -> i64 {
        self.longest_us
    }

    /// Changes with every row `source` adds or deletes, and only then.
    pub fn source_generation(&self, source: u32) -> u64 {
        self.source_generation.get(&source).copied().unwrap_or(0)
    }

    pub fn starts(&self) -> &[i64] {
        &self.start
    }

    pub fn ends(&self) -> &[i64] {
        self.end.of(&self.start)
    }

    pub fn value_slice(&self) -> &[f64] {
        &self.value
    }

    pub fn sources(&self) -> &[u32] {
        &self.source
    }

    /// The device slot of `row`.
    pub fn device_of(&self, row: usize) -> u16 {
        slot_of(self.device[row])
    }

    /// For a row whose id is derived from its sync identifier, the bits
    /// that gives it back (see [`super::derived_ids`]).
    pub fn derived_of(&self, row: usize) -> Option<u8> {
        derived_of(self.device[row])
    }

    /// The live rows whose ids are derived from their sync identifiers.
    pub fn derived_rows(&self) -> impl Iterator<Item = usize> + '_ {
        self.live_rows().filter(|&r| self.device[r] & DERIVED != 0)
    }

    pub fn seqs(&self) -> &[u32] {
        &self.seq
    }

    pub fn id_of(&self, row: usize) -> u128 {
        self.id[row]
    }

    /// True when no row is deleted (fast paths skip the bitset).
    pub fn none_deleted(&self) -> bool {
        self.deleted_count == 0
    }

    pub fn len(&self) -> usize {
        self.start.len()
    }

    pub fn is_empty(&self) -> bool {
        self.start.is_empty()
    }

    pub fn live_len(&self) -> usize {
        self.len() - self.deleted_count
    }

    pub fn is_deleted(&self, row: usize) -> bool {
        self.deleted[row / 64] & (1 << (row % 64)) != 0
    }

    /// The numbers of the rows not deleted, in order.
    fn live_rows(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len()).filter(|&r| self.deleted_count == 0 || !self.is_deleted(r))
    }

    pub fn source_of(&self, row: usize) -> u32 {
        self.source[row]
    }

    pub fn row(&self, row: usize) -> Row {
        Row {
            metadata: self.texts.get(self.metadata_slot(row)).map(Box::from),
            ..self.row_without_metadata(row)
        }
    }

    /// The row holding `id`, deleted or not.
    pub fn find(&self, id: u128) -> Option<usize> {
        let hash = self.hasher.hash_one(id);
        self.index()
            .find(hash, |&r| self.id[r as usize] == id)
            .map(|&r| r as usize)
    }

    /// The id index, built now if it is not yet (callers of the same
    /// columns wait for one build).
    pub fn index(&self) -> &HashTable<u32> {
        self.index
            .get_or_init(|| build_index(&self.id, &self.hasher))
    }

    /// Adds rows whose ids are not present yet.
    pub fn insert(&mut self, mut rows: Vec<Row>) {
        if rows.is_empty() {
            return;
        }
        self.generation += 1;
        self.last_seq = rows.iter().map(|r| r.seq).fold(self.last_seq, u32::max);
        let mut last_source = None;
        for row in &rows {
            if last_source != Some(row.source) {
                last_source = Some(row.source);
                *self.source_generation.entry(row.source).or_default() += 1;
            }
        }
        rows.sort_unstable_by_key(Row::key);
        let appends = match (self.start.last(), self.id.last()) {
            (Some(&s), Some(&i)) => rows[0].key() > (s, i),
            _ => true,
        };
        if appends {
            let first = self.len();
            for row in rows {
                self.push(row);
            }
            for r in first..self.len() {
                self.index_row(r);
            }
        } else {
            // A back-fill: only the rows after the first insertion point
            // move, so a late batch near the end costs little however large
            // the type is.
            let first = rows[0].key();
            let p0 = self.start.partition_point(|&s| s < first.0);
            let p0 = p0
                + self.id[p0..]
                    .iter()
                    .zip(&self.start[p0..])
                    .take_while(|&(&i, &s)| (s, i) < first)
                    .count();
            let tail = self.cut_tail(p0);
            let (mut old, mut new) = (tail.into_iter().peekable(), rows.into_iter().peekable());
            loop {
                let take_old = match (old.peek(), new.peek()) {
                    (Some((o, _, _)), Some(n)) => o.key() < n.key(),
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                    (None, None) => break,
                };
                if take_old {
                    let (row, deleted, slot) = old.next().expect("peeked");
                    self.push_with_slot(row, slot);
                    if deleted {
                        self.mark_deleted(self.len() - 1);
                    }
                } else {
                    self.push(new.next().expect("peeked"));
                }
                self.index_row(self.len() - 1);
            }
            self.reshaped = self.generation;
        }
    }

    /// Removes rows `from..` (and their index entries) and returns them in
    /// order with their deleted flags and metadata slots, still held.
    fn cut_tail(&mut self, from: usize) -> Vec<(Row, bool, u32)> {
        let tail: Vec<(Row, bool, u32)> = (from..self.len())
            .map(|r| {
                let row = self.row_without_metadata(r);
                (row, self.is_deleted(r), self.metadata_slot(r))
            })
            .collect();
        if let Some(index) = self.index.get_mut() {
            for r in from..self.id.len() {
                let hash = self.hasher.hash_one(self.id[r]);
                if let Ok(entry) = index.find_entry(hash, |&e| e as usize == r) {
                    entry.remove();
                }
            }
        }
        self.deleted_count -= tail.iter().filter(|(_, d, _)| *d).count();
        self.start.truncate(from);
        self.end.0.truncate(from);
        self.value.truncate(from);
        self.id.truncate(from);
        self.source.truncate(from);
        self.seq.truncate(from);
        self.device.truncate(from);
        self.start_offset.truncate(from);
        self.end_offset.0.truncate(from);
        self.metadata.truncate(from);
        self.deleted.truncate(from.div_ceil(64));
        self.by_source.retain(|_, rows| {
            rows.truncate(from);
            !rows.blocks.is_empty()
        });
        if !from.is_multiple_of(64) {
            if let Some(last) = self.deleted.last_mut() {
                *last &= (1u64 << (from % 64)) - 1;
            }
        }
        tail
    }

    /// Marks the row holding `id` deleted; false if absent or already deleted.
    pub fn delete(&mut self, id: u128) -> bool {
        match self.find(id) {
            Some(r) if !self.is_deleted(r) => {
                self.mark_deleted(r);
                *self.source_generation.entry(self.source[r]).or_default() += 1;
                self.generation += 1;
                self.reshaped = self.generation;
                if let Some(slot) = self.metadata.get_mut(r) {
                    self.texts.release(std::mem::take(slot));
                }
                true
            }
            _ => false,
        }
    }

    /// Rows with `start` in `[from, to)`, as a row-number range.
    pub fn start_range(&self, from: i64, to: i64) -> std::ops::Range<usize> {
        let lo = self.start.partition_point(|&s| s < from);
        let hi = self.start.partition_point(|&s| s < to);
        lo..hi.max(lo)
    }

    /// The first row strictly after `(start, id)` in sort order.
    pub fn after(&self, start: i64, id: u128) -> usize {
        let lo = self.start.partition_point(|&s| s < start);
        let hi = self.start.partition_point(|&s| s <= start);
        lo + self.id[lo..hi].partition_point(|&i| i <= id)
    }

    /// The first row at or after `(start, id)` in sort order: rows before it
    /// sort strictly before the key.
    pub fn before(&self, start: i64, id: u128) -> usize {
        let lo = self.start.partition_point(|&s| s < start);
        let hi = self.start.partition_point(|&s| s <= start);
        lo + self.id[lo..hi].partition_point(|&i| i < id)
    }

    /// Whether `row` holds a sample that was not deleted.
    pub fn live(&self, row: usize) -> bool {
        !self.is_deleted(row)
    }

    /// The distinct (source, device slot) pairs of the live rows, in no
    /// order: found by walking every row once per change of the columns,
    /// then kept until the next.
    pub fn live_origins(&self) -> LiveOrigins {
        let mut cache = self.origins.lock();
        if let Some((generation, origins)) = &*cache {
            if *generation == self.generation {
                return origins.clone();
            }
        }
        let mut seen = hashbrown::HashSet::new();
        let mut last = None;
        for r in 0..self.len() {
            let origin = (self.source[r], slot_of(self.device[r]));
            // Rows of one origin come in runs: skip the hash while it lasts.
            if last == Some(origin) || !self.live(r) {
                continue;
            }
            last = Some(origin);
            seen.insert(origin);
        }
        let origins: LiveOrigins = seen.into_iter().collect();
        *cache = Some((self.generation, origins.clone()));
        origins
    }

    /// Values of the live rows in `rows`.
    pub fn values(&self, rows: std::ops::Range<usize>) -> impl Iterator<Item = f64> + '_ {
        let fast = self.deleted_count == 0;
        let slice = &self.value[rows.clone()];
        slice
            .iter()
            .zip(rows)
            .filter(move |&(_, r)| fast || self.live(r))
            .map(|(&v, _)| v)
    }

    /// The live rows `source` wrote, as columns of their own: built from that
    /// source's rows alone, so neither its cost nor anything computed from
    /// it depends on rows of other sources.
    pub fn only_source(&self, source: u32) -> TypeColumns {
        match self.by_source.get(&source) {
            Some(own) => self.copy_of(own.rows()),
            None => self.copy_of(std::iter::empty()),
        }
    }

    /// The live rows `keep` accepts, as columns of their own; reads every row.
    pub fn select(&self, keep: impl Fn(usize) -> bool) -> TypeColumns {
        self.copy_of((0..self.len()).filter(|&r| keep(r)))
    }

    /// The live rows among `rows` (ascending), as columns of their own.
    fn copy_of(&self, rows: impl Iterator<Item = usize>) -> TypeColumns {
        // The type's last change may be anyone's: a copy claims every one,
        // so the change feed never skips it on that account.
        let mut cols = TypeColumns {
            last_seq: u32::MAX,
            ..TypeColumns::default()
        };
        for r in rows {
            if !self.is_deleted(r) {
                cols.push(self.row(r));
            }
        }
        cols.forget_index();
        cols
    }

    /// Bytes held, counting allocated capacity.
    pub fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        self.start.capacity() * size_of::<i64>()
            + self.end.0.capacity() * size_of::<i64>()
            + self.value.capacity() * size_of::<f64>()
            + self.id.capacity() * size_of::<u128>()
            + self.source.capacity() * size_of::<u32>()
            + self.seq.capacity() * size_of::<u32>()
            + self.device.capacity() * size_of::<u16>()
            + self.start_offset.capacity() * size_of::<i16>()
            + self.end_offset.0.capacity() * size_of::<i16>()
            + self.metadata.capacity() * size_of::<u32>()
            + self.texts.memory_bytes()
            + self.deleted.capacity() * size_of::<u64>()
            // hashbrown: one control byte per bucket beside each slot.
            + self
                .index
                .get()
                .map_or(0, |index| index.capacity() * 8 / 7 * (size_of::<u32>() + 1))
            + self
                .by_source
                .values()
                .map(|rows| rows.memory_bytes() + size_of::<(u32, SourceRows)>())
                .sum::<usize>()
    }

    pub fn shrink_to_fit(&mut self) {
        self.start.shrink_to_fit();
        self.end.0.shrink_to_fit();
        self.value.shrink_to_fit();
        self.id.shrink_to_fit();
        self.source.shrink_to_fit();
        self.seq.shrink_to_fit();
        self.device.shrink_to_fit();
        self.start_offset.shrink_to_fit();
        self.end_offset.0.shrink_to_fit();
        self.metadata.shrink_to_fit();
        self.texts.shrink_to_fit();
        self.deleted.shrink_to_fit();
        for rows in self.by_source.values_mut() {
            rows.blocks.shrink_to_fit();
            rows.masks.shrink_to_fit();
        }
        let (hasher, ids) = (&self.hasher, &self.id);
        if let Some(index) = self.index.get_mut() {
            index.shrink_to_fit(|&r| hasher.hash_one(ids[r as usize]));
        }
    }

    /// Builds sorted columns from rows in any order (their id index is
    /// built on first use), dropping the ids in `dropped` (deleted
    /// samples, at replay).
    pub fn from_rows(
        rows: impl Into<RowColumns>,
        dropped: &hashbrown::HashSet<u128>,
    ) -> TypeColumns {
        let mut rows: RowColumns = rows.into();
        if !dropped.is_empty() {
            rows.retain(|id, _| !dropped.contains(&id));
        }
        rows.sort();
        let n = rows.len();
        let (by_source, longest_us) = origins(&rows.source, &rows.start, rows.end.of(&rows.start));
        let last_seq = rows.seq.iter().copied().max().unwrap_or(0);
        // A type whose metadata was all dropped has no column of it, nor of
        // ends or their offsets if the rows that differed were dropped.
        if rows.metadata.iter().all(|&slot| slot == 0) {
            rows.metadata = Vec::new();
        }
        rows.end = Echo::from_column(std::mem::take(&mut rows.end.0), &rows.start);
        rows.end_offset =
            Echo::from_column(std::mem::take(&mut rows.end_offset.0), &rows.start_offset);
        TypeColumns {
            start: rows.start,
            end: rows.end,
            value: rows.value,
            id: rows.id,
            source: rows.source,
            seq: rows.seq,
            device: rows.device,
            start_offset: rows.start_offset,
            end_offset: rows.end_offset,
            metadata: rows.metadata,
            texts: rows.texts,
            deleted: vec![0; n.div_ceil(64)],
            by_source,
            longest_us,
            last_seq,
            ..TypeColumns::default()
        }
    }

    /// Overwrites every column with zeros, then frees it.
    pub fn wipe(&mut self) {
        self.start.zeroize();
        self.end.0.zeroize();
        self.value.zeroize();
        self.id.zeroize();
        self.source.zeroize();
        self.seq.zeroize();
        self.device.zeroize();
        self.start_offset.zeroize();
        self.end_offset.0.zeroize();
        self.metadata.zeroize();
        self.texts.wipe();
        self.deleted.zeroize();
        *self.origins.lock() = None;
        for (_, mut rows) in self.by_source.drain() {
            rows.wipe();
        }
        *self = TypeColumns::default();
    }

    fn reserve_exact(&mut self, n: usize) {
        self.id.reserve_exact(n);
        self.reserve_fields(n);
        if !self.metadata.is_empty() {
            self.metadata.reserve_exact(n);
        }
        self.deleted.reserve_exact(n.div_ceil(64));
    }

    /// Reserves `n` more rows in every column but the ids and metadata.
    fn reserve_fields(&mut self, n: usize) {
        self.start.reserve_exact(n);
        self.end.reserve_exact(n);
        self.value.reserve_exact(n);
        self.source.reserve_exact(n);
        self.seq.reserve_exact(n);
        self.device.reserve_exact(n);
        self.start_offset.reserve_exact(n);
        self.end_offset.reserve_exact(n);
    }

    fn metadata_slot(&self, row: usize) -> u32 {
        self.metadata.get(row).copied().unwrap_or(0)
    }

    fn row_without_metadata(&self, row: usize) -> Row {
        Row {
            id: self.id[row],
            start_us: self.start[row],
            start_offset_min: self.start_offset[row],
            end_us: self.end.get(row, self.start[row]),
            end_offset_min: self.end_offset.get(row, self.start_offset[row]),
            value: self.value[row],
            source: self.source[row],
            device: slot_of(self.device[row]),
            derived: derived_of(self.device[row]),
            seq: self.seq[row],
            metadata: None,
        }
    }

    fn push(&mut self, mut row: Row) {
        let slot = self.intern_metadata(&mut row);
        self.push_with_slot(row, slot);
    }

    /// Takes `row`'s metadata into the pool (wiping it): its slot, 0 for
    /// none.
    fn intern_metadata(&mut self, row: &mut Row) -> u32 {
        match row.metadata.take() {
            Some(mut text) => {
                let slot = self.texts.intern(&text);
                text.zeroize();
                slot
            }
            None => 0,
        }
    }

    /// Appends `row` holding metadata `slot` (already counted for it).
    fn push_with_slot(&mut self, row: Row, slot: u32) {
        self.id.push(row.id);
        self.push_fields(row, slot);
    }

    /// Appends every column of `row` but its id. A column that grows
    /// leaves no copy behind: the process's allocator (`zero-on-free`)
    /// wipes the block it moves out of, or moves a large one's pages.
    fn push_fields(&mut self, row: Row, slot: u32) {
        let r = self.len();
        self.start.push(row.start_us);
        self.end.push(&self.start, row.end_us);
        self.value.push(row.value);
        self.source.push(row.source);
        self.seq.push(row.seq);
        self.device.push(device_cell(row.device, row.derived));
        self.start_offset.push(row.start_offset_min);
        self.end_offset.push(&self.start_offset, row.end_offset_min);
        if slot != 0 || !self.metadata.is_empty() {
            if self.metadata.is_empty() {
                self.metadata = vec![0; r];
            }
            self.metadata.push(slot);
        }
        if r.is_multiple_of(64) {
            self.deleted.push(0);
        }
        self.by_source.entry(row.source).or_default().add(r);
        self.longest_us = self.longest_us.max(row.end_us.saturating_sub(row.start_us));
    }

    fn mark_deleted(&mut self, row: usize) {
        self.deleted[row / 64] |= 1 << (row % 64);
        self.deleted_count += 1;
    }

    /// Adds `row` to the id index if it is built (else the build will).
    fn index_row(&mut self, row: usize) {
        let (hasher, ids) = (&self.hasher, &self.id);
        if let Some(index) = self.index.get_mut() {
            index.insert_unique(hasher.hash_one(ids[row]), row as u32, |&r| {
                hasher.hash_one(ids[r as usize])
            });
        }
    }

    /// Forgets the id index after rows moved: it is built again on first
    /// use.
    fn forget_index(&mut self) {
        self.index = OnceLock::new();
    }
}

/// The id index of rows with `ids`: row numbers hashed by id. A large table
/// is filled in the order of the bucket each row's probe starts at, so it
/// is written a small region at a time rather than at random: inserting ten
/// million rows in row order spends most of its time waiting for memory.
fn build_index(ids: &[u128], hasher: &DefaultHashBuilder) -> HashTable<u32> {
    let mut index = HashTable::with_capacity(ids.len());
    if ids.len() < INDEX_SORTED_FROM {
        for (r, &id) in ids.iter().enumerate() {
            index.insert_unique(hasher.hash_one(id), r as u32, |&r| {
                hasher.hash_one(ids[r as usize])
            });
        }
        return index;
    }
    // hashbrown's tables have a power-of-two number of buckets, seven
    // eighths of which it fills, and a probe for `hash` starts at bucket
    // `hash & (buckets - 1)`. Were this ever not so, the order would only
    // be slower, never wrong. The rows are grouped by the top 12 bits of
    // that bucket (one counting pass, one placing pass): each group fills
    // a region of the table small enough to stay in the caches, and one
    // pass over 4096 groups costs far less than a full sort.
    let buckets = (index.capacity() / 7 * 8).next_power_of_two();
    let bucket_bits = buckets.trailing_zeros();
    let group_bits = bucket_bits.min(INDEX_GROUP_BITS);
    let shift = bucket_bits - group_bits;
    let mask = (buckets as u64) - 1;
    let group = |hash: u64| ((hash & mask) >> shift) as usize;
    let mut starts = vec![0usize; 1 << group_bits];
    for &id in ids {
        starts[group(hasher.hash_one(id))] += 1;
    }
    let mut sum = 0;
    for start in &mut starts {
        (*start, sum) = (sum, sum + *start);
    }
    // Row numbers alone, each id hashed again as it is inserted: keeping
    // every hash meanwhile would make this list four times the size (16
    // bytes a row, padding included), and it is held beside the table at
    // its fullest, which at unlock is the process's peak.
    let mut grouped = vec![0u32; ids.len()];
    for (r, &id) in ids.iter().enumerate() {
        let at = &mut starts[group(hasher.hash_one(id))];
        grouped[*at] = r as u32;
        *at += 1;
    }
    for &r in &grouped {
        let hash = hasher.hash_one(ids[r as usize]);
        index.insert_unique(hash, r, |&r| hasher.hash_one(ids[r as usize]));
    }
    index
}

/// Rows from which [`build_index`] orders its inserts: below it the table
/// fits in the caches anyway.
const INDEX_SORTED_FROM: usize = 1 << 16;

/// Bits of the bucket by which [`build_index`] groups its inserts.
const INDEX_GROUP_BITS: u32 = 12;

/// Sorted live rows as plain columns: what a snapshot holds of one type.
#[derive(Default)]
pub(crate) struct ColumnData {
    pub start: Vec<i64>,
    /// Like the end offsets, none while they repeat the starts'.
    pub end: Echo<i64>,
    pub value: Vec<f64>,
    pub id: Vec<u128>,
    pub source: Vec<u32>,
    pub seq: Vec<u32>,
    pub device: Vec<u16>,
    pub start_offset: Vec<i16>,
    pub end_offset: Echo<i16>,
    /// Metadata by sample id (snapshots before version 4).
    pub metadata: HashMap<u128, Box<str>>,
    /// Or each row's number into `texts` (1-based, 0 for none): empty when
    /// no row has any.
    pub text_numbers: Vec<u32>,
    pub texts: Vec<Box<str>>,
}

/// Rows from which a type's columns are decoded on two threads.
const DECODE_SPREAD_FROM: usize = 1 << 16;

/// One packed column read by `read`; its bytes are wiped and freed as soon
/// as it is, not when the whole type is.
fn unpack<T>(bytes: Zeroizing<Vec<u8>>, read: impl FnOnce(Unpacker<'_>) -> Option<T>) -> Option<T> {
    read(Unpacker::new(&bytes))
}

/// Bytes per row of the encoded columns.
pub(crate) const ENCODED_ROW_BYTES: usize = 8 + 8 + 8 + 16 + 4 + 4 + 2 + 2 + 2;

/// Where encoded columns go: a plain buffer, or a snapshot being sealed
/// chunk by chunk as it is written.
pub(crate) trait ByteSink {
    fn put(&mut self, bytes: &[u8]);
}

impl ByteSink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl ByteSink for zeroize::Zeroizing<Vec<u8>> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

#[cfg(test)]
macro_rules! put_column {
    ($out:expr, $col:expr, $rows:expr) => {
        for r in $rows {
            $out.put(&$col[r].to_le_bytes());
        }
    };
}

macro_rules! take_column {
    ($bytes:expr, $at:expr, $n:expr, $ty:ty) => {{
        const W: usize = std::mem::size_of::<$ty>();
        let part = &$bytes[*$at..*$at + $n * W];
        *$at += $n * W;
        part.chunks_exact(W)
            .map(|c| <$ty>::from_le_bytes(c.try_into().expect("exact chunk")))
            .collect::<Vec<$ty>>()
    }};
}

impl ColumnData {
    pub fn len(&self) -> usize {
        self.start.len()
    }

    /// Holds each device cell to a slot a row can name: a snapshot from a
    /// log written before devices were capped may name more. With
    /// `keep_marks` (version 6 on, whose cells are whole), a cell marked
    /// derived is kept as it is; before, cells hold slots only.
    pub fn clamp_device_slots(&mut self, keep_marks: bool) {
        for cell in &mut self.device {
            if !(keep_marks && *cell & DERIVED != 0) {
                *cell = (*cell).min(MAX_DEVICE_SLOT);
            }
        }
    }

    /// Whether any row's device cell carries the mark of a derived id (a
    /// snapshot from version 6 on keeps the cells whole).
    pub fn any_derived(&self) -> bool {
        self.device.iter().any(|&cell| cell & DERIVED != 0)
    }

    /// Marks the first row from `from` on holding `id` as derived from its
    /// sync identifier, with the bits that gives it back; the row after
    /// it, or `None` if no row from `from` on holds `id`. A snapshot lists
    /// derived rows in row order, so each search starts where the last
    /// ended.
    pub fn mark_derived(&mut self, from: usize, id: u128, bits: u8) -> Option<usize> {
        let r = from + self.id.get(from..)?.iter().position(|&i| i == id)?;
        self.device[r] = device_cell(self.device[r], Some(bits));
        Some(r + 1)
    }

    /// Reads `rows` rows encoded by [`TypeColumns::encode_live`] with their
    /// metadata as numbers into `texts` (when there are any texts); `None`
    /// if `bytes` has another length, a number names no text, or the rows
    /// are not in order.
    pub fn decode_pooled(bytes: &[u8], rows: usize, texts: Vec<Box<str>>) -> Option<ColumnData> {
        if texts.is_empty() {
            return ColumnData::decode(bytes, rows, HashMap::new());
        }
        let columns = rows.checked_mul(ENCODED_ROW_BYTES)?;
        if rows.checked_mul(4)?.checked_add(columns) != Some(bytes.len()) {
            return None;
        }
        let (columns, numbers) = bytes.split_at(columns);
        let mut data = ColumnData::decode(columns, rows, HashMap::new())?;
        data.text_numbers = take_column!(numbers, &mut 0usize, rows, u32);
        if data.text_numbers.iter().any(|&n| n as usize > texts.len()) {
            return None;
        }
        data.texts = texts;
        Some(data)
    }

    /// Reads `rows` rows packed by [`TypeColumns::encode_packed`], given
    /// as each column's bytes; `None` if the bytes do not match, a number
    /// names no text, or the rows are not in order.
    pub fn decode_packed(
        columns: Vec<Zeroizing<Vec<u8>>>,
        rows: usize,
        texts: Vec<Box<str>>,
    ) -> Option<ColumnData> {
        let expected = if texts.is_empty() { 9 } else { 10 };
        if columns.len() != expected {
            return None;
        }
        // Every value takes a byte at least, an id sixteen: `rows` is held
        // to the bytes before anything is allocated for it.
        if columns.iter().any(|c| c.len() < rows) || Some(columns[3].len()) != rows.checked_mul(16)
        {
            return None;
        }
        let mut columns = columns.into_iter();
        let mut next = || columns.next().expect("counted above");
        let (start, end, value) = (next(), next(), next());
        let (id, source, seq, device, start_offset, end_offset) =
            (next(), next(), next(), next(), next(), next());
        let numbers = columns.next();
        // A large type's ids and times on one thread, the rest on another;
        // each column's bytes are wiped and freed once it is decoded.
        let decode_ids_and_times = move || {
            let ids = unpack(id, |u| u.ids(rows))?;
            let start = unpack(start, |u| u.starts(rows))?;
            let end = unpack(end, |u| u.ends(&start))?;
            Some((ids, start, end))
        };
        let decode_rest = move || {
            let value = unpack(value, |u| u.values(rows))?;
            let start_offset = unpack(start_offset, |u| u.changes::<i16>(rows))?;
            Some((
                value,
                unpack(source, |u| u.plain::<u32>(rows))?,
                unpack(seq, |u| u.changes::<u32>(rows))?,
                unpack(device, |u| u.plain::<u16>(rows))?,
                unpack(end_offset, |u| u.differences(&start_offset))?,
                start_offset,
                match numbers {
                    Some(numbers) => unpack(numbers, |u| u.plain::<u32>(rows))?,
                    None => Vec::new(),
                },
            ))
        };
        let (ids_and_times, rest) = crate::spread::join(
            rows >= DECODE_SPREAD_FROM,
            decode_ids_and_times,
            decode_rest,
        );
        let (id, start, end) = ids_and_times?;
        let (value, source, seq, device, end_offset, start_offset, text_numbers) = rest?;
        if text_numbers.iter().any(|&n| n as usize > texts.len()) {
            return None;
        }
        let data = ColumnData {
            text_numbers,
            texts,
            start,
            // Read as none when they repeat the starts.
            end: Echo(end),
            value,
            id,
            source,
            seq,
            device,
            start_offset,
            end_offset: Echo(end_offset),
            metadata: HashMap::new(),
        };
        data.in_order().then_some(data)
    }

    /// Reads `rows` rows whose metadata is given by sample id (snapshots
    /// before version 4); `None` if `bytes` has another length or the rows
    /// are not in order.
    pub fn decode(
        bytes: &[u8],
        rows: usize,
        metadata: HashMap<u128, Box<str>>,
    ) -> Option<ColumnData> {
        if rows.checked_mul(ENCODED_ROW_BYTES) != Some(bytes.len()) {
            return None;
        }
        // The columns follow one another in this order; a large type's
        // first three and the rest are decoded at once.
        let (times_and_values, rest) = bytes.split_at(rows * (8 + 8 + 8));
        let decode_rest = || {
            let at = &mut 0usize;
            (
                take_column!(rest, at, rows, u128),
                take_column!(rest, at, rows, u32),
                take_column!(rest, at, rows, u32),
                take_column!(rest, at, rows, u16),
                take_column!(rest, at, rows, i16),
                take_column!(rest, at, rows, i16),
            )
        };
        let decode_first = || {
            let at = &mut 0usize;
            (
                take_column!(times_and_values, at, rows, i64),
                take_column!(times_and_values, at, rows, i64),
                take_column!(times_and_values, at, rows, f64),
            )
        };
        let ((id, source, seq, device, start_offset, end_offset), (start, end, value)) =
            crate::spread::join(rows >= DECODE_SPREAD_FROM, decode_rest, decode_first);
        let data = ColumnData {
            text_numbers: Vec::new(),
            texts: Vec::new(),
            end: Echo::from_column(end, &start),
            start,
            value,
            id,
            source,
            seq,
            device,
            end_offset: Echo::from_column(end_offset, &start_offset),
            start_offset,
            metadata,
        };
        data.in_order().then_some(data)
    }

    /// Whether the rows are sorted by `(start, id)`, none twice.
    fn in_order(&self) -> bool {
        self.start
            .windows(2)
            .zip(self.id.windows(2))
            .all(|(s, i)| (s[0], i[0]) < (s[1], i[1]))
    }

    /// Keeps the rows `keep(id, source)` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(u128, u32) -> bool) {
        let mask: Vec<bool> = self
            .id
            .iter()
            .zip(&self.source)
            .map(|(&id, &source)| keep(id, source))
            .collect();
        if mask.iter().all(|&k| k) {
            return;
        }
        fn apply<T: Copy>(col: &mut Vec<T>, mask: &[bool]) {
            let mut i = 0;
            col.retain(|_| {
                i += 1;
                mask[i - 1]
            });
        }
        for (id, keep) in self.id.iter().zip(&mask) {
            if !keep {
                if let Some(mut m) = self.metadata.remove(id) {
                    m.zeroize();
                }
            }
        }
        apply(&mut self.start, &mask);
        apply(&mut self.end.0, &mask);
        apply(&mut self.value, &mask);
        apply(&mut self.id, &mask);
        apply(&mut self.source, &mask);
        apply(&mut self.seq, &mask);
        apply(&mut self.device, &mask);
        apply(&mut self.start_offset, &mask);
        apply(&mut self.end_offset.0, &mask);
        if !self.text_numbers.is_empty() {
            apply(&mut self.text_numbers, &mask);
        }
    }

    /// Row `r`'s metadata, taken out of the map or copied from the texts.
    fn take_metadata(&mut self, r: usize) -> Option<Box<str>> {
        match self.text_numbers.get(r) {
            Some(&n) => (n as usize).checked_sub(1).map(|i| self.texts[i].clone()),
            None => self.metadata.remove(&self.id[r]),
        }
    }

    fn row(&mut self, r: usize) -> Row {
        Row {
            id: self.id[r],
            start_us: self.start[r],
            start_offset_min: self.start_offset[r],
            end_us: self.end.get(r, self.start[r]),
            end_offset_min: self.end_offset.get(r, self.start_offset[r]),
            value: self.value[r],
            source: self.source[r],
            device: slot_of(self.device[r]),
            derived: derived_of(self.device[r]),
            seq: self.seq[r],
            metadata: self.take_metadata(r),
        }
    }

    /// Overwrites every column with zeros.
    pub fn wipe(&mut self) {
        self.start.zeroize();
        self.end.0.zeroize();
        self.value.zeroize();
        self.id.zeroize();
        self.source.zeroize();
        self.seq.zeroize();
        self.device.zeroize();
        self.start_offset.zeroize();
        self.end_offset.0.zeroize();
        for (_, mut m) in self.metadata.drain() {
            m.zeroize();
        }
        self.text_numbers.zeroize();
        for text in &mut self.texts {
            text.zeroize();
        }
        self.texts.clear();
    }
}

impl TypeColumns {
    /// Appends the live rows to `out` as little-endian columns (see
    /// [`ColumnData::decode_pooled`]), then, if any of them carries
    /// metadata, each row's text as a number into a list of the distinct
    /// texts (1-based, 0 for none); returns how many rows, and that list.
    /// The form of snapshots before version 5, which still open: only tests
    /// write it.
    #[cfg(test)]
    pub(crate) fn encode_live(&self, out: &mut impl ByteSink) -> (usize, Vec<&str>) {
        put_column!(out, self.start, self.live_rows());
        put_column!(out, self.ends(), self.live_rows());
        put_column!(out, self.value, self.live_rows());
        put_column!(out, self.id, self.live_rows());
        put_column!(out, self.source, self.live_rows());
        put_column!(out, self.seq, self.live_rows());
        let slots: Vec<u16> = self.device.iter().map(|&cell| slot_of(cell)).collect();
        put_column!(out, slots, self.live_rows());
        put_column!(out, self.start_offset, self.live_rows());
        put_column!(
            out,
            self.end_offset.of(&self.start_offset),
            self.live_rows()
        );
        let mut texts = Vec::new();
        if self.live_metadata() {
            for number in self.text_numbers(&mut texts) {
                out.put(&number.to_le_bytes());
            }
        }
        (self.live_len(), texts)
    }

    /// Appends the live rows to `out` packed (see [`super::packed`]): each
    /// column in turn, then each row's metadata number when any row has
    /// metadata (as in [`TypeColumns::encode_live`]); returns how many rows,
    /// the distinct texts, and each column's length in bytes.
    /// Packs the live rows into `out`: (rows, their distinct metadata
    /// texts, each column's length). With `marks`, each device cell goes
    /// whole, the mark of a derived id and its bits with the slot; without,
    /// the slot alone (snapshots before version 6).
    pub(crate) fn encode_packed<S: ByteSink>(
        &self,
        out: &mut S,
        marks: bool,
    ) -> (usize, Vec<&str>, Vec<u64>) {
        let rows = || self.live_rows();
        let cell = |r: usize| match marks {
            true => self.device[r],
            false => slot_of(self.device[r]),
        };
        let mut lengths = vec![
            Packer::new(out).starts(rows().map(|r| self.start[r])),
            Packer::new(out).ends(rows().map(|r| (self.start[r], self.ends()[r]))),
            Packer::new(out).values(rows().map(|r| self.value[r])),
            Packer::new(out).ids(rows().map(|r| self.id[r])),
            Packer::new(out).plain(rows().map(|r| u64::from(self.source[r]))),
            Packer::new(out).changes(rows().map(|r| i64::from(self.seq[r]))),
            Packer::new(out).plain(rows().map(|r| u64::from(cell(r)))),
            Packer::new(out).changes(rows().map(|r| i64::from(self.start_offset[r]))),
            Packer::new(out).differences(rows().map(|r| {
                (
                    i64::from(self.start_offset[r]),
                    i64::from(self.end_offset.get(r, self.start_offset[r])),
                )
            })),
        ];
        let mut texts = Vec::new();
        if self.live_metadata() {
            lengths.push(Packer::new(out).plain(self.text_numbers(&mut texts).map(u64::from)));
        }
        (self.live_len(), texts, lengths)
    }

    /// Whether any live row has metadata: only then are the rows' numbers
    /// into their distinct texts written.
    fn live_metadata(&self) -> bool {
        !self.metadata.is_empty() && self.live_rows().any(|r| self.metadata[r] != 0)
    }

    /// Each live row's metadata as a number into `texts`, which is given
    /// each distinct text as it is first met (1-based, 0 for none).
    /// Numbered as they are written rather than listed first: a list would
    /// hold 4 bytes a row beside the columns while a snapshot is taken.
    fn text_numbers<'s, 't>(
        &'s self,
        texts: &'t mut Vec<&'s str>,
    ) -> impl Iterator<Item = u32> + use<'s, 't> {
        // Pool slots to their place in `texts`.
        let mut places: HashMap<u32, u32> = HashMap::new();
        self.live_rows().map(move |r| match self.metadata[r] {
            0 => 0,
            slot => *places.entry(slot).or_insert_with(|| {
                texts.push(self.texts.get(slot).unwrap_or_default());
                texts.len() as u32
            }),
        })
    }

    /// Builds columns from a snapshot's sorted rows and rows added after it
    /// (in any order), as [`TypeColumns::from_rows`] would from all of them.
    pub(crate) fn from_base(mut base: ColumnData, mut tail: Vec<Row>) -> TypeColumns {
        let last_seq = base
            .seq
            .iter()
            .copied()
            .chain(tail.iter().map(|r| r.seq))
            .max()
            .unwrap_or(0);
        let mut cols = if tail.is_empty() {
            // The columns are taken over as they are.
            let mut cols = TypeColumns {
                deleted: vec![0; base.len().div_ceil(64)],
                metadata: match base.metadata.is_empty() {
                    true => Vec::new(),
                    false => vec![0; base.len()],
                },
                start: std::mem::take(&mut base.start),
                end: std::mem::take(&mut base.end),
                value: std::mem::take(&mut base.value),
                id: std::mem::take(&mut base.id),
                source: std::mem::take(&mut base.source),
                seq: std::mem::take(&mut base.seq),
                device: std::mem::take(&mut base.device),
                start_offset: std::mem::take(&mut base.start_offset),
                end_offset: std::mem::take(&mut base.end_offset),
                ..TypeColumns::default()
            };
            (cols.by_source, cols.longest_us) =
                origins(&cols.source, &cols.start, cols.end.of(&cols.start));
            cols
        } else {
            tail.sort_unstable_by_key(Row::key);
            let mut cols = TypeColumns::default();
            cols.reserve_exact(base.len() + tail.len());
            let mut tail = tail.into_iter().peekable();
            for r in 0..base.len() {
                let key = (base.start[r], base.id[r]);
                while let Some(row) = tail.next_if(|t| t.key() < key) {
                    cols.push(row);
                }
                let row = base.row(r);
                cols.push(row);
            }
            for row in tail {
                cols.push(row);
            }
            base.wipe();
            cols.forget_index();
            cols
        };
        cols.last_seq = last_seq;
        // Metadata taken over with the columns: by number, each text
        // pooled once for all its rows, or by id. None is left when the
        // rows were merged with a tail.
        if !base.text_numbers.is_empty() {
            let mut holders = vec![0u32; base.texts.len()];
            for &n in base.text_numbers.iter().filter(|&&n| n > 0) {
                holders[n as usize - 1] += 1;
            }
            let slots: Vec<u32> = base
                .texts
                .iter()
                .zip(&holders)
                .map(|(text, &held)| match held {
                    0 => 0,
                    held => cols.texts.intern_held(text, held),
                })
                .collect();
            cols.metadata = base
                .text_numbers
                .iter()
                .map(|&n| (n as usize).checked_sub(1).map_or(0, |i| slots[i]))
                .collect();
            base.wipe();
        }
        for (id, mut text) in base.metadata.drain() {
            if let Some(r) = cols.find(id) {
                cols.metadata[r] = cols.texts.intern(&text);
            }
            text.zeroize();
        }
        cols
    }
}

/// Each source's rows, and an upper bound on any row's length, of columns
/// `source`, `start` and `end`.
fn origins(source: &[u32], start: &[i64], end: &[i64]) -> (HashMap<u32, SourceRows>, i64) {
    let mut by_source: HashMap<u32, SourceRows> = HashMap::new();
    let mut current: Option<(u32, &mut SourceRows)> = None;
    for (r, &source) in source.iter().enumerate() {
        match &mut current {
            Some((s, rows)) if *s == source => rows.add(r),
            _ => {
                let rows = by_source.entry(source).or_default();
                rows.add(r);
                current = Some((source, rows));
            }
        }
    }
    let longest_us = start
        .iter()
        .zip(end)
        .map(|(&s, &e)| e.saturating_sub(s))
        .max()
        .unwrap_or(0)
        .max(0);
    (by_source, longest_us)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`ColumnData::decode_packed`] of columns that lie one after another
    /// in `bytes`, `lengths` long, as a snapshot holds them: `None` too if
    /// the lengths do not cover the bytes exactly.
    fn decode_packed_bytes(
        bytes: &[u8],
        rows: usize,
        lengths: &[u64],
        texts: Vec<Box<str>>,
    ) -> Option<ColumnData> {
        let mut rest = bytes;
        let mut columns = Vec::new();
        for &length in lengths {
            let length = usize::try_from(length).ok().filter(|&l| l <= rest.len())?;
            let (column, after) = rest.split_at(length);
            columns.push(Zeroizing::new(column.to_vec()));
            rest = after;
        }
        if !rest.is_empty() {
            return None;
        }
        ColumnData::decode_packed(columns, rows, texts)
    }

    fn row(id: u128, start: i64) -> Row {
        Row {
            id,
            start_us: start,
            start_offset_min: 0,
            end_us: start + 10,
            end_offset_min: 0,
            value: id as f64,
            source: 0,
            device: 0,
            derived: None,
            seq: 1,
            // Every third row, with texts that repeat.
            metadata: id
                .is_multiple_of(3)
                .then(|| format!("{{\"n\":{}}}", id % 5).into()),
        }
    }

    fn starts(c: &TypeColumns) -> Vec<(i64, u128)> {
        (0..c.len()).map(|r| (c.start[r], c.id[r])).collect()
    }

    #[test]
    fn live_origins_follow_every_change() {
        let at = |id, source, device| Row {
            source,
            device,
            ..row(id, id as i64 * 100)
        };
        let sorted = |c: &TypeColumns| {
            let mut o = c.live_origins().to_vec();
            o.sort_unstable();
            o
        };
        let mut c = TypeColumns::default();
        c.insert(vec![at(1, 0, 0), at(2, 1, 0), at(3, 0, 0), at(4, 1, 2)]);
        assert_eq!(sorted(&c), [(0, 0), (1, 0), (1, 2)]);
        // Kept while nothing changes: the same answer, not walked again.
        assert!(std::sync::Arc::ptr_eq(&c.live_origins(), &c.live_origins()));
        assert!(c.delete(2));
        assert_eq!(sorted(&c), [(0, 0), (1, 2)], "the only row of (1, 0) went");
        c.insert(vec![at(5, 2, 1)]);
        assert_eq!(sorted(&c), [(0, 0), (1, 2), (2, 1)]);
        c.wipe();
        assert!(sorted(&c).is_empty());
    }

    /// Rows carrying the same metadata share one copy of it; a type without
    /// any pays nothing for the column, and deletion lets a text go.
    #[test]
    fn metadata_is_kept_once_per_distinct_text() {
        let meta =
            r#"{"sourceVersion":"17.1","deviceHardware":"Watch6,1","deviceSoftware":"10.1"}"#;
        let with = |id: u128| Row {
            metadata: Some(meta.into()),
            ..row(id, id as i64)
        };
        let mut plain = TypeColumns::default();
        plain.insert(
            (1..=10_000u128)
                .map(|id| Row {
                    metadata: None,
                    ..row(id, id as i64)
                })
                .collect(),
        );
        let mut shared = TypeColumns::default();
        shared.insert((1..=10_000u128).map(with).collect());
        assert_eq!(shared.texts.len(), 1);
        assert!(plain.metadata.is_empty());
        let extra = shared.memory_bytes() - plain.memory_bytes();
        assert!(
            extra <= 10_000 * 4 * 2 + 1024,
            "{extra} bytes for the metadata of 10,000 rows"
        );
        assert_eq!(shared.row(5000).metadata.as_deref(), Some(meta));
        // A back-fill moves rows with their metadata.
        shared.insert(vec![Row {
            metadata: Some("{\"x\":1}".into()),
            ..row(20_000, 0)
        }]);
        assert_eq!(shared.row(0).metadata.as_deref(), Some("{\"x\":1}"));
        assert_eq!(shared.row(1).metadata.as_deref(), Some(meta));
        assert!(shared.delete(20_000));
        assert_eq!(shared.row(0).metadata, None);
        assert_eq!(shared.texts.len(), 1, "the deleted row's text is gone");
        // The first row with metadata may come after many without.
        plain.insert(vec![with(10_001)]);
        assert_eq!(plain.row(plain.len() - 1).metadata.as_deref(), Some(meta));
        assert_eq!(plain.row(0).metadata, None);
        // Written once, with a number per row; read back the same.
        let mut encoded = Vec::new();
        let (n, texts) = plain.encode_live(&mut encoded);
        assert_eq!((n, &texts[..]), (10_001, &[meta][..]));
        assert_eq!(encoded.len(), n * (ENCODED_ROW_BYTES + 4));
        let texts = texts.into_iter().map(Box::from).collect();
        let data = ColumnData::decode_pooled(&encoded, n, texts).expect("decodes");
        let back = TypeColumns::from_base(data, Vec::new());
        assert_eq!(back.texts.len(), 1);
        assert!((0..n).all(|r| back.row(r) == plain.row(r)));
        // A number naming no text is refused.
        let mut bad = encoded.clone();
        let last = bad.len() - 4;
        bad[last..].copy_from_slice(&2u32.to_le_bytes());
        assert!(ColumnData::decode_pooled(&bad, n, vec![meta.into()]).is_none());
    }

    #[test]
    fn out_of_order_inserts_stay_sorted_and_indexed() {
        let mut c = TypeColumns::default();
        c.insert(vec![row(1, 100), row(2, 200)]);
        c.insert(vec![row(3, 300)]);
        assert!(c.delete(2));
        c.insert(vec![row(4, 150), row(5, 50), row(6, 200)]);
        assert_eq!(
            starts(&c),
            vec![(50, 5), (100, 1), (150, 4), (200, 2), (200, 6), (300, 3)]
        );
        for id in 1..=6u128 {
            let r = c.find(id).unwrap();
            assert_eq!(c.row(r).id, id);
            assert_eq!(c.row(r).metadata.is_some(), id.is_multiple_of(3) && id != 2);
        }
        assert!(c.is_deleted(c.find(2).unwrap()));
        assert_eq!(c.live_len(), 5);
        assert!(c.find(99).is_none());
        assert_eq!(c.after(200, 2), 4);
        assert_eq!(c.after(200, 6), 5);
        assert_eq!(c.start_range(100, 201), 1..5);
        let vals: Vec<f64> = c.values(0..c.len()).collect();
        assert_eq!(vals, vec![5.0, 1.0, 4.0, 6.0, 3.0]);
    }

    /// A type whose rows are all instants in one time zone holds no end
    /// column and no column of end offsets; the first row that lasts, or
    /// that ends in another zone, fills the one it needs in, wherever it
    /// lands, and every way columns are built gives each row the same end
    /// and offsets.
    #[test]
    fn ends_and_their_offsets_are_held_only_once_a_row_differs() {
        let instant = |id: u128, start: i64| Row {
            end_us: start,
            start_offset_min: 60,
            end_offset_min: 60,
            ..row(id, start)
        };
        let instants = vec![instant(1, 100), instant(2, 200), instant(3, 300)];
        let mut c = TypeColumns::default();
        c.insert(instants.clone());
        assert_eq!(c.end.0.capacity(), 0);
        assert_eq!(c.end_offset.0.capacity(), 0);
        assert_eq!(c.ends(), c.starts());
        assert_eq!(c.longest_us(), 0);
        // A lasting row lands between them, then an instant before all.
        let lasting = Row {
            start_offset_min: 60,
            end_offset_min: 60,
            ..row(4, 150)
        };
        c.insert(vec![lasting.clone()]);
        c.insert(vec![instant(5, 50)]);
        assert_eq!(c.ends(), &[50, 100, 160, 200, 300]);
        assert_eq!(c.longest_us(), 10);
        assert_eq!(c.row(c.find(4).unwrap()), lasting);
        assert_eq!(c.end_offset.0.capacity(), 0);
        // One that ends in another zone.
        let crossing = Row {
            end_offset_min: 120,
            ..instant(6, 250)
        };
        c.insert(vec![crossing.clone()]);
        assert_eq!(c.end_offset.0, [60, 60, 60, 60, 120, 60]);
        assert_eq!(c.row(c.find(6).unwrap()), crossing);
        assert_eq!(c.row(c.find(3).unwrap()), instants[2]);

        // Dropped at replay, the rows that differed leave no column.
        let dropped: hashbrown::HashSet<u128> = [4, 6].into_iter().collect();
        let replayed = [&instants[..], &[lasting.clone(), crossing.clone()]].concat();
        let replayed = TypeColumns::from_rows(replayed, &dropped);
        assert_eq!(replayed.end.0.capacity(), 0);
        assert_eq!(replayed.end_offset.0.capacity(), 0);
        assert_eq!(replayed.ends(), replayed.starts());

        let all = [&instants[..], &[lasting, instant(5, 50), crossing]].concat();
        for (rows, lasts, crosses) in [(instants, false, false), (all, true, true)] {
            let built = TypeColumns::from_rows(rows.clone(), &Default::default());
            assert_eq!(built.end.0.is_empty(), !lasts);
            assert_eq!(built.end_offset.0.is_empty(), !crosses);
            let mut packed = Vec::new();
            let (n, texts, lengths) = built.encode_packed(&mut packed, true);
            let texts = texts.into_iter().map(Box::from).collect();
            let data = decode_packed_bytes(&packed, n, &lengths, texts).expect("decodes");
            let opened = TypeColumns::from_base(data, Vec::new());
            assert_eq!(opened.end.0.is_empty(), !lasts);
            assert_eq!(opened.end_offset.0.is_empty(), !crosses);
            // Rows after a snapshot's, merged with them.
            let (base, tail) = rows.split_at(2);
            let base = TypeColumns::from_rows(base.to_vec(), &Default::default());
            let mut packed = Vec::new();
            let (n, texts, lengths) = base.encode_packed(&mut packed, true);
            let texts = texts.into_iter().map(Box::from).collect();
            let data = decode_packed_bytes(&packed, n, &lengths, texts).expect("decodes");
            let merged = TypeColumns::from_base(data, tail.to_vec());
            for cols in [&opened, &merged] {
                assert_eq!(cols.ends(), built.ends());
                assert_eq!(cols.longest_us(), built.longest_us());
                for r in 0..built.len() {
                    assert_eq!(cols.row(r), built.row(r));
                }
            }
            if lasts {
                assert_eq!(built.ends(), c.ends());
                for r in 0..c.len() {
                    assert_eq!(built.row(r), c.row(r));
                }
            }
        }
    }

    /// A snapshot's rows and rows added after it build the same columns as
    /// all the rows at once, whether the later rows interleave or not.
    #[test]
    fn base_and_tail_build_what_all_rows_do() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for tail_len in [0usize, 1, 7, 40] {
            let all: Vec<Row> = (0..200u128)
                .map(|id| Row {
                    source: rng.gen_range(0..3),
                    seq: id as u32,
                    ..row(id + 1, rng.gen_range(0..500))
                })
                .collect();
            let (base_rows, tail) = all.split_at(all.len() - tail_len);
            let mut encoded = Vec::new();
            let base = TypeColumns::from_rows(base_rows.to_vec(), &Default::default());
            let (n, texts) = base.encode_live(&mut encoded);
            assert!(texts.len() <= 5, "each distinct text once");
            let texts = texts.into_iter().map(Box::from).collect();
            // And as snapshots before version 4 have it: by sample id.
            let by_id: HashMap<u128, Box<str>> = base_rows
                .iter()
                .filter_map(|r| Some((r.id, r.metadata.clone()?)))
                .collect();
            let columns_only = &encoded[..n * ENCODED_ROW_BYTES];
            let mut packed = Vec::new();
            let (packed_n, packed_texts, lengths) = base.encode_packed(&mut packed, true);
            assert_eq!(packed_n, n);
            assert!(packed.len() < encoded.len());
            let packed_texts = packed_texts.into_iter().map(Box::from).collect();
            for data in [
                decode_packed_bytes(&packed, n, &lengths, packed_texts).expect("decodes"),
                ColumnData::decode_pooled(&encoded, n, texts).expect("decodes"),
                ColumnData::decode(columns_only, n, by_id).expect("decodes"),
            ] {
                let merged = TypeColumns::from_base(data, tail.to_vec());
                let direct = TypeColumns::from_rows(all.clone(), &Default::default());
                assert_eq!(starts(&merged), starts(&direct));
                assert_eq!(merged.last_seq(), direct.last_seq());
                assert_eq!(merged.longest_us(), direct.longest_us());
                for r in 0..direct.len() {
                    assert_eq!(merged.row(r), direct.row(r));
                    assert_eq!(merged.find(direct.id_of(r)), Some(r));
                }
                assert_eq!(merged.texts.len(), direct.texts.len());
                for source in 0..3 {
                    let (a, b) = (merged.only_source(source), direct.only_source(source));
                    assert_eq!(starts(&a), starts(&b));
                }
            }
        }
        assert!(ColumnData::decode(&[0; ENCODED_ROW_BYTES + 1], 1, HashMap::new()).is_none());
    }

    /// Packed columns refuse lengths that do not fill the bytes, a number
    /// naming no text, and rows out of order; deleted rows are left out.
    #[test]
    fn packed_columns_are_checked_as_they_are_read() {
        let mut c = TypeColumns::default();
        // Rows 1 and 2 (ids 2 and 3) share a start.
        c.insert(
            (1..=200u128)
                .map(|id| row(id, (id / 2) as i64 * 10))
                .collect(),
        );
        assert!(c.delete(100));
        let mut bytes = Vec::new();
        let (n, texts, lengths) = c.encode_packed(&mut bytes, true);
        assert_eq!(n, 199);
        let texts: Vec<Box<str>> = texts.into_iter().map(Box::from).collect();
        let data = decode_packed_bytes(&bytes, n, &lengths, texts.clone()).unwrap();
        let back = TypeColumns::from_base(data, Vec::new());
        assert_eq!(back.len(), 199);
        assert!(back.find(100).is_none());
        for r in 0..back.len() {
            assert_eq!(back.row(r), c.row(c.find(back.id_of(r)).unwrap()));
        }
        // Lengths that leave bytes over, or claim more than there are.
        let mut short = lengths.clone();
        short[0] -= 1;
        assert!(decode_packed_bytes(&bytes, n, &short, texts.clone()).is_none());
        // A column cut short, its last byte read as the next one's first.
        let mut moved = lengths.clone();
        moved[0] -= 1;
        moved[1] += 1;
        assert!(decode_packed_bytes(&bytes, n, &moved, texts.clone()).is_none());
        let mut long = lengths.clone();
        long[9] += 1;
        assert!(decode_packed_bytes(&bytes, n, &long, texts.clone()).is_none());
        assert!(decode_packed_bytes(&bytes, n, &lengths[..9], texts.clone()).is_none());
        // More rows than the bytes could hold.
        assert!(decode_packed_bytes(&bytes, usize::MAX, &lengths, texts.clone()).is_none());
        assert!(decode_packed_bytes(&bytes, n + 1, &lengths, texts.clone()).is_none());
        // A metadata number past the texts.
        assert!(
            decode_packed_bytes(&bytes, n, &lengths, texts[..texts.len() - 1].to_vec()).is_none()
        );
        // The ids of rows 1 and 2 swapped: rows out of order.
        let ids_at = (lengths[0] + lengths[1] + lengths[2]) as usize;
        let mut swapped = bytes.clone();
        swapped[ids_at + 16..ids_at + 48].rotate_left(16);
        assert!(decode_packed_bytes(&swapped, n, &lengths, texts).is_none());
    }

    #[test]
    fn from_rows_sorts_and_drops() {
        let dropped: hashbrown::HashSet<u128> = [2u128].into_iter().collect();
        let c = TypeColumns::from_rows(vec![row(3, 30), row(2, 20), row(1, 10)], &dropped);
        assert_eq!(starts(&c), vec![(10, 1), (30, 3)]);
        assert_eq!(c.find(3), Some(1));
    }

    /// Large enough that the index is filled in bucket order, from a
    /// snapshot's columns and from rows: every id finds its row, one that
    /// was never added finds none, and later inserts and deletes still work.
    #[test]
    fn an_index_filled_in_bucket_order_finds_every_row() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let n = INDEX_SORTED_FROM * 3 + 17;
        let rows: Vec<Row> = (0..n as i64).map(|i| row(rng.gen(), i)).collect();
        let ids: Vec<u128> = rows.iter().map(|r| r.id).collect();
        let from_rows = TypeColumns::from_rows(rows, &hashbrown::HashSet::new());
        // Instants: their ends and end offsets are left to repeat the
        // starts'.
        let mut base = ColumnData::default();
        for &id in &ids {
            base.start.push(base.start.len() as i64);
            base.value.push(1.0);
            base.id.push(id);
            base.source.push((id % 3) as u32);
            base.seq.push(1);
            base.device.push(0);
            base.start_offset.push(0);
        }
        let mut from_base = TypeColumns::from_base(base, Vec::new());
        let mut packed = Vec::new();
        let (live, texts, lengths) = from_rows.encode_packed(&mut packed, true);
        let texts = texts.into_iter().map(Box::from).collect();
        let decoded = decode_packed_bytes(&packed, live, &lengths, texts).expect("decodes");
        let from_packed = TypeColumns::from_base(decoded, Vec::new());
        for c in [&from_rows, &from_base, &from_packed] {
            // Built on first use, not when the columns are made.
            assert!(c.index.get().is_none());
            assert_eq!(c.len(), n);
            for (r, &id) in ids.iter().enumerate() {
                assert_eq!(c.find(id), Some(r));
            }
            assert_eq!(c.find(ids[0] ^ 1), None);
        }
        let own = from_base.only_source(1);
        assert_eq!(own.len(), ids.iter().filter(|&&i| i % 3 == 1).count());
        assert!(own.id.iter().all(|&id| own.find(id).is_some()));
        from_base.insert(vec![row(7, n as i64 + 5)]);
        assert_eq!(from_base.find(7), Some(n));
        assert_eq!(from_base.find(ids[n - 1]), Some(n - 1));
    }

    /// Rows collected in order and out of it, with some dropped: the
    /// columns hold exactly the rows kept, sorted, each with its metadata,
    /// and the pool only the texts kept rows hold.
    #[test]
    fn collected_rows_make_sorted_columns_of_the_rows_kept() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let n = (1 << 17) + 77;
        let mut in_order: Vec<Row> = (0..n as i64).map(|i| row(rng.gen(), i)).collect();
        // Rows without metadata come first, so the metadata column starts
        // late; the one row that says `{"n":7}` is dropped: its text goes
        // too.
        for row in &mut in_order[..20] {
            row.metadata = None;
        }
        in_order[30].metadata = Some("{\"n\":7}".into());
        let mut shuffled = in_order.clone();
        shuffled.reverse();
        shuffled.swap(5, n / 2);
        let dropped: hashbrown::HashSet<u128> = in_order.iter().step_by(5).map(|r| r.id).collect();
        assert!(dropped.contains(&in_order[30].id));
        let kept: Vec<Row> = in_order
            .iter()
            .filter(|r| !dropped.contains(&r.id))
            .cloned()
            .collect();
        let texts: std::collections::HashSet<&str> =
            kept.iter().filter_map(|r| r.metadata.as_deref()).collect();
        for (rows, came_in_order) in [(in_order.clone(), true), (shuffled, false)] {
            let mut collected = RowColumns::default();
            collected.extend(rows.iter().cloned());
            assert_eq!(collected.in_order, came_in_order);
            assert_eq!(collected.metadata.len(), n);
            assert!(
                RowColumns::from(rows.clone()).into_vec() == rows,
                "rows differ"
            );
            let c = TypeColumns::from_rows(collected, &dropped);
            assert_eq!(c.len(), n - dropped.len());
            assert_eq!(c.texts.len(), texts.len());
            for r in 0..c.len() {
                assert_eq!(c.find(c.id[r]), Some(r));
            }
            assert!(dropped.iter().all(|&id| c.find(id).is_none()));
            let all: Vec<Row> = (0..c.len()).map(|r| c.row(r)).collect();
            assert!(all == kept, "rows differ");
            assert!(c.metadata.iter().any(|&slot| slot != 0));
            assert_eq!(c.last_seq(), 1);
        }
        // A few rows out of order, and rows whose metadata is all
        // dropped: sorted, and no metadata column.
        let rows = vec![row(4, 30), row(3, 25), row(5, 20), row(1, 10)];
        assert!(rows[1].metadata.is_some());
        let dropped = [3u128].into_iter().collect();
        let c = TypeColumns::from_rows(rows, &dropped);
        assert_eq!(starts(&c), vec![(10, 1), (20, 5), (30, 4)]);
        assert!(c.metadata.is_empty());
    }

    /// Rows dropped from decoded columns (deleted after the snapshot) are
    /// not found at all, and the rows that stay are found at their new
    /// places.
    #[test]
    fn rows_dropped_after_decoding_are_not_found() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let n = INDEX_SORTED_FROM + 101;
        let rows: Vec<Row> = (0..n as i64).map(|i| row(rng.gen(), i)).collect();
        let cols = TypeColumns::from_rows(rows, &hashbrown::HashSet::new());
        let mut packed = Vec::new();
        let (live, texts, lengths) = cols.encode_packed(&mut packed, true);
        let texts: Vec<Box<str>> = texts.into_iter().map(Box::from).collect();
        let ids = cols.id.clone();
        let dropped: hashbrown::HashSet<u128> = ids.iter().copied().step_by(3).collect();
        let kept: Vec<u128> = ids.into_iter().filter(|id| !dropped.contains(id)).collect();
        for tail in [Vec::new(), vec![row(3, -1)]] {
            let mut decoded =
                decode_packed_bytes(&packed, live, &lengths, texts.clone()).expect("decodes");
            decoded.retain(|id, _| !dropped.contains(&id));
            let first = usize::from(!tail.is_empty());
            let c = TypeColumns::from_base(decoded, tail);
            assert_eq!(c.len(), kept.len() + first);
            for (r, &id) in kept.iter().enumerate() {
                assert_eq!(c.find(id), Some(r + first));
            }
            for &id in &dropped {
                assert_eq!(c.find(id), None);
            }
        }
    }

    /// Rows appended, back-filled and cut while the id index is not built
    /// are in it once it is, and those after it too.
    #[test]
    fn rows_that_move_before_the_index_is_built_are_found_once_it_is() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let n = INDEX_SORTED_FROM + 5;
        let rows: Vec<Row> = (0..n as i64).map(|i| row(rng.gen(), i * 10)).collect();
        let mut c = TypeColumns::from_rows(rows, &hashbrown::HashSet::new());
        // Appended, then back-filled (which cuts and re-adds the tail).
        c.insert(vec![row(1, n as i64 * 10 + 1)]);
        c.insert(vec![row(2, 15), row(3, 25)]);
        assert!(c.index.get().is_none());
        let found = |c: &TypeColumns| (0..c.len()).all(|r| c.find(c.id[r]) == Some(r));
        assert_eq!(c.len(), n + 3);
        assert!(found(&c));
        assert!(c.index.get().is_some());
        c.insert(vec![row(4, 5), row(5, n as i64 * 10 + 2)]);
        assert!(found(&c));
        assert_eq!(c.find(6), None);
    }

    /// Random back-fills and deletions against a sorted reference: order,
    /// index, deleted flags and metadata all survive the tail moves.
    #[test]
    fn random_back_fills_match_a_sorted_reference() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut c = TypeColumns::default();
        let mut reference: Vec<(i64, u128)> = Vec::new();
        let mut deleted = std::collections::HashSet::new();
        let mut next_id = 1u128;
        for round in 0..80 {
            let batch: Vec<Row> = (0..rng.gen_range(1..40))
                .map(|_| {
                    next_id += 1;
                    row(next_id, rng.gen_range(0..2000))
                })
                .collect();
            reference.extend(batch.iter().map(Row::key));
            c.insert(batch);
            if round % 3 == 0 {
                let victim = reference[rng.gen_range(0..reference.len())].1;
                assert_eq!(c.delete(victim), deleted.insert(victim));
            }
        }
        reference.sort();
        assert_eq!(starts(&c), reference);
        for &(_, id) in &reference {
            let r = c.find(id).expect("indexed");
            assert_eq!(c.row(r).id, id);
            assert_eq!(c.is_deleted(r), deleted.contains(&id));
            let expect_meta = id.is_multiple_of(3) && !deleted.contains(&id);
            assert_eq!(c.row(r).metadata.is_some(), expect_meta, "{id}");
        }
        assert_eq!(c.live_len(), reference.len() - deleted.len());
    }
}
