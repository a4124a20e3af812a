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
use super::event::{Device, DeviceGroup, Envelope, Event, SourceKey, StoredSample, TypeBatch};
use crate::apps::Apps;
use crate::catalogue::{self, TypeIndex};
use crate::crypto::{self, DataKey};
use crate::projection::Projection;
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

#[derive(Debug)]
pub enum Write {
    AddSamples {
        source: String,
        samples: Vec<NewSample>,
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
    Added { added: usize, unchanged: usize },
    Deleted,
    Logged,
    Set,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WriteError {
    #[error("sample {index} reuses an existing id with different content")]
    Conflict { index: usize },
    #[error("sample {index} reuses the id of a deleted sample")]
    Deleted { index: usize },
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

/// The state of an id as seen by a group in progress.
enum Pending {
    Added(TypeIndex, StoredSample, Arc<str>, Option<Device>),
    Deleted,
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
        Command::Write(Write::AddSamples { samples, .. }, _) => samples.len(),
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
        let mut pending: HashMap<u128, Pending> = HashMap::new();
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
        for (seq, envelope) in &envelopes {
            if self.apps.apply(envelope) {
                continue;
            }
            if let Err(e) = self.projection.apply(*seq, envelope) {
                tracing::error!(error = %e, "committed event could not be projected");
            }
        }
        for (reply, outcome) in answers {
            let _ = reply.send(Ok(outcome));
        }
    }

    /// Checks one request; returns its outcome and the event to log, if any.
    fn prepare(
        &self,
        write: Write,
        pending: &mut HashMap<u128, Pending>,
        new_devices: &mut NewDevices,
    ) -> Result<(WriteOutcome, Option<Event>), WriteError> {
        match write {
            Write::AddSamples { source, samples } => {
                let devices_added = self.check_device_cap(&source, &samples, new_devices)?;
                let mut fresh: Vec<(usize, NewSample)> = Vec::new();
                let mut in_request: HashMap<u128, usize> = HashMap::new();
                let mut unchanged = 0;
                for (index, new) in samples.into_iter().enumerate() {
                    let id = u128::from_be_bytes(new.sample.id);
                    if let Some(&earlier) = in_request.get(&id) {
                        let (_, first) = &fresh[earlier];
                        if same_content(
                            first.type_index,
                            &first.sample,
                            first.device.as_ref(),
                            &new,
                        ) {
                            unchanged += 1;
                            continue;
                        }
                        return Err(WriteError::Conflict { index });
                    }
                    match self.existing(id, pending) {
                        Existing::Deleted => return Err(WriteError::Deleted { index }),
                        Existing::Live(ty, sample, src, device) => {
                            if *src == *source && same_content(ty, &sample, device.as_ref(), &new) {
                                unchanged += 1;
                                continue;
                            }
                            return Err(WriteError::Conflict { index });
                        }
                        Existing::None => {}
                    }
                    in_request.insert(id, fresh.len());
                    fresh.push((index, new));
                }
                let outcome = WriteOutcome::Added {
                    added: fresh.len(),
                    unchanged,
                };
                if fresh.is_empty() {
                    return Ok((outcome, None));
                }
                new_devices
                    .entry(source.clone())
                    .or_default()
                    .extend(devices_added);
                type ByType = Vec<(TypeIndex, Vec<StoredSample>)>;
                let mut by_device: Vec<(Option<Device>, ByType)> = Vec::new();
                let mut device_at: HashMap<Option<Device>, usize> = HashMap::new();
                for (_, new) in fresh {
                    pending.insert(
                        u128::from_be_bytes(new.sample.id),
                        Pending::Added(
                            new.type_index,
                            new.sample.clone(),
                            source.as_str().into(),
                            new.device.clone(),
                        ),
                    );
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
                let event = if by_device.iter().all(|(d, _)| d.is_none()) {
                    let (_, by_type) = by_device.pop().expect("at least one sample");
                    Event::SamplesAdded {
                        source,
                        batches: batches(by_type),
                    }
                } else {
                    Event::DeviceSamplesAdded {
                        source,
                        groups: by_device
                            .into_iter()
                            .map(|(device, by_type)| DeviceGroup {
                                device,
                                batches: batches(by_type),
                            })
                            .collect(),
                    }
                };
                Ok((outcome, Some(event)))
            }
            Write::Delete {
                source,
                id,
                only_own,
            } => {
                match self.existing(id, pending) {
                    Existing::Live(_, _, src, _) if !only_own || *src == *source => {}
                    _ => return Err(WriteError::NotFound),
                }
                pending.insert(id, Pending::Deleted);
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
        samples: &[NewSample],
        new_devices: &NewDevices,
    ) -> Result<Vec<Device>, WriteError> {
        let earlier = new_devices.get(source);
        let known = self.projection.device_count(source) + earlier.map_or(0, HashSet::len);
        let mut seen: HashSet<&Device> = HashSet::new();
        let mut added = Vec::new();
        for device in samples.iter().filter_map(|s| s.device.as_ref()) {
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

    fn existing(&self, id: u128, pending: &HashMap<u128, Pending>) -> Existing {
        match pending.get(&id) {
            Some(Pending::Deleted) => return Existing::Deleted,
            Some(Pending::Added(ty, s, src, device)) => {
                return Existing::Live(*ty, s.clone(), src.clone(), device.clone())
            }
            None => {}
        }
        if self.projection.is_tombstoned(id) {
            return Existing::Deleted;
        }
        match self.projection.find(id) {
            Some((ty, row)) => Existing::Live(
                ty,
                StoredSample {
                    id: row.id.to_be_bytes(),
                    start_us: row.start_us,
                    start_offset_min: row.start_offset_min,
                    end_us: row.end_us,
                    end_offset_min: row.end_offset_min,
                    value: row.value,
                    metadata: row.metadata.map(String::from),
                },
                self.projection.source_name(row.source),
                self.projection.device(row.source, row.device),
            ),
            None => Existing::None,
        }
    }
}

/// Devices that requests earlier in the group add, per source: not yet in
/// the projection, but counted against the cap.
type NewDevices = HashMap<String, HashSet<Device>>;

enum Existing {
    None,
    Deleted,
    /// Type, content and the source that wrote it.
    Live(TypeIndex, StoredSample, Arc<str>, Option<Device>),
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
