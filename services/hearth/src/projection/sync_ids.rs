//! Sync identifiers: per source, the live sample that holds each of its
//! `sync_id`s, and each synced sample's identifier for presenting it.
//!
//! Only samples written with a `sync_id` have an entry. An imported export
//! gives every sample one, so entries are kept compact: a fixed-size record
//! per sample, the identifiers' text side by side (a digest ending one is
//! kept as the bytes it spells), both in fixed-size pages
//! (growing never copies, and never reserves twice what is used), and two
//! tables of record numbers (by sample id, and per source by identifier),
//! so a lookup never touches another source's entries.

use std::borrow::Cow;
use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use zeroize::{Zeroize, Zeroizing};

use crate::catalogue::TypeIndex;

/// A synced sample's identifier, version, type and source; `S` is how the
/// identifier is held (borrowed from the store's buffer, or owned).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncTag<S = Box<str>> {
    pub sync_id: S,
    pub version: i64,
    pub ty: TypeIndex,
    pub source: u32,
}

impl SyncTag<Cow<'_, str>> {
    pub fn into_owned(self) -> SyncTag {
        SyncTag {
            sync_id: self.sync_id.into(),
            version: self.version,
            ty: self.ty,
            source: self.source,
        }
    }
}

/// One synced sample: 40 bytes, its identifier in [`SyncIds::text`].
#[derive(Clone, Copy, Default, Zeroize)]
struct Entry {
    /// The sample id, as two halves: a `u128` would pad the record to 48.
    id: [u64; 2],
    version: i64,
    /// Where the identifier's kept form (see [`Kept`]) starts in the text
    /// buffer, and its length (identifiers are at most
    /// `samples::MAX_SYNC_ID` bytes) with [`PACKED`] set if it is packed;
    /// 0 marks a free record.
    at: u64,
    len: u16,
    ty: u16,
    source: u32,
}

impl Entry {
    fn id(&self) -> u128 {
        (u128::from(self.id[0]) << 64) | u128::from(self.id[1])
    }

    /// The length of the kept form in the text buffer.
    fn stored(&self) -> u16 {
        self.len & !PACKED
    }

    fn packed(&self) -> bool {
        self.len & PACKED != 0
    }
}

/// [`Entry::len`]'s mark of a packed identifier.
const PACKED: u16 = 1 << 15;
/// Lowercase hex digits ending an identifier, at least this many (an even
/// number of them), are kept as the bytes they spell: an imported sample's
/// identifier (a prefix and a 128-bit digest) takes 21 bytes instead of 36.
const HEX_TAIL: usize = 32;
const MAX_KEPT: usize = crate::samples::MAX_SYNC_ID;

/// An identifier as it is kept: as it is, or packed: the characters before
/// its hex tail, the bytes the tail spells, and how many characters came
/// before it. An identifier has one kept form, and no two share one, so
/// identifiers are compared and hashed by it.
struct Kept {
    bytes: [u8; MAX_KEPT],
    len: usize,
    packed: bool,
}

