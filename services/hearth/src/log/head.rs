//! Catching rollback and truncation: the authenticated head and the
//! high-water mark.
//!
//! The hash chain proves the records agree with each other, not that none
//! were cut from the end or that the whole database is not an older copy.
//! Two things close that gap:
//!
//! - The **head** row (sequence number and hash of the last record) carries
//!   a MAC under a key derived from the root key, written in the same
//!   transaction as every append. Cutting the tail means rewriting the head,
//!   which cannot be done without the key.
//! - A **high-water mark** (the same head, MAC'd under another label) is
//!   kept outside the database in a state file, rewritten durably after
//!   commits. An older copy of the database carries an authentic head of its
//!   own, but one behind the mark.
//!
//! Unlock and `hearth verify` refuse a log that is behind its mark or whose
//! head fails authentication, naming the sequence numbers, until the owner
//! accepts the restore (`hearth restore --accept-rollback`), which logs it.
//!
//! What the mark cannot catch: a rollback of the database *and* the state
//! file together (keep the file elsewhere, `HEARTH_STATE_FILE`, to make that
//! harder), and the commits that land between the last mark written and a
//! crash (the mark trails the head by at most the commits in flight).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::chain::{Hash, LogHead, LogRecord, GENESIS};
use super::event::{Envelope, Event, SealBuffers};
use crate::crypto::{DataKey, SecretKey, STORE_ID_LEN};
use crate::storage::{Storage, StorageError};

pub type HeadMac = [u8; 32];

/// Label of the key that authenticates heads and marks.
const HEAD_MAC_LABEL: &[u8] = b"hearth/head-mac/v1";
/// File name of the state file in the data directory.
pub const STATE_FILE_NAME: &str = "hearth.state";
const STATE_FILE_MAGIC: &str = "hearth-state v1";

/// Computes and checks head and mark MACs for one store. Holds a derived
/// key (zeroised on drop), never the root key.
#[derive(Clone)]
pub struct HeadAuthenticator {
    key: SecretKey,
    store_id: [u8; STORE_ID_LEN],
}

impl HeadAuthenticator {
    pub fn new(root: &DataKey) -> HeadAuthenticator {
        HeadAuthenticator {
            key: root.derive(HEAD_MAC_LABEL),
            store_id: root.store_id,
        }
    }

    fn mac(&self, domain: &[u8], head: LogHead) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key.as_ref())
            .expect("HMAC takes keys of any length");
        mac.update(domain);
        mac.update(&self.store_id);
        mac.update(&head.seq.to_be_bytes());
        mac.update(&head.hash);
        mac
    }

    /// The MAC stored beside the head in the database.
    pub fn head_mac(&self, head: LogHead) -> HeadMac {
        self.mac(b"head", head).finalize().into_bytes().into()
    }

    /// Whether `mac` authenticates `head` (constant time).
    pub fn head_is_authentic(&self, head: LogHead, mac: &HeadMac) -> bool {
        self.mac(b"head", head).verify_slice(mac).is_ok()
    }

    /// Which store a state file belongs to, without revealing the store id.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"hearth/store-fingerprint/v1");
        h.update(self.store_id);
        h.finalize().into()
    }

    /// The high-water mark for `head`.
    pub fn mark(&self, head: LogHead) -> Mark {
        Mark {
            store: self.fingerprint(),
            head,
            mac: self.mac(b"mark", head).finalize().into_bytes().into(),
        }
    }

    fn mark_is_authentic(&self, mark: &Mark) -> bool {
        self.mac(b"mark", mark.head).verify_slice(&mark.mac).is_ok()
    }
}

/// The furthest head this store is known to have reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    /// [`HeadAuthenticator::fingerprint`] of the store it belongs to.
    pub store: [u8; 32],
    pub head: LogHead,
    pub mac: HeadMac,
}

impl Mark {
    fn encode(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{STATE_FILE_MAGIC}");
        let _ = writeln!(s, "store {}", hex::encode(self.store));
        let _ = writeln!(s, "seq {}", self.head.seq);
        let _ = writeln!(s, "hash {}", hex::encode(self.head.hash));
        let _ = writeln!(s, "mac {}", hex::encode(self.mac));
        s
    }

