//! The compact form of a type's columns in a snapshot (format 5 on): each
//! column on its own, as variable-length integers of what changes from one
//! row to the next, so that a regular series (a reading a minute from one
//! device) costs a few bytes a row beside its 16-byte id.
//!
//! - start times: the change of the gap between rows ("delta of delta"),
//!   which is zero for evenly spaced rows;
//! - end times: the change of the duration (end − start) from the row
//!   before;
//! - values: the bits that differ from the row before, without their
//!   leading and trailing zero bytes (a control byte says how many), so an
//!   unchanged value is one byte and a whole-number reading two or three;
//! - ids: 16 bytes each, as they are;
//! - sources, devices, metadata numbers: their value;
//! - sequence numbers and start offsets: the change from the row before;
//!   end offsets: the difference from the row's start offset.
//!
//! Integers are LEB128 (seven bits a byte), signed ones zigzag-mapped
//! first. Every reader refuses bytes that end early, run on, overflow their
//! column's type or leave bytes over: a snapshot is authenticated before it
//! is decoded, so such bytes mean a bug, never data to guess at.

use zeroize::Zeroizing;

use super::columns::{ByteSink, Echo};

/// Bytes gathered before they are handed to the sink (whose `put` costs
/// more than a push).
const BUFFER: usize = 16 << 10;

/// Writes one column's values to a sink, counting the bytes.
pub(crate) struct Packer<'s, S: ByteSink> {
    sink: &'s mut S,
    buffer: Zeroizing<Vec<u8>>,
    written: u64,
}

impl<'s, S: ByteSink> Packer<'s, S> {
    pub fn new(sink: &'s mut S) -> Self {
        Packer {
            sink,
            buffer: Zeroizing::new(Vec::with_capacity(BUFFER + 32)),
            written: 0,
        }
    }

    fn room(&mut self) {
        if self.buffer.len() >= BUFFER {
            self.sink.put(&self.buffer);
            self.written += self.buffer.len() as u64;
            // Overwritten by the next bytes: the buffer is wiped once, when
            // it is dropped.
            self.buffer.clear();
        }
    }

    fn unsigned(&mut self, mut v: u64) {
        self.room();
        while v >= 0x80 {
            self.buffer.push(v as u8 | 0x80);
            v >>= 7;
        }
        self.buffer.push(v as u8);
    }

    fn signed(&mut self, v: i64) {
        self.unsigned(((v << 1) ^ (v >> 63)) as u64);
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.room();
        self.buffer.extend_from_slice(bytes);
    }

    /// Hands over what is left; the column's length in bytes.
    pub fn finish(mut self) -> u64 {
        self.sink.put(&self.buffer);
        self.written += self.buffer.len() as u64;
        self.written
    }

    pub fn starts(mut self, starts: impl Iterator<Item = i64>) -> u64 {
        let (mut before, mut gap) = (0i64, 0i64);
        for start in starts {
            let next_gap = start.wrapping_sub(before);
            self.signed(next_gap.wrapping_sub(gap));
            (before, gap) = (start, next_gap);
        }
        self.finish()
    }

    /// `(start, end)` of each row.
    pub fn ends(mut self, rows: impl Iterator<Item = (i64, i64)>) -> u64 {
        let mut duration = 0i64;
        for (start, end) in rows {
            let next = end.wrapping_sub(start);
            self.signed(next.wrapping_sub(duration));
            duration = next;
        }
        self.finish()
    }

    pub fn values(mut self, values: impl Iterator<Item = f64>) -> u64 {
        let mut before = 0u64;
        for value in values {
            let bits = value.to_bits();
            let changed = bits ^ before;
            before = bits;
            if changed == 0 {
                self.raw(&[0x80]);
                continue;
            }
            let leading = changed.leading_zeros() / 8;
            let trailing = changed.trailing_zeros() / 8;
            let kept = (8 - leading - trailing) as usize;
            let bytes = (changed >> (trailing * 8)).to_le_bytes();
            self.raw(&[(leading << 4 | trailing) as u8]);
            self.raw(&bytes[..kept]);
        }
        self.finish()
    }

    pub fn ids(mut self, ids: impl Iterator<Item = u128>) -> u64 {
        for id in ids {
            self.raw(&id.to_le_bytes());
        }
        self.finish()
    }

    pub fn plain(mut self, values: impl Iterator<Item = u64>) -> u64 {
        for v in values {
            self.unsigned(v);
        }
        self.finish()
    }

    /// Each value as its change from the one before.
    pub fn changes(mut self, values: impl Iterator<Item = i64>) -> u64 {
        let mut before = 0i64;
        for v in values {
            self.signed(v.wrapping_sub(before));
            before = v;
        }
        self.finish()
    }

    /// `(base, value)` of each row: the value as its difference from base.
    pub fn differences(mut self, rows: impl Iterator<Item = (i64, i64)>) -> u64 {
        for (base, v) in rows {
            self.signed(v.wrapping_sub(base));
        }
        self.finish()
    }
}

