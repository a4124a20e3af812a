//! FHIR Bulk Data export for studies: jobs kicked off by a study's token,
//! run in the background through the study's [`View`], written to sealed
//! files, listed in a manifest, and gone when they expire, are deleted or
//! the owner withdraws.
//!
//! - A job's state is sealed (AES-256-GCM-SIV, under a key derived from the
//!   root key) in the `export_jobs` table, so it survives a restart and a
//!   lock. While the store is locked or sealed a job waits; its progress
//!   says so, and it starts over from its first line at the next unlock
//!   (what it covers was fixed at kick-off: records up to the log head of
//!   that moment).
//! - Output files lie under `<data dir>/exports/<job>/` (directory `0700`,
//!   files `0600`) and are sealed in chunks under a random key of the job's
//!   own, which is kept only in the sealed job state: a copy of the
//!   directory alone reveals nothing. A download opens them a chunk at a
//!   time.
//! - Memory stays flat: rows are read a page at a time and written out a
//!   chunk at a time, whatever the size of the store.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use super::deidentify::{Policy, StudySecrets};
use super::resources::{self, OutputFormat, Record};
use super::{rfc3339, Study, StudyScope};
use crate::caller::Caller;
use crate::catalogue::{self, Aggregation, Kind, TypeIndex};
use crate::crypto;
use crate::query::samples::{self as query, SampleQuery};
use crate::storage::{Storage, StorageError};
use crate::store::{OpenStore, Store};
use crate::view::View;
use crate::wire::research::{DeidentificationLevel, Resolution};

/// Derives the key that seals export jobs and study secrets.
pub const KEY_LABEL: &[u8] = b"hearth/research-export/v1";
/// Rows read per step.
const PAGE: usize = 1000;
/// Plaintext bytes per sealed chunk of an output file.
const CHUNK: usize = 64 * 1024;
/// How long a finished job's files stay available.
pub const FILE_TTL: Duration = Duration::from_secs(3600);
/// The shortest interval between two status requests for one job.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
const HOUR_US: i64 = 3_600_000_000;
const DAY_US: i64 = 24 * HOUR_US;

/// Which resources a job exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResourceKind {
    Patient,
    Observation,
}

impl ResourceKind {
    pub fn parse(name: &str) -> Option<ResourceKind> {
        match name.trim() {
            "Patient" => Some(ResourceKind::Patient),
            "Observation" => Some(ResourceKind::Observation),
            _ => None,
        }
    }

    pub fn scope(self) -> StudyScope {
        match self {
            ResourceKind::Patient => StudyScope::Patient,
            ResourceKind::Observation => StudyScope::Observation,
        }
    }
}

/// One output file of a finished job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OutputFile {
    /// The manifest's `type`: a FHIR resource type, or an Open mHealth
    /// schema (`omh:step-count:3.0`).
    pub kind: String,
    pub count: u64,
    pub bytes: u64,
    /// An OperationOutcome listed under `error`.
    pub error: bool,
}

/// What a finished export disclosed, for the owner's audit: who received
/// what, how much, covering which days, when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Disclosure {
    pub study_id: String,
    pub job_id: String,
    /// Resource and sample types, as exported.
    pub types: Vec<String>,
    /// Records per sample type (Patient counted as `patient`).
    pub counts: Vec<(String, u64)>,
    /// The first and last sample times disclosed (RFC 3339, real time).
    pub date_range: Option<(String, String)>,
    pub bytes: u64,
    /// RFC 3339: when the export finished.
    pub at: String,
}

