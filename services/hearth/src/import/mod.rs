//! Bringing data in from elsewhere.
//!
//! An import is a background job over a file the owner uploaded: the file
//! is checked whole first (a refusal stores nothing), then read as a stream
//! on a blocking thread while a task hands its batches to the store's
//! single writer, so parsing and committing overlap. Every imported sample
//! has a `sync_id`, so an import that stopped part way is completed by
//! running it again, adding nothing twice.

pub mod apple_health;
pub mod client;
pub mod health_auto_export;
pub mod ndjson;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hashbrown::HashMap;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::apps::Apps;
use crate::caller::Caller;
use crate::log::event::SourceKey;
use crate::log::writer::{NewEntry, Write, WriteError, WriteOutcome, Writer};
use crate::store::OpenStore;
use crate::wire::imports as wire;
use apple_health::archive::{ArchiveLimits, Export};

/// Why an import stopped.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ImportError {
    /// Found before anything was stored: the file is not an acceptable export.
    #[error("{0}")]
    Refused(String),
    /// Found part way: what was stored before stays (importing the export
    /// again completes it, adding nothing twice).
    #[error("{0}")]
    Malformed(String),
    /// The store did not take a write.
    #[error("{0}")]
    Store(String),
}

/// Entries an import holds across all its sources before it writes them.
const HELD: usize = 32_000;
/// Metadata bytes an import holds for one source before it writes that
/// source's entries, however few: a route sample's points are its
/// metadata, thousands of them for an hour's run, and a count of entries
/// alone would hold every route of an export until its end.
const BATCH_BYTES: usize = 1 << 20;
/// Metadata bytes an import holds across all its sources.
const HELD_BYTES: usize = 8 << 20;

/// What an entry's samples hold as metadata, in bytes (what
/// [`BATCH_BYTES`] counts).
fn metadata_bytes(entry: &NewEntry) -> usize {
    entry
        .samples
        .iter()
        .map(|s| s.sample.metadata.as_ref().map_or(0, String::len))
        .sum()
}

/// What a reader holds before writing: each source's entries, written
/// together once there are a batch's worth by count or by metadata bytes,
/// and everything once too much is held across sources.
pub(crate) struct Holding {
    /// Entries per source that make a batch.
    batch: usize,
    by_source: HashMap<String, Held>,
    entries: usize,
    bytes: usize,
}

/// One source's entries held, the digests still to take of them, and their
/// metadata bytes.
#[derive(Default)]
struct Held {
    entries: Vec<NewEntry>,
    digests: apple_health::SyncDigests,
    bytes: usize,
}

impl Holding {
    /// Holds up to `batch` entries per source (fewer when their metadata
    /// passes [`BATCH_BYTES`]).
    pub(crate) fn new(batch: usize) -> Holding {
        Holding {
            batch,
            by_source: HashMap::new(),
            entries: 0,
            bytes: 0,
        }
    }

    /// Holds `entry` as `source`'s, first giving `digest` the source's
    /// digests still to take and the entry's place among its entries; writes
    /// what is due to `sink`.
    pub(crate) fn hold(
        &mut self,
        source: &str,
        entry: NewEntry,
        digest: impl FnOnce(&mut apple_health::SyncDigests, usize),
        sink: &mut dyn Sink,
    ) -> Result<(), ImportError> {
        let held = self.by_source.entry_ref(source).or_default();
        digest(&mut held.digests, held.entries.len());
        let bytes = metadata_bytes(&entry);
        held.entries.push(entry);
        held.bytes += bytes;
        self.entries += 1;
        self.bytes += bytes;
        if held.entries.len() >= self.batch || held.bytes >= BATCH_BYTES {
            let held = std::mem::take(held);
            self.entries -= held.entries.len();
            self.bytes -= held.bytes;
            sink.add_digesting(source, held.entries, held.digests)?;
        }
        if self.entries >= HELD || self.bytes >= HELD_BYTES {
            self.flush(sink)?;
        }
        Ok(())
    }

    /// Writes every source's entries held.
    pub(crate) fn flush(&mut self, sink: &mut dyn Sink) -> Result<(), ImportError> {
        for (source, held) in std::mem::take(&mut self.by_source) {
            if !held.entries.is_empty() {
                sink.add_digesting(&source, held.entries, held.digests)?;
            }
        }
        (self.entries, self.bytes) = (0, 0);
        Ok(())
    }
}

