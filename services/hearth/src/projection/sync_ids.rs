//! Sync identifiers: per source, the live sample that holds each of its
//! `sync_id`s, and each synced sample's identifier for presenting it.
//!
//! Only samples written with a `sync_id` have an entry. An imported export
//! gives every sample one, so entries are kept compact: a 40-byte record
//! per sample, in fixed-size pages (growing never copies, and never
//! reserves twice what is used), and two tables of record numbers (by
//! sample id, and per source by identifier), so a lookup never touches
//! another source's entries. An identifier made of a prefix and a 128-bit
//! digest in hex, as every imported one is, is held in its record: the
//! digest's bytes and the prefix's number. Any other is kept in text pages
//! beside the records (a digest ending one as the bytes it spells).

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

/// One synced sample: 40 bytes. An identifier in digest form is held
/// here whole; one in text form is in [`SyncIds::text`].
#[derive(Clone, Copy, Default, Zeroize)]
struct Entry {
    /// The sample id, as two halves: a `u128` would pad the record to 48.
    id: [u64; 2],
    /// In digest form, the digest's bytes. In text form, where the kept
    /// form (see [`Kept`]) starts in the text buffer and the version, both
    /// little-endian: a digest-form version other than 0 is in
    /// [`SyncIds::versions`].
    key: [u8; 16],
    source: u32,
    ty: u16,
    /// 0 marks a free record. Digest form: [`DIGEST`] and the prefix's
    /// number. Text form: the kept form's length (identifiers are at most
    /// `samples::MAX_SYNC_ID` bytes), with [`PACKED`] if it is packed.
    form: u16,
}

const _: () = assert!(std::mem::size_of::<Entry>() == 40);

impl Entry {
    fn id(&self) -> u128 {
        (u128::from(self.id[0]) << 64) | u128::from(self.id[1])
    }

    fn is_free(&self) -> bool {
        self.form == 0
    }

    /// The number of the prefix, for an identifier in digest form.
    fn digest_prefix(&self) -> Option<u16> {
        (self.form & DIGEST != 0).then_some(self.form & !DIGEST)
    }

    /// Where a text-form identifier's kept form starts in the text buffer.
    fn text_at(&self) -> u64 {
        u64::from_le_bytes(self.key[..8].try_into().expect("8 bytes"))
    }

    fn text_version(&self) -> i64 {
        i64::from_le_bytes(self.key[8..].try_into().expect("8 bytes"))
    }

    /// The length of a text-form identifier's kept form.
    fn stored(&self) -> u16 {
        self.form & !(DIGEST | PACKED)
    }

    fn packed(&self) -> bool {
        self.form & PACKED != 0
    }
}

/// [`Entry::form`]'s mark of the digest form.
const DIGEST: u16 = 1 << 15;
/// [`Entry::form`]'s mark of a packed text form.
const PACKED: u16 = 1 << 14;
/// Prefixes numbered for the digest form, at most: identifiers with
/// another take the text form, so an app writing endless prefixes costs
/// only what text costs.
const MAX_PREFIXES: usize = 1024;
/// Lowercase hex digits ending an identifier, at least this many (an even
/// number of them), are kept as the bytes they spell: exactly this many
/// make the digest form; more, as a Health Auto Export identifier's 40,
/// a packed text form (`hae:` and 40 digits take 25 bytes instead of 44).
const HEX_TAIL: usize = 32;
const MAX_KEPT: usize = crate::samples::MAX_SYNC_ID;

