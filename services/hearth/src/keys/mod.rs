//! The key hierarchy: the root key, the key slots that wrap it, and the
//! owner's operations on them (passphrase change, recovery key, unattended
//! key files). `docs/keys.md` describes the whole of it.
//!
//! The root key is made once at setup and never changes: every slot wraps
//! the same root key and store id under its own key-encryption key (KEK).
//! A slot's additional data binds its id, kind, KDF and salt, so a slot
//! edited in the database fails to open exactly as a wrong secret does.

pub mod data_keys;
mod recovery;

use zeroize::Zeroizing;

use crate::crypto::{self, CryptoError, DataKey, KdfParams, SecretKey, KEY_LEN, STORE_ID_LEN};
use crate::lock::{Client, LockError, MIN_PASSPHRASE_CHARS};
use crate::storage::{KeySlotRow, Keyring, Storage};
use crate::store::Store;

pub use recovery::RecoveryKey;

/// The store's root key and store id. Subkeys come from
/// [`DataKey::derive`] with a `hearth/<purpose>/v1` label.
pub type RootKey = DataKey;

/// HKDF info turning a random slot secret into its KEK.
const SLOT_KEK_LABEL: &[u8] = b"hearth/keyslot-kek/v1";
/// Prefix of a slot's additional data.
const SLOT_AAD_LABEL: &[u8] = b"hearth/keyslot/v1";
/// First line of a key file, before the slot id and the key.
const KEY_FILE_PREFIX: &str = "hearth-key-v1:";
const SALT_LEN: usize = crypto::SALT_LEN;

/// The slots every store has from setup on.
const PASSPHRASE_SLOT_ID: i64 = 1;
const RECOVERY_SLOT_ID: i64 = 2;

/// What a slot is opened with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SlotKind {
    /// The owner's passphrase, through Argon2id.
    Passphrase,
    /// The recovery key shown once at setup (or at its re-creation).
    Recovery,
    /// A random key in a file, for unattended unlock.
    KeyFile,
}

impl SlotKind {
    fn as_str(self) -> &'static str {
        match self {
            SlotKind::Passphrase => "passphrase",
            SlotKind::Recovery => "recovery",
            SlotKind::KeyFile => "key_file",
        }
    }

    fn parse(s: &str) -> Option<SlotKind> {
        [SlotKind::Passphrase, SlotKind::Recovery, SlotKind::KeyFile]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// A secret someone offers to open the store.
#[derive(Clone, Copy)]
pub enum Secret<'a> {
    Passphrase(&'a str),
    RecoveryKey(&'a str),
    /// The contents of a key file (`hearth-key-v1:ID:KEY`).
    KeyFile(&'a str),
}

impl Secret<'_> {
    /// The error a secret of this kind gets when it opens nothing.
    pub(crate) fn wrong(self) -> LockError {
        match self {
            Secret::Passphrase(_) => LockError::WrongPassphrase,
            Secret::RecoveryKey(_) => LockError::WrongRecoveryKey,
            Secret::KeyFile(_) => LockError::WrongKeyFile,
        }
    }
}

/// Whether `text` (a key file's contents) is in the key-file format rather
/// than a passphrase kept in a file, as stores from before key slots did.
pub fn is_key_file(text: &str) -> bool {
    text.trim().starts_with(KEY_FILE_PREFIX)
}

/// How a slot's KEK is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotKdf {
    Argon2id(KdfParams),
    /// For random secrets of 160 bits or more: no stretching needed.
    HkdfSha256,
}

/// A key slot, its stored numbers checked.
struct Slot {
    id: i64,
    kind: SlotKind,
    kdf: SlotKdf,
    salt: Vec<u8>,
    wrapped_root: Vec<u8>,
}

/// A slot as the owner sees it: nothing secret.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SlotInfo {
    pub id: i64,
    pub kind: SlotKind,
}

fn invalid_slot(id: i64, why: impl std::fmt::Display) -> LockError {
    LockError::KeySlot(format!("key slot {id} is invalid: {why}"))
}

