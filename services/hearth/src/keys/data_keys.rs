//! Data keys: the keys log records are sealed under.
//!
//! Every (source, type) pair gets a random 256-bit key of its own, and the
//! records that belong to no single source and type (apps, grants, tokens,
//! characteristics, erasures...) share a management key, random too. Each
//! key is wrapped under a key derived from the root key and kept in the
//! `data_keys` table, outside the append-only log: erasing "all data from
//! this app" or "of this type" deletes those rows, and the records sealed
//! under them can never be opened again, by anyone, with any passphrase.
//!
//! Which scope a key serves is sealed inside its wrapped form; only its id
//! (which every record names in the clear and binds in its additional
//! data) and whether it was rotated out are visible.
//!
//! Records written before data keys existed are sealed under the root key
//! itself, with [`LEGACY_KEY_ID`]; they stay readable, and cannot be shredded
//! without destroying everything.

use hashbrown::HashMap;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{self, CryptoError, DataKey, SecretKey, KEY_LEN};
use crate::log::replay::Walked;
use crate::storage::{Storage, StorageError, StoredDataKey};

/// Derives the key that wraps every data key from the root key.
pub const WRAP_LABEL: &[u8] = b"hearth/data-key-wrap/v1";

/// Records sealed under the root key, before data keys existed.
pub const LEGACY_KEY_ID: u32 = crypto::FIRST_KEY_ID;

/// The first id a data key gets; ids are never reused, even after erasure.
const FIRST_DATA_KEY_ID: u32 = LEGACY_KEY_ID + 1;

/// What a data key seals.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyScope {
    /// Records that are not samples of one source and type.
    Management,
    /// The samples (and their deletions) of one source and type.
    Samples { source: String, type_id: String },
}

impl KeyScope {
    pub fn samples(source: &str, type_id: &str) -> KeyScope {
        KeyScope::Samples {
            source: source.to_string(),
            type_id: type_id.to_string(),
        }
    }

