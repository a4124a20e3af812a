//! Where an export's files are: a zip as the Health app writes it, or the
//! XML alone. The export file is found by its content (its name is
//! localised: `export.xml`, `eksport.xml`, `exportar.xml`, ...); the clinical
//! document `export_cda.xml` is never read. A zip is checked whole before
//! anything of it is read: names that climb out of the folder, sizes past
//! the caps and compression ratios of a zip bomb refuse the import.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use zip::ZipArchive;

use super::xml::{check_head, is_export, HEAD_BYTES};
use super::ImportError;

/// Caps on what an archive may expand to.
#[derive(Clone, Copy, Debug)]
pub struct ArchiveLimits {
    /// All entries together, uncompressed.
    pub max_uncompressed_bytes: u64,
    /// Uncompressed over compressed size of one entry larger than a mebibyte.
    pub max_ratio: u64,
    /// One route file.
    pub max_route_bytes: u64,
}

impl Default for ArchiveLimits {
    fn default() -> ArchiveLimits {
        ArchiveLimits {
            // The largest exports seen are a few gigabytes of XML.
            max_uncompressed_bytes: 8 << 30,
            // An export's XML compresses 10 to 40 times; a bomb, a thousand.
            max_ratio: 250,
            max_route_bytes: 64 << 20,
        }
    }
}

/// How many bytes of a file decide whether it is the export.
const SNIFF_BYTES: u64 = 64 << 10;

enum Kind {
    Xml,
    Zip {
        xml_index: usize,
        /// Route files by their path below the export folder
        /// (`workout-routes/route_….gpx`).
        routes: HashMap<String, usize>,
    },
}

/// An export ready to read.
pub struct Export {
    path: PathBuf,
    kind: Kind,
    /// Uncompressed size of the export XML.
    pub xml_bytes: u64,
    limits: ArchiveLimits,
}

fn refused(message: impl Into<String>) -> ImportError {
    ImportError::Refused(message.into())
}

fn zip_error(e: zip::result::ZipError) -> ImportError {
    match e {
        zip::result::ZipError::InvalidArchive(_) | zip::result::ZipError::Io(_) => refused(
            format!("the zip archive is damaged or incomplete (truncated upload?): {e}"),
        ),
        e => refused(format!("the zip archive cannot be read: {e}")),
    }
}

/// `apple_health_export/workout-routes/route_1.gpx` → `workout-routes/route_1.gpx`.
fn route_key(name: &str) -> Option<String> {
    let at = name.find("workout-routes/")?;
    Some(name[at..].to_string())
}

impl Export {
    /// Opens and checks `path`: a zip, or an export XML itself.
    pub fn open(path: &Path, limits: ArchiveLimits) -> Result<Export, ImportError> {
        let mut file = File::open(path).map_err(|e| refused(format!("opening the export: {e}")))?;
        let mut magic = [0u8; 4];
        let n = read_full(&mut file, &mut magic)?;
        file.rewind()
            .map_err(|e| refused(format!("reading the export: {e}")))?;
        if n == 4 && (&magic == b"PK\x03\x04" || &magic == b"PK\x05\x06") {
            return Export::open_zip(path, file, limits);
        }
        let xml_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut head = Vec::new();
        (&mut file)
            .take(SNIFF_BYTES)
            .read_to_end(&mut head)
            .map_err(|e| refused(format!("reading the export: {e}")))?;
        if !is_export(&head) {
            return Err(refused(
                "neither a zip nor an Apple Health export XML (no <HealthData> element)",
            ));
        }
        let export = Export {
            path: path.to_path_buf(),
            kind: Kind::Xml,
            xml_bytes,
            limits,
        };
        export.check_head()?;
        Ok(export)
    }

    fn open_zip(path: &Path, file: File, limits: ArchiveLimits) -> Result<Export, ImportError> {
        let mut zip = ZipArchive::new(BufReader::new(file)).map_err(zip_error)?;
        let mut total: u64 = 0;
        let mut candidates = Vec::new();
        let mut routes = HashMap::new();
        for i in 0..zip.len() {
            let entry = zip.by_index_raw(i).map_err(zip_error)?;
            let name = entry.name().to_string();
            if entry.enclosed_name().is_none() || name.contains('\\') {
                return Err(refused(format!(
                    "the zip holds an unsafe file name ({name:?}): refused"
                )));
            }
            let size = entry.size();
            let compressed = entry.compressed_size();
            total = total.saturating_add(size);
            if total > limits.max_uncompressed_bytes {
                return Err(refused(format!(
                    "the zip expands to more than {} GiB: refused",
                    limits.max_uncompressed_bytes >> 30
                )));
            }
            if size > 1 << 20 && size / compressed.max(1) > limits.max_ratio {
                return Err(refused(format!(
                    "{name} expands {} times (a zip bomb?): refused",
                    size / compressed.max(1)
                )));
            }
            if entry.is_dir() {
                continue;
            }
            let base = name
                .rsplit('/')
                .next()
                .unwrap_or(&name)
                .to_ascii_lowercase();
            if let Some(key) = route_key(&name).filter(|_| base.ends_with(".gpx")) {
                routes.insert(key, i);
                continue;
            }
            if base == "export_cda.xml" || base.ends_with(".csv") || base.ends_with(".pdf") {
                continue;
            }
            candidates.push((i, size));
        }
        let mut found: Option<(usize, u64)> = None;
        for (i, size) in candidates {
            let entry = zip.by_index(i).map_err(zip_error)?;
            let mut head = Vec::new();
            entry
                .take(SNIFF_BYTES)
                .read_to_end(&mut head)
                .map_err(|e| refused(format!("the zip archive is damaged: {e}")))?;
            if is_export(&head) && found.is_none_or(|(_, s)| size > s) {
                found = Some((i, size));
            }
        }
        let (xml_index, xml_bytes) = found.ok_or_else(|| {
            refused("the zip holds no Apple Health export (no file with a <HealthData> element)")
        })?;
        let export = Export {
            path: path.to_path_buf(),
            kind: Kind::Zip { xml_index, routes },
            xml_bytes,
            limits,
        };
        export.check_head()?;
        Ok(export)
    }