impl Kept {
    /// `None` for an identifier longer than any kept.
    fn of(id: &str) -> Option<Kept> {
        let id = id.as_bytes();
        if id.len() > MAX_KEPT {
            return None;
        }
        let mut kept = Kept {
            bytes: [0; MAX_KEPT],
            len: id.len(),
            packed: false,
        };
        let digits = id
            .iter()
            .rev()
            .take_while(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            .count()
            & !1;
        if digits < HEX_TAIL {
            kept.bytes[..id.len()].copy_from_slice(id);
            return Some(kept);
        }
        let (prefix, tail) = id.split_at(id.len() - digits);
        kept.bytes[..prefix.len()].copy_from_slice(prefix);
        let spelled = &mut kept.bytes[prefix.len()..prefix.len() + digits / 2];
        hex::decode_to_slice(tail, spelled).expect("lowercase hex digits");
        kept.bytes[prefix.len() + digits / 2] = prefix.len() as u8;
        kept.len = prefix.len() + digits / 2 + 1;
        kept.packed = true;
        Some(kept)
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The identifier a kept form holds, as a string of its own if it is
    /// packed.
    fn unpack(kept: &[u8], packed: bool) -> Cow<'_, str> {
        if !packed {
            return Cow::Borrowed(std::str::from_utf8(kept).unwrap_or_default());
        }
        let mut spelled = Zeroizing::new([0; MAX_KEPT]);
        Cow::Owned(Kept::spell(kept, true, &mut spelled).to_owned())
    }

    /// The identifier a kept form holds: borrowed from it, or spelled out
    /// in `out` if it is packed.
    fn spell<'a>(kept: &'a [u8], packed: bool, out: &'a mut [u8; MAX_KEPT]) -> &'a str {
        let spelled = match kept.split_last() {
            Some((&prefix_len, rest)) if packed => {
                let (prefix, digest) = rest.split_at(usize::from(prefix_len).min(rest.len()));
                let len = (prefix.len() + 2 * digest.len()).min(MAX_KEPT);
                out[..prefix.len()].copy_from_slice(prefix);
                match hex::encode_to_slice(digest, &mut out[prefix.len()..len]) {
                    Ok(()) => &out[..len],
                    Err(_) => &[],
                }
            }
            _ => kept,
        };
        // Only whole `str`s and packed forms of them are ever copied in.
        std::str::from_utf8(spelled).unwrap_or_default()
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        // Only these bytes were ever written: the rest are still zero.
        self.bytes[..self.len].zeroize();
    }
}

/// What identifiers are hashed by: their kept form.
fn hash_kept(hasher: &DefaultHashBuilder, kept: &[u8], packed: bool) -> u64 {
    hasher.hash_one((packed, kept))
}

fn halves(id: u128) -> [u64; 2] {
    [(id >> 64) as u64, id as u64]
}

/// Records per page of [`SyncIds::entries`].
const ENTRY_PAGE: usize = 1 << 12;
/// Bytes per page of text: more than any identifier, so each fits one page.
const TEXT_PAGE: usize = 1 << 17;

/// Identifiers side by side, in pages of [`TEXT_PAGE`] bytes; an
/// identifier's place is `page * TEXT_PAGE + offset`.
#[derive(Default)]
struct Text {
    pages: Vec<Vec<u8>>,
    /// Bytes in use, counting zeroed ones.
    len: usize,
}

impl Text {
    fn push(&mut self, text: &[u8]) -> u64 {
        debug_assert!(text.len() <= TEXT_PAGE);
        match self.pages.last() {
            Some(page) if page.len() + text.len() <= TEXT_PAGE => {}
            _ => self.pages.push(Vec::with_capacity(TEXT_PAGE)),
        }
        let page = self.pages.len() - 1;
        let last = &mut self.pages[page];
        let at = page * TEXT_PAGE + last.len();
        last.extend_from_slice(text);
        self.len += text.len();
        at as u64
    }

    fn get_mut(&mut self, at: u64, len: u16) -> &mut [u8] {
        let (page, offset) = (at as usize / TEXT_PAGE, at as usize % TEXT_PAGE);
        &mut self.pages[page][offset..offset + usize::from(len)]
    }

    fn get(&self, at: u64, len: u16) -> &[u8] {
        let (page, offset) = (at as usize / TEXT_PAGE, at as usize % TEXT_PAGE);
        &self.pages[page][offset..offset + usize::from(len)]
    }

    fn capacity(&self) -> usize {
        self.pages.iter().map(Vec::capacity).sum()
    }

    fn zeroize(&mut self) {
        for page in &mut self.pages {
            page.zeroize();
        }
        *self = Text::default();
    }
}

/// The tags of [`SyncIds::by_id`]; serialised as a sequence of
/// (sample id, sync id, version, type, source).
pub(super) struct TagsById<'a> {
    ids: &'a SyncIds,
    slots: Vec<u32>,
}

impl TagsById<'_> {
    #[cfg(test)]
    pub(super) fn iter(&self) -> impl Iterator<Item = (u128, SyncTag<Cow<'_, str>>)> {
        self.slots.iter().map(|&s| {
            let e = entry(&self.ids.entries, s);
            (e.id(), self.ids.tag_of(e))
        })
    }
}

impl serde::Serialize for TagsById<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.slots.len()))?;
        // Packed identifiers are spelled out here rather than each in a
        // string of its own: a snapshot writes millions while it holds
        // the writer off.
        let mut spelled = Zeroizing::new([0; MAX_KEPT]);
        for &slot in &self.slots {
            let e = entry(&self.ids.entries, slot);
            let sync_id = Kept::spell(kept_of(&self.ids.text, e), e.packed(), &mut spelled);
            seq.serialize_element(&(e.id(), sync_id, e.version, e.ty, e.source))?;
        }
        seq.end()
    }
}

