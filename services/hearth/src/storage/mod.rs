//! Where the log lives. One trait, a SQLite implementation (the embedded
//! default) and a Postgres one (the home box); each has its own migrations
//! (`migrations/sqlite`, `migrations/postgres`), embedded at build time and
//! applied at connect by sqlx's migrator.

mod postgres;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::migrate::{MigrateError, Migrator};

use crate::crypto::KdfParams;
use crate::log::head::HeadMac;
use crate::log::{LogHead, LogRecord};
use crate::pending::seal::StoredKeyPair;
use crate::research::signing::StoredSigningKey;

pub use postgres::PostgresStorage;
pub use sqlite::SqliteStorage;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("the store is already initialised")]
    AlreadyInitialised,
    #[error("the store is not initialised")]
    NotInitialised,
    #[error("another writer appended to the log (expected head {expected}, found {found})")]
    HeadMoved { expected: u64, found: u64 },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("schema migration: {0}")]
    Migrate(#[from] MigrateError),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Backup(String),
    #[error("reading a temporary file: {0}")]
    TempFile(#[from] std::io::Error),
}

/// A snapshot's sealed chunks, in order, as they are read from where they
/// wait to be stored.
pub type SealedChunks<'a> = futures_util::stream::BoxStream<'a, Result<Vec<u8>, StorageError>>;

/// The KDF parameters, salt and wrapped data keys.
#[derive(Clone, Debug)]
pub struct Keyring {
    pub kdf: KdfParams,
    pub salt: Vec<u8>,
    /// `(key_id, wrapped key)` pairs.
    pub wrapped_keys: Vec<(u32, Vec<u8>)>,
    /// The key slots wrapping the root key (see [`crate::keys`]); empty in a
    /// store from before key slots, which wraps it in `wrapped_keys`.
    pub keyslots: Vec<KeySlotRow>,
}

/// One key slot as stored. The numbers stay as the database holds them:
/// [`crate::keys`] checks them, since they are in the clear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySlotRow {
    pub slot_id: i64,
    pub kind: String,
    pub kdf: String,
    pub kdf_memory_kib: i64,
    pub kdf_iterations: i64,
    pub kdf_parallelism: i64,
    pub salt: Vec<u8>,
    pub wrapped_root: Vec<u8>,
}

#[async_trait]
pub trait Storage: Send + Sync {
    fn backend_name(&self) -> &'static str;

    /// `None` while the store is uninitialised.
    async fn keyring(&self) -> Result<Option<Keyring>, StorageError>;

    /// Writes the keyring once; a second call fails with `AlreadyInitialised`.
    async fn initialise(&self, keyring: &Keyring) -> Result<(), StorageError>;

    /// The last committed record, as recorded beside the log.
    async fn head(&self) -> Result<LogHead, StorageError>;

    /// Appends `records` (which must continue from `expected`) and moves the
    /// head, with `head_mac` authenticating the new head, and removes the
    /// pending batches `merged` (arrival numbers) those records hold, in one
    /// durable transaction.
    async fn append(
        &self,
        expected: LogHead,
        records: &[LogRecord],
        head_mac: &HeadMac,
        merged: &[u64],
    ) -> Result<(), StorageError>;

    /// Up to `limit` records with a sequence number above `after`, in order.
    async fn records_after(&self, after: u64, limit: u32) -> Result<Vec<LogRecord>, StorageError>;

    /// Writes a key slot, replacing the slot of the same id.
    async fn put_keyslot(&self, slot: &KeySlotRow) -> Result<(), StorageError>;

    /// Deletes a key slot; `false` if there was none of that id.
    async fn delete_keyslot(&self, slot_id: i64) -> Result<bool, StorageError>;

