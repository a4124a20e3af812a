//! Sealed snapshots of the projection and the app registry, so that unlock
//! replays only the records written since the newest one.
//!
//! A snapshot is the state after one log record: the live rows of every
//! type (as little-endian columns), the sources with their devices, sync
//! identifiers, deletions, correlations, the source priority, the
//! characteristics, the registry, and that record's sequence number and
//! chain hash, and what the log up to that record says about data keys
//! (the keys erasures destroyed, the highest key id named, records per key,
//! the last erasure). It is split into chunks, each sealed with
//! AES-256-GCM-SIV under a key derived from the root key
//! (`hearth/snapshot/v1`), with
//! additional data binding the store id, the record's sequence number and
//! hash, the key id, the chunk's place and whether it is the last: a chunk
//! cannot be moved to another snapshot, position or store, and a snapshot
//! cannot be cut short. Each chunk is sealed as soon as it is written and
//! waits in an unnamed temporary file until the snapshot is stored, so
//! taking a snapshot holds two chunks in memory, whatever the store's
//! size.
//!
//! Snapshots are taken in the background every so many records, at lock and
//! at shutdown; the newest two are kept. Unlock opens the newest one whose
//! record still stands in the log with the same hash, then checks the chain
//! from that record to the head and replays the records after it; a snapshot
//! that fails to open or to match is skipped (and logged), down to a full
//! replay. So unlock from a snapshot checks the chain over the tail only:
//! `hearth verify` checks the whole log.
//!
//! A snapshot holds whatever the projection held when it was taken, data
//! since erased included: erasure discards every snapshot
//! ([`Snapshots::discard_all_and_retake`]), and an unlock whose replay
//! meets an erasure after the snapshot it started from (the process
//! stopped in between) discards the snapshots older than that erasure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use tokio::sync::watch;
use zeroize::Zeroizing;

use super::columns::{ByteSink, ColumnData, ENCODED_ROW_BYTES};
use super::derived_ids::{DerivedId, IdDeriver, SourceDigest};
use super::sync_ids::TagsById;
use super::TypeColumns;
use super::{Deletion, Note, Projection, ProjectionBuilder, SyncTag};
use crate::apps::{Apps, Registry, RegistryState};
use crate::audit::{AuditIndex, AuditState};
use crate::catalogue::{self, TypeIndex};
use crate::crypto::{self, DataKey, SecretKey, STORE_ID_LEN};
use crate::log::chain::{record_hash, LogHead};
use crate::log::event::{Device, SourceKey};
use crate::log::replay::Walked;
use crate::storage::{SealedChunks, SnapshotHeader, Storage, StorageError};

/// The label the snapshot key is derived under.
pub const KEY_LABEL: &[u8] = b"hearth/snapshot/v1";
/// 6: a row's device cell is packed whole, with the mark of an id derived
/// from its sync identifier (see [`super::derived_ids`]) and the bits that
/// give it back, so those identifiers are not listed: the root key gives
/// them back from the rows; 5 lists them with the other sync tags and
/// packs device slots alone. From 5 on each type's columns are packed (see
/// [`super::packed`]), their lengths listed with the type; 4 has them as
/// fixed-width little-endian values. In 4 and later each type's distinct
/// metadata texts are listed once, and its rows carry a number into that
/// list (see [`TypeColumns::encode_packed`]); 3 lists each row's metadata
/// by sample id; in 3 and later the types pinned to the summary follow the
/// audit as a section of their own (see [`capture`]); 2, from before pins,
/// opens with none, and 1, from before the audit existed, with an empty
/// audit too.
///
/// [`TypeColumns::encode_packed`]: super::TypeColumns::encode_packed
const FORMAT_VERSION: u8 = 6;
const FORMAT_SPELLED_TAGS: u8 = 5;
const FORMAT_FIXED_WIDTH: u8 = 4;
const FORMAT_METADATA_BY_ID: u8 = 3;
const FORMAT_WITHOUT_PINS: u8 = 2;
const FORMAT_WITHOUT_AUDIT: u8 = 1;
/// Plaintext bytes per sealed chunk: no row holds hundreds of megabytes.
const CHUNK_BYTES: usize = 8 << 20;
/// Snapshots kept: the newest, and the one before in case it fails to open.
const KEEP: usize = 2;
/// Chunks asked for at once when opening a snapshot: more than the
/// storage's pool has connections (4), so that a connection that is done
/// finds the next chunk waiting rather than sitting idle behind a slower one.
const READING: usize = 8;
/// Chunks read and not yet opened, at most: bounds the ciphertext held
/// while a snapshot is opened (with those being read, 16 chunks, 128 MiB).
const WAITING: usize = 8;
/// Records between background snapshots unless configured otherwise.
pub const DEFAULT_EVERY: u64 = 100_000;
/// How often the background task looks at the head when no sample changes
/// (registry records send no note).
const TICK: Duration = Duration::from_secs(10);

/// The key snapshots are sealed under, with what their additional data binds.
#[derive(Clone)]
pub struct SnapshotKey {
    key: SecretKey,
    /// What imported samples' ids are derived with (see
    /// [`super::derived_ids`]), to mark the rows that hold theirs.
    ids_key: SecretKey,
    key_id: u32,
    store_id: [u8; STORE_ID_LEN],
}

impl SnapshotKey {
    /// Derived from the root key: snapshots span every data key.
    pub fn new(root: &DataKey) -> SnapshotKey {
        SnapshotKey {
            key: root.derive(KEY_LABEL),
            ids_key: root.derive(super::derived_ids::KEY_LABEL),
            key_id: root.key_id,
            store_id: root.store_id,
        }
    }

    /// What chunk `chunk` of the snapshot at `at` is sealed with; `last`
    /// marks the snapshot's last chunk.
    fn aad(&self, at: LogHead, chunk: u32, last: bool) -> Vec<u8> {
        let mut aad = self.aad_start(b"hearth-snapshot-v2", at, chunk);
        aad.push(u8::from(last));
        aad
    }

    /// What chunks were sealed with while snapshots were sealed whole in
    /// memory: the number of chunks in place of the last one's mark.
    fn aad_counted(&self, at: LogHead, chunk: u32, chunks: u32) -> Vec<u8> {
        let mut aad = self.aad_start(b"hearth-snapshot-v1", at, chunk);
        aad.extend_from_slice(&chunks.to_be_bytes());
        aad
    }

    fn aad_start(&self, label: &[u8], at: LogHead, chunk: u32) -> Vec<u8> {
        let mut aad = Vec::with_capacity(label.len() + STORE_ID_LEN + 8 + 32 + 12);
        aad.extend_from_slice(label);
        aad.extend_from_slice(&self.store_id);
        aad.extend_from_slice(&at.seq.to_be_bytes());
        aad.extend_from_slice(&at.hash);
        aad.extend_from_slice(&self.key_id.to_be_bytes());
        aad.extend_from_slice(&chunk.to_be_bytes());
        aad
    }
}

/// Everything but the rows, encoded with postcard after them; `C` is how
/// each type's rows are described ([`TypePacked`] from version 5 on,
/// [`TypeTexts`] in 4, [`TypeMeta`] before). Written as [`MetaOut`]: the
/// same encoding, with the parts that grow with the samples borrowed from
/// the projection.
#[derive(Serialize, Deserialize)]
struct Meta<C = TypePacked, S = Vec<(u128, String, i64, u16, u32)>> {
    taken_us: i64,
    /// The last record applied to the projection (registry records aside).
    applied_seq: u64,
    /// The types the snapshot names, by id: indices below refer to these.
    type_ids: Vec<String>,
    columns: Vec<C>,
    /// Sources in id order, each with its devices in slot order.
    sources: Vec<(String, Vec<Device>)>,
    /// (sample id, sync id, version, type, source): see [`SyncTagsOut`].
    sync_tags: S,
    /// (seq, sample id, type, source), per type in log order.
    deletions: Vec<(u64, u128, u16, u32)>,
    /// Correlation id and member types, by id.
    correlations: Vec<(u128, Vec<u16>)>,
    priority: (u64, Vec<SourceKey>),
    characteristics: Vec<(String, String)>,
    registry: RegistryState,
    keys: KeyState,
}

/// What the log up to the snapshot's record says about data keys: a
/// [`Walked`] in a fixed order.
#[derive(Serialize, Deserialize)]
struct KeyState {
    erased: u64,
    destroyed: Vec<u32>,
    highest_key_id: u32,
    last_erasure: u64,
    per_key: Vec<(u32, u64)>,
}

impl KeyState {
    fn of(walked: &Walked) -> KeyState {
        let mut per_key: Vec<(u32, u64)> = walked.per_key.iter().map(|(&k, &n)| (k, n)).collect();
        per_key.sort_unstable();
        KeyState {
            erased: walked.erased,
            destroyed: walked.destroyed.clone(),
            highest_key_id: walked.highest_key_id,
            last_erasure: walked.last_erasure,
            per_key,
        }
    }

    fn into_walked(self, records: u64) -> Walked {
        Walked {
            records,
            erased: self.erased,
            destroyed: self.destroyed,
            highest_key_id: self.highest_key_id,
            last_erasure: self.last_erasure,
            per_key: self.per_key.into_iter().collect(),
        }
    }
}

/// One type's rows: how many (their columns lie in the row section, in
/// this order) and the metadata of those that have some (before version 4).
#[derive(Serialize, Deserialize)]
struct TypeMeta {
    ty: u16,
    rows: u64,
    metadata: Vec<(u128, String)>,
}

/// One type's rows: how many (their columns lie in the row section, in
/// this order, followed by a number into `texts` per row when `texts` is
/// not empty) and their distinct metadata texts.
#[derive(Serialize, Deserialize)]
struct TypeTexts {
    ty: u16,
    rows: u64,
    texts: Vec<String>,
}