/// Where imported samples go: the store's writer, through the import job.
pub trait Sink {
    /// Stores `entries` as `source`, whenever convenient.
    fn add(&mut self, source: &str, entries: Vec<NewEntry>) -> Result<(), ImportError> {
        self.add_digesting(source, entries, apple_health::SyncDigests::default())
    }
    /// [`Sink::add`], the entries' sync identifiers still to be taken from
    /// `digests`.
    fn add_digesting(
        &mut self,
        source: &str,
        entries: Vec<NewEntry>,
        digests: apple_health::SyncDigests,
    ) -> Result<(), ImportError>;
    /// Stores `entries` as `source` now, answering the id of each.
    fn add_now(&mut self, source: &str, entries: Vec<NewEntry>) -> Result<Vec<u128>, ImportError>;
    /// Characteristics from the export (`Me`), as `(type id, value)`.
    fn characteristics(&mut self, values: Vec<(String, String)>) -> Result<(), ImportError>;
    /// The owner's priority order of sources, replacing the store's.
    fn source_priority(&mut self, order: Vec<SourceKey>) -> Result<(), ImportError>;
    /// Bytes of XML read and records seen so far.
    fn progress(&mut self, xml_bytes: u64, records: u64);
}

/// What an import read, mapped and left out.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Tally {
    /// Elements read below `<HealthData>`.
    pub records: u64,
    /// Samples handed to the store, by Hearth type.
    pub samples: BTreeMap<String, u64>,
    /// Records whose type Hearth does not have, by identifier.
    pub unknown: BTreeMap<String, u64>,
    /// Records left out, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Records that repeat a member of a correlation (stored once, as the member).
    pub correlation_duplicates: u64,
    /// Characteristics taken from `Me`.
    pub characteristics: u64,
    /// The sources written as.
    pub sources: BTreeSet<String>,
}

/// Most identifiers or reasons a tally names apart, and the longest of
/// them: both come from the file, and a hostile one could bring a new one
/// per record. Past the first, records are counted under [`OTHERS`].
const TALLY_KEYS: usize = 256;
const TALLY_KEY_CHARS: usize = 200;
/// Where a tally counts records past its first 256 names.
pub const OTHERS: &str = "(others)";

impl Tally {
    /// Counts a record left out for `reason`.
    pub(crate) fn skip(&mut self, reason: impl AsRef<str>) {
        count_under(&mut self.skipped, reason.as_ref());
    }

    /// Counts a record of a type Hearth does not have.
    pub(crate) fn unknown(&mut self, identifier: &str) {
        count_under(&mut self.unknown, identifier);
    }
}

fn count_under(counts: &mut BTreeMap<String, u64>, key: &str) {
    let key = clip(key, TALLY_KEY_CHARS);
    if let Some(n) = counts.get_mut(&*key) {
        *n += 1;
    } else if counts.len() < TALLY_KEYS {
        counts.insert(key.into_owned(), 1);
    } else {
        *counts.entry(OTHERS.to_string()).or_default() += 1;
    }
}

/// `text` cut to its first `chars` characters, `…` marking a cut: what a
/// file or a push says, quoted in a summary or a message.
pub(crate) fn clip(text: &str, chars: usize) -> Cow<'_, str> {
    match text.char_indices().nth(chars) {
        Some((cut, _)) => Cow::Owned(format!("{}…", &text[..cut])),
        None => Cow::Borrowed(text),
    }
}

/// Jobs kept for `GET /v1/imports/{id}` after they end.
const KEEP_FINISHED: usize = 32;

/// The import jobs of this server's lifetime.
#[derive(Default)]
pub struct Imports {
    jobs: Mutex<HashMap<Uuid, Arc<Job>>>,
}

/// Why an import could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("another import is running; wait for it to end")]
    Busy,
    #[error("{0}")]
    Refused(String),
}

#[derive(Default)]
struct Counters {
    bytes_total: AtomicU64,
    bytes_read: AtomicU64,
    records: AtomicU64,
    added: AtomicU64,
    replaced: AtomicU64,
    unchanged: AtomicU64,
    /// Samples whose `sync_id` held other content (left as stored).
    conflicts: AtomicU64,
}

enum State {
    Running,
    Succeeded(Tally),
    Failed { error: String, partial: bool },
}

/// What an upload holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// An Apple Health `export.zip`, or its export XML.
    AppleHealth,
    /// Hearth's own `ndjson` export.
    Ndjson,
}

