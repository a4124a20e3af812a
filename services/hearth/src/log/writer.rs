//! The single writer: the only code that appends to the log.
//!
//! Requests queue on a channel; the writer takes everything queued, checks
//! each request against the projection (and against earlier requests of the
//! same group), gives each a gap-free sequence number, seals it, commits the
//! whole group in one transaction (one sync for many apps), applies it to the
//! projection, and only then answers. An answer therefore means durable.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::{hash_table, DefaultHashBuilder, HashMap, HashSet, HashTable};
use opentelemetry::KeyValue;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::chain::{LogHead, LogRecord};
use super::event::{
    Device, DeviceGroup, Envelope, Event, SealBuffers, SourceKey, StoredSample, SyncRecord,
    TypeBatch, NOT_DERIVED,
};
use super::head::{HeadAuthenticator, MarkKeeper, StateFile};
use crate::apps::Apps;
use crate::catalogue::{self, TypeIndex};
use crate::keys::data_keys::{DataKeys, KeyScope};
use crate::projection::derived_ids::DerivedId;
use crate::projection::{Projection, Row, SyncHolder};
use crate::samples;
use crate::storage::{Storage, StoredDataKey};
use crate::telemetry;

/// Most requests folded into one commit.
const MAX_GROUP_REQUESTS: usize = 256;
/// Most samples folded into one commit, to bound a commit's latency.
const MAX_GROUP_SAMPLES: usize = 64_000;
/// Most distinct devices one source may write with. Bounds the work and
/// memory one app can cause through devices (and the series of a
/// `by_source` answer); replay of an existing log never enforces it.
pub const MAX_DEVICES_PER_SOURCE: usize = 64;

/// A validated sample, in canonical units, ready for the log.
#[derive(Clone, Debug)]
pub struct NewSample {
    pub type_index: TypeIndex,
    pub sample: StoredSample,
    /// The device that measured it, if the writer said.
    pub device: Option<Device>,
}

/// A sample's sync identifier as its source chose it, and its version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncKey {
    pub sync_id: Box<str>,
    pub version: i64,
}

/// One sample of a request, as the samples it is stored as: a plain sample
/// is one, a correlation its members followed by itself.
#[derive(Clone, Debug)]
pub struct NewEntry {
    /// Scoped to the writing source; `None`: always a new sample.
    pub sync: Option<SyncKey>,
    /// The sample itself last.
    pub samples: Vec<NewSample>,
}

impl NewEntry {
    /// The id of the sample itself (the one the request gets back).
    pub fn id(&self) -> u128 {
        self.samples
            .last()
            .map_or(0, |s| u128::from_be_bytes(s.sample.id))
    }
}

impl From<NewSample> for NewEntry {
    fn from(sample: NewSample) -> NewEntry {
        NewEntry {
            sync: None,
            samples: vec![sample],
        }
    }
}

#[derive(Debug)]
pub enum Write {
    AddSamples {
        source: String,
        entries: Vec<NewEntry>,
    },
    /// An import's samples: added as `AddSamples`, except that an entry
    /// whose `sync_id` holds other content at the same or a higher
    /// version is left as stored (its id answered as 0, counted in
    /// `conflicts`) rather than refusing the request, and a request that
    /// would pass the source's device cap is stored without its devices.
    Import {
        source: String,
        entries: Vec<NewEntry>,
    },
    /// Samples written while locked, merged at unlock: added as
    /// `AddSamples`, and the pending batch they came in (by arrival number)
    /// is removed in the transaction that commits them.
    MergePending {
        arrival: u64,
        source: String,
        entries: Vec<NewEntry>,
    },
    Delete {
        source: String,
        id: u128,
        /// Apps delete only what they wrote; the owner deletes anything.
        only_own: bool,
    },
    /// A registry event (apps, grants, tokens), checked by its caller.
    Registry(Event),
    /// The owner's order of sources for merging overlapping samples.
    SetSourcePriority { order: Vec<SourceKey> },
    /// The owner's characteristics, replacing the previous set.
    SetCharacteristics { values: Vec<(String, String)> },
    /// The types pinned to the owner's summary, replacing the previous set.
    PinTypes { type_ids: Vec<String> },
    /// Destroys the data keys of `source` (every type), or of `type_id`
    /// (every source), or of both together: their samples become
    /// unrecoverable (crypto-shredding).
    Erase {
        source: Option<String>,
        type_id: Option<String>,
    },
    /// Erases every source named `<family>:…` (an import family, such as
    /// `apple-health`), in one commit.
    EraseFamily { family: String },
}

