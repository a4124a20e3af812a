//! The in-memory projection of the log that every query reads.
//!
//! It exists only while the store is unlocked: built by replay at unlock,
//! updated by the writer after each commit, wiped at lock.

mod columns;
pub mod derived_ids;
mod packed;
pub mod snapshot;
mod sync_ids;
mod text_pool;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use hashbrown::{HashMap, HashSet};
use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use tokio::sync::broadcast;

use columns::MAX_DEVICE_SLOT;
pub use columns::{Row, RowColumns, TypeColumns};
use derived_ids::{DerivedId, IdDeriver, SourceDigest};
use sync_ids::SyncIds;
pub use sync_ids::SyncTag;

use crate::catalogue::{self, TypeIndex};
use crate::log::chain::LogHead;
use crate::log::event::{Device, Envelope, Event, SourceKey, StoredSample, SyncRecord, TypeBatch};
use crate::log::replay::Walked;
use crate::query::series::SeriesCache;

/// What observers hear from the projection.
#[derive(Clone, Debug)]
pub enum Note {
    /// Log record `seq` changed these types; each with the source and device
    /// of the samples it touched (one entry per distinct pair).
    Changed {
        seq: u64,
        touched: Arc<[(TypeIndex, u32)]>,
    },
    /// The store locked: the projection is gone.
    Locked,
}

/// A deleted sample, for the change feed.
#[derive(Clone, Copy, Debug)]
pub struct Deletion {
    pub seq: u64,
    pub id: u128,
    pub ty: TypeIndex,
    pub source: u32,
}

/// Deleted samples in log order, per type and per type and source: a
/// caller that reads only its own samples never walks anyone else's.
#[derive(Default)]
struct Deletions {
    by_type: HashMap<TypeIndex, Vec<Deletion>>,
    by_source: HashMap<(TypeIndex, u32), Vec<Deletion>>,
}

impl Deletions {
    fn push(&mut self, d: Deletion) {
        self.by_type.entry(d.ty).or_default().push(d);
        self.by_source.entry((d.ty, d.source)).or_default().push(d);
    }
}

/// The devices of one source, by slot: a sample's device column holds a
/// slot within its own source, so what one app writes never shifts the
/// numbering of another's. Slot 0 means "no device".
#[derive(Default)]
struct SourceDevices {
    list: Vec<Arc<Device>>,
    slots: HashMap<Arc<Device>, u16>,
}

impl SourceDevices {
    fn intern(&mut self, device: Option<&Device>) -> u16 {
        let Some(device) = device else { return 0 };
        if let Some(&slot) = self.slots.get(device) {
            return slot;
        }
        // Writes are capped far below this (`MAX_DEVICES_PER_SOURCE`); a log
        // written before the cap that names more shares the source's last
        // slot, and replay never fails over it.
        if self.list.len() >= usize::from(MAX_DEVICE_SLOT) {
            return MAX_DEVICE_SLOT;
        }
        let device = Arc::new(device.clone());
        self.list.push(device.clone());
        let slot = self.list.len() as u16;
        self.slots.insert(device, slot);
        slot
    }

    fn get(&self, slot: u16) -> Option<&Arc<Device>> {
        slot.checked_sub(1)
            .and_then(|i| self.list.get(usize::from(i)))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the log names an unknown sample type")]
pub struct UnknownType;

/// Interned source names (the app that wrote a sample), each with its
/// devices.
#[derive(Default)]
struct Sources {
    names: Vec<Arc<str>>,
    ids: HashMap<Arc<str>, u32>,
    devices: Vec<SourceDevices>,
    /// Each name hashed: what derived ids are tweaked by.
    digests: Vec<SourceDigest>,
}

impl Sources {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        let name: Arc<str> = name.into();
        self.names.push(name.clone());
        self.digests.push(SourceDigest::of(&name));
        self.ids.insert(name, id);
        self.devices.push(SourceDevices::default());
        id
    }

    fn intern_device(&mut self, source: u32, device: Option<&Device>) -> u16 {
        self.devices[source as usize].intern(device)
    }

    fn devices_of(&self, name: &str) -> Option<&SourceDevices> {
        let id = self.ids.get(name)?;
        self.devices.get(*id as usize)
    }
}

pub struct Projection {
    types: Vec<RwLock<TypeColumns>>,
    /// Which types hold any row: lookups by id skip the rest without locking.
    populated: Vec<AtomicBool>,
    sources: RwLock<Sources>,
    /// Each source's sync identifiers and the live samples holding them.
    sync_ids: RwLock<SyncIds>,
    /// Derives imported samples' ids from their sync identifiers (see
    /// [`derived_ids`]); from the root key at unlock, dropped (and
    /// zeroised) at lock.
    derived_ids: RwLock<Option<IdDeriver>>,
    /// Deletions in log order, for the change feed.
    deletions: RwLock<Deletions>,
    /// The member types of every correlation ever written, deleted ones
    /// included: what decides who sees a correlation and its deletion.
    correlations: RwLock<HashMap<u128, Box<[TypeIndex]>>>,
    /// The owner's source order, with a generation for derived data.
    priority: RwLock<(u64, Vec<SourceKey>)>,
    /// The last log record applied.
    applied_seq: AtomicU64,
    /// The owner's characteristics: (type id, value).
    characteristics: RwLock<Vec<(String, String)>>,
    /// The types pinned to the owner's summary, in order.
    pinned: RwLock<Vec<String>>,
    notes: broadcast::Sender<Note>,
    series: Vec<SeriesCache>,
    /// Per type, the copies of one source's rows handed to callers that
    /// read only their own, with the source generation each was made at.
    own_copies: Vec<Mutex<OwnCopies>>,
    /// Seals change-feed anchors; derived from the data key at unlock,
    /// zeroised at lock.
    anchor_key: RwLock<crate::crypto::SecretKey>,
    /// Where the projection stands in the log; held by the writer while it
    /// applies a commit, so a snapshot sees whole ones.
    cut: Mutex<Cut>,
    /// The newest snapshot: its sequence number and when it was taken.
    last_snapshot: Mutex<Option<(u64, i64)>>,
    /// The erasures applied since unlock: a snapshot leaves out the
    /// deletions they listed, as a replay (which cannot open those records)
    /// would.
    erasures: Mutex<Vec<ErasedScope>>,
    /// When records reached the log: for research exports' `_since`.
    arrivals: Mutex<ArrivalClock>,
}

/// When log records were committed, to the millisecond: `(first seq,
/// millisecond)` whenever the millisecond changes, so every record from
/// one mark to the next arrived in that mark's millisecond. Records up to
/// a snapshot are known only to have arrived by the time it was taken.
#[derive(Debug, Default)]
pub struct ArrivalClock {
    /// The snapshot started from: everything up to its record arrived by
    /// its time.
    base: Option<(u64, i64)>,
    /// `(seq, ms)` of the first record of each millisecond, ascending.
    marks: Vec<(u64, i64)>,
    last_seq: u64,
}

impl ArrivalClock {
    fn note(&mut self, seq: u64, at_us: i64) {
        // The writer's clock may step back (pending writes keep their own
        // time); arrival only moves forward.
        let ms = at_us.div_euclid(1000);
        if self.marks.last().is_none_or(|&(_, last)| ms > last) {
            self.marks.push((seq, ms));
        }
        self.last_seq = seq;
    }

    /// The last record that certainly reached the log at or before
    /// `since_us`: every record after it may have arrived later. Errs
    /// towards including more, never fewer.
    pub fn settled_by(&self, since_us: i64) -> u64 {
        let since_ms = since_us.div_euclid(1000);
        // A millisecond before `since`'s is settled; `since`'s own is not
        // (its records may be a microsecond later).
        let settled = self.marks.partition_point(|&(_, ms)| ms < since_ms);
        let from_marks = match self.marks.get(settled) {
            Some(&(seq, _)) => seq.saturating_sub(1),
            None if settled > 0 => self.last_seq,
            None => 0,
        };
        let from_base = match self.base {
            Some((seq, taken_us)) if taken_us <= since_us => seq,
            _ => 0,
        };
        from_marks.max(from_base)
    }
}

/// What one erasure covered: a source (all if `None`) and a type (all if
/// `None`), up to record `seq`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ErasedScope {
    pub seq: u64,
    pub source: Option<u32>,
    pub ty: Option<TypeIndex>,
}