impl Disclosure {
    /// As the owner's audit keeps it.
    pub fn for_audit(&self) -> crate::audit::StudyExportDisclosure {
        let us = |t: &str| {
            t.parse::<jiff::Timestamp>()
                .ok()
                .map(|t| t.as_microsecond())
        };
        crate::audit::StudyExportDisclosure {
            study_id: self.study_id.clone(),
            job_id: self.job_id.clone(),
            types: self.types.clone(),
            counts: self.counts.iter().cloned().collect(),
            range_start_us: self.date_range.as_ref().and_then(|(first, _)| us(first)),
            range_end_us: self.date_range.as_ref().and_then(|(_, last)| us(last)),
            bytes: self.bytes,
            at_us: us(&self.at).unwrap_or_default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum JobStatus {
    /// Waiting to run, or to run again after a lock interrupted it.
    Queued,
    Done,
    Failed(String),
}

/// A job as sealed in the `export_jobs` table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobRecord {
    pub job_id: String,
    pub study_id: String,
    /// The kick-off request's URL, for the manifest.
    pub request: String,
    pub resources: Vec<ResourceKind>,
    pub since_us: Option<i64>,
    pub format: OutputFormat,
    /// When the job was kicked off: the manifest's `transactionTime`.
    pub transaction_us: i64,
    /// The log head then: records after it are for a later export.
    pub head_seq: u64,
    pub status: JobStatus,
    pub file_key: [u8; 32],
    pub outputs: Vec<OutputFile>,
    pub expires_us: Option<i64>,
    pub disclosure: Option<Disclosure>,
}

/// A job in memory: its record, and what the runner reports.
struct Job {
    record: JobRecord,
    written: AtomicU64,
    total: AtomicU64,
    waiting_for_unlock: AtomicBool,
    cancelled: AtomicBool,
    last_poll: Mutex<Option<Instant>>,
}

impl Job {
    fn new(record: JobRecord) -> Arc<Job> {
        Arc::new(Job {
            record,
            written: AtomicU64::new(0),
            total: AtomicU64::new(0),
            waiting_for_unlock: AtomicBool::new(false),
            cancelled: AtomicBool::new(false),
            last_poll: Mutex::new(None),
        })
    }
}

/// What a status request learns.
pub enum Status {
    /// Still running (or waiting): `X-Progress`.
    InProgress(String),
    Done(Box<JobRecord>),
    Failed(String),
    /// Polled sooner than [`POLL_INTERVAL`] after the last time.
    TooSoon,
}

/// Why a kick-off is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum KickOffError {
    /// One job of the study is running already.
    Busy,
    /// Open mHealth needs whole dates; a Safe Harbor study gets FHIR.
    FormatNeedsDates,
    Storage,
}

/// The export jobs of every study: in memory, mirrored sealed in the
/// database. Kept across lock, like the app registry.
pub struct ExportJobs {
    jobs: Mutex<HashMap<String, Arc<Job>>>,
    /// The unlock epoch whose database jobs are loaded.
    loaded_epoch: Mutex<Option<u64>>,
    dir: Mutex<Option<PathBuf>>,
    wake: Notify,
    started: AtomicBool,
}

impl Default for ExportJobs {
    fn default() -> ExportJobs {
        ExportJobs {
            jobs: Mutex::default(),
            loaded_epoch: Mutex::new(None),
            dir: Mutex::new(None),
            wake: Notify::new(),
            started: AtomicBool::new(false),
        }
    }
}

fn job_aad(job_id: &str) -> Vec<u8> {
    [b"hearth/export-job/".as_slice(), job_id.as_bytes()].concat()
}

fn secrets_digest(study_id: &str) -> [u8; 32] {
    Sha256::digest([b"hearth/study-secrets/".as_slice(), study_id.as_bytes()].concat()).into()
}

async fn save(
    storage: &dyn Storage,
    key: &crypto::SecretKey,
    record: &JobRecord,
) -> Result<(), StorageError> {
    let plain = zeroize::Zeroizing::new(serde_json::to_vec(record).expect("a job serialises"));
    let sealed = crypto::seal(key, &job_aad(&record.job_id), &plain);
    storage.put_export_job(&record.job_id, &sealed).await
}

/// The study's export secrets, drawn the first time they are needed.
pub async fn study_secrets(
    storage: &dyn Storage,
    key: &crypto::SecretKey,
    study_id: &str,
    level: DeidentificationLevel,
) -> Result<StudySecrets, StorageError> {
    let digest = secrets_digest(study_id);
    let sealed = match storage.study_secrets(&digest).await? {
        Some(sealed) => sealed,
        None => {
            let fresh = StudySecrets::draw(level);
            let plain = zeroize::Zeroizing::new(serde_json::to_vec(&fresh).expect("serialises"));
            storage
                .put_study_secrets(&digest, &crypto::seal(key, &digest, &plain))
                .await?
        }
    };
    let plain = crypto::open(key, &digest, &sealed)
        .map_err(|_| StorageError::Corrupt("a study's export secrets do not open".into()))?;
    serde_json::from_slice(&plain)
        .map_err(|_| StorageError::Corrupt("a study's export secrets do not parse".into()))
}

impl ExportJobs {
    /// Where output files go; set once at start.
    pub fn set_dir(&self, dir: PathBuf) {
        *self.dir.lock() = Some(dir);
    }

    fn job_dir(&self, job_id: &str) -> Option<PathBuf> {
        self.dir.lock().as_ref().map(|d| d.join(job_id))
    }

    /// Starts the runner (once). It holds the store only while it works,
    /// and ends when the server has dropped it: a stopped server leaves no
    /// connection to the database behind.
    pub fn spawn_runner(self: &Arc<Self>, store: &Arc<Store>) {
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let jobs = self.clone();
        let store = Arc::downgrade(store);
        tokio::spawn(async move { jobs.run(store).await });
    }