    /// Moves a store from before key slots to them: writes its first slot
    /// and deletes the root key's old passphrase wrap (key id 1 in the
    /// keyring table), in one transaction; nothing if it already has slots.
    async fn adopt_legacy_root_wrap(&self, slot: &KeySlotRow) -> Result<(), StorageError>;
    /// Every data key, wrapped, in key id order.
    async fn data_keys(&self) -> Result<Vec<StoredDataKey>, StorageError>;

    /// Stores new wrapped data keys durably.
    async fn add_data_keys(&self, keys: &[StoredDataKey]) -> Result<(), StorageError>;

    /// Deletes wrapped data keys for good (erasure), leaving as little of
    /// them behind in the database files as the backend allows.
    async fn destroy_data_keys(&self, key_ids: &[u32]) -> Result<(), StorageError>;

    /// Marks every data key retired: new records get new keys.
    async fn retire_data_keys(&self) -> Result<(), StorageError>;
    /// The pending-write key pair, once created.
    async fn pending_key(&self) -> Result<Option<StoredKeyPair>, StorageError>;

    /// Stores `pair` unless a pair exists; returns the pair in force.
    async fn put_pending_key(&self, pair: &StoredKeyPair) -> Result<StoredKeyPair, StorageError>;

    /// Commits one sealed pending batch durably; returns its arrival
    /// sequence number (increasing, never reused).
    async fn add_pending(&self, sealed: &[u8]) -> Result<u64, StorageError>;

    /// Up to `limit` pending batches with a sequence number above `after`,
    /// in arrival order.
    async fn pending_after(&self, after: u64, limit: u32) -> Result<Vec<PendingRow>, StorageError>;

    /// How many pending batches there are, and their bytes.
    async fn pending_totals(&self) -> Result<PendingTotals, StorageError>;

    /// The head with its MAC (`None` before the first authenticated commit).
    async fn authenticated_head(&self) -> Result<(LogHead, Option<HeadMac>), StorageError>;

    /// Sets the head's MAC, if the head is still `head`.
    async fn set_head_mac(&self, head: LogHead, mac: &HeadMac) -> Result<(), StorageError>;

    /// A consistent copy of the database (ciphertext only, as stored) at
    /// `path`, taken while the store runs; or, where the backend has its
    /// own tools for that, an error saying how to use them.
    async fn backup_to(&self, path: &std::path::Path) -> Result<(), StorageError>;

    /// The store's receipt-signing key, once created.
    async fn signing_key(&self) -> Result<Option<StoredSigningKey>, StorageError>;

    /// Stores `key` unless a key exists; returns the key in force.
    async fn put_signing_key(
        &self,
        key: &StoredSigningKey,
    ) -> Result<StoredSigningKey, StorageError>;

    /// Records a client assertion (by `digest`) as used until `expires_us`,
    /// durably; `false` if it was already recorded: a replay. Forgets the
    /// ones expired by `now_us`.
    async fn spend_assertion(
        &self,
        digest: &[u8; 32],
        expires_us: i64,
        now_us: i64,
    ) -> Result<bool, StorageError>;
    /// The complete snapshots stored, newest first.
    async fn snapshots(&self) -> Result<Vec<SnapshotHeader>, StorageError>;

    /// One sealed chunk of the snapshot at `seq`.
    async fn snapshot_chunk(&self, seq: u64, chunk: u32) -> Result<Vec<u8>, StorageError>;

    /// Stores a snapshot (replacing one at the same sequence number), its
    /// chunks as they come, then deletes all but the newest `keep`, in one
    /// transaction: a stream that fails, or ends with more or fewer chunks
    /// than the header names, stores nothing.
    async fn put_snapshot(
        &self,
        header: &SnapshotHeader,
        chunks: SealedChunks<'_>,
        keep: usize,
    ) -> Result<(), StorageError>;

    /// Deletes the snapshots taken at a record before `before` (all of
    /// them with `u64::MAX`), leaving as little of them behind in the
    /// database files as the backend allows.
    async fn delete_snapshots(&self, before: u64) -> Result<(), StorageError>;