impl Slot {
    /// Checks what storage holds: the kind and KDF are known, and Argon2id's
    /// parameters are within bounds before anything is allocated for them.
    fn from_row(row: &KeySlotRow) -> Result<Slot, LockError> {
        let id = row.slot_id;
        let kind = SlotKind::parse(&row.kind).ok_or_else(|| invalid_slot(id, "unknown kind"))?;
        let kdf = match row.kdf.as_str() {
            "argon2id" => {
                let param = |v: i64, what: &str| {
                    u32::try_from(v).map_err(|_| {
                        invalid_slot(id, format!("KDF parameters out of bounds: {what} {v}"))
                    })
                };
                let params = KdfParams {
                    memory_kib: param(row.kdf_memory_kib, "memory_kib")?,
                    iterations: param(row.kdf_iterations, "iterations")?,
                    parallelism: param(row.kdf_parallelism, "parallelism")?,
                };
                params.check_bounds().map_err(|e| invalid_slot(id, e))?;
                SlotKdf::Argon2id(params)
            }
            "hkdf-sha256" => SlotKdf::HkdfSha256,
            other => return Err(invalid_slot(id, format!("unknown KDF {other:?}"))),
        };
        if row.salt.len() != SALT_LEN {
            return Err(invalid_slot(id, "salt length"));
        }
        Ok(Slot {
            id,
            kind,
            kdf,
            salt: row.salt.clone(),
            wrapped_root: row.wrapped_root.clone(),
        })
    }

    fn to_row(&self) -> KeySlotRow {
        let (kdf, params) = match self.kdf {
            SlotKdf::Argon2id(p) => ("argon2id", p),
            SlotKdf::HkdfSha256 => (
                "hkdf-sha256",
                KdfParams {
                    memory_kib: 0,
                    iterations: 0,
                    parallelism: 0,
                },
            ),
        };
        KeySlotRow {
            slot_id: self.id,
            kind: self.kind.as_str().to_string(),
            kdf: kdf.to_string(),
            kdf_memory_kib: params.memory_kib.into(),
            kdf_iterations: params.iterations.into(),
            kdf_parallelism: params.parallelism.into(),
            salt: self.salt.clone(),
            wrapped_root: self.wrapped_root.clone(),
        }
    }

    /// Binds everything stored in the clear beside the wrap.
    fn aad(&self) -> Vec<u8> {
        let row = self.to_row();
        let mut aad = SLOT_AAD_LABEL.to_vec();
        aad.extend_from_slice(&row.slot_id.to_be_bytes());
        for text in [row.kind.as_bytes(), row.kdf.as_bytes(), &row.salt] {
            aad.extend_from_slice(&(text.len() as u32).to_be_bytes());
            aad.extend_from_slice(text);
        }
        for n in [row.kdf_memory_kib, row.kdf_iterations, row.kdf_parallelism] {
            aad.extend_from_slice(&n.to_be_bytes());
        }
        aad
    }

    /// The KEK for `secret`; Argon2id runs off the async threads.
    async fn kek(&self, secret: &[u8]) -> Result<SecretKey, LockError> {
        match self.kdf {
            SlotKdf::HkdfSha256 => Ok(hkdf_kek(&self.salt, secret)),
            SlotKdf::Argon2id(params) => {
                let secret = Zeroizing::new(secret.to_vec());
                let salt = self.salt.clone();
                let id = self.id;
                tokio::task::spawn_blocking(move || crypto::derive_kek(&secret, &salt, params))
                    .await
                    .expect("key derivation task")
                    .map_err(|e| match e {
                        CryptoError::OutOfBounds(_) | CryptoError::Kdf(_) => invalid_slot(id, e),
                        e => LockError::Storage(e.to_string()),
                    })
            }
        }
    }

    /// A new slot wrapping `root` under `secret`.
    async fn seal(
        id: i64,
        kind: SlotKind,
        kdf: SlotKdf,
        secret: &[u8],
        root: &RootKey,
    ) -> Result<Slot, LockError> {
        let mut slot = Slot {
            id,
            kind,
            kdf,
            salt: crypto::random_bytes::<SALT_LEN>().to_vec(),
            wrapped_root: Vec::new(),
        };
        let kek = slot.kek(secret).await?;
        let mut plain = Zeroizing::new(Vec::with_capacity(KEY_LEN + STORE_ID_LEN));
        plain.extend_from_slice(root.key.as_ref());
        plain.extend_from_slice(&root.store_id);
        slot.wrapped_root = crypto::seal(&kek, &slot.aad(), &plain);
        Ok(slot)
    }

