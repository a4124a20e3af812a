//! Reading the log back: replay at unlock and `hearth verify`.

use std::collections::VecDeque;
use std::sync::Arc;

use hashbrown::{HashMap, HashSet};

use super::chain::{record_intact, ChainFault, ChainVerifier, LogHead, LogRecord};
use super::event::{DecodeError, Envelope, Event};
use crate::apps::Registry;
use crate::crypto;
use crate::keys::data_keys::DataKeys;
use crate::projection::snapshot::{self, Start};
use crate::projection::{Projection, ProjectionBuilder};
use crate::storage::{Storage, StorageError};

/// Records per page read: at most, and in the first page (before the size
/// of a record is known); and about how many ciphertext bytes a page of
/// large records is cut down to.
const PAGE: u32 = 512;
const FIRST_PAGE: u32 = 16;
const PAGE_BYTES: usize = 8 << 20;
/// Pages read ahead of the walk.
const PAGES_AHEAD: usize = 2;

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

/// What a walk over the log found: also what the log up to a record says
/// about data keys, which a snapshot carries so that unlock from it knows
/// as much as a full replay.
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
    /// The sequence number of the last erasure event (0 if none): a
    /// snapshot taken before it may hold erased data.
    pub last_erasure: u64,
    /// Records sealed under each key id, so an erasure after a snapshot
    /// counts the records before it too.
    pub per_key: HashMap<u32, u64>,
}

impl Walked {
    /// Notes committed records (with their events) as a walk would: what
    /// the writer keeps for the next snapshot. `keys_gone` says whether the
    /// keys the events destroy are gone from the keyring already.
    pub fn advance(
        &mut self,
        records: &[LogRecord],
        envelopes: &[(u64, Envelope)],
        keys_gone: bool,
    ) {
        for record in records {
            self.records = self.records.max(record.seq);
            self.note_record(record.key_id);
        }
        for (seq, envelope) in envelopes {
            if let Event::KeysDestroyed { key_ids, .. } = &envelope.event {
                let before = std::mem::take(&mut self.per_key);
                self.note_erasure(*seq, key_ids, &before, |_| keys_gone);
                self.per_key = before;
            }
        }
    }

    fn note_record(&mut self, key_id: u32) {
        self.highest_key_id = self.highest_key_id.max(key_id);
        *self.per_key.entry(key_id).or_default() += 1;
    }

    /// An erasure event at `seq` destroying `key_ids`. The records counted
    /// in `before` under a key newly destroyed and `gone` from the keyring
    /// are erased (a walk counts the records it meets itself).
    fn note_erasure(
        &mut self,
        seq: u64,
        key_ids: &[u32],
        before: &HashMap<u32, u64>,
        gone: impl Fn(u32) -> bool,
    ) {
        self.last_erasure = seq;
        for &id in key_ids {
            self.highest_key_id = self.highest_key_id.max(id);
            if !self.destroyed.contains(&id) {
                self.destroyed.push(id);
                if gone(id) {
                    self.erased += before.get(&id).copied().unwrap_or(0);
                }
            }
        }
        self.destroyed.sort_unstable();
    }
}

/// Walks the whole log in order, checking the chain, and with the keys also
/// opening every record and handing its event to `visit`. A record whose
/// key is gone is skipped if a later erasure event names that key, and is
/// an error otherwise.
pub async fn walk(
    storage: &Arc<dyn Storage>,
    keys: Option<&DataKeys>,
    visit: impl FnMut(u64, Envelope) -> Result<(), ReplayError>,
) -> Result<Walked, ReplayError> {
    walk_from(storage, keys, LogHead::EMPTY, Walked::default(), visit).await
}

