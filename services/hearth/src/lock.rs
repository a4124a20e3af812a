//! The lock model: uninitialised → sealed → unlocked ⇄ locked.
//!
//! Keys and the projection exist only in `Unlocked`. Every transition goes
//! through this file.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use parking_lot::{Mutex, RwLock};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracing::Instrument;
use zeroize::Zeroizing;

use crate::apps::Apps;
use crate::crypto::{self, DataKey, KdfParams};
use crate::log::replay::{replay, ReplayError};
use crate::log::writer::Writer;
use crate::projection::Projection;
use crate::storage::{Keyring, Storage, StorageError};

/// How long an owner session lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
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

/// What an unlocked store holds; dropped (and wiped) at lock.
pub struct OpenStore {
    pub projection: Arc<Projection>,
    pub writer: Writer,
}

enum LockState {
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
struct Backoff {
    failures: u32,
    not_before: Option<Instant>,
}

impl Backoff {
    fn check(&self) -> Result<(), LockError> {
        match self.not_before {
            Some(t) if t > Instant::now() => Err(LockError::BackOff {
                retry_after: t - Instant::now(),
            }),
            _ => Ok(()),
        }
    }

    fn fail(&mut self) {
        self.failures = self.failures.saturating_add(1);
        let delay = Duration::from_millis(500)
            .saturating_mul(1 << self.failures.min(16).saturating_sub(1))
            .min(MAX_BACKOFF);
        self.not_before = Some(Instant::now() + delay);
    }
}

pub struct Store {
    storage: Arc<dyn Storage>,
    kdf: KdfParams,
    state: RwLock<LockState>,
    /// One key derivation at a time: Argon2id is the expensive part.
    gate: tokio::sync::Mutex<()>,
    backoff: Mutex<Backoff>,
    /// SHA-256 of owner session tokens, with expiry.
    sessions: Mutex<Vec<([u8; 32], Instant)>>,
    last_activity_ms: AtomicI64,
    started: Instant,
    /// Apps, grants and token state: kept across lock, rebuilt at unlock.
    apps: Arc<Apps>,
}

/// An owner session token, handed out once.
pub struct SessionToken(pub Zeroizing<String>);

fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
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

impl Store {
    /// A store for `storage` as it is at process start: sealed, or
    /// uninitialised with a fresh one-time setup code.
    pub async fn open(storage: Arc<dyn Storage>, kdf: KdfParams) -> Result<Store, LockError> {
        let state = if storage.keyring().await?.is_some() {
            LockState::Sealed
        } else {
            let code = crypto::random_bytes::<15>();
            LockState::Uninitialised {
                setup_code: Zeroizing::new(URL_SAFE_NO_PAD.encode(code)),
            }
        };
        Ok(Store {
            storage,
            kdf,
            state: RwLock::new(state),
            gate: tokio::sync::Mutex::new(()),
            backoff: Mutex::new(Backoff::default()),
            sessions: Mutex::new(Vec::new()),
            last_activity_ms: AtomicI64::new(0),
            started: Instant::now(),
            apps: Arc::new(Apps::default()),
        })
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The app registry; empty until the first unlock since process start.
    pub fn apps(&self) -> &Arc<Apps> {
        &self.apps
    }

    /// Whether the registry has been loaded (the store was unlocked once).
    pub fn registry_loaded(&self) -> bool {
        matches!(
            &*self.state.read(),
            LockState::Unlocked(_) | LockState::Locked
        )
    }

    /// The setup code to print on the console, while uninitialised.
    pub fn setup_code(&self) -> Option<String> {
        match &*self.state.read() {
            LockState::Uninitialised { setup_code } => Some(setup_code.to_string()),
            _ => None,
        }
    }

    pub fn state(&self) -> LockStateName {
        match &*self.state.read() {
            LockState::Uninitialised { .. } => LockStateName::Uninitialised,
            LockState::Sealed => LockStateName::Sealed,
            LockState::Locked => LockStateName::Locked,
            LockState::Unlocked(_) => LockStateName::Unlocked,
        }
    }

    /// The open store, or why there is none.
    pub fn open_store(&self) -> Result<Arc<OpenStore>, Unavailable> {
        match &*self.state.read() {
            LockState::Unlocked(open) => {
                self.touch();
                Ok(open.clone())
            }
            LockState::Uninitialised { .. } => Err(Unavailable::Uninitialised),
            LockState::Sealed => Err(Unavailable::Sealed),
            LockState::Locked => Err(Unavailable::Locked),
        }
    }

    /// First-run setup with the console's code; leaves the store unlocked.
    pub async fn setup(&self, code: &str, passphrase: &str) -> Result<SessionToken, LockError> {
        let _gate = self.gate.lock().await;
        self.backoff.lock().check()?;
        let matches = match &*self.state.read() {
            LockState::Uninitialised { setup_code } => {
                bool::from(setup_code.as_bytes().ct_eq(code.as_bytes()))
            }
            _ => return Err(LockError::AlreadyInitialised),
        };
        if !matches {
            self.backoff.lock().fail();
            return Err(LockError::WrongSetupCode);
        }
        initialise(&*self.storage, passphrase, self.kdf).await?;
        *self.state.write() = LockState::Sealed;
        self.unlock_locked(passphrase).await
    }

    pub async fn unlock(&self, passphrase: &str) -> Result<SessionToken, LockError> {
        let _gate = self.gate.lock().await;
        self.backoff.lock().check()?;
        self.unlock_locked(passphrase).await
    }

    async fn unlock_locked(&self, passphrase: &str) -> Result<SessionToken, LockError> {
        if matches!(&*self.state.read(), LockState::Uninitialised { .. }) {
            return Err(LockError::NotInitialised);
        }
        let Some(key) = open_data_key(&*self.storage, passphrase).await? else {
            self.backoff.lock().fail();
            return Err(LockError::WrongPassphrase);
        };
        *self.backoff.lock() = Backoff::default();
        if !matches!(&*self.state.read(), LockState::Unlocked(_)) {
            let started = Instant::now();
            let (projection, registry) = replay(&*self.storage, &key, self.apps.clock.now_us())
                .instrument(tracing::info_span!("replay"))
                .await
                .map_err(ReplayError::into_lock_error)?;
            self.apps.replace(registry);
            let head = self.storage.head().await?;
            tracing::info!(
                records = head.seq,
                samples = projection.sample_count(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "store unlocked"
            );
            let projection = Arc::new(projection);
            let writer = Writer::spawn(
                self.storage.clone(),
                key,
                head,
                projection.clone(),
                self.apps.clone(),
            );
            *self.state.write() = LockState::Unlocked(Arc::new(OpenStore { projection, writer }));
        }
        self.touch();
        Ok(self.new_session())
    }

    /// Locks: stops the writer (after what is queued), wipes the projection,
    /// drops the data key and every owner session.
    pub async fn lock(&self) {
        let _gate = self.gate.lock().await;
        let previous = {
            let mut state = self.state.write();
            match &*state {
                LockState::Unlocked(_) => std::mem::replace(&mut *state, LockState::Locked),
                _ => return,
            }
        };
        if let LockState::Unlocked(open) = previous {
            open.writer.shutdown().await;
            open.projection.wipe();
        }
        self.sessions.lock().clear();
        tracing::info!("store locked");
    }

    fn new_session(&self) -> SessionToken {
        let token = Zeroizing::new(URL_SAFE_NO_PAD.encode(crypto::random_bytes::<32>()));
        let mut sessions = self.sessions.lock();
        let now = Instant::now();
        sessions.retain(|(_, exp)| *exp > now);
        sessions.push((token_digest(&token), now + SESSION_TTL));
        SessionToken(token)
    }

    pub fn is_owner_session(&self, token: &str) -> bool {
        let digest = token_digest(token);
        let now = Instant::now();
        self.sessions
            .lock()
            .iter()
            .any(|(d, exp)| *exp > now && bool::from(d.ct_eq(&digest)))
    }

    fn touch(&self) {
        self.last_activity_ms
            .store(self.started.elapsed().as_millis() as i64, Ordering::Relaxed);
    }

    /// Samples in the projection; 0 unless unlocked.
    pub fn projection_samples(&self) -> usize {
        match &*self.state.read() {
            LockState::Unlocked(open) => open.projection.sample_count(),
            _ => 0,
        }
    }

    /// How long since the last request that used the open store.
    pub fn idle_for(&self) -> Duration {
        let last = self.last_activity_ms.load(Ordering::Relaxed);
        self.started
            .elapsed()
            .saturating_sub(Duration::from_millis(last.max(0) as u64))
    }
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
