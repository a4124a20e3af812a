//! The lock model: uninitialised → sealed → unlocked ⇄ locked.
//!
//! The states, what may fail between them, the back-off after wrong secrets,
//! the idle lock, and how a passphrase opens the keyring. Keys and the
//! projection exist only in `Unlocked`. The handle that holds the state and
//! performs the transitions is [`crate::store::Store`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::crypto::{self, DataKey, KdfParams};
use crate::log::replay::ReplayError;
use crate::storage::{Keyring, Storage, StorageError};
use crate::store::{OpenStore, Store};

/// The longest back-off after wrong passphrases.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Shortest accepted passphrase.
pub const MIN_PASSPHRASE_CHARS: usize = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LockStateName {
    Uninitialised,
    Sealed,
    Locked,
    Unlocked,
}

/// Where a store is in its lifecycle; what it holds in each state.
pub(crate) enum LockState {
    Uninitialised { setup_code: Zeroizing<String> },
    Sealed,
    Locked,
    Unlocked(Arc<OpenStore>),
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("wrong passphrase")]
    WrongPassphrase,
    #[error("wrong setup code")]
    WrongSetupCode,
    #[error("too many failed attempts; retry later")]
    BackOff { retry_after: Duration },
    #[error("the store is already initialised")]
    AlreadyInitialised,
    #[error("the store is not initialised")]
    NotInitialised,
    #[error("passphrase must have at least {MIN_PASSPHRASE_CHARS} characters")]
    WeakPassphrase,
    #[error("the log failed verification at record {seq}: {detail}")]
    Tampered { seq: u64, detail: String },
    #[error("storage: {0}")]
    Storage(String),
}

impl From<StorageError> for LockError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::AlreadyInitialised => LockError::AlreadyInitialised,
            StorageError::NotInitialised => LockError::NotInitialised,
            e => LockError::Storage(e.to_string()),
        }
    }
}

/// Why a request cannot be served in the current state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unavailable {
    Uninitialised,
    Sealed,
    Locked,
}

/// Growing delays after failed passphrase or setup-code attempts.
#[derive(Default)]
pub(crate) struct Backoff {
    failures: u32,
    not_before: Option<Instant>,
}

impl Backoff {
    pub(crate) fn check(&self) -> Result<(), LockError> {
        match self.not_before {
            Some(t) if t > Instant::now() => Err(LockError::BackOff {
                retry_after: t - Instant::now(),
            }),
            _ => Ok(()),
        }
    }

    pub(crate) fn fail(&mut self) {
        self.failures = self.failures.saturating_add(1);
        let delay = Duration::from_millis(500)
            .saturating_mul(1 << self.failures.min(16).saturating_sub(1))
            .min(MAX_BACKOFF);
        self.not_before = Some(Instant::now() + delay);
    }
}

/// Creates the keyring: Argon2id KEK from the passphrase wraps a fresh data key.
pub async fn initialise(
    storage: &dyn Storage,
    passphrase: &str,
    kdf: KdfParams,
) -> Result<(), LockError> {
    if passphrase.chars().count() < MIN_PASSPHRASE_CHARS {
        return Err(LockError::WeakPassphrase);
    }
    if storage.keyring().await?.is_some() {
        return Err(LockError::AlreadyInitialised);
    }
    let salt = crypto::random_bytes::<{ crypto::SALT_LEN }>();
    let pass = Zeroizing::new(passphrase.as_bytes().to_vec());
    let kek = tokio::task::spawn_blocking(move || crypto::derive_kek(&pass, &salt, kdf))
        .await
        .expect("key derivation task")
        .map_err(|e| LockError::Storage(e.to_string()))?;
    let data_key = DataKey::generate();
    storage
        .initialise(&Keyring {
            kdf,
            salt: salt.to_vec(),
            wrapped_keys: vec![(data_key.key_id, data_key.wrap(&kek))],
        })
        .await?;
    Ok(())
}

/// Opens the data key with `passphrase`; `None` if it is wrong.
pub async fn open_data_key(
    storage: &dyn Storage,
    passphrase: &str,
) -> Result<Option<DataKey>, LockError> {
    let keyring = storage.keyring().await?.ok_or(LockError::NotInitialised)?;
    let pass = Zeroizing::new(passphrase.as_bytes().to_vec());
    let salt = keyring.salt.clone();
    let kek = tokio::task::spawn_blocking(move || crypto::derive_kek(&pass, &salt, keyring.kdf))
        .await
        .expect("key derivation task")
        .map_err(|e| LockError::Storage(e.to_string()))?;
    for (key_id, wrapped) in &keyring.wrapped_keys {
        if let Ok(key) = DataKey::unwrap(&kek, *key_id, wrapped) {
            return Ok(Some(key));
        }
    }
    Ok(None)
}

/// Locks the store after `timeout` without activity.
pub fn spawn_idle_lock(store: Arc<Store>, timeout: Duration) {
    tokio::spawn(async move {
        let tick = (timeout / 4).clamp(Duration::from_millis(200), Duration::from_secs(15));
        loop {
            tokio::time::sleep(tick).await;
            if store.state() == LockStateName::Unlocked && store.idle_for() >= timeout {
                tracing::info!("idle timeout reached");
                store.lock().await;
            }
        }
    });
}

impl ReplayError {
    pub fn into_lock_error(self) -> LockError {
        match self.bad_seq() {
            Some(seq) => LockError::Tampered {
                seq,
                detail: self.to_string(),
            },
            None => LockError::Storage(self.to_string()),
        }
    }
}