/// An upload checked and ready to import.
enum Checked {
    AppleHealth(Export),
    Ndjson(std::path::PathBuf),
}

/// One import and how far it got.
pub struct Job {
    pub id: Uuid,
    format: Format,
    started: Instant,
    finished: Mutex<Option<Instant>>,
    counters: Counters,
    state: Mutex<State>,
}

impl Job {
    pub fn is_running(&self) -> bool {
        matches!(*self.state.lock(), State::Running)
    }

    /// The job as the API shows it.
    pub fn snapshot(&self) -> wire::ImportJob {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let end = self.finished.lock().unwrap_or_else(Instant::now);
        let progress = wire::ImportProgress {
            bytes_total: load(&c.bytes_total),
            bytes_read: load(&c.bytes_read),
            records: load(&c.records),
            added: load(&c.added),
            replaced: load(&c.replaced),
            unchanged: load(&c.unchanged),
            elapsed_s: end.duration_since(self.started).as_secs_f64(),
        };
        let (state, error, summary) = match &*self.state.lock() {
            State::Running => (wire::ImportState::Running, None, None),
            State::Succeeded(t) => (
                wire::ImportState::Succeeded,
                None,
                Some(wire::ImportSummary {
                    records: t.records,
                    samples: t.samples.clone(),
                    unknown: t.unknown.clone(),
                    skipped: t.skipped.clone(),
                    correlation_duplicates: t.correlation_duplicates,
                    characteristics: t.characteristics,
                    sources: t.sources.iter().cloned().collect(),
                    added: load(&c.added),
                    replaced: load(&c.replaced),
                    unchanged: load(&c.unchanged),
                    conflicts: load(&c.conflicts),
                }),
            ),
            State::Failed { error, partial } => (
                wire::ImportState::Failed,
                Some(if *partial {
                    format!(
                        "{error}. What was read before this point is stored; importing the \
                         export again completes it without adding anything twice"
                    )
                } else {
                    format!("{error}. Nothing was stored")
                }),
                None,
            ),
        };
        wire::ImportJob {
            id: self.id,
            format: match self.format {
                Format::AppleHealth => "apple_health",
                Format::Ndjson => "ndjson",
            },
            state,
            error,
            progress,
            summary,
        }
    }
}

impl Imports {
    pub fn get(&self, id: Uuid) -> Option<Arc<Job>> {
        self.jobs.lock().get(&id).cloned()
    }

    /// Checks the uploaded export at `upload` and starts importing it as
    /// the owner. The file is removed when the job ends.
    pub async fn start(
        &self,
        format: Format,
        open: Arc<OpenStore>,
        apps: Arc<Apps>,
        upload: tempfile::TempPath,
        limits: ArchiveLimits,
    ) -> Result<Arc<Job>, StartError> {
        if self.jobs.lock().values().any(|j| j.is_running()) {
            return Err(StartError::Busy);
        }
        let (checked, upload) = tokio::task::spawn_blocking(move || {
            let checked = match format {
                Format::AppleHealth => Export::open(&upload, limits)
                    .map(|e| (e.xml_bytes, Checked::AppleHealth(e)))
                    .map_err(|e| e.to_string()),
                Format::Ndjson => ndjson::check(&upload)
                    .map(|bytes| (bytes, Checked::Ndjson(upload.to_path_buf())))
                    .map_err(|e| e.to_string()),
            };
            (checked, upload)
        })
        .await
        .map_err(|_| StartError::Refused("the export could not be checked".into()))?;
        let (bytes_total, checked) = checked.map_err(StartError::Refused)?;
        let job = Arc::new(Job {
            id: Uuid::new_v4(),
            format,
            started: Instant::now(),
            finished: Mutex::new(None),
            counters: Counters::default(),
            state: Mutex::new(State::Running),
        });
        job.counters
            .bytes_total
            .store(bytes_total, Ordering::Relaxed);
        {
            let mut jobs = self.jobs.lock();
            if jobs.values().any(|j| j.is_running()) {
                return Err(StartError::Busy);
            }
            if jobs.len() >= KEEP_FINISHED {
                let oldest = jobs
                    .values()
                    .filter(|j| !j.is_running())
                    .min_by_key(|j| j.started)
                    .map(|j| j.id);
                if let Some(id) = oldest {
                    jobs.remove(&id);
                }
            }
            jobs.insert(job.id, job.clone());
        }
        tokio::spawn(run(job.clone(), checked, upload, open, apps));
        Ok(job)
    }
}

