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
use crate::keys::data_keys::DataKeys;
use crate::keys::{self, RecoveryKey, RootKey, Secret};
use crate::lock::{initialise, Backoffs, Client, LockError, LockState, LockStateName, Unavailable};
use crate::log::head::{self, HeadAuthenticator, StateFile};
use crate::log::replay::{replay, ReplayError};
use crate::log::writer::{NewEntry, Writer};
use crate::pending::{self, PendingIntake, Refusal};
use crate::projection::snapshot::{self, SnapshotKey, Snapshots};
use crate::projection::{Cut, Projection};
use crate::storage::Storage;
use crate::view::View;

/// How long an owner session lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// What an unlocked store holds; dropped (and wiped) at lock.
pub struct OpenStore {
    /// Private: everything outside the store reads through a [`View`].
    projection: Arc<Projection>,
    pub writer: Writer,
    /// Wraps the receipt-signing key (`research::signing`); gone at lock.
    pub signing_wrap: crypto::SecretKey,
    /// Sealed snapshots of the projection, so the next unlock is quick.
    pub snapshots: Snapshots,
    /// Writes apps' counted reads and writes to the audit every minute.
    pub audit_flusher: crate::audit::Flusher,
    /// Seals research export jobs and their secrets; gone at lock.
    pub export_key: crypto::SecretKey,
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

    /// How many sync identifiers the projection holds by records rather
    /// than by derived ids (for tests and benchmarks).
    pub fn sync_records(&self) -> usize {
        self.projection.sync_records()
    }

    /// Bytes the projection holds.
    pub fn memory_bytes(&self) -> usize {
        self.projection.memory_bytes()
    }

    /// Builds the id indexes not built yet (unlock leaves them to a
    /// background task): for benchmarks that count their bytes.
    pub fn build_indexes(&self) {
        self.projection.build_indexes();
    }

    /// Whether the log ever held a sample of `ty` with `id`, live or
    /// deleted (for merging pending writes exactly once).
    pub(crate) fn has_held(&self, ty: crate::catalogue::TypeIndex, id: u128) -> bool {
        self.projection.columns(ty).find(id).is_some()
    }

    /// Erases `source` (every type) or `type_id` (every source) by
    /// destroying their data keys (see [`Writer::erase`]), then discards
    /// every snapshot, which still holds the erased samples, and takes a
    /// new one in the background. Returns the keys destroyed and the live
    /// samples that went with them.
    pub async fn erase(
        &self,
        source: Option<String>,
        type_id: Option<String>,
    ) -> Result<(usize, usize), crate::log::writer::WriteError> {
        let erased = self.writer.erase(source, type_id).await?;
        self.discard_snapshots().await?;
        Ok(erased)
    }

    /// Erases every source of an import family (see
    /// [`Writer::erase_family`]) as [`OpenStore::erase`] erases one.
    /// Returns the keys destroyed, the live samples erased and the sources.
    pub async fn erase_family(
        &self,
        family: String,
    ) -> Result<(usize, usize, Vec<String>), crate::log::writer::WriteError> {
        let erased = self.writer.erase_family(family).await?;
        self.discard_snapshots().await?;
        Ok(erased)
    }