#[derive(Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Stored samples by what became of them, and for each entry of the
    /// request the id of the sample that holds it.
    Added {
        added: usize,
        replaced: usize,
        unchanged: usize,
        /// Entries left out for a conflicting `sync_id` (imports only).
        conflicts: usize,
        ids: Vec<u128>,
    },
    Deleted,
    Logged,
    Set,
    /// Data keys destroyed, the live samples that went with them, and for
    /// a family the sources erased.
    Erased {
        keys: usize,
        samples: usize,
        sources: Vec<String>,
    },
    /// Keys retired by a rotation.
    Rotated {
        retired: usize,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WriteError {
    #[error("sample {index} reuses a sync_id with other content and no higher sync_version")]
    SyncConflict { index: usize },
    #[error("a source may write with at most {cap} distinct devices")]
    TooManyDevices { cap: usize },
    #[error("no such sample")]
    NotFound,
    #[error("the database did not accept the write")]
    Storage,
    #[error("the store is not accepting writes")]
    Unavailable,
}

type Reply = oneshot::Sender<Result<WriteOutcome, WriteError>>;

/// Devices that requests earlier in the group add, per source: not yet in
/// the projection, but counted against the cap.
type NewDevices = HashMap<String, HashSet<Device>>;

enum Command {
    Write(Write, Reply),
    /// Data-key rotation: between groups, never inside one.
    Rotate(Reply),
    Shutdown(oneshot::Sender<()>),
}

/// A handle to the writer task.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Command>,
}

impl Writer {
    pub fn spawn(
        storage: Arc<dyn Storage>,
        keys: DataKeys,
        head: LogHead,
        projection: Arc<Projection>,
        apps: Arc<Apps>,
        state_file: Option<StateFile>,
    ) -> Writer {
        let (tx, rx) = mpsc::channel(1024);
        let head_auth = HeadAuthenticator::new(keys.root());
        let marks = state_file.map(|file| MarkKeeper::spawn(head_auth.clone(), file, head));
        let task = WriterTask {
            storage,
            keys,
            head_auth,
            marks,
            head,
            projection,
            apps,
            poisoned: false,
            seal_buffers: SealBuffers::default(),
        };
        tokio::spawn(task.run(rx));
        Writer { tx }
    }

