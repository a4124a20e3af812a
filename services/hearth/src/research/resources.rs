//! What a study receives, one line at a time: FHIR R4 `Patient` and
//! `Observation` resources, or Open mHealth data points. Built only from
//! what [`super::deidentify`] lets out; the LOINC and UCUM choices are the
//! owner's export's mapping table (`export::fhir`).

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

/// A quantity type's Observation as pre-written JSON around the parts that
/// vary (id, times, value): the export's common case, written without
/// building a JSON tree per sample. [`observation`] gives the same
/// resource; a test holds them equal.
pub struct QuantityTemplate {
    /// `{…every constant member…,"id":"`
    head: Vec<u8>,
    /// `,"system":…,"unit":…}}` after the value.
    tail: Vec<u8>,
}

impl QuantityTemplate {
    /// The template for `ty`, if it is a quantity type.
    pub fn new(policy: &Policy, ty: &'static SampleType) -> Option<QuantityTemplate> {
        let Kind::Quantity { canonical_unit, .. } = &ty.kind else {
            return None;
        };
        let mut obs = json!({
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{"system": CATEGORY,
                "code": if fhir::is_vital(ty.id) { "vital-signs" } else { "activity" }}]}],
            "code": fhir::code(ty.id),
            "subject": {"reference": format!("Patient/{}", policy.secrets.pseudonym)},
        });
        let mut head = serde_json::to_vec(&obs).ok()?;
        head.pop();
        head.extend_from_slice(b",\"id\":\"");
        let mut quantity = fhir::quantity(ty.id, &json!(0), Some(canonical_unit));
        quantity.as_object_mut()?.remove("value");
        obs = quantity;
        let rest = serde_json::to_vec(&obs).ok()?;
        let mut tail = b",".to_vec();
        tail.extend_from_slice(&rest[1..]);
        tail.push(b'}');
        Some(QuantityTemplate { head, tail })
    }

    /// Writes one sample's Observation line; `false` when this record needs
    /// the general path (a Safe Harbor date, an aggregate).
    pub fn write(&self, policy: &Policy, r: &Record, out: &mut Vec<u8>) -> bool {
        if r.aggregate.is_some() {
            return false;
        }
        let (Some(start), Some(end)) = (
            policy.shifted_second(r.start_us),
            policy.shifted_second(r.end_us),
        ) else {
            return false;
        };
        out.extend_from_slice(&self.head);
        out.extend_from_slice(policy.resource_id(&r.key).as_bytes());
        out.extend_from_slice(b"\",");
        if r.start_us == r.end_us {
            out.extend_from_slice(b"\"effectiveDateTime\":\"");
            utc_second(start, out);
            out.extend_from_slice(b"\"");
        } else {
            out.extend_from_slice(b"\"effectivePeriod\":{\"end\":\"");
            utc_second(end, out);
            out.extend_from_slice(b"\",\"start\":\"");
            utc_second(start, out);
            out.extend_from_slice(b"\"}");
        }
        out.extend_from_slice(b",\"valueQuantity\":{\"value\":");
        if serde_json::to_writer(&mut *out, &r.value).is_err() {
            return false;
        }
        out.extend_from_slice(&self.tail);
        out.push(b'\n');
        true
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch (years 0 to 9999),
/// without a calendar library: days to civil date after Howard Hinnant's
/// algorithm.
fn utc_second(secs: i64, out: &mut Vec<u8>) {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let two = |v: i64, out: &mut Vec<u8>| {
        out.push(b'0' + (v / 10) as u8);
        out.push(b'0' + (v % 10) as u8);
    };
    let y = year.clamp(0, 9999);
    two(y / 100, out);
    two(y % 100, out);
    out.push(b'-');
    two(month, out);
    out.push(b'-');
    two(day, out);
    out.push(b'T');
    two(sod / 3600, out);
    out.push(b':');
    two(sod % 3600 / 60, out);
    out.push(b':');
    two(sod % 60, out);
    out.push(b'Z');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::research::deidentify::StudySecrets;
    use crate::wire::research::DeidentificationLevel;

    #[test]
    fn the_quantity_template_writes_what_observation_builds() {
        let secrets = StudySecrets::draw(DeidentificationLevel::ShiftedDates);
        let policy = Policy {
            level: DeidentificationLevel::ShiftedDates,
            secrets: &secrets,
            range_start_us: 0,
            routes: false,
        };
        for (type_id, start, end, value) in [
            (
                "step_count",
                1_767_225_600_123_456,
                1_767_225_660_000_000,
                42.0,
            ),
            ("heart_rate", 951_782_400_000_000, 951_782_400_000_000, 61.5),
            ("body_mass", -86_400_000_000, 0, 70.25),
            (
                "vo2_max",
                4_102_444_799_000_000,
                4_102_444_800_000_000,
                1e-7,
            ),
        ] {
            let ty = catalogue::get(catalogue::lookup(type_id).unwrap());
            let row = Row {
                id: 7,
                start_us: start,
                start_offset_min: 60,
                end_us: end,
                end_offset_min: 60,
                value,
                source: 0,
                device: 0,
                derived: None,
                seq: 1,
                metadata: None,
            };
            let r = Record::of_row(ty, &row);
            let template = QuantityTemplate::new(&policy, ty).unwrap();
            let mut line = Vec::new();
            assert!(template.write(&policy, &r, &mut line));
            assert_eq!(line.pop(), Some(b'\n'));
            let fast: Value = serde_json::from_slice(&line).unwrap();
            assert_eq!(fast, observation(&policy, &r).unwrap(), "{type_id}");
        }
    }
}