    /// Loads the jobs the database holds, once per unlock.
    async fn load(&self, store: &Store, open: &OpenStore) {
        let Some(epoch) = store.unlocked_epoch() else {
            return;
        };
        if *self.loaded_epoch.lock() == Some(epoch) {
            return;
        }
        let rows = match store.storage().export_jobs().await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "reading export jobs failed");
                return;
            }
        };
        {
            let mut jobs = self.jobs.lock();
            for (job_id, sealed) in rows {
                if jobs.contains_key(&job_id) {
                    continue;
                }
                let record = crypto::open(&open.export_key, &job_aad(&job_id), &sealed)
                    .ok()
                    .and_then(|plain| serde_json::from_slice::<JobRecord>(&plain).ok());
                match record {
                    Some(record) => {
                        jobs.insert(job_id, Job::new(record));
                    }
                    None => tracing::error!("an export job does not open; left as it is"),
                }
            }
        }
        *self.loaded_epoch.lock() = Some(epoch);
    }

    /// Starts a job for `study`; its id.
    #[allow(clippy::too_many_arguments)]
    pub async fn kick_off(
        &self,
        store: &Store,
        open: &OpenStore,
        study: &Study,
        request: String,
        resources: Vec<ResourceKind>,
        since_us: Option<i64>,
        format: OutputFormat,
        level: DeidentificationLevel,
    ) -> Result<String, KickOffError> {
        self.load(store, open).await;
        if format == OutputFormat::OpenMHealth && level == DeidentificationLevel::SafeHarbor {
            return Err(KickOffError::FormatNeedsDates);
        }
        let view = open.view(Caller::Study(Box::new(study.clone())), store.apps().clone());
        let record = JobRecord {
            job_id: hex::encode(crypto::random_bytes::<16>()),
            study_id: study.study_id.clone(),
            request,
            resources,
            since_us,
            format,
            transaction_us: store.apps().clock.now_us(),
            head_seq: view.applied_seq(),
            status: JobStatus::Queued,
            file_key: crypto::random_bytes::<32>(),
            outputs: Vec::new(),
            expires_us: None,
            disclosure: None,
        };
        {
            let mut jobs = self.jobs.lock();
            let busy = jobs.values().any(|j| {
                j.record.study_id == study.study_id
                    && j.record.status == JobStatus::Queued
                    && !j.cancelled.load(Ordering::Acquire)
            });
            if busy {
                return Err(KickOffError::Busy);
            }
            jobs.insert(record.job_id.clone(), Job::new(record.clone()));
        }
        if save(&**store.storage(), &open.export_key, &record)
            .await
            .is_err()
        {
            self.jobs.lock().remove(&record.job_id);
            return Err(KickOffError::Storage);
        }
        self.wake.notify_one();
        Ok(record.job_id)
    }

    fn job_of(&self, study_id: &str, job_id: &str) -> Option<Arc<Job>> {
        let jobs = self.jobs.lock();
        jobs.get(job_id)
            .filter(|j| j.record.study_id == study_id && !j.cancelled.load(Ordering::Acquire))
            .cloned()
    }

    /// A study's status request; `None`: no such job of this study.
    pub fn status(&self, study_id: &str, job_id: &str, now_us: i64) -> Option<Status> {
        let job = self.job_of(study_id, job_id)?;
        if job.record.expires_us.is_some_and(|e| e <= now_us) {
            return None;
        }
        {
            let mut last = job.last_poll.lock();
            let now = Instant::now();
            if last.is_some_and(|l| now.duration_since(l) < POLL_INTERVAL) {
                return Some(Status::TooSoon);
            }
            *last = Some(now);
        }
        Some(match &job.record.status {
            JobStatus::Done => Status::Done(Box::new(job.record.clone())),
            JobStatus::Failed(m) => Status::Failed(m.clone()),
            JobStatus::Queued if job.waiting_for_unlock.load(Ordering::Acquire) => {
                Status::InProgress("waiting: the store is locked; resumes at unlock".into())
            }
            JobStatus::Queued => {
                let written = job.written.load(Ordering::Acquire);
                let total = job.total.load(Ordering::Acquire);
                Status::InProgress(match (written * 100).checked_div(total) {
                    None => "queued".into(),
                    Some(percent) => {
                        format!("{}% ({written} of {total} records)", percent.min(99))
                    }
                })
            }
        })
    }

    /// Cancels a job (or releases a finished one's files); `false`: no such
    /// job of this study.
    pub async fn delete(&self, storage: &dyn Storage, study_id: &str, job_id: &str) -> bool {
        let Some(job) = self.job_of(study_id, job_id) else {
            return false;
        };
        self.forget(storage, &job).await;
        true
    }

    async fn forget(&self, storage: &dyn Storage, job: &Arc<Job>) {
        job.cancelled.store(true, Ordering::Release);
        self.jobs.lock().remove(&job.record.job_id);
        if let Some(dir) = self.job_dir(&job.record.job_id) {
            remove_dir(&dir);
        }
        if let Err(e) = storage.delete_export_job(&job.record.job_id).await {
            tracing::warn!(error = %e, "forgetting an export job failed");
        }
    }

    /// The owner withdrew from (or removed) a study: its jobs stop, their
    /// files and state go, and so do its secrets. Jobs still only in the
    /// database (not loaded since a restart) are found by opening them.
    pub async fn withdraw(&self, storage: &dyn Storage, open: Option<&OpenStore>, study_id: &str) {
        let mine: Vec<Arc<Job>> = self
            .jobs
            .lock()
            .values()
            .filter(|j| j.record.study_id == study_id)
            .cloned()
            .collect();
        for job in mine {
            self.forget(storage, &job).await;
        }
        if let Some(open) = open {
            if let Ok(rows) = storage.export_jobs().await {
                for (job_id, sealed) in rows {
                    let record = crypto::open(&open.export_key, &job_aad(&job_id), &sealed)
                        .ok()
                        .and_then(|p| serde_json::from_slice::<JobRecord>(&p).ok());
                    if record.is_some_and(|r| r.study_id == study_id) {
                        if let Some(dir) = self.job_dir(&job_id) {
                            remove_dir(&dir);
                        }
                        let _ = storage.delete_export_job(&job_id).await;
                    }
                }
            }
        }
        if let Err(e) = storage
            .delete_study_secrets(&secrets_digest(study_id))
            .await
        {
            tracing::warn!(error = %e, "forgetting a study's export secrets failed");
        }
    }

    /// A finished job's output file `n`, opened for download; `None`: no
    /// such file for this study, or expired.
    pub fn open_file(
        &self,
        study_id: &str,
        job_id: &str,
        n: usize,
        now_us: i64,
    ) -> Option<(OutputFormat, bool, SealedReader)> {
        let job = self.job_of(study_id, job_id)?;
        if job.record.status != JobStatus::Done || job.record.expires_us.is_none_or(|e| e <= now_us)
        {
            return None;
        }
        let output = job.record.outputs.get(n)?;
        let path = self.job_dir(job_id)?.join(file_name(n));
        let file = std::fs::File::open(path).ok()?;
        let aad = file_aad(job_id, n);
        Some((
            job.record.format,
            output.error,
            SealedReader {
                file,
                key: crypto::SecretKey::from(job.record.file_key),
                aad,
                chunk: 0,
            },
        ))
    }

    /// The background runner: runs queued jobs one at a time while the
    /// store is open, and sweeps expired ones.
    async fn run(self: Arc<Self>, store: std::sync::Weak<Store>) {
        loop {
            let _ = tokio::time::timeout(Duration::from_millis(500), self.wake.notified()).await;
            let Some(store) = store.upgrade() else {
                return;
            };
            let open = match store.open_store() {
                Ok(open) => open,
                Err(_) => {
                    for job in self.jobs.lock().values() {
                        job.waiting_for_unlock.store(true, Ordering::Release);
                    }
                    continue;
                }
            };
            self.load(&store, &open).await;
            self.sweep(&store).await;
            let next = {
                let jobs = self.jobs.lock();
                let mut queued: Vec<&Arc<Job>> = jobs
                    .values()
                    .filter(|j| {
                        j.record.status == JobStatus::Queued && !j.cancelled.load(Ordering::Acquire)
                    })
                    .collect();
                queued.sort_by_key(|j| j.record.transaction_us);
                queued.first().map(|j| Arc::clone(j))
            };
            let Some(job) = next else { continue };
            job.waiting_for_unlock.store(false, Ordering::Release);
            self.run_one(&store, &open, job).await;
            drop(open);
            self.wake.notify_one();
        }
    }

    async fn sweep(&self, store: &Store) {
        let now = store.apps().clock.now_us();
        let expired: Vec<Arc<Job>> = self
            .jobs
            .lock()
            .values()
            .filter(|j| j.record.expires_us.is_some_and(|e| e <= now))
            .cloned()
            .collect();
        for job in expired {
            self.forget(&**store.storage(), &job).await;
        }
    }

    async fn run_one(&self, store: &Arc<Store>, open: &Arc<OpenStore>, job: Arc<Job>) {
        let Some(dir) = self.job_dir(&job.record.job_id) else {
            return;
        };
        let Some(epoch) = store.unlocked_epoch() else {
            return;
        };
        let study_id = job.record.study_id.clone();
        let terms = {
            let registry = store.apps().read();
            registry
                .studies()
                .get(&study_id)
                .filter(|s| s.live_consent().is_some())
                .map(|s| {
                    let d = &s.description;
                    let range = super::study::parse_range(&d.date_range).ok();
                    (d.deidentification, range, d.resolution)
                })
        };
        let Some((level, range, resolution)) = terms else {
            self.forget(&**store.storage(), &job).await;
            return;
        };
        let Some((first_day, last_day)) = range else {
            return;
        };
        let secrets =
            match study_secrets(&**store.storage(), &open.export_key, &study_id, level).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "reading a study's export secrets failed");
                    return;
                }
            };
        let day_us = |d: jiff::civil::Date| {
            d.to_zoned(jiff::tz::TimeZone::UTC)
                .map(|z| z.timestamp().as_microsecond())
                .unwrap_or(i64::MAX)
        };
        let range_us = (
            day_us(first_day),
            last_day
                .and_then(|d| d.tomorrow().ok())
                .map_or(i64::MAX, day_us),
        );
        let plan = Plan {
            job: job.clone(),
            store: store.clone(),
            open: open.clone(),
            epoch,
            dir: dir.clone(),
            level,
            secrets,
            range_us,
            resolution,
        };
        let outcome = tokio::task::spawn_blocking(move || plan.write()).await;
        let mut record = job.record.clone();
        match outcome {
            Ok(Ok((outputs, disclosure))) => {
                // The owner's audit has the disclosure before the study can
                // fetch a byte of it.
                let audited =
                    crate::audit::record_study_export(&open.writer, disclosure.for_audit()).await;
                if let Err(e) = audited {
                    tracing::warn!(error = %e, "recording an export in the audit failed");
                    remove_dir(&dir);
                    record.status = JobStatus::Failed(
                        "the export could not be recorded in the owner's audit; start a new one"
                            .into(),
                    );
                } else {
                    let now = store.apps().clock.now_us();
                    record.status = JobStatus::Done;
                    record.outputs = outputs;
                    record.expires_us = Some(now + FILE_TTL.as_micros() as i64);
                    record.disclosure = Some(disclosure);
                }
            }
            Ok(Err(Interrupted::Locked)) => {
                remove_dir(&dir);
                job.waiting_for_unlock.store(true, Ordering::Release);
                return;
            }
            Ok(Err(Interrupted::Cancelled)) => {
                remove_dir(&dir);
                return;
            }
            Ok(Err(Interrupted::Failed(message))) => {
                tracing::warn!(error = %message, "an export job failed");
                remove_dir(&dir);
                record.status = JobStatus::Failed("the export failed; start a new one".into());
            }
            Err(_) => {
                remove_dir(&dir);
                record.status = JobStatus::Failed("the export failed; start a new one".into());
            }
        }
        if job.cancelled.load(Ordering::Acquire) {
            remove_dir(&dir);
            return;
        }
        if let Err(e) = save(&**store.storage(), &open.export_key, &record).await {
            tracing::warn!(error = %e, "recording a finished export job failed");
            return;
        }
        let done = Job::new(record);
        done.total
            .store(job.total.load(Ordering::Acquire), Ordering::Release);
        done.written
            .store(job.written.load(Ordering::Acquire), Ordering::Release);
        *done.last_poll.lock() = *job.last_poll.lock();
        let kept = {
            let mut jobs = self.jobs.lock();
            let live =
                jobs.contains_key(&job.record.job_id) && !job.cancelled.load(Ordering::Acquire);
            if live {
                jobs.insert(job.record.job_id.clone(), done);
            }
            live
        };
        if !kept {
            // Deleted or withdrawn while it was being recorded.
            remove_dir(&dir);
            let _ = store.storage().delete_export_job(&job.record.job_id).await;
        }
    }
}