    pub async fn write(&self, write: Write) -> Result<WriteOutcome, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Command::Write(write, reply))
            .await
            .map_err(|_| WriteError::Unavailable)?;
        answer.await.map_err(|_| WriteError::Unavailable)?
    }

    /// Erases `source` (every type) or `type_id` (every source) by
    /// destroying their data keys; returns the keys destroyed and the live
    /// samples that went with them.
    pub async fn erase(
        &self,
        source: Option<String>,
        type_id: Option<String>,
    ) -> Result<(usize, usize), WriteError> {
        match self.write(Write::Erase { source, type_id }).await? {
            WriteOutcome::Erased { keys, samples, .. } => Ok((keys, samples)),
            _ => Err(WriteError::Storage),
        }
    }

    /// Erases every source of an import family (`<family>:…`); returns the
    /// keys destroyed, the live samples erased and the sources.
    pub async fn erase_family(
        &self,
        family: String,
    ) -> Result<(usize, usize, Vec<String>), WriteError> {
        match self.write(Write::EraseFamily { family }).await? {
            WriteOutcome::Erased {
                keys,
                samples,
                sources,
            } => Ok((keys, samples, sources)),
            _ => Err(WriteError::Storage),
        }
    }

    /// Rotates the data keys: every record committed after the answer is
    /// sealed under a new key of its scope; old records keep their keys.
    /// Returns how many keys were retired.
    pub async fn rotate_keys(&self) -> Result<usize, WriteError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Command::Rotate(reply))
            .await
            .map_err(|_| WriteError::Unavailable)?;
        match answer.await.map_err(|_| WriteError::Unavailable)?? {
            WriteOutcome::Rotated { retired } => Ok(retired),
            _ => Err(WriteError::Storage),
        }
    }

    /// Finishes what is queued, then stops and drops the data keys.
    pub async fn shutdown(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Command::Shutdown(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// What the earlier requests of a group in progress changed.
#[derive(Default)]
struct Pending {
    /// Samples deleted or replaced.
    deleted: HashSet<u128>,
    /// Sync identifiers written, by source: kept only while a later write
    /// of the group adds samples (an import's batch, alone in its group,
    /// copies none of its entries here).
    synced: HashMap<String, HashMap<Box<str>, Synced>>,
    /// Whether a write after the one being prepared adds samples.
    adds_later: bool,
}

/// A stored entry that holds a sync identifier: its version and samples
/// (the sample itself last).
#[derive(Clone)]
struct Synced {
    version: i64,
    samples: Vec<NewSample>,
}

/// A new entry of a request in progress.
struct Fresh {
    entry: NewEntry,
    /// It replaces stored samples.
    replaces: bool,
    /// A later entry of the same request with a higher version took its
    /// place: the slot of that entry.
    superseded_by: Option<usize>,
}

/// The sync identifier of the entry in `slot`.
fn sync_id_at(fresh: &[Fresh], slot: usize) -> Option<&str> {
    fresh[slot].entry.sync.as_ref().map(|s| &*s.sync_id)
}

/// Where the id a request gets back for one of its samples comes from.
enum Answer {
    Stored(u128),
    Fresh(usize),
    /// Left out for a conflicting sync identifier.
    Conflict,
}

struct WriterTask {
    storage: Arc<dyn Storage>,
    keys: DataKeys,
    /// Authenticates each new head in the commit that writes it.
    head_auth: HeadAuthenticator,
    /// Moves the high-water mark after commits.
    marks: Option<MarkKeeper>,
    head: LogHead,
    projection: Arc<Projection>,
    apps: Arc<Apps>,
    /// Set when the database's state is unknown after a failed commit.
    poisoned: bool,
    /// What records are sealed through, kept from one to the next.
    seal_buffers: SealBuffers,
}

fn sample_count(cmd: &Command) -> usize {
    match cmd {
        Command::Write(
            Write::AddSamples { entries, .. }
            | Write::Import { entries, .. }
            | Write::MergePending { entries, .. },
            _,
        ) => entries.iter().map(|e| e.samples.len()).sum(),
        _ => 1,
    }
}

impl WriterTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while let Some(first) = rx.recv().await {
            let mut group = Vec::new();
            let mut samples = sample_count(&first);
            let mut shutdown = None;
            let mut rotate = None;
            let mut next = Some(first);
            while let Some(cmd) = next.take() {
                match cmd {
                    Command::Write(w, reply) => group.push((w, reply)),
                    Command::Rotate(reply) => {
                        rotate = Some(reply);
                        break;
                    }
                    Command::Shutdown(done) => {
                        shutdown = Some(done);
                        break;
                    }
                }
                if group.len() >= MAX_GROUP_REQUESTS || samples >= MAX_GROUP_SAMPLES {
                    break;
                }
                if let Ok(cmd) = rx.try_recv() {
                    samples += sample_count(&cmd);
                    next = Some(cmd);
                }
            }
            if let Some(cmd) = next {
                // Over the group limits: it leads the next group.
                self.commit_group(group).await;
                group = Vec::new();
                match cmd {
                    Command::Write(w, reply) => group.push((w, reply)),
                    Command::Rotate(reply) => rotate = Some(reply),
                    Command::Shutdown(done) => shutdown = Some(done),
                }
            }
            self.commit_group(group).await;
            if let Some(reply) = rotate {
                let _ = reply.send(self.rotate().await);
            }
            if let Some(done) = shutdown {
                rx.close();
                while let Ok(cmd) = rx.try_recv() {
                    if let Command::Write(_, reply) | Command::Rotate(reply) = cmd {
                        let _ = reply.send(Err(WriteError::Unavailable));
                    }
                }
                if let Some(marks) = self.marks.take() {
                    marks.finish().await;
                }
                let _ = done.send(());
                return;
            }
        }
        if let Some(marks) = self.marks.take() {
            marks.finish().await;
        }
    }

    async fn commit_group(&mut self, group: Vec<(Write, Reply)>) {
        if group.is_empty() {
            return;
        }
        if self.poisoned {
            for (_, reply) in group {
                let _ = reply.send(Err(WriteError::Unavailable));
            }
            return;
        }
        let at_us = self.apps.clock.now_us();
        let mut pending = Pending::default();
        let mut new_devices: NewDevices = HashMap::new();
        let mut records = Vec::new();
        let mut envelopes = Vec::new();
        let mut answers = Vec::new();
        let mut new_keys: Vec<StoredDataKey> = Vec::new();
        let mut destroyed: Vec<u32> = Vec::new();
        let mut merged: Vec<u64> = Vec::new();
        let mut head = self.head;
        let last_add = group.iter().rposition(|(write, _)| {
            matches!(
                write,
                Write::AddSamples { .. } | Write::Import { .. } | Write::MergePending { .. }
            )
        });
        for (index, (write, reply)) in group.into_iter().enumerate() {
            pending.adds_later = last_add.is_some_and(|last| last > index);
            let arrival = match write {
                Write::MergePending { arrival, .. } => Some(arrival),
                _ => None,
            };
            match self.prepare(write, &mut pending, &mut new_devices) {
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
                Ok((outcome, events)) => {
                    merged.extend(arrival);
                    for (scope, event) in events {
                        if let Event::KeysDestroyed { key_ids, .. } = &event {
                            destroyed.extend(key_ids);
                        }
                        let envelope = Envelope { at_us, event };
                        let seq = head.seq + 1;
                        let record = self.seal(&scope, seq, head, &envelope, &mut new_keys);
                        head = LogHead {
                            seq,
                            hash: record.hash,
                        };
                        records.push(record);
                        envelopes.push((seq, envelope));
                    }
                    answers.push((reply, outcome));
                }
            }
        }
        // A key is stored before the first record sealed under it commits.
        if let Err(e) = self.storage.add_data_keys(&new_keys).await {
            tracing::error!(error = %e, "storing new data keys failed");
            let ids: Vec<u32> = new_keys.iter().map(|k| k.key_id).collect();
            self.keys.forget(&ids);
            for (reply, _) in answers {
                let _ = reply.send(Err(WriteError::Storage));
            }
            return;
        }
        let started = std::time::Instant::now();
        let samples: usize = envelopes.iter().map(|(_, e)| e.sample_count()).sum();
        let appended = self
            .storage
            .append(self.head, &records, &self.head_auth.head_mac(head), &merged)
            .instrument(tracing::info_span!(
                "commit",
                records = records.len(),
                samples
            ))
            .await;
        let m = telemetry::metrics();
        m.commit_duration
            .record(started.elapsed().as_secs_f64(), &[]);
        m.commit_samples.record(samples as u64, &[]);
        m.commits.add(
            1,
            &[KeyValue::new(
                "outcome",
                if appended.is_ok() { "ok" } else { "error" },
            )],
        );
        let committed = match appended {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "log commit failed");
                // The commit may have landed even though we saw an error.
                match self.storage.head().await {
                    Ok(now) if now == head => true,
                    Ok(now) if now == self.head => false,
                    _ => {
                        tracing::error!("log head unknown after a failed commit; refusing writes");
                        self.poisoned = true;
                        false
                    }
                }
            }
        };
        if !committed {
            for (reply, _) in answers {
                let _ = reply.send(Err(WriteError::Storage));
            }
            return;
        }
        self.head = head;
        if let Some(marks) = &self.marks {
            marks.advance(head);
        }
        // The erasure events are durable: now the keys go. Should that fail,
        // they are kept for a retry here, and the next unlock finishes it.
        let mut erase_failed = false;
        if !destroyed.is_empty() {
            match self.storage.destroy_data_keys(&destroyed).await {
                Ok(()) => self.keys.forget(&destroyed),
                Err(e) => {
                    tracing::error!(error = %e, "destroying data keys failed");
                    erase_failed = true;
                }
            }
        }
        // A snapshot sees this commit whole or not at all.
        let mut cut = self.projection.cut();
        for (seq, envelope) in &envelopes {
            if self.apps.apply(envelope) {
                continue;
            }
            if let Err(e) = self.projection.apply(*seq, envelope) {
                tracing::error!(error = %e, "committed event could not be projected");
            }
        }
        cut.head = head;
        cut.keys.advance(&records, &envelopes, !erase_failed);
        drop(cut);
        crate::audit::note_writes(&self.apps, at_us, &envelopes);
        for (reply, outcome) in answers {
            // An erasure whose keys are still stored is not done.
            let _ = reply.send(match outcome {
                WriteOutcome::Erased { .. } if erase_failed => Err(WriteError::Storage),
                outcome => Ok(outcome),
            });
        }
    }

    /// Seals `envelope` as record `seq` under the current key of `scope`,
    /// creating that key (into `new_keys`) if the scope has none.
    fn seal(
        &mut self,
        scope: &KeyScope,
        seq: u64,
        prev: LogHead,
        envelope: &Envelope,
        new_keys: &mut Vec<StoredDataKey>,
    ) -> LogRecord {
        let (key_id, created) = self.keys.current(scope);
        new_keys.extend(created);
        let key = self.keys.get(key_id).expect("the current key is open");
        let body = envelope.seal(&key.key, &key.record_aad(seq), &mut self.seal_buffers);
        LogRecord::new(seq, key_id, prev.hash, body)
    }

    /// Retires every data key in use, durably, then in memory.
    async fn rotate(&mut self) -> Result<WriteOutcome, WriteError> {
        if self.poisoned {
            return Err(WriteError::Unavailable);
        }
        let retired = self.keys.current_ids().len();
        self.storage.retire_data_keys().await.map_err(|e| {
            tracing::error!(error = %e, "retiring data keys failed");
            WriteError::Storage
        })?;
        self.keys.retire_all();
        Ok(WriteOutcome::Rotated { retired })
    }

    /// Checks one request; returns its outcome and the events to log, each
    /// with the scope whose key seals it.
    fn prepare(
        &mut self,
        write: Write,
        pending: &mut Pending,
        new_devices: &mut NewDevices,
    ) -> Result<(WriteOutcome, Vec<(KeyScope, Event)>), WriteError> {
        let management = |event| vec![(KeyScope::Management, event)];
        match write {
            Write::AddSamples { source, entries }
            | Write::MergePending {
                source, entries, ..
            } => self.prepare_samples(source, entries, false, pending, new_devices),
            Write::Import { source, entries } => {
                self.prepare_samples(source, entries, true, pending, new_devices)
            }
            Write::Delete {
                source,
                id,
                only_own,
            } => {
                if pending.deleted.contains(&id) {
                    return Err(WriteError::NotFound);
                }
                // A deletion is sealed with the sample's own scope: erasing
                // that scope takes both, and nothing it deleted comes back.
                let scope = match self.projection.find(id) {
                    Some((ty, row)) => {
                        let owner = self.projection.source_name(row.source);
                        if only_own && *owner != *source {
                            return Err(WriteError::NotFound);
                        }
                        KeyScope::samples(&owner, catalogue::get(ty).id)
                    }
                    None => return Err(WriteError::NotFound),
                };
                pending.deleted.insert(id);
                Ok((
                    WriteOutcome::Deleted,
                    vec![(
                        scope,
                        Event::SamplesDeleted {
                            source,
                            ids: vec![id.to_be_bytes()],
                        },
                    )],
                ))
            }
            Write::Registry(event) => Ok((WriteOutcome::Logged, management(event))),
            Write::SetSourcePriority { order } => Ok((
                WriteOutcome::Set,
                management(Event::SourcePriority { order }),
            )),
            Write::SetCharacteristics { values } => Ok((
                WriteOutcome::Set,
                management(Event::CharacteristicsSet { values }),
            )),
            Write::PinTypes { type_ids } => Ok((
                WriteOutcome::Set,
                management(Event::TypesPinned { type_ids }),
            )),
            Write::Erase { source, type_id } => {
                let (keys, samples, event) = self.erasure(source, type_id);
                Ok((
                    WriteOutcome::Erased {
                        keys,
                        samples,
                        sources: Vec::new(),
                    },
                    event.map_or_else(Vec::new, management),
                ))
            }
            Write::EraseFamily { family } => {
                let prefix = format!("{family}:");
                let mut sources = self.keys.sources_starting_with(&prefix);
                sources.extend(self.projection.sources_starting_with(&prefix));
                let (mut keys, mut samples) = (0, 0);
                let mut erased = Vec::new();
                let mut events = Vec::new();
                for source in sources {
                    let (k, n, event) = self.erasure(Some(source.clone()), None);
                    if let Some(event) = event {
                        keys += k;
                        samples += n;
                        erased.push(source);
                        events.push((KeyScope::Management, event));
                    }
                }
                Ok((
                    WriteOutcome::Erased {
                        keys,
                        samples,
                        sources: erased,
                    },
                    events,
                ))
            }
        }
    }

    /// The keys an erasure of `source` / `type_id` destroys, the live
    /// samples that go with them, and the event that records it (none when
    /// there is nothing to erase).
    fn erasure(
        &mut self,
        source: Option<String>,
        type_id: Option<String>,
    ) -> (usize, usize, Option<Event>) {
        let key_ids = self.keys.erased_by(source.as_deref(), type_id.as_deref());
        // Later requests of this group already get fresh keys.
        self.keys.stop_using(&key_ids);
        let samples = self.live_samples(source.as_deref(), type_id.as_deref());
        if key_ids.is_empty() && samples == 0 {
            return (0, 0, None);
        }
        let keys = key_ids.len();
        let event = Event::KeysDestroyed {
            key_ids,
            source,
            type_id,
        };
        (keys, samples, Some(event))
    }

    /// Live samples of `source` (all if `None`) of `type_id` (all if `None`).
    fn live_samples(&self, source: Option<&str>, type_id: Option<&str>) -> usize {
        let source = match source {
            Some(name) => match self.projection.source_id(name) {
                Some(id) => Some(id),
                None => return 0,
            },
            None => None,
        };
        let types: Vec<TypeIndex> = match type_id {
            Some(id) => catalogue::lookup(id).into_iter().collect(),
            None => (0..catalogue::all().len())
                .map(|t| TypeIndex(t as u16))
                .collect(),
        };
        types
            .into_iter()
            .map(|ty| {
                let cols = self.projection.columns(ty);
                match source {
                    None => cols.live_len(),
                    Some(s) => (0..cols.len())
                        .filter(|&r| cols.source_of(r) == s && !cols.is_deleted(r))
                        .count(),
                }
            })
            .sum()
    }

    /// Refuses a batch that would give `source` more than
    /// [`MAX_DEVICES_PER_SOURCE`] distinct devices, counting those of earlier
    /// requests in the same group; else returns the devices it adds. One
    /// hash lookup per sample, so a refusal costs no more than reading it.
    fn check_device_cap(
        &self,
        source: &str,
        entries: &[NewEntry],
        new_devices: &NewDevices,
    ) -> Result<Vec<Device>, WriteError> {
        let earlier = new_devices.get(source);
        let known = self.projection.device_count(source) + earlier.map_or(0, HashSet::len);
        let mut seen: HashSet<&Device> = HashSet::new();
        let mut added = Vec::new();
        let devices = entries
            .iter()
            .flat_map(|e| &e.samples)
            .filter_map(|s| s.device.as_ref());
        // Samples come in runs of one device: a run's first one is hashed.
        let mut previous = None;
        for device in devices {
            if previous.replace(device) == Some(device)
                || !seen.insert(device)
                || earlier.is_some_and(|e| e.contains(device))
                || self.projection.knows_device(source, device)
            {
                continue;
            }
            if known + added.len() >= MAX_DEVICES_PER_SOURCE {
                return Err(WriteError::TooManyDevices {
                    cap: MAX_DEVICES_PER_SOURCE,
                });
            }
            added.push(device.clone());
        }
        Ok(added)
    }

    /// A request adding samples: within the source's device cap, then
    /// sorted by [`WriterTask::prepare_add`]. An import's request past the
    /// cap is taken without its devices, and its conflicting entries are
    /// left out rather than refusing it.
    fn prepare_samples(
        &self,
        source: String,
        mut entries: Vec<NewEntry>,
        import: bool,
        pending: &mut Pending,
        new_devices: &mut NewDevices,
    ) -> Result<(WriteOutcome, Vec<(KeyScope, Event)>), WriteError> {
        let devices_added = match self.check_device_cap(&source, &entries, new_devices) {
            Err(WriteError::TooManyDevices { .. }) if import => {
                for s in entries.iter_mut().flat_map(|e| &mut e.samples) {
                    s.device = None;
                }
                Vec::new()
            }
            checked => checked?,
        };
        let prepared = self.prepare_add(source.clone(), entries, pending, import)?;
        if !prepared.1.is_empty() {
            new_devices.entry(source).or_default().extend(devices_added);
        }
        Ok(prepared)
    }

    /// Sorts a request's entries into new, replacing and unchanged ones by
    /// their sync identifiers, looked up among `source`'s own samples only.
    /// A conflicting entry refuses the request, or with `skip_conflicts`
    /// is left out and counted.
    fn prepare_add(
        &self,
        source: String,
        entries: Vec<NewEntry>,
        pending: &mut Pending,
        skip_conflicts: bool,
    ) -> Result<(WriteOutcome, Vec<(KeyScope, Event)>), WriteError> {
        let mut fresh: Vec<Fresh> = Vec::new();
        let mut answers = Vec::with_capacity(entries.len());
        // The entries of this request so far, by sync identifier: slots of
        // `fresh`, hashed by the identifier they hold.
        let mut in_request: HashTable<usize> = HashTable::new();
        let hasher = DefaultHashBuilder::default();
        let mut replaced: Vec<([u8; 16], TypeIndex)> = Vec::new();
        // Samples given derived ids: the bits each derivation overwrote.
        let mut kept_bits: HashMap<[u8; 16], u8> = HashMap::new();
        let (mut unchanged, mut conflicts) = (0, 0);
        for (index, entry) in entries.into_iter().enumerate() {
            let Some(sync) = &entry.sync else {
                answers.push(Answer::Fresh(fresh.len()));
                fresh.push(Fresh {
                    entry,
                    replaces: false,
                    superseded_by: None,
                });
                continue;
            };
            let (sync_version, hash) = (sync.version, hasher.hash_one(&*sync.sync_id));
            // A new entry's id derived from its identifier, if it may take one.
            let mut derived: Option<DerivedId> = None;
            let earlier = match in_request.find(hash, |&slot| {
                sync_id_at(&fresh, slot) == Some(&*sync.sync_id)
            }) {
                Some(&slot) => {
                    let e = &fresh[slot].entry;
                    let version = e.sync.as_ref().map_or(0, |s| s.version);
                    Some((Some(slot), version, e.samples.clone()))
                }
                None => match entry_type(&entry) {
                    Some(ty) => match self.stored(&source, &sync.sync_id, ty, pending) {
                        Ok(s) => Some((None, s.version, s.samples)),
                        Err(id) => {
                            derived = id;
                            None
                        }
                    },
                    None => None,
                },
            };
            let mut replaces = false;
            if let Some((slot, version, samples)) = earlier {
                if version == sync_version && same_entry(&samples, &entry) {
                    unchanged += samples.len();
                    answers.push(match slot {
                        Some(slot) => Answer::Fresh(slot),
                        None => Answer::Stored(u128::from_be_bytes(
                            samples.last().expect("an entry has a sample").sample.id,
                        )),
                    });
                    continue;
                }
                if sync_version <= version {
                    if !skip_conflicts {
                        return Err(WriteError::SyncConflict { index });
                    }
                    conflicts += 1;
                    answers.push(Answer::Conflict);
                    continue;
                }
                match slot {
                    Some(slot) => {
                        fresh[slot].superseded_by = Some(fresh.len());
                        replaces = fresh[slot].replaces;
                    }
                    None => {
                        replaced.extend(samples.iter().map(|s| (s.sample.id, s.type_index)));
                        replaces = true;
                    }
                }
            }
            let mut entry = entry;
            // Only imports are given derived ids: they answer with the ids
            // they were given, so nothing refers to the one replaced. The
            // projection then needs no record of the identifier (see
            // `projection::derived_ids`); an entry's members keep theirs.
            if let (true, Some(d), 0) = (skip_conflicts, derived, sync_version) {
                if let Some(sample) = entry.samples.last_mut() {
                    sample.sample.id = d.id.to_be_bytes();
                    kept_bits.insert(sample.sample.id, d.kept);
                }
            }
            // This entry now holds the identifier in the request: an earlier
            // holder was superseded above.
            let holder = in_request.entry(
                hash,
                |&slot| sync_id_at(&fresh, slot) == entry.sync.as_ref().map(|s| &*s.sync_id),
                |&slot| hasher.hash_one(sync_id_at(&fresh, slot).unwrap_or_default()),
            );
            match holder {
                hash_table::Entry::Occupied(mut o) => *o.get_mut() = fresh.len(),
                hash_table::Entry::Vacant(v) => {
                    v.insert(fresh.len());
                }
            }
            answers.push(Answer::Fresh(fresh.len()));
            fresh.push(Fresh {
                entry,
                replaces,
                superseded_by: None,
            });
        }
        let final_slot = |mut slot: usize| {
            while let Some(next) = fresh[slot].superseded_by {
                slot = next;
            }
            slot
        };
        let ids = answers
            .iter()
            .map(|a| match *a {
                Answer::Stored(id) => id,
                Answer::Fresh(slot) => fresh[final_slot(slot)].entry.id(),
                Answer::Conflict => 0,
            })
            .collect();
        let (mut added, mut replacing) = (0, 0);
        for f in fresh.iter().filter(|f| f.superseded_by.is_none()) {
            *(if f.replaces {
                &mut replacing
            } else {
                &mut added
            }) += f.entry.samples.len();
        }
        let outcome = WriteOutcome::Added {
            added,
            replaced: replacing,
            unchanged,
            conflicts,
            ids,
        };
        let live: Vec<NewEntry> = fresh
            .into_iter()
            .filter(|f| f.superseded_by.is_none())
            .map(|f| f.entry)
            .collect();
        if live.is_empty() {
            return Ok((outcome, Vec::new()));
        }
        // The request is accepted: later requests of the group see it.
        pending
            .deleted
            .extend(replaced.iter().map(|(id, _)| u128::from_be_bytes(*id)));
        let mut synced = Vec::new();
        for entry in &live {
            let Some(sync) = &entry.sync else { continue };
            // A derived id gives its identifier back: it needs no record.
            let id = entry.id().to_be_bytes();
            if !kept_bits.contains_key(&id) {
                synced.push(SyncRecord {
                    id,
                    sync_id: sync.sync_id.to_string(),
                    version: sync.version,
                });
            }
            if pending.adds_later {
                pending
                    .synced
                    .entry_ref(source.as_str())
                    .or_default()
                    .insert(
                        sync.sync_id.clone(),
                        Synced {
                            version: sync.version,
                            samples: entry.samples.clone(),
                        },
                    );
            }
        }
        let events = scoped_events(&source, live, synced, replaced, &kept_bits);
        Ok((outcome, events))
    }

    /// The live entry of `source` holding `sync_id`, as earlier requests of
    /// the group left it; if none, the id a new sample holding it may be
    /// given (see [`Projection::sync_holder`]). Nothing of another source
    /// is ever looked at.
    fn stored(
        &self,
        source: &str,
        sync_id: &str,
        ty: TypeIndex,
        pending: &Pending,
    ) -> Result<Synced, Option<DerivedId>> {
        if let Some(s) = pending.synced.get(source).and_then(|m| m.get(sync_id)) {
            return Ok(s.clone());
        }
        let (id, tag) = match self.projection.sync_holder(source, sync_id, ty) {
            SyncHolder::Held(id, tag) => (id, tag),
            SyncHolder::Free(derived) => {
                return Err(derived.filter(|d| !pending.deleted.contains(&d.id)))
            }
        };
        if pending.deleted.contains(&id) {
            return Err(None);
        }
        let source_id = tag.source;
        let row = {
            let cols = self.projection.columns(tag.ty);
            let r = cols.find(id).filter(|&r| !cols.is_deleted(r)).ok_or(None)?;
            cols.row(r)
        };
        let mut samples: Vec<NewSample> = samples::member_ids(tag.ty, row.metadata.as_deref())
            .into_iter()
            .filter(|m| !pending.deleted.contains(m))
            .filter_map(|m| self.projection.find(m))
            .filter(|(_, member)| member.source == source_id)
            .map(|(ty, member)| self.stored_sample(ty, &member))
            .collect();
        samples.push(self.stored_sample(tag.ty, &row));
        Ok(Synced {
            version: tag.version,
            samples,
        })
    }

    fn stored_sample(&self, type_index: TypeIndex, row: &Row) -> NewSample {
        NewSample {
            type_index,
            sample: StoredSample {
                id: row.id.to_be_bytes(),
                start_us: row.start_us,
                start_offset_min: row.start_offset_min,
                end_us: row.end_us,
                end_offset_min: row.end_offset_min,
                value: row.value,
                metadata: row.metadata.as_deref().map(String::from),
            },
            device: self.projection.device(row.source, row.device),
        }
    }
}

