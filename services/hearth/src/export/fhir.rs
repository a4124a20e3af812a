//! Samples as FHIR R4 resources: one `Patient` with the characteristics,
//! one `Observation` per sample. LOINC codes and UCUM units where one
//! exists (HealthKitOnFHIR's and the HL7 vital-signs profile's choices);
//! every Observation also carries Hearth's type id as a coding, so nothing
//! is lost for types without a LOINC code.

use serde_json::{json, Map, Value};

pub(crate) const HEARTH_TYPES: &str = "https://hearth.invalid/fhir/CodeSystem/sample-type";
pub(crate) const LOINC: &str = "http://loinc.org";
pub(crate) const UCUM: &str = "http://unitsofmeasure.org";
pub(crate) const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

/// LOINC code, display, and the UCUM form of Hearth's canonical unit.
pub(crate) fn loinc(type_id: &str) -> Option<(&'static str, &'static str, &'static str)> {
    Some(match type_id {
        "step_count" => ("55423-8", "Number of steps", "{steps}"),
        "heart_rate" => ("8867-4", "Heart rate", "/min"),
        "resting_heart_rate" => ("40443-4", "Heart rate --resting", "/min"),
        "heart_rate_variability_sdnn" => ("80404-7", "R-R interval.standard deviation", "ms"),
        "oxygen_saturation" => ("59408-5", "Oxygen saturation by Pulse oximetry", "%"),
        "respiratory_rate" => ("9279-1", "Respiratory rate", "/min"),
        "body_temperature" => ("8310-5", "Body temperature", "Cel"),
        "body_mass" => ("29463-7", "Body weight", "kg"),
        "height" => ("8302-2", "Body height", "m"),
        "body_mass_index" => ("39156-5", "Body mass index", "kg/m2"),
        "blood_glucose" => ("2339-0", "Glucose", "mg/dL"),
        "active_energy_burned" => ("41981-2", "Calories burned", "kcal"),
        "blood_pressure" => ("85354-9", "Blood pressure panel", ""),
        "blood_pressure_systolic" => ("8480-6", "Systolic blood pressure", "mm[Hg]"),
        "blood_pressure_diastolic" => ("8462-4", "Diastolic blood pressure", "mm[Hg]"),
        "workout" => ("73985-4", "Exercise activity", ""),
        _ => return None,
    })
}

pub(crate) fn is_vital(type_id: &str) -> bool {
    matches!(
        type_id,
        "heart_rate"
            | "resting_heart_rate"
            | "oxygen_saturation"
            | "respiratory_rate"
            | "body_temperature"
            | "body_mass"
            | "height"
            | "body_mass_index"
            | "blood_pressure"
    )
}

pub(crate) fn code(type_id: &str) -> Value {
    let mut coding = Vec::new();
    if let Some((code, display, _)) = loinc(type_id) {
        coding.push(json!({"system": LOINC, "code": code, "display": display}));
    }
    coding.push(json!({"system": HEARTH_TYPES, "code": type_id}));
    json!({"coding": coding, "text": type_id})
}

pub(crate) fn quantity(type_id: &str, value: &Value, unit: Option<&str>) -> Value {
    let ucum = loinc(type_id)
        .map(|(_, _, u)| u)
        .filter(|u| !u.is_empty())
        .or(unit);
    json!({"value": value, "unit": unit.unwrap_or(""), "system": UCUM, "code": ucum.unwrap_or("")})
}

/// The owner, with the characteristics FHIR has a place for; all of them
/// as extensions with Hearth's ids.
pub fn patient(characteristics: &Map<String, Value>) -> Value {
    let mut patient = json!({"resourceType": "Patient", "id": "owner"});
    if let Some(birth) = characteristics.get("date_of_birth") {
        patient["birthDate"] = birth.clone();
    }
    if let Some(sex) = characteristics
        .get("biological_sex")
        .and_then(Value::as_str)
    {
        patient["gender"] = json!(match sex {
            "female" => "female",
            "male" => "male",
            _ => "other",
        });
    }
    let extensions: Vec<Value> = characteristics
        .iter()
        .map(|(k, v)| json!({"url": format!("{HEARTH_TYPES}/{k}"), "valueString": v}))
        .collect();
    if !extensions.is_empty() {
        patient["extension"] = Value::Array(extensions);
    }
    patient
}

/// One presented sample as an Observation.
pub fn observation(sample: &Value) -> Value {
    let type_id = sample["type"].as_str().unwrap_or_default();
    let mut obs = json!({
        "resourceType": "Observation",
        "id": sample["id"],
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY,
            "code": if is_vital(type_id) { "vital-signs" } else { "activity" }}]}],
        "code": code(type_id),
        "subject": {"reference": "Patient/owner"},
    });
    if sample["start"] == sample["end"] {
        obs["effectiveDateTime"] = sample["start"].clone();
    } else {
        obs["effectivePeriod"] = json!({"start": sample["start"], "end": sample["end"]});
    }
    let mut device = sample["source"].as_str().unwrap_or_default().to_string();
    if let Some(name) = sample["device"]["name"].as_str() {
        device = format!("{device}/{name}");
    }
    obs["device"] = json!({"display": device});
    match &sample["value"] {
        Value::Number(_) => {
            obs["valueQuantity"] = quantity(type_id, &sample["value"], sample["unit"].as_str());
        }
        Value::String(s) => {
            obs["valueCodeableConcept"] =
                json!({"coding": [{"system": format!("{HEARTH_TYPES}/{type_id}"), "code": s}]});
        }
        _ => {}
    }
    let mut components = Vec::new();
    if let Some(members) = sample["members"].as_array() {
        for m in members {
            let member_type = m["type"].as_str().unwrap_or_default();
            components.push(json!({
                "code": code(member_type),
                "valueQuantity": quantity(member_type, &m["value"], m["unit"].as_str()),
            }));
        }
    }
    if let Some(activity) = sample["activity"].as_str() {
        obs["valueCodeableConcept"] =
            json!({"coding": [{"system": format!("{HEARTH_TYPES}/workout"), "code": activity}]});
        for (field, as_type) in [
            ("energy", "active_energy_burned"),
            ("distance", "distance_walking_running"),
        ] {
            if let Some(m) = sample[field].as_object() {
                components.push(json!({
                    "code": code(as_type),
                    "valueQuantity": quantity(as_type, &m["value"], m["unit"].as_str()),
                }));
            }
        }
    }
    if !components.is_empty() {
        obs["component"] = Value::Array(components);
    }
    if let Some(workout) = sample["workout"].as_str() {
        obs["partOf"] = json!([{"reference": format!("Observation/{workout}")}]);
    }
    if let Some(route) = sample["route"].as_array() {
        // FHIR has no element for a track: the points travel as JSON.
        obs["valueString"] = json!(serde_json::to_string(route).unwrap_or_default());
    }
    if let Some(meta) = sample["metadata"].as_object() {
        let notes: Vec<Value> = meta
            .iter()
            .map(|(k, v)| json!({"text": format!("{k}: {v}")}))
            .collect();
        obs["note"] = Value::Array(notes);
    }
    obs
}
