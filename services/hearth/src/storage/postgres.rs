use async_trait::async_trait;
use sqlx::migrate::{Migrate, Migrator};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

use super::{hash_from, to_u64, Keyring, SnapshotHeader, Storage, StorageError};
use crate::crypto::KdfParams;
use crate::log::{LogHead, LogRecord};

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");

/// Postgres with its default `synchronous_commit = on`: a commit has reached
/// the server's disk before it returns.
pub struct PostgresStorage {
    pool: PgPool,
}

impl PostgresStorage {
    pub async fn connect(url: &str) -> Result<PostgresStorage, StorageError> {
        let pool = PgPoolOptions::new().max_connections(4).connect(url).await?;
        let storage = PostgresStorage { pool };
        storage.migrate().await?;
        Ok(storage)
    }

    async fn migrate(&self) -> Result<(), StorageError> {
        self.adopt_legacy_schema_table().await?;
        // The migrator holds an advisory lock, so concurrent starts against
        // one database apply each migration once.
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// Stores created before the switch to sqlx's migrator recorded their
    /// applied versions in `hearth_schema`: move that record into the
    /// migrator's table, in one transaction, so nothing runs twice.
    async fn adopt_legacy_schema_table(&self) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        // The lock the hand-written runner took: serialises concurrent starts.
        sqlx::query("SELECT pg_advisory_xact_lock(7380)")
            .execute(&mut *tx)
            .await?;
        let legacy: bool = sqlx::query_scalar("SELECT to_regclass('hearth_schema') IS NOT NULL")
            .fetch_one(&mut *tx)
            .await?;
        if !legacy {
            return Ok(());
        }
        tx.ensure_migrations_table().await?;
        let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM hearth_schema")
            .fetch_all(&mut *tx)
            .await?;
        for version in versions {
            let m = super::known_migration(&MIGRATOR, version)?;
            sqlx::query(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
                 execution_time) VALUES ($1, $2, TRUE, $3, -1) ON CONFLICT (version) DO NOTHING",
            )
            .bind(m.version)
            .bind(&*m.description)
            .bind(&*m.checksum)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::raw_sql("DROP TABLE hearth_schema")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl Storage for PostgresStorage {
    fn backend_name(&self) -> &'static str {
        "postgres"
    }

    async fn keyring(&self) -> Result<Option<Keyring>, StorageError> {
        let Some(meta) = sqlx::query(
            "SELECT kdf_memory_kib, kdf_iterations, kdf_parallelism, salt FROM store_meta",
        )
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let keys = sqlx::query("SELECT key_id, wrapped_key FROM keyring ORDER BY key_id")
            .fetch_all(&self.pool)
            .await?;
        Ok(Some(Keyring {
            kdf: KdfParams {
                memory_kib: meta.get::<i32, _>(0) as u32,
                iterations: meta.get::<i32, _>(1) as u32,
                parallelism: meta.get::<i32, _>(2) as u32,
            },
            salt: meta.get(3),
            wrapped_keys: keys
                .into_iter()
                .map(|r| (r.get::<i32, _>(0) as u32, r.get(1)))
                .collect(),
        }))
    }

    async fn initialise(&self, keyring: &Keyring) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO store_meta (singleton, kdf_memory_kib, kdf_iterations, kdf_parallelism, \
             salt, head_seq, head_hash) VALUES (1, $1, $2, $3, $4, 0, $5) ON CONFLICT DO NOTHING",
        )
        .bind(keyring.kdf.memory_kib as i32)
        .bind(keyring.kdf.iterations as i32)
        .bind(keyring.kdf.parallelism as i32)
        .bind(&keyring.salt)
        .bind(&LogHead::EMPTY.hash[..])
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() != 1 {
            return Err(StorageError::AlreadyInitialised);
        }
        for (key_id, wrapped) in &keyring.wrapped_keys {
            sqlx::query("INSERT INTO keyring (key_id, wrapped_key) VALUES ($1, $2)")
                .bind(*key_id as i32)
                .bind(wrapped)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn head(&self) -> Result<LogHead, StorageError> {
        let row = sqlx::query("SELECT head_seq, head_hash FROM store_meta")
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StorageError::NotInitialised)?;
        Ok(LogHead {
            seq: to_u64(row.get(0), "head_seq")?,
            hash: hash_from(row.get(1), "head_hash")?,
        })
    }