/// One type's packed rows: how many, each column's length in bytes (the
/// columns lie in the row section, in this order), and their distinct
/// metadata texts.
#[derive(Serialize, Deserialize)]
struct TypePacked {
    ty: u16,
    rows: u64,
    lengths: Vec<u64>,
    texts: Vec<String>,
}

/// One type's rows as any form describes them.
enum TypeRows {
    Packed(TypePacked),
    Texts(TypeTexts),
    ById(TypeMeta),
}

impl<C, S> Meta<C, S> {
    fn map_columns<D>(self, f: impl FnMut(C) -> D) -> Meta<D, S> {
        Meta {
            taken_us: self.taken_us,
            applied_seq: self.applied_seq,
            type_ids: self.type_ids,
            columns: self.columns.into_iter().map(f).collect(),
            sources: self.sources,
            sync_tags: self.sync_tags,
            deletions: self.deletions,
            correlations: self.correlations,
            priority: self.priority,
            characteristics: self.characteristics,
            registry: self.registry,
            keys: self.keys,
        }
    }
}

/// [`Meta`] as it is written.
type MetaOut<'a> = Meta<TypePackedOut<'a>, SyncTagsOut<'a>>;

/// Every sync tag a snapshot lists: the records' by sample id, and in
/// version 5 (`spelled`) then those of the rows whose ids are derived from
/// their identifiers (from version 6 the rows carry their marks).
struct SyncTagsOut<'a> {
    records: TagsById<'a>,
    spelled: Option<SpelledTags<'a>>,
}

/// What version 5 spells derived ids' identifiers from (see
/// [`super::derived_ids`]): spelled out as records' are, type by type in
/// row order, as the rows come, so opening marks each row without an
/// index.
struct SpelledTags<'a> {
    derived: Vec<(TypeIndex, &'a TypeColumns)>,
    deriver: &'a IdDeriver,
    sources: &'a [SourceDigest],
}

impl SpelledTags<'_> {
    /// Each live row whose id is derived: its type, columns, row and
    /// source's digest.
    fn derived_rows(
        &self,
    ) -> impl Iterator<Item = (TypeIndex, &TypeColumns, usize, &SourceDigest)> + '_ {
        self.derived.iter().flat_map(move |&(ty, cols)| {
            cols.derived_rows().filter_map(move |r| {
                let source = self.sources.get(cols.source_of(r) as usize)?;
                Some((ty, cols, r, source))
            })
        })
    }
}

impl Serialize for SyncTagsOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let Some(tags) = &self.spelled else {
            return self.records.serialize(s);
        };
        let count = tags.derived_rows().count();
        let mut seq = s.serialize_seq(Some(self.records.len() + count))?;
        self.records.serialize_each(&mut seq)?;
        let mut spelled = Zeroizing::new([0u8; super::derived_ids::SPELLED_LEN]);
        for (ty, cols, r, source_digest) in tags.derived_rows() {
            let (id, source) = (cols.id_of(r), cols.source_of(r));
            let kept = cols.derived_of(r).unwrap_or_default();
            let digest = tags
                .deriver
                .digest(source_digest, ty, DerivedId { id, kept });
            let sync_id = IdDeriver::spell_into(&digest, &mut spelled);
            seq.serialize_element(&(id, sync_id, 0i64, ty.0, source))?;
        }
        seq.end()
    }
}

/// [`TypePacked`] as it is written.
#[derive(Serialize)]
struct TypePackedOut<'a> {
    ty: u16,
    rows: u64,
    lengths: Vec<u64>,
    texts: Vec<&'a str>,
}

/// A chunk handed to the sealer: its additional data, then
/// [`crypto::NONCE_LEN`] bytes of room and its plaintext.
type Handed = (Vec<u8>, Zeroizing<Vec<u8>>);

/// Takes a snapshot: `write` writes it into the [`Spill`] it is given a
/// maker of (for the record it names), while a second thread seals each
/// chunk as it fills and writes it to an unnamed temporary file. So memory
/// holds two chunks of a snapshot, never all of it (which grows with the
/// store), and whoever waits for the writing does not wait for sealing.
fn spill<'k>(
    key: &'k SnapshotKey,
    write: impl FnOnce(&dyn Fn(LogHead) -> Spill<'k>) -> Spill<'k>,
) -> std::io::Result<(SnapshotHeader, Spilled)> {
    let file = tempfile::tempfile()?;
    std::thread::scope(|scope| {
        // Handed over as the sealer takes it: two chunks in memory at most,
        // the one being written and the one being sealed.
        let (hand, handed) = std::sync::mpsc::sync_channel::<Handed>(0);
        let spare = Spare::default();
        let sealer = std::thread::Builder::new()
            .name("snapshot-sealer".into())
            .spawn_scoped(scope, {
                let spare = spare.clone();
                move || seal_into(key, handed, file, &spare)
            })?;
        let header = write(&|at| Spill::new(key, at, hand.clone(), spare.clone())).finish();
        drop(hand);
        let spilled = sealer
            .join()
            .map_err(|_| std::io::Error::other("the sealing thread failed"))??;
        Ok((header, spilled))
    })
}

/// A sealed chunk's buffer, written out and handed back for the next chunk
/// to be written into: the two buffers a snapshot needs are used in turn
/// rather than one made for every chunk, so what the process holds while
/// sealing does not depend on how soon the allocator takes freed ones back.
/// It holds ciphertext only: sealing overwrote the plaintext where it lay.
type Spare = Arc<parking_lot::Mutex<Option<Vec<u8>>>>;

/// Seals each chunk handed over where it lies and appends it to `file`.
fn seal_into(
    key: &SnapshotKey,
    handed: std::sync::mpsc::Receiver<Handed>,
    mut file: std::fs::File,
    spare: &Spare,
) -> std::io::Result<Spilled> {
    use std::io::{Seek, Write};
    let mut sealed = Vec::new();
    for (aad, mut chunk) in handed {
        let chunk = crypto::seal_in_place(&key.key, &aad, std::mem::take(&mut *chunk));
        file.write_all(&chunk)?;
        sealed.push(chunk.len());
        *spare.lock() = Some(chunk);
    }
    file.rewind()?;
    Ok(Spilled { file, sealed })
}

/// A snapshot as it is written: in chunks of [`CHUNK_BYTES`], each handed
/// to the sealer when the bytes after it arrive, or at the end as the
/// last one: its additional data says which, so a snapshot cut short fails
/// to open.
struct Spill<'k> {
    key: &'k SnapshotKey,
    at: LogHead,
    /// The chunk being written: [`crypto::NONCE_LEN`] bytes of room for
    /// its nonce, then plaintext, with room for its tag after.
    chunk: Zeroizing<Vec<u8>>,
    handed: u32,
    /// Gone once the sealer stopped (a write to the file failed, which
    /// it reports): what follows is dropped.
    sealer: Option<std::sync::mpsc::SyncSender<Handed>>,
    spare: Spare,
    /// Chunk buffers made rather than handed back.
    #[cfg(test)]
    made: usize,
}

impl<'k> Spill<'k> {
    fn new(
        key: &'k SnapshotKey,
        at: LogHead,
        sealer: std::sync::mpsc::SyncSender<Handed>,
        spare: Spare,
    ) -> Spill<'k> {
        let mut spill = Spill {
            key,
            at,
            chunk: Zeroizing::default(),
            handed: 0,
            sealer: Some(sealer),
            spare,
            #[cfg(test)]
            made: 0,
        };
        spill.chunk = spill.room();
        spill
    }

    /// An empty chunk: the sealer's spare buffer if it handed one back.
    fn room(&mut self) -> Zeroizing<Vec<u8>> {
        const ROOM: usize = crypto::NONCE_LEN + CHUNK_BYTES + crypto::TAG_LEN;
        let mut chunk = match self.spare.lock().take() {
            Some(mut spare) if spare.capacity() >= ROOM => {
                spare.clear();
                spare
            }
            _ => {
                #[cfg(test)]
                {
                    self.made += 1;
                }
                Vec::with_capacity(ROOM)
            }
        };
        chunk.extend_from_slice(&[0; crypto::NONCE_LEN]);
        Zeroizing::new(chunk)
    }

    fn hand_over(&mut self, last: bool) {
        let aad = self.key.aad(self.at, self.handed, last);
        let chunk = std::mem::take(&mut self.chunk);
        if let Some(sealer) = &self.sealer {
            if sealer.send((aad, chunk)).is_err() {
                self.sealer = None;
            }
        }
        self.handed += 1;
        // Taken once the sealer has this chunk, so done with the one before
        // and has handed its buffer back.
        if !last {
            self.chunk = self.room();
        }
    }

    /// Hands over the last chunk (an empty one if nothing was written):
    /// the snapshot's header.
    fn finish(mut self) -> SnapshotHeader {
        self.hand_over(true);
        SnapshotHeader {
            at: self.at,
            key_id: self.key.key_id,
            chunks: self.handed,
        }
    }
}

impl ByteSink for Spill<'_> {
    fn put(&mut self, mut bytes: &[u8]) {
        const FULL: usize = crypto::NONCE_LEN + CHUNK_BYTES;
        while !bytes.is_empty() {
            if self.chunk.len() == FULL {
                // More follows: this chunk is not the last.
                self.hand_over(false);
            }
            let (now, rest) = bytes.split_at(bytes.len().min(FULL - self.chunk.len()));
            self.chunk.extend_from_slice(now);
            bytes = rest;
        }
    }
}

/// A snapshot's sealed chunks, in a temporary file.
struct Spilled {
    file: std::fs::File,
    sealed: Vec<usize>,
}

