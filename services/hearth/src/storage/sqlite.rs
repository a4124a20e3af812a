use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use sqlx::migrate::{Migrate, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use super::{
    hash_from, mac_from, to_u64, KeySlotRow, Keyring, PendingRow, PendingTotals, SealedChunks,
    SnapshotHeader, Storage, StorageError, StoredDataKey,
};
use crate::crypto::KdfParams;
use crate::log::head::HeadMac;
use crate::log::{LogHead, LogRecord};
use crate::pending::seal::StoredKeyPair;
use crate::research::signing::StoredSigningKey;

static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");

pub struct SqliteStorage {
    pool: SqlitePool,
}

impl SqliteStorage {
    pub async fn connect(url: &str) -> Result<SqliteStorage, StorageError> {
        // WAL with synchronous=FULL: a commit is on disk before it returns.
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            // Deleted content is overwritten, so a destroyed data key does
            // not linger in free pages of the file.
            .pragma("secure_delete", "ON")
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        let storage = SqliteStorage { pool };
        storage.migrate().await?;
        Ok(storage)
    }

    async fn migrate(&self) -> Result<(), StorageError> {
        self.adopt_legacy_schema_table().await?;
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    /// Stores created before the switch to sqlx's migrator recorded their
    /// applied versions in `hearth_schema`: move that record into the
    /// migrator's table, in one transaction, so nothing runs twice.
    async fn adopt_legacy_schema_table(&self) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        let legacy: Option<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'hearth_schema'",
        )
        .fetch_optional(&mut *tx)
        .await?;
        if legacy.is_none() {
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
                 execution_time) VALUES (?, ?, TRUE, ?, -1) ON CONFLICT (version) DO NOTHING",
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
impl Storage for SqliteStorage {
    fn backend_name(&self) -> &'static str {
        "sqlite"
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
        let keyslots = sqlx::query(super::SELECT_KEYSLOTS)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(keyslot_from_row)
            .collect();
        Ok(Some(Keyring {
            keyslots,
            kdf: KdfParams {
                memory_kib: meta.get::<i64, _>(0) as u32,
                iterations: meta.get::<i64, _>(1) as u32,
                parallelism: meta.get::<i64, _>(2) as u32,
            },
            salt: meta.get(3),
            wrapped_keys: keys
                .into_iter()
                .map(|r| (r.get::<i64, _>(0) as u32, r.get(1)))
                .collect(),
        }))
    }

    async fn initialise(&self, keyring: &Keyring) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT singleton FROM store_meta")
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_some() {
            return Err(StorageError::AlreadyInitialised);
        }
        sqlx::query(
            "INSERT INTO store_meta (singleton, kdf_memory_kib, kdf_iterations, kdf_parallelism, \
             salt, head_seq, head_hash) VALUES (1, ?, ?, ?, ?, 0, ?)",
        )
        .bind(keyring.kdf.memory_kib as i64)
        .bind(keyring.kdf.iterations as i64)
        .bind(keyring.kdf.parallelism as i64)
        .bind(&keyring.salt)
        .bind(&LogHead::EMPTY.hash[..])
        .execute(&mut *tx)
        .await?;
        for (key_id, wrapped) in &keyring.wrapped_keys {
            sqlx::query("INSERT INTO keyring (key_id, wrapped_key) VALUES (?, ?)")
                .bind(*key_id as i64)
                .bind(wrapped)
                .execute(&mut *tx)
                .await?;
        }
        for slot in &keyring.keyslots {
            insert_keyslot(&mut tx, slot).await?;
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

    async fn append(
        &self,
        expected: LogHead,
        records: &[LogRecord],
        head_mac: &HeadMac,
        merged: &[u64],
    ) -> Result<(), StorageError> {
        if records.is_empty() && merged.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        delete_pending(&mut tx, merged).await?;
        let Some(last) = records.last() else {
            tx.commit().await?;
            return Ok(());
        };
        let moved = sqlx::query(
            "UPDATE store_meta SET head_seq = ?, head_hash = ?, head_mac = ? \
             WHERE head_seq = ? AND head_hash = ?",
        )
        .bind(last.seq as i64)
        .bind(&last.hash[..])
        .bind(&head_mac[..])
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
        for r in records {
            sqlx::query(
                "INSERT INTO events (seq, key_id, prev_hash, hash, body) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(r.seq as i64)
            .bind(r.key_id as i64)
            .bind(&r.prev_hash[..])
            .bind(&r.hash[..])
            .bind(&r.body)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn records_after(&self, after: u64, limit: u32) -> Result<Vec<LogRecord>, StorageError> {
        let rows = sqlx::query(
            "SELECT seq, key_id, prev_hash, hash, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(after as i64)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(LogRecord {
                    seq: to_u64(r.get(0), "seq")?,
                    key_id: r.get::<i64, _>(1) as u32,
                    prev_hash: hash_from(r.get(2), "prev_hash")?,
                    hash: hash_from(r.get(3), "hash")?,
                    body: r.get(4),
                })
            })
            .collect()
    }

    async fn put_keyslot(&self, slot: &KeySlotRow) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM keyslots WHERE slot_id = ?")
            .bind(slot.slot_id)
            .execute(&mut *tx)
            .await?;
        insert_keyslot(&mut tx, slot).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_keyslot(&self, slot_id: i64) -> Result<bool, StorageError> {
        let deleted = sqlx::query("DELETE FROM keyslots WHERE slot_id = ?")
            .bind(slot_id)
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected() == 1)
    }

    async fn adopt_legacy_root_wrap(&self, slot: &KeySlotRow) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        let slots: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM keyslots")
            .fetch_one(&mut *tx)
            .await?;
        if slots > 0 {
            return Ok(());
        }
        insert_keyslot(&mut tx, slot).await?;
        sqlx::query("DELETE FROM keyring WHERE key_id = ?")
            .bind(crate::crypto::FIRST_KEY_ID as i64)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn data_keys(&self) -> Result<Vec<StoredDataKey>, StorageError> {
        let rows =
            sqlx::query("SELECT key_id, wrapped_key, retired FROM data_keys ORDER BY key_id")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|r| StoredDataKey {
                key_id: r.get::<i64, _>(0) as u32,
                wrapped: r.get(1),
                retired: r.get::<i64, _>(2) != 0,
            })
            .collect())
    }

    async fn add_data_keys(&self, keys: &[StoredDataKey]) -> Result<(), StorageError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for k in keys {
            sqlx::query("INSERT INTO data_keys (key_id, wrapped_key, retired) VALUES (?, ?, ?)")
                .bind(k.key_id as i64)
                .bind(&k.wrapped)
                .bind(i64::from(k.retired))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn destroy_data_keys(&self, key_ids: &[u32]) -> Result<(), StorageError> {
        if key_ids.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for id in key_ids {
            sqlx::query("DELETE FROM data_keys WHERE key_id = ?")
                .bind(*id as i64)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        // The write-ahead log still holds the pages as they were when the
        // key was written: fold it into the (securely deleted) file and cut it.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn retire_data_keys(&self) -> Result<(), StorageError> {
        sqlx::query("UPDATE data_keys SET retired = 1 WHERE retired = 0")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn pending_key(&self) -> Result<Option<StoredKeyPair>, StorageError> {
        let row = sqlx::query("SELECT public_key, wrapped_private_key FROM pending_key")
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| StoredKeyPair {
            public_key: r.get(0),
            wrapped_private_key: r.get(1),
        }))
    }

    async fn put_pending_key(&self, pair: &StoredKeyPair) -> Result<StoredKeyPair, StorageError> {
        sqlx::query(
            "INSERT INTO pending_key (singleton, public_key, wrapped_private_key) \
             VALUES (1, ?, ?) ON CONFLICT (singleton) DO NOTHING",
        )
        .bind(&pair.public_key)
        .bind(&pair.wrapped_private_key)
        .execute(&self.pool)
        .await?;
        self.pending_key()
            .await?
            .ok_or_else(|| StorageError::Corrupt("pending key vanished".into()))
    }

    async fn add_pending(&self, sealed: &[u8]) -> Result<u64, StorageError> {
        // The pool runs with synchronous=FULL: committed means on disk.
        let seq: i64 =
            sqlx::query_scalar("INSERT INTO pending_writes (body) VALUES (?) RETURNING seq")
                .bind(sealed)
                .fetch_one(&self.pool)
                .await?;
        to_u64(seq, "pending seq")
    }

    async fn pending_after(&self, after: u64, limit: u32) -> Result<Vec<PendingRow>, StorageError> {
        let rows =
            sqlx::query("SELECT seq, body FROM pending_writes WHERE seq > ? ORDER BY seq LIMIT ?")
                .bind(after as i64)
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|r| {
                Ok(PendingRow {
                    seq: to_u64(r.get(0), "pending seq")?,
                    sealed: r.get(1),
                })
            })
            .collect()
    }

    async fn pending_totals(&self) -> Result<PendingTotals, StorageError> {
        let row =
            sqlx::query("SELECT count(*), coalesce(sum(length(body)), 0) FROM pending_writes")
                .fetch_one(&self.pool)
                .await?;
        Ok(PendingTotals {
            batches: to_u64(row.get(0), "pending count")?,
            bytes: to_u64(row.get(1), "pending bytes")?,
        })
    }

    async fn authenticated_head(&self) -> Result<(LogHead, Option<HeadMac>), StorageError> {
        let row = sqlx::query("SELECT head_seq, head_hash, head_mac FROM store_meta")
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StorageError::NotInitialised)?;
        let head = LogHead {
            seq: to_u64(row.get(0), "head_seq")?,
            hash: hash_from(row.get(1), "head_hash")?,
        };
        Ok((head, mac_from(row.get(2))?))
    }

    async fn set_head_mac(&self, head: LogHead, mac: &HeadMac) -> Result<(), StorageError> {
        let set =
            sqlx::query("UPDATE store_meta SET head_mac = ? WHERE head_seq = ? AND head_hash = ?")
                .bind(&mac[..])
                .bind(head.seq as i64)
                .bind(&head.hash[..])
                .execute(&self.pool)
                .await?;
        if set.rows_affected() != 1 {
            let (now, _) = self.authenticated_head().await?;
            return Err(StorageError::HeadMoved {
                expected: head.seq,
                found: now.seq,
            });
        }
        Ok(())
    }

    async fn backup_to(&self, path: &std::path::Path) -> Result<(), StorageError> {
        // VACUUM INTO reads one snapshot (a read transaction under WAL, so
        // the writer goes on) and writes a compact copy. It needs a file
        // that does not exist or is empty: create it owner-only first.
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        options
            .open(path)
            .map_err(|e| StorageError::Backup(format!("creating {}: {e}", path.display())))?;
        let target = path.to_str().ok_or_else(|| {
            StorageError::Backup(format!("{} is not a UTF-8 path", path.display()))
        })?;
        sqlx::query("VACUUM INTO ?")
            .bind(target)
            .execute(&self.pool)
            .await?;
        std::fs::File::open(path)
            .and_then(|f| f.sync_all())
            .map_err(|e| StorageError::Backup(format!("syncing {}: {e}", path.display())))?;
        Ok(())
    }

    async fn signing_key(&self) -> Result<Option<StoredSigningKey>, StorageError> {
        let row = sqlx::query("SELECT kid, public_jwk, wrapped_private_key FROM signing_key")
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| StoredSigningKey {
            kid: r.get(0),
            public_jwk: r.get(1),
            wrapped_private_key: r.get(2),
        }))
    }

    async fn put_signing_key(
        &self,
        key: &StoredSigningKey,
    ) -> Result<StoredSigningKey, StorageError> {
        sqlx::query(
            "INSERT INTO signing_key (singleton, kid, public_jwk, wrapped_private_key) \
             VALUES (1, ?, ?, ?) ON CONFLICT (singleton) DO NOTHING",
        )
        .bind(&key.kid)
        .bind(&key.public_jwk)
        .bind(&key.wrapped_private_key)
        .execute(&self.pool)
        .await?;
        self.signing_key()
            .await?
            .ok_or_else(|| StorageError::Corrupt("signing key vanished".into()))
    }

    async fn spend_assertion(
        &self,
        digest: &[u8; 32],
        expires_us: i64,
        now_us: i64,
    ) -> Result<bool, StorageError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM spent_assertions WHERE expires_us <= ?")
            .bind(now_us)
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO spent_assertions (digest, expires_us) VALUES (?, ?) \
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(&digest[..])
        .bind(expires_us)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(inserted == 1)
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
            let chunks: i64 = r.get(3);
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
                key_id: r.get::<i64, _>(2) as u32,
                chunks: chunks as u32,
            });
        }
        Ok(out)
    }

    async fn snapshot_chunk(&self, seq: u64, chunk: u32) -> Result<Vec<u8>, StorageError> {
        sqlx::query_scalar("SELECT body FROM snapshots WHERE seq = ? AND chunk = ?")
            .bind(seq as i64)
            .bind(chunk as i64)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StorageError::Corrupt(format!("snapshot {seq} lacks chunk {chunk}")))
    }

    async fn put_snapshot(
        &self,
        header: &SnapshotHeader,
        mut chunks: SealedChunks<'_>,
        keep: usize,
    ) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM snapshots WHERE seq = ?")
            .bind(header.at.seq as i64)
            .execute(&mut *tx)
            .await?;
        let mut stored = 0u32;
        while let Some(body) = chunks.next().await {
            let body = body?;
            if stored == header.chunks {
                return Err(header.chunks_stored(stored + 1));
            }
            sqlx::query(
                "INSERT INTO snapshots (seq, chunk, chunks, key_id, hash, body) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(header.at.seq as i64)
            .bind(stored as i64)
            .bind(header.chunks as i64)
            .bind(header.key_id as i64)
            .bind(&header.at.hash[..])
            .bind(body)
            .execute(&mut *tx)
            .await?;
            stored += 1;
        }
        if stored != header.chunks {
            return Err(header.chunks_stored(stored));
        }
        let kept: Vec<i64> =
            sqlx::query_scalar("SELECT DISTINCT seq FROM snapshots ORDER BY seq DESC LIMIT ?")
                .bind(keep.max(1) as i64)
                .fetch_all(&mut *tx)
                .await?;
        if let Some(oldest_kept) = kept.last() {
            sqlx::query("DELETE FROM snapshots WHERE seq < ?")
                .bind(oldest_kept)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn delete_snapshots(&self, before: u64) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM snapshots WHERE seq < ?")
            .bind(before.min(i64::MAX as u64) as i64)
            .execute(&self.pool)
            .await?;
        // As for destroyed keys: the write-ahead log still holds the old
        // pages; fold it into the (securely deleted) file and cut it.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn export_jobs(&self) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let rows = sqlx::query("SELECT job_id, body FROM export_jobs ORDER BY job_id")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get::<String, _>(0), r.get::<Vec<u8>, _>(1)))
            .collect())
    }

    async fn put_export_job(&self, job_id: &str, sealed: &[u8]) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO export_jobs (job_id, body) VALUES (?, ?) \
             ON CONFLICT (job_id) DO UPDATE SET body = excluded.body",
        )
        .bind(job_id)
        .bind(sealed)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_export_job(&self, job_id: &str) -> Result<bool, StorageError> {
        let gone = sqlx::query("DELETE FROM export_jobs WHERE job_id = ?")
            .bind(job_id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(gone > 0)
    }

    async fn study_secrets(&self, digest: &[u8; 32]) -> Result<Option<Vec<u8>>, StorageError> {
        let row = sqlx::query("SELECT body FROM study_secrets WHERE digest = ?")
            .bind(&digest[..])
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get::<Vec<u8>, _>(0)))
    }

    async fn put_study_secrets(
        &self,
        digest: &[u8; 32],
        sealed: &[u8],
    ) -> Result<Vec<u8>, StorageError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO study_secrets (digest, body) VALUES (?, ?) \
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(&digest[..])
        .bind(sealed)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query("SELECT body FROM study_secrets WHERE digest = ?")
            .bind(&digest[..])
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row.get::<Vec<u8>, _>(0))
    }

    async fn delete_study_secrets(&self, digest: &[u8; 32]) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM study_secrets WHERE digest = ?")
            .bind(&digest[..])
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