/// [`walk`] over the records after `from`, a record already checked, with
/// `known` what the log up to it says about keys (a snapshot's): the chain
/// is checked from `from` to the head.
pub async fn walk_from(
    storage: &Arc<dyn Storage>,
    keys: Option<&DataKeys>,
    from: LogHead,
    known: Walked,
    mut visit: impl FnMut(u64, Envelope) -> Result<(), ReplayError>,
) -> Result<Walked, ReplayError> {
    let head = storage.head().await?;
    let mut chain = ChainVerifier { last: from };
    // Records before `from` under each key: erased if a later erasure
    // destroys their key (the tail's own are counted as they are met).
    let before_from = known.per_key.clone();
    let mut walked = known;
    walked.records = from.seq;
    // Records under a missing key, until an erasure event accounts for them.
    let mut unreadable: Vec<(u64, u32)> = Vec::new();
    let mut pages = ReadAhead::start(storage.clone(), from.seq);
    // Each group of records is opened on other threads while the group
    // before it is checked and visited on this one: visiting (building the
    // projection's rows) is one thread's work, and would otherwise leave a
    // core idle.
    let mut waiting: VecDeque<Vec<LogRecord>> = VecDeque::new();
    let mut opened_group: Option<(Vec<LogRecord>, Vec<Opened>)> = None;
    // A page that failed to read is reported once the records before it
    // are visited, as it would be one group after another.
    let mut unread: Option<StorageError> = None;
    loop {
        if waiting.is_empty() && unread.is_none() {
            match pages.next().await {
                Some(Ok(page)) => waiting.extend(groups(page)),
                Some(Err(e)) => unread = Some(e),
                None => {}
            }
        }
        let next = waiting.pop_front();
        if next.is_none() && opened_group.is_none() {
            break;
        }
        let (next_opened, visited) = crate::spread::join(
            next.is_some(),
            || next.as_deref().map(|group| open_records(group, keys)),
            || {
                let Some((group, opened)) = opened_group.take() else {
                    return Ok(());
                };
                for (record, (intact, envelope)) in group.iter().zip(opened) {
                    chain.check_hashed(record, intact)?;
                    walked.note_record(record.key_id);
                    let Some(keys) = keys else { continue };
                    let seq = record.seq;
                    let Some(envelope) = envelope else {
                        unreadable.push((seq, record.key_id));
                        continue;
                    };
                    let envelope = envelope?;
                    if let Event::KeysDestroyed { key_ids, .. } = &envelope.event {
                        walked
                            .note_erasure(seq, key_ids, &before_from, |id| keys.get(id).is_none());
                    }
                    visit(seq, envelope)?;
                }
                Ok::<_, ReplayError>(())
            },
        );
        visited?;
        opened_group = next.zip(next_opened);
    }
    unread.map_or(Ok(()), Err)?;
    chain.finish(head)?;
    walked.records = chain.last.seq;
    let destroyed: HashSet<u32> = walked.destroyed.iter().copied().collect();
    if let Some(&(seq, key_id)) = unreadable.iter().find(|(_, k)| !destroyed.contains(k)) {
        return Err(ReplayError::UnknownKey { seq, key_id });
    }
    walked.erased += unreadable.len() as u64;
    Ok(walked)
}

/// The log's pages, read on a task of their own a few pages ahead of the
/// walk, so reading overlaps opening and applying: the walk waits for the
/// storage only when it catches up.
struct ReadAhead {
    pages: tokio::sync::mpsc::Receiver<Result<Vec<LogRecord>, StorageError>>,
    reader: tokio::task::JoinHandle<()>,
}

impl ReadAhead {
    /// Reads the records after `after`, in order, to the end of the log.
    fn start(storage: Arc<dyn Storage>, mut after: u64) -> ReadAhead {
        let (send, pages) = tokio::sync::mpsc::channel(PAGES_AHEAD);
        let reader = tokio::spawn(async move {
            let mut limit = FIRST_PAGE;
            loop {
                let page = storage.records_after(after, limit).await;
                let page = match page {
                    Ok(page) if page.is_empty() => return,
                    Ok(page) => page,
                    Err(e) => {
                        let _ = send.send(Err(e)).await;
                        return;
                    }
                };
                after = page.last().map_or(after, |r| r.seq);
                limit = next_page_limit(&page);
                if send.send(Ok(page)).await.is_err() {
                    return;
                }
            }
        });
        ReadAhead { pages, reader }
    }

    /// The next page, `None` at the end of the log.
    async fn next(&mut self) -> Option<Result<Vec<LogRecord>, StorageError>> {
        self.pages.recv().await
    }
}