impl Spilled {
    /// The chunks in order, each read on a blocking thread as it is asked
    /// for.
    fn into_stream(self) -> SealedChunks<'static> {
        let Spilled { file, sealed } = self;
        stream::unfold(
            (Some(file), sealed.into_iter()),
            |(file, mut lengths)| async move {
                let length = lengths.next()?;
                let mut file = file?;
                let read = tokio::task::spawn_blocking(move || {
                    use std::io::Read;
                    let mut chunk = vec![0; length];
                    file.read_exact(&mut chunk).map(|()| (chunk, file))
                })
                .await
                .unwrap_or_else(|_| Err(std::io::Error::other("the reading task failed")));
                Some(match read {
                    Ok((chunk, file)) => (Ok(chunk), (Some(file), lengths)),
                    Err(e) => (Err(StorageError::from(e)), (None, lengths)),
                })
            },
        )
        .boxed()
    }
}

/// Postcard's output into a [`ByteSink`]; finishes with the bytes written.
struct IntoSink<'a, S> {
    sink: &'a mut S,
    written: usize,
}

impl<S: ByteSink> postcard::ser_flavors::Flavor for IntoSink<'_, S> {
    type Output = usize;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.sink.put(data);
        self.written += data.len();
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.try_extend(&[data])
    }

    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.written)
    }
}

/// Encodes the projection and the registry as they stand after the last
/// whole commit into the sink `sink_at` makes for that record. Holds the
/// writer off while copying (the writer commits to the database
/// meanwhile; it waits only to apply the next commit).
///
/// Layout: the version byte, the rows, the postcard [`Meta`] and its
/// length (8 bytes, little-endian), then the postcard audit and its length,
/// then the pinned types and their length: stripping the last section
/// leaves the form of version 2, stripping both that of version 1.
fn capture<S: ByteSink>(
    projection: &Projection,
    apps: &Apps,
    taken_us: i64,
    sink_at: impl FnOnce(LogHead) -> S,
) -> (LogHead, S) {
    capture_as(projection, apps, taken_us, sink_at, false)
}

/// [`capture`], or with `spell_derived` in the form of version 5, which
/// spells out derived ids' sync identifiers: only tests write it, to show
/// that one still opens.
fn capture_as<S: ByteSink>(
    projection: &Projection,
    apps: &Apps,
    taken_us: i64,
    sink_at: impl FnOnce(LogHead) -> S,
    spell_derived: bool,
) -> (LogHead, S) {
    let cut = projection.cut();
    let at = cut.head;
    let mut plain = sink_at(at);
    plain.put(&[match spell_derived {
        true => FORMAT_SPELLED_TAGS,
        false => FORMAT_VERSION,
    }]);
    let type_ids: Vec<String> = catalogue::all().iter().map(|t| t.id.to_owned()).collect();
    // Held until the metadata they lend is written.
    let held: Vec<_> = projection
        .types
        .iter()
        .enumerate()
        .map(|(t, cols)| (t, cols.read()))
        .filter(|(_, cols)| cols.live_len() > 0)
        .collect();
    let mut columns = Vec::with_capacity(held.len());
    for (t, cols) in &held {
        let (rows, texts, lengths) = cols.encode_packed(&mut plain, !spell_derived);
        columns.push(TypePackedOut {
            ty: *t as u16,
            rows: rows as u64,
            lengths,
            texts,
        });
    }
    let sources = {
        let sources = projection.sources.read();
        sources
            .names
            .iter()
            .zip(&sources.devices)
            .map(|(name, devices)| {
                let devices = devices.list.iter().map(|d| Device::clone(d)).collect();
                (name.to_string(), devices)
            })
            .collect()
    };
    let sync_ids = projection.sync_ids.read();
    let deriver = projection.derived_ids.read();
    let source_digests = projection.sources.read();
    let sync_tags = SyncTagsOut {
        records: sync_ids.by_id(),
        spelled: deriver
            .as_ref()
            .filter(|_| spell_derived)
            .map(|deriver| SpelledTags {
                derived: held
                    .iter()
                    .map(|(t, cols)| (TypeIndex(*t as u16), &**cols))
                    .collect(),
                deriver,
                sources: &source_digests.digests,
            }),
    };
    let deletions = {
        let deletions = projection.deletions.read();
        let erasures = projection.erasures.lock();
        let mut by_type: Vec<_> = deletions.by_type.iter().collect();
        by_type.sort_unstable_by_key(|(ty, _)| ty.0);
        by_type
            .into_iter()
            .flat_map(|(_, list)| list.iter())
            // A replay cannot list what erasures covered: neither does a
            // snapshot.
            .filter(|d| !erasures.iter().any(|e| e.covers(d)))
            .map(|d| (d.seq, d.id, d.ty.0, d.source))
            .collect()
    };
    let mut correlations: Vec<(u128, Vec<u16>)> = projection
        .correlations
        .read()
        .iter()
        .map(|(id, types)| (*id, types.iter().map(|t| t.0).collect()))
        .collect();
    correlations.sort_unstable_by_key(|c| c.0);
    let meta = MetaOut {
        taken_us,
        applied_seq: projection.applied_seq(),
        type_ids,
        columns,
        sources,
        sync_tags,
        deletions,
        correlations,
        priority: projection.priority(),
        characteristics: projection.characteristics(),
        registry: apps.read().to_state(),
        keys: KeyState::of(&cut.keys),
    };
    let audit = apps.read().audit().to_state();
    let pinned = projection.pinned_types();
    let into = IntoSink {
        sink: &mut plain,
        written: 0,
    };
    let meta_len = postcard::serialize_with_flavor(&meta, into).expect("in-memory encoding");
    plain.put(&(meta_len as u64).to_le_bytes());
    drop(meta);
    drop(source_digests);
    drop(deriver);
    drop(sync_ids);
    drop(held);
    drop(cut);
    for section in [
        postcard::to_stdvec(&audit).expect("in-memory encoding"),
        postcard::to_stdvec(&pinned).expect("in-memory encoding"),
    ] {
        let section = Zeroizing::new(section);
        plain.put(&section);
        plain.put(&(section.len() as u64).to_le_bytes());
    }
    (at, plain)
}

/// Why a stored snapshot was not used.
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    #[error("sealed under key id {0}, which is not the open data key")]
    OtherKey(u32),
    #[error("the log holds no record {0} with the snapshot's hash")]
    NotInLog(u64),
    #[error("a chunk failed authentication")]
    Authentication,
    #[error("malformed contents")]
    Malformed,
    #[error("names a sample type this build does not know")]
    UnknownType,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Opens a snapshot's chunks in order, each into a buffer of its own.
struct ChunkOpener<'k> {
    key: &'k SnapshotKey,
    header: SnapshotHeader,
    plain: Plain,
    opened: u32,
    /// Sealed as snapshots were before they were spilled (see
    /// [`SnapshotKey::aad_counted`]): found at the first chunk.
    counted: bool,
}

impl<'k> ChunkOpener<'k> {
    /// `None` if the header's chunk count (stored in the clear) asks for
    /// more memory than there is.
    fn new(key: &'k SnapshotKey, header: SnapshotHeader) -> Option<Self> {
        let mut chunks = VecDeque::new();
        chunks.try_reserve_exact(header.chunks as usize).ok()?;
        Some(ChunkOpener {
            key,
            header,
            plain: Plain { chunks, read: 0 },
            opened: 0,
            counted: false,
        })
    }

    /// Opens the next chunk.
    fn open_next(&mut self, sealed: &[u8]) -> Result<(), Rejected> {
        const OVERHEAD: usize = crypto::NONCE_LEN + crypto::TAG_LEN;
        let i = self.opened;
        let last = i + 1 == self.header.chunks;
        let size = match sealed.len().checked_sub(OVERHEAD) {
            Some(size) if size == CHUNK_BYTES || (last && size < CHUNK_BYTES) => size,
            _ => return Err(Rejected::Malformed),
        };
        if i >= self.header.chunks {
            return Err(Rejected::Malformed);
        }
        let (key, at, chunks) = (self.key, self.header.at, self.header.chunks);
        let mut plain = Zeroizing::new(Vec::with_capacity(size));
        let mut open = |aad: Vec<u8>| crypto::open_onto(&key.key, &aad, sealed, &mut plain);
        let opened = if self.counted {
            open(key.aad_counted(at, i, chunks))
        } else {
            open(key.aad(at, i, last)).or_else(|e| match i {
                0 => open(key.aad_counted(at, i, chunks)).inspect(|()| self.counted = true),
                _ => Err(e),
            })
        };
        opened.map_err(|_| Rejected::Authentication)?;
        self.plain.chunks.push_back(plain);
        self.opened += 1;
        Ok(())
    }

    /// The whole plaintext, once every chunk is open.
    fn finish(self) -> Result<Plain, Rejected> {
        if self.opened != self.header.chunks {
            return Err(Rejected::Malformed);
        }
        Ok(self.plain)
    }
}

/// A snapshot's plaintext, in the chunks it was opened into, read from the
/// front (the rows) and from the back (the sections that follow them).
/// What is read is taken off, and a chunk is wiped and freed as soon as
/// none of it is left to read: decoding a large store holds what is not
/// decoded yet beside what is, never the whole plaintext beside the whole
/// projection.
struct Plain {
    chunks: VecDeque<Zeroizing<Vec<u8>>>,
    /// Bytes of the front chunk read already.
    read: usize,
}

impl Plain {
    /// `bytes`, copied, as one chunk.
    fn copy_of(bytes: &[u8]) -> Plain {
        Plain {
            chunks: VecDeque::from([Zeroizing::new(bytes.to_vec())]),
            read: 0,
        }
    }

    /// The bytes left, in one buffer.
    #[cfg(test)]
    fn into_bytes(mut self) -> Zeroizing<Vec<u8>> {
        self.take_front(self.len()).expect("all of it is there")
    }

