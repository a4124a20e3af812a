//! Importing an Apple Health export (`export.zip` from the Health app).
//!
//! The export XML is read as a stream, one child of `<HealthData>` at a
//! time, and each record becomes a request sample validated exactly as an
//! app's write would be, then handed to a [`Sink`] (the store's writer).
//! A record's metadata text is written to the same rules from the element
//! and given to the sample once the rest is checked.
//!
//! - Every sample carries a `sync_id` that is a digest of the record as
//!   exported (with the device string's memory address left out, which
//!   changes between exports): importing an export twice, or a newer one
//!   that overlaps it, stores each sample once.
//! - Each `sourceName` becomes a source `apple-health:<name>`, so the
//!   owner's priority order and the `sources=` filter treat them like apps;
//!   the prefix groups one import family.
//! - A correlation's members are also listed as records of their own: the
//!   records of member types are set aside in a temporary file and stored
//!   at the end only if no correlation held them.
//! - A workout's routes name it by its id: workouts with routes wait in
//!   groups, each group is written at once, and their routes follow under
//!   the ids the store answered.
//! - What Hearth cannot hold is counted in the [`Tally`], never an error.
//! - A zip's XML is inflated on a thread of its own and handed over in
//!   large chunks ([`archive::InflatedAhead`]), and records' digests are
//!   taken where their batches are written ([`SyncDigests`]); the rest
//!   happens on the thread reading the elements.

pub mod archive;
pub mod generate;
pub mod gpx;
pub mod map;
pub mod xml;

use super::Holding;
pub use super::{ImportError, Sink, Tally};

use std::borrow::Cow;
use std::io::{BufReader, BufWriter, Read, Seek, Write as _};
use std::rc::Rc;

use hashbrown::{HashMap, HashSet};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::catalogue::{self, Kind, TypeIndex};
use crate::log::writer::{NewEntry, SyncKey};
use crate::samples::{self, MAX_ROUTE_POINTS};
use crate::wire::samples as wire;
use archive::{Export, RouteFile, RouteFiles};
use map::ExportDevice;
use xml::Element;

/// The prefix of the sources an Apple Health import writes as.
pub const SOURCE_PREFIX: &str = "apple-health:";

/// Entries held per source before they are written together (fewer when
/// their metadata is large: see [`Holding`]).
const BATCH: usize = 4000;
const PROGRESS_EVERY: u64 = 2048;
/// Workouts with routes held before they are written together: a route
/// names its workout's id, so the workouts are written and their ids
/// awaited first, one commit for the lot rather than one each.
const ROUTED_BATCH: usize = 64;
/// Bytes of route elements held with them at most: an old export's inline
/// route can be megabytes.
const ROUTED_BYTES: usize = 8 << 20;

/// Reads `export` into `sink`.
pub fn import(export: &Export, sink: &mut dyn Sink) -> Result<Tally, ImportError> {
    let mut importer = Importer {
        routes: export.routes()?,
        sink,
        tally: Tally::default(),
        held: Holding::new(BATCH),
        deferred: Deferred::new()?,
        members: HashSet::new(),
        devices: Devices::default(),
        types: TypeNames::default(),
        source_names: SourceNames::default(),
        routed: Vec::new(),
        routed_bytes: 0,
        samples_by_type: vec![0; catalogue::all().len()],
        last_source: String::new(),
    };
    export.with_xml(|input| {
        let mut elements = xml::elements(input)?;
        while let Some(mut el) = elements.next_element()? {
            importer.tally.records += 1;
            importer.element(&mut el)?;
            elements.recycle(el);
            if importer.tally.records.is_multiple_of(PROGRESS_EVERY) {
                let records = importer.tally.records;
                importer.sink.progress(elements.position(), records);
            }
        }
        let records = importer.tally.records;
        importer.sink.progress(elements.position(), records);
        Ok(())
    })?;
    importer.flush_routed()?;
    importer.replay_deferred()?;
    importer.held.flush(importer.sink)?;
    let mut tally = importer.tally;
    for (i, &n) in importer.samples_by_type.iter().enumerate() {
        if n > 0 {
            let ty = catalogue::all()[i].id;
            *tally.samples.entry(ty.to_string()).or_default() += n;
        }
    }
    Ok(tally)
}

struct Importer<'a> {
    routes: RouteFiles,
    sink: &'a mut dyn Sink,
    tally: Tally,
    held: Holding,
    deferred: Deferred,
    /// Digests of the records correlations held.
    members: HashSet<[u8; 16]>,
    devices: Devices,
    types: TypeNames,
    source_names: SourceNames,
    /// Workouts with routes, waiting to be written (see [`ROUTED_BATCH`]).
    routed: Vec<RoutedWorkout>,
    /// What their route elements hold, by [`Element::bytes`].
    routed_bytes: usize,
    /// Samples held, by type index: the tally's counts by name are made
    /// of them at the end (a name looked up per sample costs more).
    samples_by_type: Vec<u64>,
    /// The source of the last sample held, known to be in the tally.
    last_source: String,
}

/// A checked workout whose routes are stored once it has an id.
struct RoutedWorkout {
    source: String,
    entry: NewEntry,
    digest: [u8; 16],
    routes: Vec<Element>,
}

/// What was last worked out, by its key: records come in runs of one type,
/// one source and one device, so the last answer is compared first.
struct Last<V>(Option<(Box<str>, V)>);

impl<V: Clone> Last<V> {
    fn get(&self, key: &str) -> Option<V> {
        let (last, value) = self.0.as_ref()?;
        (**last == *key).then(|| value.clone())
    }

    fn set(&mut self, key: &str, value: &V) {
        self.0 = Some((key.into(), value.clone()));
    }
}

impl<V> Default for Last<V> {
    fn default() -> Last<V> {
        Last(None)
    }
}

/// The catalogue type of each `type` attribute seen, worked out once: an
/// export names a few dozen types over millions of records.
#[derive(Default)]
struct TypeNames {
    known: HashMap<Box<str>, Option<TypeIndex>>,
    last: Last<Option<TypeIndex>>,
}

impl TypeNames {
    fn of(&mut self, identifier: &str) -> Option<TypeIndex> {
        if let Some(ti) = self.last.get(identifier) {
            return ti;
        }
        let ti = match self.known.get(identifier) {
            Some(&ti) => ti,
            None => {
                let ti = map::type_of(identifier);
                self.known.insert(identifier.into(), ti);
                ti
            }
        };
        self.last.set(identifier, &ti);
        ti
    }
}

/// The Hearth source of each `sourceName` seen, worked out once.
#[derive(Default)]
struct SourceNames {
    known: HashMap<Box<str>, Rc<str>>,
    last: Last<Rc<str>>,
}