impl Drop for ReadAhead {
    /// A walk that stops early stops the reading too.
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// How many records to read after `page`: as many of its size as fit in
/// [`PAGE_BYTES`], so that large records are read fewer at a time and few
/// bytes wait in the pages ahead.
fn next_page_limit(page: &[LogRecord]) -> u32 {
    let bytes = page.iter().map(|r| r.body.len()).sum::<usize>().max(1);
    let fit = PAGE_BYTES.saturating_mul(page.len()) / bytes;
    u32::try_from(fit).unwrap_or(PAGE).clamp(1, PAGE)
}

/// Ciphertext bytes per group of records opened together, and below which
/// one thread opens a group.
const GROUP_BYTES: usize = 8 << 20;
const SPREAD_FROM_BYTES: usize = 256 << 10;

/// `page` in consecutive groups of about [`GROUP_BYTES`] of ciphertext, so
/// a page of large records is never all held decoded at once (one group is
/// visited while the next is opened).
fn groups(page: Vec<LogRecord>) -> Vec<Vec<LogRecord>> {
    let mut groups = Vec::new();
    let mut group = Vec::new();
    let mut bytes = 0;
    for record in page {
        if bytes >= GROUP_BYTES {
            groups.push(std::mem::take(&mut group));
            bytes = 0;
        }
        bytes += record.body.len();
        group.push(record);
    }
    if !group.is_empty() {
        groups.push(group);
    }
    groups
}

/// Whether a record matches its hash, and its event (`None` where its key
/// is missing, or without keys).
type Opened = (bool, Option<Result<Envelope, ReplayError>>);

/// Each record of `group` checked against its hash and, with `keys`,
/// opened and decoded, in order, spread over the cores: in a replay of the
/// whole log this is most of the work.
fn open_records(group: &[LogRecord], keys: Option<&DataKeys>) -> Vec<Opened> {
    let open = |record: &LogRecord| {
        let key = keys?.get(record.key_id)?;
        let seq = record.seq;
        let plain = crypto::open(&key.key, &key.record_aad(seq), &record.body)
            .map_err(|_| ReplayError::Authentication { seq });
        Some(plain.and_then(|plain| {
            Envelope::decode(&plain).map_err(|error| ReplayError::Decode { seq, error })
        }))
    };
    let check = |record: &LogRecord| (record_intact(record), open(record));
    let bytes: usize = group.iter().map(|r| r.body.len()).sum();
    if bytes < SPREAD_FROM_BYTES {
        return group.iter().map(check).collect();
    }
    crate::spread::map(group.iter().collect(), |_, record| check(record))
}

/// Rebuilds the projection and the app registry from the newest usable
/// snapshot and the records after it, or from the whole log when no
/// snapshot opens and matches; refuses on any fault in what it reads.
/// Records under destroyed keys are skipped and counted.
pub async fn replay(
    storage: &Arc<dyn Storage>,
    keys: &DataKeys,
    now_us: i64,
) -> Result<(Projection, Registry, Walked), ReplayError> {
    let start = snapshot::load_newest(&**storage, keys.root()).await;
    replay_from(storage, keys, now_us, start).await
}

/// Rebuilds from `start` (a snapshot) and the records after it, or from the
/// whole log when `start` is `None`.
pub async fn replay_from(
    storage: &Arc<dyn Storage>,
    keys: &DataKeys,
    now_us: i64,
    start: Option<Start>,
) -> Result<(Projection, Registry, Walked), ReplayError> {
    let (mut builder, mut registry, from, known) = match start {
        Some(s) => (s.builder, s.registry, s.at, s.keys),
        None => (
            ProjectionBuilder::new().with_derived_ids(
                &keys
                    .root()
                    .derive(crate::projection::derived_ids::KEY_LABEL),
            ),
            Registry::default(),
            LogHead::EMPTY,
            Walked::default(),
        ),
    };
    let started = std::time::Instant::now();
    let walked = walk_from(storage, Some(keys), from, known, |seq, envelope| {
        if registry.apply(&envelope, now_us) {
            return Ok(());
        }
        builder
            .add(seq, envelope)
            .map_err(|_| ReplayError::UnknownType { seq })
    })
    .await?;
    let walked_ms = started.elapsed().as_millis() as u64;
    let mut projection = builder.finish();
    tracing::info!(
        walked_ms,
        built_ms = started.elapsed().as_millis() as u64,
        "projection built"
    );
    projection.set_anchor_key(keys.root().derive(b"change-feed anchors"));
    Ok((projection, registry, walked))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(records: usize, bytes: usize) -> Vec<LogRecord> {
        (0..records)
            .map(|i| LogRecord {
                seq: i as u64 + 1,
                key_id: 1,
                prev_hash: [0; 32],
                hash: [0; 32],
                body: vec![0; bytes],
            })
            .collect()
    }

    #[test]
    fn groups_hold_about_group_bytes_each_in_order() {
        let sizes = |records| groups(records).iter().map(Vec::len).collect::<Vec<_>>();
        // Records of 1 MiB: eight to a group, the rest in the last.
        assert_eq!(sizes(page(20, 1 << 20)), [8, 8, 4]);
        // Records larger than a group: one each.
        assert_eq!(sizes(page(3, 9 << 20)), [1, 1, 1]);
        // Small records: one group.
        assert_eq!(sizes(page(512, 200)), [512]);
        assert!(groups(Vec::new()).is_empty());
        let seqs: Vec<u64> = groups(page(20, 1 << 20))
            .into_iter()
            .flatten()
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, (1..=20).collect::<Vec<u64>>());
    }

    #[test]
    fn pages_of_large_records_are_cut_to_about_page_bytes() {
        // Small records: a full page.
        assert_eq!(next_page_limit(&page(16, 200)), PAGE);
        // Records of 1 MiB: eight of them.
        assert_eq!(next_page_limit(&page(16, 1 << 20)), 8);
        // Records larger than a page: one at a time, never none.
        assert_eq!(next_page_limit(&page(2, 64 << 20)), 1);
        // Records of nothing, or no records, do not divide by zero.
        assert_eq!(next_page_limit(&page(16, 0)), PAGE);
        assert_eq!(next_page_limit(&[]), 1);
    }
}