/// Reads one column's values back; each reader takes exactly `rows`
/// values and answers `None` unless they fill the bytes exactly.
pub(crate) struct Unpacker<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Unpacker<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Unpacker { bytes, at: 0 }
    }

    #[inline]
    fn unsigned(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.bytes.get(self.at)?;
            self.at += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                // The tenth byte holds one bit.
                return (shift < 63 || byte <= 1).then_some(v);
            }
        }
        None
    }

    #[inline]
    fn signed(&mut self) -> Option<i64> {
        let v = self.unsigned()?;
        Some((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn done<T>(self, column: Vec<T>) -> Option<Vec<T>> {
        (self.at == self.bytes.len()).then_some(column)
    }

    pub fn starts(mut self, rows: usize) -> Option<Vec<i64>> {
        let mut out = Vec::with_capacity(rows);
        let (mut start, mut gap) = (0i64, 0i64);
        for _ in 0..rows {
            gap = gap.wrapping_add(self.signed()?);
            start = start.wrapping_add(gap);
            out.push(start);
        }
        self.done(out)
    }

    /// Each row's end, from its start; none when every row ends where it
    /// starts (as the columns hold them).
    pub fn ends(mut self, starts: &[i64]) -> Option<Vec<i64>> {
        let mut out = Echo::default();
        let mut duration = 0i64;
        for (r, &start) in starts.iter().enumerate() {
            duration = duration.wrapping_add(self.signed()?);
            out.push_within(&starts[..=r], start.wrapping_add(duration), starts.len());
        }
        self.done(out.0)
    }

    pub fn values(mut self, rows: usize) -> Option<Vec<f64>> {
        let mut out = Vec::with_capacity(rows);
        let mut bits = 0u64;
        for _ in 0..rows {
            let control = *self.bytes.get(self.at)?;
            self.at += 1;
            let (leading, trailing) = (u32::from(control >> 4), u32::from(control & 0x0f));
            if leading + trailing > 8 {
                return None;
            }
            let kept = (8 - leading - trailing) as usize;
            let part = self.bytes.get(self.at..self.at + kept)?;
            self.at += kept;
            let mut word = [0u8; 8];
            word[..kept].copy_from_slice(part);
            // `kept` is 0 exactly when nothing changed (8 leading bytes).
            if kept > 0 {
                bits ^= u64::from_le_bytes(word) << (trailing * 8);
            }
            out.push(f64::from_bits(bits));
        }
        self.done(out)
    }

    pub fn ids(self, rows: usize) -> Option<Vec<u128>> {
        if rows.checked_mul(16) != Some(self.bytes.len()) {
            return None;
        }
        Some(
            self.bytes
                .chunks_exact(16)
                .map(|c| u128::from_le_bytes(c.try_into().expect("16 bytes")))
                .collect(),
        )
    }

    pub fn plain<T: TryFrom<u64>>(mut self, rows: usize) -> Option<Vec<T>> {
        let mut out = Vec::with_capacity(rows);
        for _ in 0..rows {
            out.push(T::try_from(self.unsigned()?).ok()?);
        }
        self.done(out)
    }

    pub fn changes<T: TryFrom<i64>>(mut self, rows: usize) -> Option<Vec<T>> {
        let mut out = Vec::with_capacity(rows);
        let mut v = 0i64;
        for _ in 0..rows {
            v = v.checked_add(self.signed()?)?;
            out.push(T::try_from(v).ok()?);
        }
        self.done(out)
    }

    /// Each row's value, from the one in `bases` it differs from; none
    /// when every row's is its base (as the columns hold them).
    pub fn differences<T>(mut self, bases: &[T]) -> Option<Vec<T>>
    where
        T: Copy + PartialEq + zeroize::DefaultIsZeroes + Into<i64> + TryFrom<i64>,
    {
        let mut out = Echo::default();
        for (r, &base) in bases.iter().enumerate() {
            let v = T::try_from(base.into().checked_add(self.signed()?)?).ok()?;
            out.push_within(&bases[..=r], v, bases.len());
        }
        self.done(out.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A column as it reads back: none if it repeats `bases`.
    fn repeated_or<T: Copy + PartialEq>(bases: &[T], column: &[T]) -> Vec<T> {
        match column == bases {
            true => Vec::new(),
            false => column.to_vec(),
        }
    }

    fn packed(f: impl FnOnce(Packer<'_, Vec<u8>>) -> u64) -> Vec<u8> {
        let mut out = Vec::new();
        let written = f(Packer::new(&mut out));
        assert_eq!(written as usize, out.len());
        out
    }

    proptest! {
        #[test]
        fn every_column_reads_back(
            starts in proptest::collection::vec(any::<i64>(), 0..300),
            ends in proptest::collection::vec(any::<i64>(), 300),
            values in proptest::collection::vec(any::<u64>(), 0..300),
            ids in proptest::collection::vec(any::<u128>(), 0..50),
            small in proptest::collection::vec(any::<u32>(), 0..300),
            offsets in proptest::collection::vec(any::<i16>(), 0..300),
        ) {
            let n = starts.len();
            let bytes = packed(|p| p.starts(starts.iter().copied()));
            prop_assert_eq!(Unpacker::new(&bytes).starts(n), Some(starts.clone()));
            let ends = &ends[..n];
            let bytes = packed(|p| p.ends(starts.iter().copied().zip(ends.iter().copied())));
            prop_assert_eq!(Unpacker::new(&bytes).ends(&starts), Some(repeated_or(&starts, ends)));
            // Instants read back as no ends.
            let bytes = packed(|p| p.ends(starts.iter().map(|&s| (s, s))));
            prop_assert_eq!(Unpacker::new(&bytes).ends(&starts), Some(Vec::new()));
            // Any bits, NaNs and signed zeros included, come back as they were.
            let floats: Vec<f64> = values.iter().map(|&b| f64::from_bits(b)).collect();
            let bytes = packed(|p| p.values(floats.iter().copied()));
            let back: Vec<u64> = Unpacker::new(&bytes).values(values.len()).unwrap()
                .into_iter().map(f64::to_bits).collect();
            prop_assert_eq!(back, values.clone());
            let bytes = packed(|p| p.ids(ids.iter().copied()));
            prop_assert_eq!(Unpacker::new(&bytes).ids(ids.len()), Some(ids.clone()));
            let bytes = packed(|p| p.plain(small.iter().map(|&v| u64::from(v))));
            prop_assert_eq!(Unpacker::new(&bytes).plain::<u32>(small.len()), Some(small.clone()));
            let bytes = packed(|p| p.changes(small.iter().map(|&v| i64::from(v))));
            prop_assert_eq!(Unpacker::new(&bytes).changes::<u32>(small.len()), Some(small.clone()));
            let rev: Vec<i16> = offsets.iter().rev().copied().collect();
            let bytes = packed(|p| p.differences(
                offsets.iter().zip(&rev).map(|(&b, &v)| (i64::from(b), i64::from(v))),
            ));
            prop_assert_eq!(Unpacker::new(&bytes).differences(&offsets), Some(repeated_or(&offsets, &rev)));
            let bytes = packed(|p| p.differences(offsets.iter().map(|&b| (i64::from(b), i64::from(b)))));
            prop_assert_eq!(Unpacker::new(&bytes).differences(&offsets), Some(Vec::<i16>::new()));
            // One byte short, or one over, is refused.
            let bytes = packed(|p| p.starts(starts.iter().copied()));
            if n > 0 {
                prop_assert_eq!(Unpacker::new(&bytes[..bytes.len() - 1]).starts(n), None);
            }
            let mut over = bytes.clone();
            over.push(0);
            prop_assert_eq!(Unpacker::new(&over).starts(n), None);
        }
    }

    #[test]
    fn a_regular_series_costs_a_few_bytes_a_row() {
        let minute = 60_000_000i64;
        let n = 10_000usize;
        let starts: Vec<i64> = (0..n as i64)
            .map(|m| 1_700_000_000_000_000 + m * minute)
            .collect();
        let bytes = packed(|p| p.starts(starts.iter().copied()));
        assert!(bytes.len() < n + 16, "{} bytes", bytes.len());
        let bytes = packed(|p| p.ends(starts.iter().map(|&s| (s, s + minute))));
        assert!(bytes.len() < n + 16, "{} bytes", bytes.len());
        let values = (0..n).map(|m| (60 + m % 40) as f64);
        let bytes = packed(|p| p.values(values));
        assert!(bytes.len() <= 3 * n, "{} bytes", bytes.len());
    }

    #[test]
    fn malformed_columns_are_refused() {
        // Runs on past ten bytes; too large for the column's type.
        assert_eq!(Unpacker::new(&[0xff; 11]).plain::<u64>(1), None);
        assert_eq!(
            Unpacker::new(&[0xff, 0xff, 0xff, 0xff, 0x7f]).plain::<u16>(1),
            None
        );
        assert_eq!(Unpacker::new(&[0x80, 0x80]).plain::<u32>(1), None);
        // A control byte claiming more than eight bytes.
        assert_eq!(Unpacker::new(&[0x55, 0, 0]).values(1), None);
        // Ids that are not whole.
        assert_eq!(Unpacker::new(&[0; 17]).ids(1), None);
        // Changes that overflow: i64::MAX, then one more (zigzag-mapped).
        let far = packed(|p| p.plain([u64::MAX - 1, 2].into_iter()));
        assert_eq!(Unpacker::new(&far).changes::<i64>(2), None);
    }
}
