//! Samples with structure: correlations (`blood_pressure`, `food`), workouts
//! and workout routes.
//!
//! They are stored as ordinary samples so that the log and the projection
//! need nothing new: a correlation is its member samples (each of its own
//! type, with an id of its own, so they read back through their types) plus
//! one sample of the correlation type whose metadata lists the members under
//! a reserved key; the writer compares a retried correlation member by
//! member (see [`assign_ids`]); a workout's value is its activity, with energy and
//! distance under reserved keys; a route is a sample of `workout_route` that
//! names its workout and carries its points. Keys starting with
//! [`RESERVED`] are refused in client metadata and never shown as metadata.

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{bounded_quantity, lookup_type, parse_time, SampleError};
use crate::catalogue::{self, units, Kind, SampleType, TypeIndex};
use crate::log::writer::{NewEntry, NewSample};
use crate::view::View;
use crate::wire::samples::{self as wire, Measure, NewMember, RoutePoint};

/// Prefix of metadata keys the server writes.
pub const RESERVED: &str = "hearth:";
pub(super) const MEMBERS: &str = "hearth:members";
pub(super) const ENERGY: &str = "hearth:energy";
pub(super) const DISTANCE: &str = "hearth:distance";
pub(super) const WORKOUT: &str = "hearth:workout";
pub(super) const ROUTE: &str = "hearth:route";
const MAX_MEMBERS: usize = 64;
/// Most points in one route sample.
pub const MAX_ROUTE_POINTS: usize = 20_000;

/// The structured fields of a sample in a write.
#[derive(Default)]
pub(super) struct Parts {
    members: Option<Vec<NewMember>>,
    activity: Option<String>,
    energy: Option<Measure>,
    distance: Option<Measure>,
    workout: Option<Uuid>,
    route: Option<Vec<RoutePoint>>,
}

impl Parts {
    pub(super) fn take(s: &mut wire::NewSample<'_>) -> Parts {
        Parts {
            members: s.members.take(),
            activity: s.activity.take(),
            energy: s.energy.take(),
            distance: s.distance.take(),
            workout: s.workout.take(),
            route: s.route.take(),
        }
    }

    fn present_fields(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.members.is_some() {
            out.push("members");
        }
        if self.activity.is_some() {
            out.push("activity");
        }
        if self.energy.is_some() {
            out.push("energy");
        }
        if self.distance.is_some() {
            out.push("distance");
        }
        if self.workout.is_some() {
            out.push("workout");
        }
        if self.route.is_some() {
            out.push("route");
        }
        out
    }

    /// Refuses structured fields on a type that takes none of `allowed`.
    fn only(
        &self,
        at: Option<usize>,
        ty: &SampleType,
        allowed: &[&str],
    ) -> Result<(), SampleError> {
        match self
            .present_fields()
            .into_iter()
            .find(|f| !allowed.contains(f))
        {
            Some(field) => Err(SampleError::invalid(
                at,
                field,
                format!("{} takes no `{field}`", ty.id),
            )),
            None => Ok(()),
        }
    }

    /// For quantity and category samples: no structured fields at all.
    pub(super) fn refuse_for(&self, at: Option<usize>, ty: &SampleType) -> Result<(), SampleError> {
        self.only(at, ty, &[])
    }
}

/// How a correlation names its members in its reserved metadata.
fn members_value(ids: &[[u8; 16]]) -> Value {
    let ids: Vec<String> = ids
        .iter()
        .map(|id| Uuid::from_bytes(*id).to_string())
        .collect();
    json!(ids.join(","))
}

/// The members a stored correlation names (none for other types).
pub fn member_ids(ty: TypeIndex, metadata: Option<&str>) -> Vec<u128> {
    if !matches!(catalogue::get(ty).kind, Kind::Correlation { .. }) {
        return Vec::new();
    }
    metadata
        .and_then(|m| serde_json::from_str::<Map<String, Value>>(m).ok())
        .and_then(|m| m.get(MEMBERS).and_then(Value::as_str).map(String::from))
        .map(|list| {
            list.split(',')
                .filter_map(|id| Uuid::parse_str(id).ok())
                .map(|id| id.as_u128())
                .collect()
        })
        .unwrap_or_default()
}