impl SourceNames {
    /// Names kept before the cache starts over.
    const MAX: usize = 1024;

    fn of(&mut self, attr: Option<&str>) -> Rc<str> {
        let Some(key) = attr else {
            return source_name(None).into();
        };
        if let Some(name) = self.last.get(key) {
            return name;
        }
        let name = match self.known.get(key) {
            Some(name) => name.clone(),
            None => {
                if self.known.len() >= Self::MAX {
                    self.known.clear();
                }
                let name: Rc<str> = source_name(attr).into();
                self.known.insert(key.into(), name.clone());
                name
            }
        };
        self.last.set(key, &name);
        name
    }
}

/// Records of correlation member types, set aside until every correlation
/// has been seen.
struct Deferred {
    file: BufWriter<std::fs::File>,
    count: u64,
}

impl Deferred {
    fn new() -> Result<Deferred, ImportError> {
        let file = tempfile::tempfile()
            .map_err(|e| ImportError::Store(format!("a temporary file: {e}")))?;
        Ok(Deferred {
            file: BufWriter::new(file),
            count: 0,
        })
    }

    fn push(&mut self, el: &Element) -> Result<(), ImportError> {
        let bytes = postcard::to_stdvec(el).map_err(|e| ImportError::Store(e.to_string()))?;
        let io = |e: std::io::Error| ImportError::Store(format!("a temporary file: {e}"));
        self.file
            .write_all(&(bytes.len() as u32).to_le_bytes())
            .map_err(io)?;
        self.file.write_all(&bytes).map_err(io)?;
        self.count += 1;
        Ok(())
    }
}

/// The first 16 bytes of the SHA-256 of an element as exported, without
/// the device's memory address.
fn digest(el: &Element, devices: &mut Devices) -> [u8; 16] {
    let mut h = Sha256::new();
    feed(&mut h, el, None, devices);
    first_half(h.finalize().into())
}

fn first_half(full: [u8; 32]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// Where [`feed`] writes what it digests: the hash itself, or a buffer
/// hashed later ([`SyncDigests`]).
trait DigestInput {
    fn put(&mut self, bytes: &[u8]);
}

impl DigestInput for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

impl DigestInput for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// What is digested of an element (see [`digest`]); `device`, if given,
/// is what its (first) `device` attribute names, parsed already.
fn feed(
    h: &mut impl DigestInput,
    el: &Element,
    mut device: Option<&ParsedDevice>,
    devices: &mut Devices,
) {
    h.put(el.name().as_bytes());
    h.put(&[0]);
    for (k, v) in el.attrs() {
        h.put(k.as_bytes());
        h.put(&[1]);
        if k == "device" {
            let parsed;
            let d = match device.take() {
                Some(given) => &given.export,
                None => {
                    parsed = devices.parse(v);
                    &parsed.export
                }
            };
            for part in [&d.name, &d.manufacturer, &d.model, &d.hardware, &d.software] {
                h.put(part.as_deref().unwrap_or("").as_bytes());
                h.put(&[3]);
            }
        } else {
            h.put(v.as_bytes());
        }
        h.put(&[2]);
    }
    h.put(el.text().as_bytes());
    h.put(&[4]);
    for c in &el.children {
        feed(h, c, None, devices);
    }
    h.put(&[5]);
}

/// The sync identifiers a batch's records are still to get: what each
/// record's digest is taken of, hashed where the batch is written, so that
/// the thread reading the export (the import's busiest) does not.
#[derive(Default)]
pub struct SyncDigests {
    /// What is digested, record after record.
    inputs: Vec<u8>,
    /// Each record's entry in its batch, and where its input ends.
    pending: Vec<(usize, usize)>,
}

impl SyncDigests {
    /// Takes in what entry `entry` of the batch is to get the digest of:
    /// the record `el`, with the device its `device` attribute names if
    /// that is parsed already.
    fn push(
        &mut self,
        entry: usize,
        el: &Element,
        device: Option<&ParsedDevice>,
        devices: &mut Devices,
    ) {
        feed(&mut self.inputs, el, device, devices);
        self.pending.push((entry, self.inputs.len()));
    }

    /// Gives each record waiting in `entries` its sync identifier.
    pub fn apply(self, entries: &mut [NewEntry]) {
        let mut start = 0;
        for (entry, end) in self.pending {
            let d = first_half(Sha256::digest(&self.inputs[start..end]).into());
            entries[entry].sync = Some(SyncKey {
                sync_id: sync_id(&d, None).into_boxed_str(),
                version: 0,
            });
            start = end;
        }
    }
}

fn sync_id(d: &[u8; 16], part: Option<usize>) -> String {
    use std::fmt::Write as _;
    let mut digits = [0u8; 32];
    hex::encode_to_slice(d, &mut digits).expect("32 digits for 16 bytes");
    // Exactly as long as it will be, unless numbered: a sample keeps it.
    let mut id = String::with_capacity(4 + 32 + if part.is_some() { 8 } else { 0 });
    id.push_str("ah1-");
    id.push_str(std::str::from_utf8(&digits).expect("hex digits"));
    if let Some(p) = part {
        let _ = write!(id, "-{p}");
    }
    id
}

/// The Hearth source of an export's `sourceName`.
pub fn source_name(source: Option<&str>) -> String {
    let name = source
        .and_then(|s| map::name_part(s, 100))
        .unwrap_or_else(|| "unnamed source".into());
    format!("{SOURCE_PREFIX}{name}")
}

/// A device string as the export wrote it, and as Hearth's device: as a
/// sample to write names it, and as a write stores it (or why it cannot).
struct ParsedDevice {
    export: ExportDevice,
    device: Option<wire::NewDevice>,
    checked: Option<Result<crate::log::event::Device, String>>,
}

/// A record as a sample to validate, with what validation leaves to the
/// importer: its metadata as text (see [`metadata_text`]) and its device.
struct RecordSample<'e> {
    /// The record's `type`, as the export wrote it.
    identifier: &'e str,
    ty: TypeIndex,
    sample: wire::NewSample<'e>,
    metadata: Option<String>,
    device: Option<Rc<ParsedDevice>>,
}

/// Device strings already parsed: an export names a handful of devices on
/// millions of records.
#[derive(Default)]
struct Devices {
    parsed: HashMap<String, Rc<ParsedDevice>>,
    last: Last<Rc<ParsedDevice>>,
}

/// What a device string is known by: all of it from the `>,` that ends its
/// memory address (which may differ per record) on.
fn device_key(text: &str) -> &str {
    memchr::memmem::find(text.as_bytes(), b">,").map_or(text, |at| &text[at..])
}

impl Devices {
    /// Devices kept before the cache starts over.
    const MAX: usize = 1024;

