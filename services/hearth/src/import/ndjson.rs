//! Reading Hearth's own export back (`POST /v1/imports` with
//! `application/x-ndjson`, or `hearth import ndjson`).
//!
//! Every sample is stored under the source it came from, with its exported
//! id as its `sync_id`, and the export's source priority order and
//! characteristics are restored: a store that imports another's export
//! answers the same statistics, buckets and samples. The file is checked
//! whole before anything is stored; running the import again adds
//! nothing.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde_json::Value;
use uuid::Uuid;

use super::{Holding, ImportError, Sink, Tally};
use crate::export::ndjson::{self as format, Line};
use crate::log::event::SourceKey;
use crate::log::writer::NewEntry;
use crate::samples;
use crate::wire::samples as wire;

/// The longest line read: a sample with a full route and metadata is far
/// below it.
const MAX_LINE: usize = 4 << 20;
/// Entries held per source before they are written together (fewer when
/// their metadata is large: see [`Holding`]).
const BATCH: usize = 2000;
/// Sources a priority order may list (as `PUT /v1/sources/priority`).
const MAX_ORDER: usize = 256;
const PROGRESS_EVERY: u64 = 2048;

/// An export's lines, numbered from 1, with the bytes read so far.
struct Lines<R> {
    input: BufReader<R>,
    number: u64,
    read: u64,
    buf: Vec<u8>,
}

impl<R: Read> Lines<R> {
    fn new(input: R) -> Lines<R> {
        Lines {
            input: BufReader::with_capacity(1 << 20, input),
            number: 0,
            read: 0,
            buf: Vec::new(),
        }
    }

    /// The next line that is not blank, as text.
    fn next_line(&mut self) -> Result<Option<&str>, ImportError> {
        loop {
            self.buf.clear();
            let n = (&mut self.input)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| ImportError::Malformed(format!("reading the export: {e}")))?;
            if n == 0 {
                return Ok(None);
            }
            self.number += 1;
            self.read += n as u64;
            if self.buf.len() > MAX_LINE {
                return Err(self.refused(format!("longer than {} MiB", MAX_LINE >> 20)));
            }
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let number = self.number;
            return std::str::from_utf8(&self.buf)
                .map(|t| Some(t.trim_end()))
                .map_err(|_| ImportError::Refused(format!("line {number}: not UTF-8 text")));
        }
    }

    fn refused(&self, why: impl std::fmt::Display) -> ImportError {
        ImportError::Refused(format!("line {}: {why}", self.number))
    }
}

/// One sample line as a write: its source, and the entry to store.
fn entry(sample: &Value, workouts: &HashMap<String, String>) -> Result<(String, NewEntry), String> {
    let source = sample
        .get("source")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 128 && !s.chars().any(char::is_control))
        .ok_or("a sample's `source` has 1 to 128 bytes")?
        .to_string();
    let new = format::new_sample(sample, workouts)?;
    // Parsed from text as a request body is: the wire type borrows from it.
    let text = serde_json::to_string(&new).map_err(|e| e.to_string())?;
    let parsed: wire::NewSample =
        serde_json::from_str(&text).map_err(|e| format!("not a sample: {e}"))?;
    let entry = samples::validate(0, parsed).map_err(|e| format!("{}: {}", e.field, e.message))?;
    Ok((source, entry))
}

fn priority(value: &Value) -> Result<Vec<SourceKey>, String> {
    let Some(order) = value.get("order") else {
        return Ok(Vec::new());
    };
    let order = order.as_array().ok_or("`order` is a list")?;
    if order.len() > MAX_ORDER {
        return Err(format!("`order` lists at most {MAX_ORDER} sources"));
    }
    let name = |v: Option<&Value>| -> Result<Option<String>, String> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 128 => Ok(Some(s.clone())),
            _ => Err("source and device names have 1 to 128 bytes".into()),
        }
    };
    let mut keys = Vec::with_capacity(order.len());
    for k in order {
        let key = SourceKey {
            source: name(k.get("source"))?.ok_or("an entry of `order` without `source`")?,
            device: name(k.get("device"))?,
        };
        if keys.contains(&key) {
            return Err("`order` lists a source twice".into());
        }
        keys.push(key);
    }
    Ok(keys)
}