    fn len(&self) -> usize {
        self.chunks.iter().map(|c| c.len()).sum::<usize>() - self.read
    }

    /// The first `n` bytes, taken off; `None`, and nothing taken, if fewer
    /// are left.
    fn take_front(&mut self, n: usize) -> Option<Zeroizing<Vec<u8>>> {
        if n > self.len() {
            return None;
        }
        let mut taken = Zeroizing::new(Vec::with_capacity(n));
        while taken.len() < n {
            let front = self.chunks.front().expect("counted above");
            let k = (n - taken.len()).min(front.len() - self.read);
            taken.extend_from_slice(&front[self.read..self.read + k]);
            self.read += k;
            if self.read == front.len() {
                self.chunks.pop_front();
                self.read = 0;
            }
        }
        Some(taken)
    }

    /// The last `n` bytes, taken off; `None`, and nothing taken, if fewer
    /// are left.
    fn take_back(&mut self, n: usize) -> Option<Zeroizing<Vec<u8>>> {
        if n > self.len() {
            return None;
        }
        let mut taken = Zeroizing::new(vec![0; n]);
        let mut end = n;
        while end > 0 {
            let only = self.chunks.len() == 1;
            let back = self.chunks.back_mut().expect("counted above");
            // Of the front chunk, only what is not read yet.
            let floor = if only { self.read } else { 0 };
            let k = end.min(back.len() - floor);
            let from = back.len() - k;
            taken[end - k..end].copy_from_slice(&back[from..]);
            // The bytes cut off are wiped with the chunk's spare capacity
            // when it is dropped.
            back.truncate(from);
            end -= k;
            if back.len() == floor {
                self.chunks.pop_back();
                if only {
                    self.read = 0;
                }
            }
        }
        Some(taken)
    }

    /// The last section (its bytes, then their length in 8 bytes), taken
    /// off.
    fn take_trailing_section(&mut self) -> Result<Zeroizing<Vec<u8>>, Rejected> {
        let len = self.take_back(8).ok_or(Rejected::Malformed)?;
        let len = u64::from_le_bytes(len[..].try_into().expect("8 bytes"));
        let len = usize::try_from(len).map_err(|_| Rejected::Malformed)?;
        self.take_back(len).ok_or(Rejected::Malformed)
    }
}

/// Where replay starts from a snapshot: the builder and registry as they
/// were after record `at`, and what the log up to it says about keys.
pub struct Start {
    pub builder: ProjectionBuilder,
    pub registry: Registry,
    pub at: LogHead,
    pub keys: Walked,
}

/// Decodes a snapshot's plaintext, taking each part off it as it is
/// decoded (see [`Plain`]).
/// With `ids_key`, samples whose ids are derived from their sync
/// identifiers are marked so rather than given records (their rows come
/// marked from version 6 on, and such a snapshot opens only with the key).
fn decode(mut plain: Plain, at: LogHead, ids_key: Option<&SecretKey>) -> Result<Start, Rejected> {
    let version = plain.take_front(1).ok_or(Rejected::Malformed)?[0];
    let pinned: Vec<String> = match version {
        FORMAT_VERSION | FORMAT_SPELLED_TAGS | FORMAT_FIXED_WIDTH | FORMAT_METADATA_BY_ID => {
            let pinned = plain.take_trailing_section()?;
            postcard::from_bytes(&pinned).map_err(|_| Rejected::Malformed)?
        }
        FORMAT_WITHOUT_PINS | FORMAT_WITHOUT_AUDIT => Vec::new(),
        _ => return Err(Rejected::Malformed),
    };
    let audit = match version {
        FORMAT_VERSION
        | FORMAT_SPELLED_TAGS
        | FORMAT_FIXED_WIDTH
        | FORMAT_METADATA_BY_ID
        | FORMAT_WITHOUT_PINS => {
            let audit = plain.take_trailing_section()?;
            let audit: AuditState =
                postcard::from_bytes(&audit).map_err(|_| Rejected::Malformed)?;
            AuditIndex::from_state(audit)
        }
        FORMAT_WITHOUT_AUDIT => AuditIndex::default(),
        _ => return Err(Rejected::Malformed),
    };
    // What is left after the metadata is the rows.
    let meta_bytes = plain.take_trailing_section()?;
    let meta: Meta<TypeRows> = if matches!(version, FORMAT_VERSION | FORMAT_SPELLED_TAGS) {
        postcard::from_bytes::<Meta<TypePacked>>(&meta_bytes)
            .map_err(|_| Rejected::Malformed)?
            .map_columns(TypeRows::Packed)
    } else if version == FORMAT_FIXED_WIDTH {
        postcard::from_bytes::<Meta<TypeTexts>>(&meta_bytes)
            .map_err(|_| Rejected::Malformed)?
            .map_columns(TypeRows::Texts)
    } else {
        postcard::from_bytes::<Meta<TypeMeta>>(&meta_bytes)
            .map_err(|_| Rejected::Malformed)?
            .map_columns(TypeRows::ById)
    };
    drop(meta_bytes);
    let types: Vec<TypeIndex> = meta
        .type_ids
        .iter()
        .map(|id| catalogue::lookup(id).ok_or(Rejected::UnknownType))
        .collect::<Result<_, _>>()?;
    let ty = |i: u16| {
        types
            .get(usize::from(i))
            .copied()
            .ok_or(Rejected::Malformed)
    };

    let mut builder = ProjectionBuilder::new();
    if let Some(key) = ids_key {
        builder = builder.with_derived_ids(key);
    }
    for (i, (name, devices)) in meta.sources.iter().enumerate() {
        if builder.sources.intern(name) as usize != i {
            return Err(Rejected::Malformed);
        }
        for device in devices {
            builder.sources.intern_device(i as u32, Some(device));
        }
    }
    for columns in meta.columns {
        // Fixed-width rows (before version 5), with a metadata number each
        // when the type lists texts.
        let fixed = |n: usize, numbered: bool| {
            n.checked_mul(ENCODED_ROW_BYTES + if numbered { 4 } else { 0 })
        };
        let (t, n) = match &columns {
            TypeRows::Packed(c) => (c.ty, c.rows),
            TypeRows::Texts(c) => (c.ty, c.rows),
            TypeRows::ById(c) => (c.ty, c.rows),
        };
        let t = ty(t)?;
        let n = usize::try_from(n).map_err(|_| Rejected::Malformed)?;
        let mut take = |len: Option<usize>| {
            len.and_then(|len| plain.take_front(len))
                .ok_or(Rejected::Malformed)
        };
        let mut data = match columns {
            TypeRows::Packed(c) => {
                let columns = c
                    .lengths
                    .iter()
                    .map(|&l| take(usize::try_from(l).ok()))
                    .collect::<Result<Vec<_>, _>>()?;
                let texts = c.texts.into_iter().map(String::into_boxed_str).collect();
                ColumnData::decode_packed(columns, n, texts)
            }
            TypeRows::Texts(c) => {
                let these = take(fixed(n, !c.texts.is_empty()))?;
                let texts = c.texts.into_iter().map(String::into_boxed_str).collect();
                ColumnData::decode_pooled(&these, n, texts)
            }
            TypeRows::ById(c) => {
                let these = take(fixed(n, false))?;
                let metadata: HashMap<u128, Box<str>> = c
                    .metadata
                    .into_iter()
                    .map(|(id, m)| (id, m.into_boxed_str()))
                    .collect();
                ColumnData::decode(&these, n, metadata)
            }
        }
        .ok_or(Rejected::Malformed)?;
        let whole_cells = version == FORMAT_VERSION;
        data.clamp_device_slots(whole_cells);
        // Rows marked derived give their sync identifiers back only with
        // the key they were derived with.
        if whole_cells && ids_key.is_none() && data.any_derived() {
            return Err(Rejected::Malformed);
        }
        let slot = &mut builder.base[usize::from(t.0)];
        if slot.is_some() {
            return Err(Rejected::Malformed);
        }
        *slot = Some(data);
    }
    if plain.len() != 0 {
        return Err(Rejected::Malformed);
    }
    for (id, sync_id, version, t, source) in meta.sync_tags {
        let tag = SyncTag {
            sync_id: sync_id.as_str(),
            version,
            ty: ty(t)?,
            source,
        };
        builder.add_base_sync_tag(id, tag);
    }
    for (seq, id, t, source) in meta.deletions {
        builder.base_deletions.push(Deletion {
            seq,
            id,
            ty: ty(t)?,
            source,
        });
    }
    for (id, members) in meta.correlations {
        let members: Vec<TypeIndex> = members.into_iter().map(ty).collect::<Result<_, _>>()?;
        builder.correlations.insert(id, members.into());
    }
    builder.priority = meta.priority;
    builder.characteristics = meta.characteristics;
    builder.pinned = pinned;
    builder.last_seq = meta.applied_seq;
    builder.snapshot = Some((at.seq, meta.taken_us));
    let mut registry = Registry::from_state(meta.registry);
    registry.set_audit(audit);
    Ok(Start {
        builder,
        registry,
        at,
        keys: meta.keys.into_walked(at.seq),
    })
}