    fn decode(text: &str) -> Option<Mark> {
        let mut lines = text.lines();
        if lines.next()? != STATE_FILE_MAGIC {
            return None;
        }
        let mut field = |name: &str| -> Option<String> {
            let line = lines.next()?;
            let (key, value) = line.split_once(' ')?;
            (key == name).then(|| value.to_string())
        };
        let hex32 = |v: String| -> Option<[u8; 32]> { hex::decode(v).ok()?.try_into().ok() };
        let store = hex32(field("store")?)?;
        let seq = field("seq")?.parse().ok()?;
        let hash = hex32(field("hash")?)?;
        let mac = hex32(field("mac")?)?;
        Some(Mark {
            store,
            head: LogHead { seq, hash },
            mac,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("reading the state file {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("the state file {0} is not a Hearth state file")]
    Malformed(PathBuf),
}

/// The file that holds the high-water mark, outside the database.
#[derive(Clone, Debug)]
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(path: impl Into<PathBuf>) -> StateFile {
        StateFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The mark, or `None` if there is no state file yet.
    pub fn read(&self) -> Result<Option<Mark>, StateFileError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => Mark::decode(&text)
                .map(Some)
                .ok_or_else(|| StateFileError::Malformed(self.path.clone())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(StateFileError::Io {
                path: self.path.clone(),
                error,
            }),
        }
    }

    /// Replaces the mark durably: a temporary file (mode 600) is written and
    /// synced, renamed over the old one, and the directory synced, so a
    /// crash leaves either the old mark or the new one.
    pub fn write(&self, mark: &Mark) -> std::io::Result<()> {
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| STATE_FILE_NAME.into());
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(mark.encode().as_bytes())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &self.path)?;
        std::fs::File::open(&dir)?.sync_all()
    }
}

/// Why a log is refused: it is behind its mark, or its head is not authentic.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeadFault {
    #[error(
        "rollback detected: the log ends at record {head} but this store already reached \
         record {mark} (records {first_missing} to {mark} are missing); if you restored an \
         older copy on purpose, run `hearth restore --accept-rollback`",
        first_missing = head + 1
    )]
    BehindMark { head: u64, mark: u64 },
    #[error(
        "rollback detected: record {seq} is not the record this store wrote there (the log \
         was replaced by another history); if you restored an older copy on purpose, run \
         `hearth restore --accept-rollback`"
    )]
    Diverged { seq: u64 },
    #[error(
        "rollback detected: the head (record {seq}) fails authentication: the log was cut \
         or its head rewritten; if you restored an older copy on purpose, run \
         `hearth restore --accept-rollback`"
    )]
    HeadUnauthenticated { seq: u64 },
    #[error(
        "the state file {path} belongs to another store; point HEARTH_STATE_FILE at this \
         store's file, or move that one away"
    )]
    ForeignStateFile { path: String },
    #[error("the state file {path} fails authentication: it was edited")]
    MarkUnauthenticated { path: String },
}

impl HeadFault {
    /// The first sequence number at which the log differs from what this
    /// store wrote, when known.
    pub fn seq(&self) -> Option<u64> {
        match self {
            HeadFault::BehindMark { head, .. } => Some(head + 1),
            HeadFault::Diverged { seq } | HeadFault::HeadUnauthenticated { seq } => Some(*seq),
            HeadFault::ForeignStateFile { .. } | HeadFault::MarkUnauthenticated { .. } => None,
        }
    }