/// Gives the samples of an entry (the sample itself last) these ids; a
/// correlation's list of its members follows.
pub fn assign_ids(samples: &mut [NewSample], ids: &[[u8; 16]]) {
    for (s, id) in samples.iter_mut().zip(ids) {
        s.sample.id = *id;
    }
    let Some((head, members)) = samples.split_last_mut() else {
        return;
    };
    if !matches!(
        catalogue::get(head.type_index).kind,
        Kind::Correlation { .. }
    ) {
        return;
    }
    let mut meta = metadata_map(head);
    let member_ids: Vec<[u8; 16]> = members.iter().map(|m| m.sample.id).collect();
    meta.insert(MEMBERS.into(), members_value(&member_ids));
    head.sample.metadata = Some(serde_json::to_string(&meta).expect("a JSON map serialises"));
}

fn metadata_map(base: &NewSample) -> Map<String, Value> {
    base.sample
        .metadata
        .as_deref()
        .and_then(|m| serde_json::from_str(m).ok())
        .unwrap_or_default()
}

fn measure(at: Option<usize>, field: &str, as_type: &str, m: &Measure) -> Result<f64, SampleError> {
    let ty = catalogue::get(catalogue::lookup(as_type).expect("catalogue type"));
    let v = units::to_canonical(ty, m.value, &m.unit)
        .map_err(|e| SampleError::invalid(at, field, e.to_string()))?;
    bounded_quantity(ty, v).map_err(|e| SampleError::invalid(at, field, e))
}