/// An identifier as it is kept: as it is, or packed: the characters before
/// its hex tail, the bytes the tail spells, and how many characters came
/// before it. An identifier has one kept form, and no two share one, so a
/// text-form identifier is compared and hashed by it.
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

    /// The prefix and the digest of an identifier whose hex tail is
    /// exactly 32 digits: what the digest form holds.
    fn digest_parts(&self) -> Option<(&[u8], &[u8; 16])> {
        if !self.packed {
            return None;
        }
        let (&prefix_len, rest) = self.as_bytes().split_last()?;
        let (prefix, digest) = rest.split_at(usize::from(prefix_len).min(rest.len()));
        Some((prefix, digest.try_into().ok()?))
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

/// How an identifier is looked up, stored, compared and hashed: the same
/// for one asked about and one a record holds.
#[derive(PartialEq, Eq, Hash)]
enum Key<'a> {
    /// Its prefix's number and its digest.
    Digest { prefix: u16, digest: &'a [u8; 16] },
    /// Its kept form (see [`Kept`]), in the text buffer once stored.
    Text { kept: &'a [u8], packed: bool },
}

impl<'a> Key<'a> {
    fn text(kept: &'a Kept) -> Key<'a> {
        Key::Text {
            kept: kept.as_bytes(),
            packed: kept.packed,
        }
    }
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
        self.slots
            .iter()
            .map(|&s| (entry(&self.ids.entries, s).id(), self.ids.tag_of(s)))
    }

    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Each tag as an element of `seq`.
    pub(super) fn serialize_each<S: serde::ser::SerializeSeq>(
        &self,
        seq: &mut S,
    ) -> Result<(), S::Error> {
        // Identifiers are spelled out here rather than each in a string of
        // its own: a snapshot writes millions while it holds the writer off.
        let mut spelled = Zeroizing::new([0; MAX_KEPT]);
        for &slot in &self.slots {
            let e = entry(&self.ids.entries, slot);
            let sync_id = self.ids.spell(e, &mut spelled);
            let version = self.ids.version_of(slot, e);
            seq.serialize_element(&(e.id(), sync_id, version, e.ty, e.source))?;
        }
        Ok(())
    }
}

impl serde::Serialize for TagsById<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.slots.len()))?;
        self.serialize_each(&mut seq)?;
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
    /// Every live text-form identifier's bytes; a removed one is zeroed
    /// where it lay and its bytes counted in `dead` until the text is
    /// compacted.
    text: Text,
    dead: usize,
    /// The prefixes of digest-form identifiers, by number, and their
    /// numbers hashed by prefix.
    prefixes: Vec<Box<[u8]>>,
    prefix_numbers: HashTable<u16>,
    /// Digest-form records' versions other than 0 (an import writes none).
    versions: HashMap<u32, i64>,
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

/// The kept form of `e`'s identifier, for one in text form.
fn kept_of<'a>(text: &'a Text, e: &Entry) -> &'a [u8] {
    text.get(e.text_at(), e.stored())
}

/// The key of the identifier `e` holds.
fn key_of_entry<'a>(text: &'a Text, e: &'a Entry) -> Key<'a> {
    match e.digest_prefix() {
        Some(prefix) => Key::Digest {
            prefix,
            digest: &e.key,
        },
        None => Key::Text {
            kept: kept_of(text, e),
            packed: e.packed(),
        },
    }
}

fn hash_entry(hasher: &DefaultHashBuilder, text: &Text, e: &Entry) -> u64 {
    hasher.hash_one(key_of_entry(text, e))
}

impl SyncIds {
    fn entry_mut(&mut self, slot: u32) -> &mut Entry {
        let slot = slot as usize;
        &mut self.entries[slot / ENTRY_PAGE][slot % ENTRY_PAGE]
    }

