use async_trait::async_trait;
use futures_util::StreamExt;
use sqlx::migrate::{Migrate, Migrator};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row};

use super::{
    hash_from, mac_from, to_u64, KeySlotRow, Keyring, PendingRow, PendingTotals, SealedChunks,
    SnapshotHeader, Storage, StorageError, StoredDataKey,
};
use crate::crypto::KdfParams;
use crate::log::head::HeadMac;
use crate::log::{LogHead, LogRecord};
use crate::pending::seal::StoredKeyPair;
use crate::research::signing::StoredSigningKey;

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
        let keyslots = sqlx::query(super::SELECT_KEYSLOTS)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(keyslot_from_row)
            .collect();
        Ok(Some(Keyring {
            keyslots,
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
        // Durable on commit whatever the server's default: an answer means
        // the records reached the server's disk.
        sqlx::query("SET LOCAL synchronous_commit = on")
            .execute(&mut *tx)
            .await?;
        delete_pending(&mut tx, merged).await?;
        let Some(last) = records.last() else {
            tx.commit().await?;
            return Ok(());
        };
        let moved = sqlx::query(
            "UPDATE store_meta SET head_seq = $1, head_hash = $2, head_mac = $3 \
             WHERE head_seq = $4 AND head_hash = $5",
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

    async fn put_keyslot(&self, slot: &KeySlotRow) -> Result<(), StorageError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM keyslots WHERE slot_id = $1")
            .bind(slot.slot_id)
            .execute(&mut *tx)
            .await?;
        insert_keyslot(&mut tx, slot).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_keyslot(&self, slot_id: i64) -> Result<bool, StorageError> {
        let deleted = sqlx::query("DELETE FROM keyslots WHERE slot_id = $1")
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
        sqlx::query("DELETE FROM keyring WHERE key_id = $1")
            .bind(crate::crypto::FIRST_KEY_ID as i32)
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
                key_id: r.get::<i32, _>(0) as u32,
                wrapped: r.get(1),
                retired: r.get(2),
            })
            .collect())
    }

    async fn add_data_keys(&self, keys: &[StoredDataKey]) -> Result<(), StorageError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for k in keys {
            sqlx::query("INSERT INTO data_keys (key_id, wrapped_key, retired) VALUES ($1, $2, $3)")
                .bind(k.key_id as i32)
                .bind(&k.wrapped)
                .bind(k.retired)
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
        let ids: Vec<i32> = key_ids.iter().map(|&id| id as i32).collect();
        sqlx::query("DELETE FROM data_keys WHERE key_id = ANY($1)")
            .bind(&ids)
            .execute(&self.pool)
            .await?;
        // A deleted row stays in the table's pages until they are rewritten:
        // rewrite the (small) table now so the old file is released.
        sqlx::query("VACUUM FULL data_keys")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn retire_data_keys(&self) -> Result<(), StorageError> {
        sqlx::query("UPDATE data_keys SET retired = TRUE WHERE NOT retired")
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
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET LOCAL synchronous_commit = on")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO pending_key (singleton, public_key, wrapped_private_key) \
             VALUES (1, $1, $2) ON CONFLICT (singleton) DO NOTHING",
        )
        .bind(&pair.public_key)
        .bind(&pair.wrapped_private_key)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.pending_key()
            .await?
            .ok_or_else(|| StorageError::Corrupt("pending key vanished".into()))
    }

    async fn add_pending(&self, sealed: &[u8]) -> Result<u64, StorageError> {
        // A 202 promises durability: never rely on the server's default.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET LOCAL synchronous_commit = on")
            .execute(&mut *tx)
            .await?;
        let seq: i64 =
            sqlx::query_scalar("INSERT INTO pending_writes (body) VALUES ($1) RETURNING seq")
                .bind(sealed)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        to_u64(seq, "pending seq")
    }

    async fn pending_after(&self, after: u64, limit: u32) -> Result<Vec<PendingRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT seq, body FROM pending_writes WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
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
        let row = sqlx::query(
            "SELECT count(*), coalesce(sum(octet_length(body)), 0)::bigint FROM pending_writes",
        )
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
        let set = sqlx::query(
            "UPDATE store_meta SET head_mac = $1 WHERE head_seq = $2 AND head_hash = $3",
        )
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

    async fn backup_to(&self, _path: &std::path::Path) -> Result<(), StorageError> {
        Err(StorageError::Backup(
            "Postgres is backed up with its own tools, which take a consistent snapshot \
             while Hearth runs (ciphertext only, as stored):\n  \
             pg_dump --format=custom --file=hearth.dump \"$HEARTH_DATABASE_URL\"\n\
             Restore into an empty database with:\n  \
             pg_restore --dbname=\"$NEW_DATABASE_URL\" hearth.dump\n\
             Keep the state file (HEARTH_STATE_FILE) where it is: a restored copy is behind \
             its mark until you run `hearth restore --accept-rollback`."
                .into(),
        ))
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
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET LOCAL synchronous_commit = on")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO signing_key (singleton, kid, public_jwk, wrapped_private_key) \
             VALUES (1, $1, $2, $3) ON CONFLICT (singleton) DO NOTHING",
        )
        .bind(&key.kid)
        .bind(&key.public_jwk)
        .bind(&key.wrapped_private_key)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
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
        // A replay must be caught after a crash too: never rely on the
        // server's default.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET LOCAL synchronous_commit = on")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM spent_assertions WHERE expires_us <= $1")
            .bind(now_us)
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO spent_assertions (digest, expires_us) VALUES ($1, $2) \
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

    async fn snapshot_chunk(&self, seq: u64, chunk: u32) -> Result<Vec<u8>, StorageError> {
        sqlx::query_scalar("SELECT body FROM snapshots WHERE seq = $1 AND chunk = $2")
            .bind(seq as i64)
            .bind(chunk as i32)
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
        sqlx::query("DELETE FROM snapshots WHERE seq = $1")
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
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(header.at.seq as i64)
            .bind(stored as i32)
            .bind(header.chunks as i32)
            .bind(header.key_id as i32)
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

    async fn delete_snapshots(&self, before: u64) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM snapshots WHERE seq < $1")
            .bind(before.min(i64::MAX as u64) as i64)
            .execute(&self.pool)
            .await?;
        // Deleted rows stay in the table's pages until they are rewritten:
        // rewrite the (now empty) table so the old file is released.
        sqlx::query("VACUUM FULL snapshots")
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
            "INSERT INTO export_jobs (job_id, body) VALUES ($1, $2) \
             ON CONFLICT (job_id) DO UPDATE SET body = excluded.body",
        )
        .bind(job_id)
        .bind(sealed)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_export_job(&self, job_id: &str) -> Result<bool, StorageError> {
        let gone = sqlx::query("DELETE FROM export_jobs WHERE job_id = $1")
            .bind(job_id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(gone > 0)
    }

    async fn study_secrets(&self, digest: &[u8; 32]) -> Result<Option<Vec<u8>>, StorageError> {
        let row = sqlx::query("SELECT body FROM study_secrets WHERE digest = $1")
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
            "INSERT INTO study_secrets (digest, body) VALUES ($1, $2) \
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(&digest[..])
        .bind(sealed)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query("SELECT body FROM study_secrets WHERE digest = $1")
            .bind(&digest[..])
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row.get::<Vec<u8>, _>(0))
    }

    async fn delete_study_secrets(&self, digest: &[u8; 32]) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM study_secrets WHERE digest = $1")
            .bind(&digest[..])
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

async fn delete_pending(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    seqs: &[u64],
) -> Result<(), StorageError> {
    if seqs.is_empty() {
        return Ok(());
    }
    let seqs: Vec<i64> = seqs.iter().map(|&s| s as i64).collect();
    sqlx::query("DELETE FROM pending_writes WHERE seq = ANY($1)")
        .bind(&seqs)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn insert_keyslot(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    slot: &KeySlotRow,
) -> Result<(), StorageError> {
    sqlx::query(&format!(
        "INSERT INTO keyslots ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
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

fn keyslot_from_row(row: &sqlx::postgres::PgRow) -> KeySlotRow {
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