    fn parse(&mut self, text: &str) -> Rc<ParsedDevice> {
        let key = device_key(text);
        if let Some(parsed) = self.last.get(key) {
            return parsed;
        }
        let parsed = self.parse_anew(key, text);
        self.last.set(key, &parsed);
        parsed
    }

    fn parse_anew(&mut self, key: &str, text: &str) -> Rc<ParsedDevice> {
        if let Some(parsed) = self.parsed.get(key) {
            return parsed.clone();
        }
        if self.parsed.len() >= Self::MAX {
            self.parsed.clear();
        }
        let export = ExportDevice::parse(text);
        let device = export
            .name
            .as_deref()
            .or(export.model.as_deref())
            .and_then(|n| map::name_part(n, 128))
            .map(|name| wire::NewDevice {
                name,
                model: export.model.as_deref().and_then(|m| map::name_part(m, 128)),
                manufacturer: export
                    .manufacturer
                    .as_deref()
                    .and_then(|m| map::name_part(m, 128)),
                kind: Some(export.kind().to_string()),
            });
        let checked = device
            .clone()
            .map(|d| samples::device_of(d).map_err(|e| e.message));
        let parsed = Rc::new(ParsedDevice {
            export,
            device,
            checked,
        });
        self.parsed.insert(key.to_string(), parsed.clone());
        parsed
    }

    /// The device of `el`, if it names one.
    fn of(&mut self, el: &Element) -> Option<Rc<ParsedDevice>> {
        el.attr("device").map(|text| self.parse(text))
    }
}

/// Most metadata keys taken from one record, leaving room for Hearth's own.
const MAX_KEYS: usize = 56;
/// Metadata text kept whole, at most: room is left for the keys Hearth adds
/// to workouts and correlations.
const METADATA_ROOM: usize = samples::MAX_METADATA_BYTES - 600;

/// Metadata beyond [`METADATA_ROOM`]: [`Importer::fit`] drops entries.
struct TooLarge;

/// A record's metadata entries: its `MetadataEntry` children, its source's
/// version, the device's hardware and software, and a heart rate
/// variability reading's beat-to-beat list. As in a map, a later value
/// under the same key replaces an earlier one.
fn metadata_entries<'a>(
    el: &'a Element,
    device: Option<&'a ExportDevice>,
) -> Vec<(&'a str, Cow<'a, str>)> {
    fn put<'a>(entries: &mut Vec<(&'a str, Cow<'a, str>)>, key: &'a str, value: Cow<'a, str>) {
        match entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => entries.push((key, value)),
        }
    }
    // Room for the entries and the four keys taken from elsewhere.
    let mut entries = Vec::with_capacity(el.children.len().min(MAX_KEYS) + 4);
    for entry in el.children_named("MetadataEntry") {
        let (Some(k), Some(v)) = (entry.attr("key"), entry.attr("value")) else {
            continue;
        };
        if k.is_empty()
            || k.len() > 128
            || k.starts_with(samples::RESERVED)
            || entries.len() >= MAX_KEYS
        {
            continue;
        }
        put(&mut entries, k, Cow::Borrowed(v));
    }
    if let Some(v) = el.attr("sourceVersion") {
        put(&mut entries, "sourceVersion", Cow::Borrowed(v));
    }
    if let Some(d) = device {
        if let Some(h) = &d.hardware {
            put(&mut entries, "deviceHardware", Cow::Borrowed(h));
        }
        if let Some(s) = &d.software {
            put(&mut entries, "deviceSoftware", Cow::Borrowed(s));
        }
    }
    for list in el.children_named("HeartRateVariabilityMetadataList") {
        let beats: Vec<String> = list
            .children_named("InstantaneousBeatsPerMinute")
            .filter_map(|b| Some(format!("{}@{}", b.attr("bpm")?, b.attr("time")?)))
            .collect();
        if !beats.is_empty() {
            put(
                &mut entries,
                "HeartRateVariabilityMetadataList",
                Cow::Owned(beats.join(";")),
            );
        }
    }
    entries
}

/// A record's metadata as a map, for Hearth to add keys to or drop keys
/// from.
fn metadata_of(el: &Element, device: Option<&ExportDevice>) -> Map<String, Value> {
    metadata_entries(el, device)
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.into_owned())))
        .collect()
}

/// The text [`samples::validate`] makes of [`metadata_of`]'s map (the
/// same entries, sorted by key, as compact JSON), built without the map:
/// a record's metadata borrows from its element until it is written out.
/// `None` when there are no entries.
fn metadata_text(el: &Element, device: Option<&ExportDevice>) -> Result<Option<String>, TooLarge> {
    let mut entries = metadata_entries(el, device);
    if entries.is_empty() {
        return Ok(None);
    }
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let guess = 2 + entries
        .iter()
        .map(|(k, v)| k.len() + v.len() + 6)
        .sum::<usize>();
    let mut text = Vec::with_capacity(guess.min(METADATA_ROOM + 1));
    text.push(b'{');
    for (i, (k, v)) in entries.iter().enumerate() {
        if i > 0 {
            text.push(b',');
        }
        push_json_string(&mut text, k);
        text.push(b':');
        push_json_string(&mut text, v);
    }
    text.push(b'}');
    if text.len() > METADATA_ROOM {
        return Err(TooLarge);
    }
    Ok(Some(
        String::from_utf8(text).expect("serde_json writes UTF-8"),
    ))
}

/// `s` as a JSON string, as `serde_json` writes it: most need no escape
/// (`serde_json` escapes only quotes, backslashes and control characters).
fn push_json_string(out: &mut Vec<u8>, s: &str) {
    // Without an early exit, the test runs over many bytes at once.
    let plain = s.bytes().fold(true, |plain, b| {
        plain & (b >= 0x20) & (b != b'"') & (b != b'\\')
    });
    if plain {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(out, s).expect("a string serialises");
    }
}

