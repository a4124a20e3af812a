//! Metadata texts kept once however many rows carry them.
//!
//! Samples from one device and app version tend to carry the same metadata
//! (an imported export repeats its source version and device on every
//! record), so a row holds a slot number and the pool holds each distinct
//! text once, counted: the last row to let go of a text frees it.

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};
use zeroize::Zeroize;

/// Slot 0 means "no text"; a text's slot is its position in `texts` plus 1.
#[derive(Default)]
pub(super) struct TextPool {
    texts: Vec<Option<Box<str>>>,
    /// Rows holding each slot.
    counts: Vec<u32>,
    /// Slots, hashed by their text.
    lookup: HashTable<u32>,
    /// Freed slots, for reuse.
    free: Vec<u32>,
    hasher: DefaultHashBuilder,
    /// Bytes of text held.
    bytes: usize,
}

impl TextPool {
    /// The slot holding `text`, counted once more.
    pub(super) fn intern(&mut self, text: &str) -> u32 {
        self.intern_held(text, 1)
    }

    /// The slot holding `text`, counted `holders` times more.
    pub(super) fn intern_held(&mut self, text: &str, holders: u32) -> u32 {
        let hash = self.hasher.hash_one(text);
        let texts = &self.texts;
        if let Some(&slot) = self
            .lookup
            .find(hash, |&s| texts[s as usize - 1].as_deref() == Some(text))
        {
            self.counts[slot as usize - 1] += holders;
            return slot;
        }
        let slot = match self.free.pop() {
            Some(slot) => {
                self.texts[slot as usize - 1] = Some(text.into());
                self.counts[slot as usize - 1] = holders;
                slot
            }
            None => {
                self.texts.push(Some(text.into()));
                self.counts.push(holders);
                u32::try_from(self.texts.len()).expect("fewer than 2^32 distinct texts")
            }
        };
        self.bytes += text.len();
        let (hasher, texts) = (&self.hasher, &self.texts);
        self.lookup.insert_unique(hash, slot, |&s| {
            hasher.hash_one(texts[s as usize - 1].as_deref().unwrap_or(""))
        });
        slot
    }

    pub(super) fn get(&self, slot: u32) -> Option<&str> {
        let i = (slot as usize).checked_sub(1)?;
        self.texts.get(i)?.as_deref()
    }

    /// One row fewer holds `slot`; the last one frees the text, overwritten.
    pub(super) fn release(&mut self, slot: u32) {
        let Some(i) = (slot as usize).checked_sub(1) else {
            return;
        };
        let Some(count) = self.counts.get_mut(i) else {
            return;
        };
        *count -= 1;
        if *count > 0 {
            return;
        }
        let Some(mut text) = self.texts[i].take() else {
            return;
        };
        let hash = self.hasher.hash_one(&*text);
        if let Ok(entry) = self.lookup.find_entry(hash, |&s| s == slot) {
            entry.remove();
        }
        self.bytes -= text.len();
        text.zeroize();
        self.free.push(slot);
    }

    /// Distinct texts held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.texts.len() - self.free.len()
    }

    /// Bytes held, counting allocated capacity.
    pub(super) fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        self.texts.capacity() * size_of::<Option<Box<str>>>()
            + self.counts.capacity() * size_of::<u32>()
            + self.free.capacity() * size_of::<u32>()
            // hashbrown: one control byte per bucket beside each slot.
            + self.lookup.capacity() * 8 / 7 * (size_of::<u32>() + 1)
            + self.bytes
    }

    pub(super) fn shrink_to_fit(&mut self) {
        self.texts.shrink_to_fit();
        self.counts.shrink_to_fit();
        self.free.shrink_to_fit();
        let (hasher, texts) = (&self.hasher, &self.texts);
        self.lookup
            .shrink_to_fit(|&s| hasher.hash_one(texts[s as usize - 1].as_deref().unwrap_or("")));
    }

    /// Overwrites every text, then frees them.
    pub(super) fn wipe(&mut self) {
        for text in self.texts.iter_mut().flatten() {
            text.zeroize();
        }
        *self = TextPool::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_is_kept_once_and_freed_by_its_last_holder() {
        let mut pool = TextPool::default();
        let a = pool.intern("{\"v\":\"17.1\"}");
        let b = pool.intern("{\"v\":\"17.2\"}");
        assert_eq!(pool.intern("{\"v\":\"17.1\"}"), a);
        assert_ne!(a, b);
        assert_ne!(a, 0);
        assert_eq!(pool.len(), 2);
        assert_eq!(pool.get(a), Some("{\"v\":\"17.1\"}"));
        assert_eq!(pool.get(0), None);
        pool.release(a);
        assert_eq!(pool.get(a), Some("{\"v\":\"17.1\"}"), "one holder left");
        pool.release(a);
        assert_eq!(pool.get(a), None);
        assert_eq!(pool.len(), 1);
        // The freed slot is reused, and the text it held is not found.
        let c = pool.intern("{\"v\":\"18.0\"}");
        assert_eq!(c, a);
        assert_eq!(pool.get(c), Some("{\"v\":\"18.0\"}"));
        assert_eq!(pool.intern("{\"v\":\"17.2\"}"), b);
        for i in 0..1000 {
            pool.intern(&format!("{{\"n\":{i}}}"));
        }
        assert_eq!(pool.len(), 1002);
        for i in 0..1000 {
            let text = format!("{{\"n\":{i}}}");
            let slot = pool.intern(&text);
            assert_eq!(pool.get(slot), Some(text.as_str()));
        }
        assert!(pool.memory_bytes() > 0);
        pool.wipe();
        assert_eq!(pool.len(), 0);
        assert_eq!(pool.get(b), None);
    }
}
