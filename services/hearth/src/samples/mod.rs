//! Samples as the domain knows them: a request sample (the wire type) is
//! validated into what the writer stores, and a stored row is presented
//! back as the wire type. Everything here is independent of HTTP; a refusal
//! is a [`SampleError`] naming the sample and field at fault.

mod composed;
mod present;
mod time;

use std::borrow::Cow;

use chrono::{DateTime, FixedOffset, SecondsFormat};
use serde_json::{Map, Value};

use crate::catalogue::{self, units, Kind, SampleType, TypeIndex};
use crate::log::event::{Device, StoredSample};
use crate::log::writer::{NewEntry, NewSample, SyncKey};
use crate::query::sources::DEVICE_KINDS;
use crate::wire::samples as wire;
use crate::wire::ErrorCode;

pub use composed::{assign_ids, check_routes, member_ids, MAX_ROUTE_POINTS, RESERVED};
pub use present::present;
pub use time::{parse_time, time_bounds};

/// Most samples in one write.
pub const MAX_BATCH: usize = 10_000;
/// Largest metadata object per sample, serialised.
pub const MAX_METADATA_BYTES: usize = 4096;
const MAX_METADATA_KEYS: usize = 64;
const MAX_DEVICE_FIELD: usize = 128;
/// Longest `sync_id`, in bytes.
pub const MAX_SYNC_ID: usize = 128;
/// Largest magnitude of a quantity in its type's canonical unit: far
/// beyond any measurement, and small enough that no sum or mean over any
/// number of samples a store can hold, nor a value read in any unit,
/// reaches infinity, so one app's write cannot turn the figures every
/// reader sees into nothing (`null`).
pub const MAX_QUANTITY: f64 = 1e16;

/// Checks a quantity of `ty` in its canonical unit: finite, within
/// [`MAX_QUANTITY`], and not below zero for a type whose samples add up
/// (a negative step count would take from other sources' totals).
fn bounded_quantity(ty: &SampleType, v: f64) -> Result<f64, String> {
    if !v.is_finite() || v.abs() > MAX_QUANTITY {
        // Not naming the value: an import counts refusals by their message.
        return Err(format!(
            "{} is at most {MAX_QUANTITY:e} {} in size",
            ty.id,
            ty.canonical_unit().unwrap_or_default(),
        ));
    }
    if v < 0.0 && ty.aggregation() == Some(catalogue::Aggregation::Cumulative) {
        return Err(format!("{} adds up and must not be negative", ty.id));
    }
    Ok(v)
}

/// Why a sample (or a sample query) was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SampleError {
    /// The sample at fault, in a batch.
    pub index: Option<usize>,
    pub field: String,
    pub message: String,
    pub code: ErrorCode,
}

impl SampleError {
    pub fn invalid(index: Option<usize>, field: &str, message: impl Into<String>) -> SampleError {
        SampleError {
            index,
            field: field.to_string(),
            message: message.into(),
            code: ErrorCode::InvalidInput,
        }
    }
}

/// Checks the size of a batch before anything in it.
pub fn check_batch(batch: &wire::SampleBatch<'_>) -> Result<(), SampleError> {
    if batch.samples.is_empty() {
        return Err(SampleError::invalid(
            None,
            "samples",
            "at least one sample is required",
        ));
    }
    if batch.samples.len() > MAX_BATCH {
        return Err(SampleError {
            code: ErrorCode::TooManySamples,
            ..SampleError::invalid(
                None,
                "samples",
                format!("at most {MAX_BATCH} samples per request"),
            )
        });
    }
    Ok(())
}

/// A type id from the catalogue.
pub fn lookup_type(index: Option<usize>, id: &str) -> Result<TypeIndex, SampleError> {
    catalogue::lookup(id).ok_or_else(|| {
        SampleError::invalid(
            index,
            "type",
            format!("unknown sample type '{id}' (see GET /v1/types)"),
        )
    })
}

/// Refuses a unit that cannot express `ty`.
pub fn check_unit(ty: &SampleType, unit: Option<&str>) -> Result<(), SampleError> {
    match unit {
        Some(u) if !units::compatible(ty, u) => Err(SampleError::invalid(
            None,
            "unit",
            match units::to_canonical(ty, 1.0, u) {
                Err(e) => e.to_string(),
                Ok(_) => format!("unit '{u}' cannot express {}", ty.id),
            },
        )),
        _ => Ok(()),
    }
}