/// Opens the snapshot `header` names, if its record stands in the log.
pub async fn open(
    storage: &dyn Storage,
    key: &SnapshotKey,
    header: SnapshotHeader,
) -> Result<Start, Rejected> {
    if header.key_id != key.key_id {
        return Err(Rejected::OtherKey(header.key_id));
    }
    let seq = header.at.seq;
    let record = storage
        .records_after(seq.saturating_sub(1), 1)
        .await?
        .pop()
        .filter(|r| r.seq == seq && seq > 0)
        .ok_or(Rejected::NotInLog(seq))?;
    let intact =
        record.hash == record_hash(record.seq, record.key_id, &record.prev_hash, &record.body);
    if !intact || record.hash != header.at.hash {
        return Err(Rejected::NotInLog(seq));
    }
    let started = Instant::now();
    // Several chunks are read at a time, a connection each (on Postgres
    // reading them out of TOAST costs more than opening them), and each is
    // opened on another thread as soon as it is in, while the next ones
    // are read.
    let (arrived, mut arriving) = tokio::sync::mpsc::channel::<Vec<u8>>(WAITING);
    let key = key.clone();
    let opening = tokio::task::spawn_blocking(move || {
        let mut opener = ChunkOpener::new(&key, header).ok_or(Rejected::Malformed)?;
        while let Some(sealed) = arriving.blocking_recv() {
            opener.open_next(&sealed)?;
        }
        let opened_ms = started.elapsed().as_millis() as u64;
        let start = decode(opener.finish()?, header.at, Some(&key.ids_key))?;
        Ok::<_, Rejected>((start, opened_ms))
    });
    let mut chunks = stream::iter(0..header.chunks)
        .map(|chunk| storage.snapshot_chunk(seq, chunk))
        .buffered(READING);
    let mut read = Ok(());
    while let Some(chunk) = chunks.next().await {
        match chunk {
            Ok(chunk) => {
                // A chunk refused ends the opening, and with it the reading.
                if arrived.send(chunk).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                read = Err(e);
                break;
            }
        }
    }
    drop(arrived);
    let read_ms = started.elapsed().as_millis() as u64;
    let opened = opening.await.map_err(|_| Rejected::Malformed)?;
    read?;
    let (start, opened_ms) = opened?;
    tracing::info!(
        seq,
        read_ms,
        opened_ms,
        decoded_ms = started.elapsed().as_millis() as u64,
        "snapshot opened"
    );
    Ok(start)
}

/// The newest snapshot that opens and matches the log, if any; each one
/// passed over is logged.
pub async fn load_newest(storage: &dyn Storage, root: &DataKey) -> Option<Start> {
    let key = SnapshotKey::new(root);
    let headers = match storage.snapshots().await {
        Ok(headers) => headers,
        Err(e) => {
            tracing::warn!(error = %e, "snapshots unreadable; replaying the whole log");
            return None;
        }
    };
    for header in headers {
        match open(storage, &key, header).await {
            Ok(start) => return Some(start),
            Err(e) => tracing::warn!(
                seq = header.at.seq,
                error = %e,
                "snapshot not used"
            ),
        }
    }
    None
}

/// Deletes every snapshot: a snapshot taken before keys were destroyed
/// still holds the data they sealed, and one taken of a log since rolled
/// back describes records that are not there.
pub async fn discard_all(storage: &dyn Storage) -> Result<(), StorageError> {
    storage.delete_snapshots(u64::MAX).await
}

/// Deletes the snapshots taken before record `seq` (an erasure).
pub async fn discard_before(storage: &dyn Storage, seq: u64) -> Result<(), StorageError> {
    storage.delete_snapshots(seq).await
}

/// Takes snapshots of one open store.
struct Taker {
    storage: Arc<dyn Storage>,
    key: SnapshotKey,
    projection: Arc<Projection>,
    apps: Arc<Apps>,
    every: u64,
    /// One snapshot at a time, and none while snapshots are discarded.
    busy: tokio::sync::Mutex<()>,
    /// Imports running: each snapshot captures the whole projection, so
    /// one every `every` records of an import of millions would capture
    /// it over and over; the import takes one when it ends instead.
    deferred: std::sync::atomic::AtomicUsize,
}

impl Taker {
    /// Records applied since the newest snapshot.
    fn behind(&self) -> u64 {
        let head = self.projection.cut().head.seq;
        let last = self.projection.last_snapshot().map_or(0, |(seq, _)| seq);
        head.saturating_sub(last)
    }

    /// Takes a snapshot unless the newest one is at the head already.
    async fn take(self: &Arc<Self>) -> Result<bool, SnapshotError> {
        let _one = self.busy.lock().await;
        self.take_now().await
    }

    async fn take_now(self: &Arc<Self>) -> Result<bool, SnapshotError> {
        if self.behind() == 0 && self.projection.last_snapshot().is_some() {
            // The newest snapshot covers the head (say, at lock right after
            // an unlock from it): nothing to capture.
            return Ok(false);
        }
        let taker = self.clone();
        let started = Instant::now();
        let spilled = tokio::task::spawn_blocking(move || {
            let taken_us = taker.apps.clock.now_us();
            let (header, spilled) = spill(&taker.key, |spill_at| {
                capture(&taker.projection, &taker.apps, taken_us, spill_at).1
            })?;
            let current = taker.projection.last_snapshot().map(|(seq, _)| seq);
            if header.at.seq == 0 || current == Some(header.at.seq) {
                return Ok(None);
            }
            Ok(Some((header, spilled, taken_us)))
        })
        .await
        .map_err(|_| SnapshotError::Task)?
        .map_err(SnapshotError::Spill)?;
        let Some((header, spilled, taken_us)) = spilled else {
            return Ok(false);
        };
        let sealed_ms = started.elapsed().as_millis() as u64;
        self.storage
            .put_snapshot(&header, spilled.into_stream(), KEEP)
            .await?;
        *self.projection.last_snapshot.lock() = Some((header.at.seq, taken_us));
        tracing::info!(
            seq = header.at.seq,
            chunks = header.chunks,
            sealed_ms,
            stored_ms = started.elapsed().as_millis() as u64,
            "snapshot taken"
        );
        Ok(true)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("the snapshot task failed")]
    Task,
    #[error("spilling the sealed snapshot to a temporary file: {0}")]
    Spill(std::io::Error),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The snapshots of an open store: taken in the background every `every`
/// records, and once more when the store locks.
pub struct Snapshots {
    taker: Arc<Taker>,
    stop: watch::Sender<bool>,
    /// Asks the background task for a snapshot now.
    soon: Arc<tokio::sync::Notify>,
    task: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Snapshots {
    pub fn spawn(
        storage: Arc<dyn Storage>,
        key: SnapshotKey,
        projection: Arc<Projection>,
        apps: Arc<Apps>,
        every: u64,
    ) -> Snapshots {
        let taker = Arc::new(Taker {
            storage,
            key,
            projection,
            apps,
            every: every.max(1),
            busy: tokio::sync::Mutex::new(()),
            deferred: std::sync::atomic::AtomicUsize::new(0),
        });
        let (stop, mut stopped) = watch::channel(false);
        let soon = Arc::new(tokio::sync::Notify::new());
        let asked = soon.clone();
        let background = taker.clone();
        let task = tokio::spawn(async move {
            let mut notes = background.projection.subscribe();
            loop {
                let mut now = false;
                tokio::select! {
                    _ = stopped.changed() => return,
                    _ = asked.notified() => now = true,
                    note = notes.recv() => match note {
                        Ok(Note::Locked) | Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            return
                        }
                        _ => {}
                    },
                    _ = tokio::time::sleep(TICK) => {}
                }
                let deferred = background
                    .deferred
                    .load(std::sync::atomic::Ordering::Acquire)
                    > 0;
                if now || (!deferred && background.behind() >= background.every) {
                    if let Err(e) = background.take().await {
                        tracing::warn!(error = %e, "background snapshot failed");
                    }
                }
            }
        });
        Snapshots {
            taker,
            stop,
            soon,
            task: parking_lot::Mutex::new(Some(task)),
        }
    }

    /// Records applied since the newest snapshot, and seconds since it was
    /// taken while it is behind (0 when it is at the head).
    pub fn age(&self) -> (u64, f64) {
        let behind = self.taker.behind();
        let seconds = match self.taker.projection.last_snapshot() {
            _ if behind == 0 => 0.0,
            Some((_, taken_us)) => (self.taker.apps.clock.now_us() - taken_us).max(0) as f64 / 1e6,
            None => f64::NAN,
        };
        (behind, seconds)
    }

    /// Takes a snapshot now unless the newest is at the head.
    pub async fn take_now(&self) -> Result<bool, SnapshotError> {
        self.taker.take().await
    }

    /// Stops the background task, then takes a last snapshot if the newest
    /// is behind: at lock and at shutdown, after the writer stopped.
    pub async fn finish(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
        if let Err(e) = self.taker.take().await {
            tracing::warn!(error = %e, "snapshot at lock failed");
        }
    }

    /// Asks for a snapshot in the background, however few records it is
    /// behind.
    pub fn take_soon(&self) {
        self.soon.notify_one();
    }

    /// Holds back the snapshots taken every so many records until the
    /// guard is dropped, which asks for one: for a bulk import. Snapshots
    /// asked for (an erasure's) and the one at lock are still taken.
    pub fn defer(&self) -> DeferredSnapshots {
        self.taker
            .deferred
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        DeferredSnapshots {
            taker: self.taker.clone(),
            soon: self.soon.clone(),
        }
    }