fn remove_dir(dir: &Path) {
    if dir.exists() {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            tracing::warn!(error = %e, "removing an export's files failed");
        }
    }
}

fn file_name(n: usize) -> String {
    format!("{n}.sealed")
}

fn file_aad(job_id: &str, n: usize) -> Vec<u8> {
    format!("hearth/export-file/{job_id}/{n}").into_bytes()
}

fn chunk_aad(file: &[u8], chunk: u64, last: bool) -> Vec<u8> {
    let mut aad = file.to_vec();
    aad.extend_from_slice(&chunk.to_be_bytes());
    aad.push(u8::from(last));
    aad
}

/// Writes an output file as sealed chunks: `[u32 length][sealed chunk]`,
/// each chunk bound to the file, its position, and whether it is the last
/// (so a file cut short does not open).
struct SealedWriter {
    file: std::io::BufWriter<std::fs::File>,
    key: crypto::SecretKey,
    aad: Vec<u8>,
    buffer: Vec<u8>,
    chunk: u64,
    bytes: u64,
    count: u64,
}

impl SealedWriter {
    fn create(dir: &Path, job_id: &str, n: usize, key: &[u8; 32]) -> std::io::Result<SealedWriter> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(dir.join(file_name(n)))?;
        Ok(SealedWriter {
            file: std::io::BufWriter::new(file),
            key: crypto::SecretKey::from(*key),
            aad: file_aad(job_id, n),
            buffer: Vec::with_capacity(CHUNK + 4096),
            chunk: 0,
            bytes: 0,
            count: 0,
        })
    }

    fn line(&mut self, value: &Value) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.buffer, value).map_err(std::io::Error::other)?;
        self.buffer.push(b'\n');
        self.count += 1;
        if self.buffer.len() >= CHUNK {
            self.flush_chunk(false)?;
        }
        Ok(())
    }

    /// A line `write` puts in the buffer itself (with its newline); nothing
    /// is kept when it answers `false`.
    fn raw_line(&mut self, write: impl FnOnce(&mut Vec<u8>) -> bool) -> std::io::Result<bool> {
        let len = self.buffer.len();
        if !write(&mut self.buffer) {
            self.buffer.truncate(len);
            return Ok(false);
        }
        self.count += 1;
        if self.buffer.len() >= CHUNK {
            self.flush_chunk(false)?;
        }
        Ok(true)
    }

    fn flush_chunk(&mut self, last: bool) -> std::io::Result<()> {
        let sealed = crypto::seal(
            &self.key,
            &chunk_aad(&self.aad, self.chunk, last),
            &self.buffer,
        );
        self.bytes += self.buffer.len() as u64;
        zeroize::Zeroize::zeroize(&mut self.buffer);
        self.buffer.clear();
        self.file.write_all(&(sealed.len() as u32).to_be_bytes())?;
        self.file.write_all(&sealed)?;
        self.chunk += 1;
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<(u64, u64)> {
        self.flush_chunk(true)?;
        self.file.flush()?;
        self.file.get_ref().sync_all()?;
        Ok((self.count, self.bytes))
    }
}

