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
use crate::log::{LogHead, LogRecord};

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
}

/// The KDF parameters, salt and wrapped data keys.
#[derive(Clone, Debug)]
pub struct Keyring {
    pub kdf: KdfParams,
    pub salt: Vec<u8>,
    /// `(key_id, wrapped key)` pairs.
    pub wrapped_keys: Vec<(u32, Vec<u8>)>,
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
    /// head, in one durable transaction.
    async fn append(&self, expected: LogHead, records: &[LogRecord]) -> Result<(), StorageError>;

    /// Up to `limit` records with a sequence number above `after`, in order.
    async fn records_after(&self, after: u64, limit: u32) -> Result<Vec<LogRecord>, StorageError>;

    /// The complete snapshots stored, newest first.
    async fn snapshots(&self) -> Result<Vec<SnapshotHeader>, StorageError>;

    /// The sealed chunks of the snapshot at `seq`, in order.
    async fn snapshot_chunks(&self, seq: u64) -> Result<Vec<Vec<u8>>, StorageError>;

    /// Stores a snapshot (replacing one at the same sequence number), then
    /// deletes all but the newest `keep`, in one transaction.
    async fn put_snapshot(
        &self,
        header: &SnapshotHeader,
        chunks: &[Vec<u8>],
        keep: usize,
    ) -> Result<(), StorageError>;

    /// Deletes every snapshot.
    async fn delete_snapshots(&self) -> Result<(), StorageError>;
}

/// A stored snapshot: the log record it was taken at, the key id it is
/// sealed under and its number of chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotHeader {
    pub at: LogHead,
    pub key_id: u32,
    pub chunks: u32,
}

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