    /// Refuses an export whose prologue declares entities, before any of
    /// it is imported.
    fn check_head(&self) -> Result<(), ImportError> {
        self.with_xml(|input| {
            let mut head = Vec::new();
            input
                .take(HEAD_BYTES)
                .read_to_end(&mut head)
                .map_err(|e| refused(format!("the export cannot be read: {e}")))?;
            check_head(&head)
        })
    }

    /// Runs `f` over the export XML as a byte stream. A zip's XML is
    /// inflated ahead on a thread of its own (see [`InflatedAhead`]).
    pub fn with_xml<T>(
        &self,
        f: impl FnOnce(&mut dyn BufRead) -> Result<T, ImportError>,
    ) -> Result<T, ImportError> {
        let file = File::open(&self.path)
            .map_err(|e| ImportError::Malformed(format!("reopening: {e}")))?;
        match &self.kind {
            Kind::Xml => f(&mut BufReader::with_capacity(256 << 10, file)),
            Kind::Zip { xml_index, .. } => {
                let mut zip = ZipArchive::new(BufReader::new(file)).map_err(zip_error)?;
                let declared = zip.by_index(*xml_index).map_err(zip_error)?.size();
                let index = *xml_index;
                std::thread::scope(|scope| {
                    let (chunks, mut ahead) = InflatedAhead::channel();
                    std::thread::Builder::new()
                        .name("import-inflate".into())
                        .spawn_scoped(scope, move || chunks.fill(zip, index, declared))
                        .map_err(|e| ImportError::Store(format!("a thread to inflate on: {e}")))?;
                    // The reader goes before the scope ends: a thread still
                    // inflating sees it gone and stops.
                    let out = f(&mut ahead);
                    drop(ahead);
                    out
                })
            }
        }
    }

    /// Route files, to look up while the XML is read.
    pub fn routes(&self) -> Result<RouteFiles, ImportError> {
        Ok(match &self.kind {
            Kind::Xml => RouteFiles {
                zip: None,
                index: HashMap::new(),
                max_bytes: self.limits.max_route_bytes,
            },
            Kind::Zip { routes, .. } => {
                let file = File::open(&self.path)
                    .map_err(|e| ImportError::Malformed(format!("reopening: {e}")))?;
                RouteFiles {
                    zip: Some(ZipArchive::new(BufReader::new(file)).map_err(zip_error)?),
                    index: routes.clone(),
                    max_bytes: self.limits.max_route_bytes,
                }
            }
        })
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, ImportError> {
    read_up_to(r, buf).map_err(|e| refused(format!("reading the export: {e}")))
}

/// Reads until `buf` is full or the input ends: how many bytes were read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A zip entry that may not expand past its declared size.
struct Bounded<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self.left.checked_sub(n as u64).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "the entry expands past its declared size",
            )
        })?;
        Ok(n)
    }
}

/// An export's XML inflated on another thread, handed over in large
/// chunks: inflating is a tenth of what reading an export costs, and a
/// chunk crosses threads for next to nothing, where the elements parsed
/// from it would not (each is a handful of allocations).
pub struct InflatedAhead {
    chunks: Receiver<io::Result<Vec<u8>>>,
    /// Chunks read, back to the inflating thread to fill again.
    spent: SyncSender<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

/// The inflating end of an [`InflatedAhead`].
pub struct Chunks {
    chunks: SyncSender<io::Result<Vec<u8>>>,
    spent: Receiver<Vec<u8>>,
}

impl InflatedAhead {
    /// Bytes in a chunk.
    const CHUNK: usize = 256 << 10;
    /// Chunks inflated and not yet read, at most.
    const AHEAD: usize = 4;