async fn delete_pending(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    seqs: &[u64],
) -> Result<(), StorageError> {
    for seq in seqs {
        sqlx::query("DELETE FROM pending_writes WHERE seq = ?")
            .bind(*seq as i64)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

async fn insert_keyslot(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    slot: &KeySlotRow,
) -> Result<(), StorageError> {
    sqlx::query(&format!(
        "INSERT INTO keyslots ({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        super::KEYSLOT_COLUMNS
    ))
    .bind(slot.slot_id)
    .bind(&slot.kind)
    .bind(&slot.kdf)
    .bind(slot.kdf_memory_kib)
    .bind(slot.kdf_iterations)
    .bind(slot.kdf_parallelism)
    .bind(&slot.salt)
    .bind(&slot.wrapped_root)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn keyslot_from_row(row: &sqlx::sqlite::SqliteRow) -> KeySlotRow {
    KeySlotRow {
        slot_id: row.get("slot_id"),
        kind: row.get("kind"),
        kdf: row.get("kdf"),
        kdf_memory_kib: row.get("kdf_memory_kib"),
        kdf_iterations: row.get("kdf_iterations"),
        kdf_parallelism: row.get("kdf_parallelism"),
        salt: row.get("salt"),
        wrapped_root: row.get("wrapped_root"),
    }
}