    /// The root key, if `secret` opens this slot.
    async fn open(&self, secret: &[u8]) -> Result<Option<RootKey>, LockError> {
        let kek = self.kek(secret).await?;
        let Ok(plain) = crypto::open(&kek, &self.aad(), &self.wrapped_root) else {
            return Ok(None);
        };
        if plain.len() != KEY_LEN + STORE_ID_LEN {
            return Err(invalid_slot(self.id, "wrapped key length"));
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(&plain[..KEY_LEN]);
        let mut store_id = [0u8; STORE_ID_LEN];
        store_id.copy_from_slice(&plain[KEY_LEN..]);
        Ok(Some(DataKey {
            key_id: crypto::FIRST_KEY_ID,
            key,
            store_id,
        }))
    }
}

fn hkdf_kek(salt: &[u8], secret: &[u8]) -> SecretKey {
    let mut kek = Zeroizing::new([0u8; KEY_LEN]);
    hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), secret)
        .expand(SLOT_KEK_LABEL, kek.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    kek
}

/// A key file's slot id and key.
fn parse_key_file(text: &str) -> Option<(i64, SecretKey)> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let rest = text.trim().strip_prefix(KEY_FILE_PREFIX)?;
    let (id, key) = rest.split_once(':')?;
    let id: i64 = id.parse().ok()?;
    let bytes = Zeroizing::new(URL_SAFE_NO_PAD.decode(key).ok()?);
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    if bytes.len() != KEY_LEN {
        return None;
    }
    out.copy_from_slice(&bytes);
    Some((id, out))
}

fn key_file_text(id: i64, key: &[u8; KEY_LEN]) -> Zeroizing<String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    Zeroizing::new(format!(
        "{KEY_FILE_PREFIX}{id}:{}\n",
        Zeroizing::new(URL_SAFE_NO_PAD.encode(key)).as_str()
    ))
}

fn slots_of(keyring: &Keyring) -> Result<Vec<Slot>, LockError> {
    keyring.keyslots.iter().map(Slot::from_row).collect()
}

fn next_slot_id(keyring: &Keyring) -> i64 {
    keyring
        .keyslots
        .iter()
        .map(|s| s.slot_id)
        .max()
        .unwrap_or(RECOVERY_SLOT_ID)
        .max(RECOVERY_SLOT_ID)
        + 1
}

async fn keyring(storage: &dyn Storage) -> Result<Keyring, LockError> {
    storage.keyring().await?.ok_or(LockError::NotInitialised)
}

/// Creates the store: a root key, its passphrase slot and its recovery slot.
/// Returns the recovery key, to be shown once.
pub async fn initialise(
    storage: &dyn Storage,
    passphrase: &str,
    kdf: KdfParams,
) -> Result<RecoveryKey, LockError> {
    check_passphrase(passphrase)?;
    kdf.check_bounds()
        .map_err(|e| LockError::Storage(e.to_string()))?;
    if storage.keyring().await?.is_some() {
        return Err(LockError::AlreadyInitialised);
    }
    let root = DataKey::generate();
    let passphrase_slot = Slot::seal(
        PASSPHRASE_SLOT_ID,
        SlotKind::Passphrase,
        SlotKdf::Argon2id(kdf),
        passphrase.as_bytes(),
        &root,
    )
    .await?;
    let recovery = RecoveryKey::generate();
    let recovery_slot = Slot::seal(
        RECOVERY_SLOT_ID,
        SlotKind::Recovery,
        SlotKdf::HkdfSha256,
        recovery.bytes(),
        &root,
    )
    .await?;
    storage
        .initialise(&Keyring {
            kdf,
            salt: passphrase_slot.salt.clone(),
            wrapped_keys: Vec::new(),
            keyslots: vec![passphrase_slot.to_row(), recovery_slot.to_row()],
        })
        .await?;
    Ok(recovery)
}

fn check_passphrase(passphrase: &str) -> Result<(), LockError> {
    if passphrase.chars().count() < MIN_PASSPHRASE_CHARS {
        return Err(LockError::WeakPassphrase);
    }
    Ok(())
}

/// Opens the root key with `secret`: `None` if it opens no slot. A slot
/// whose stored numbers are out of bounds is an error, not a wrong secret.
pub async fn open_root(
    storage: &dyn Storage,
    secret: Secret<'_>,
) -> Result<Option<RootKey>, LockError> {
    let keyring = keyring(storage).await?;
    if keyring.keyslots.is_empty() {
        return open_legacy(&keyring, secret).await;
    }
    let slots = slots_of(&keyring)?;
    let (kind, id, bytes): (SlotKind, Option<i64>, Zeroizing<Vec<u8>>) = match secret {
        Secret::Passphrase(p) => (
            SlotKind::Passphrase,
            None,
            Zeroizing::new(p.as_bytes().to_vec()),
        ),
        Secret::RecoveryKey(text) => (
            SlotKind::Recovery,
            None,
            Zeroizing::new(RecoveryKey::parse(text)?.bytes().to_vec()),
        ),
        Secret::KeyFile(text) => {
            let Some((id, key)) = parse_key_file(text) else {
                return Ok(None);
            };
            (SlotKind::KeyFile, Some(id), Zeroizing::new(key.to_vec()))
        }
    };
    for slot in slots
        .iter()
        .filter(|s| s.kind == kind && id.is_none_or(|id| id == s.id))
    {
        if let Some(root) = slot.open(&bytes).await? {
            return Ok(Some(root));
        }
    }
    Ok(None)
}