/// Opens an output file a chunk at a time.
pub struct SealedReader {
    file: std::fs::File,
    key: crypto::SecretKey,
    aad: Vec<u8>,
    chunk: u64,
}

impl SealedReader {
    /// The next chunk's plaintext; `None` after the last one. A file that
    /// was cut short or altered is an error.
    pub fn next_chunk(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let mut len = [0u8; 4];
        match self.file.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let mut sealed = vec![0u8; u32::from_be_bytes(len) as usize];
        self.file.read_exact(&mut sealed)?;
        for last in [false, true] {
            if let Ok(plain) =
                crypto::open(&self.key, &chunk_aad(&self.aad, self.chunk, last), &sealed)
            {
                self.chunk += 1;
                if last {
                    // Nothing may follow the last chunk.
                    let mut rest = [0u8; 1];
                    if self.file.read(&mut rest)? != 0 {
                        return Err(std::io::Error::other("data after the last chunk"));
                    }
                }
                return Ok(Some(plain.to_vec()));
            }
        }
        Err(std::io::Error::other("an export file does not open"))
    }
}

enum Interrupted {
    Locked,
    Cancelled,
    Failed(String),
}

impl From<std::io::Error> for Interrupted {
    fn from(e: std::io::Error) -> Interrupted {
        Interrupted::Failed(e.to_string())
    }
}

/// One run of a job: everything it needs, owned, for a blocking thread.
struct Plan {
    job: Arc<Job>,
    store: Arc<Store>,
    open: Arc<OpenStore>,
    epoch: u64,
    dir: PathBuf,
    level: DeidentificationLevel,
    secrets: StudySecrets,
    range_us: (i64, i64),
    resolution: Resolution,
}

/// A bucket being summed (or averaged) for an aggregate record.
struct Bucket {
    start_us: i64,
}