pub(crate) fn format_time(us: i64, offset_min: i16) -> String {
    let offset =
        FixedOffset::east_opt(offset_min as i32 * 60).unwrap_or(FixedOffset::east_opt(0).unwrap());
    DateTime::from_timestamp_micros(us)
        .unwrap_or_default()
        .with_timezone(&offset)
        .to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

/// A device as [`validate`] checks a sample's: a writer that names the same
/// device on many samples checks it once.
pub fn device_of(d: wire::NewDevice) -> Result<Device, SampleError> {
    validate_device(None, d)
}

fn validate_device(at: Option<usize>, d: wire::NewDevice) -> Result<Device, SampleError> {
    for (field, text) in [
        ("name", Some(&d.name)),
        ("model", d.model.as_ref()),
        ("manufacturer", d.manufacturer.as_ref()),
    ] {
        if let Some(text) = text {
            if text.is_empty() || text.len() > MAX_DEVICE_FIELD || text.contains(['/', ',']) {
                return Err(SampleError::invalid(
                    at,
                    "device",
                    format!("{field} must have 1 to {MAX_DEVICE_FIELD} bytes, without '/' or ','"),
                ));
            }
        }
    }
    if let Some(kind) = &d.kind {
        if !DEVICE_KINDS.contains(&kind.as_str()) {
            return Err(SampleError::invalid(
                at,
                "device",
                format!("kind must be one of {DEVICE_KINDS:?}"),
            ));
        }
    }
    Ok(Device {
        name: d.name.into(),
        model: d.model.map(Into::into),
        manufacturer: d.manufacturer.map(Into::into),
        kind: d.kind.map(Into::into),
    })
}

/// A sample's sync identifier and version: 1 to 128 bytes without control
/// characters, and a version of 0 or more (0 when absent).
fn validate_sync(
    at: Option<usize>,
    sync_id: Option<Cow<'_, str>>,
    version: Option<i64>,
) -> Result<Option<SyncKey>, SampleError> {
    let Some(sync_id) = sync_id else {
        return match version {
            Some(_) => Err(SampleError::invalid(
                at,
                "sync_version",
                "sync_version needs a sync_id",
            )),
            None => Ok(None),
        };
    };
    if sync_id.is_empty() || sync_id.len() > MAX_SYNC_ID {
        return Err(SampleError::invalid(
            at,
            "sync_id",
            format!("must have 1 to {MAX_SYNC_ID} bytes"),
        ));
    }
    if sync_id.chars().any(char::is_control) {
        return Err(SampleError::invalid(
            at,
            "sync_id",
            "must not contain control characters",
        ));
    }
    let version = version.unwrap_or(0);
    if version < 0 {
        return Err(SampleError::invalid(
            at,
            "sync_version",
            "must be 0 or more",
        ));
    }
    Ok(Some(SyncKey {
        // An identifier the request owns is kept, not copied.
        sync_id: sync_id.into(),
        version,
    }))
}

/// One request sample as the samples it is stored as (a correlation is its
/// members and itself), each with a new random id, and its sync identifier.
pub fn validate(index: usize, s: wire::NewSample<'_>) -> Result<NewEntry, SampleError> {
    validate_typed(index, None, s)
}

/// [`validate`] for a sample whose type the caller has looked up already
/// (`type_index`, the type `s` names): an import names a few types over
/// millions of samples.
pub fn validate_as(
    index: usize,
    type_index: TypeIndex,
    s: wire::NewSample<'_>,
) -> Result<NewEntry, SampleError> {
    debug_assert_eq!(catalogue::get(type_index).id, s.type_id);
    validate_typed(index, Some(type_index), s)
}

fn validate_typed(
    index: usize,
    known: Option<TypeIndex>,
    mut s: wire::NewSample<'_>,
) -> Result<NewEntry, SampleError> {
    let at = Some(index);
    let sync = validate_sync(at, s.sync_id.take(), s.sync_version)?;
    let parts = composed::Parts::take(&mut s);
    let type_index = match known {
        Some(type_index) => type_index,
        None => lookup_type(at, &s.type_id)?,
    };
    let ty = catalogue::get(type_index);
    let (start_us, start_offset_min) = parse_time(at, "start", &s.start)?;
    let (end_us, end_offset_min) = parse_time(at, "end", &s.end)?;
    if start_us > end_us {
        return Err(SampleError::invalid(at, "end", "end is before start"));
    }
    let id = crate::crypto::new_sample_id();
    // The stored form shares the id and times whatever the kind of type.
    let stored = |value: f64, metadata: Option<String>| StoredSample {
        id: id.into_bytes(),
        start_us,
        start_offset_min,
        end_us,
        end_offset_min,
        value,
        metadata,
    };
    if !matches!(ty.kind, Kind::Quantity { .. } | Kind::Category { .. }) {
        let metadata = s.metadata.map(|m| validate_metadata(at, m)).transpose()?;
        let device = s.device.map(|d| validate_device(at, d)).transpose()?;
        let base = NewSample {
            type_index,
            device,
            sample: stored(0.0, metadata),
        };
        let samples = composed::validate(at, ty, base, s.value, s.unit.is_some(), parts)?;
        return Ok(NewEntry { sync, samples });
    }
    parts.refuse_for(at, ty)?;
    let value = match &ty.kind {
        Kind::Quantity { .. } => {
            let v = s
                .value
                .as_f64()
                .ok_or_else(|| SampleError::invalid(at, "value", "expected a number"))?;
            let unit = s
                .unit
                .as_deref()
                .ok_or_else(|| SampleError::invalid(at, "unit", "a unit is required"))?;
            let canonical = units::to_canonical(ty, v, unit)
                .map_err(|e| SampleError::invalid(at, "unit", e.to_string()))?;
            bounded_quantity(ty, canonical).map_err(|e| SampleError::invalid(at, "value", e))?
        }
        Kind::Category { values } => {
            if s.unit.is_some() {
                return Err(SampleError::invalid(
                    at,
                    "unit",
                    format!("{} takes no unit", ty.id),
                ));
            }
            let name = s.value.as_str().ok_or_else(|| {
                SampleError::invalid(at, "value", format!("expected one of {values:?}"))
            })?;
            ty.category_index(name).ok_or_else(|| {
                SampleError::invalid(at, "value", format!("expected one of {values:?}"))
            })? as f64
        }
        _ => unreachable!("composed kinds returned above"),
    };
    let metadata = match s.metadata {
        None => None,
        Some(m) => Some(validate_metadata(at, m)?),
    };
    let device = s.device.map(|d| validate_device(at, d)).transpose()?;
    let new = NewSample {
        type_index,
        device,
        sample: stored(value, metadata),
    };
    Ok(NewEntry {
        sync,
        samples: vec![new],
    })
}

fn validate_metadata(at: Option<usize>, m: Map<String, Value>) -> Result<String, SampleError> {
    if m.len() > MAX_METADATA_KEYS {
        return Err(SampleError::invalid(
            at,
            "metadata",
            format!("more than {MAX_METADATA_KEYS} keys"),
        ));
    }
    for (k, v) in &m {
        if k.starts_with(RESERVED) {
            return Err(SampleError::invalid(
                at,
                "metadata",
                format!("keys starting with '{RESERVED}' are reserved"),
            ));
        }
        if k.is_empty() || k.len() > 128 {
            return Err(SampleError::invalid(
                at,
                "metadata",
                "keys must have 1 to 128 bytes",
            ));
        }
        if !(v.is_string() || v.is_number() || v.is_boolean()) {
            return Err(SampleError::invalid(
                at,
                "metadata",
                format!("value of '{k}' must be a string, number or boolean"),
            ));
        }
    }
    // serde_json's map is ordered by key: the text is canonical, so equal
    // metadata compares equal on retries.
    // Sized for the usual case (nothing to escape): it is not regrown.
    let guess = 2 + m
        .iter()
        .map(|(k, v)| k.len() + v.as_str().map_or(24, str::len) + 6)
        .sum::<usize>();
    let mut text = Vec::with_capacity(guess.min(MAX_METADATA_BYTES + 1));
    serde_json::to_writer(&mut text, &m).expect("a JSON map serialises");
    let text = String::from_utf8(text).expect("serde_json writes UTF-8");
    if text.len() > MAX_METADATA_BYTES {
        return Err(SampleError::invalid(
            at,
            "metadata",
            format!("larger than {MAX_METADATA_BYTES} bytes"),
        ));
    }
    Ok(text)
}