impl ErasedScope {
    /// Whether `d` lists a sample this erasure covered.
    pub fn covers(&self, d: &Deletion) -> bool {
        d.seq <= self.seq
            && self.source.is_none_or(|s| s == d.source)
            && self.ty.is_none_or(|t| t == d.ty)
    }
}

impl Default for Projection {
    fn default() -> Self {
        Projection::with_types(catalogue::all().iter().map(|_| TypeColumns::default()))
    }
}

fn row_from(
    sample: &StoredSample,
    source: u32,
    device: u16,
    seq: u64,
    derived: &HashMap<u128, u8>,
) -> Row {
    let id = u128::from_be_bytes(sample.id);
    Row {
        derived: derived.get(&id).copied(),
        id,
        start_us: sample.start_us,
        start_offset_min: sample.start_offset_min,
        end_us: sample.end_us,
        end_offset_min: sample.end_offset_min,
        value: sample.value,
        source,
        device,
        seq: u32::try_from(seq).unwrap_or(u32::MAX),
        metadata: sample.metadata.as_deref().map(Box::from),
    }
}

/// The member types of the correlations an add event writes, keyed by the
/// correlation's id. Members are written in the same request as their
/// correlation, so the event itself says what type each one is.
/// Members written in the same request but sealed in records of their own
/// type (one record per source and type) are found through `earlier`.
fn correlation_members(
    groups: &Groups<'_>,
    earlier: impl Fn(u128) -> Option<TypeIndex>,
) -> Vec<(u128, Box<[TypeIndex]>)> {
    let batches = || groups.iter().flat_map(|(_, batches)| batches.iter());
    let is_correlation = |b: &TypeBatch| {
        catalogue::lookup(&b.type_id).is_some_and(|t| catalogue::get(t).members().is_some())
    };
    if !batches().any(is_correlation) {
        return Vec::new();
    }
    let mut type_of: HashMap<u128, TypeIndex> = HashMap::new();
    for b in batches() {
        if let Some(t) = catalogue::lookup(&b.type_id) {
            for s in &b.samples {
                type_of.insert(u128::from_be_bytes(s.id), t);
            }
        }
    }
    batches()
        .filter(|b| is_correlation(b))
        .flat_map(|b| {
            let t = catalogue::lookup(&b.type_id).expect("a correlation type");
            b.samples.iter().map(move |s| (t, s))
        })
        .map(|(t, s)| {
            let mut types: Vec<TypeIndex> = crate::samples::member_ids(t, s.metadata.as_deref())
                .iter()
                .filter_map(|id| type_of.get(id).copied().or_else(|| earlier(*id)))
                .collect();
            types.sort_unstable();
            types.dedup();
            (u128::from_be_bytes(s.id), types.into())
        })
        .collect()
}

/// The groups of an add event, whatever its variant.
type Groups<'a> = Vec<(Option<&'a Device>, &'a [TypeBatch])>;

fn device_groups(event: &Event) -> Option<(&str, Groups<'_>)> {
    match event {
        Event::SamplesAdded { source, batches } => Some((source, vec![(None, batches)])),
        Event::DeviceSamplesAdded { source, groups }
        | Event::SamplesWritten { source, groups, .. }
        | Event::SamplesImported { source, groups, .. } => Some((
            source,
            groups
                .iter()
                .map(|g| (g.device.as_ref(), g.batches.as_slice()))
                .collect(),
        )),
        _ => None,
    }
}

/// The sync identifiers an event gives its samples, with each sample's type.
fn sync_tags(event: &Event, source: u32) -> Result<Tags<'_>, UnknownType> {
    let (Event::SamplesWritten { groups, synced, .. }
    | Event::SamplesImported { groups, synced, .. }) = event
    else {
        return Ok(Vec::new());
    };
    if synced.is_empty() {
        return Ok(Vec::new());
    }
    let wanted: HashMap<[u8; 16], &SyncRecord> = synced.iter().map(|r| (r.id, r)).collect();
    let mut out = Vec::with_capacity(synced.len());
    for batch in groups.iter().flat_map(|g| &g.batches) {
        let ty = catalogue::lookup(&batch.type_id).ok_or(UnknownType)?;
        for sample in &batch.samples {
            if let Some(record) = wanted.get(&sample.id) {
                let tag = SyncTag {
                    sync_id: record.sync_id.as_str(),
                    version: record.version,
                    ty,
                    source,
                };
                out.push((u128::from_be_bytes(sample.id), tag));
            }
        }
    }
    Ok(out)
}

/// Sample ids with the sync tags an event gives them.
type Tags<'t> = Vec<(u128, SyncTag<&'t str>)>;

/// Who holds a sync identifier a write names, as the writer asks
/// ([`Projection::sync_holder`]).
#[derive(Debug, PartialEq)]
pub enum SyncHolder {
    /// The live sample with this id holds it.
    Held(u128, SyncTag),
    /// No live sample of the source holds it; a new one may take the id
    /// derived from it, if there is one to give.
    Free(Option<DerivedId>),
}

/// Who has the id derived from a sync identifier.
enum DerivedSlot {
    /// The source's live sample holding the identifier.
    Held(u128),
    /// Nobody: a new sample may take it.
    Free(DerivedId),
    /// Another sample, or a deleted one.
    Taken,
}

/// The tag of a sample whose id is derived from `sync_id`.
fn derived_tag(sync_id: &str, ty: TypeIndex, source: u32) -> SyncTag {
    SyncTag {
        sync_id: sync_id.into(),
        version: 0,
        ty,
        source,
    }
}

/// The samples of `event` whose ids are derived from their sync
/// identifiers (by id, the bits each row keeps), and the tags that need
/// records. An import's event says which samples are derived; in any
/// other, each tag is derived again ([`split_derived`]).
fn derived_and_records<'t>(
    event: &Event,
    deriver: Option<&IdDeriver>,
    sources: &Sources,
    tags: Tags<'t>,
) -> (HashMap<u128, u8>, Tags<'t>) {
    let Event::SamplesImported {
        groups, derived, ..
    } = event
    else {
        return split_derived(deriver, sources, tags);
    };
    let samples = groups
        .iter()
        .flat_map(|g| &g.batches)
        .flat_map(|b| &b.samples);
    let marked = samples
        .zip(derived)
        .filter(|&(_, &bits)| bits <= derived_ids::KEPT_MASK)
        .map(|(s, &bits)| (u128::from_be_bytes(s.id), bits))
        .collect();
    (marked, tags)
}

/// Splits an event's sync tags into the samples whose ids are derived from
/// theirs (by id, the bits each row keeps) and the tags that need records.
/// Each is derived again here: a row is marked only if the ids agree.
fn split_derived<'t>(
    deriver: Option<&IdDeriver>,
    sources: &Sources,
    tags: Tags<'t>,
) -> (HashMap<u128, u8>, Tags<'t>) {
    let mut derived = HashMap::new();
    let Some(deriver) = deriver else {
        return (derived, tags);
    };
    let records = tags
        .into_iter()
        .filter(|(id, tag)| match derived_bits(deriver, sources, *id, tag) {
            Some(bits) => {
                derived.insert(*id, bits);
                false
            }
            None => true,
        })
        .collect();
    (derived, records)
}

/// The bits sample `id`'s row keeps if its id is the one derived from
/// `tag`.
fn derived_bits(
    deriver: &IdDeriver,
    sources: &Sources,
    id: u128,
    tag: &SyncTag<&str>,
) -> Option<u8> {
    if tag.version != 0 {
        return None;
    }
    let digest = IdDeriver::digest_of(tag.sync_id)?;
    let source = sources.digests.get(tag.source as usize)?;
    let d = deriver.derive(source, tag.ty, &digest);
    (d.id == id).then_some(d.kept)
}