/// The type of the sample an entry is (its members come before it).
fn entry_type(entry: &NewEntry) -> Option<TypeIndex> {
    entry.samples.last().map(|s| s.type_index)
}

/// A request's accepted samples as log events, one per type: each event is
/// sealed under the key of (`source`, its type), so erasing a source or a
/// type destroys exactly the keys of its records. Replacements are logged
/// with the type of the sample they delete; they come first, as they did
/// inside the single event of a request before keys were per scope.
/// Correlation types are logged after every other type of the request, so
/// a correlation's members precede it. A type's samples given derived ids
/// (`kept_bits`) are logged as imported, with those bits instead of records.
fn scoped_events(
    source: &str,
    live: Vec<NewEntry>,
    synced: Vec<SyncRecord>,
    replaced: Vec<([u8; 16], TypeIndex)>,
    kept_bits: &HashMap<[u8; 16], u8>,
) -> Vec<(KeyScope, Event)> {
    let with_sync = !synced.is_empty() || !replaced.is_empty() || !kept_bits.is_empty();
    // Per type in order of first appearance: devices in order of first
    // appearance, each with its samples.
    type ByDevice = Vec<(Option<Device>, Vec<StoredSample>)>;
    let mut by_type: Vec<(TypeIndex, ByDevice)> = Vec::new();
    for new in live.into_iter().flat_map(|e| e.samples) {
        let at = match by_type.iter().position(|(t, _)| *t == new.type_index) {
            Some(at) => at,
            None => {
                by_type.push((new.type_index, Vec::new()));
                by_type.len() - 1
            }
        };
        let devices = &mut by_type[at].1;
        match devices.iter_mut().find(|(d, _)| *d == new.device) {
            Some((_, samples)) => samples.push(new.sample),
            None => devices.push((new.device, vec![new.sample])),
        }
    }
    // Correlations after every member type, so replay and the projection
    // know their members' types when they reach them.
    by_type.sort_by_key(|(ty, _)| catalogue::get(*ty).members().is_some());
    let sync_of: HashMap<[u8; 16], SyncRecord> = synced.into_iter().map(|r| (r.id, r)).collect();
    let mut events = Vec::new();
    let replaced_of = |ty: TypeIndex| -> Vec<[u8; 16]> {
        replaced
            .iter()
            .filter(|(_, t)| *t == ty)
            .map(|(id, _)| *id)
            .collect()
    };
    let scope = |ty: TypeIndex| KeyScope::samples(source, catalogue::get(ty).id);
    // Replacements of types the request writes no sample of.
    let mut replaced_only: Vec<TypeIndex> = replaced
        .iter()
        .map(|(_, t)| *t)
        .filter(|t| !by_type.iter().any(|(w, _)| w == t))
        .collect();
    replaced_only.dedup();
    replaced_only.sort_unstable();
    replaced_only.dedup();
    for ty in replaced_only {
        events.push((
            scope(ty),
            Event::SamplesWritten {
                source: source.to_string(),
                groups: Vec::new(),
                synced: Vec::new(),
                replaced: replaced_of(ty),
            },
        ));
    }
    for (ty, devices) in by_type {
        let type_id = catalogue::get(ty).id.to_string();
        let event = if with_sync {
            let samples = || devices.iter().flat_map(|(_, samples)| samples);
            let synced = samples()
                .filter_map(|s| sync_of.get(&s.id).cloned())
                .collect();
            // In the order the event's groups list the samples; none for a
            // write that derived no id.
            let derived: Vec<u8> = if kept_bits.is_empty() {
                Vec::new()
            } else {
                samples()
                    .map(|s| kept_bits.get(&s.id).copied().unwrap_or(NOT_DERIVED))
                    .collect()
            };
            let (source, replaced) = (source.to_string(), replaced_of(ty));
            let groups = device_groups(&type_id, devices);
            if derived.iter().any(|&bits| bits != NOT_DERIVED) {
                Event::SamplesImported {
                    source,
                    groups,
                    synced,
                    replaced,
                    derived,
                }
            } else {
                Event::SamplesWritten {
                    source,
                    groups,
                    synced,
                    replaced,
                }
            }
        } else if devices.iter().all(|(d, _)| d.is_none()) {
            Event::SamplesAdded {
                source: source.to_string(),
                batches: devices
                    .into_iter()
                    .map(|(_, samples)| TypeBatch {
                        type_id: type_id.clone(),
                        samples,
                    })
                    .collect(),
            }
        } else {
            Event::DeviceSamplesAdded {
                source: source.to_string(),
                groups: device_groups(&type_id, devices),
            }
        };
        events.push((scope(ty), event));
    }
    events
}

