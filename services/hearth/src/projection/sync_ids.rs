//! Sync identifiers: per source, the live sample that holds each of its
//! `sync_id`s, and each synced sample's identifier for presenting it.
//!
//! Only samples written with a `sync_id` have an entry. The identifier is
//! kept once (in `tags`); the per-source index holds sample ids hashed by
//! the identifier, so a lookup never touches another source's entries.

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use zeroize::Zeroize;

use crate::catalogue::TypeIndex;

/// A synced sample's identifier, version, type and source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncTag {
    pub sync_id: Box<str>,
    pub version: i64,
    pub ty: TypeIndex,
    pub source: u32,
}

#[derive(Default)]
pub(super) struct SyncIds {
    /// By sample id.
    tags: HashMap<u128, SyncTag>,
    /// Per source: the ids of its synced samples, hashed by `sync_id`.
    by_source: HashMap<u32, HashTable<u128>>,
    hasher: DefaultHashBuilder,
}

impl SyncIds {
    /// The sample of `source` holding `sync_id`.
    pub(super) fn find(&self, source: u32, sync_id: &str) -> Option<(u128, &SyncTag)> {
        let index = self.by_source.get(&source)?;
        let hash = self.hasher.hash_one(sync_id);
        let &id = index.find(hash, |id| {
            self.tags.get(id).is_some_and(|t| *t.sync_id == *sync_id)
        })?;
        Some((id, self.tags.get(&id)?))
    }

    /// Every synced sample's id and tag, in no order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (u128, &SyncTag)> {
        self.tags.iter().map(|(&id, tag)| (id, tag))
    }

    pub(super) fn tag(&self, id: u128) -> Option<&SyncTag> {
        self.tags.get(&id)
    }

    /// Records that sample `id` holds `tag.sync_id` for `tag.source`, in
    /// place of whatever sample held it before.
    pub(super) fn insert(&mut self, id: u128, tag: SyncTag) {
        if let Some((old, _)) = self.find(tag.source, &tag.sync_id) {
            self.remove(old);
        }
        let hash = self.hasher.hash_one(&*tag.sync_id);
        let (hasher, tags) = (&self.hasher, &self.tags);
        self.by_source
            .entry(tag.source)
            .or_default()
            .insert_unique(hash, id, |id| hasher.hash_one(&*tags[id].sync_id));
        self.tags.insert(id, tag);
    }

    /// Forgets a deleted sample's identifier: the source may use it again.
    pub(super) fn remove(&mut self, id: u128) {
        let Some(mut tag) = self.tags.remove(&id) else {
            return;
        };
        if let Some(index) = self.by_source.get_mut(&tag.source) {
            let hash = self.hasher.hash_one(&*tag.sync_id);
            if let Ok(entry) = index.find_entry(hash, |&e| e == id) {
                entry.remove();
            }
            if index.is_empty() {
                self.by_source.remove(&tag.source);
            }
        }
        tag.sync_id.zeroize();
    }

    pub(super) fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        // hashbrown: one control byte per bucket beside each slot.
        self.tags.capacity() * 8 / 7 * (size_of::<(u128, SyncTag)>() + 1)
            + self.tags.values().map(|t| t.sync_id.len()).sum::<usize>()
            + self
                .by_source
                .values()
                .map(|i| i.capacity() * 8 / 7 * (size_of::<u128>() + 1))
                .sum::<usize>()
    }

    /// Overwrites every identifier and id, then frees them.
    pub(super) fn wipe(&mut self) {
        for (_, mut tag) in self.tags.drain() {
            tag.sync_id.zeroize();
            tag.version.zeroize();
        }
        for (_, mut index) in self.by_source.drain() {
            for id in index.iter_mut() {
                id.zeroize();
            }
        }
        *self = SyncIds::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(sync_id: &str, source: u32, version: i64) -> SyncTag {
        SyncTag {
            sync_id: sync_id.into(),
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
}