/// Whether samples of `ty` can be members of some correlation type.
fn is_member_type(ty: TypeIndex) -> bool {
    static MEMBERS: std::sync::OnceLock<HashSet<TypeIndex>> = std::sync::OnceLock::new();
    MEMBERS
        .get_or_init(|| {
            catalogue::all()
                .iter()
                .filter_map(|t| t.members())
                .flatten()
                .filter_map(|m| catalogue::lookup(m))
                .collect()
        })
        .contains(&ty)
}

/// Where the projection stands in the log: the last record applied
/// (registry records included), and what the log up to it says about data
/// keys (which a snapshot carries for the next unlock).
#[derive(Clone, Debug)]
pub struct Cut {
    pub head: LogHead,
    pub keys: Walked,
}

impl Default for Cut {
    fn default() -> Cut {
        Cut {
            head: LogHead::EMPTY,
            keys: Walked::default(),
        }
    }
}

/// The types an erasure of `type_id` covers: that one, or all.
fn erased_types(type_id: Option<&str>) -> Vec<TypeIndex> {
    match type_id {
        Some(id) => catalogue::lookup(id).into_iter().collect(),
        None => (0..catalogue::all().len())
            .map(|t| TypeIndex(t as u16))
            .collect(),
    }
}

/// The samples an event deletes: a deletion's, or those a write replaces.
fn deleted_ids(event: &Event) -> &[[u8; 16]] {
    match event {
        Event::SamplesDeleted { ids, .. } => ids,
        Event::SamplesWritten { replaced, .. } | Event::SamplesImported { replaced, .. } => {
            replaced
        }
        _ => &[],
    }
}

impl Projection {
    fn with_types(types: impl Iterator<Item = TypeColumns>) -> Projection {
        let types: Vec<_> = types.map(RwLock::new).collect();
        let populated = types
            .iter()
            .map(|t| AtomicBool::new(!t.read().is_empty()))
            .collect();
        let series = types.iter().map(|_| SeriesCache::default()).collect();
        let own_copies = types.iter().map(|_| Mutex::default()).collect();
        Projection {
            types,
            populated,
            sources: RwLock::default(),
            sync_ids: RwLock::default(),
            derived_ids: RwLock::default(),
            deletions: RwLock::default(),
            correlations: RwLock::default(),
            priority: RwLock::default(),
            characteristics: RwLock::default(),
            pinned: RwLock::default(),
            applied_seq: AtomicU64::new(0),
            notes: broadcast::channel(1024).0,
            series,
            own_copies,
            anchor_key: RwLock::new(crate::crypto::random_key()),
            cut: Mutex::new(Cut::default()),
            last_snapshot: Mutex::new(None),
            arrivals: Mutex::new(ArrivalClock::default()),
            erasures: Mutex::new(Vec::new()),
        }
    }

    pub fn anchor_key(&self) -> crate::crypto::SecretKey {
        self.anchor_key.read().clone()
    }

    pub fn set_anchor_key(&mut self, key: crate::crypto::SecretKey) {
        *self.anchor_key.get_mut() = key;
    }

