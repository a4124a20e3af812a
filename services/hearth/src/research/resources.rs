//! What a study receives, one line at a time: FHIR R4 `Patient` and
//! `Observation` resources, or Open mHealth data points. Built only from
//! what [`super::deidentify`] lets out; the LOINC and UCUM choices are the
//! owner's export's mapping table ([`crate::export::fhir`]).

use serde_json::{json, Map, Value};

use super::deidentify::{self, Birth, Moment, Policy, NINETY_OR_OLDER};
use crate::catalogue::{self, Kind, SampleType};
use crate::export::fhir::{self, CATEGORY, HEARTH_TYPES};
use crate::projection::Row;

/// Hearth's extensions on exported resources.
pub const EXTENSIONS: &str = "https://hearth.invalid/fhir/StructureDefinition";

/// The two forms a study may receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OutputFormat {
    /// FHIR R4 resources as NDJSON.
    Fhir,
    /// Open mHealth data points as NDJSON.
    OpenMHealth,
}

impl OutputFormat {
    /// `_outputFormat` as Bulk Data names it; a `+` may arrive as a space
    /// when the client did not escape it.
    pub fn parse(text: &str) -> Option<OutputFormat> {
        match text.trim().replace(' ', "+").as_str() {
            "application/fhir+ndjson" | "application/ndjson" | "ndjson" => Some(OutputFormat::Fhir),
            "application/vnd.openmhealth+ndjson" => Some(OutputFormat::OpenMHealth),
            _ => None,
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            OutputFormat::Fhir => "application/fhir+ndjson",
            OutputFormat::OpenMHealth => "application/vnd.openmhealth+ndjson",
        }
    }
}

/// The Open mHealth schema a type leaves as, if it has one: (schema name,
/// version, body field, unit).
pub fn omh_schema(
    type_id: &str,
) -> Option<(&'static str, &'static str, &'static str, &'static str)> {
    Some(match type_id {
        "step_count" => ("step-count", "3.0", "step_count", "steps"),
        "heart_rate" => ("heart-rate", "2.0", "heart_rate", "beats/min"),
        "blood_pressure" => ("blood-pressure", "4.0", "", "mmHg"),
        "body_mass" => ("body-weight", "3.0", "body_weight", "kg"),
        "blood_glucose" => ("blood-glucose", "4.0", "blood_glucose", "mg/dL"),
        "sleep_analysis" => ("sleep-episode", "1.1", "", ""),
        "workout" => ("physical-activity", "1.2", "", ""),
        _ => return None,
    })
}

/// The name a file of `type_id` has in the manifest under Open mHealth.
pub fn omh_output_type(type_id: &str) -> Option<String> {
    omh_schema(type_id).map(|(name, version, _, _)| format!("omh:{name}:{version}"))
}

/// One exported record: a sample, or an aggregate over a bucket.
pub struct Record<'a> {
    pub ty: &'static SampleType,
    /// What keys the resource id: the sample id, or type and bucket.
    pub key: [u8; 24],
    pub start_us: i64,
    pub end_us: i64,
    pub value: f64,
    /// Free-text metadata stays inside: only [`deidentify`] reads it.
    pub metadata: Option<&'a str>,
    /// A blood pressure panel's (systolic, diastolic).
    pub panel: Option<(f64, f64)>,
    /// The workout a route belongs to.
    pub workout_id: Option<u128>,
    /// Whether the value is a sum or an average over the bucket.
    pub aggregate: Option<&'static str>,
}

impl<'a> Record<'a> {
    pub fn of_row(ty: &'static SampleType, row: &'a Row) -> Record<'a> {
        let mut key = [0u8; 24];
        key[..16].copy_from_slice(&row.id.to_be_bytes());
        Record {
            ty,
            key,
            start_us: row.start_us,
            end_us: row.end_us,
            value: row.value,
            metadata: row.metadata.as_deref(),
            panel: None,
            workout_id: None,
            aggregate: None,
        }
    }
}

fn moment_json(policy: &Policy, us: i64) -> (Value, Option<i64>) {
    match policy.moment(us) {
        Moment::Shifted(s) => (json!(s), None),
        Moment::YearDay { year, day } => (json!(format!("{year:04}")), Some(day)),
    }
}

/// The study's `Patient`: its pseudonym, and gender and birth year where
/// consented.
pub fn patient(policy: &Policy, characteristics: &[(String, String)], now_us: i64) -> Value {
    let mut patient = json!({"resourceType": "Patient", "id": policy.secrets.pseudonym});
    for (id, value) in characteristics {
        match id.as_str() {
            "biological_sex" => patient["gender"] = json!(deidentify::gender(value)),
            "date_of_birth" => match policy.birth(value, now_us) {
                Some(Birth::Year(year)) => patient["birthDate"] = json!(format!("{year:04}")),
                Some(Birth::NinetyOrOlder) => {
                    patient["extension"] = json!([{
                        "url": format!("{EXTENSIONS}/age-category"),
                        "valueString": NINETY_OR_OLDER,
                    }]);
                }
                None => {}
            },
            _ => {}
        }
    }
    patient
}