    /// Whether erasing `source` (all its types if `type_id` is `None`), or
    /// `type_id` (of every source if `source` is `None`), covers this scope.
    pub fn erased_by(&self, source: Option<&str>, type_id: Option<&str>) -> bool {
        match self {
            KeyScope::Management => false,
            KeyScope::Samples {
                source: s,
                type_id: t,
            } => {
                (source.is_some() || type_id.is_some())
                    && source.is_none_or(|x| x == s)
                    && type_id.is_none_or(|x| x == t)
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataKeyError {
    #[error(
        "data key {key_id} does not open: the keyring was altered or belongs to another store"
    )]
    Unwrap { key_id: u32 },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

struct Entry {
    scope: KeyScope,
    key: DataKey,
    retired: bool,
}

/// The open data keys of an unlocked store (or of `hearth verify`).
pub struct DataKeys {
    root: DataKey,
    wrap_key: SecretKey,
    keys: HashMap<u32, Entry>,
    /// The key new records of each scope are sealed under.
    current: HashMap<KeyScope, u32>,
    next_id: u32,
}

fn wrap_aad(store_id: &[u8], key_id: u32) -> Vec<u8> {
    let mut aad = b"hearth/data-key/v1".to_vec();
    aad.extend_from_slice(store_id);
    aad.extend_from_slice(&key_id.to_be_bytes());
    aad
}

impl DataKeys {
    /// Opens every stored data key with the root key.
    pub fn open(root: DataKey, stored: &[StoredDataKey]) -> Result<DataKeys, DataKeyError> {
        let wrap_key = root.derive(WRAP_LABEL);
        let mut ring = DataKeys {
            root,
            wrap_key,
            keys: HashMap::new(),
            current: HashMap::new(),
            next_id: FIRST_DATA_KEY_ID,
        };
        for s in stored {
            let (key, scope) = ring
                .unwrap(s.key_id, &s.wrapped)
                .map_err(|_| DataKeyError::Unwrap { key_id: s.key_id })?;
            ring.note_key_id(s.key_id);
            if !s.retired {
                // The newest unretired key of a scope seals its new records.
                let current = ring.current.entry(scope.clone()).or_insert(s.key_id);
                *current = (*current).max(s.key_id);
            }
            ring.keys.insert(
                s.key_id,
                Entry {
                    scope,
                    key,
                    retired: s.retired,
                },
            );
        }
        Ok(ring)
    }

    /// Reads and opens the stored data keys.
    pub async fn load(storage: &dyn Storage, root: DataKey) -> Result<DataKeys, DataKeyError> {
        let stored = storage.data_keys().await?;
        DataKeys::open(root, &stored)
    }

    /// After a walk over the log: new ids go above every id the log names,
    /// and keys an erasure event names but that are still stored (the
    /// process stopped between the event and the deletion) are destroyed
    /// now.
    pub async fn settle(
        &mut self,
        storage: &dyn Storage,
        walked: &Walked,
    ) -> Result<(), StorageError> {
        self.note_key_id(walked.highest_key_id);
        let leftover: Vec<u32> = walked
            .destroyed
            .iter()
            .copied()
            .filter(|id| self.keys.contains_key(id))
            .collect();
        if !leftover.is_empty() {
            tracing::warn!(keys = leftover.len(), "finishing an interrupted erasure");
            storage.destroy_data_keys(&leftover).await?;
            self.forget(&leftover);
        }
        Ok(())
    }

    pub fn root(&self) -> &DataKey {
        &self.root
    }

    /// The key record `key_id` is sealed under, if it still exists.
    pub fn get(&self, key_id: u32) -> Option<&DataKey> {
        if key_id == LEGACY_KEY_ID {
            return Some(&self.root);
        }
        self.keys.get(&key_id).map(|e| &e.key)
    }

    /// The scope key `key_id` serves, if it still exists.
    pub fn scope_of(&self, key_id: u32) -> Option<&KeyScope> {
        self.keys.get(&key_id).map(|e| &e.scope)
    }

    /// Keeps new ids above `key_id`: seen in the log, perhaps of a key
    /// destroyed since.
    pub fn note_key_id(&mut self, key_id: u32) {
        self.next_id = self.next_id.max(key_id.saturating_add(1));
    }

    /// The key id that seals new records of `scope`, creating the key if the
    /// scope has none: then also its wrapped form, which must be stored
    /// before any record sealed under it is committed.
    pub fn current(&mut self, scope: &KeyScope) -> (u32, Option<StoredDataKey>) {
        if let Some(&id) = self.current.get(scope) {
            return (id, None);
        }
        let key_id = self.next_id;
        self.next_id += 1;
        let key = DataKey {
            key_id,
            key: crypto::random_key(),
            store_id: self.root.store_id,
        };
        let stored = StoredDataKey {
            key_id,
            wrapped: self.wrap(&key, scope),
            retired: false,
        };
        self.keys.insert(
            key_id,
            Entry {
                scope: scope.clone(),
                key,
                retired: false,
            },
        );
        self.current.insert(scope.clone(), key_id);
        (key_id, Some(stored))
    }

    /// Every live key an erasure of `source` / `type_id` destroys.
    pub fn erased_by(&self, source: Option<&str>, type_id: Option<&str>) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .keys
            .iter()
            .filter(|(_, e)| e.scope.erased_by(source, type_id))
            .map(|(&id, _)| id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// New records of the scopes of `key_ids` get fresh keys from now on.
    pub fn stop_using(&mut self, key_ids: &[u32]) {
        self.current.retain(|_, id| !key_ids.contains(id));
    }

    /// Drops destroyed keys from memory (zeroised on drop).
    pub fn forget(&mut self, key_ids: &[u32]) {
        self.stop_using(key_ids);
        for id in key_ids {
            self.keys.remove(id);
        }
    }

    /// Rotation: every key in use is retired; new records get new keys,
    /// old records keep opening under the old ones.
    pub fn retire_all(&mut self) {
        for e in self.keys.values_mut() {
            e.retired = true;
        }
        self.current.clear();
    }

    /// Ids of keys that seal new records, by scope (for tests and status).
    pub fn current_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.current.values().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// How many keys are open, retired ones included.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// How many open keys are retired.
    pub fn retired_count(&self) -> usize {
        self.keys.values().filter(|e| e.retired).count()
    }

    fn wrap(&self, key: &DataKey, scope: &KeyScope) -> Vec<u8> {
        let mut plain = Zeroizing::new(Vec::with_capacity(KEY_LEN + 64));
        plain.extend_from_slice(key.key.as_ref());
        let scope = Zeroizing::new(postcard::to_stdvec(scope).expect("scopes serialise"));
        plain.extend_from_slice(&scope);
        crypto::seal(
            &self.wrap_key,
            &wrap_aad(&self.root.store_id, key.key_id),
            &plain,
        )
    }

    fn unwrap(&self, key_id: u32, wrapped: &[u8]) -> Result<(DataKey, KeyScope), CryptoError> {
        open_wrapped(&self.root, key_id, wrapped)
    }
}

/// Opens one wrapped data key with the root key: its key and scope.
pub fn open_wrapped(
    root: &DataKey,
    key_id: u32,
    wrapped: &[u8],
) -> Result<(DataKey, KeyScope), CryptoError> {
    if key_id == LEGACY_KEY_ID {
        return Err(CryptoError::Malformed);
    }
    let wrap_key = root.derive(WRAP_LABEL);
    let plain = crypto::open(&wrap_key, &wrap_aad(&root.store_id, key_id), wrapped)?;
    if plain.len() < KEY_LEN {
        return Err(CryptoError::Malformed);
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(&plain[..KEY_LEN]);
    let scope: KeyScope =
        postcard::from_bytes(&plain[KEY_LEN..]).map_err(|_| CryptoError::Malformed)?;
    Ok((
        DataKey {
            key_id,
            key,
            store_id: root.store_id,
        },
        scope,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_reopen_with_their_scope_and_only_under_their_own_id() {
        let root = DataKey::generate();
        let mut ring = DataKeys::open(clone_root(&root), &[]).unwrap();
        let scope = KeyScope::samples("app_x", "step_count");
        let (id, stored) = ring.current(&scope);
        let stored = stored.expect("a new key");
        assert_eq!(
            ring.current(&scope),
            (id, None),
            "the same key until rotation"
        );
        let (key, back) = open_wrapped(&root, id, &stored.wrapped).unwrap();
        assert_eq!(back, scope);
        assert_eq!(key.key.as_ref(), ring.get(id).unwrap().key.as_ref());
        assert!(open_wrapped(&root, id + 1, &stored.wrapped).is_err());
        assert!(open_wrapped(&DataKey::generate(), id, &stored.wrapped).is_err());

        let reopened = DataKeys::open(clone_root(&root), &[stored]).unwrap();
        assert_eq!(reopened.current_ids(), vec![id]);
    }

    #[test]
    fn rotation_and_erasure_never_reuse_an_id() {
        let mut ring = DataKeys::open(DataKey::generate(), &[]).unwrap();
        let steps = KeyScope::samples("app_x", "step_count");
        let heart = KeyScope::samples("app_x", "heart_rate");
        let other = KeyScope::samples("app_y", "step_count");
        let (a, _) = ring.current(&steps);
        let (b, _) = ring.current(&heart);
        let (c, _) = ring.current(&other);
        let (m, _) = ring.current(&KeyScope::Management);
        assert_eq!(ring.erased_by(Some("app_x"), None), vec![a, b]);
        assert_eq!(ring.erased_by(None, Some("step_count")), vec![a, c]);
        assert!(ring.erased_by(None, None).is_empty());
        ring.retire_all();
        let (a2, _) = ring.current(&steps);
        assert!(a2 > m, "a rotated scope gets a new id");
        assert!(ring.get(a).is_some(), "retired keys still open old records");
        ring.forget(&[a, a2]);
        assert!(ring.get(a).is_none());
        let (a3, _) = ring.current(&steps);
        assert!(a3 > a2);
        assert!(
            ring.get(LEGACY_KEY_ID).is_some(),
            "the root key opens old records"
        );
    }

    fn clone_root(root: &DataKey) -> DataKey {
        DataKey {
            key_id: root.key_id,
            key: root.key.clone(),
            store_id: root.store_id,
        }
    }
}