/// A batch for the writing task.
enum Batch {
    Add {
        source: String,
        entries: Vec<NewEntry>,
        digests: apple_health::SyncDigests,
        reply: Option<oneshot::Sender<Vec<u128>>>,
    },
    Characteristics(Vec<(String, String)>),
    Priority(Vec<SourceKey>),
}

async fn run(
    job: Arc<Job>,
    checked: Checked,
    upload: tempfile::TempPath,
    open: Arc<OpenStore>,
    apps: Arc<Apps>,
) {
    // One snapshot when the import is done, not one every so many records.
    let deferred = open.snapshots.defer();
    let (tx, rx) = mpsc::channel(4);
    let writing = tokio::spawn(write_batches(rx, open, apps, job.clone()));
    let parse_job = job.clone();
    let parsed = tokio::task::spawn_blocking(move || {
        let mut sink = ChannelSink { tx, job: parse_job };
        let tally = match &checked {
            Checked::AppleHealth(export) => apple_health::import(export, &mut sink),
            Checked::Ndjson(path) => ndjson::import(path, &mut sink),
        };
        drop(sink);
        drop(checked);
        drop(upload);
        tally
    })
    .await
    .unwrap_or_else(|_| Err(ImportError::Store("the import stopped unexpectedly".into())));
    let written = writing
        .await
        .unwrap_or_else(|_| Err(ImportError::Store("writing stopped unexpectedly".into())));
    let stored_any = job.counters.added.load(Ordering::Relaxed)
        + job.counters.replaced.load(Ordering::Relaxed)
        > 0;
    let state = match (parsed, written) {
        // The writer's own failure explains a parse cut short by it.
        (_, Err(e)) | (Err(e), Ok(())) => {
            tracing::warn!(job = %job.id, "import failed");
            State::Failed {
                error: e.to_string(),
                partial: stored_any || !matches!(e, ImportError::Refused(_)),
            }
        }
        (Ok(tally), Ok(())) => State::Succeeded(tally),
    };
    drop(deferred);
    *job.finished.lock() = Some(Instant::now());
    *job.state.lock() = state;
}

struct ChannelSink {
    tx: mpsc::Sender<Batch>,
    job: Arc<Job>,
}

/// The writing task ended early: its error says why.
fn stopped() -> ImportError {
    ImportError::Store("writing stopped".into())
}

impl Sink for ChannelSink {
    fn add_digesting(
        &mut self,
        source: &str,
        entries: Vec<NewEntry>,
        digests: apple_health::SyncDigests,
    ) -> Result<(), ImportError> {
        self.tx
            .blocking_send(Batch::Add {
                source: source.to_string(),
                entries,
                digests,
                reply: None,
            })
            .map_err(|_| stopped())
    }

    fn add_now(&mut self, source: &str, entries: Vec<NewEntry>) -> Result<Vec<u128>, ImportError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .blocking_send(Batch::Add {
                source: source.to_string(),
                entries,
                digests: apple_health::SyncDigests::default(),
                reply: Some(reply),
            })
            .map_err(|_| stopped())?;
        answer.blocking_recv().map_err(|_| stopped())
    }

    fn characteristics(&mut self, values: Vec<(String, String)>) -> Result<(), ImportError> {
        self.tx
            .blocking_send(Batch::Characteristics(values))
            .map_err(|_| stopped())
    }

    fn source_priority(&mut self, order: Vec<SourceKey>) -> Result<(), ImportError> {
        self.tx
            .blocking_send(Batch::Priority(order))
            .map_err(|_| stopped())
    }

    fn progress(&mut self, xml_bytes: u64, records: u64) {
        let c = &self.job.counters;
        c.bytes_read.store(xml_bytes, Ordering::Relaxed);
        c.records.store(records, Ordering::Relaxed);
    }
}

fn store_error(e: WriteError) -> ImportError {
    ImportError::Store(match e {
        WriteError::Unavailable => "the store was locked during the import".into(),
        e => format!("the store refused a write: {e}"),
    })
}