/// A store from before key slots: the root key wrapped under the passphrase
/// alone, its KDF parameters in `store_meta`.
async fn open_legacy(keyring: &Keyring, secret: Secret<'_>) -> Result<Option<RootKey>, LockError> {
    let Secret::Passphrase(passphrase) = secret else {
        return Ok(None);
    };
    let pass = Zeroizing::new(passphrase.as_bytes().to_vec());
    let salt = keyring.salt.clone();
    let kdf = keyring.kdf;
    let kek = tokio::task::spawn_blocking(move || crypto::derive_kek(&pass, &salt, kdf))
        .await
        .expect("key derivation task")
        .map_err(|e| LockError::KeySlot(format!("the store's passphrase wrap is invalid: {e}")))?;
    Ok(keyring
        .wrapped_keys
        .iter()
        .find_map(|(key_id, wrapped)| DataKey::unwrap(&kek, *key_id, wrapped).ok()))
}

/// After a passphrase opened a store from before key slots: writes its
/// passphrase slot and deletes the old wrap, so only slots open it from now
/// on. Nothing when the store has slots.
pub async fn adopt_legacy(
    storage: &dyn Storage,
    passphrase: &str,
    root: &RootKey,
    kdf: KdfParams,
) -> Result<(), LockError> {
    if !keyring(storage).await?.keyslots.is_empty() {
        return Ok(());
    }
    let slot = Slot::seal(
        PASSPHRASE_SLOT_ID,
        SlotKind::Passphrase,
        SlotKdf::Argon2id(kdf),
        passphrase.as_bytes(),
        root,
    )
    .await?;
    storage.adopt_legacy_root_wrap(&slot.to_row()).await?;
    tracing::info!("the store's passphrase wrap moved to a key slot");
    Ok(())
}

/// Whether the store has a key-file slot: then a key file must be one.
pub async fn has_key_file_slot(storage: &dyn Storage) -> Result<bool, LockError> {
    Ok(keyring(storage)
        .await?
        .keyslots
        .iter()
        .any(|s| s.kind == SlotKind::KeyFile.as_str()))
}

/// Re-wraps the passphrase slot under `new` (fresh salt, the server's
/// Argon2id parameters). `current` is the passphrase or the recovery key.
pub async fn change_passphrase(
    store: &Store,
    current: Secret<'_>,
    new: &str,
    client: Client,
) -> Result<(), LockError> {
    check_passphrase(new)?;
    let (root, storage, _gate) = store.owner_root(current, client).await?;

    let keyring = keyring(storage).await?;
    let id = keyring
        .keyslots
        .iter()
        .find(|s| s.kind == SlotKind::Passphrase.as_str())
        .map_or(PASSPHRASE_SLOT_ID, |s| s.slot_id);
    let slot = Slot::seal(
        id,
        SlotKind::Passphrase,
        SlotKdf::Argon2id(store.kdf()),
        new.as_bytes(),
        &root,
    )
    .await?;
    storage.put_keyslot(&slot.to_row()).await?;
    tracing::info!("passphrase changed");
    Ok(())
}

/// Replaces the recovery slot with a new random key; the old one stops
/// opening the store. Returns the new key, to be shown once.
pub async fn recreate_recovery_key(
    store: &Store,
    current: Secret<'_>,
    client: Client,
) -> Result<RecoveryKey, LockError> {
    let (root, storage, _gate) = store.owner_root(current, client).await?;

    let keyring = keyring(storage).await?;
    let id = keyring
        .keyslots
        .iter()
        .find(|s| s.kind == SlotKind::Recovery.as_str())
        .map_or_else(|| next_slot_id(&keyring), |s| s.slot_id);
    let recovery = RecoveryKey::generate();
    let slot = Slot::seal(
        id,
        SlotKind::Recovery,
        SlotKdf::HkdfSha256,
        recovery.bytes(),
        &root,
    )
    .await?;
    storage.put_keyslot(&slot.to_row()).await?;
    tracing::info!("recovery key re-created");
    Ok(recovery)
}