impl Plan {
    /// The study as the consent in force now lets it read, or why not.
    fn view(&self) -> Result<View, Interrupted> {
        if self.job.cancelled.load(Ordering::Acquire) {
            return Err(Interrupted::Cancelled);
        }
        if self.store.unlocked_epoch() != Some(self.epoch) {
            return Err(Interrupted::Locked);
        }
        let registry = self.store.apps().read();
        let consent = registry
            .studies()
            .get(&self.job.record.study_id)
            .and_then(|s| s.live_consent())
            .cloned()
            .ok_or(Interrupted::Cancelled)?;
        drop(registry);
        let study = Study {
            study_id: self.job.record.study_id.clone(),
            scopes: self
                .job
                .record
                .resources
                .iter()
                .map(|r| r.scope())
                .collect(),
            consent,
            token_hash: [0; 32],
        };
        Ok(self
            .open
            .view(Caller::Study(Box::new(study)), self.store.apps().clone()))
    }

    /// Whether the page just read came from a projection that was not
    /// wiped meanwhile.
    fn still_open(&self) -> Result<(), Interrupted> {
        if self.store.unlocked_epoch() != Some(self.epoch) {
            return Err(Interrupted::Locked);
        }
        if self.job.cancelled.load(Ordering::Acquire) {
            return Err(Interrupted::Cancelled);
        }
        Ok(())
    }