    /// Whether `hearth restore --accept-rollback` may accept it.
    pub fn is_acceptable_restore(&self) -> bool {
        matches!(
            self,
            HeadFault::BehindMark { .. }
                | HeadFault::Diverged { .. }
                | HeadFault::HeadUnauthenticated { .. }
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HeadCheckError {
    #[error(transparent)]
    Fault(#[from] HeadFault),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    StateFile(#[from] StateFileError),
}

/// What a head check found besides faults, for the operator's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadFinding {
    /// Head authentic and not behind the mark.
    Consistent,
    /// No state file yet: fine for a new store, worth a warning otherwise.
    NoMark,
    /// A head written before heads were authenticated, on a store without a
    /// mark: accepted once (and authenticated from now on).
    LegacyHead,
}

/// The head as stored, checked against its MAC (with a key) and the mark.
/// Writes nothing. Without a key only the mark's position and hash are
/// compared (neither MAC can be checked).
pub async fn check(
    storage: &dyn Storage,
    auth: Option<&HeadAuthenticator>,
    mark: Option<&Mark>,
    state_path: &Path,
) -> Result<(LogHead, HeadFinding), HeadCheckError> {
    let (head, mac) = storage.authenticated_head().await?;
    let path = state_path.display().to_string();
    if let (Some(auth), Some(mark)) = (auth, mark) {
        if mark.store != auth.fingerprint() {
            return Err(HeadFault::ForeignStateFile { path }.into());
        }
        if !auth.mark_is_authentic(mark) {
            return Err(HeadFault::MarkUnauthenticated { path }.into());
        }
    }
    let mut finding = HeadFinding::Consistent;
    if let Some(auth) = auth {
        match mac {
            Some(mac) if auth.head_is_authentic(head, &mac) => {}
            // An empty log of a store from before authenticated heads.
            None if head.seq == 0 => {}
            // A store with a mark was written by a version that
            // authenticates heads: a missing MAC was removed.
            None if mark.is_none() => finding = HeadFinding::LegacyHead,
            _ => return Err(HeadFault::HeadUnauthenticated { seq: head.seq }.into()),
        }
    }
    let Some(mark) = mark else {
        if finding == HeadFinding::Consistent {
            finding = HeadFinding::NoMark;
        }
        return Ok((head, finding));
    };
    if mark.head.seq > head.seq {
        return Err(HeadFault::BehindMark {
            head: head.seq,
            mark: mark.head.seq,
        }
        .into());
    }
    let hash_there = hash_at(storage, mark.head.seq, head).await?;
    if hash_there != Some(mark.head.hash) {
        return Err(HeadFault::Diverged { seq: mark.head.seq }.into());
    }
    Ok((head, finding))
}

/// The hash of record `seq` (the genesis hash for 0).
async fn hash_at(
    storage: &dyn Storage,
    seq: u64,
    head: LogHead,
) -> Result<Option<Hash>, StorageError> {
    if seq == 0 {
        return Ok(Some(GENESIS));
    }
    if seq == head.seq {
        return Ok(Some(head.hash));
    }
    let records = storage.records_after(seq - 1, 1).await?;
    Ok(records.first().filter(|r| r.seq == seq).map(|r| r.hash))
}

/// The check at unlock: refuses on a fault; creates the state file if there
/// is none (warning when the store is not new: a missing file cannot tell a
/// rollback from a first start); authenticates a legacy head once.
pub async fn check_at_unlock(
    storage: &dyn Storage,
    auth: &HeadAuthenticator,
    state: &StateFile,
) -> Result<LogHead, HeadCheckError> {
    let mark = state.read()?;
    let (head, finding) = check(storage, Some(auth), mark.as_ref(), state.path()).await?;
    match finding {
        HeadFinding::Consistent => {}
        HeadFinding::LegacyHead => {
            tracing::warn!(
                seq = head.seq,
                "the log head was written before heads were authenticated; authenticating it now"
            );
            storage.set_head_mac(head, &auth.head_mac(head)).await?;
        }
        HeadFinding::NoMark if head.seq == 0 => {
            tracing::info!(path = %state.path().display(), "creating the state file");
        }
        HeadFinding::NoMark => {
            tracing::warn!(
                path = %state.path().display(),
                seq = head.seq,
                "the state file is missing: a rollback of the database to an older copy \
                 before now cannot be detected; recreating it at the current head"
            );
        }
    }
    if mark.is_none_or(|m| m.head != head) {
        write_mark(state, auth.mark(head)).await?;
    }
    Ok(head)
}

async fn write_mark(state: &StateFile, mark: Mark) -> Result<(), StateFileError> {
    let file = state.clone();
    tokio::task::spawn_blocking(move || file.write(&mark))
        .await
        .expect("state file task")
        .map_err(|error| StateFileError::Io {
            path: state.path().to_path_buf(),
            error,
        })
}

/// Keeps the state file's mark up with the writer's commits, off the
/// commit path: the writer hands over each new head and goes on; one
/// write at a time, each taking the newest head (a burst of commits costs
/// one file write per write time, not one per commit).
pub struct MarkKeeper {
    heads: watch::Sender<LogHead>,
    task: tokio::task::JoinHandle<()>,
}

impl MarkKeeper {
    pub fn spawn(auth: HeadAuthenticator, state: StateFile, head: LogHead) -> MarkKeeper {
        let (heads, mut rx) = watch::channel(head);
        let task = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let head = *rx.borrow_and_update();
                if let Err(e) = write_mark(&state, auth.mark(head)).await {
                    tracing::error!(error = %e, "writing the high-water mark failed");
                }
            }
        });
        MarkKeeper { heads, task }
    }