/// A new key-file slot; returns its id and the file's contents.
pub async fn add_key_file_slot(
    store: &Store,
    current: Secret<'_>,
    client: Client,
) -> Result<(i64, Zeroizing<String>), LockError> {
    let (root, storage, _gate) = store.owner_root(current, client).await?;

    let id = next_slot_id(&keyring(storage).await?);
    let key = crypto::random_key();
    let slot = Slot::seal(id, SlotKind::KeyFile, SlotKdf::HkdfSha256, &*key, &root).await?;
    storage.put_keyslot(&slot.to_row()).await?;
    tracing::info!(slot = id, "key-file slot added");
    Ok((id, key_file_text(id, &key)))
}

/// Every slot, without secrets.
pub async fn list_slots(storage: &dyn Storage) -> Result<Vec<SlotInfo>, LockError> {
    Ok(slots_of(&keyring(storage).await?)?
        .into_iter()
        .map(|s| SlotInfo {
            id: s.id,
            kind: s.kind,
        })
        .collect())
}

/// Deletes a key-file slot: its file no longer opens the store. The
/// passphrase and recovery slots are changed, never revoked.
pub async fn revoke_key_file_slot(storage: &dyn Storage, id: i64) -> Result<(), LockError> {
    let keyring = keyring(storage).await?;
    if !keyring
        .keyslots
        .iter()
        .any(|s| s.slot_id == id && s.kind == SlotKind::KeyFile.as_str())
    {
        return Err(LockError::NoSuchKeySlot(id));
    }
    if !storage.delete_keyslot(id).await? {
        return Err(LockError::NoSuchKeySlot(id));
    }
    tracing::info!(slot = id, "key-file slot revoked");
    Ok(())
}

/// Creates a key-file slot straight in storage (for `hearth init`, before
/// any server runs), opening the root key with the passphrase.
pub async fn add_key_file_slot_offline(
    storage: &dyn Storage,
    passphrase: &str,
) -> Result<(i64, Zeroizing<String>), LockError> {
    let root = open_root(storage, Secret::Passphrase(passphrase))
        .await?
        .ok_or(LockError::WrongPassphrase)?;
    let id = next_slot_id(&keyring(storage).await?);
    let key = crypto::random_key();
    let slot = Slot::seal(id, SlotKind::KeyFile, SlotKdf::HkdfSha256, &*key, &root).await?;
    storage.put_keyslot(&slot.to_row()).await?;
    Ok((id, key_file_text(id, &key)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[tokio::test]
    async fn a_slot_opens_with_its_secret_only_and_binds_its_numbers() {
        let root = DataKey::generate();
        let slot = Slot::seal(
            1,
            SlotKind::Passphrase,
            SlotKdf::Argon2id(FAST),
            b"pw-1",
            &root,
        )
        .await
        .unwrap();
        let back = slot.open(b"pw-1").await.unwrap().unwrap();
        assert_eq!(back.key.as_ref(), root.key.as_ref());
        assert_eq!(back.store_id, root.store_id);
        assert!(slot.open(b"pw-2").await.unwrap().is_none());

        let mut tampered = slot.to_row();
        tampered.kdf_memory_kib = 128;
        let tampered = Slot::from_row(&tampered).unwrap();
        assert!(tampered.open(b"pw-1").await.unwrap().is_none());

        let mut moved = slot.to_row();
        moved.slot_id = 5;
        assert!(Slot::from_row(&moved)
            .unwrap()
            .open(b"pw-1")
            .await
            .unwrap()
            .is_none());

        let mut huge = slot.to_row();
        huge.kdf_memory_kib = i64::from(u32::MAX);
        assert!(matches!(
            Slot::from_row(&huge),
            Err(LockError::KeySlot(m)) if m.contains("out of bounds")
        ));
        huge.kdf_memory_kib = -1;
        assert!(Slot::from_row(&huge).is_err());
    }

    #[test]
    fn key_files_round_trip_and_passphrases_are_not_key_files() {
        let key = crypto::random_key();
        let text = key_file_text(7, &key);
        assert!(is_key_file(&text));
        let (id, back) = parse_key_file(&text).unwrap();
        assert_eq!((id, back.as_ref()), (7, key.as_ref()));
        assert!(!is_key_file("correct horse battery staple"));
        assert!(parse_key_file("hearth-key-v1:7:short").is_none());
    }
}