/// Validates a correlation, workout or route; returns what is stored.
pub(super) fn validate(
    at: Option<usize>,
    ty: &'static SampleType,
    mut base: NewSample,
    value: Value,
    has_unit: bool,
    parts: Parts,
) -> Result<Vec<NewSample>, SampleError> {
    if !value.is_null() {
        return Err(SampleError::invalid(
            at,
            "value",
            format!("{} takes no `value`", ty.id),
        ));
    }
    if has_unit {
        return Err(SampleError::invalid(
            at,
            "unit",
            format!("{} takes no unit", ty.id),
        ));
    }
    let mut meta = metadata_map(&base);
    let mut out = Vec::new();
    match &ty.kind {
        Kind::Characteristic { .. } => {
            return Err(SampleError::invalid(
                at,
                "type",
                format!(
                    "{} is a characteristic: set it with PUT /v1/characteristics",
                    ty.id
                ),
            ))
        }
        Kind::Correlation { members } => {
            parts.only(at, ty, &["members"])?;
            let given = parts.members.ok_or_else(|| {
                SampleError::invalid(at, "members", "a correlation needs members")
            })?;
            if given.is_empty() || given.len() > MAX_MEMBERS {
                return Err(SampleError::invalid(
                    at,
                    "members",
                    format!("1 to {MAX_MEMBERS} members"),
                ));
            }
            let mut seen_types = Vec::new();
            let mut ids: Vec<[u8; 16]> = Vec::new();
            for m in given {
                let mti = lookup_type(at, &m.type_id)?;
                let mty = catalogue::get(mti);
                if !members.contains(&mty.id) {
                    return Err(SampleError::invalid(
                        at,
                        "members",
                        format!("{} holds only {members:?}", ty.id),
                    ));
                }
                if seen_types.contains(&mti) {
                    return Err(SampleError::invalid(
                        at,
                        "members",
                        format!("{} appears twice", mty.id),
                    ));
                }
                seen_types.push(mti);
                let v = units::to_canonical(mty, m.value, &m.unit)
                    .map_err(|e| SampleError::invalid(at, "members", e.to_string()))?;
                let v =
                    bounded_quantity(mty, v).map_err(|e| SampleError::invalid(at, "members", e))?;
                let id = crate::crypto::new_sample_id().into_bytes();
                ids.push(id);
                let mut sample = base.sample.clone();
                sample.id = id;
                sample.value = v;
                sample.metadata = None;
                out.push(NewSample {
                    type_index: mti,
                    sample,
                    device: base.device.clone(),
                });
            }
            if ty.id == "blood_pressure" && seen_types.len() != members.len() {
                return Err(SampleError::invalid(
                    at,
                    "members",
                    "blood pressure needs a systolic and a diastolic member",
                ));
            }
            base.sample.value = ids.len() as f64;
            meta.insert(MEMBERS.into(), members_value(&ids));
        }
        Kind::Workout { .. } => {
            parts.only(at, ty, &["activity", "energy", "distance"])?;
            let activity = parts.activity.ok_or_else(|| {
                SampleError::invalid(at, "activity", "a workout needs an activity")
            })?;
            let index = ty.category_index(&activity).ok_or_else(|| {
                SampleError::invalid(
                    at,
                    "activity",
                    format!("unknown activity '{activity}' (see GET /v1/types)"),
                )
            })?;
            base.sample.value = f64::from(index);
            if let Some(e) = &parts.energy {
                meta.insert(
                    ENERGY.into(),
                    json!(measure(at, "energy", "active_energy_burned", e)?),
                );
            }
            if let Some(d) = &parts.distance {
                meta.insert(
                    DISTANCE.into(),
                    json!(measure(at, "distance", "distance_walking_running", d)?),
                );
            }
        }
        Kind::Route => {
            parts.only(at, ty, &["workout", "route"])?;
            let workout = parts.workout.ok_or_else(|| {
                SampleError::invalid(at, "workout", "a route belongs to a workout")
            })?;
            let points = parts
                .route
                .ok_or_else(|| SampleError::invalid(at, "route", "a route needs points"))?;
            if points.is_empty() || points.len() > MAX_ROUTE_POINTS {
                return Err(SampleError::invalid(
                    at,
                    "route",
                    format!("1 to {MAX_ROUTE_POINTS} points"),
                ));
            }
            let mut stored = Vec::with_capacity(points.len());
            for p in &points {
                let (t, _) = parse_time(at, "route", &p.time)?;
                let ok = (-90.0..=90.0).contains(&p.lat)
                    && (-180.0..=180.0).contains(&p.lon)
                    && p.alt.is_none_or(f64::is_finite);
                if !ok {
                    return Err(SampleError::invalid(
                        at,
                        "route",
                        "lat, lon or alt out of range",
                    ));
                }
                if t < base.sample.start_us || t > base.sample.end_us {
                    return Err(SampleError::invalid(
                        at,
                        "route",
                        "every point lies between start and end",
                    ));
                }
                stored.push(json!([t, p.lat, p.lon, p.alt]));
            }
            base.sample.value = points.len() as f64;
            meta.insert(WORKOUT.into(), json!(workout.to_string()));
            meta.insert(ROUTE.into(), Value::Array(stored));
        }
        Kind::Quantity { .. } | Kind::Category { .. } => unreachable!("plain kinds"),
    }
    base.sample.metadata = Some(serde_json::to_string(&meta).expect("a JSON map serialises"));
    out.push(base);
    Ok(out)
}

/// Every route in a write names a stored workout the caller can see.
pub fn check_routes(view: &View, entries: &[NewEntry]) -> Result<(), SampleError> {
    let workout_ty = catalogue::lookup("workout").expect("catalogue type");
    for (i, entry) in entries.iter().enumerate() {
        for s in &entry.samples {
            if !matches!(catalogue::get(s.type_index).kind, Kind::Route) {
                continue;
            }
            let meta = metadata_map(s);
            let Some(id) = meta
                .get(WORKOUT)
                .and_then(Value::as_str)
                .and_then(|t| Uuid::parse_str(t).ok())
            else {
                continue;
            };
            let stored = view
                .find(id.as_u128())
                .is_some_and(|(ti, _)| ti == workout_ty);
            if !stored {
                return Err(SampleError::invalid(Some(i), "workout", "no such workout"));
            }
        }
    }
    Ok(())
}