    fn channel() -> (Chunks, InflatedAhead) {
        let (chunks_tx, chunks_rx) = sync_channel(Self::AHEAD);
        let (spent_tx, spent_rx) = sync_channel(Self::AHEAD + 2);
        (
            Chunks {
                chunks: chunks_tx,
                spent: spent_rx,
            },
            InflatedAhead {
                chunks: chunks_rx,
                spent: spent_tx,
                chunk: Vec::new(),
                at: 0,
            },
        )
    }
}

impl Chunks {
    /// Inflates entry `index` of `zip` (which expands to `declared` bytes at
    /// most) into chunks until it ends, fails, or the reader is gone.
    fn fill(self, mut zip: ZipArchive<BufReader<File>>, index: usize, declared: u64) {
        let entry = match zip.by_index(index) {
            Ok(entry) => entry,
            Err(e) => {
                let _ = self.chunks.send(Err(io::Error::other(e)));
                return;
            }
        };
        let mut entry = Bounded {
            inner: entry,
            left: declared,
        };
        loop {
            let mut chunk = self
                .spent
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(InflatedAhead::CHUNK));
            // A chunk back from the reader is already this long: no zeroing.
            chunk.resize(InflatedAhead::CHUNK, 0);
            let n = match read_up_to(&mut entry, &mut chunk) {
                Ok(n) => n,
                Err(e) => {
                    let _ = self.chunks.send(Err(e));
                    return;
                }
            };
            if n == 0 {
                return;
            }
            chunk.truncate(n);
            if self.chunks.send(Ok(chunk)).is_err() {
                return;
            }
        }
    }
}

impl BufRead for InflatedAhead {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.at == self.chunk.len() {
            let spent = std::mem::take(&mut self.chunk);
            self.at = 0;
            if spent.capacity() > 0 {
                let _ = self.spent.try_send(spent);
            }
            // The inflating thread hangs up at the end of the entry.
            if let Ok(chunk) = self.chunks.recv() {
                self.chunk = chunk?;
            }
        }
        Ok(&self.chunk[self.at..])
    }

    fn consume(&mut self, n: usize) {
        self.at = (self.at + n).min(self.chunk.len());
    }
}

impl Read for InflatedAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// What became of a route file.
pub enum RouteFile {
    Found(Vec<u8>),
    Missing,
    Empty,
}

/// The GPX files of an export's workouts.
pub struct RouteFiles {
    zip: Option<ZipArchive<BufReader<File>>>,
    index: HashMap<String, usize>,
    max_bytes: u64,
}

impl RouteFiles {
    /// The file a `FileReference` names (`/workout-routes/route_….gpx`).
    pub fn read(&mut self, reference: &str) -> Result<RouteFile, ImportError> {
        let (Some(zip), Some(key)) = (self.zip.as_mut(), route_key(reference)) else {
            return Ok(RouteFile::Missing);
        };
        let Some(&i) = self.index.get(&key) else {
            return Ok(RouteFile::Missing);
        };
        let entry = zip.by_index(i).map_err(zip_error)?;
        if entry.size() == 0 {
            return Ok(RouteFile::Empty);
        }
        if entry.size() > self.max_bytes {
            return Ok(RouteFile::Missing);
        }
        let mut data = Vec::with_capacity(entry.size() as usize);
        let declared = entry.size();
        Bounded {
            inner: entry,
            left: declared,
        }
        .read_to_end(&mut data)
        .map_err(|e| ImportError::Malformed(format!("reading {reference}: {e}")))?;
        Ok(if data.is_empty() {
            RouteFile::Empty
        } else {
            RouteFile::Found(data)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::apple_health::generate::{write_zip, Options};

    #[test]
    fn xml_inflated_ahead_reads_as_the_entry_and_stops_with_its_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("export.zip");
        // Several chunks' worth.
        let options = Options {
            min_xml_bytes: 3 * InflatedAhead::CHUNK as u64 + 12_345,
            ..Options::default()
        };
        write_zip(&path, &options).unwrap();
        let export = Export::open(&path, ArchiveLimits::default()).unwrap();

        let mut zip = ZipArchive::new(File::open(&path).unwrap()).unwrap();
        let mut expected = Vec::new();
        zip.by_name("apple_health_export/export.xml")
            .unwrap()
            .read_to_end(&mut expected)
            .unwrap();
        assert!(expected.len() > 3 * InflatedAhead::CHUNK);
        // Read in odd sizes, across chunk ends.
        let read = export
            .with_xml(|xml| {
                let mut read = Vec::new();
                let mut buf = [0u8; 7_777];
                loop {
                    match xml.read(&mut buf).unwrap() {
                        0 => return Ok(read),
                        n => read.extend_from_slice(&buf[..n]),
                    }
                }
            })
            .unwrap();
        assert!(read == expected, "the XML read differs from the entry");

        // A reader that stops early (as the head check does) returns, the
        // inflating thread with it.
        let head = export
            .with_xml(|xml| Ok(xml.fill_buf().unwrap()[..5].to_vec()))
            .unwrap();
        assert_eq!(head, expected[..5]);
    }
}