    /// Holds the writer's place while it applies a commit: a snapshot taken
    /// under it sees every record up to the head it names and none after.
    pub fn cut(&self) -> parking_lot::MutexGuard<'_, Cut> {
        self.cut.lock()
    }

    /// When records reached the log (see [`ArrivalClock`]).
    pub fn arrivals(&self) -> parking_lot::MutexGuard<'_, ArrivalClock> {
        self.arrivals.lock()
    }

    /// The newest snapshot's sequence number and when it was taken.
    pub fn last_snapshot(&self) -> Option<(u64, i64)> {
        *self.last_snapshot.lock()
    }

    /// The last log record applied: the head of the change feed.
    pub fn applied_seq(&self) -> u64 {
        self.applied_seq.load(Ordering::Acquire)
    }

    /// Hears about every change applied from now on, and about the lock.
    pub fn subscribe(&self) -> broadcast::Receiver<Note> {
        self.notes.subscribe()
    }

    /// The device in `slot` of `source` (0: none).
    pub fn device(&self, source: u32, slot: u16) -> Option<Device> {
        self.device_shared(source, slot).map(|d| Device::clone(&d))
    }

    /// The device in `slot` of `source`, shared rather than copied.
    pub fn device_shared(&self, source: u32, slot: u16) -> Option<Arc<Device>> {
        let sources = self.sources.read();
        sources
            .devices
            .get(source as usize)
            .and_then(|d| d.get(slot))
            .cloned()
    }

    /// How many distinct devices the source `name` has written with.
    pub fn device_count(&self, name: &str) -> usize {
        self.sources
            .read()
            .devices_of(name)
            .map_or(0, |d| d.list.len())
    }

    /// Whether the source `name` has written with `device`.
    pub fn knows_device(&self, name: &str, device: &Device) -> bool {
        self.sources
            .read()
            .devices_of(name)
            .is_some_and(|d| d.slots.contains_key(device))
    }

    /// The owner's characteristics: (type id, value).
    pub fn characteristics(&self) -> Vec<(String, String)> {
        self.characteristics.read().clone()
    }

    /// The types pinned to the owner's summary, in order.
    pub fn pinned_types(&self) -> Vec<String> {
        self.pinned.read().clone()
    }

    /// The member types of the correlation `id` (also once deleted): empty
    /// for anything else.
    pub fn correlation_member_types(&self, id: u128) -> Box<[TypeIndex]> {
        self.correlations
            .read()
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }

    /// The owner's source order and its generation.
    pub fn priority(&self) -> (u64, Vec<SourceKey>) {
        self.priority.read().clone()
    }

    /// Deletions of `ty` (by `source` only, if given) with `seq > after`,
    /// in log order.
    pub fn deletions_after(&self, ty: TypeIndex, source: Option<u32>, after: u64) -> Vec<Deletion> {
        let deletions = self.deletions.read();
        let list = match source {
            None => deletions.by_type.get(&ty),
            Some(source) => deletions.by_source.get(&(ty, source)),
        };
        let Some(list) = list else {
            return Vec::new();
        };
        let from = list.partition_point(|x| x.seq <= after);
        list[from..].to_vec()
    }

    pub fn series_cache(&self, ty: TypeIndex) -> &SeriesCache {
        &self.series[ty.0 as usize]
    }

    /// The live rows of `ty` that `source` wrote, as columns of their own.
    /// Kept until that source's rows of the type change: others' writes
    /// neither rebuild it nor make it slower to get, and the type's lock is
    /// held only while copying.
    pub fn only_source(&self, ty: TypeIndex, source: u32) -> Arc<TypeColumns> {
        let cols = self.columns(ty);
        let generation = cols.source_generation(source);
        let mut copies = self.own_copies[ty.0 as usize].lock();
        if let Some((made_at, copy)) = copies.get(&source) {
            if *made_at == generation {
                return copy.clone();
            }
        }
        let copy = Arc::new(cols.only_source(source));
        if let Some((_, stale)) = copies.insert(source, (generation, copy.clone())) {
            wipe_shared(stale);
        }
        copy
    }

    pub fn columns(&self, ty: TypeIndex) -> RwLockReadGuard<'_, TypeColumns> {
        self.types[ty.0 as usize].read()
    }

    pub fn source_id(&self, name: &str) -> Option<u32> {
        self.sources.read().ids.get(name).copied()
    }

    pub fn intern_source(&self, name: &str) -> u32 {
        if let Some(id) = self.source_id(name) {
            return id;
        }
        self.sources.write().intern(name)
    }

    pub fn source_name(&self, id: u32) -> Arc<str> {
        self.sources.read().names[id as usize].clone()
    }

    /// Every source whose name starts with `prefix`.
    pub fn sources_starting_with(&self, prefix: &str) -> Vec<String> {
        self.sources
            .read()
            .names
            .iter()
            .filter(|n| n.starts_with(prefix))
            .map(|n| n.to_string())
            .collect()
    }

    /// The name of source `id`, if it is one.
    pub fn source_name_checked(&self, id: u32) -> Option<Arc<str>> {
        self.sources.read().names.get(id as usize).cloned()
    }

    /// The live sample of `source` that holds `sync_id`: its id and tag. A
    /// sample whose id is derived from its identifier is looked for among
    /// those of type `ty`, the type of the sample the caller would write
    /// (an import's identifier is a digest of its record, type included).
    pub fn synced(&self, source: u32, sync_id: &str, ty: TypeIndex) -> Option<(u128, SyncTag)> {
        if let Some((id, tag)) = self.sync_ids.read().find(source, sync_id) {
            return Some((id, tag.into_owned()));
        }
        let source_digest = *self.sources.read().digests.get(source as usize)?;
        match self.derived_slot(Some(source), &source_digest, ty, sync_id)? {
            DerivedSlot::Held(id) => Some((id, derived_tag(sync_id, ty, source))),
            DerivedSlot::Free(_) | DerivedSlot::Taken => None,
        }
    }

    /// For a write of `source` with `sync_id` (its sample of type `ty`):
    /// the live sample holding the identifier, as [`Projection::synced`]
    /// finds it, or else the id a new sample holding it (at version 0) may
    /// be given, if it can be derived from it: none while no deriver is
    /// held, for another identifier, for an id already given, and for a
    /// (type, source) with deletions. One look at the id index serves both.
    pub fn sync_holder(&self, source: &str, sync_id: &str, ty: TypeIndex) -> SyncHolder {
        let (source_id, source_digest) = {
            let sources = self.sources.read();
            match sources.ids.get(source) {
                Some(&id) => (Some(id), sources.digests[id as usize]),
                None => (None, SourceDigest::of(source)),
            }
        };
        if let Some(id) = source_id {
            if let Some((id, tag)) = self.sync_ids.read().find(id, sync_id) {
                return SyncHolder::Held(id, tag.into_owned());
            }
        }
        match self.derived_slot(source_id, &source_digest, ty, sync_id) {
            Some(DerivedSlot::Held(id)) => {
                let source = source_id.expect("only a known source holds a derived id");
                SyncHolder::Held(id, derived_tag(sync_id, ty, source))
            }
            Some(DerivedSlot::Free(derived)) if !self.has_deletions(source_id, ty) => {
                SyncHolder::Free(Some(derived))
            }
            _ => SyncHolder::Free(None),
        }
    }

    /// The id derived for `sync_id` of the source with `source_digest`
    /// (`source`, if it is known) and type `ty`, and who has it: `None`
    /// while no deriver is held, and for an identifier of another form.
    fn derived_slot(
        &self,
        source: Option<u32>,
        source_digest: &SourceDigest,
        ty: TypeIndex,
        sync_id: &str,
    ) -> Option<DerivedSlot> {
        let digest = IdDeriver::digest_of(sync_id)?;
        let derived = self
            .derived_ids
            .read()
            .as_ref()?
            .derive(source_digest, ty, &digest);
        let cols = self.types[usize::from(ty.0)].read();
        let Some(r) = cols.find(derived.id) else {
            return Some(DerivedSlot::Free(derived));
        };
        let holds = !cols.is_deleted(r)
            && Some(cols.source_of(r)) == source
            && cols.derived_of(r) == Some(derived.kept);
        Some(if holds {
            DerivedSlot::Held(derived.id)
        } else {
            DerivedSlot::Taken
        })
    }

    /// Whether samples of `source` and type `ty` were deleted: such a
    /// (type, source) derives no new id. A deleted sample's id is not given
    /// again while the change feed lists its deletion (an app would read
    /// it deleted and added).
    fn has_deletions(&self, source: Option<u32>, ty: TypeIndex) -> bool {
        source.is_some_and(|id| {
            self.deletions
                .read()
                .by_source
                .get(&(ty, id))
                .is_some_and(|d| !d.is_empty())
        })
    }

    /// The sync identifier and version of `row`, of type `ty`, if it has
    /// one.
    pub fn sync_tag(&self, ty: TypeIndex, row: &Row) -> Option<(Box<str>, i64)> {
        if let Some(kept) = row.derived {
            let deriver = self.derived_ids.read();
            let source = *self.sources.read().digests.get(row.source as usize)?;
            let derived = DerivedId { id: row.id, kept };
            let digest = deriver.as_ref()?.digest(&source, ty, derived);
            return Some((IdDeriver::spell(&digest).into(), 0));
        }
        self.sync_ids
            .read()
            .tag(row.id)
            .map(|t| (t.sync_id.into(), t.version))
    }

    /// The sync identifier and version of live sample `id`, if it has one.
    #[cfg(test)]
    pub fn sync_tag_of(&self, id: u128) -> Option<(Box<str>, i64)> {
        let (ty, row) = self.find(id)?;
        self.sync_tag(ty, &row)
    }

    /// The id to give a new sample of `source` and type `ty` holding
    /// `sync_id` (at version 0), if it can be derived from it: `None` while
    /// no deriver is held, for another identifier, for an id already
    /// given, and for a (type, source) with deletions (see
    /// [`Projection::has_deletions`]). The writer asks
    /// [`Projection::sync_holder`], which answers this too.
    #[cfg(test)]
    pub fn derived_id(&self, source: &str, ty: TypeIndex, sync_id: &str) -> Option<u128> {
        let (source_id, source_digest) = {
            let sources = self.sources.read();
            match sources.ids.get(source) {
                Some(&id) => (Some(id), sources.digests[id as usize]),
                None => (None, SourceDigest::of(source)),
            }
        };
        if self.has_deletions(source_id, ty) {
            return None;
        }
        match self.derived_slot(source_id, &source_digest, ty, sync_id)? {
            DerivedSlot::Free(derived) => Some(derived.id),
            DerivedSlot::Held(_) | DerivedSlot::Taken => None,
        }
    }

    /// The live sample with `id`, with its type.
    pub fn find(&self, id: u128) -> Option<(TypeIndex, Row)> {
        self.types.iter().enumerate().find_map(|(t, cols)| {
            if !self.populated[t].load(Ordering::Acquire) {
                return None;
            }
            let cols = cols.read();
            let r = cols.find(id)?;
            (!cols.is_deleted(r)).then(|| (TypeIndex(t as u16), cols.row(r)))
        })
    }

    /// Applies committed event `seq`.
    pub fn apply(&self, seq: u64, envelope: &Envelope) -> Result<(), UnknownType> {
        let mut touched: Vec<(TypeIndex, u32)> = Vec::new();
        let ids = deleted_ids(&envelope.event);
        if !ids.is_empty() {
            let mut deletions = self.deletions.write();
            let mut sync_ids = self.sync_ids.write();
            for id in ids {
                let id = u128::from_be_bytes(*id);
                sync_ids.remove(id);
                for (t, cols) in self.types.iter().enumerate() {
                    let mut cols = cols.write();
                    let Some(r) = cols.find(id) else { continue };
                    let source = cols.source_of(r);
                    if cols.delete(id) {
                        cols.touch(u32::try_from(seq).unwrap_or(u32::MAX));
                        let ty = TypeIndex(t as u16);
                        deletions.push(Deletion {
                            seq,
                            id,
                            ty,
                            source,
                        });
                        touched.push((ty, source));
                    }
                    break;
                }
            }
        }
        if let Some((source, groups)) = device_groups(&envelope.event) {
            let members = correlation_members(&groups, |id| self.find(id).map(|(t, _)| t));
            if !members.is_empty() {
                self.correlations.write().extend(members);
            }
            let source = self.intern_source(source);
            let tags = sync_tags(&envelope.event, source)?;
            let (derived, records) = derived_and_records(
                &envelope.event,
                self.derived_ids.read().as_ref(),
                &self.sources.read(),
                tags,
            );
            if !records.is_empty() {
                let mut sync_ids = self.sync_ids.write();
                for (id, tag) in records {
                    sync_ids.insert(id, tag);
                }
            }
            for (device, batches) in groups {
                let device = self.sources.write().intern_device(source, device);
                for batch in batches {
                    let ty = catalogue::lookup(&batch.type_id).ok_or(UnknownType)?;
                    let rows = batch
                        .samples
                        .iter()
                        .map(|s| row_from(s, source, device, seq, &derived))
                        .collect();
                    self.types[ty.0 as usize].write().insert(rows);
                    self.populated[ty.0 as usize].store(true, Ordering::Release);
                    touched.push((ty, source));
                }
            }
        }
        match &envelope.event {
            Event::KeysDestroyed {
                source, type_id, ..
            } => {
                self.erase(seq, source.as_deref(), type_id.as_deref(), &mut touched);
            }
            Event::SourcePriority { order } => {
                let mut p = self.priority.write();
                *p = (p.0 + 1, order.clone());
            }
            Event::CharacteristicsSet { values } => {
                let mut c = self.characteristics.write();
                wipe_pairs(&mut c);
                *c = values.clone();
            }
            Event::TypesPinned { type_ids } => {
                let mut p = self.pinned.write();
                wipe_strings(&mut p);
                *p = type_ids.clone();
            }
            _ => {}
        }
        self.arrivals.lock().note(seq, envelope.at_us);
        self.applied_seq.store(seq, Ordering::Release);
        touched.sort_unstable();
        touched.dedup();
        let _ = self.notes.send(Note::Changed {
            seq,
            touched: touched.into(),
        });
        Ok(())
    }

    /// Drops every live sample of `source` (of every source if `None`) and
    /// of `type_id` (of every type if `None`): their keys were destroyed.
    /// Apps see them as deletions in the change feed.
    fn erase(
        &self,
        seq: u64,
        source: Option<&str>,
        type_id: Option<&str>,
        touched: &mut Vec<(TypeIndex, u32)>,
    ) {
        if source.is_none() && type_id.is_none() {
            return;
        }
        let source = match source {
            Some(name) => match self.source_id(name) {
                Some(id) => Some(id),
                None => return,
            },
            None => None,
        };
        let ty = match type_id {
            Some(id) => match catalogue::lookup(id) {
                Some(ty) => Some(ty),
                None => return,
            },
            None => None,
        };
        let types = erased_types(type_id);
        self.erasures.lock().push(ErasedScope { seq, source, ty });
        let mut deletions = self.deletions.write();
        let mut sync_ids = self.sync_ids.write();
        for ty in types {
            let mut cols = self.types[ty.0 as usize].write();
            let ids: Vec<(u128, u32)> = (0..cols.len())
                .filter(|&r| !cols.is_deleted(r) && source.is_none_or(|s| cols.source_of(r) == s))
                .map(|r| (cols.id_of(r), cols.source_of(r)))
                .collect();
            if ids.is_empty() {
                continue;
            }
            for (id, source) in ids {
                cols.delete(id);
                sync_ids.remove(id);
                deletions.push(Deletion {
                    seq,
                    id,
                    ty,
                    source,
                });
                touched.push((ty, source));
            }
            cols.touch(u32::try_from(seq).unwrap_or(u32::MAX));
        }
    }

    pub fn sample_count(&self) -> usize {
        self.types.iter().map(|c| c.read().live_len()).sum()
    }

    /// Builds each type's id index if it is not built yet: unlock leaves
    /// them to a background task (see [`TypeColumns::index`]).
    pub fn build_indexes(&self) {
        for cols in &self.types {
            cols.read().index();
        }
    }

    /// How many sync identifiers are held by records, not by derived ids.
    pub fn sync_records(&self) -> usize {
        self.sync_ids.read().len()
    }

    pub fn memory_bytes(&self) -> usize {
        self.types
            .iter()
            .map(|c| c.read().memory_bytes())
            .sum::<usize>()
            + self.sync_ids.read().memory_bytes()
    }

    /// Zeroises every column and sync identifier; tells observers.
    pub fn wipe(&self) {
        for (cols, populated) in self.types.iter().zip(&self.populated) {
            cols.write().wipe();
            populated.store(false, Ordering::Release);
        }
        for cache in &self.series {
            cache.clear();
        }
        for copies in &self.own_copies {
            for (_, (_, copy)) in copies.lock().drain() {
                wipe_shared(copy);
            }
        }
        self.sync_ids.write().wipe();
        *self.derived_ids.write() = None;
        *self.deletions.write() = Deletions::default();
        *self.correlations.write() = HashMap::new();
        for devices in &mut self.sources.write().devices {
            *devices = SourceDevices::default();
        }
        *self.priority.write() = (0, Vec::new());
        wipe_pairs(&mut self.characteristics.write());
        wipe_strings(&mut self.pinned.write());
        zeroize::Zeroize::zeroize(&mut **self.anchor_key.write());
        let _ = self.notes.send(Note::Locked);
    }
}