/// Checks a whole export before anything of it is stored: a Hearth export
/// of a version this server reads, every line one it can store. Answers
/// its size in bytes.
pub fn check(path: &Path) -> Result<u64, ImportError> {
    let file = std::fs::File::open(path)
        .map_err(|e| ImportError::Refused(format!("reading the export: {e}")))?;
    let mut lines = Lines::new(file);
    let mut header = false;
    // Exported workout ids, standing in for the ids the import gives them.
    let mut workouts: HashMap<String, String> = HashMap::new();
    while let Some(text) = lines.next_line()? {
        let line = format::parse_line(text);
        let line = line.map_err(|e| lines.refused(e))?;
        match line {
            Line::Header { .. } if header => {
                return Err(lines.refused("a second header line"));
            }
            Line::Header { version } => {
                if version != u64::from(format::VERSION) {
                    return Err(lines.refused(format!(
                        "export format version {version}; this Hearth reads version {}",
                        format::VERSION
                    )));
                }
                header = true;
            }
            _ if !header => {
                return Err(ImportError::Refused(
                    "not a Hearth export: its first line is not the header".into(),
                ))
            }
            Line::Characteristics(_) => {}
            Line::SourcePriority(value) => {
                priority(&value).map_err(|e| lines.refused(e))?;
            }
            Line::Sample(sample) => {
                entry(&sample, &workouts).map_err(|e| lines.refused(e))?;
                if sample.get("type").and_then(Value::as_str) == Some("workout") {
                    if let Some(id) = format::exported_id(&sample) {
                        workouts.insert(id.to_string(), id.to_string());
                    }
                }
            }
        }
    }
    if !header {
        return Err(ImportError::Refused(
            "not a Hearth export: the file is empty".into(),
        ));
    }
    Ok(lines.read)
}

/// Imports a checked export into `sink`.
pub fn import(path: &Path, sink: &mut dyn Sink) -> Result<Tally, ImportError> {
    let file = std::fs::File::open(path)
        .map_err(|e| ImportError::Malformed(format!("reading the export: {e}")))?;
    let mut lines = Lines::new(file);
    let mut tally = Tally::default();
    let mut workouts: HashMap<String, String> = HashMap::new();
    let mut held = Holding::new(BATCH);
    let mut order = Vec::new();
    while let Some(text) = lines.next_line()? {
        let line = format::parse_line(text).map_err(|e| lines.refused(e))?;
        tally.records += 1;
        match line {
            Line::Header { .. } => {}
            Line::Characteristics(values) => {
                let values: Vec<(String, String)> = values
                    .into_iter()
                    .filter_map(|(k, v)| Some((k, v.as_str()?.to_string())))
                    .collect();
                tally.characteristics = values.len() as u64;
                if !values.is_empty() {
                    sink.characteristics(values)?;
                }
            }
            Line::SourcePriority(value) => {
                order = priority(&value).map_err(|e| lines.refused(e))?;
            }
            Line::Sample(sample) => {
                let is_workout = sample.get("type").and_then(Value::as_str) == Some("workout");
                let (source, entry) = entry(&sample, &workouts).map_err(|e| lines.refused(e))?;
                *tally
                    .samples
                    .entry(sample["type"].as_str().unwrap_or_default().to_string())
                    .or_default() += 1;
                if !tally.sources.contains(&source) {
                    tally.sources.insert(source.clone());
                }
                if is_workout {
                    // Its routes name it by the id it gets here.
                    let ids = sink.add_now(&source, vec![entry])?;
                    if let (Some(old), Some(&new)) = (format::exported_id(&sample), ids.first()) {
                        workouts.insert(old.to_string(), Uuid::from_u128(new).to_string());
                    }
                    continue;
                }
                held.hold(&source, entry, |_, _| {}, sink)?;
            }
        }
        if tally.records.is_multiple_of(PROGRESS_EVERY) {
            sink.progress(lines.read, tally.records);
        }
    }
    held.flush(sink)?;
    // After the samples, so every source it names has data.
    if !order.is_empty() {
        sink.source_priority(order)?;
    }
    sink.progress(lines.read, tally.records);
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Routes are written a bounded amount at a time, however many one
    /// source has: held until the file's end, as their count alone once
    /// allowed, every route of an export would be in memory at once.
    #[test]
    fn routes_are_written_a_bounded_amount_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("export.ndjson");
        let mut lines = vec![
            json!({"record": "hearth_export", "version": format::VERSION}),
            json!({"record": "sample", "id": "w", "type": "workout", "source": "watch",
                "start": "2026-05-01T07:00:00Z", "end": "2026-05-01T08:00:00Z",
                "activity": "running"}),
        ];
        for r in 0..100 {
            let route: Vec<Value> = (0..1000)
                .map(|p| {
                    json!({"time": format!("2026-05-01T07:{:02}:{:02}Z", p / 60 % 60, p % 60),
                        "lat": 37.0 + f64::from(p) / 1e4, "lon": -122.0, "alt": 12.5})
                })
                .collect();
            lines.push(json!({"record": "sample", "id": format!("r{r}"),
                "type": "workout_route", "source": "watch", "workout": "w",
                "start": "2026-05-01T07:00:00Z", "end": "2026-05-01T07:16:39Z",
                "route": route}));
        }
        let text: Vec<String> = lines.iter().map(Value::to_string).collect();
        std::fs::write(&path, text.join("\n")).unwrap();
        let mut writes = crate::import::writes::Writes::default();
        let tally = import(&path, &mut writes).unwrap();
        assert_eq!(tally.samples["workout_route"], 100);
        assert_eq!(writes.entries["workout_route"], 100);
        assert!(
            crate::import::writes::bounded(&writes),
            "{} bytes in all, {} in one write",
            writes.total,
            writes.largest
        );
    }
}