    /// Deletes every snapshot (after one being taken, which may predate
    /// the erasure), then asks for a new one of the projection as it
    /// stands: what erasure calls once its records are applied, so no
    /// snapshot holds erased data.
    pub async fn discard_all_and_retake(&self) -> Result<(), SnapshotError> {
        {
            let _one = self.taker.busy.lock().await;
            discard_all(&*self.taker.storage).await?;
            *self.taker.projection.last_snapshot.lock() = None;
        }
        self.take_soon();
        Ok(())
    }
}

/// Snapshots by record count wait while this lives: see [`Snapshots::defer`].
pub struct DeferredSnapshots {
    taker: Arc<Taker>,
    soon: Arc<tokio::sync::Notify>,
}

impl Drop for DeferredSnapshots {
    fn drop(&mut self) {
        let before = self
            .taker
            .deferred
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        if before == 1 && self.taker.behind() > 0 {
            self.soon.notify_one();
        }
    }
}

/// A canonical rendering of a projection and a registry: equal for equal
/// states, whatever order they were built in. For tests and benchmarks
/// comparing unlock paths.
pub fn canonical_dump(projection: &Projection, registry: &Registry) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;
    let apps = Apps::default();
    let mut copy = Registry::from_state(registry.to_state());
    copy.set_audit(AuditIndex::from_state(registry.audit().to_state()));
    apps.replace(copy);
    let plain = capture(projection, &apps, 0, |_| Zeroizing::new(Vec::new())).1;
    let mut out = format!("state {}\n", hex::encode(Sha256::digest(&plain[..])));
    for (t, cols) in projection.types.iter().enumerate() {
        let cols = cols.read();
        if cols.is_empty() && cols.last_seq() == 0 {
            continue;
        }
        let _ = writeln!(
            out,
            "type {} rows {} live {} last_seq {} generation {} reshaped {} longest {}",
            catalogue::all()[t].id,
            cols.len(),
            cols.live_len(),
            cols.last_seq(),
            cols.generation(),
            cols.reshaped(),
            cols.longest_us(),
        );
    }
    let _ = writeln!(
        out,
        "applied {} samples {}",
        projection.applied_seq(),
        projection.sample_count()
    );
    let mut sections = Plain::copy_of(&plain[1..]);
    let mut section = || sections.take_trailing_section().expect("just encoded");
    let (pinned, audit, meta) = (section(), section(), section());
    let pinned: Vec<String> = postcard::from_bytes(&pinned).expect("just encoded");
    let meta: Meta = postcard::from_bytes(&meta).expect("just encoded");
    let audit: AuditState = postcard::from_bytes(&audit).expect("just encoded");
    let _ = writeln!(out, "sources {:?}", meta.sources);
    let _ = writeln!(out, "sync {:?}", meta.sync_tags);
    let _ = writeln!(out, "deletions {:?}", meta.deletions);
    let _ = writeln!(out, "correlations {:?}", meta.correlations);
    let _ = writeln!(out, "priority {:?}", meta.priority);
    let _ = writeln!(out, "characteristics {:?}", meta.characteristics);
    let _ = writeln!(out, "registry {:?}", meta.registry);
    let _ = writeln!(out, "audit {audit:?}");
    let _ = writeln!(out, "pinned {pinned:?}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditEvent, Direction, UsageEntry};
    use crate::log::event::{Envelope, Event};

    /// [`decode`] of a plaintext given whole.
    fn decode_bytes(
        plain: &[u8],
        at: LogHead,
        ids_key: Option<&SecretKey>,
    ) -> Result<Start, Rejected> {
        decode(Plain::copy_of(plain), at, ids_key)
    }

    /// `bytes` as a plaintext opened into chunks of `size` bytes.
    fn in_chunks(bytes: &[u8], size: usize) -> Plain {
        Plain {
            chunks: bytes
                .chunks(size)
                .map(|c| Zeroizing::new(c.to_vec()))
                .collect(),
            read: 0,
        }
    }

    /// Taking bytes off the front and the back of a chunked plaintext, in
    /// any order and any sizes, gives the bytes a whole buffer would; a
    /// chunk is let go as soon as none of it is left to read, and asking
    /// for more than is left takes nothing.
    #[test]
    fn plaintext_is_read_from_both_ends_across_chunks() {
        let bytes: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut x = 11u64;
        let mut next = |below: usize| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as usize % below
        };
        for size in [1, 3, 64, 999, 1000, 4096] {
            let mut plain = in_chunks(&bytes, size);
            let (mut front, mut back) = (0, bytes.len());
            while front < back {
                let n = next(back - front + 1).min(90);
                assert!(plain.take_front(back - front + 1).is_none());
                assert!(plain.take_back(back - front + 1).is_none());
                if next(2) == 0 {
                    let taken = plain.take_front(n).unwrap();
                    assert_eq!(&taken[..], &bytes[front..front + n]);
                    front += n;
                } else {
                    let taken = plain.take_back(n).unwrap();
                    assert_eq!(&taken[..], &bytes[back - n..back]);
                    back -= n;
                }
                assert_eq!(plain.len(), back - front);
                // Only the chunks that still hold bytes to read are held.
                let held = match front < back {
                    true => back.div_ceil(size) - front / size,
                    false => 0,
                };
                assert_eq!(plain.chunks.len(), held, "size {size}");
            }
            assert_eq!(plain.len(), 0);
        }
        let mut empty = in_chunks(&[], 8);
        assert!(empty.take_front(0).is_some_and(|b| b.is_empty()));
        assert!(empty.take_back(1).is_none());
    }

    /// A snapshot decodes the same from a plaintext in many small chunks
    /// as from one buffer: every section and column may start and end
    /// anywhere in a chunk.
    #[test]
    fn a_snapshot_decodes_the_same_whatever_its_chunks() {
        use super::super::derived_tests::{key, log};
        let live = ProjectionBuilder::new().with_derived_ids(&key()).finish();
        for (seq, envelope) in log().iter().enumerate() {
            live.apply(seq as u64 + 1, envelope).unwrap();
        }
        let (at, plain) = capture(&live, &Apps::default(), 0, |_| Vec::new());
        let whole = decode_bytes(&plain, at, Some(&key())).unwrap_or_else(|_| panic!("opens"));
        let expected = canonical_dump(&whole.builder.finish(), &whole.registry);
        for size in [1, 2, 7, 64, 1000, plain.len()] {
            let start = decode(in_chunks(&plain, size), at, Some(&key()))
                .unwrap_or_else(|_| panic!("opens from chunks of {size}"));
            assert_eq!(
                canonical_dump(&start.builder.finish(), &start.registry),
                expected,
                "chunks of {size}"
            );
            let cut = in_chunks(&plain[..plain.len() - 1], size);
            assert!(decode(cut, at, Some(&key())).is_err());
        }
    }

    /// Derived ids' rows carry their marks in a snapshot, which lists only
    /// the other sync tags and opens only with the key; one of version 5,
    /// which spelled them out as records are, is marked again when it
    /// opens with the key (records without it).
    #[test]
    fn derived_ids_survive_a_snapshot() {
        use super::super::derived_tests::{check, key, log};
        let live = ProjectionBuilder::new().with_derived_ids(&key()).finish();
        for (seq, envelope) in log().iter().enumerate() {
            live.apply(seq as u64 + 1, envelope).unwrap();
        }
        let tags = |plain: &[u8]| {
            let mut sections = Plain::copy_of(&plain[1..]);
            for _pinned_then_audit in 0..2 {
                sections.take_trailing_section().unwrap();
            }
            let meta = sections.take_trailing_section().unwrap();
            let mut tags = postcard::from_bytes::<Meta>(&meta).unwrap().sync_tags;
            tags.sort();
            tags
        };
        // The tags a snapshot of the records alone lists.
        let mut records = ProjectionBuilder::new();
        for (seq, envelope) in log().into_iter().enumerate() {
            records.add(seq as u64 + 1, envelope).unwrap();
        }
        let (_, plain_records) = capture(&records.finish(), &Apps::default(), 0, |_| Vec::new());
        assert_eq!(tags(&plain_records).len(), 6);

        let (at, plain) = capture(&live, &Apps::default(), 0, |_| Vec::new());
        assert_eq!(plain[0], FORMAT_VERSION);
        let start = decode_bytes(&plain, at, Some(&key())).unwrap_or_else(|_| panic!("opens"));
        check(&start.builder.finish(), true);
        assert!(matches!(
            decode_bytes(&plain, at, None),
            Err(Rejected::Malformed)
        ));
        // Samples 1 and 7 hold derived ids: the other four tags are listed.
        let derived: usize = live
            .types
            .iter()
            .map(|cols| cols.read().derived_rows().count())
            .sum();
        assert_eq!(derived, 2);
        assert_eq!(tags(&plain).len(), 4, "only the records' tags are listed");

        let (at, spelled) = capture_as(&live, &Apps::default(), 0, |_| Vec::new(), true);
        assert_eq!(spelled[0], FORMAT_SPELLED_TAGS);
        let start = decode_bytes(&spelled, at, Some(&key())).unwrap_or_else(|_| panic!("opens"));
        check(&start.builder.finish(), true);
        let start = decode_bytes(&spelled, at, None).unwrap_or_else(|_| panic!("opens"));
        check(&start.builder.finish(), false);
        assert_eq!(tags(&spelled), tags(&plain_records));
    }

    #[test]
    fn the_audit_rides_along_and_snapshots_from_before_it_still_open() {
        let projection = ProjectionBuilder::new().finish();
        let apps = Apps::default();
        apps.apply(&Envelope {
            at_us: 1,
            event: Event::Audit(AuditEvent::AppUsage {
                entries: vec![UsageEntry {
                    day: 3,
                    app_id: "app_1".into(),
                    type_id: "step_count".into(),
                    direction: Direction::Read,
                    samples: 9,
                    summaries: 0,
                }],
            }),
        });
        let (at, plain) = capture(&projection, &apps, 0, |_| Vec::new());
        let start =
            decode_bytes(&plain, at, None).unwrap_or_else(|_| panic!("a fresh snapshot opens"));
        assert_eq!(
            start.registry.audit().to_state(),
            apps.read().audit().to_state()
        );
        // The form before the audit: no pins, no audit section, version 1.
        let mut rest = Plain::copy_of(&plain[1..]);
        for _pinned_then_audit in 0..2 {
            rest.take_trailing_section().unwrap();
        }
        let mut old = vec![FORMAT_WITHOUT_AUDIT];
        old.extend_from_slice(&rest.into_bytes());
        let start =
            decode_bytes(&old, at, None).unwrap_or_else(|_| panic!("a version 1 snapshot opens"));
        assert_eq!(start.registry.audit().to_state(), AuditState::default());
        let mut unknown = plain.clone();
        unknown[0] = FORMAT_VERSION + 1;
        assert!(decode_bytes(&unknown, at, None).is_err());
    }