/// One record as a FHIR Observation, or `None` when nothing of it may
/// leave (a route the owner did not turn on).
pub fn observation(policy: &Policy, r: &Record) -> Option<Value> {
    let type_id = r.ty.id;
    let mut obs = json!({
        "resourceType": "Observation",
        "id": policy.resource_id(&r.key),
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY,
            "code": if fhir::is_vital(type_id) { "vital-signs" } else { "activity" }}]}],
        "code": fhir::code(type_id),
        "subject": {"reference": format!("Patient/{}", policy.secrets.pseudonym)},
    });
    let (start, start_day) = moment_json(policy, r.start_us);
    let mut extensions = Vec::new();
    if let Some(day) = start_day {
        extensions.push(json!({"url": format!("{EXTENSIONS}/relative-day"), "valueInteger": day}));
    }
    if r.start_us == r.end_us {
        obs["effectiveDateTime"] = start;
    } else {
        let (end, end_day) = moment_json(policy, r.end_us);
        obs["effectivePeriod"] = json!({"start": start, "end": end});
        if let Some(day) = end_day {
            extensions.push(
                json!({"url": format!("{EXTENSIONS}/relative-day-end"), "valueInteger": day}),
            );
        }
    }
    if let Some(kind) = r.aggregate {
        extensions.push(json!({"url": format!("{EXTENSIONS}/aggregate"), "valueCode": kind}));
    }
    match &r.ty.kind {
        Kind::Quantity { canonical_unit, .. } => {
            obs["valueQuantity"] = fhir::quantity(type_id, &json!(r.value), Some(canonical_unit));
        }
        Kind::Category { .. } => {
            let value = r.ty.category_name(r.value as u16)?;
            obs["valueCodeableConcept"] = json!({"coding": [{
                "system": format!("{HEARTH_TYPES}/{type_id}"), "code": value}]});
        }
        Kind::Correlation { .. } => {
            let (systolic, diastolic) = r.panel?;
            obs["component"] = json!([
                {"code": fhir::code("blood_pressure_systolic"),
                 "valueQuantity": fhir::quantity("blood_pressure_systolic", &json!(systolic), Some("mmHg"))},
                {"code": fhir::code("blood_pressure_diastolic"),
                 "valueQuantity": fhir::quantity("blood_pressure_diastolic", &json!(diastolic), Some("mmHg"))},
            ]);
        }
        Kind::Workout { .. } => {
            let activity = r.ty.category_name(r.value as u16)?;
            obs["valueCodeableConcept"] = json!({"coding": [{
                "system": format!("{HEARTH_TYPES}/workout"), "code": activity}]});
            let (energy, distance) = deidentify::workout_measures(r.metadata);
            let mut components = Vec::new();
            if let Some(kcal) = energy {
                components.push(json!({"code": fhir::code("active_energy_burned"),
                    "valueQuantity": fhir::quantity("active_energy_burned", &json!(kcal), Some("kcal"))}));
            }
            if let Some(m) = distance {
                components.push(json!({"code": fhir::code("distance_walking_running"),
                    "valueQuantity": fhir::quantity("distance_walking_running", &json!(m), Some("m"))}));
            }
            if !components.is_empty() {
                obs["component"] = Value::Array(components);
            }
        }
        Kind::Route => {
            let points = policy.route(&deidentify::route_points(r.metadata))?;
            // FHIR has no element for a track: the coarsened points travel
            // as JSON, [seconds from the first point, latitude, longitude].
            obs["valueString"] = json!(serde_json::to_string(&points).unwrap_or_default());
            if let Some(workout) = r.workout_id {
                obs["partOf"] = json!([{"reference":
                    format!("Observation/{}", policy.resource_id(&id_key(workout)))}]);
            }
        }
        Kind::Characteristic { .. } => return None,
    }
    if !extensions.is_empty() {
        obs["extension"] = Value::Array(extensions);
    }
    Some(obs)
}

/// The key a sample's resource id is made from.
pub fn id_key(id: u128) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(&id.to_be_bytes());
    key
}

fn omh_time_frame(policy: &Policy, r: &Record) -> Option<Value> {
    let at = |us| match policy.moment(us) {
        Moment::Shifted(s) => Some(s),
        Moment::YearDay { .. } => None,
    };
    Some(if r.start_us == r.end_us {
        json!({"date_time": at(r.start_us)?})
    } else {
        json!({"time_interval": {"start_date_time": at(r.start_us)?, "end_date_time": at(r.end_us)?}})
    })
}

/// One record as an Open mHealth data point, if its type has a schema.
pub fn omh_data_point(policy: &Policy, r: &Record, created: &str) -> Option<Value> {
    let (name, version, field, unit) = omh_schema(r.ty.id)?;
    let mut body = Map::new();
    body.insert("effective_time_frame".into(), omh_time_frame(policy, r)?);
    match r.ty.id {
        "blood_pressure" => {
            let (systolic, diastolic) = r.panel?;
            body.insert(
                "systolic_blood_pressure".into(),
                json!({"value": systolic, "unit": unit}),
            );
            body.insert(
                "diastolic_blood_pressure".into(),
                json!({"value": diastolic, "unit": unit}),
            );
        }
        "sleep_analysis" => {
            let state = r.ty.category_name(r.value as u16)?;
            body.insert("sleep_type".into(), json!(state));
        }
        "workout" => {
            let activity = r.ty.category_name(r.value as u16)?;
            body.insert("activity_name".into(), json!(activity));
            let (energy, distance) = deidentify::workout_measures(r.metadata);
            if let Some(kcal) = energy {
                body.insert("kcal_burned".into(), json!({"value": kcal, "unit": "kcal"}));
            }
            if let Some(m) = distance {
                body.insert("distance".into(), json!({"value": m, "unit": "m"}));
            }
        }
        _ => {
            let value = match r.ty.id {
                // Hearth keeps glucose in mg/dL and mass in kg already.
                _ if catalogue::get(catalogue::lookup(r.ty.id)?).is_quantity() => r.value,
                _ => return None,
            };
            body.insert(field.into(), json!({"value": value, "unit": unit}));
        }
    }
    Some(json!({
        "header": {
            "uuid": uuid::Uuid::from_u128(u128::from_str_radix(&policy.resource_id(&r.key), 16).ok()?)
                .to_string(),
            "schema_id": {"namespace": "omh", "name": name, "version": version},
            "creation_date_time": created,
        },
        "body": body,
    }))
}