    /// `e`'s identifier: borrowed from the text, or spelled out in `out`.
    fn spell<'a>(&'a self, e: &'a Entry, out: &'a mut [u8; MAX_KEPT]) -> &'a str {
        let Some(prefix) = e.digest_prefix() else {
            return Kept::spell(kept_of(&self.text, e), e.packed(), out);
        };
        let prefix = self
            .prefixes
            .get(usize::from(prefix))
            .map_or(&[][..], |p| &p[..]);
        let len = prefix.len() + 32;
        out[..prefix.len()].copy_from_slice(prefix);
        hex::encode_to_slice(e.key.as_slice(), &mut out[prefix.len()..len])
            .expect("32 digits for 16 bytes");
        // Only whole `str`s were split into a prefix and a digest.
        std::str::from_utf8(&out[..len]).unwrap_or_default()
    }

    fn version_of(&self, slot: u32, e: &Entry) -> i64 {
        match e.digest_prefix() {
            Some(_) => self.versions.get(&slot).copied().unwrap_or(0),
            None => e.text_version(),
        }
    }

    fn tag_of(&self, slot: u32) -> SyncTag<Cow<'_, str>> {
        let e = entry(&self.entries, slot);
        let sync_id = match e.digest_prefix() {
            Some(_) => {
                let mut spelled = Zeroizing::new([0; MAX_KEPT]);
                Cow::Owned(self.spell(e, &mut spelled).to_owned())
            }
            None => Kept::unpack(kept_of(&self.text, e), e.packed()),
        };
        SyncTag {
            sync_id,
            version: self.version_of(slot, e),
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
        let key = self.key_of(&kept);
        let slot = self.find_key(index, &key, self.hash_key(&key))?;
        Some((entry(&self.entries, slot).id(), self.tag_of(slot)))
    }

    /// How `kept` is looked up: in digest form if its prefix has a number.
    /// A prefix is numbered when an identifier first uses it, unless
    /// [`MAX_PREFIXES`] are, and never loses its number, so an identifier
    /// is always looked up in the form it was stored in.
    fn key_of<'k>(&self, kept: &'k Kept) -> Key<'k> {
        kept.digest_parts()
            .and_then(|(prefix, digest)| {
                let prefix = self.prefix_number(prefix)?;
                Some(Key::Digest { prefix, digest })
            })
            .unwrap_or_else(|| Key::text(kept))
    }

    fn prefix_number(&self, prefix: &[u8]) -> Option<u16> {
        let prefixes = &self.prefixes;
        self.prefix_numbers
            .find(self.hasher.hash_one(prefix), |&n| {
                *prefixes[usize::from(n)] == *prefix
            })
            .copied()
    }

    /// How `kept` is stored: [`Self::key_of`], numbering its prefix if
    /// there is room.
    fn key_to_store<'k>(&mut self, kept: &'k Kept) -> Key<'k> {
        let Some((prefix, digest)) = kept.digest_parts() else {
            return Key::text(kept);
        };
        let number = match self.prefix_number(prefix) {
            Some(number) => number,
            None if self.prefixes.len() < MAX_PREFIXES => {
                let number = self.prefixes.len() as u16;
                self.prefixes.push(prefix.into());
                let (hasher, prefixes) = (&self.hasher, &self.prefixes);
                self.prefix_numbers
                    .insert_unique(hasher.hash_one(prefix), number, |&n| {
                        hasher.hash_one(&*prefixes[usize::from(n)])
                    });
                number
            }
            None => return Key::text(kept),
        };
        Key::Digest {
            prefix: number,
            digest,
        }
    }

    fn hash_key(&self, key: &Key) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The record in `index` (a source's) holding `key`, hashed to `hash`.
    fn find_key(&self, index: &HashTable<u32>, key: &Key, hash: u64) -> Option<u32> {
        index
            .find(hash, |&s| {
                key_of_entry(&self.text, entry(&self.entries, s)) == *key
            })
            .copied()
    }

    /// Every synced sample's id and tag, by id: what a snapshot writes, as
    /// it is read.
    pub(super) fn by_id(&self) -> TagsById<'_> {
        let mut slots: Vec<u32> = (0..self.records as u32)
            .filter(|&s| !entry(&self.entries, s).is_free())
            .collect();
        slots.sort_unstable_by_key(|&s| entry(&self.entries, s).id());
        TagsById { ids: self, slots }
    }

    pub(super) fn tag(&self, id: u128) -> Option<SyncTag<Cow<'_, str>>> {
        Some(self.tag_of(self.slot_of(id)?))
    }

    /// Records that sample `id` holds `tag.sync_id` for `tag.source`, in
    /// place of whatever sample held it before.
    pub(super) fn insert(&mut self, id: u128, tag: SyncTag<&str>) {
        let kept =
            Kept::of(tag.sync_id).expect("sync ids are validated to at most MAX_SYNC_ID bytes");
        let key = self.key_to_store(&kept);
        let hash = self.hash_key(&key);
        let holder = self
            .by_source
            .get(&tag.source)
            .and_then(|index| self.find_key(index, &key, hash));
        if let Some(slot) = holder {
            self.remove_slot(slot);
        }
        // The same sample under another identifier (never written so, but
        // a log is not to break the index over it).
        self.remove(id);
        let mut new = Entry {
            id: halves(id),
            source: tag.source,
            ty: tag.ty.0,
            ..Entry::default()
        };
        let version_aside = matches!(key, Key::Digest { .. }) && tag.version != 0;
        match key {
            Key::Digest { prefix, digest } => {
                new.key = *digest;
                new.form = DIGEST | prefix;
            }
            Key::Text { kept, packed } => {
                let at = self.text.push(kept);
                new.key[..8].copy_from_slice(&at.to_le_bytes());
                new.key[8..].copy_from_slice(&tag.version.to_le_bytes());
                new.form = kept.len() as u16 | if packed { PACKED } else { 0 };
            }
        }
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
        new.zeroize();
        if version_aside {
            self.versions.insert(slot, tag.version);
        }
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
        let key_hash = hash_entry(&self.hasher, &self.text, &e);
        if let Some(index) = self.by_source.get_mut(&e.source) {
            if let Ok(found) = index.find_entry(key_hash, |&s| s == slot) {
                found.remove();
            }
            if index.is_empty() {
                self.by_source.remove(&e.source);
            }
        }
        if e.digest_prefix().is_some() {
            self.versions.remove(&slot);
        } else {
            self.text.get_mut(e.text_at(), e.stored()).zeroize();
            self.dead += usize::from(e.stored());
        }
        self.entry_mut(slot).zeroize();
        self.free.push(slot);
        if self.dead > TEXT_PAGE && self.dead * 2 > self.text.len {
            self.compact_text();
        }
    }

    /// Copies the live text-form identifiers into a buffer of their own,
    /// dropping the zeroed bytes of removed ones.
    fn compact_text(&mut self) {
        let mut text = Text::default();
        for e in self.entries.iter_mut().flatten() {
            if !e.is_free() && e.digest_prefix().is_none() {
                let at = text.push(kept_of(&self.text, e));
                e.key[..8].copy_from_slice(&at.to_le_bytes());
            }
        }
        self.text.zeroize();
        self.text = text;
        self.dead = 0;
    }

    pub(super) fn shrink_to_fit(&mut self) {
        self.free.shrink_to_fit();
        self.versions.shrink_to_fit();
        let (hasher, entries) = (&self.hasher, &self.entries);
        self.by_id
            .shrink_to_fit(|&s| hasher.hash_one(entry(entries, s).id()));
    }

    /// How many identifiers are held by records.
    pub(super) fn len(&self) -> usize {
        self.records - self.free.len()
    }

    pub(super) fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        // hashbrown: one control byte per bucket beside each slot.
        let table = |capacity: usize, slot: usize| capacity * 8 / 7 * (slot + 1);
        let prefixes = self.prefixes.iter().map(|p| p.len()).sum::<usize>();
        self.entries.iter().map(Vec::capacity).sum::<usize>() * size_of::<Entry>()
            + self.free.capacity() * size_of::<u32>()
            + self.text.capacity()
            + prefixes
            + self.prefixes.capacity() * size_of::<Box<[u8]>>()
            + table(self.prefix_numbers.capacity(), size_of::<u16>())
            + table(self.versions.capacity(), size_of::<(u32, i64)>())
            + table(self.by_id.capacity(), size_of::<u32>())
            + self
                .by_source
                .values()
                .map(|i| table(i.capacity(), size_of::<u32>()))
                .sum::<usize>()
    }

    /// Overwrites every identifier and id, then frees them.
    pub(super) fn wipe(&mut self) {
        for page in &mut self.entries {
            page.zeroize();
        }
        self.text.zeroize();
        for prefix in &mut self.prefixes {
            prefix.zeroize();
        }
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
        // Text-form identifiers: only they take room in the text.
        let name = |i: u128| format!("ah1-{i:032x}-p");
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
        // A prefix and a 32-digit tail: in its record, none of it in the
        // text; a longer tail: packed, 4 + 17 + 1 bytes instead of 38.
        let mut one = SyncIds::default();
        one.insert(1, tag(&ids[0], 0, 0));
        assert_eq!(one.text.len, 0);
        one.insert(2, tag(&format!("ah1-{digest}aa"), 0, 0));
        assert_eq!(one.text.len, 22);
        // Removing one packed identifier leaves the others.
        s.remove(0);
        assert!(s.find(7, &ids[0]).is_none());
        assert_eq!(s.find(7, &ids[3]).map(|(id, _)| id), Some(3));
    }

    /// An imported sample's identifier (a prefix and a 128-bit digest) is
    /// held in its 40-byte record: with both tables, under 64 bytes per
    /// sample, where the text form took 80. Versions, removal and reuse
    /// work as in the text form.
    #[test]
    fn imported_identifiers_are_held_in_their_records() {
        let mut s = SyncIds::default();
        let name = |i: u128| format!("ah1-{:032x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let n = 200_000u128;
        // An import writes no versions; an app may.
        let version = |i: u128| if i % 1000 == 3 { i as i64 } else { 0 };
        for i in 0..n {
            s.insert(i, tag(&name(i), (i % 2) as u32, version(i)));
        }
        assert_eq!(s.text.len, 0);
        assert_eq!(s.prefixes.len(), 1);
        let per_sample = s.memory_bytes() as f64 / n as f64;
        assert!(per_sample < 64.0, "{per_sample} bytes per sample");
        for i in (0..n).step_by(997).chain([3, 1003]) {
            let found = s
                .find((i % 2) as u32, &name(i))
                .map(|(id, t)| (id, t.sync_id.into_owned(), t.version));
            assert_eq!(found, Some((i, name(i), version(i))));
            assert!(s.find(((i + 1) % 2) as u32, &name(i)).is_none());
        }
        // A version 0 record reused by one with a version, and back.
        s.remove(5);
        s.insert(5, tag(&name(5), 1, 0));
        s.remove(1);
        s.insert(n, tag(&name(n), 0, 9));
        assert_eq!(
            s.find(0, &name(n)).map(|(id, t)| (id, t.version)),
            Some((n, 9))
        );
        assert_eq!(s.tag(5).map(|t| t.version), Some(0));
        assert!(s.tag(1).is_none());
        let listed: Vec<_> = s
            .by_id()
            .iter()
            .map(|(id, t)| (id, t.into_owned()))
            .collect();
        assert_eq!(listed.len(), n as usize);
        assert!(listed.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(
            listed
                .iter()
                .find(|(id, _)| *id == 7)
                .map(|(_, t)| t.sync_id.to_string()),
            Some(name(7))
        );
    }

    /// Past [`MAX_PREFIXES`] prefixes, identifiers take the text form; each
    /// is found in the form it was stored in, before and after the others.
    #[test]
    fn prefixes_past_the_cap_take_the_text_form() {
        let mut s = SyncIds::default();
        let digest = "0123456789abcdef".repeat(2);
        let name = |p: usize| format!("p{p}-{digest}");
        let count = MAX_PREFIXES + 50;
        for p in 0..count {
            s.insert(p as u128, tag(&name(p), 3, p as i64));
        }
        assert_eq!(s.prefixes.len(), MAX_PREFIXES);
        assert!(s.text.len > 0);
        for p in 0..count {
            let found = s
                .find(3, &name(p))
                .map(|(id, t)| (id, t.sync_id.into_owned(), t.version));
            assert_eq!(found, Some((p as u128, name(p), p as i64)), "{p}");
        }
        // Taking over an identifier in either form replaces its holder.
        s.insert(10_000, tag(&name(0), 3, 1));
        s.insert(10_001, tag(&name(count - 1), 3, 1));
        assert!(s.tag(0).is_none() && s.tag((count - 1) as u128).is_none());
        assert_eq!(s.find(3, &name(0)).map(|(id, _)| id), Some(10_000));
        assert_eq!(s.find(3, &name(count - 1)).map(|(id, _)| id), Some(10_001));
        s.wipe();
        assert!(s.prefixes.is_empty() && s.find(3, &name(0)).is_none());
        assert_eq!(s.memory_bytes(), 0);
    }

    /// Every byte a digest may hold reads back from its two digits and
    /// spells them again.
    #[test]
    fn every_digit_pair_reads_as_the_byte_it_spells() {
        for byte in 0..=255u8 {
            let id = format!("p-{}", format!("{byte:02x}").repeat(16));
            let kept = Kept::of(&id).unwrap();
            assert_eq!(kept.digest_parts(), Some((&b"p-"[..], &[byte; 16])), "{id}");
            let mut s = SyncIds::default();
            s.insert(1, tag(&id, 0, 0));
            assert_eq!(s.tag(1).map(|t| t.sync_id.into_owned()), Some(id));
        }
    }
}