async fn write_batches(
    mut rx: mpsc::Receiver<Batch>,
    open: Arc<OpenStore>,
    apps: Arc<Apps>,
    job: Arc<Job>,
) -> Result<(), ImportError> {
    while let Some(batch) = rx.recv().await {
        match batch {
            Batch::Add {
                source,
                mut entries,
                digests,
                reply,
            } => {
                digests.apply(&mut entries);
                let ids = write_entries(&open.writer, source, entries, &job).await?;
                if let Some(reply) = reply {
                    let _ = reply.send(ids);
                }
            }
            Batch::Characteristics(imported) => {
                // What the owner set stays; the export fills in the rest.
                let mut values = open.view(Caller::Owner, apps.clone()).characteristics();
                let before = values.len();
                for (k, v) in imported {
                    if !values.iter().any(|(have, _)| *have == k) {
                        values.push((k, v));
                    }
                }
                if values.len() > before {
                    open.writer
                        .write(Write::SetCharacteristics { values })
                        .await
                        .map_err(store_error)?;
                }
            }
            Batch::Priority(order) => {
                open.writer
                    .write(Write::SetSourcePriority { order })
                    .await
                    .map_err(store_error)?;
            }
        }
    }
    Ok(())
}

/// Writes one batch; a sample whose `sync_id` holds other content is left
/// as stored and counted, and a source past its device cap keeps writing
/// without naming devices.
async fn write_entries(
    writer: &Writer,
    source: String,
    entries: Vec<NewEntry>,
    job: &Job,
) -> Result<Vec<u128>, ImportError> {
    let c = &job.counters;
    match writer.write(Write::Import { source, entries }).await {
        Ok(WriteOutcome::Added {
            added,
            replaced,
            unchanged,
            conflicts,
            ids,
        }) => {
            c.added.fetch_add(added as u64, Ordering::Relaxed);
            c.replaced.fetch_add(replaced as u64, Ordering::Relaxed);
            c.unchanged.fetch_add(unchanged as u64, Ordering::Relaxed);
            c.conflicts.fetch_add(conflicts as u64, Ordering::Relaxed);
            Ok(ids)
        }
        Ok(_) => Err(ImportError::Store(
            "unexpected answer from the writer".into(),
        )),
        Err(e) => Err(store_error(e)),
    }
}

/// The uploaded file's name prefix in the temporary directory.
pub fn upload_file(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix("hearth-import-")
        .tempfile_in(dir)
}

/// A sink that takes every write and notes what it held, for the readers'
/// tests.
#[cfg(test)]
mod writes {
    use super::*;

    /// Every write taken: the most metadata one held and the largest
    /// entry's, all of it, and each type's entries. Writes that wait for
    /// ids get 1, 2, ...
    #[derive(Default)]
    pub struct Writes {
        pub largest: usize,
        pub largest_entry: usize,
        pub total: usize,
        pub entries: BTreeMap<String, u64>,
        ids: u128,
    }

    impl Writes {
        fn take(&mut self, entries: &[NewEntry]) {
            let bytes: Vec<usize> = entries.iter().map(metadata_bytes).collect();
            self.largest = self.largest.max(bytes.iter().sum());
            self.largest_entry = self
                .largest_entry
                .max(bytes.iter().copied().max().unwrap_or(0));
            self.total += bytes.iter().sum::<usize>();
            for entry in entries {
                if let Some(last) = entry.samples.last() {
                    let ty = crate::catalogue::get(last.type_index).id;
                    *self.entries.entry(ty.to_string()).or_default() += 1;
                }
            }
        }
    }

    impl Sink for Writes {
        fn add_digesting(
            &mut self,
            _: &str,
            entries: Vec<NewEntry>,
            _: apple_health::SyncDigests,
        ) -> Result<(), ImportError> {
            self.take(&entries);
            Ok(())
        }
        fn add_now(&mut self, _: &str, entries: Vec<NewEntry>) -> Result<Vec<u128>, ImportError> {
            self.take(&entries);
            Ok(entries
                .iter()
                .map(|_| {
                    self.ids += 1;
                    self.ids
                })
                .collect())
        }
        fn characteristics(&mut self, _: Vec<(String, String)>) -> Result<(), ImportError> {
            Ok(())
        }
        fn source_priority(&mut self, _: Vec<SourceKey>) -> Result<(), ImportError> {
            Ok(())
        }
        fn progress(&mut self, _: u64, _: u64) {}
    }

    /// Whether `writes` held at most a batch's worth of metadata at a time
    /// (and the entry that filled it), of several batches' worth in all.
    pub fn bounded(writes: &Writes) -> bool {
        writes.total > 3 * BATCH_BYTES && writes.largest < BATCH_BYTES + writes.largest_entry
    }
}