/// One type's copies of sources' rows: (source generation, copy) by source.
type OwnCopies = HashMap<u32, (u64, Arc<TypeColumns>)>;

/// Zeroises a shared copy of columns once no reader holds it any more (the
/// last reader's drop frees it otherwise; a copy lives one request).
fn wipe_shared(copy: Arc<TypeColumns>) {
    if let Ok(mut cols) = Arc::try_unwrap(copy) {
        cols.wipe();
    }
}

fn wipe_strings(strings: &mut Vec<String>) {
    for s in strings.iter_mut() {
        zeroize::Zeroize::zeroize(s);
    }
    strings.clear();
}

fn wipe_pairs(pairs: &mut Vec<(String, String)>) {
    for (k, v) in pairs.iter_mut() {
        zeroize::Zeroize::zeroize(k);
        zeroize::Zeroize::zeroize(v);
    }
    pairs.clear();
}

impl Drop for Projection {
    fn drop(&mut self) {
        self.wipe();
    }
}

/// Collects a whole log at unlock, then sorts and indexes once per type:
/// much cheaper than inserting record by record.
#[derive(Default)]
pub struct ProjectionBuilder {
    rows: Vec<RowColumns>,
    sources: Sources,
    sync_ids: SyncIds,
    derived_ids: Option<IdDeriver>,
    /// Per type, the snapshot row after the last one marked derived.
    base_marked: HashMap<TypeIndex, usize>,
    tombstones: HashSet<u128>,
    /// (seq, id) of each deletion, resolved to type and source at finish.
    deleted: Vec<(u64, u128)>,
    correlations: HashMap<u128, Box<[TypeIndex]>>,
    priority: (u64, Vec<SourceKey>),
    characteristics: Vec<(String, String)>,
    pinned: Vec<String>,
    last_seq: u64,
    /// Types of the member-type samples of the commit being read.
    recent_member_types: HashMap<u128, TypeIndex>,
    recent_at_us: Option<i64>,
    /// A snapshot's rows per type, when starting from one.
    base: Vec<Option<columns::ColumnData>>,
    /// A snapshot's deletions, resolved already.
    base_deletions: Vec<Deletion>,
    /// The snapshot started from: its sequence number and when it was taken.
    snapshot: Option<(u64, i64)>,
    arrivals: ArrivalClock,
}

impl ProjectionBuilder {
    pub fn new() -> ProjectionBuilder {
        ProjectionBuilder {
            rows: catalogue::all()
                .iter()
                .map(|_| RowColumns::default())
                .collect(),
            base: catalogue::all().iter().map(|_| None).collect(),
            ..ProjectionBuilder::default()
        }
    }

    /// Derives imported samples' ids with `key` (see [`derived_ids`]): the
    /// projection holds no sync record for them.
    pub fn with_derived_ids(mut self, key: &crate::crypto::SecretKey) -> ProjectionBuilder {
        self.derived_ids = Some(IdDeriver::new(key));
        self
    }

    /// A snapshot's sync tag, once its rows are in: a derived sample's is
    /// marked on its row, any other kept as a record.
    fn add_base_sync_tag(&mut self, id: u128, tag: SyncTag<&str>) {
        let bits = self
            .derived_ids
            .as_ref()
            .and_then(|deriver| derived_bits(deriver, &self.sources, id, &tag));
        let marked = bits.and_then(|bits| {
            let base = self.base[usize::from(tag.ty.0)].as_mut()?;
            let from = self.base_marked.entry(tag.ty).or_default();
            *from = base.mark_derived(*from, id, bits)?;
            Some(())
        });
        if marked.is_none() {
            self.sync_ids.insert(id, tag);
        }
    }