    /// Spills `pieces` as one snapshot at `at`: its header and sealed
    /// chunks, read back from the file.
    fn spill_pieces(
        key: &SnapshotKey,
        at: LogHead,
        pieces: &[&[u8]],
    ) -> (SnapshotHeader, Vec<Vec<u8>>) {
        let (header, spilled) = spill(key, |spill_at| {
            let mut spill = spill_at(at);
            for piece in pieces {
                spill.put(piece);
            }
            spill
        })
        .unwrap();
        let chunks = read_back(spilled);
        assert_eq!(header.chunks as usize, chunks.len());
        (header, chunks)
    }

    /// The sealed chunks a spill wrote, read back from its file.
    fn read_back(spilled: Spilled) -> Vec<Vec<u8>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let chunks = runtime.block_on(spilled.into_stream().collect::<Vec<_>>());
        chunks.into_iter().map(Result::unwrap).collect()
    }

    fn open_all(
        key: &SnapshotKey,
        header: SnapshotHeader,
        sealed: &[Vec<u8>],
    ) -> Result<Zeroizing<Vec<u8>>, Rejected> {
        let mut opener = ChunkOpener::new(key, header).expect("room");
        for chunk in sealed {
            opener.open_next(chunk)?;
        }
        opener.finish().map(Plain::into_bytes)
    }

    /// However many chunks a snapshot has, it is written through two
    /// buffers, the sealer handing each back once its chunk is out.
    #[test]
    fn a_snapshot_is_written_through_two_buffers() {
        let key = SnapshotKey::new(&DataKey::generate());
        let at = LogHead {
            seq: 4,
            hash: [1; 32],
        };
        let piece = vec![9u8; CHUNK_BYTES / 3];
        let (header, spilled) = spill(&key, |spill_at| {
            let mut spill = spill_at(at);
            for _ in 0..20 {
                spill.put(&piece);
            }
            assert_eq!(spill.made, 2, "buffers made for seven chunks");
            spill
        })
        .unwrap();
        assert_eq!(header.chunks, 7);
        let sealed = read_back(spilled);
        let opened = open_all(&key, header, &sealed).unwrap_or_else(|_| panic!("opens"));
        assert!(opened.len() == 20 * piece.len() && opened.iter().all(|&b| b == 9));
    }

    /// A snapshot larger than a chunk, sealed and spilled as a store's is,
    /// opens chunk by chunk and decodes to the state its whole plaintext
    /// decodes to.
    #[test]
    fn a_snapshot_of_several_chunks_opens_to_the_same_state() {
        use crate::log::event::{StoredSample, TypeBatch};
        let mut x = 5u64;
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x
        };
        // Random ids (16 bytes each, packed as they are): past a chunk.
        let samples: Vec<StoredSample> = (0..450_000i64)
            .map(|minute| StoredSample {
                id: (u128::from(next()) << 64 | u128::from(next())).to_be_bytes(),
                start_us: minute * 60_000_000,
                start_offset_min: 60,
                end_us: minute * 60_000_000 + 30_000_000,
                end_offset_min: 60,
                value: (next() % 200) as f64,
                metadata: None,
            })
            .collect();
        let mut builder = ProjectionBuilder::new();
        builder
            .add(
                1,
                Envelope {
                    at_us: 0,
                    event: Event::SamplesAdded {
                        source: "app".into(),
                        batches: vec![TypeBatch {
                            type_id: "heart_rate".into(),
                            samples,
                        }],
                    },
                },
            )
            .unwrap();
        let (at, plain) = capture(&builder.finish(), &Apps::default(), 0, |_| Vec::new());
        let key = SnapshotKey::new(&DataKey::generate());
        let (header, sealed) = spill_pieces(&key, at, &[&plain]);
        assert!(header.chunks >= 2, "{} chunks", header.chunks);

        let whole = decode_bytes(&plain, at, None).unwrap_or_else(|_| panic!("opens whole"));
        let expected = canonical_dump(&whole.builder.finish(), &whole.registry);
        let mut opener = ChunkOpener::new(&key, header).unwrap();
        for chunk in &sealed {
            opener
                .open_next(chunk)
                .unwrap_or_else(|_| panic!("a chunk opens"));
        }
        let opened = opener
            .finish()
            .unwrap_or_else(|_| panic!("all chunks open"));
        assert_eq!(opened.chunks.len(), sealed.len());
        let start = decode(opened, at, None).unwrap_or_else(|_| panic!("opens from chunks"));
        let state = canonical_dump(&start.builder.finish(), &start.registry);
        assert!(state == expected, "the same state from chunks");
    }

    /// Plaintext written in pieces of any size is sealed chunk by chunk as
    /// it comes, spilled, and opens to the same bytes, in order; a snapshot
    /// with chunks moved, missing, added or cut does not.
    #[test]
    fn spilled_chunks_open_whole_and_only_whole() {
        let mut x = 7u64;
        let pieces: Vec<Vec<u8>> = [1usize, CHUNK_BYTES - 3, 8, CHUNK_BYTES + 5, 1000, 0, 13]
            .into_iter()
            .map(|size| {
                (0..size)
                    .map(|_| {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                        (x >> 56) as u8
                    })
                    .collect()
            })
            .collect();
        let expected = pieces.concat();
        let key = SnapshotKey::new(&DataKey::generate());
        let at = LogHead {
            seq: 9,
            hash: [3; 32],
        };
        let pieces: Vec<&[u8]> = pieces.iter().map(Vec::as_slice).collect();
        let (header, sealed) = spill_pieces(&key, at, &pieces);
        assert_eq!(header.chunks as usize, expected.len().div_ceil(CHUNK_BYTES));
        assert_eq!(header.chunks, 3);
        let opened = open_all(&key, header, &sealed).unwrap_or_else(|_| panic!("opens"));
        assert_eq!(&opened[..], &expected[..]);
        // No plaintext lies in the spilled chunks.
        let probe = &expected[100..132];
        assert!(!sealed.iter().any(|c| c.windows(32).any(|w| w == probe)));
        // Chunks out of order, one missing, one too many, one cut short.
        let mut swapped = sealed.clone();
        swapped.swap(0, 1);
        assert!(matches!(
            open_all(&key, header, &swapped),
            Err(Rejected::Authentication)
        ));
        assert!(matches!(
            open_all(&key, header, &sealed[..sealed.len() - 1]),
            Err(Rejected::Malformed)
        ));
        let mut more = sealed.clone();
        more.push(sealed[0].clone());
        assert!(open_all(&key, header, &more).is_err());
        let mut short = sealed.clone();
        short[0].pop();
        assert!(matches!(
            open_all(&key, header, &short),
            Err(Rejected::Malformed)
        ));
        // The last chunk dropped and the count in the clear lowered to
        // match: the new last chunk was not sealed as the last.
        let truncated = SnapshotHeader {
            chunks: header.chunks - 1,
            ..header
        };
        assert!(matches!(
            open_all(&key, truncated, &sealed[..sealed.len() - 1]),
            Err(Rejected::Authentication)
        ));
        // A chunk count stored in the clear that asks for too much.
        let huge = SnapshotHeader {
            chunks: u32::MAX,
            ..header
        };
        assert!(ChunkOpener::new(&key, huge).is_none());
        // Exactly one chunk's worth is one chunk, sealed as the last.
        let full = vec![5u8; CHUNK_BYTES];
        let (header, sealed) = spill_pieces(&key, at, &[&full]);
        assert_eq!(header.chunks, 1);
        assert!(open_all(&key, header, &sealed).is_ok_and(|p| p[..] == full[..]));
        // Nothing at all still makes one (empty) chunk.
        let (header, sealed) = spill_pieces(&key, at, &[]);
        assert_eq!((header.chunks, sealed.len()), (1, 1));
        assert!(open_all(&key, header, &sealed).is_ok_and(|p| p.is_empty()));
    }

    /// Snapshots sealed whole in memory, each chunk bound to the number of
    /// chunks, still open; a chunk of that form cannot stand in for one of
    /// the other past the first.
    #[test]
    fn snapshots_sealed_with_their_chunk_count_still_open() {
        let key = SnapshotKey::new(&DataKey::generate());
        let at = LogHead {
            seq: 4,
            hash: [1; 32],
        };
        let plain: Vec<u8> = (0..CHUNK_BYTES + 10).map(|i| i as u8).collect();
        let seal_counted = |i: u32, part: &[u8]| {
            let mut buf = vec![0; crypto::NONCE_LEN];
            buf.extend_from_slice(part);
            crypto::seal_in_place(&key.key, &key.aad_counted(at, i, 2), buf)
        };
        let counted = vec![
            seal_counted(0, &plain[..CHUNK_BYTES]),
            seal_counted(1, &plain[CHUNK_BYTES..]),
        ];
        let header = SnapshotHeader {
            at,
            key_id: key.key_id,
            chunks: 2,
        };
        let opened = open_all(&key, header, &counted).unwrap_or_else(|_| panic!("opens"));
        assert_eq!(&opened[..], &plain[..]);
        // Mixed: a spilled first chunk, then a counted one.
        let (_, spilled) = spill_pieces(&key, at, &[&plain]);
        let mixed = vec![spilled[0].clone(), counted[1].clone()];
        assert!(matches!(
            open_all(&key, header, &mixed),
            Err(Rejected::Authentication)
        ));
    }

    /// What is written borrowing from the projection reads back as the
    /// owned form, byte for byte.
    #[test]
    fn the_borrowed_meta_encodes_as_the_owned_one() {
        let keys = KeyState {
            erased: 1,
            destroyed: vec![2],
            highest_key_id: 3,
            last_erasure: 4,
            per_key: vec![(3, 5)],
        };
        let row = |id: u128, metadata: Option<&str>| super::super::Row {
            id,
            start_us: id as i64,
            start_offset_min: 0,
            end_us: id as i64,
            end_offset_min: 0,
            value: 1.0,
            source: 0,
            device: 0,
            derived: None,
            seq: 1,
            metadata: metadata.map(Box::from),
        };
        let mut cols = super::super::TypeColumns::from_rows(
            vec![
                row(5, Some("{\"a\":1}")),
                row(6, None),
                row(7, Some("{\"b\":2}")),
            ],
            &Default::default(),
        );
        assert!(cols.delete(7));
        let mut sync_ids = super::super::sync_ids::SyncIds::default();
        let digest = format!("ah1-{}", "0f".repeat(16));
        for (id, sync_id, version) in [(6, "x", -1), (5, "ah1-00ff", 2), (9, &digest, 0)] {
            let tag = SyncTag {
                sync_id,
                version,
                ty: TypeIndex(0),
                source: 0,
            };
            sync_ids.insert(id, tag);
        }
        let mut rows = Vec::new();
        let (live, texts, lengths) = cols.encode_packed(&mut rows, true);
        let out = MetaOut {
            taken_us: 11,
            applied_seq: 12,
            type_ids: vec!["step_count".into()],
            columns: vec![TypePackedOut {
                ty: 0,
                rows: live as u64,
                lengths,
                texts,
            }],
            sources: vec![("app".into(), Vec::new())],
            sync_tags: SyncTagsOut {
                records: sync_ids.by_id(),
                spelled: None,
            },
            deletions: vec![(1, 2, 0, 0)],
            correlations: vec![(8, vec![0, 1])],
            priority: (1, Vec::new()),
            characteristics: vec![("sex".into(), "female".into())],
            registry: Registry::default().to_state(),
            keys,
        };
        let mut bytes = Vec::new();
        let written = postcard::serialize_with_flavor(
            &out,
            IntoSink {
                sink: &mut bytes,
                written: 0,
            },
        )
        .unwrap();
        assert_eq!(written, bytes.len());
        let meta: Meta = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(meta.columns[0].rows, 2);
        assert_eq!(meta.columns[0].texts, ["{\"a\":1}"]);
        // Nine columns and the metadata numbers, filling the rows exactly.
        assert_eq!(meta.columns[0].lengths.len(), 10);
        assert_eq!(
            meta.columns[0].lengths.iter().sum::<u64>(),
            rows.len() as u64
        );
        assert_eq!(
            meta.sync_tags,
            [
                (5, "ah1-00ff".to_string(), 2, 0, 0),
                (6, "x".to_string(), -1, 0, 0),
                (9, digest.clone(), 0, 0, 0)
            ]
        );
        assert_eq!(postcard::to_stdvec(&meta).unwrap(), &bytes[..]);
    }

    /// Snapshots of version 4 (fixed-width columns) and 3 (metadata listed
    /// by sample id) open to the same state as one of version 5 (packed
    /// columns, each text once with a number per row).
    #[test]
    fn fixed_width_and_metadata_by_id_from_versions_4_and_3_still_open() {
        use crate::log::event::{DeviceGroup, StoredSample, TypeBatch};
        let texts = ["{\"m\":\"shared\"}", "{\"hrv\":\"61@0;63@1\"}"];
        let samples = |type_id: &str, id0: u128| TypeBatch {
            type_id: type_id.into(),
            samples: (0..50u128)
                .map(|i| StoredSample {
                    id: (id0 + i).to_be_bytes(),
                    start_us: i as i64 * 60_000_000,
                    start_offset_min: 60,
                    end_us: i as i64 * 60_000_000,
                    end_offset_min: 60,
                    value: 60.0 + i as f64,
                    metadata: match i % 3 {
                        0 => None,
                        1 => Some(texts[0].into()),
                        _ => Some(format!("{{\"n\":{i}}}")),
                    },
                })
                .collect(),
        };
        let mut builder = ProjectionBuilder::new();
        let event = Event::DeviceSamplesAdded {
            source: "watch".into(),
            groups: vec![DeviceGroup {
                device: None,
                batches: vec![samples("heart_rate", 1), samples("step_count", 1000)],
            }],
        };
        builder
            .add(1, Envelope { at_us: 1, event })
            .unwrap_or_else(|_| panic!("samples apply"));
        let event = Event::DeviceSamplesAdded {
            source: "phone".into(),
            groups: vec![DeviceGroup {
                device: None,
                batches: vec![TypeBatch {
                    type_id: "body_mass".into(),
                    samples: vec![StoredSample {
                        id: 5000u128.to_be_bytes(),
                        start_us: 0,
                        start_offset_min: 0,
                        end_us: 0,
                        end_offset_min: 0,
                        value: 70.0,
                        metadata: Some(texts[1].into()),
                    }],
                }],
            }],
        };
        builder
            .add(2, Envelope { at_us: 2, event })
            .unwrap_or_else(|_| panic!("samples apply"));
        let projection = builder.finish();
        let apps = Apps::default();
        let (at, packed) = capture(&projection, &apps, 0, |_| Vec::new());
        assert_eq!(packed[0], FORMAT_VERSION);
        let mut sections = Plain::copy_of(&packed[1..]);
        let mut section = || sections.take_trailing_section().unwrap();
        let (pinned, audit, meta) = (section(), section(), section());
        let older = |version: u8, rows: Vec<u8>, meta: Vec<u8>| {
            let mut plain = vec![version];
            plain.extend_from_slice(&rows);
            for section in [&meta[..], &audit[..], &pinned[..]] {
                plain.extend_from_slice(section);
                plain.extend_from_slice(&(section.len() as u64).to_le_bytes());
            }
            plain
        };

        // The same state as version 4 wrote it.
        let mut rows = Vec::new();
        let fixed = postcard::from_bytes::<Meta>(&meta)
            .unwrap()
            .map_columns(|c| {
                let cols = projection.types[usize::from(c.ty)].read();
                let (n, texts) = cols.encode_live(&mut rows);
                assert_eq!(n as u64, c.rows);
                assert_eq!(texts, c.texts);
                TypeTexts {
                    ty: c.ty,
                    rows: c.rows,
                    texts: c.texts,
                }
            });
        let v4 = older(
            FORMAT_FIXED_WIDTH,
            rows,
            postcard::to_stdvec(&fixed).unwrap(),
        );
        assert!(v4.len() > packed.len(), "version 5 on packs the columns");

        // The same state as version 3 wrote it.
        let meta: Meta = postcard::from_bytes(&meta).unwrap();
        let mut rows = Vec::new();
        let meta = meta.map_columns(|c| {
            let cols = projection.types[usize::from(c.ty)].read();
            let mut encoded = Vec::new();
            let (n, _) = cols.encode_live(&mut encoded);
            rows.extend_from_slice(&encoded[..n * ENCODED_ROW_BYTES]);
            let metadata = (0..cols.len())
                .filter_map(|r| Some((cols.id_of(r), cols.row(r).metadata?.to_string())))
                .collect();
            TypeMeta {
                ty: c.ty,
                rows: c.rows,
                metadata,
            }
        });
        assert!(meta.columns.iter().any(|c| c.metadata.len() > 1));
        let v3 = older(
            FORMAT_METADATA_BY_ID,
            rows,
            postcard::to_stdvec(&meta).unwrap(),
        );
        assert!(v3.len() > v4.len(), "version 4 lists each text once");

        let dump = |plain: &[u8]| {
            let start = decode_bytes(plain, at, None).unwrap_or_else(|_| panic!("opens"));
            canonical_dump(&start.builder.finish(), &start.registry)
        };
        let expected = canonical_dump(&projection, &Registry::default());
        assert_eq!(dump(&packed), expected);
        assert_eq!(dump(&v4), expected);
        assert_eq!(dump(&v3), expected);
        let heart_rate = catalogue::lookup("heart_rate").unwrap();
        let start = decode_bytes(&v3, at, None).unwrap_or_else(|_| panic!("opens"));
        let reopened = start.builder.finish();
        let cols = reopened.types[usize::from(heart_rate.0)].read();
        let r = cols.find(2).unwrap();
        assert_eq!(cols.row(r).metadata.as_deref(), Some(texts[0]));
    }

    #[test]
    fn pinned_types_ride_along_and_snapshots_from_before_them_still_open() {
        let mut builder = ProjectionBuilder::new();
        builder
            .add(
                1,
                Envelope {
                    at_us: 1,
                    event: Event::TypesPinned {
                        type_ids: vec!["body_mass".into(), "step_count".into()],
                    },
                },
            )
            .unwrap_or_else(|_| panic!("a pin applies"));
        let projection = builder.finish();
        let (at, plain) = capture(&projection, &Apps::default(), 0, |_| Vec::new());
        let start =
            decode_bytes(&plain, at, None).unwrap_or_else(|_| panic!("a fresh snapshot opens"));
        assert_eq!(
            start.builder.finish().pinned_types(),
            ["body_mass", "step_count"]
        );
        // The form before pins: version 2, the audit last.
        let mut rest = Plain::copy_of(&plain[1..]);
        rest.take_trailing_section().unwrap();
        let mut old = vec![FORMAT_WITHOUT_PINS];
        old.extend_from_slice(&rest.into_bytes());
        let start =
            decode_bytes(&old, at, None).unwrap_or_else(|_| panic!("a version 2 snapshot opens"));
        assert!(start.builder.finish().pinned_types().is_empty());
    }
}
