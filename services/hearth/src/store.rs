//! The store handle: the one object every request goes through to reach the
//! storage, the app registry, owner sessions and, while unlocked, the open
//! store (projection and writer).
//!
//! The states it moves between, and why, are the lock model in
//! [`crate::lock`]; this file holds the handle and performs the transitions.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
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
use crate::caller::Caller;
use crate::crypto::{self, KdfParams};
use crate::lock::{
    initialise, open_data_key, Backoffs, Client, LockError, LockState, LockStateName, Unavailable,
};
use crate::log::replay::{replay, ReplayError};
use crate::log::writer::Writer;
use crate::projection::snapshot::{self, SnapshotKey, Snapshots};
use crate::projection::Projection;
use crate::storage::Storage;
use crate::view::View;

/// How long an owner session lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// What an unlocked store holds; dropped (and wiped) at lock.
pub struct OpenStore {
    /// Private: everything outside the store reads through a [`View`].
    projection: Arc<Projection>,
    pub writer: Writer,
    /// Sealed snapshots of the projection, so the next unlock is quick.
    pub snapshots: Snapshots,
}

impl OpenStore {
    /// The store as `caller` may see it.
    pub fn view(&self, caller: Caller, apps: Arc<Apps>) -> View {
        View::new(self.projection.clone(), caller, apps)
    }

    /// How many live samples the projection holds (for metrics and
    /// benchmarks; says nothing about whose).
    pub fn sample_count(&self) -> usize {
        self.projection.sample_count()
    }

    /// Bytes the projection holds.
    pub fn memory_bytes(&self) -> usize {
        self.projection.memory_bytes()
    }
}

pub struct Store {
    storage: Arc<dyn Storage>,
    kdf: KdfParams,
    state: RwLock<LockState>,
    /// One key derivation at a time: Argon2id is the expensive part.
    gate: tokio::sync::Mutex<()>,
    backoff: Mutex<Backoffs>,
    /// SHA-256 of owner session tokens, with expiry.
    sessions: Mutex<Vec<([u8; 32], Instant)>>,
    last_activity_ms: AtomicI64,
    started: Instant,
    /// Apps, grants and token state: kept across lock, rebuilt at unlock.
    apps: Arc<Apps>,
    /// Records between background snapshots.
    snapshot_every: AtomicU64,
}

/// An owner session token, handed out once.
pub struct SessionToken(pub Zeroizing<String>);

fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
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
            backoff: Mutex::new(Backoffs::default()),
            sessions: Mutex::new(Vec::new()),
            last_activity_ms: AtomicI64::new(0),
            started: Instant::now(),
            apps: Arc::new(Apps::default()),
            snapshot_every: AtomicU64::new(snapshot::DEFAULT_EVERY),
        })
    }

    /// Takes a snapshot every `records` log records while unlocked (from
    /// the next unlock on).
    pub fn set_snapshot_every(&self, records: u64) {
        self.snapshot_every.store(records.max(1), Ordering::Relaxed);
    }

    /// Records and seconds the newest snapshot is behind the head; `None`
    /// unless unlocked.
    pub fn snapshot_age(&self) -> Option<(u64, f64)> {
        match &*self.state.read() {
            LockState::Unlocked(open) => Some(open.snapshots.age()),
            _ => None,
        }
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
            LockState::Unlocked(open) => Ok(open.clone()),
            LockState::Uninitialised { .. } => Err(Unavailable::Uninitialised),
            LockState::Sealed => Err(Unavailable::Sealed),
            LockState::Locked => Err(Unavailable::Locked),
        }
    }

    /// First-run setup with the console's code; leaves the store unlocked.
    pub async fn setup(
        &self,
        code: &str,
        passphrase: &str,
        client: Client,
    ) -> Result<SessionToken, LockError> {
        let _gate = self.gate.lock().await;
        self.backoff.lock().check(client)?;
        let matches = match &*self.state.read() {
            LockState::Uninitialised { setup_code } => {
                bool::from(setup_code.as_bytes().ct_eq(code.as_bytes()))
            }
            _ => return Err(LockError::AlreadyInitialised),
        };
        if !matches {
            self.backoff.lock().fail(client);
            return Err(LockError::WrongSetupCode);
        }
        initialise(&*self.storage, passphrase, self.kdf).await?;
        *self.state.write() = LockState::Sealed;
        self.unlock_locked(passphrase, client).await
    }

    /// Unlocks with the passphrase; failures back off for `client` alone.
    pub async fn unlock(
        &self,
        passphrase: &str,
        client: Client,
    ) -> Result<SessionToken, LockError> {
        let _gate = self.gate.lock().await;
        self.backoff.lock().check(client)?;
        self.unlock_locked(passphrase, client).await
    }

    async fn unlock_locked(
        &self,
        passphrase: &str,
        client: Client,
    ) -> Result<SessionToken, LockError> {
        if matches!(&*self.state.read(), LockState::Uninitialised { .. }) {
            return Err(LockError::NotInitialised);
        }
        let Some(key) = open_data_key(&*self.storage, passphrase).await? else {
            self.backoff.lock().fail(client);
            return Err(LockError::WrongPassphrase);
        };
        self.backoff.lock().succeed(client);
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
            *projection.cut() = head;
            let projection = Arc::new(projection);
            let snapshots = Snapshots::spawn(
                self.storage.clone(),
                SnapshotKey::new(&key),
                projection.clone(),
                self.apps.clone(),
                self.snapshot_every.load(Ordering::Relaxed),
            );
            let writer = Writer::spawn(
                self.storage.clone(),
                key,
                head,
                projection.clone(),
                self.apps.clone(),
            );
            *self.state.write() = LockState::Unlocked(Arc::new(OpenStore {
                projection,
                writer,
                snapshots,
            }));
        }
        self.note_owner_activity();
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
            open.snapshots.finish().await;
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

    /// The owner did something: the idle-lock timer starts again. Only the
    /// owner's authenticated requests count; apps syncing in the background
    /// and strangers' requests never keep the store open.
    pub fn note_owner_activity(&self) {
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

    /// How long since the owner was last active.
    pub fn idle_for(&self) -> Duration {
        let last = self.last_activity_ms.load(Ordering::Relaxed);
        self.started
            .elapsed()
            .saturating_sub(Duration::from_millis(last.max(0) as u64))
    }
}