    pub fn add(&mut self, seq: u64, envelope: Envelope) -> Result<(), UnknownType> {
        self.last_seq = seq;
        self.arrivals.note(seq, envelope.at_us);
        self.note_member_samples(&envelope);
        for id in deleted_ids(&envelope.event) {
            let id = u128::from_be_bytes(*id);
            self.tombstones.insert(id);
            self.deleted.push((seq, id));
            self.sync_ids.remove(id);
        }
        if let Some((source, groups)) = device_groups(&envelope.event) {
            let recent = &self.recent_member_types;
            self.correlations
                .extend(correlation_members(&groups, |id| recent.get(&id).copied()));
            let source = self.sources.intern(source);
            let tags = sync_tags(&envelope.event, source)?;
            let (derived, records) = derived_and_records(
                &envelope.event,
                self.derived_ids.as_ref(),
                &self.sources,
                tags,
            );
            for (id, tag) in records {
                self.sync_ids.insert(id, tag);
            }
            for (device, batches) in groups {
                let device = self.sources.intern_device(source, device);
                for batch in batches {
                    let ty = catalogue::lookup(&batch.type_id).ok_or(UnknownType)?;
                    let rows = &mut self.rows[ty.0 as usize];
                    rows.extend(
                        batch
                            .samples
                            .iter()
                            .map(|s| row_from(s, source, device, seq, &derived)),
                    );
                }
            }
        }
        match envelope.event {
            Event::KeysDestroyed {
                source, type_id, ..
            } => self.erase(source.as_deref(), type_id.as_deref()),
            Event::SourcePriority { order } => {
                self.priority = (self.priority.0 + 1, order);
            }
            Event::CharacteristicsSet { values } => {
                wipe_pairs(&mut self.characteristics);
                self.characteristics = values;
            }
            Event::TypesPinned { type_ids } => {
                wipe_strings(&mut self.pinned);
                self.pinned = type_ids;
            }
            _ => {}
        }
        Ok(())
    }

    /// Remembers the types of samples that may be members of a correlation
    /// written by the same commit (which shares their time of acceptance).
    fn note_member_samples(&mut self, envelope: &Envelope) {
        if self.recent_at_us != Some(envelope.at_us) {
            self.recent_at_us = Some(envelope.at_us);
            self.recent_member_types.clear();
        }
        let Some((_, groups)) = device_groups(&envelope.event) else {
            return;
        };
        for batch in groups.iter().flat_map(|(_, batches)| batches.iter()) {
            let Some(ty) = catalogue::lookup(&batch.type_id) else {
                continue;
            };
            if !is_member_type(ty) {
                continue;
            }
            for sample in &batch.samples {
                self.recent_member_types
                    .insert(u128::from_be_bytes(sample.id), ty);
            }
        }
    }

    /// Drops the samples of an erased scope collected so far; later ones
    /// (under new keys) stay.
    fn erase(&mut self, source: Option<&str>, type_id: Option<&str>) {
        if source.is_none() && type_id.is_none() {
            return;
        }
        let source = match source {
            Some(name) => match self.sources.ids.get(name) {
                Some(&id) => Some(id),
                None => return,
            },
            None => None,
        };
        for ty in erased_types(type_id) {
            let sync_ids = &mut self.sync_ids;
            self.rows[ty.0 as usize].retain(|id, row_source| {
                let erased = source.is_none_or(|s| row_source == s);
                if erased {
                    sync_ids.remove(id);
                }
                !erased
            });
            // A snapshot's rows of the scope go the same way, and the
            // deletions it listed of them (sealed under the same keys).
            self.base_deletions
                .retain(|d| d.ty != ty || source.is_some_and(|s| s != d.source));
            if let Some(base) = &mut self.base[ty.0 as usize] {
                base.retain(|id, row_source| {
                    let erased = source.is_none_or(|s| row_source == s);
                    if erased {
                        sync_ids.remove(id);
                    }
                    !erased
                });
            }
        }
    }