fn blank_sample(type_id: &'static str, start: String, end: String) -> wire::NewSample<'static> {
    wire::NewSample {
        sync_id: None,
        sync_version: None,
        type_id: Cow::Borrowed(type_id),
        start: Cow::Owned(start),
        end: Cow::Owned(end),
        value: Value::Null,
        unit: None,
        metadata: None,
        device: None,
        members: None,
        activity: None,
        energy: None,
        distance: None,
        workout: None,
        route: None,
    }
}

fn times(el: &Element) -> Option<(String, String)> {
    Some((
        map::date(el.attr("startDate")?)?,
        map::date(el.attr("endDate")?)?,
    ))
}

fn is_member_type(ti: TypeIndex) -> bool {
    // By type, whether it is: asked of every record.
    static MEMBERS: std::sync::OnceLock<Vec<bool>> = std::sync::OnceLock::new();
    let members = MEMBERS.get_or_init(|| {
        let mut members = vec![false; catalogue::all().len()];
        let ids = catalogue::all().iter().filter_map(|t| match t.kind {
            Kind::Correlation { members } => Some(members),
            _ => None,
        });
        for member in ids.flatten().filter_map(|id| catalogue::lookup(id)) {
            members[usize::from(member.0)] = true;
        }
        members
    });
    members.get(usize::from(ti.0)).copied().unwrap_or(false)
}

impl Importer<'_> {
    /// Handles one child of `<HealthData>`; a workout's routes are taken
    /// out of it to be stored after it.
    fn element(&mut self, el: &mut Element) -> Result<(), ImportError> {
        match el.name() {
            "Record" => {
                let member = el
                    .attr("type")
                    .and_then(|t| self.types.of(t))
                    .is_some_and(is_member_type);
                if member {
                    self.deferred.push(el)
                } else {
                    self.record(el)
                }
            }
            "Correlation" => self.correlation(el),
            "Workout" => self.workout(el),
            "Me" => {
                self.me(el)?;
                Ok(())
            }
            "ExportDate" => Ok(()),
            "ActivitySummary" => {
                self.tally
                    .skip("ActivitySummary (Hearth has no type for daily ring summaries)");
                Ok(())
            }
            other => {
                self.tally.skip(format!("{other} (not imported)"));
                Ok(())
            }
        }
    }

    /// Validates `s` as a write would; a refusal is counted, not an error.
    /// `ty` is the type `s` names, if the caller has it at hand.
    fn validate(
        &mut self,
        identifier: &str,
        ty: Option<TypeIndex>,
        s: wire::NewSample<'_>,
    ) -> Option<NewEntry> {
        let validated = match ty {
            Some(ty) => samples::validate_as(0, ty, s),
            None => samples::validate(0, s),
        };
        match validated {
            Ok(entry) => Some(entry),
            Err(e) => {
                self.tally.skip(format!("{identifier}: {}", e.message));
                None
            }
        }
    }

    /// Metadata within what one sample holds: the beat-to-beat list goes
    /// first, then keys from the end, each loss counted.
    fn fit(&mut self, mut m: Map<String, Value>) -> Option<Map<String, Value>> {
        // Escaping makes a string at most six times longer (`\u001f`):
        // below that bound the map fits without serialising it.
        let bound: usize = m
            .iter()
            .map(|(k, v)| 6 * k.len() + v.as_str().map_or(METADATA_ROOM, |v| 6 * v.len()) + 6)
            .sum();
        if bound <= METADATA_ROOM {
            return (!m.is_empty()).then_some(m);
        }
        let size = |m: &Map<String, Value>| serde_json::to_string(m).map_or(0, |t| t.len());
        if size(&m) > METADATA_ROOM && m.remove("HeartRateVariabilityMetadataList").is_some() {
            self.tally
                .skip("HeartRateVariabilityMetadataList too long to keep (sample kept)");
        }
        while size(&m) > METADATA_ROOM {
            let Some(last) = m.keys().next_back().cloned() else {
                break;
            };
            m.remove(&last);
            self.tally
                .skip("metadata entry past a sample's 4 KiB (sample kept)");
        }
        (!m.is_empty()).then_some(m)
    }

    fn hold(&mut self, source: &str, entry: NewEntry) -> Result<(), ImportError> {
        self.hold_digesting(source, entry, None)
    }

    /// Holds `entry`, whose sync identifier is to be the digest of the
    /// record given (with the device it names), taken where the batch is
    /// written.
    fn hold_digesting(
        &mut self,
        source: &str,
        entry: NewEntry,
        record: Option<(&Element, Option<&ParsedDevice>)>,
    ) -> Result<(), ImportError> {
        if let Some(sample) = entry.samples.last() {
            self.samples_by_type[usize::from(sample.type_index.0)] += 1;
        }
        if self.last_source != source {
            if !self.tally.sources.contains(source) {
                self.tally.sources.insert(source.to_string());
            }
            source.clone_into(&mut self.last_source);
        }
        let devices = &mut self.devices;
        let digest = |digests: &mut SyncDigests, at: usize| {
            if let Some((el, device)) = record {
                digests.push(at, el, device, devices);
            }
        };
        self.held.hold(source, entry, digest, &mut *self.sink)
    }

    /// A quantity or category record's request sample, and its metadata as
    /// text when it is kept whole (the sample then carries none, to be
    /// given that text once checked), and its device: the sample carries
    /// none either, since a device is checked once per device string.
    fn sample_of<'e>(&mut self, el: &'e Element) -> Option<RecordSample<'e>> {
        let identifier = el.attr("type").unwrap_or("(no type)");
        let Some(ti) = self.types.of(identifier) else {
            self.tally.unknown(identifier);
            return None;
        };
        let ty = catalogue::get(ti);
        let Some((start, end)) = times(el) else {
            self.tally.skip(format!("{identifier}: unreadable dates"));
            return None;
        };
        let mut s = blank_sample(ty.id, start, end);
        match &ty.kind {
            Kind::Quantity { .. } => {
                let Some(v) = el.attr("value").and_then(|v| v.trim().parse::<f64>().ok()) else {
                    self.tally
                        .skip(format!("{identifier}: value is not a number"));
                    return None;
                };
                let (v, unit) = map::quantity(ty, v, el.attr("unit").unwrap_or(""));
                s.value = serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number);
                s.unit = Some(Cow::Borrowed(unit));
            }
            Kind::Category { .. } => {
                let raw = el.attr("value").unwrap_or("");
                let Some(v) = map::category_value(ty, raw) else {
                    self.tally
                        .skip(format!("{identifier}: unknown value {raw}"));
                    return None;
                };
                s.value = Value::String(v.to_string());
            }
            _ => {
                self.tally.unknown(identifier);
                return None;
            }
        }
        let parsed = self.devices.of(el);
        let export_device = parsed.as_ref().map(|p| &p.export);
        let metadata = match metadata_text(el, export_device) {
            Ok(text) => text,
            Err(TooLarge) => {
                s.metadata = self.fit(metadata_of(el, export_device));
                None
            }
        };
        Some(RecordSample {
            identifier,
            ty: ti,
            sample: s,
            metadata,
            device: parsed,
        })
    }

    fn record(&mut self, el: &Element) -> Result<(), ImportError> {
        let Some(RecordSample {
            identifier,
            ty,
            sample: s,
            metadata,
            device: parsed,
        }) = self.sample_of(el)
        else {
            return Ok(());
        };
        // No sync identifier yet: it is the record's digest, taken where
        // the batch is written (see `SyncDigests`); validation would find
        // nothing wrong with one.
        let Some(mut entry) = self.validate(identifier, Some(ty), s) else {
            return Ok(());
        };
        // As validation would have checked it, last.
        match parsed.as_ref().and_then(|p| p.checked.as_ref()) {
            None => {}
            Some(Ok(device)) => {
                let sample = entry.samples.last_mut().expect("an entry has a sample");
                sample.device = Some(device.clone());
            }
            Some(Err(message)) => {
                self.tally.skip(format!("{identifier}: {message}"));
                return Ok(());
            }
        }
        if let Some(text) = metadata {
            // Within what validation allows by construction: keys of 1 to
            // 128 bytes, none reserved, at most `MAX_KEYS` and Hearth's
            // four, string values, under `METADATA_ROOM` bytes.
            let sample = entry.samples.last_mut().expect("an entry has a sample");
            sample.sample.metadata = Some(text);
        }
        let source = self.source_names.of(el.attr("sourceName"));
        self.hold_digesting(&source, entry, Some((el, parsed.as_deref())))
    }

    fn correlation(&mut self, el: &Element) -> Result<(), ImportError> {
        let identifier = el.attr("type").unwrap_or("(no type)").to_string();
        let ti = self.types.of(&identifier);
        let Some(ty) = ti
            .map(catalogue::get)
            .filter(|t| matches!(t.kind, Kind::Correlation { .. }))
        else {
            self.tally.unknown(&identifier);
            return Ok(());
        };
        let Some((start, end)) = times(el) else {
            self.tally.skip(format!("{identifier}: unreadable dates"));
            return Ok(());
        };
        let Kind::Correlation { members: allowed } = ty.kind else {
            return Ok(());
        };
        let mut members = Vec::new();
        let mut digests = Vec::new();
        for child in el.children_named("Record") {
            let mty = child
                .attr("type")
                .and_then(map::type_of)
                .map(catalogue::get)
                .filter(|m| allowed.contains(&m.id));
            let value = child
                .attr("value")
                .and_then(|v| v.trim().parse::<f64>().ok());
            let (Some(mty), Some(value)) = (mty, value) else {
                self.tally
                    .skip(format!("{identifier}: a member Hearth cannot hold"));
                continue;
            };
            if members
                .iter()
                .any(|m: &wire::NewMember| m.type_id == mty.id)
            {
                self.tally
                    .skip(format!("{identifier}: a member type listed twice"));
                continue;
            }
            let (value, unit) = map::quantity(mty, value, child.attr("unit").unwrap_or(""));
            members.push(wire::NewMember {
                type_id: mty.id.to_string(),
                value,
                unit: unit.to_string(),
            });
            digests.push(digest(child, &mut self.devices));
        }
        let mut s = blank_sample(ty.id, start, end);
        s.sync_id = Some(Cow::Owned(sync_id(&digest(el, &mut self.devices), None)));
        let parsed = self.devices.of(el);
        s.device = parsed.as_ref().and_then(|p| p.device.clone());
        s.metadata = self.fit(metadata_of(el, parsed.as_ref().map(|p| &p.export)));
        s.members = Some(members);
        let Some(entry) = self.validate(&identifier, ti, s) else {
            return Ok(());
        };
        // Only a stored correlation stands in for the records it repeats.
        self.members.extend(digests);
        for m in &entry.samples[..entry.samples.len() - 1] {
            *self
                .tally
                .samples
                .entry(catalogue::get(m.type_index).id.to_string())
                .or_default() += 1;
        }
        let source = self.source_names.of(el.attr("sourceName"));
        self.hold(&source, entry)
    }

    fn replay_deferred(&mut self) -> Result<(), ImportError> {
        let io = |e: std::io::Error| ImportError::Store(format!("a temporary file: {e}"));
        self.deferred.file.flush().map_err(io)?;
        let mut file = self.deferred.file.get_ref().try_clone().map_err(io)?;
        file.rewind().map_err(io)?;
        let mut reader = BufReader::new(file);
        let mut bytes = Vec::new();
        for _ in 0..self.deferred.count {
            let mut len = [0u8; 4];
            reader.read_exact(&mut len).map_err(io)?;
            bytes.resize(u32::from_le_bytes(len) as usize, 0);
            reader.read_exact(&mut bytes).map_err(io)?;
            let el: Element =
                postcard::from_bytes(&bytes).map_err(|e| ImportError::Store(e.to_string()))?;
            if self.members.contains(&digest(&el, &mut self.devices)) {
                self.tally.correlation_duplicates += 1;
                continue;
            }
            self.record(&el)?;
        }
        Ok(())
    }

    fn workout(&mut self, el: &mut Element) -> Result<(), ImportError> {
        let identifier = el
            .attr("workoutActivityType")
            .unwrap_or("HKWorkoutActivityTypeOther")
            .to_string();
        let Some((start, end)) = times(el) else {
            self.tally.skip("Workout: unreadable dates");
            return Ok(());
        };
        let mut s = blank_sample("workout", start, end);
        let activity = map::activity(&identifier).unwrap_or("other");
        s.activity = Some(activity.to_string());
        let parsed = self.devices.of(el);
        s.device = parsed.as_ref().and_then(|p| p.device.clone());
        let mut meta = metadata_of(el, parsed.as_ref().map(|p| &p.export));
        if activity == "other" && identifier != "HKWorkoutActivityTypeOther" {
            meta.insert(
                "workoutActivityType".into(),
                Value::String(identifier.clone()),
            );
        }
        let measure = |value: Option<&str>, unit: Option<&str>| -> Option<wire::Measure> {
            Some(wire::Measure {
                value: value?.parse().ok()?,
                unit: unit?.to_string(),
            })
        };
        s.energy = measure(
            el.attr("totalEnergyBurned"),
            el.attr("totalEnergyBurnedUnit"),
        );
        s.distance = measure(el.attr("totalDistance"), el.attr("totalDistanceUnit"));
        // Newer exports give totals only as statistics.
        for stat in el.children_named("WorkoutStatistics") {
            let Some(ti) = stat.attr("type").and_then(map::type_of) else {
                continue;
            };
            let ty = catalogue::get(ti);
            let unit = stat.attr("unit").unwrap_or("");
            for field in ["sum", "average", "minimum", "maximum"] {
                let Some(v) = stat.attr(field).and_then(|v| v.parse::<f64>().ok()) else {
                    continue;
                };
                let (v, unit) = map::quantity(ty, v, unit);
                if field == "sum" && ty.id == "active_energy_burned" && s.energy.is_none() {
                    s.energy = Some(wire::Measure {
                        value: v,
                        unit: unit.to_string(),
                    });
                }
                if field == "sum" && ty.id.starts_with("distance_") && s.distance.is_none() {
                    s.distance = Some(wire::Measure {
                        value: v,
                        unit: unit.to_string(),
                    });
                }
                meta.insert(format!("{} {field} ({unit})", ty.id), Value::from(v));
            }
        }
        let events: Vec<String> = el
            .children_named("WorkoutEvent")
            .filter_map(|e| {
                let kind = e.attr("type")?.trim_start_matches("HKWorkoutEventType");
                let date = e.attr("date").or(e.attr("startDate"))?;
                Some(match e.attr("duration") {
                    Some(d) if d != "0" => {
                        format!("{kind} {date} +{d}{}", e.attr("durationUnit").unwrap_or(""))
                    }
                    _ => format!("{kind} {date}"),
                })
            })
            .collect();
        if !events.is_empty() {
            meta.insert("WorkoutEvents".into(), Value::String(events.join("; ")));
        }
        let size = |m: &Map<String, Value>| serde_json::to_string(m).map_or(0, |t| t.len());
        if size(&meta) > METADATA_ROOM && meta.remove("WorkoutEvents").is_some() {
            self.tally
                .skip("WorkoutEvent list too long to keep (workout kept)");
        }
        s.metadata = self.fit(meta);
        let d = digest(el, &mut self.devices);
        s.sync_id = Some(Cow::Owned(sync_id(&d, None)));
        let Some(entry) = self.validate(&identifier, None, s) else {
            return Ok(());
        };
        let source = source_name(el.attr("sourceName"));
        // Moved, not copied: an inline route can be megabytes.
        let (routes, others): (Vec<Element>, Vec<Element>) = std::mem::take(&mut el.children)
            .into_iter()
            .partition(|c| c.name() == "WorkoutRoute");
        el.children = others;
        if routes.is_empty() {
            return self.hold(&source, entry);
        }
        *self.tally.samples.entry("workout".into()).or_default() += 1;
        self.tally.sources.insert(source.clone());
        self.routed_bytes += routes.iter().map(Element::bytes).sum::<usize>();
        self.routed.push(RoutedWorkout {
            source,
            entry,
            digest: d,
            routes,
        });
        if self.routed.len() >= ROUTED_BATCH || self.routed_bytes >= ROUTED_BYTES {
            self.flush_routed()?;
        }
        Ok(())
    }

    /// Writes the workouts held for their routes, one write per source,
    /// then their routes under the ids the store answered.
    fn flush_routed(&mut self) -> Result<(), ImportError> {
        let mut routed = std::mem::take(&mut self.routed);
        self.routed_bytes = 0;
        while let Some(first) = routed.first() {
            let source = first.source.clone();
            let (these, others): (Vec<_>, Vec<_>) =
                routed.into_iter().partition(|w| w.source == source);
            routed = others;
            let (entries, routes): (Vec<NewEntry>, Vec<_>) = these
                .into_iter()
                .map(|w| (w.entry, (w.digest, w.routes)))
                .unzip();
            let ids = self.sink.add_now(&source, entries)?;
            for (id, (digest, routes)) in ids.into_iter().zip(routes) {
                if id == 0 {
                    // Left as stored: another workout holds its identifier.
                    for _ in &routes {
                        self.tally.skip("workout route of a workout left as stored");
                    }
                    continue;
                }
                self.routes_of(&source, id, &digest, &routes)?;
            }
        }
        Ok(())
    }

    /// The routes of the workout stored as `workout_id`.
    fn routes_of(
        &mut self,
        source: &str,
        workout_id: u128,
        d: &[u8; 16],
        routes: &[Element],
    ) -> Result<(), ImportError> {
        for (r, route) in routes.iter().enumerate() {
            let mut points = gpx::locations(route);
            for file in route.children_named("FileReference") {
                let path = file.attr("path").unwrap_or("");
                match self.routes.read(path)? {
                    RouteFile::Found(data) => match gpx::parse(&data) {
                        Ok(p) => points.extend(p),
                        Err(_) => self.tally.skip("workout route file unreadable"),
                    },
                    RouteFile::Empty => self.tally.skip("workout route file empty (0 bytes)"),
                    RouteFile::Missing => self.tally.skip("workout route file missing"),
                }
            }
            if points.is_empty() {
                continue;
            }
            let route_source = route
                .attr("sourceName")
                .map_or_else(|| source.to_string(), |s| source_name(Some(s)));
            self.route(&route_source, workout_id, d, r, points)?;
        }
        Ok(())
    }

    /// A route, in parts of at most the points one route sample holds.
    fn route(
        &mut self,
        source: &str,
        workout: u128,
        workout_digest: &[u8; 16],
        index: usize,
        mut points: Vec<wire::RoutePoint>,
    ) -> Result<(), ImportError> {
        let mut timed: Vec<(i64, wire::RoutePoint)> = Vec::with_capacity(points.len());
        for p in points.drain(..) {
            match samples::parse_time(None, "route", &p.time) {
                Ok((t, _)) => timed.push((t, p)),
                Err(_) => self.tally.skip("route point with an unreadable time"),
            }
        }
        timed.sort_by_key(|(t, _)| *t);
        for (part, chunk) in timed.chunks(MAX_ROUTE_POINTS).enumerate() {
            let start = chunk
                .first()
                .map(|(_, p)| p.time.clone())
                .unwrap_or_default();
            let end = chunk
                .last()
                .map(|(_, p)| p.time.clone())
                .unwrap_or_default();
            let mut s = blank_sample("workout_route", start, end);
            s.workout = Some(Uuid::from_u128(workout));
            s.route = Some(
                chunk
                    .iter()
                    .map(|(_, p)| wire::RoutePoint {
                        time: p.time.clone(),
                        lat: p.lat,
                        lon: p.lon,
                        alt: p.alt,
                    })
                    .collect(),
            );
            s.sync_id = Some(Cow::Owned(sync_id(
                workout_digest,
                Some(index * 1000 + part),
            )));
            if let Some(entry) = self.validate("WorkoutRoute", None, s) {
                self.hold(source, entry)?;
            }
        }
        Ok(())
    }

    fn me(&mut self, el: &Element) -> Result<(), ImportError> {
        let mut values = Vec::new();
        for (key, value) in el.attrs() {
            let Some(name) = key.strip_prefix("HKCharacteristicTypeIdentifier") else {
                continue;
            };
            let id = map::snake_case(name);
            let Some(ty) = catalogue::lookup(&id).map(catalogue::get) else {
                self.tally
                    .skip(format!("Me: {key} (no such characteristic in Hearth)"));
                continue;
            };
            let Kind::Characteristic { values: allowed } = ty.kind else {
                continue;
            };
            let mapped = match allowed {
                None => (value.len() == 10).then(|| value.to_string()),
                Some(allowed) => {
                    // `HKBloodTypeAPositive` → `a_positive`.
                    let words = map::snake_case(value);
                    allowed
                        .iter()
                        .find(|a| words.ends_with(&format!("_{a}")))
                        .map(|a| a.to_string())
                }
            };
            match mapped {
                Some(v) => values.push((id, v)),
                // `…NotSet`: nothing to keep.
                None if value.ends_with("NotSet") || value.is_empty() => {}
                None => self.tally.skip(format!("Me: {key} value {value}")),
            }
        }
        self.tally.characteristics = values.len() as u64;
        if !values.is_empty() {
            self.sink.characteristics(values)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Routes go to the store as they come, a bounded amount at a time:
    /// held until the export's end, as their count alone once allowed,
    /// every route of years of runs would be in memory at once.
    #[test]
    fn routes_are_written_a_bounded_amount_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("export.zip");
        let options = generate::Options {
            days: 800,
            heart_rate_every_min: 24 * 60,
            quirks: false,
            ..generate::Options::default()
        };
        let written = generate::write_zip(&path, &options).unwrap();
        let export = Export::open(&path, archive::ArchiveLimits::default()).unwrap();
        let mut writes = crate::import::writes::Writes::default();
        let tally = import(&export, &mut writes).unwrap();
        let routes = written.samples["workout_route"];
        assert_eq!(tally.samples["workout_route"], routes);
        assert_eq!(writes.entries["workout_route"], routes);
        // The routes' points are megabytes in all, written at most a
        // batch's worth (and the entry that filled it) at a time.
        assert!(
            crate::import::writes::bounded(&writes),
            "{} bytes in all, {} in one write",
            writes.total,
            writes.largest
        );
    }

    /// What an import leaves out is counted under at most a few hundred
    /// short names, however many the file makes up: each one comes from
    /// the file, and the summary is held and sent whole.
    #[test]
    fn a_summary_names_a_bounded_number_of_things() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("export.xml");
        let at = "startDate=\"2024-01-02 08:00:00 +0100\" endDate=\"2024-01-02 08:01:00 +0100\"";
        let mut xml = String::from("<HealthData>\n");
        xml += &format!("<Record type=\"HKQuantityTypeIdentifierStepCount\" sourceName=\"s\" unit=\"count\" {at} value=\"-5\"/>\n");
        for i in 0..5_000 {
            xml += &format!("<Record type=\"HKQuantityTypeIdentifierMadeUp{i}\" sourceName=\"s\" {at} value=\"1\"/>\n");
            xml += &format!("<Record type=\"HKCategoryTypeIdentifierSleepAnalysis\" sourceName=\"s\" {at} value=\"HKCategoryValueSleepAnalysisMadeUp{i}\"/>\n");
        }
        let long = "X".repeat(100_000);
        xml += &format!("<Record type=\"{long}\" sourceName=\"s\" {at} value=\"1\"/>\n");
        xml += "</HealthData>\n";
        std::fs::write(&path, xml).unwrap();
        let export = Export::open(&path, archive::ArchiveLimits::default()).unwrap();
        let mut writes = crate::import::writes::Writes::default();
        let tally = import(&export, &mut writes).unwrap();

        for counts in [&tally.unknown, &tally.skipped] {
            assert!(counts.len() <= 257, "{} names", counts.len());
            assert!(counts.keys().all(|k| k.chars().count() <= 201));
        }
        assert_eq!(tally.unknown.values().sum::<u64>(), 5_001);
        assert_eq!(tally.unknown["HKQuantityTypeIdentifierMadeUp0"], 1);
        assert_eq!(tally.unknown[crate::import::OTHERS], 5_001 - 256);
        // Refusals by the store's own checks are counted by their reason.
        assert_eq!(
            tally.skipped
                ["HKQuantityTypeIdentifierStepCount: step_count adds up and must not be negative"],
            1,
            "{:?}",
            tally.skipped
        );
        assert_eq!(tally.skipped.values().sum::<u64>(), 5_001);
        assert!(writes.entries.is_empty());
    }

    /// A record's digest is its sync identifier: an export imported again
    /// by a later version must give the same one, or its samples would be
    /// stored twice.
    #[test]
    fn a_records_digest_stays_what_it_was() {
        let xml = "<HealthData><Record type=\"HKQuantityTypeIdentifierHeartRate\" sourceName=\"Ana&apos;s Watch\" sourceVersion=\"10.1\" device=\"&lt;&lt;HKDevice: 0x283a5c2d0&gt;, name:Apple Watch, manufacturer:Apple Inc., model:Watch, hardware:Watch6,2, software:10.1&gt;\" unit=\"count/min\" creationDate=\"2024-01-02 08:00:05 +0100\" startDate=\"2024-01-02 08:00:00 +0100\" endDate=\"2024-01-02 08:00:00 +0100\" value=\"72\"><MetadataEntry key=\"HKMetadataKeyHeartRateMotionContext\" value=\"0\"/><MetadataEntry key=\"a &amp; b\" value=\"&#60;x\"/></Record></HealthData>";
        let first = |xml: &str| {
            xml::elements(xml.as_bytes())
                .unwrap()
                .next_element()
                .unwrap()
                .unwrap()
        };
        let el = first(xml);
        let mut devices = Devices::default();
        let golden = "b9b6a336a1c186634caa4d0dad21cedb";
        assert_eq!(hex::encode(digest(&el, &mut devices)), golden);
        let parsed = devices.of(&el).unwrap();
        let mut given = Sha256::new();
        feed(&mut given, &el, Some(&parsed), &mut devices);
        assert_eq!(hex::encode(first_half(given.finalize().into())), golden);
        // Another pointer is the same device; another device is not.
        let moved = first(&xml.replace("0x283a5c2d0", "0x1"));
        assert_eq!(hex::encode(digest(&moved, &mut Devices::default())), golden);
        let other = first(&xml.replace("software:10.1&gt;", "software:10.2&gt;"));
        assert_ne!(hex::encode(digest(&other, &mut Devices::default())), golden);

        // Taken later from what was fed, in a batch: the same identifiers.
        let mut digests = SyncDigests::default();
        for (entry, el) in [(1, &el), (2, &other)] {
            digests.push(entry, el, None, &mut devices);
        }
        let mut entries: Vec<NewEntry> = (0..3)
            .map(|_| NewEntry {
                sync: None,
                samples: vec![],
            })
            .collect();
        digests.apply(&mut entries);
        let ids: Vec<Option<String>> = entries
            .iter()
            .map(|e| e.sync.as_ref().map(|s| s.sync_id.to_string()))
            .collect();
        let other_id = sync_id(&digest(&other, &mut devices), None);
        assert_eq!(ids, [None, Some(format!("ah1-{golden}")), Some(other_id)]);
    }

    /// Stores hold samples under these identifiers: a new spelling would
    /// import every export a second time.
    #[test]
    fn sync_ids_keep_their_spelling() {
        let digest: [u8; 16] = std::array::from_fn(|i| (i as u8) * 17);
        assert_eq!(
            sync_id(&digest, None),
            "ah1-00112233445566778899aabbccddeeff"
        );
        assert_eq!(
            sync_id(&[0xa5; 16], Some(3042)),
            format!("ah1-{}-3042", "a5".repeat(16))
        );
    }

    fn element(
        attrs: &[(&str, &str)],
        entries: &[(&str, &str)],
        beats: &[(&str, &str)],
    ) -> Element {
        let mut children: Vec<Element> = entries
            .iter()
            .map(|(k, v)| Element::new("MetadataEntry", &[("key", k), ("value", v)], vec![], ""))
            .collect();
        if !beats.is_empty() {
            let beats = beats
                .iter()
                .map(|(bpm, time)| {
                    Element::new(
                        "InstantaneousBeatsPerMinute",
                        &[("bpm", bpm), ("time", time)],
                        vec![],
                        "",
                    )
                })
                .collect();
            children.push(Element::new(
                "HeartRateVariabilityMetadataList",
                &[],
                beats,
                "",
            ));
        }
        Element::new("Record", attrs, children, "")
    }

    /// What the map's path stores: the map serialised, as validation does.
    fn through_the_map(el: &Element, device: Option<&ExportDevice>) -> Option<String> {
        let m = metadata_of(el, device);
        (!m.is_empty()).then(|| serde_json::to_string(&m).unwrap())
    }

    /// The text, checked against the map's, as a map.
    fn same_text(el: &Element, device: Option<&ExportDevice>) -> Map<String, Value> {
        let text = metadata_text(el, device).ok().expect("fits");
        assert_eq!(text, through_the_map(el, device));
        let parsed: Map<String, Value> =
            text.map_or_else(Map::new, |t| serde_json::from_str(&t).unwrap());
        assert_eq!(parsed, metadata_of(el, device));
        parsed
    }

    #[test]
    fn a_device_is_known_by_what_follows_its_address() {
        let at = |address: &str| {
            format!("<<HKDevice: {address}>, name:Apple Watch, model:Watch, software:10.1>")
        };
        assert_eq!(device_key(&at("0x283d10a40")), device_key(&at("0x2a1f")));
        assert_eq!(
            device_key(&at("0x1")),
            ">, name:Apple Watch, model:Watch, software:10.1>"
        );
        assert_eq!(device_key("a>b>, c"), ">, c");
        assert_eq!(device_key("no address"), "no address");
        assert_eq!(device_key("ends>"), "ends>");
    }

    #[test]
    fn metadata_text_is_the_maps_text() {
        let watch = ExportDevice {
            name: Some("Apple Watch".into()),
            hardware: Some("Watch6,2".into()),
            software: Some("10.1".into()),
            ..ExportDevice::default()
        };
        same_text(&element(&[], &[], &[]), None);
        same_text(
            &element(&[("sourceVersion", "17.2")], &[], &[]),
            Some(&watch),
        );
        // Unsorted keys, a key written twice (the later value wins), keys
        // that clash with Hearth's (the attribute and device win), keys
        // refused, and values that need escaping.
        let long_key = "k".repeat(129);
        let max_key = "m".repeat(128);
        let kept = same_text(
            &element(
                &[
                    ("sourceVersion", "9.0"),
                    ("type", "HKQuantityTypeIdentifierHeartRate"),
                ],
                &[
                    ("zeta", "last"),
                    ("HKMetadataKeyHeartRateMotionContext", "1"),
                    ("alpha", "first"),
                    ("alpha", "again"),
                    ("sourceVersion", "from an entry"),
                    ("deviceHardware", "from an entry"),
                    ("", "empty key"),
                    (&long_key, "too long"),
                    (&max_key, "just fits"),
                    (samples::RESERVED, "reserved"),
                    ("hearth:key", "reserved"),
                    (
                        "Some key with spaces",
                        "quote \" back\\slash \u{b} tab\t é ✓ \u{1f}",
                    ),
                    ("Ünïcode", "\u{2028} line separator"),
                ],
                &[("61", "10:00:00.1 AM"), ("63", "10:00:01.0 AM")],
            ),
            Some(&watch),
        );
        let value = |k: &str| kept.get(k).and_then(Value::as_str);
        assert_eq!(value("alpha"), Some("again"));
        assert_eq!(value("sourceVersion"), Some("9.0"));
        assert_eq!(value("deviceHardware"), Some("Watch6,2"));
        assert_eq!(value("deviceSoftware"), Some("10.1"));
        assert_eq!(value(&max_key), Some("just fits"));
        assert_eq!(
            value("HeartRateVariabilityMetadataList"),
            Some("61@10:00:00.1 AM;63@10:00:01.0 AM")
        );
        for refused in ["", long_key.as_str(), samples::RESERVED, "hearth:key"] {
            assert!(!kept.contains_key(refused), "{refused}");
        }
        assert_eq!(kept.len(), 10);
        // More keys than a record may bring: the first `MAX_KEYS` distinct
        // ones stay, a repeat past them is refused like a new one.
        let many: Vec<(String, String)> = (0..MAX_KEYS + 8)
            .map(|i| (format!("key {:03}", (i * 37) % 101), format!("v{i}")))
            .chain([("key 000".to_string(), "late".to_string())])
            .collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let kept = same_text(&element(&[], &many, &[]), None);
        assert_eq!(kept.len(), MAX_KEYS);
        assert_eq!(kept["key 000"], "v0");
    }

    #[test]
    fn metadata_past_the_room_goes_the_maps_way() {
        let value = "x".repeat(METADATA_ROOM / 4);
        let entries: Vec<(String, &str)> =
            (0..5).map(|i| (format!("k{i}"), value.as_str())).collect();
        let entries: Vec<(&str, &str)> = entries.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert!(metadata_text(&element(&[], &entries, &[]), None).is_err());
        // Just within: still the map's text.
        same_text(&element(&[], &entries[..3], &[]), None);
    }

    proptest::proptest! {
        #[test]
        fn any_entries_give_the_maps_text(
            entries in proptest::collection::vec(
                ("[a-c _:\"\\\\\u{0}-\u{1f}é✓]{0,6}", "[a-c \"\\\\\u{0}-\u{1f}\u{7f}é✓\u{2028}]{0,12}"),
                0..70,
            ),
            version in proptest::option::of("[0-9.]{1,5}"),
        ) {
            let entries: Vec<(&str, &str)> =
                entries.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let attrs: Vec<(&str, &str)> =
                version.iter().map(|v| ("sourceVersion", v.as_str())).collect();
            same_text(&element(&attrs, &entries, &[]), None);
        }
    }
}