    /// After an erasure: no snapshot may keep what it erased.
    async fn discard_snapshots(&self) -> Result<(), crate::log::writer::WriteError> {
        self.snapshots.discard_all_and_retake().await.map_err(|e| {
            tracing::error!(error = %e, "discarding snapshots after an erasure failed");
            crate::log::writer::WriteError::Storage
        })
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
    /// The idle lock's timeout in milliseconds; 0 while there is none.
    idle_lock_ms: AtomicI64,
    started: Instant,
    /// Apps, grants and token state: kept across lock, rebuilt at unlock.
    apps: Arc<Apps>,
    /// Writes accepted while locked.
    pending: PendingIntake,
    /// Where the high-water mark is kept (outside the database).
    state_file: Option<StateFile>,
    /// Counts locks: a read that began in one unlocked period and ends in
    /// another (or while locked) must not be answered.
    lock_epoch: AtomicU64,
    /// Records between background snapshots.
    snapshot_every: AtomicU64,
}

fn file_less() -> &'static std::path::Path {
    std::path::Path::new("(no state file)")
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
        let pending = PendingIntake::load(&*storage).await?;
        Ok(Store {
            pending,
            storage,
            kdf,
            state: RwLock::new(state),
            gate: tokio::sync::Mutex::new(()),
            backoff: Mutex::new(Backoffs::default()),
            sessions: Mutex::new(Vec::new()),
            last_activity_ms: AtomicI64::new(0),
            idle_lock_ms: AtomicI64::new(0),
            started: Instant::now(),
            apps: Arc::new(Apps::default()),
            state_file: None,
            lock_epoch: AtomicU64::new(0),
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

    /// Keeps the high-water mark in `file`: checked at unlock, moved after
    /// commits.
    pub fn with_state_file(mut self, file: StateFile) -> Store {
        self.state_file = Some(file);
        self
    }

    /// While unlocked, which unlocked period this is; `None` otherwise. A
    /// read that saw the same value before and after its work computed it
    /// from a projection that was not wiped meanwhile.
    pub fn unlocked_epoch(&self) -> Option<u64> {
        match &*self.state.read() {
            LockState::Unlocked(_) => Some(self.lock_epoch.load(Ordering::Acquire)),
            _ => None,
        }
    }

    /// Where the high-water mark is kept, if anywhere.
    pub fn state_file_path(&self) -> Option<&std::path::Path> {
        self.state_file.as_ref().map(StateFile::path)
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Writes accepted while locked: limits, counts, the last merge.
    pub fn pending(&self) -> &PendingIntake {
        &self.pending
    }

    /// Seals and commits an app's validated write while the store is
    /// locked; `Refusal::NotLocked` if it is not (any more).
    pub async fn accept_pending(
        &self,
        app: &crate::apps::AppCaller,
        entries: &[NewEntry],
    ) -> Result<usize, Refusal> {
        let _admitted = self.pending.admit().await;
        if !matches!(&*self.state.read(), LockState::Locked) {
            return Err(Refusal::NotLocked);
        }
        self.pending
            .accept(&*self.storage, app, self.apps.clock.now_us(), entries)
            .await
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
        Ok(self.setup_with_recovery(code, passphrase, client).await?.0)
    }

    /// Setup, also returning the recovery key to show the owner once.
    pub async fn setup_with_recovery(
        &self,
        code: &str,
        passphrase: &str,
        client: Client,
    ) -> Result<(SessionToken, RecoveryKey), LockError> {
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
        let recovery = initialise(&*self.storage, passphrase, self.kdf).await?;
        *self.state.write() = LockState::Sealed;
        let session = self
            .unlock_locked(Secret::Passphrase(passphrase), client)
            .await?;
        Ok((session, recovery))
    }

    /// Unlocks with the passphrase; failures back off for `client` alone.
    pub async fn unlock(
        &self,
        passphrase: &str,
        client: Client,
    ) -> Result<SessionToken, LockError> {
        self.unlock_with(Secret::Passphrase(passphrase), client)
            .await
    }

    /// Unlocks with a passphrase, the recovery key or a key file's contents.
    pub async fn unlock_with(
        &self,
        secret: Secret<'_>,
        client: Client,
    ) -> Result<SessionToken, LockError> {
        let _gate = self.gate.lock().await;
        self.backoff.lock().check(client)?;
        self.unlock_locked(secret, client).await
    }

    /// Opens the root key with an owner's `secret`, for the key-slot
    /// operations in [`crate::keys`]; wrong secrets back off like unlock's.
    /// The guard keeps other unlocks and key changes out meanwhile.
    pub(crate) async fn owner_root(
        &self,
        secret: Secret<'_>,
        client: Client,
    ) -> Result<(RootKey, &dyn Storage, tokio::sync::MutexGuard<'_, ()>), LockError> {
        let gate = self.gate.lock().await;
        self.backoff.lock().check(client)?;
        let root = self.open_root_or_back_off(secret, client).await?;
        Ok((root, &*self.storage, gate))
    }

    /// The Argon2id parameters new passphrase slots get.
    pub fn kdf(&self) -> KdfParams {
        self.kdf
    }

    async fn open_root_or_back_off(
        &self,
        secret: Secret<'_>,
        client: Client,
    ) -> Result<RootKey, LockError> {
        let opened = keys::open_root(&*self.storage, secret).await;
        match opened {
            Ok(Some(root)) => {
                self.backoff.lock().succeed(client);
                Ok(root)
            }
            Ok(None) => {
                self.backoff.lock().fail(client);
                Err(secret.wrong())
            }
            Err(e @ LockError::MalformedRecoveryKey) => {
                self.backoff.lock().fail(client);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    async fn unlock_locked(
        &self,
        secret: Secret<'_>,
        client: Client,
    ) -> Result<SessionToken, LockError> {
        if matches!(&*self.state.read(), LockState::Uninitialised { .. }) {
            return Err(LockError::NotInitialised);
        }
        let unlock_started = Instant::now();
        let key = self.open_root_or_back_off(secret, client).await?;
        if let Secret::Passphrase(passphrase) = secret {
            keys::adopt_legacy(&*self.storage, passphrase, &key, self.kdf).await?;
        }
        if !matches!(&*self.state.read(), LockState::Unlocked(_)) {
            let started = Instant::now();
            let mut keys = DataKeys::load(&*self.storage, key)
                .await
                .map_err(|e| LockError::Storage(e.to_string()))?;
            let (projection, registry, walked) =
                replay(&self.storage, &keys, self.apps.clock.now_us())
                    .instrument(tracing::info_span!("replay"))
                    .await
                    .map_err(ReplayError::into_lock_error)?;
            keys.settle(&*self.storage, &walked).await?;
            // After replay, which names a damaged record first: the head
            // and the mark catch what a consistent chain cannot.
            let auth = HeadAuthenticator::new(keys.root());
            let head = match &self.state_file {
                Some(file) => head::check_at_unlock(&*self.storage, &auth, file).await?,
                None => {
                    head::check(&*self.storage, Some(&auth), None, file_less())
                        .await?
                        .0
                }
            };
            self.apps.replace(registry);
            tracing::info!(
                records = head.seq,
                erased_records = walked.erased,
                samples = projection.sample_count(),
                from_snapshot = projection.last_snapshot().map(|(seq, _)| seq),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "store unlocked"
            );
            // A snapshot older than the last erasure still holds what it
            // erased (the process stopped before discarding it, or the
            // erasure came another way): none is kept.
            let stale = walked.last_erasure > 0
                && projection
                    .last_snapshot()
                    .is_none_or(|(seq, _)| seq < walked.last_erasure);
            let older_kept = walked.last_erasure > 0
                && self
                    .storage
                    .snapshots()
                    .await?
                    .iter()
                    .any(|s| s.at.seq < walked.last_erasure);
            if older_kept {
                snapshot::discard_before(&*self.storage, walked.last_erasure).await?;
            }
            let opening = self
                .pending
                .opening_key(&*self.storage, keys.root())
                .await?;
            *projection.cut() = Cut { head, keys: walked };
            let projection = Arc::new(projection);
            let signing_wrap = keys.root().derive(crate::research::signing::WRAP_LABEL);
            let export_key = keys.root().derive(crate::research::bulk::KEY_LABEL);
            let snapshots = Snapshots::spawn(
                self.storage.clone(),
                SnapshotKey::new(keys.root()),
                projection.clone(),
                self.apps.clone(),
                self.snapshot_every.load(Ordering::Relaxed),
            );
            if stale {
                snapshots.take_soon();
            }
            let writer = Writer::spawn(
                self.storage.clone(),
                keys,
                head,
                projection.clone(),
                self.apps.clone(),
                self.state_file.clone(),
            );
            let audit_flusher = crate::audit::Flusher::spawn(self.apps.clone(), writer.clone());
            let open = Arc::new(OpenStore {
                projection,
                writer,
                signing_wrap,
                snapshots,
                audit_flusher,
                export_key,
            });
            // Writes that arrived while locked go first, in arrival order.
            let _closed = self.pending.close().await;
            if let Some(opening) = opening {
                let report = pending::merge::merge(&*self.storage, &opening, &open, &self.apps)
                    .instrument(tracing::info_span!("merge_pending"))
                    .await;
                self.pending.merged(&*self.storage, report).await;
            }
            let indexing = open.projection.clone();
            *self.state.write() = LockState::Unlocked(open);
            // Each type's id index is built off the unlock's path; a lookup
            // by id in a type meanwhile waits for that type's.
            tokio::task::spawn_blocking(move || indexing.build_indexes());
            crate::telemetry::metrics()
                .unlock_duration
                .record(unlock_started.elapsed().as_secs_f64(), &[]);
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
                LockState::Unlocked(_) => {
                    self.lock_epoch.fetch_add(1, Ordering::AcqRel);
                    std::mem::replace(&mut *state, LockState::Locked)
                }
                _ => return,
            }
        };
        if let LockState::Unlocked(open) = previous {
            // Counted reads and writes go to the log before the writer stops.
            open.audit_flusher.finish().await;
            let _ = crate::audit::flush(&self.apps, &open.writer).await;
            open.writer.shutdown().await;
            open.snapshots.finish().await;
            open.projection.wipe();
            self.apps.wipe_audit();
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

    /// The idle lock started: the owner's pages say when it will act.
    pub fn set_idle_lock(&self, timeout: Duration) {
        self.idle_lock_ms
            .store(timeout.as_millis() as i64, Ordering::Relaxed);
    }

    /// How long the store stays open without the owner; none when it never
    /// locks itself.
    pub fn idle_lock(&self) -> Option<Duration> {
        let ms = self.idle_lock_ms.load(Ordering::Relaxed);
        (ms > 0).then(|| Duration::from_millis(ms as u64))
    }
}