    pub fn finish(self) -> Projection {
        let tombstones = self.tombstones;
        let mut bases = self.base;
        // Where each deleted sample lived, learnt while dropping it.
        let mut dropped_from: HashMap<u128, (TypeIndex, u32)> = HashMap::new();
        let kept: Vec<RowColumns> = self
            .rows
            .into_iter()
            .enumerate()
            .map(|(t, mut rows)| {
                if !tombstones.is_empty() {
                    rows.retain(|id, source| {
                        let keep = !tombstones.contains(&id);
                        if !keep {
                            dropped_from.insert(id, (TypeIndex(t as u16), source));
                        }
                        keep
                    });
                    if let Some(base) = &mut bases[t] {
                        base.retain(|id, source| {
                            let keep = !tombstones.contains(&id);
                            if !keep {
                                dropped_from.insert(id, (TypeIndex(t as u16), source));
                            }
                            keep
                        });
                    }
                }
                rows
            })
            .collect();
        let deleted: Vec<Deletion> = self
            .base_deletions
            .into_iter()
            .chain(self.deleted.iter().filter_map(|&(seq, id)| {
                let &(ty, source) = dropped_from.get(&id)?;
                Some(Deletion {
                    seq,
                    id,
                    ty,
                    source,
                })
            }))
            .collect();
        let mut last_delete = vec![0u32; kept.len()];
        let mut deletions = Deletions::default();
        for &d in &deleted {
            deletions.push(d);
        }
        for d in &deleted {
            let last = &mut last_delete[usize::from(d.ty.0)];
            *last = (*last).max(u32::try_from(d.seq).unwrap_or(u32::MAX));
        }
        let none = HashSet::new();
        let columns: Vec<TypeColumns> = kept
            .into_iter()
            .zip(last_delete)
            .zip(bases)
            .map(|((rows, last_delete), base)| {
                let mut cols = match base {
                    Some(base) => TypeColumns::from_base(base, rows.into_vec()),
                    None => TypeColumns::from_rows(rows, &none),
                };
                if last_delete > 0 {
                    cols.touch(last_delete);
                }
                cols.shrink_to_fit();
                cols
            })
            .collect();
        let mut projection = Projection::with_types(columns.into_iter());
        *projection.derived_ids.get_mut() = self.derived_ids;
        projection.sources = RwLock::new(self.sources);
        let mut sync_ids = self.sync_ids;
        sync_ids.shrink_to_fit();
        projection.sync_ids = RwLock::new(sync_ids);
        projection.deletions = RwLock::new(deletions);
        projection.correlations = RwLock::new(self.correlations);
        projection.priority = RwLock::new(self.priority);
        projection.characteristics = RwLock::new(self.characteristics);
        projection.pinned = RwLock::new(self.pinned);
        projection.applied_seq = AtomicU64::new(self.last_seq);
        projection.last_snapshot = Mutex::new(self.snapshot);
        let mut arrivals = self.arrivals;
        arrivals.base = self.snapshot;
        projection.arrivals = Mutex::new(arrivals);
        projection
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::log::event::DeviceGroup;

    fn device(name: &str) -> Device {
        Device {
            name: name.into(),
            model: None,
            manufacturer: None,
            kind: Some("watch".into()),
        }
    }

    fn added(source: &str, names: &[&str], id0: u128) -> Envelope {
        let groups = names
            .iter()
            .enumerate()
            .map(|(i, n)| DeviceGroup {
                device: Some(device(n)),
                batches: vec![TypeBatch {
                    type_id: "step_count".into(),
                    samples: vec![StoredSample {
                        id: (id0 + i as u128).to_be_bytes(),
                        start_us: i as i64,
                        start_offset_min: 0,
                        end_us: i as i64 + 1,
                        end_offset_min: 0,
                        value: 1.0,
                        metadata: None,
                    }],
                }],
            })
            .collect();
        Envelope {
            at_us: 0,
            event: Event::DeviceSamplesAdded {
                source: source.into(),
                groups,
            },
        }
    }

    /// A source's copy survives others' writes and deletions (they neither
    /// rebuild it nor show in it) and is remade when its own rows change.
    #[test]
    fn a_sources_copy_changes_only_with_its_own_rows() {
        let p = Projection::default();
        let ty = catalogue::lookup("step_count").unwrap();
        p.apply(1, &added("a", &["x"], 0)).unwrap();
        let a = p.source_id("a").unwrap();
        let first = p.only_source(ty, a);
        assert_eq!(first.len(), 1);
        p.apply(2, &added("b", &["y", "z"], 100)).unwrap();
        let delete = |id: u128| Envelope {
            at_us: 0,
            event: Event::SamplesDeleted {
                source: "b".into(),
                ids: vec![id.to_be_bytes()],
            },
        };
        p.apply(3, &delete(100)).unwrap();
        assert!(
            Arc::ptr_eq(&first, &p.only_source(ty, a)),
            "others' changes"
        );
        p.apply(4, &added("a", &["x"], 200)).unwrap();
        let second = p.only_source(ty, a);
        assert!(!Arc::ptr_eq(&first, &second));
        assert_eq!(second.len(), 2);
        p.apply(5, &delete(0)).unwrap();
        assert_eq!(p.only_source(ty, a).live_len(), 1);
    }

    #[test]
    fn device_slots_are_per_source() {
        let p = Projection::default();
        p.apply(1, &added("a", &["x", "y"], 0)).unwrap();
        p.apply(2, &added("b", &["z", "y"], 100)).unwrap();
        let (a, b) = (p.source_id("a").unwrap(), p.source_id("b").unwrap());
        // `b`'s first device takes slot 1 whatever `a` holds.
        assert_eq!(p.device(b, 1), Some(device("z")));
        assert_eq!(p.device(b, 2), Some(device("y")));
        assert_eq!(p.device(a, 2), Some(device("y")));
        assert_eq!(p.device(a, 0), None);
        assert_eq!((p.device_count("a"), p.device_count("b")), (2, 2));
        assert!(p.knows_device("b", &device("z")) && !p.knows_device("a", &device("z")));
    }

    #[test]
    fn replay_takes_logs_with_more_devices_than_writes_may_add() {
        let names: Vec<String> = (0..200).map(|i| format!("d{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut builder = ProjectionBuilder::new();
        builder.add(1, added("a", &names, 0)).unwrap();
        let p = builder.finish();
        assert_eq!(p.device_count("a"), 200);
        assert_eq!(p.sample_count(), 200);
        let a = p.source_id("a").unwrap();
        assert_eq!(p.device(a, 200), Some(device("d199")));
    }

    fn written(source: &str, id: u128, sync: Option<(&str, i64)>, replaced: &[u128]) -> Event {
        written_at(source, id, id as i64, sync, replaced)
    }

    /// A step sample `id` at minute `minute`.
    pub(super) fn step_at(id: u128, minute: i64) -> StoredSample {
        StoredSample {
            id: id.to_be_bytes(),
            start_us: minute * 60_000_000,
            start_offset_min: 0,
            end_us: minute * 60_000_000,
            end_offset_min: 0,
            value: 1.0,
            metadata: None,
        }
    }

    /// `source`'s step sample `id` at minute `minute`, as written.
    pub(super) fn written_at(
        source: &str,
        id: u128,
        minute: i64,
        sync: Option<(&str, i64)>,
        replaced: &[u128],
    ) -> Event {
        Event::SamplesWritten {
            source: source.into(),
            groups: vec![DeviceGroup {
                device: None,
                batches: vec![TypeBatch {
                    type_id: "step_count".into(),
                    samples: vec![step_at(id, minute)],
                }],
            }],
            synced: sync
                .map(|(sync_id, version)| SyncRecord {
                    id: id.to_be_bytes(),
                    sync_id: sync_id.into(),
                    version,
                })
                .into_iter()
                .collect(),
            replaced: replaced.iter().map(|r| r.to_be_bytes()).collect(),
        }
    }

    fn log() -> Vec<Envelope> {
        let mut events = crate::log::event::tests::records_in_the_first_form();
        for event in [
            written("app", 10, Some(("walk", 0)), &[]),
            written("other", 11, Some(("walk", 0)), &[]),
            written("app", 12, Some(("walk", 1)), &[10]),
            written("app", 13, Some(("run", 0)), &[]),
            Event::SamplesDeleted {
                source: "app".into(),
                ids: vec![13u128.to_be_bytes()],
            },
            written("app", 14, None, &[]),
        ] {
            events.push(Envelope { at_us: 0, event });
        }
        events
    }

    /// What replay builds and what applying event by event builds agree,
    /// old records included.
    fn check(p: &Projection) {
        let steps = catalogue::lookup("step_count").unwrap();
        let hr = catalogue::lookup("heart_rate").unwrap();
        let app = p.source_id("app").unwrap();
        let other = p.source_id("other").unwrap();
        // The records in the first form: sample 1 lives, 2 was deleted.
        assert!(p.find(u128::from_be_bytes([1; 16])).is_some());
        assert!(p.find(u128::from_be_bytes([2; 16])).is_none());
        assert_eq!(p.find(u128::from_be_bytes([3; 16])).unwrap().0, hr);
        assert_eq!(p.sync_tag_of(u128::from_be_bytes([1; 16])), None);
        // Per source: the replacement holds `walk` for the app, the other
        // source's `walk` is its own.
        let (id, tag) = p.synced(app, "walk", steps).unwrap();
        assert_eq!((id, tag.version, tag.ty), (12, 1, steps));
        assert_eq!(p.synced(other, "walk", steps).unwrap().0, 11);
        assert!(p.find(10).is_none(), "the replaced sample is gone");
        assert!(
            p.synced(app, "run", steps).is_none(),
            "a deletion frees the id"
        );
        assert_eq!(p.sync_tag_of(12), Some(("walk".into(), 1)));
        assert_eq!(p.sync_tag_of(14), None);
        let mut deleted: Vec<(u64, u128)> = [steps, hr]
            .iter()
            .flat_map(|&t| p.deletions_after(t, None, 0))
            .map(|d| (d.seq, d.id))
            .collect();
        deleted.sort();
        let deleted: Vec<u128> = deleted.into_iter().map(|(_, id)| id).collect();
        assert_eq!(deleted, vec![u128::from_be_bytes([2; 16]), 10, 13]);
    }

    #[test]
    fn replay_and_live_application_agree_on_sync_ids() {
        let mut builder = ProjectionBuilder::new();
        for (seq, envelope) in log().into_iter().enumerate() {
            builder.add(seq as u64 + 1, envelope).unwrap();
        }
        check(&builder.finish());
        let live = Projection::default();
        for (seq, envelope) in log().iter().enumerate() {
            live.apply(seq as u64 + 1, envelope).unwrap();
        }
        check(&live);
        live.wipe();
        assert!(live
            .synced(0, "walk", catalogue::lookup("step_count").unwrap())
            .is_none());
    }
}

/// Samples whose ids are derived from their sync identifiers.
#[cfg(test)]
pub(super) mod derived_tests {
    use super::*;
    use zeroize::Zeroizing;

    pub(crate) const KEY: [u8; 32] = [9; 32];
    const IMPORT: &str = "apple-health:Watch";

    pub(crate) fn key() -> crate::crypto::SecretKey {
        Zeroizing::new(KEY)
    }

    fn steps() -> TypeIndex {
        catalogue::lookup("step_count").unwrap()
    }

    fn sync_id(n: u8) -> String {
        format!("ah1-{}", hex::encode([n; 16]))
    }

    /// The id derived for `source`'s step sample holding `sync_id(n)`.
    fn derived(source: &str, n: u8) -> u128 {
        IdDeriver::new(&key())
            .derive(&SourceDigest::of(source), steps(), &[n; 16])
            .id
    }

    fn written(source: &str, id: u128, minute: i64, sync: (&str, i64)) -> Envelope {
        let event = super::tests::written_at(source, id, minute, Some(sync), &[]);
        Envelope { at_us: 0, event }
    }

    /// An import's samples, some with derived ids, and an app's.
    pub(crate) fn log() -> Vec<Envelope> {
        vec![
            written(IMPORT, derived(IMPORT, 1), 1, (&sync_id(1), 0)),
            written(IMPORT, derived(IMPORT, 2), 2, (&sync_id(2), 0)),
            // Not the derived id, or not at version 0: records.
            written(IMPORT, 20, 3, (&sync_id(3), 0)),
            written(IMPORT, derived(IMPORT, 4), 4, (&sync_id(4), 1)),
            // Another source's identifier is its own; an id derived for
            // the import is not this source's.
            written("app", 21, 5, (&sync_id(1), 0)),
            written("app", derived(IMPORT, 6), 6, (&sync_id(6), 0)),
            written("app", derived("app", 7), 7, (&sync_id(7), 0)),
            Envelope {
                at_us: 0,
                event: Event::SamplesDeleted {
                    source: IMPORT.into(),
                    ids: vec![derived(IMPORT, 2).to_be_bytes()],
                },
            },
        ]
    }

    /// What [`log`] leaves, the same whether identifiers are held by
    /// derived ids (`derives`) or by records.
    pub(crate) fn check(p: &Projection, derives: bool) {
        let (import, app) = (p.source_id(IMPORT).unwrap(), p.source_id("app").unwrap());
        let one = derived(IMPORT, 1);
        let (id, tag) = p.synced(import, &sync_id(1), steps()).unwrap();
        assert_eq!((id, tag.version, tag.ty), (one, 0, steps()));
        assert_eq!(p.synced(import, &sync_id(1), steps()).unwrap().0, one);
        assert_eq!(p.sync_tag_of(one), Some((sync_id(1).into(), 0)));
        assert!(p.synced(import, &sync_id(2), steps()).is_none(), "deleted");
        assert_eq!(p.synced(import, &sync_id(3), steps()).unwrap().0, 20);
        assert_eq!(p.sync_tag_of(20), Some((sync_id(3).into(), 0)));
        assert_eq!(
            p.sync_tag_of(derived(IMPORT, 4)),
            Some((sync_id(4).into(), 1))
        );
        assert_eq!(p.synced(app, &sync_id(1), steps()).unwrap().0, 21);
        assert!(p.synced(import, &sync_id(6), steps()).is_none());
        assert_eq!(
            p.synced(app, &sync_id(6), steps()).unwrap().0,
            derived(IMPORT, 6)
        );
        assert_eq!(
            p.sync_tag_of(derived("app", 7)),
            Some((sync_id(7).into(), 0))
        );
        // Held without a record where derived.
        let records = p.sync_ids.read();
        assert_eq!(records.tag(one).is_none(), derives);
        assert_eq!(records.tag(derived("app", 7)).is_none(), derives);
        assert!(records.tag(20).is_some() && records.tag(derived(IMPORT, 4)).is_some());
        assert!(records.tag(derived(IMPORT, 6)).is_some());
        drop(records);
        // New ids: none for a (type, source) with deletions, none taken
        // already, and only while a deriver is held.
        assert_eq!(p.derived_id(IMPORT, steps(), &sync_id(9)), None);
        assert_eq!(p.derived_id("app", steps(), &sync_id(7)), None);
        assert_eq!(
            p.derived_id("app", steps(), &sync_id(9)),
            derives.then(|| derived("app", 9))
        );
        assert_eq!(
            p.derived_id("app", steps(), &format!("{}-1", sync_id(9))),
            None
        );
        // The writer's one look answers as both would.
        for source in [IMPORT, "app", "new"] {
            for n in 1..=9 {
                for id in [sync_id(n), format!("{}-1", sync_id(n))] {
                    let held = p.source_id(source).and_then(|s| p.synced(s, &id, steps()));
                    let expected = match held {
                        Some((id, tag)) => SyncHolder::Held(id, tag),
                        None => SyncHolder::Free(p.derived_id(source, steps(), &id).map(|given| {
                            let digest = IdDeriver::digest_of(&id).unwrap();
                            let d = IdDeriver::new(&key()).derive(
                                &SourceDigest::of(source),
                                steps(),
                                &digest,
                            );
                            assert_eq!(d.id, given);
                            d
                        })),
                    };
                    assert_eq!(
                        p.sync_holder(source, &id, steps()),
                        expected,
                        "{source} {id}"
                    );
                }
            }
        }
    }

    #[test]
    fn replay_and_live_application_agree_on_derived_ids() {
        let mut builder = ProjectionBuilder::new().with_derived_ids(&key());
        for (seq, envelope) in log().into_iter().enumerate() {
            builder.add(seq as u64 + 1, envelope).unwrap();
        }
        check(&builder.finish(), true);
        let live = ProjectionBuilder::new().with_derived_ids(&key()).finish();
        for (seq, envelope) in log().iter().enumerate() {
            live.apply(seq as u64 + 1, envelope).unwrap();
        }
        check(&live, true);
        live.wipe();
        assert!(live.derived_ids.read().is_none(), "the key goes at lock");
        // Without the key every identifier is a record, with the same
        // answers.
        let mut builder = ProjectionBuilder::new();
        for (seq, envelope) in log().into_iter().enumerate() {
            builder.add(seq as u64 + 1, envelope).unwrap();
        }
        check(&builder.finish(), false);
    }

    /// An import's event says which of its samples' ids are derived: their
    /// identifiers need no record and are given back from the ids, applied
    /// live or replayed; the others keep their records.
    #[test]
    fn an_imports_event_marks_its_derived_samples() {
        use crate::log::event::{DeviceGroup, NOT_DERIVED};
        let d = IdDeriver::new(&key()).derive(&SourceDigest::of(IMPORT), steps(), &[8; 16]);
        let sample = super::tests::step_at;
        let event = Event::SamplesImported {
            source: IMPORT.into(),
            groups: vec![DeviceGroup {
                device: None,
                batches: vec![TypeBatch {
                    type_id: "step_count".into(),
                    samples: vec![sample(d.id, 1), sample(30, 2), sample(31, 3)],
                }],
            }],
            synced: vec![SyncRecord {
                id: 30u128.to_be_bytes(),
                sync_id: sync_id(9),
                version: 0,
            }],
            replaced: Vec::new(),
            derived: vec![d.kept, NOT_DERIVED, NOT_DERIVED],
        };
        let envelope = Envelope { at_us: 0, event };
        let mut builder = ProjectionBuilder::new().with_derived_ids(&key());
        builder.add(1, envelope.clone()).unwrap();
        let live = ProjectionBuilder::new().with_derived_ids(&key()).finish();
        live.apply(1, &envelope).unwrap();
        for p in [builder.finish(), live] {
            assert_eq!(p.sync_tag_of(d.id), Some((sync_id(8).into(), 0)));
            assert!(p.sync_ids.read().tag(d.id).is_none(), "no record");
            assert_eq!(p.sync_tag_of(30), Some((sync_id(9).into(), 0)));
            assert_eq!(p.sync_tag_of(31), None);
            let import = p.source_id(IMPORT).unwrap();
            assert_eq!(p.synced(import, &sync_id(8), steps()).unwrap().0, d.id);
            assert!(matches!(
                p.sync_holder(IMPORT, &sync_id(8), steps()),
                SyncHolder::Held(id, _) if id == d.id
            ));
        }
    }
}

#[cfg(test)]
mod arrival_tests {
    use super::ArrivalClock;

    #[test]
    fn records_settle_by_the_millisecond_and_never_early() {
        let mut clock = ArrivalClock::default();
        clock.note(1, 1_000_100);
        clock.note(2, 1_000_900);
        clock.note(3, 1_002_000);
        // The clock stepped back: arrival still moves forward.
        clock.note(4, 900_000);
        clock.note(5, 1_005_000);
        assert_eq!(clock.settled_by(999_999), 0);
        // Records 1 and 2 share a millisecond with `since`: not settled.
        assert_eq!(clock.settled_by(1_000_500), 0);
        assert_eq!(clock.settled_by(1_001_000), 2);
        assert_eq!(clock.settled_by(1_002_999), 2);
        assert_eq!(clock.settled_by(1_003_000), 4);
        assert_eq!(clock.settled_by(2_000_000), 5);
        // A snapshot's records arrived by the time it was taken.
        let mut started = ArrivalClock {
            base: Some((100, 5_000_000)),
            ..ArrivalClock::default()
        };
        assert_eq!(started.settled_by(4_000_000), 0);
        assert_eq!(started.settled_by(5_000_000), 100);
        started.note(101, 6_000_000);
        assert_eq!(started.settled_by(6_000_000), 100);
        assert_eq!(started.settled_by(6_001_000), 101);
    }
}
