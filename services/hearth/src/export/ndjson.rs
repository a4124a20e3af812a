//! Hearth's own export format, and reading it back as writes.
//!
//! Reading it back goes through `POST /v1/samples` like any other write:
//! every sample is written with its exported id as its `sync_id`, so an
//! interrupted import can simply be run again. The samples then belong to
//! the importing caller's source (the owner, for `hearth import ndjson`);
//! the source each came from stays in the export file.

use std::collections::HashMap;

use serde_json::{Map, Value};

/// The version of the format, in its header line.
pub const VERSION: u32 = 1;

/// A presented sample as a line of the export.
pub fn sample_record(mut sample: Value) -> Value {
    if let Some(obj) = sample.as_object_mut() {
        obj.insert("record".into(), Value::from("sample"));
    }
    sample
}

/// One line of an export.
pub enum Line {
    Header { version: u64 },
    Characteristics(Map<String, Value>),
    SourcePriority,
    Sample(Value),
}

/// Reads one line of an export.
pub fn parse_line(text: &str) -> Result<Line, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    match value.get("record").and_then(Value::as_str) {
        Some("hearth_export") => Ok(Line::Header {
            version: value.get("version").and_then(Value::as_u64).unwrap_or(0),
        }),
        Some("characteristics") => Ok(Line::Characteristics(
            value
                .get("values")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        )),
        Some("source_priority") => Ok(Line::SourcePriority),
        Some("sample") => Ok(Line::Sample(value)),
        Some(other) => Err(format!("unknown record `{other}`")),
        None => Err("a line without `record`".into()),
    }
}

/// The exported id of a sample.
pub fn exported_id(sample: &Value) -> Option<&str> {
    sample.get("id").and_then(Value::as_str)
}

/// Whether a sample is a route, which names its workout.
pub fn is_route(sample: &Value) -> bool {
    sample.get("type").and_then(Value::as_str) == Some("workout_route")
}

/// An exported sample as a sample to write (`POST /v1/samples`): its
/// exported id becomes its `sync_id`, a route names its workout by the id
/// the import gave it (`workouts` maps exported ids to new ones).
pub fn new_sample(sample: &Value, workouts: &HashMap<String, String>) -> Result<Value, String> {
    let obj = sample.as_object().ok_or("a sample is an object")?;
    let id = exported_id(sample).ok_or("a sample without `id`")?;
    let mut out = Map::new();
    out.insert("sync_id".into(), Value::from(id));
    for field in [
        "type", "start", "end", "value", "unit", "metadata", "device", "activity", "energy",
        "distance", "route",
    ] {
        if let Some(v) = obj.get(field).filter(|v| !v.is_null()) {
            out.insert(field.into(), v.clone());
        }
    }
    if let Some(members) = obj.get("members").and_then(Value::as_array) {
        let members: Vec<Value> = members
            .iter()
            .map(|m| {
                serde_json::json!({
                    "type": m.get("type"), "value": m.get("value"), "unit": m.get("unit"),
                })
            })
            .collect();
        out.insert("members".into(), Value::Array(members));
    }
    if is_route(sample) {
        let old = obj
            .get("workout")
            .and_then(Value::as_str)
            .ok_or("a route whose workout is unknown")?;
        let new = workouts
            .get(old)
            .ok_or_else(|| format!("the workout {old} of route {id} is not in the export"))?;
        out.insert("workout".into(), Value::from(new.as_str()));
    }
    Ok(Value::Object(out))
}