#[derive(Default)]
pub(super) struct SyncIds {
    /// Records in pages of [`ENTRY_PAGE`]: record `n` is
    /// `entries[n / ENTRY_PAGE][n % ENTRY_PAGE]`.
    entries: Vec<Vec<Entry>>,
    records: usize,
    /// Free records, for reuse.
    free: Vec<u32>,
    /// Every live identifier's bytes; a removed one is zeroed where it lay
    /// and its bytes counted in `dead` until the text is compacted.
    text: Text,
    dead: usize,
    /// Record numbers, hashed by sample id.
    by_id: HashTable<u32>,
    /// Per source: record numbers, hashed by identifier.
    by_source: HashMap<u32, HashTable<u32>>,
    hasher: DefaultHashBuilder,
}

fn entry(entries: &[Vec<Entry>], slot: u32) -> &Entry {
    let slot = slot as usize;
    &entries[slot / ENTRY_PAGE][slot % ENTRY_PAGE]
}

/// The kept form of `e`'s identifier.
fn kept_of<'a>(text: &'a Text, e: &Entry) -> &'a [u8] {
    text.get(e.at, e.stored())
}

fn hash_entry(hasher: &DefaultHashBuilder, text: &Text, e: &Entry) -> u64 {
    hash_kept(hasher, kept_of(text, e), e.packed())
}

impl SyncIds {
    fn entry_mut(&mut self, slot: u32) -> &mut Entry {
        let slot = slot as usize;
        &mut self.entries[slot / ENTRY_PAGE][slot % ENTRY_PAGE]
    }

