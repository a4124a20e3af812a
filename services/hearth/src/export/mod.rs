//! The owner's full export: everything the caller's [`View`] shows, one
//! JSON document per line, produced a page at a time so that an export of
//! millions of samples never sits in memory.
//!
//! Two formats:
//! - `ndjson`, Hearth's own: a header line, the characteristics, the source
//!   priority order, then every sample exactly as `GET /v1/samples`
//!   presents it (canonical units, devices, metadata, correlations with
//!   their members, workouts, routes), each as `{"record":"sample",…}`.
//!   Correlations come first; their members are not repeated as samples of
//!   their own. Workouts come before their routes. `hearth import ndjson`
//!   reads it back.
//! - `fhir`: FHIR R4 resources as NDJSON — a `Patient` with the
//!   characteristics, then one `Observation` per sample (LOINC codes where
//!   one exists, UCUM units, Hearth's type ids as a second coding).

pub mod client;
pub(crate) mod fhir;
pub mod ndjson;

use hashbrown::HashSet;
use serde_json::{json, Value};

use crate::catalogue::{self, Kind, TypeIndex};
use crate::query::samples::{self as query, SampleQuery};
use crate::samples::{self, SampleError};
use crate::view::View;

/// Samples read from the projection per step.
const PAGE: usize = 1000;

/// The format of an export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Ndjson,
    Fhir,
}

impl Format {
    pub fn parse(text: &str) -> Option<Format> {
        match text {
            "ndjson" => Some(Format::Ndjson),
            "fhir" => Some(Format::Fhir),
            _ => None,
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Format::Ndjson => "application/x-ndjson",
            Format::Fhir => "application/fhir+ndjson",
        }
    }

    pub fn file_name(self) -> &'static str {
        match self {
            Format::Ndjson => "hearth-export.ndjson",
            Format::Fhir => "hearth-export.fhir.ndjson",
        }
    }
}

/// Where an export stands.
enum Stage {
    Header,
    Samples {
        /// Position in [`Export::order`].
        ty: usize,
        /// The last row written of that type.
        after: Option<(i64, u128)>,
    },
    Done,
}

/// An export in progress: call [`Export::next_chunk`] until it answers
/// `None`.
pub struct Export {
    view: View,
    format: Format,
    order: Vec<TypeIndex>,
    stage: Stage,
    /// Correlation members already written inside their correlation.
    members: HashSet<u128>,
    /// Samples written so far.
    pub samples: u64,
}

impl Export {
    pub fn new(view: View, format: Format) -> Export {
        let all = || (0..catalogue::all().len()).map(|i| TypeIndex(i as u16));
        let kind = |t: &TypeIndex| &catalogue::get(*t).kind;
        // Correlations first, so that their members are known when the
        // member types follow; characteristics are not samples.
        let order = all()
            .filter(|t| matches!(kind(t), Kind::Correlation { .. }))
            .chain(all().filter(|t| {
                !matches!(
                    kind(t),
                    Kind::Correlation { .. } | Kind::Characteristic { .. }
                )
            }))
            .collect();
        Export {
            view,
            format,
            order,
            stage: Stage::Header,
            members: HashSet::new(),
            samples: 0,
        }
    }

    /// The next lines of the export, or `None` at its end (also after an
    /// error).
    pub fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, SampleError> {
        let next = self.step();
        if next.is_err() {
            self.stage = Stage::Done;
        }
        next
    }

    fn step(&mut self) -> Result<Option<Vec<u8>>, SampleError> {
        let mut out = Vec::new();
        match self.stage {
            Stage::Done => return Ok(None),
            Stage::Header => {
                for record in self.header() {
                    line(&mut out, &record);
                }
                self.stage = Stage::Samples { ty: 0, after: None };
            }
            Stage::Samples { ty, after } => {
                let Some(&ti) = self.order.get(ty) else {
                    self.stage = Stage::Done;
                    return Ok(Some(out));
                };
                let (rows, more) = query::page(
                    &self.view,
                    &SampleQuery {
                        ty: ti,
                        range: (i64::MIN, i64::MAX),
                        sources: None,
                        device: None,
                        after,
                        descending: false,
                        limit: PAGE,
                    },
                );
                let sample_type = catalogue::get(ti);
                for row in &rows {
                    if self.members.remove(&row.id) {
                        continue;
                    }
                    let sample = samples::present(&self.view, sample_type, row, None)?;
                    if let Some(members) = &sample.members {
                        self.members.extend(members.iter().map(|m| m.id.as_u128()));
                    }
                    let sample = serde_json::to_value(&sample).expect("a sample serialises");
                    let record = match self.format {
                        Format::Ndjson => ndjson::sample_record(sample),
                        Format::Fhir => fhir::observation(&sample),
                    };
                    line(&mut out, &record);
                    self.samples += 1;
                }
                self.stage = match (more, rows.last()) {
                    (true, Some(last)) => Stage::Samples {
                        ty,
                        after: Some((last.start_us, last.id)),
                    },
                    _ => Stage::Samples {
                        ty: ty + 1,
                        after: None,
                    },
                };
            }
        }
        Ok(Some(out))
    }

    fn header(&self) -> Vec<Value> {
        let characteristics: serde_json::Map<String, Value> = self
            .view
            .characteristics()
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        match self.format {
            Format::Ndjson => {
                let (_, order) = self.view.priority();
                let order: Vec<Value> = order
                    .iter()
                    .map(|k| json!({"source": k.source, "device": k.device}))
                    .collect();
                vec![
                    json!({"record": "hearth_export", "version": ndjson::VERSION}),
                    json!({"record": "characteristics", "values": characteristics}),
                    json!({"record": "source_priority", "order": order}),
                ]
            }
            Format::Fhir => vec![fhir::patient(&characteristics)],
        }
    }
}

fn line(out: &mut Vec<u8>, record: &Value) {
    serde_json::to_writer(&mut *out, record).expect("JSON serialises");
    out.push(b'\n');
}