    fn write(self) -> Result<(Vec<OutputFile>, Disclosure), Interrupted> {
        let record = &self.job.record;
        std::fs::create_dir_all(&self.dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let view = self.view()?;
        let policy = Policy {
            level: self.level,
            secrets: &self.secrets,
            range_start_us: self.range_us.0,
            // The view reads routes only when the owner turned them on.
            routes: catalogue::lookup("workout_route").is_some_and(|t| view.reads(t)),
        };
        let since_seq = record.since_us.map(|s| view.settled_by(s));
        let types = self.types(&view);
        self.job.total.store(
            types
                .iter()
                // Within the consented range only: progress says nothing
                // of what lies outside it.
                .map(|&t| {
                    view.columns(t)
                        .start_range(self.range_us.0, self.range_us.1)
                        .len() as u64
                })
                .sum(),
            Ordering::Release,
        );
        let mut outputs = Vec::new();
        let mut counts: Vec<(String, u64)> = Vec::new();
        let mut first_last: Option<(i64, i64)> = None;
        let mut bytes = 0u64;
        let created = match policy.moment(record.transaction_us) {
            super::deidentify::Moment::Shifted(s) => s,
            super::deidentify::Moment::YearDay { year, .. } => format!("{year:04}"),
        };

        if record.resources.contains(&ResourceKind::Patient) {
            let mut w =
                SealedWriter::create(&self.dir, &record.job_id, outputs.len(), &record.file_key)?;
            let characteristics = view.readable_characteristics();
            if record.format == OutputFormat::Fhir {
                w.line(&resources::patient(
                    &policy,
                    &characteristics,
                    record.transaction_us,
                ))?;
            }
            let (count, b) = w.finish()?;
            if record.format == OutputFormat::Fhir {
                outputs.push(OutputFile {
                    kind: "Patient".into(),
                    count,
                    bytes: b,
                    error: false,
                });
                counts.push(("patient".into(), count));
                bytes += b;
            } else {
                std::fs::remove_file(self.dir.join(file_name(outputs.len())))?;
            }
        }

        let mut left_out: Vec<&'static str> = Vec::new();
        if record.resources.contains(&ResourceKind::Observation) {
            let mut fhir_writer: Option<SealedWriter> = None;
            let mut fhir_count = 0u64;
            let mut members: hashbrown::HashSet<u128> = hashbrown::HashSet::new();
            for &ty in &types {
                let sample_type = catalogue::get(ty);
                let aggregated = self.resolution != Resolution::Samples;
                if aggregated && !sample_type.is_quantity() {
                    left_out.push(sample_type.id);
                    continue;
                }
                if record.format == OutputFormat::OpenMHealth
                    && resources::omh_output_type(sample_type.id).is_none()
                {
                    left_out.push(sample_type.id);
                    continue;
                }
                // One file per Open mHealth schema; one Observation file in all.
                let mut omh_writer = match record.format {
                    OutputFormat::OpenMHealth => Some(SealedWriter::create(
                        &self.dir,
                        &record.job_id,
                        outputs.len(),
                        &record.file_key,
                    )?),
                    OutputFormat::Fhir => {
                        if fhir_writer.is_none() {
                            fhir_writer = Some(SealedWriter::create(
                                &self.dir,
                                &record.job_id,
                                outputs.len(),
                                &record.file_key,
                            )?);
                        }
                        None
                    }
                };
                let mut n_type = 0u64;
                let mut bucket: Option<Bucket> = None;
                let bucket_us = match self.resolution {
                    Resolution::Hourly => HOUR_US,
                    _ => DAY_US,
                };
                let cumulative = sample_type.aggregation() == Some(Aggregation::Cumulative);
                let template = match record.format {
                    OutputFormat::Fhir => resources::QuantityTemplate::new(&policy, sample_type),
                    OutputFormat::OpenMHealth => None,
                };
                let emit = |r: &Record, w: &mut SealedWriter| -> Result<bool, Interrupted> {
                    if let Some(template) = &template {
                        if w.raw_line(|buf| template.write(&policy, r, buf))? {
                            return Ok(true);
                        }
                    }
                    let line = match record.format {
                        OutputFormat::Fhir => resources::observation(&policy, r),
                        OutputFormat::OpenMHealth => {
                            resources::omh_data_point(&policy, r, &created)
                        }
                    };
                    match line {
                        Some(line) => {
                            w.line(&line)?;
                            Ok(true)
                        }
                        None => Ok(false),
                    }
                };
                let mut after = None;
                loop {
                    let view = self.view()?;
                    let (rows, more) = query::page(
                        &view,
                        &SampleQuery {
                            ty,
                            range: self.range_us,
                            sources: None,
                            device: None,
                            after,
                            descending: false,
                            limit: PAGE,
                        },
                    );
                    let mut out_rows: Vec<Record> = Vec::with_capacity(rows.len());
                    for row in &rows {
                        let seq = u64::from(row.seq);
                        let in_cut = seq <= record.head_seq || row.seq == u32::MAX;
                        let new_enough = since_seq.is_none_or(|s| seq > s);
                        if !in_cut || !new_enough || members.remove(&row.id) {
                            continue;
                        }
                        let mut r = Record::of_row(sample_type, row);
                        match &sample_type.kind {
                            Kind::Correlation { .. } => {
                                let Some(panel) = panel(&view, row, &mut members) else {
                                    continue;
                                };
                                r.panel = Some(panel);
                            }
                            Kind::Route => r.workout_id = route_workout(row),
                            _ => {}
                        }
                        out_rows.push(r);
                    }
                    self.still_open()?;
                    let w = omh_writer
                        .as_mut()
                        .or(fhir_writer.as_mut())
                        .ok_or_else(|| Interrupted::Failed("no output file".into()))?;
                    for r in &out_rows {
                        if aggregated {
                            let start = r.start_us.div_euclid(bucket_us) * bucket_us;
                            match &mut bucket {
                                Some(b) if b.start_us == start => {}
                                _ => {
                                    if let Some(b) = bucket.take() {
                                        let figure = merged_figure(
                                            &view, ty, b.start_us, bucket_us, cumulative,
                                        );
                                        if let Some(value) = figure {
                                            n_type += u64::from(emit(
                                                &aggregate(
                                                    sample_type,
                                                    b.start_us,
                                                    bucket_us,
                                                    value,
                                                    cumulative,
                                                ),
                                                w,
                                            )?);
                                        }
                                    }
                                    bucket = Some(Bucket { start_us: start });
                                }
                            }
                        } else if emit(r, w)? {
                            n_type += 1;
                        } else {
                            continue;
                        }
                        first_last = Some(match first_last {
                            None => (r.start_us, r.end_us),
                            Some((f, l)) => (f.min(r.start_us), l.max(r.end_us)),
                        });
                    }
                    self.job
                        .written
                        .fetch_add(rows.len() as u64, Ordering::AcqRel);
                    match (more, rows.last()) {
                        (true, Some(last)) => after = Some((last.start_us, last.id)),
                        _ => break,
                    }
                }
                if let (Some(b), Some(w)) =
                    (bucket.take(), omh_writer.as_mut().or(fhir_writer.as_mut()))
                {
                    let figure =
                        merged_figure(&self.view()?, ty, b.start_us, bucket_us, cumulative);
                    if let Some(value) = figure {
                        n_type += u64::from(emit(
                            &aggregate(sample_type, b.start_us, bucket_us, value, cumulative),
                            w,
                        )?);
                    }
                }
                if n_type > 0 {
                    counts.push((sample_type.id.to_string(), n_type));
                }
                fhir_count += n_type;
                if let Some(w) = omh_writer {
                    let (count, b) = w.finish()?;
                    if count > 0 {
                        outputs.push(OutputFile {
                            kind: resources::omh_output_type(sample_type.id).unwrap_or_default(),
                            count,
                            bytes: b,
                            error: false,
                        });
                        bytes += b;
                    } else {
                        std::fs::remove_file(self.dir.join(file_name(outputs.len())))?;
                    }
                }
            }
            if let Some(w) = fhir_writer {
                let (count, b) = w.finish()?;
                debug_assert_eq!(count, fhir_count);
                if count > 0 {
                    outputs.push(OutputFile {
                        kind: "Observation".into(),
                        count,
                        bytes: b,
                        error: false,
                    });
                    bytes += b;
                } else {
                    std::fs::remove_file(self.dir.join(file_name(outputs.len())))?;
                }
            }
        }
        if !left_out.is_empty() {
            let why = match (self.resolution, record.format) {
                (Resolution::Samples, _) => "these types have no Open mHealth schema",
                _ => "the study receives hourly or daily aggregates, which these types do not have",
            };
            let mut w =
                SealedWriter::create(&self.dir, &record.job_id, outputs.len(), &record.file_key)?;
            w.line(&json!({
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "information", "code": "not-supported",
                    "diagnostics": format!("not exported: {} ({why})", left_out.join(", "))}],
            }))?;
            let (count, b) = w.finish()?;
            outputs.push(OutputFile {
                kind: "OperationOutcome".into(),
                count,
                bytes: b,
                error: true,
            });
        }
        self.still_open()?;
        let mut exported_types: Vec<String> = Vec::new();
        if record.resources.contains(&ResourceKind::Patient) && record.format == OutputFormat::Fhir
        {
            exported_types.push("Patient".into());
        }
        exported_types.extend(
            counts
                .iter()
                .filter(|(t, _)| t != "patient")
                .map(|(t, _)| t.clone()),
        );
        let disclosure = Disclosure {
            study_id: record.study_id.clone(),
            job_id: record.job_id.clone(),
            types: exported_types,
            counts,
            date_range: first_last.map(|(f, l)| (rfc3339(f), rfc3339(l))),
            bytes,
            at: rfc3339(self.store.apps().clock.now_us()),
        };
        Ok((outputs, disclosure))
    }

    /// The sample types the study reads now, correlations first (their
    /// members are then skipped where they come again on their own).
    fn types(&self, view: &View) -> Vec<TypeIndex> {
        let all = || (0..catalogue::all().len()).map(|i| TypeIndex(i as u16));
        let consented = |t: &TypeIndex| {
            let ty = catalogue::get(*t);
            !ty.is_characteristic()
                && view.reads(*t)
                && match view.caller() {
                    Caller::Study(s) => s.consent.types.iter().any(|c| c == ty.id),
                    _ => false,
                }
        };
        let is_corr = |t: &TypeIndex| catalogue::get(*t).members().is_some();
        all()
            .filter(|t| is_corr(t) && consented(t))
            .chain(all().filter(|t| !is_corr(t) && consented(t)))
            .collect()
    }
}