    async fn append(&self, expected: LogHead, records: &[LogRecord]) -> Result<(), StorageError> {
        let Some(last) = records.last() else {
            return Ok(());
        };
        let mut tx = self.pool.begin().await?;
        let moved = sqlx::query(
            "UPDATE store_meta SET head_seq = $1, head_hash = $2 \
             WHERE head_seq = $3 AND head_hash = $4",
        )
        .bind(last.seq as i64)
        .bind(&last.hash[..])
        .bind(expected.seq as i64)
        .bind(&expected.hash[..])
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() != 1 {
            let found: i64 = sqlx::query_scalar("SELECT head_seq FROM store_meta")
                .fetch_one(&mut *tx)
                .await?;
            return Err(StorageError::HeadMoved {
                expected: expected.seq,
                found: found as u64,
            });
        }
        // One multi-row insert per commit: arrays unnested server-side.
        let seqs: Vec<i64> = records.iter().map(|r| r.seq as i64).collect();
        let key_ids: Vec<i32> = records.iter().map(|r| r.key_id as i32).collect();
        let prevs: Vec<Vec<u8>> = records.iter().map(|r| r.prev_hash.to_vec()).collect();
        let hashes: Vec<Vec<u8>> = records.iter().map(|r| r.hash.to_vec()).collect();
        let bodies: Vec<&[u8]> = records.iter().map(|r| r.body.as_slice()).collect();
        sqlx::query(
            "INSERT INTO events (seq, key_id, prev_hash, hash, body) \
             SELECT * FROM UNNEST($1::bigint[], $2::int[], $3::bytea[], $4::bytea[], $5::bytea[])",
        )
        .bind(&seqs)
        .bind(&key_ids)
        .bind(&prevs)
        .bind(&hashes)
        .bind(&bodies)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn records_after(&self, after: u64, limit: u32) -> Result<Vec<LogRecord>, StorageError> {
        let rows = sqlx::query(
            "SELECT seq, key_id, prev_hash, hash, body FROM events \
             WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after as i64)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(LogRecord {
                    seq: to_u64(r.get(0), "seq")?,
                    key_id: r.get::<i32, _>(1) as u32,
                    prev_hash: hash_from(r.get(2), "prev_hash")?,
                    hash: hash_from(r.get(3), "hash")?,
                    body: r.get(4),
                })
            })
            .collect()
    }

    async fn snapshots(&self) -> Result<Vec<SnapshotHeader>, StorageError> {
        let rows = sqlx::query(
            "SELECT seq, hash, key_id, chunks, COUNT(*) FROM snapshots \
             GROUP BY seq, hash, key_id, chunks ORDER BY seq DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for r in rows {
            let chunks: i64 = r.get::<i32, _>(3).into();
            let present: i64 = r.get(4);
            // A snapshot is usable only whole.
            if chunks != present || chunks < 1 {
                continue;
            }
            out.push(SnapshotHeader {
                at: LogHead {
                    seq: to_u64(r.get(0), "snapshot seq")?,
                    hash: hash_from(r.get(1), "snapshot hash")?,
                },
                key_id: r.get::<i32, _>(2) as u32,
                chunks: chunks as u32,
            });
        }
        Ok(out)
    }

    async fn snapshot_chunks(&self, seq: u64) -> Result<Vec<Vec<u8>>, StorageError> {
        Ok(
            sqlx::query_scalar("SELECT body FROM snapshots WHERE seq = $1 ORDER BY chunk")
                .bind(seq as i64)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn put_snapshot(
        &self,
        header: &SnapshotHeader,
        chunks: &[Vec<u8>],
        keep: usize,
    ) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM snapshots WHERE seq = $1")
            .bind(header.at.seq as i64)
            .execute(&mut *tx)
            .await?;
        for (i, body) in chunks.iter().enumerate() {
            sqlx::query(
                "INSERT INTO snapshots (seq, chunk, chunks, key_id, hash, body) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(header.at.seq as i64)
            .bind(i as i32)
            .bind(header.chunks as i32)
            .bind(header.key_id as i32)
            .bind(&header.at.hash[..])
            .bind(body)
            .execute(&mut *tx)
            .await?;
        }
        let kept: Vec<i64> =
            sqlx::query_scalar("SELECT DISTINCT seq FROM snapshots ORDER BY seq DESC LIMIT $1")
                .bind(keep.max(1) as i64)
                .fetch_all(&mut *tx)
                .await?;
        if let Some(oldest_kept) = kept.last() {
            sqlx::query("DELETE FROM snapshots WHERE seq < $1")
                .bind(oldest_kept)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn delete_snapshots(&self) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM snapshots")
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
