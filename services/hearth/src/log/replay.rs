//! Reading the log back: replay at unlock and `hearth verify`.

use hashbrown::HashSet;

use super::chain::{ChainFault, ChainVerifier};
use super::event::{DecodeError, Envelope, Event};
use crate::apps::Registry;
use crate::crypto;
use crate::keys::data_keys::DataKeys;
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

/// What a walk over the log found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Walked {
    /// Records whose chain links were checked.
    pub records: u64,
    /// Records sealed under keys an erasure destroyed: legitimately
    /// unreadable, skipped.
    pub erased: u64,
    /// Keys the log says were destroyed.
    pub destroyed: Vec<u32>,
    /// The highest key id any record or erasure names.
    pub highest_key_id: u32,
}

/// Walks the whole log in order, checking the chain, and with the keys also
/// opening every record and handing its event to `visit`. A record whose
/// key is gone is skipped if a later erasure event names that key, and is
/// an error otherwise.
pub async fn walk(
    storage: &dyn Storage,
    keys: Option<&DataKeys>,
    mut visit: impl FnMut(u64, Envelope) -> Result<(), ReplayError>,
) -> Result<Walked, ReplayError> {
    let head = storage.head().await?;
    let mut chain = ChainVerifier::default();
    let mut walked = Walked::default();
    let mut destroyed: HashSet<u32> = HashSet::new();
    // Records under a missing key, until an erasure event accounts for them.
    let mut unreadable: Vec<(u64, u32)> = Vec::new();
    let mut after = 0;
    loop {
        let page = storage.records_after(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for record in &page {
            chain.check(record)?;
            walked.highest_key_id = walked.highest_key_id.max(record.key_id);
            let Some(keys) = keys else { continue };
            let seq = record.seq;
            let Some(key) = keys.get(record.key_id) else {
                unreadable.push((seq, record.key_id));
                continue;
            };
            let plain = crypto::open(&key.key, &key.record_aad(seq), &record.body)
                .map_err(|_| ReplayError::Authentication { seq })?;
            let envelope =
                Envelope::decode(&plain).map_err(|error| ReplayError::Decode { seq, error })?;
            if let Event::KeysDestroyed { key_ids, .. } = &envelope.event {
                destroyed.extend(key_ids.iter().copied());
                walked.highest_key_id = key_ids
                    .iter()
                    .copied()
                    .fold(walked.highest_key_id, u32::max);
            }
            visit(seq, envelope)?;
        }
    }
    chain.finish(head)?;
    walked.records = chain.last.seq;
    if let Some(&(seq, key_id)) = unreadable.iter().find(|(_, k)| !destroyed.contains(k)) {
        return Err(ReplayError::UnknownKey { seq, key_id });
    }
    walked.erased = unreadable.len() as u64;
    walked.destroyed = destroyed.into_iter().collect();
    walked.destroyed.sort_unstable();
    Ok(walked)
}

/// Rebuilds the projection and the app registry from the log; refuses on
/// any fault. Records under destroyed keys are skipped and counted.
pub async fn replay(
    storage: &dyn Storage,
    keys: &DataKeys,
    now_us: i64,
) -> Result<(Projection, Registry, Walked), ReplayError> {
    let mut builder = ProjectionBuilder::new();
    let mut registry = Registry::default();
    let walked = walk(storage, Some(keys), |seq, envelope| {
        if registry.apply(&envelope, now_us) {
            return Ok(());
        }
        builder
            .add(seq, envelope)
            .map_err(|_| ReplayError::UnknownType { seq })
    })
    .await?;
    let mut projection = builder.finish();
    projection.set_anchor_key(keys.root().derive(b"change-feed anchors"));
    Ok((projection, registry, walked))
}