    /// The log now ends at `head` (committed).
    pub fn advance(&self, head: LogHead) {
        let _ = self.heads.send(head);
    }

    /// Writes the last head handed over, then stops.
    pub async fn finish(self) {
        drop(self.heads);
        let _ = self.task.await;
    }
}

/// What `hearth restore --accept-rollback` did.
#[derive(Debug)]
pub struct AcceptedRestore {
    /// The mark the log was behind (or diverged from).
    pub mark_seq: u64,
    /// Where the restored log ended.
    pub restored_seq: u64,
    /// The record that logs the acceptance.
    pub event_seq: u64,
}

/// The owner accepts the log as it is: appends a `RestoreAccepted` event
/// naming where the mark was and where the log ended, authenticates the new
/// head and moves the mark there. The caller has checked the whole log
/// (chain and every record) with `key`.
pub async fn accept_restore(
    storage: &dyn Storage,
    key: &DataKey,
    state: &StateFile,
    at_us: i64,
) -> Result<AcceptedRestore, HeadCheckError> {
    let auth = HeadAuthenticator::new(key);
    let (head, _) = storage.authenticated_head().await?;
    let mark_seq = state.read()?.map_or(head.seq, |m| m.head.seq);
    let envelope = Envelope {
        at_us,
        event: Event::RestoreAccepted {
            mark_seq,
            restored_seq: head.seq,
        },
    };
    let seq = head.seq + 1;
    let body = envelope.seal(&key.key, &key.record_aad(seq), &mut SealBuffers::default());
    let record = LogRecord::new(seq, key.key_id, head.hash, body);
    let new_head = LogHead {
        seq,
        hash: record.hash,
    };
    storage
        .append(head, &[record], &auth.head_mac(new_head), &[])
        .await?;
    write_mark(state, auth.mark(new_head)).await?;
    Ok(AcceptedRestore {
        mark_seq,
        restored_seq: head.seq,
        event_seq: seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(seq: u64) -> LogHead {
        LogHead {
            seq,
            hash: [seq as u8; 32],
        }
    }

    #[test]
    fn head_mac_binds_store_sequence_and_hash() {
        let key = DataKey::generate();
        let auth = HeadAuthenticator::new(&key);
        let mac = auth.head_mac(head(5));
        assert!(auth.head_is_authentic(head(5), &mac));
        assert!(!auth.head_is_authentic(head(4), &mac));
        let other = HeadAuthenticator::new(&DataKey::generate());
        assert!(!other.head_is_authentic(head(5), &mac));
        // A mark's MAC is not a head's, and the other way round.
        let mark = auth.mark(head(5));
        assert!(!auth.head_is_authentic(head(5), &mark.mac));
        assert!(auth.mark_is_authentic(&mark));
    }

    #[test]
    fn state_file_round_trips_with_owner_only_mode() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join(STATE_FILE_NAME));
        assert_eq!(file.read().unwrap(), None);
        let auth = HeadAuthenticator::new(&DataKey::generate());
        let mark = auth.mark(head(9));
        file.write(&mark).unwrap();
        assert_eq!(file.read().unwrap(), Some(mark));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(file.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(file.path(), "something else\n").unwrap();
        assert!(matches!(file.read(), Err(StateFileError::Malformed(_))));
    }
}