    fn tag_of(&self, e: &Entry) -> SyncTag<Cow<'_, str>> {
        SyncTag {
            sync_id: Kept::unpack(kept_of(&self.text, e), e.packed()),
            version: e.version,
            ty: TypeIndex(e.ty),
            source: e.source,
        }
    }

    fn slot_of(&self, id: u128) -> Option<u32> {
        let entries = &self.entries;
        self.by_id
            .find(self.hasher.hash_one(id), |&s| entry(entries, s).id() == id)
            .copied()
    }

    /// The sample of `source` holding `sync_id`.
    pub(super) fn find(&self, source: u32, sync_id: &str) -> Option<(u128, SyncTag<Cow<'_, str>>)> {
        let index = self.by_source.get(&source)?;
        let kept = Kept::of(sync_id)?;
        let slot = self.find_kept(index, &kept, self.hash_of(&kept))?;
        let e = entry(&self.entries, slot);
        Some((e.id(), self.tag_of(e)))
    }

    fn hash_of(&self, kept: &Kept) -> u64 {
        hash_kept(&self.hasher, kept.as_bytes(), kept.packed)
    }

    /// The record in `index` (a source's) holding `kept`, hashed to `hash`.
    fn find_kept(&self, index: &HashTable<u32>, kept: &Kept, hash: u64) -> Option<u32> {
        index
            .find(hash, |&s| {
                let e = entry(&self.entries, s);
                e.packed() == kept.packed && kept_of(&self.text, e) == kept.as_bytes()
            })
            .copied()
    }

    /// Every synced sample's id and tag, by id: what a snapshot writes, as
    /// it is read.
    pub(super) fn by_id(&self) -> TagsById<'_> {
        let mut slots: Vec<u32> = (0..self.records as u32)
            .filter(|&s| entry(&self.entries, s).len > 0)
            .collect();
        slots.sort_unstable_by_key(|&s| entry(&self.entries, s).id());
        TagsById { ids: self, slots }
    }

    pub(super) fn tag(&self, id: u128) -> Option<SyncTag<Cow<'_, str>>> {
        let slot = self.slot_of(id)?;
        Some(self.tag_of(entry(&self.entries, slot)))
    }

    /// Records that sample `id` holds `tag.sync_id` for `tag.source`, in
    /// place of whatever sample held it before.
    pub(super) fn insert(&mut self, id: u128, tag: SyncTag<&str>) {
        let kept =
            Kept::of(tag.sync_id).expect("sync ids are validated to at most MAX_SYNC_ID bytes");
        let hash = self.hash_of(&kept);
        let holder = self
            .by_source
            .get(&tag.source)
            .and_then(|index| self.find_kept(index, &kept, hash));
        if let Some(slot) = holder {
            self.remove_slot(slot);
        }
        // The same sample under another identifier (never written so, but
        // a log is not to break the index over it).
        self.remove(id);
        let packed = if kept.packed { PACKED } else { 0 };
        let new = Entry {
            id: halves(id),
            version: tag.version,
            at: self.text.push(kept.as_bytes()),
            len: kept.len as u16 | packed,
            ty: tag.ty.0,
            source: tag.source,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                *self.entry_mut(slot) = new;
                slot
            }
            None => {
                let slot = u32::try_from(self.records).expect("fewer than 2^32 synced samples");
                if self.records.is_multiple_of(ENTRY_PAGE) {
                    self.entries.push(Vec::with_capacity(ENTRY_PAGE));
                }
                self.entries.last_mut().expect("a page").push(new);
                self.records += 1;
                slot
            }
        };
        let (hasher, entries, text) = (&self.hasher, &self.entries, &self.text);
        self.by_id.insert_unique(hasher.hash_one(id), slot, |&s| {
            hasher.hash_one(entry(entries, s).id())
        });
        self.by_source
            .entry(tag.source)
            .or_default()
            .insert_unique(hash, slot, |&s| hash_entry(hasher, text, entry(entries, s)));
    }

    /// Forgets a deleted sample's identifier: the source may use it again.
    pub(super) fn remove(&mut self, id: u128) {
        if let Some(slot) = self.slot_of(id) {
            self.remove_slot(slot);
        }
    }

    fn remove_slot(&mut self, slot: u32) {
        let e = *entry(&self.entries, slot);
        let hash = self.hasher.hash_one(e.id());
        if let Ok(found) = self.by_id.find_entry(hash, |&s| s == slot) {
            found.remove();
        }
        let text_hash = hash_entry(&self.hasher, &self.text, &e);
        if let Some(index) = self.by_source.get_mut(&e.source) {
            let hash = text_hash;
            if let Ok(found) = index.find_entry(hash, |&s| s == slot) {
                found.remove();
            }
            if index.is_empty() {
                self.by_source.remove(&e.source);
            }
        }
        self.text.get_mut(e.at, e.stored()).zeroize();
        self.dead += usize::from(e.stored());
        self.entry_mut(slot).zeroize();
        self.free.push(slot);
        if self.dead > TEXT_PAGE && self.dead * 2 > self.text.len {
            self.compact_text();
        }
    }

    /// Copies the live identifiers into a buffer of their own, dropping the
    /// zeroed bytes of removed ones.
    fn compact_text(&mut self) {
        let mut text = Text::default();
        for e in self.entries.iter_mut().flatten().filter(|e| e.len > 0) {
            e.at = text.push(kept_of(&self.text, e));
        }
        self.text.zeroize();
        self.text = text;
        self.dead = 0;
    }

    pub(super) fn shrink_to_fit(&mut self) {
        self.free.shrink_to_fit();
        let (hasher, entries) = (&self.hasher, &self.entries);
        self.by_id
            .shrink_to_fit(|&s| hasher.hash_one(entry(entries, s).id()));
    }

    pub(super) fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        // hashbrown: one control byte per bucket beside each slot.
        let table = |capacity: usize| capacity * 8 / 7 * (size_of::<u32>() + 1);
        self.entries.iter().map(Vec::capacity).sum::<usize>() * size_of::<Entry>()
            + self.free.capacity() * size_of::<u32>()
            + self.text.capacity()
            + table(self.by_id.capacity())
            + self
                .by_source
                .values()
                .map(|i| table(i.capacity()))
                .sum::<usize>()
    }

    /// Overwrites every identifier and id, then frees them.
    pub(super) fn wipe(&mut self) {
        for page in &mut self.entries {
            page.zeroize();
        }
        self.text.zeroize();
        *self = SyncIds::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(sync_id: &str, source: u32, version: i64) -> SyncTag<&str> {
        SyncTag {
            sync_id,
            version,
            ty: TypeIndex(0),
            source,
        }
    }

    #[test]
    fn identifiers_are_per_source_and_freed_by_removal() {
        let mut s = SyncIds::default();
        s.insert(1, tag("a", 0, 0));
        s.insert(2, tag("a", 1, 5));
        assert_eq!(s.find(0, "a").map(|(id, _)| id), Some(1));
        assert_eq!(s.find(1, "a").map(|(id, t)| (id, t.version)), Some((2, 5)));
        assert!(s.find(2, "a").is_none());
        // A newer sample takes the identifier over.
        s.insert(3, tag("a", 0, 1));
        assert_eq!(s.find(0, "a").map(|(id, _)| id), Some(3));
        assert!(s.tag(1).is_none());
        s.remove(3);
        assert!(s.find(0, "a").is_none());
        assert_eq!(s.find(1, "a").map(|(id, _)| id), Some(2));
        for i in 0..1000u128 {
            s.insert(100 + i, tag(&format!("k{i}"), 0, 0));
        }
        assert!(
            (0..1000u128).all(|i| s.find(0, &format!("k{i}")).map(|(id, _)| id) == Some(100 + i))
        );
        assert!(s.memory_bytes() > 0);
        s.wipe();
        assert!(s.find(1, "a").is_none());
        assert_eq!(s.memory_bytes(), 0);
    }

    /// Removals leave zeroed bytes behind until the text is compacted;
    /// every identifier left is still found, by identifier and by id.
    #[test]
    fn compaction_keeps_every_live_identifier() {
        let mut s = SyncIds::default();
        let name = |i: u128| format!("ah1-{i:032x}");
        for i in 0..20_000u128 {
            s.insert(i, tag(&name(i), (i % 3) as u32, i as i64));
        }
        let full = s.text.len;
        for i in (0..20_000u128).filter(|i| i % 4 != 0) {
            s.remove(i);
        }
        assert!(s.text.len < full / 2, "compacted: {} of {full}", s.text.len);
        for i in 0..20_000u128 {
            let found = s
                .find((i % 3) as u32, &name(i))
                .map(|(id, t)| (id, t.version));
            let tagged = s.tag(i).map(|t| t.sync_id.to_string());
            if i % 4 == 0 {
                assert_eq!(found, Some((i, i as i64)));
                assert_eq!(tagged, Some(name(i)));
            } else {
                assert_eq!((found, tagged), (None, None), "{i}");
            }
        }
        assert_eq!(s.by_id().iter().count(), 5_000);
        // Records and text freed by removal are used again.
        let records = s.records;
        for i in 20_000..25_000u128 {
            s.insert(i, tag(&name(i), 0, 0));
        }
        assert_eq!(s.records, records);
        assert!((20_000..25_000u128).all(|i| s.find(0, &name(i)).map(|(id, _)| id) == Some(i)));
    }

    /// Identifiers ending in a long run of lowercase hex digits are kept
    /// packed, the others as they are; each is found and read back as it
    /// was written, and none is taken for another, even one whose bytes
    /// are another's packed form.
    #[test]
    fn packed_identifiers_read_back_and_never_meet_others() {
        let digest = "0123456789abcdef".repeat(2);
        let aa = "61".repeat(16);
        let ids = [
            format!("ah1-{digest}"),
            format!("ah1-{digest}-3"),
            format!("x{digest}5"),
            digest.clone(),
            digest[..31].to_string(),
            digest.to_uppercase(),
            format!("{}{digest}", "p".repeat(crate::samples::MAX_SYNC_ID - 32)),
            "0".repeat(64),
            format!("ah1-{aa}"),
            // The bytes of the one above, packed.
            format!("ah1-{}\u{4}", "a".repeat(16)),
            "ä-é".to_string(),
        ];
        let mut s = SyncIds::default();
        for (i, id) in ids.iter().enumerate() {
            s.insert(i as u128, tag(id, 7, i as i64));
        }
        for (i, id) in ids.iter().enumerate() {
            let found = s
                .find(7, id)
                .map(|(found, t)| (found, t.sync_id.into_owned()));
            assert_eq!(found, Some((i as u128, id.clone())), "{id}");
            assert_eq!(
                s.tag(i as u128).map(|t| t.sync_id.into_owned()),
                Some(id.clone())
            );
        }
        assert!(s.find(7, &format!("ah1-{}", &digest[..30])).is_none());
        assert!(s
            .find(7, &"q".repeat(crate::samples::MAX_SYNC_ID + 1))
            .is_none());
        // Packed: 4 + 16 + 1 bytes instead of 36.
        let mut one = SyncIds::default();
        one.insert(1, tag(&ids[0], 0, 0));
        assert_eq!(one.text.len, 21);
        // Removing one packed identifier leaves the others.
        s.remove(0);
        assert!(s.find(7, &ids[0]).is_none());
        assert_eq!(s.find(7, &ids[3]).map(|(id, _)| id), Some(3));
    }
}