    /// Every sealed research export job: (job id, sealed state).
    async fn export_jobs(&self) -> Result<Vec<(String, Vec<u8>)>, StorageError>;

    /// Stores (or replaces) a job's sealed state, durably.
    async fn put_export_job(&self, job_id: &str, sealed: &[u8]) -> Result<(), StorageError>;

    /// Forgets a job; `false` if there was none.
    async fn delete_export_job(&self, job_id: &str) -> Result<bool, StorageError>;

    /// A study's sealed export secrets, by digest of its id.
    async fn study_secrets(&self, digest: &[u8; 32]) -> Result<Option<Vec<u8>>, StorageError>;

    /// Stores a study's sealed secrets unless some are stored; returns the
    /// ones in force.
    async fn put_study_secrets(
        &self,
        digest: &[u8; 32],
        sealed: &[u8],
    ) -> Result<Vec<u8>, StorageError>;

    /// Forgets a study's secrets.
    async fn delete_study_secrets(&self, digest: &[u8; 32]) -> Result<(), StorageError>;
}

/// A stored snapshot: the log record it was taken at, the key id it is
/// sealed under and its number of chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotHeader {
    pub at: LogHead,
    pub key_id: u32,
    pub chunks: u32,
}

impl SnapshotHeader {
    /// Why a snapshot that came with `stored` chunks (or more) was not
    /// stored.
    fn chunks_stored(&self, stored: u32) -> StorageError {
        StorageError::Corrupt(format!(
            "snapshot {} came with {stored} chunks, not {}",
            self.at.seq, self.chunks
        ))
    }
}

/// One sealed pending batch.
#[derive(Clone, Debug)]
pub struct PendingRow {
    pub seq: u64,
    pub sealed: Vec<u8>,
}

/// Counts only: what metrics and limits need.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PendingTotals {
    pub batches: u64,
    pub bytes: u64,
}

/// A data key as the keyring table keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDataKey {
    pub key_id: u32,
    pub wrapped: Vec<u8>,
    /// Rotated out: still opens old records, never seals new ones.
    pub retired: bool,
}

const KEYSLOT_COLUMNS: &str =
    "slot_id, kind, kdf, kdf_memory_kib, kdf_iterations, kdf_parallelism, salt, wrapped_root";
const SELECT_KEYSLOTS: &str = "SELECT slot_id, kind, kdf, kdf_memory_kib, kdf_iterations, \
     kdf_parallelism, salt, wrapped_root FROM keyslots ORDER BY slot_id";

/// Opens the database named by `url` (`sqlite://…` or `postgres://…`) and
/// brings its schema up to date.
pub async fn connect(url: &str) -> anyhow::Result<Arc<dyn Storage>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStorage::connect(url).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStorage::connect(url).await?))
    } else {
        anyhow::bail!("unsupported database URL: expected sqlite:// or postgres://")
    }
}

fn hash_from(bytes: Vec<u8>, what: &str) -> Result<[u8; 32], StorageError> {
    bytes
        .try_into()
        .map_err(|_| StorageError::Corrupt(format!("{what} is not 32 bytes")))
}

fn mac_from(bytes: Option<Vec<u8>>) -> Result<Option<HeadMac>, StorageError> {
    bytes.map(|b| hash_from(b, "head_mac")).transpose()
}

fn to_u64(v: i64, what: &str) -> Result<u64, StorageError> {
    u64::try_from(v).map_err(|_| StorageError::Corrupt(format!("{what} is negative")))
}

/// The migration `version` as this build knows it; a store recording a
/// version this build lacks was written by a newer Hearth.
fn known_migration(
    migrator: &Migrator,
    version: i64,
) -> Result<&sqlx::migrate::Migration, StorageError> {
    migrator
        .iter()
        .find(|m| m.version == version)
        .ok_or_else(|| StorageError::Migrate(MigrateError::VersionMissing(version)))
}