fn device_groups(
    type_id: &str,
    devices: Vec<(Option<Device>, Vec<StoredSample>)>,
) -> Vec<DeviceGroup> {
    devices
        .into_iter()
        .map(|(device, samples)| DeviceGroup {
            device,
            batches: vec![TypeBatch {
                type_id: type_id.to_string(),
                samples,
            }],
        })
        .collect()
}

/// Whether `new` holds what `stored` holds: the same samples in the same
/// order, by type, times, offsets, value bits, device and metadata. Ids
/// differ by nature, so `new` is compared as if it had `stored`'s.
fn same_entry(stored: &[NewSample], new: &NewEntry) -> bool {
    if stored.len() != new.samples.len() {
        return false;
    }
    let mut rebased = new.samples.clone();
    let ids: Vec<[u8; 16]> = stored.iter().map(|s| s.sample.id).collect();
    samples::assign_ids(&mut rebased, &ids);
    stored
        .iter()
        .zip(&rebased)
        .all(|(a, b)| same_content(a.type_index, &a.sample, a.device.as_ref(), b))
}

fn same_content(
    ty: TypeIndex,
    existing: &StoredSample,
    device: Option<&Device>,
    new: &NewSample,
) -> bool {
    let a = existing;
    let b = &new.sample;
    ty == new.type_index
        && device == new.device.as_ref()
        && a.start_us == b.start_us
        && a.start_offset_min == b.start_offset_min
        && a.end_us == b.end_us
        && a.end_offset_min == b.end_offset_min
        && a.value.to_bits() == b.value.to_bits()
        && a.metadata == b.metadata
}