/// A bucket's figure as statistics answer it: overlapping samples of
/// several sources counted once, by the owner's source priority, not
/// summed across sources (a watch and a phone counting the same steps).
fn merged_figure(
    view: &View,
    ty: TypeIndex,
    start_us: i64,
    bucket_us: i64,
    cumulative: bool,
) -> Option<f64> {
    let interval = if bucket_us == HOUR_US { "1h" } else { "1d" };
    let interval = crate::query::buckets::Interval::parse(interval).ok()?;
    let anchor = jiff::Timestamp::from_microsecond(start_us)
        .ok()?
        .to_zoned(jiff::tz::TimeZone::UTC);
    let answer = crate::query::buckets::run(
        view,
        &crate::query::buckets::BucketRequest {
            ty,
            start_us,
            end_us: start_us + bucket_us,
            interval: &interval,
            anchor: &anchor,
            sources: None,
            by_source: false,
        },
    )
    .ok()?;
    let figures = answer.series.first()?.buckets.first()?;
    if cumulative {
        (figures.count > 0 || figures.sum != 0.0).then_some(figures.sum)
    } else {
        figures.avg
    }
}

fn aggregate(
    ty: &'static catalogue::SampleType,
    start_us: i64,
    bucket_us: i64,
    value: f64,
    cumulative: bool,
) -> Record<'static> {
    let mut key = [0u8; 24];
    key[..2].copy_from_slice(&(catalogue::lookup(ty.id).map_or(0, |t| t.0)).to_be_bytes());
    key[8..16].copy_from_slice(&start_us.to_be_bytes());
    key[16..24].copy_from_slice(&bucket_us.to_be_bytes());
    Record {
        ty,
        key,
        start_us,
        end_us: start_us + bucket_us,
        value,
        metadata: None,
        panel: None,
        workout_id: None,
        aggregate: Some(if cumulative { "sum" } else { "average" }),
    }
}

/// A blood pressure correlation's (systolic, diastolic), read through the
/// view; its members are noted so they do not come again on their own.
fn panel(
    view: &View,
    row: &crate::projection::Row,
    members: &mut hashbrown::HashSet<u128>,
) -> Option<(f64, f64)> {
    let meta: serde_json::Map<String, Value> =
        serde_json::from_str(row.metadata.as_deref()?).ok()?;
    let ids = meta.get("hearth:members")?.as_str()?;
    let (mut systolic, mut diastolic) = (None, None);
    for id in ids.split(',').filter_map(|s| uuid::Uuid::parse_str(s).ok()) {
        let Some((ty, member)) = view.find(id.as_u128()) else {
            continue;
        };
        members.insert(member.id);
        match catalogue::get(ty).id {
            "blood_pressure_systolic" => systolic = Some(member.value),
            "blood_pressure_diastolic" => diastolic = Some(member.value),
            _ => {}
        }
    }
    Some((systolic?, diastolic?))
}

fn route_workout(row: &crate::projection::Row) -> Option<u128> {
    let meta: serde_json::Map<String, Value> =
        serde_json::from_str(row.metadata.as_deref()?).ok()?;
    uuid::Uuid::parse_str(meta.get("hearth:workout")?.as_str()?)
        .ok()
        .map(|u| u.as_u128())
}

/// The manifest of a finished job (Bulk Data v2; `request` and `error`
/// kept for v2 clients, `outcome`-less).
pub fn manifest(record: &JobRecord, base: &str) -> Value {
    let file = |n: usize, o: &OutputFile| {
        json!({
            "type": o.kind,
            "url": format!("{base}/fhir/bulk-files/{}/{n}", record.job_id),
            "count": o.count,
        })
    };
    let output: Vec<Value> = record
        .outputs
        .iter()
        .enumerate()
        .filter(|(_, o)| !o.error)
        .map(|(n, o)| file(n, o))
        .collect();
    let error: Vec<Value> = record
        .outputs
        .iter()
        .enumerate()
        .filter(|(_, o)| o.error)
        .map(|(n, o)| file(n, o))
        .collect();
    json!({
        "transactionTime": rfc3339_precise(record.transaction_us),
        "request": record.request,
        "requiresAccessToken": true,
        "output": output,
        "deleted": [],
        "error": error,
    })
}

/// An instant with its microseconds, so `_since` can resume exactly.
pub fn rfc3339_precise(us: i64) -> String {
    jiff::Timestamp::from_microsecond(us)
        .map(|t| t.to_string())
        .unwrap_or_default()
}
