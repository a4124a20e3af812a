//! Writes while locked.
//!
//! While the store is locked (after a first unlock; a sealed store accepts
//! nothing), an app's write is validated exactly as when unlocked, sealed
//! with HPKE to the store's pending public key, committed durably to the
//! pending table under an arrival number, and answered `202` with a count.
//! Nothing in memory or in the database can open it until the owner
//! unlocks: the private half is wrapped under the root key. At unlock the
//! batches are opened and merged into the log in arrival order through the
//! single writer ([`merge`]).
//!
//! Limits: at most `max_batches` batches (`429 pending_batches_full`) and
//! `max_bytes` sealed bytes (`507 pending_full`) wait at once.

pub mod batch;
pub mod merge;
pub mod seal;

use parking_lot::{Mutex, RwLock};

use crate::apps::AppCaller;
use crate::crypto::DataKey;
use crate::log::writer::NewEntry;
use crate::storage::{PendingTotals, Storage, StorageError};
use batch::PendingBatch;
use merge::MergeReport;
use seal::{OpeningKey, SealingKey};

/// How much may wait for the next unlock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingLimits {
    /// Sealed bytes, in all.
    pub max_bytes: u64,
    /// Batches (accepted requests).
    pub max_batches: u64,
}

impl Default for PendingLimits {
    fn default() -> PendingLimits {
        PendingLimits {
            max_bytes: 256 * 1024 * 1024,
            max_batches: 10_000,
        }
    }
}

/// Why a write was not accepted as pending.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The store is not locked (any more): the write goes to the writer.
    #[error("the store is not locked")]
    NotLocked,
    /// No pending key yet: a store from before pending writes, not unlocked
    /// since.
    #[error("the store has no pending key yet")]
    NoKey,
    #[error("pending writes hold {max_bytes} bytes, the most allowed")]
    BytesFull { max_bytes: u64 },
    #[error("{max_batches} pending writes wait, the most allowed")]
    BatchesFull { max_batches: u64 },
    #[error("the database did not accept the pending write")]
    Storage,
}

/// The pending side of a store: the public key, the limits and the counts.
pub struct PendingIntake {
    sealing: RwLock<Option<SealingKey>>,
    limits: RwLock<PendingLimits>,
    totals: Mutex<PendingTotals>,
    /// Shared by each write while it is sealed and committed; exclusive
    /// while an unlock merges, so no write lands between the merge and the
    /// store reopening.
    gate: tokio::sync::RwLock<()>,
    last_merge: Mutex<Option<MergeReport>>,
}

impl PendingIntake {
    /// The intake as the database has it at process start.
    pub async fn load(storage: &dyn Storage) -> Result<PendingIntake, StorageError> {
        let sealing = match storage.pending_key().await? {
            Some(pair) => match SealingKey::from_bytes(&pair.public_key) {
                Ok(key) => Some(key),
                Err(_) => {
                    tracing::error!("the stored pending public key is malformed");
                    None
                }
            },
            None => None,
        };
        Ok(PendingIntake {
            sealing: RwLock::new(sealing),
            limits: RwLock::new(PendingLimits::default()),
            totals: Mutex::new(storage.pending_totals().await?),
            gate: tokio::sync::RwLock::new(()),
            last_merge: Mutex::new(None),
        })
    }

    pub fn set_limits(&self, limits: PendingLimits) {
        *self.limits.write() = limits;
    }

    /// Batches and bytes waiting (counts only).
    pub fn totals(&self) -> PendingTotals {
        *self.totals.lock()
    }

    /// Held while one write is sealed and committed.
    pub async fn admit(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().await
    }

    /// Held while an unlock merges: waits for writes being committed.
    pub async fn close(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.gate.write().await
    }

    /// Seals `entries` from `app` and commits them; the caller holds
    /// [`Self::admit`] and has checked that the store is locked.
    pub async fn accept(
        &self,
        storage: &dyn Storage,
        app: &AppCaller,
        now_us: i64,
        entries: &[NewEntry],
    ) -> Result<usize, Refusal> {
        let sealing = self.sealing.read().clone().ok_or(Refusal::NoKey)?;
        let batch = PendingBatch::new(app, now_us, entries);
        let count = entries.len();
        let sealed = sealing.seal(&batch.encode());
        drop(batch);
        let size = sealed.len() as u64;
        {
            let limits = *self.limits.read();
            let mut totals = self.totals.lock();
            if totals.batches + 1 > limits.max_batches {
                return Err(Refusal::BatchesFull {
                    max_batches: limits.max_batches,
                });
            }
            if totals.bytes + size > limits.max_bytes {
                return Err(Refusal::BytesFull {
                    max_bytes: limits.max_bytes,
                });
            }
            totals.batches += 1;
            totals.bytes += size;
        }
        match storage.add_pending(&sealed).await {
            Ok(_) => Ok(count),
            Err(e) => {
                tracing::error!(error = %e, "pending write failed");
                let mut totals = self.totals.lock();
                totals.batches = totals.batches.saturating_sub(1);
                totals.bytes = totals.bytes.saturating_sub(size);
                Err(Refusal::Storage)
            }
        }
    }

    /// The private half for a merge, unwrapped with the root key; creates
    /// the pair on the first unlock of a store that has none. `None` (and
    /// an error logged) if the stored pair does not open: pending batches
    /// then wait, untouched.
    pub async fn opening_key(
        &self,
        storage: &dyn Storage,
        root: &DataKey,
    ) -> Result<Option<OpeningKey>, StorageError> {
        let opening = match storage.pending_key().await? {
            Some(pair) => match seal::unwrap(root, &pair) {
                Ok(opening) => Some((pair, opening)),
                Err(e) => {
                    tracing::error!(error = %e, "the pending key does not open; pending writes are kept");
                    None
                }
            },
            None => {
                let (pair, opening) = seal::generate(root);
                let stored = storage.put_pending_key(&pair).await?;
                if stored == pair {
                    Some((pair, opening))
                } else {
                    seal::unwrap(root, &stored).ok().map(|o| (stored, o))
                }
            }
        };
        Ok(opening.and_then(|(pair, opening)| {
            let sealing = SealingKey::from_bytes(&pair.public_key).ok()?;
            *self.sealing.write() = Some(sealing);
            Some(opening)
        }))
    }

    /// Keeps the report of the merge that just ran and recounts what waits.
    pub async fn merged(&self, storage: &dyn Storage, report: MergeReport) {
        match storage.pending_totals().await {
            Ok(t) => *self.totals.lock() = t,
            Err(e) => tracing::error!(error = %e, "counting pending writes failed"),
        }
        *self.last_merge.lock() = Some(report);
    }

    /// What the last unlock's merge did, for the answer to that unlock.
    pub fn take_merge_report(&self) -> Option<MergeReport> {
        self.last_merge.lock().take()
    }
}
