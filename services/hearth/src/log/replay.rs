//! Reading the log back: replay at unlock and `hearth verify`.

use super::chain::{ChainFault, ChainVerifier, LogHead};
use super::event::{DecodeError, Envelope};
use crate::apps::Registry;
use crate::crypto::{self, DataKey};
use crate::projection::snapshot::{self, Start};
use crate::projection::{Projection, ProjectionBuilder};
use crate::storage::{Storage, StorageError};

const PAGE: u32 = 512;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("log broken: {0}")]
    Chain(#[from] ChainFault),
    #[error("record {seq}: failed authentication")]
    Authentication { seq: u64 },
    #[error("record {seq}: sealed under unknown key id {key_id}")]
    UnknownKey { seq: u64, key_id: u32 },
    #[error("record {seq}: {error}")]
    Decode { seq: u64, error: DecodeError },
    #[error("record {seq}: names a sample type this build does not know")]
    UnknownType { seq: u64 },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ReplayError {
    /// The first sequence number found bad, if the fault is in the log itself.
    pub fn bad_seq(&self) -> Option<u64> {
        match self {
            ReplayError::Chain(f) => Some(f.seq()),
            ReplayError::Authentication { seq }
            | ReplayError::UnknownKey { seq, .. }
            | ReplayError::Decode { seq, .. }
            | ReplayError::UnknownType { seq } => Some(*seq),
            ReplayError::Storage(_) => None,
        }
    }
}

/// Walks the whole log in order, checking the chain, and with a key also
/// opening every record and handing its event to `visit`. Returns the
/// number of records checked.
pub async fn walk(
    storage: &dyn Storage,
    key: Option<&DataKey>,
    visit: impl FnMut(u64, Envelope) -> Result<(), ReplayError>,
) -> Result<u64, ReplayError> {
    walk_from(storage, key, LogHead::EMPTY, visit).await
}

/// [`walk`] over the records after `from`, a record already checked: the
/// chain is checked from it to the head.
pub async fn walk_from(
    storage: &dyn Storage,
    key: Option<&DataKey>,
    from: LogHead,
    mut visit: impl FnMut(u64, Envelope) -> Result<(), ReplayError>,
) -> Result<u64, ReplayError> {
    let head = storage.head().await?;
    let mut chain = ChainVerifier { last: from };
    let mut after = from.seq;
    loop {
        let page = storage.records_after(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for record in &page {
            chain.check(record)?;
            if let Some(key) = key {
                let seq = record.seq;
                if record.key_id != key.key_id {
                    return Err(ReplayError::UnknownKey {
                        seq,
                        key_id: record.key_id,
                    });
                }
                let plain = crypto::open(&key.key, &key.record_aad(seq), &record.body)
                    .map_err(|_| ReplayError::Authentication { seq })?;
                let envelope =
                    Envelope::decode(&plain).map_err(|error| ReplayError::Decode { seq, error })?;
                visit(seq, envelope)?;
            }
        }
    }
    chain.finish(head)?;
    Ok(chain.last.seq)
}

/// Rebuilds the projection and the app registry from the newest usable
/// snapshot and the records after it, or from the whole log when no
/// snapshot opens and matches; refuses on any fault in what it reads.
pub async fn replay(
    storage: &dyn Storage,
    key: &DataKey,
    now_us: i64,
) -> Result<(Projection, Registry), ReplayError> {
    let start = snapshot::load_newest(storage, key).await;
    replay_from(storage, key, now_us, start).await
}

/// Rebuilds from `start` (a snapshot) and the records after it, or from the
/// whole log when `start` is `None`.
pub async fn replay_from(
    storage: &dyn Storage,
    key: &DataKey,
    now_us: i64,
    start: Option<Start>,
) -> Result<(Projection, Registry), ReplayError> {
    let (mut builder, mut registry, from) = match start {
        Some(s) => (s.builder, s.registry, s.at),
        None => (
            ProjectionBuilder::new(),
            Registry::default(),
            LogHead::EMPTY,
        ),
    };
    walk_from(storage, Some(key), from, |seq, envelope| {
        if registry.apply(&envelope, now_us) {
            return Ok(());
        }
        builder
            .add(seq, envelope)
            .map_err(|_| ReplayError::UnknownType { seq })
    })
    .await?;
    let mut projection = builder.finish();
    projection.set_anchor_key(key.derive(b"change-feed anchors"));
    Ok((projection, registry))
}
