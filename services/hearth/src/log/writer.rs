//! The single writer: the only code that appends to the log.
//!
//! Requests queue on a channel; the writer takes everything queued, checks
//! each request against the projection (and against earlier requests of the
//! same group), gives each a gap-free sequence number, seals it, commits the
//! whole group in one transaction (one sync for many apps), applies it to the
//! projection, and only then answers. An answer therefore means durable.

use std::sync::Arc;

use hashbrown::{HashMap, HashSet};
use opentelemetry::KeyValue;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::chain::{LogHead, LogRecord};
use super::event::{
    Device, DeviceGroup, Envelope, Event, SourceKey, StoredSample, SyncRecord, TypeBatch,
};
use crate::apps::Apps;
use crate::catalogue::{self, TypeIndex};
use crate::crypto::{self, DataKey};
use crate::projection::{Projection, Row};
use crate::samples;
use crate::storage::Storage;
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
}

#[derive(Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Stored samples by what became of them, and for each entry of the
    /// request the id of the sample that holds it.
    Added {
        added: usize,
        replaced: usize,
        unchanged: usize,
        ids: Vec<u128>,
    },
    Deleted,
    Logged,
    Set,
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
        key: DataKey,
        head: LogHead,
        projection: Arc<Projection>,
        apps: Arc<Apps>,
    ) -> Writer {
        let (tx, rx) = mpsc::channel(1024);
        let task = WriterTask {
            storage,
            key,
            head,
            projection,
            apps,
            poisoned: false,
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

    /// Finishes what is queued, then stops and drops the data key.
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
    /// Sync identifiers written, by source.
    synced: HashMap<String, HashMap<Box<str>, Synced>>,
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

/// Where the id a request gets back for one of its samples comes from.
enum Answer {
    Stored(u128),
    Fresh(usize),
}

struct WriterTask {
    storage: Arc<dyn Storage>,
    key: DataKey,
    head: LogHead,
    projection: Arc<Projection>,
    apps: Arc<Apps>,
    /// Set when the database's state is unknown after a failed commit.
    poisoned: bool,
}

fn sample_count(cmd: &Command) -> usize {
    match cmd {
        Command::Write(Write::AddSamples { entries, .. }, _) => {
            entries.iter().map(|e| e.samples.len()).sum()
        }
        _ => 1,
    }
}

impl WriterTask {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while let Some(first) = rx.recv().await {
            let mut group = Vec::new();
            let mut samples = sample_count(&first);
            let mut shutdown = None;
            let mut next = Some(first);
            while let Some(cmd) = next.take() {
                match cmd {
                    Command::Write(w, reply) => group.push((w, reply)),
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
                    Command::Shutdown(done) => shutdown = Some(done),
                }
            }
            self.commit_group(group).await;
            if let Some(done) = shutdown {
                rx.close();
                while let Ok(cmd) = rx.try_recv() {
                    if let Command::Write(_, reply) = cmd {
                        let _ = reply.send(Err(WriteError::Unavailable));
                    }
                }
                let _ = done.send(());
                return;
            }
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
        let mut head = self.head;
        for (write, reply) in group {
            match self.prepare(write, &mut pending, &mut new_devices) {
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
                Ok((outcome, None)) => answers.push((reply, outcome)),
                Ok((outcome, Some(event))) => {
                    let envelope = Envelope { at_us, event };
                    let seq = head.seq + 1;
                    let body =
                        crypto::seal(&self.key.key, &self.key.record_aad(seq), &envelope.encode());
                    let record = LogRecord::new(seq, self.key.key_id, head.hash, body);
                    head = LogHead {
                        seq,
                        hash: record.hash,
                    };
                    records.push(record);
                    envelopes.push((seq, envelope));
                    answers.push((reply, outcome));
                }
            }
        }
        let started = std::time::Instant::now();
        let samples: usize = envelopes.iter().map(|(_, e)| e.sample_count()).sum();
        let appended = self
            .storage
            .append(self.head, &records)
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
        *cut = head;
        drop(cut);
        for (reply, outcome) in answers {
            let _ = reply.send(Ok(outcome));
        }
    }

    /// Checks one request; returns its outcome and the event to log, if any.
    fn prepare(
        &self,
        write: Write,
        pending: &mut Pending,
        new_devices: &mut NewDevices,
    ) -> Result<(WriteOutcome, Option<Event>), WriteError> {
        match write {
            Write::AddSamples { source, entries } => {
                let devices_added = self.check_device_cap(&source, &entries, new_devices)?;
                let prepared = self.prepare_add(source.clone(), entries, pending)?;
                if prepared.1.is_some() {
                    new_devices.entry(source).or_default().extend(devices_added);
                }
                Ok(prepared)
            }
            Write::Delete {
                source,
                id,
                only_own,
            } => {
                if pending.deleted.contains(&id) {
                    return Err(WriteError::NotFound);
                }
                match self.projection.find(id) {
                    Some((_, row))
                        if !only_own || *self.projection.source_name(row.source) == *source => {}
                    _ => return Err(WriteError::NotFound),
                }
                pending.deleted.insert(id);
                Ok((
                    WriteOutcome::Deleted,
                    Some(Event::SamplesDeleted {
                        source,
                        ids: vec![id.to_be_bytes()],
                    }),
                ))
            }
            Write::Registry(event) => Ok((WriteOutcome::Logged, Some(event))),
            Write::SetSourcePriority { order } => {
                Ok((WriteOutcome::Set, Some(Event::SourcePriority { order })))
            }
            Write::SetCharacteristics { values } => Ok((
                WriteOutcome::Set,
                Some(Event::CharacteristicsSet { values }),
            )),
        }
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
        for device in devices {
            if !seen.insert(device)
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

    /// Sorts a request's entries into new, replacing and unchanged ones by
    /// their sync identifiers, looked up among `source`'s own samples only.
    fn prepare_add(
        &self,
        source: String,
        entries: Vec<NewEntry>,
        pending: &mut Pending,
    ) -> Result<(WriteOutcome, Option<Event>), WriteError> {
        let mut fresh: Vec<Fresh> = Vec::new();
        let mut answers = Vec::with_capacity(entries.len());
        let mut in_request: HashMap<Box<str>, usize> = HashMap::new();
        let mut replaced: Vec<[u8; 16]> = Vec::new();
        let mut unchanged = 0;
        for (index, entry) in entries.into_iter().enumerate() {
            let Some(sync) = entry.sync.clone() else {
                answers.push(Answer::Fresh(fresh.len()));
                fresh.push(Fresh {
                    entry,
                    replaces: false,
                    superseded_by: None,
                });
                continue;
            };
            let earlier = match in_request.get(&sync.sync_id) {
                Some(&slot) => {
                    let e = &fresh[slot].entry;
                    let version = e.sync.as_ref().map_or(0, |s| s.version);
                    Some((Some(slot), version, e.samples.clone()))
                }
                None => self
                    .stored(&source, &sync.sync_id, pending)
                    .map(|s| (None, s.version, s.samples)),
            };
            let mut replaces = false;
            if let Some((slot, version, samples)) = earlier {
                if version == sync.version && same_entry(&samples, &entry) {
                    unchanged += samples.len();
                    answers.push(match slot {
                        Some(slot) => Answer::Fresh(slot),
                        None => Answer::Stored(u128::from_be_bytes(
                            samples.last().expect("an entry has a sample").sample.id,
                        )),
                    });
                    continue;
                }
                if sync.version <= version {
                    return Err(WriteError::SyncConflict { index });
                }
                match slot {
                    Some(slot) => {
                        fresh[slot].superseded_by = Some(fresh.len());
                        replaces = fresh[slot].replaces;
                    }
                    None => {
                        replaced.extend(samples.iter().map(|s| s.sample.id));
                        replaces = true;
                    }
                }
            }
            in_request.insert(sync.sync_id, fresh.len());
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
            ids,
        };
        let live: Vec<NewEntry> = fresh
            .into_iter()
            .filter(|f| f.superseded_by.is_none())
            .map(|f| f.entry)
            .collect();
        if live.is_empty() {
            return Ok((outcome, None));
        }
        // The request is accepted: later requests of the group see it.
        pending
            .deleted
            .extend(replaced.iter().map(|id| u128::from_be_bytes(*id)));
        let mut synced = Vec::new();
        for entry in &live {
            let Some(sync) = &entry.sync else { continue };
            synced.push(SyncRecord {
                id: entry.id().to_be_bytes(),
                sync_id: sync.sync_id.to_string(),
                version: sync.version,
            });
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
        type ByType = Vec<(TypeIndex, Vec<StoredSample>)>;
        let mut by_device: Vec<(Option<Device>, ByType)> = Vec::new();
        let mut device_at: HashMap<Option<Device>, usize> = HashMap::new();
        for new in live.into_iter().flat_map(|e| e.samples) {
            let at = *device_at.entry(new.device.clone()).or_insert_with(|| {
                by_device.push((new.device.clone(), Vec::new()));
                by_device.len() - 1
            });
            let by_type = &mut by_device[at].1;
            match by_type.iter_mut().find(|(t, _)| *t == new.type_index) {
                Some((_, v)) => v.push(new.sample),
                None => by_type.push((new.type_index, vec![new.sample])),
            }
        }
        let batches = |by_type: ByType| -> Vec<TypeBatch> {
            by_type
                .into_iter()
                .map(|(t, samples)| TypeBatch {
                    type_id: catalogue::get(t).id.to_string(),
                    samples,
                })
                .collect()
        };
        let groups = |by_device: Vec<(Option<Device>, ByType)>| -> Vec<DeviceGroup> {
            by_device
                .into_iter()
                .map(|(device, by_type)| DeviceGroup {
                    device,
                    batches: batches(by_type),
                })
                .collect()
        };
        let event = if !synced.is_empty() || !replaced.is_empty() {
            Event::SamplesWritten {
                source,
                groups: groups(by_device),
                synced,
                replaced,
            }
        } else if by_device.iter().all(|(d, _)| d.is_none()) {
            let (_, by_type) = by_device.pop().expect("at least one sample");
            Event::SamplesAdded {
                source,
                batches: batches(by_type),
            }
        } else {
            Event::DeviceSamplesAdded {
                source,
                groups: groups(by_device),
            }
        };
        Ok((outcome, Some(event)))
    }

    /// The live entry of `source` holding `sync_id`, as earlier requests of
    /// the group left it. Nothing of another source is ever looked at.
    fn stored(&self, source: &str, sync_id: &str, pending: &Pending) -> Option<Synced> {
        if let Some(s) = pending.synced.get(source).and_then(|m| m.get(sync_id)) {
            return Some(s.clone());
        }
        let source_id = self.projection.source_id(source)?;
        let (id, tag) = self.projection.synced(source_id, sync_id)?;
        if pending.deleted.contains(&id) {
            return None;
        }
        let row = {
            let cols = self.projection.columns(tag.ty);
            let r = cols.find(id).filter(|&r| !cols.is_deleted(r))?;
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
        Some(Synced {
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
