//! A stored row as the API shows it: reserved metadata becomes the
//! sample's own fields, and a correlation lists the members the caller may
//! read.

use serde_json::{Map, Value};
use uuid::Uuid;

use super::composed::{DISTANCE, ENERGY, MEMBERS, ROUTE, WORKOUT};
use super::{format_time, SampleError};
use crate::catalogue::{self, units, Kind, SampleType};
use crate::projection::Row;
use crate::view::View;
use crate::wire::samples::{Device, Measure, RoutePoint, Sample, SampleValue};

/// A sample as `view`'s caller sees it, its value in `unit` (default:
/// canonical).
pub fn present(
    view: &View,
    ty: &'static SampleType,
    row: &Row,
    unit: Option<&str>,
) -> Result<Sample, SampleError> {
    let (mut out, member_ids) = plain(view, ty, row, unit)?;
    view.disclose(ty.id, 1, 0);
    if ty.members().is_some() {
        let mut members = Vec::new();
        for id in member_ids {
            if let Some((mti, member)) = view.find(id.as_u128()) {
                let member_type = catalogue::get(mti);
                members.push(plain(view, member_type, &member, None)?.0);
                view.disclose(member_type.id, 1, 0);
            }
        }
        out.members = Some(members);
        if !view.sees_correlation_metadata(row) {
            out.metadata = None;
        }
    }
    Ok(out)
}

/// The sample itself, and a correlation's member ids.
fn plain(
    view: &View,
    ty: &'static SampleType,
    row: &Row,
    unit: Option<&str>,
) -> Result<(Sample, Vec<Uuid>), SampleError> {
    let sync = catalogue::lookup(ty.id).and_then(|ti| view.sync_tag(ti, row));
    let mut out = Sample {
        id: Uuid::from_u128(row.id),
        sync_version: sync.as_ref().map(|(_, version)| *version),
        sync_id: sync.map(|(sync_id, _)| sync_id.into()),
        type_id: ty.id,
        start: format_time(row.start_us, row.start_offset_min),
        end: format_time(row.end_us, row.end_offset_min),
        value: None,
        unit: None,
        source: view.source_name(row.source).to_string(),
        metadata: None,
        device: view.device(row).as_ref().map(Device::from),
        members: None,
        activity: None,
        duration_s: None,
        energy: None,
        distance: None,
        workout: None,
        route: None,
    };
    match &ty.kind {
        Kind::Quantity { canonical_unit, .. } => {
            let unit = unit.unwrap_or(canonical_unit);
            let value = units::from_canonical(ty, row.value, unit)
                .map_err(|e| SampleError::invalid(None, "unit", e.to_string()))?;
            // JSON has no infinity: it would come out as a null value.
            if !value.is_finite() {
                return Err(SampleError::invalid(
                    None,
                    "unit",
                    format!("a value is too large to express in {unit}"),
                ));
            }
            out.value = Some(SampleValue::Quantity(value));
            out.unit = Some(unit.to_string());
        }
        Kind::Category { .. } => {
            out.value = ty
                .category_name(row.value as u16)
                .map(SampleValue::Category);
        }
        _ => {}
    }
    let Some(mut meta) = row
        .metadata
        .as_deref()
        .and_then(|m| serde_json::from_str::<Map<String, Value>>(m).ok())
    else {
        return Ok((out, Vec::new()));
    };
    let mut take = |k: &str| meta.remove(k);
    let members = take(MEMBERS);
    let energy = take(ENERGY);
    let distance = take(DISTANCE);
    let workout = take(WORKOUT);
    let route = take(ROUTE);
    let mut member_ids = Vec::new();
    match &ty.kind {
        Kind::Correlation { .. } => {
            member_ids = members
                .as_ref()
                .and_then(Value::as_str)
                .map(|s| {
                    s.split(',')
                        .filter_map(|id| Uuid::parse_str(id).ok())
                        .collect()
                })
                .unwrap_or_default();
        }
        Kind::Workout { .. } => {
            out.activity = ty.category_name(row.value as u16);
            out.duration_s = Some((row.end_us - row.start_us) as f64 / 1e6);
            let measure = |v: Value, unit: &str| Measure {
                value: v.as_f64().unwrap_or_default(),
                unit: unit.to_string(),
            };
            out.energy = energy.map(|e| measure(e, "kcal"));
            out.distance = distance.map(|d| measure(d, "m"));
        }
        Kind::Route => {
            out.workout = Some(workout.and_then(|w| w.as_str().map(String::from)));
            let points = route
                .as_ref()
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .map(|p| RoutePoint {
                            time: format_time(
                                p[0].as_i64().unwrap_or_default(),
                                row.start_offset_min,
                            ),
                            lat: p[1].as_f64().unwrap_or_default(),
                            lon: p[2].as_f64().unwrap_or_default(),
                            alt: p[3].as_f64(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.route = Some(points);
        }
        _ => {}
    }
    if !meta.is_empty() {
        out.metadata = Some(meta);
    }
    Ok((out, member_ids))
}
