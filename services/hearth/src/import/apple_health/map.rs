//! From HealthKit's vocabulary to Hearth's: type identifiers, category
//! values, units, dates and the `device` string of an export.

use crate::catalogue::{self, Kind, SampleType, TypeIndex};

/// `HKQuantityTypeIdentifierStepCount` → `step_count`: the catalogue's ids
/// are HealthKit's names in snake case.
pub fn snake_case(camel: &str) -> String {
    let chars: Vec<char> = camel.chars().collect();
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        if i > 0 {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            let boundary = if c.is_ascii_uppercase() {
                // `StepCount`, `VO2Max`, and the last capital of an
                // acronym before a word: `UVExposure` → `uv_exposure`.
                prev.is_ascii_lowercase()
                    || prev.is_ascii_digit()
                    || (prev.is_ascii_uppercase() && next_lower)
            } else {
                // `Volume1` → `volume_1`, but `B12` and `VO2` stay whole.
                c.is_ascii_digit() && prev.is_ascii_lowercase()
            };
            if boundary {
                out.push('_');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

const TYPE_PREFIXES: &[&str] = &[
    "HKQuantityTypeIdentifier",
    "HKCategoryTypeIdentifier",
    "HKCorrelationTypeIdentifier",
    "HKDataType",
];

/// The catalogue type an export's `type` attribute names, if Hearth has it.
pub fn type_of(identifier: &str) -> Option<TypeIndex> {
    let name = TYPE_PREFIXES
        .iter()
        .find_map(|p| identifier.strip_prefix(p))?;
    let id = match name {
        // HealthKit spells a few differently from their snake-case form.
        "AppleSleepingBreathingDisturbances" => "apple_sleeping_breathing_disturbances".into(),
        "BloodPressure" => "blood_pressure".into(),
        other => snake_case(other),
    };
    catalogue::lookup(&id)
}

/// `HKWorkoutActivityTypeRunning` → `running`.
pub fn activity(identifier: &str) -> Option<&'static str> {
    let name = snake_case(identifier.strip_prefix("HKWorkoutActivityType")?);
    let workout = catalogue::get(catalogue::lookup("workout")?);
    let Kind::Workout { activities } = workout.kind else {
        return None;
    };
    activities.iter().copied().find(|a| *a == name)
}

/// `HKCategoryValueSleepAnalysisAsleepCore` → `asleep_core`: the longest
/// tail of the value's words that is one of the type's values.
pub fn category_value(ty: &SampleType, value: &str) -> Option<&'static str> {
    let Kind::Category { values } = ty.kind else {
        return None;
    };
    let Some(name) = value.strip_prefix("HKCategoryValue") else {
        // Early exports wrote some values as their raw number.
        return value
            .parse::<usize>()
            .ok()
            .and_then(|i| raw_category(ty.id, i))
            .and_then(|v| values.iter().copied().find(|x| *x == v));
    };
    let alias = match (ty.id, name) {
        // iOS 15 and before: asleep without a stage.
        ("sleep_analysis", "SleepAnalysisAsleep") => Some("asleep_unspecified"),
        ("ovulation_test_result", "OvulationTestResultPositive") => {
            Some("luteinizing_hormone_surge")
        }
        _ => None,
    };
    if let Some(alias) = alias {
        return values.iter().copied().find(|v| *v == alias);
    }
    let words = snake_case(name);
    let mut tail = words.as_str();
    loop {
        if let Some(v) = values.iter().copied().find(|v| *v == tail) {
            return Some(v);
        }
        tail = &tail[tail.find('_')? + 1..];
    }
}

/// HealthKit's raw values of the categories older exports wrote as numbers.
fn raw_category(type_id: &str, raw: usize) -> Option<&'static str> {
    match type_id {
        "sleep_analysis" => [
            "in_bed",
            "asleep_unspecified",
            "awake",
            "asleep_core",
            "asleep_deep",
            "asleep_rem",
        ]
        .get(raw)
        .copied(),
        _ if raw == 0 => Some("not_applicable"),
        _ => None,
    }
}

/// A quantity's value and unit as Hearth takes them. HealthKit writes
/// percentages as fractions (`0.97` with unit `%`), and a few compound units
/// with a middle dot.
pub fn quantity<'u>(ty: &SampleType, value: f64, unit: &'u str) -> (f64, &'u str) {
    let unit = match unit {
        "mL/min·kg" | "ml/(kg·min)" => "mL/kg/min",
        "kcal/hr·kg" => "kcal/(kg*hr)",
        other => other,
    };
    if unit == "%" && matches!(ty.kind, Kind::Quantity { .. }) {
        return (value * 100.0, "%");
    }
    (value, unit)
}

/// `2019-07-19 10:36:11 -0700` → `2019-07-19T10:36:11-07:00`.
pub fn date(text: &str) -> Option<String> {
    let b = text.as_bytes();
    // `YYYY-MM-DD HH:MM:SS ±HHMM`
    if b.len() != 25 || b[10] != b' ' || b[19] != b' ' || !matches!(b[20], b'+' | b'-') {
        return None;
    }
    let mut out = String::with_capacity(25);
    out.push_str(&text[..10]);
    out.push('T');
    out.push_str(&text[11..19]);
    out.push_str(&text[20..23]);
    out.push(':');
    out.push_str(&text[23..25]);
    Some(out)
}

/// A device as an export describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportDevice {
    pub name: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub hardware: Option<String>,
    pub software: Option<String>,
}

impl ExportDevice {
    /// Parses `<<HKDevice: 0x283a5c2d0>, name:Apple Watch, manufacturer:Apple,
    /// model:Watch, hardware:Watch2,4, software:4.3.1>`. The pointer is left
    /// out: it changes from one export to the next.
    pub fn parse(text: &str) -> ExportDevice {
        let body = match text.find(">,") {
            Some(at) => &text[at + 2..],
            None => text,
        };
        let body = body.trim().trim_end_matches('>');
        let mut device = ExportDevice::default();
        // Values may hold commas (`hardware:Watch2,4`): a field starts
        // only at `, key:` for a known key.
        const KEYS: &[&str] = &[
            "name:",
            "manufacturer:",
            "model:",
            "hardware:",
            "software:",
            "localIdentifier:",
            "UDIDeviceIdentifier:",
            "creation date:",
            "FDA UDI:",
        ];
        let mut starts: Vec<(usize, &str)> = Vec::new();
        for key in KEYS {
            let mut from = 0;
            while let Some(at) = body[from..].find(key) {
                let at = from + at;
                let ok = at == 0 || body[..at].ends_with(", ");
                if ok {
                    starts.push((at, key));
                }
                from = at + key.len();
            }
        }
        starts.sort();
        for (i, &(at, key)) in starts.iter().enumerate() {
            let value_start = at + key.len();
            let value_end = starts
                .get(i + 1)
                .map_or(body.len(), |&(next, _)| next.saturating_sub(2));
            let value = body[value_start..value_end.max(value_start)].trim();
            if value.is_empty() {
                continue;
            }
            let slot = match key {
                "name:" => &mut device.name,
                "manufacturer:" => &mut device.manufacturer,
                "model:" => &mut device.model,
                "hardware:" => &mut device.hardware,
                "software:" => &mut device.software,
                _ => continue,
            };
            *slot = Some(value.to_string());
        }
        device
    }

    /// What the device is, from its model.
    pub fn kind(&self) -> &'static str {
        let model = self.model.as_deref().unwrap_or("").to_ascii_lowercase();
        let name = self.name.as_deref().unwrap_or("").to_ascii_lowercase();
        let hardware = self.hardware.as_deref().unwrap_or("").to_ascii_lowercase();
        let any = |needle: &str| {
            model.contains(needle) || name.contains(needle) || hardware.contains(needle)
        };
        if any("watch") {
            "watch"
        } else if any("iphone") {
            "phone"
        } else if any("ipad") {
            "tablet"
        } else if any("ring") {
            "ring"
        } else if any("band") || any("fitbit") || any("whoop") {
            "band"
        } else if any("scale") || any("body cardio") {
            "scale"
        } else {
            "other"
        }
    }
}

/// Text Hearth keeps as a source or device name: no `/` or `,` (the
/// `sources=` filter splits on them), no control characters, 1 to `max`
/// bytes.
pub fn name_part(text: &str, max: usize) -> Option<String> {
    let mut out: String = text
        .chars()
        .map(|c| match c {
            '/' | '\\' => '-',
            ',' => ' ',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    let trimmed = out.trim().to_string();
    out = trimmed;
    if out.len() > max {
        let mut cut = max;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(id: &str) -> &'static SampleType {
        catalogue::get(catalogue::lookup(id).unwrap())
    }

    #[test]
    fn identifiers_map_to_catalogue_ids() {
        for (hk, id) in [
            ("HKQuantityTypeIdentifierStepCount", "step_count"),
            (
                "HKQuantityTypeIdentifierHeartRateVariabilitySDNN",
                "heart_rate_variability_sdnn",
            ),
            ("HKQuantityTypeIdentifierVO2Max", "vo2_max"),
            ("HKQuantityTypeIdentifierUVExposure", "uv_exposure"),
            (
                "HKQuantityTypeIdentifierForcedExpiratoryVolume1",
                "forced_expiratory_volume_1",
            ),
            (
                "HKQuantityTypeIdentifierDietaryVitaminB12",
                "dietary_vitamin_b12",
            ),
            (
                "HKQuantityTypeIdentifierDietaryVitaminB6",
                "dietary_vitamin_b6",
            ),
            (
                "HKQuantityTypeIdentifierAppleSleepingWristTemperature",
                "apple_sleeping_wrist_temperature",
            ),
            (
                "HKQuantityTypeIdentifierHeartRateRecoveryOneMinute",
                "heart_rate_recovery_one_minute",
            ),
            ("HKCategoryTypeIdentifierSleepAnalysis", "sleep_analysis"),
            ("HKCategoryTypeIdentifierAppleStandHour", "apple_stand_hour"),
            ("HKCorrelationTypeIdentifierBloodPressure", "blood_pressure"),
            (
                "HKQuantityTypeIdentifierBloodPressureSystolic",
                "blood_pressure_systolic",
            ),
            (
                "HKQuantityTypeIdentifierSixMinuteWalkTestDistance",
                "six_minute_walk_test_distance",
            ),
        ] {
            assert_eq!(type_of(hk).map(|t| catalogue::get(t).id), Some(id), "{hk}");
        }
        assert_eq!(type_of("HKQuantityTypeIdentifierMadeUp"), None);
        assert_eq!(type_of("StepCount"), None);
    }

    #[test]
    fn every_catalogue_type_has_a_healthkit_name() {
        // The reverse: each sample type's id is reachable from the name
        // HealthKit would give it.
        for t in catalogue::all() {
            if matches!(
                t.kind,
                Kind::Characteristic { .. } | Kind::Workout { .. } | Kind::Route
            ) {
                continue;
            }
            let camel: String =
                t.id.split('_')
                    .map(|w| {
                        let mut c = w.chars();
                        match c.next() {
                            Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                            None => String::new(),
                        }
                    })
                    .collect();
            let fixed = camel
                .replace("Sdnn", "SDNN")
                .replace("Vo2", "VO2")
                .replace("Uv", "UV");
            let prefix = match t.kind {
                Kind::Quantity { .. } => "HKQuantityTypeIdentifier",
                Kind::Category { .. } => "HKCategoryTypeIdentifier",
                _ => "HKCorrelationTypeIdentifier",
            };
            assert_eq!(
                type_of(&format!("{prefix}{fixed}")).map(|i| catalogue::get(i).id),
                Some(t.id),
                "{fixed}"
            );
        }
    }

    #[test]
    fn category_values() {
        let sleep = ty("sleep_analysis");
        for (hk, v) in [
            ("HKCategoryValueSleepAnalysisInBed", "in_bed"),
            ("HKCategoryValueSleepAnalysisAsleep", "asleep_unspecified"),
            (
                "HKCategoryValueSleepAnalysisAsleepUnspecified",
                "asleep_unspecified",
            ),
            ("HKCategoryValueSleepAnalysisAsleepCore", "asleep_core"),
            ("HKCategoryValueSleepAnalysisAwake", "awake"),
            ("1", "asleep_unspecified"),
        ] {
            assert_eq!(category_value(sleep, hk), Some(v), "{hk}");
        }
        assert_eq!(
            category_value(ty("apple_stand_hour"), "HKCategoryValueAppleStandHourStood"),
            Some("stood")
        );
        assert_eq!(
            category_value(ty("headache"), "HKCategoryValueSeverityNotPresent"),
            Some("not_present")
        );
        assert_eq!(
            category_value(ty("mindful_session"), "HKCategoryValueNotApplicable"),
            Some("not_applicable")
        );
        assert_eq!(
            category_value(
                ty("cervical_mucus_quality"),
                "HKCategoryValueCervicalMucusQualityEggWhite"
            ),
            Some("egg_white")
        );
        assert_eq!(
            category_value(sleep, "HKCategoryValueSleepAnalysisNap"),
            None
        );
    }

    #[test]
    fn activities_and_units() {
        assert_eq!(activity("HKWorkoutActivityTypeRunning"), Some("running"));
        assert_eq!(
            activity("HKWorkoutActivityTypeHighIntensityIntervalTraining"),
            Some("high_intensity_interval_training")
        );
        assert_eq!(activity("HKWorkoutActivityTypeUnicycling"), None);
        assert_eq!(quantity(ty("oxygen_saturation"), 0.97, "%").0, 97.0);
        assert_eq!(quantity(ty("vo2_max"), 40.0, "mL/min·kg").1, "mL/kg/min");
    }

    #[test]
    fn dates() {
        assert_eq!(
            date("2019-07-19 10:36:11 -0700").as_deref(),
            Some("2019-07-19T10:36:11-07:00")
        );
        assert_eq!(date("2019-07-19T10:36:11Z"), None);
    }

    #[test]
    fn devices() {
        let d = ExportDevice::parse(
            "<<HKDevice: 0x283a5c2d0>, name:Apple Watch, manufacturer:Apple Inc., model:Watch, hardware:Watch2,4, software:4.3.1>",
        );
        assert_eq!(d.name.as_deref(), Some("Apple Watch"));
        assert_eq!(d.manufacturer.as_deref(), Some("Apple Inc."));
        assert_eq!(d.model.as_deref(), Some("Watch"));
        assert_eq!(d.hardware.as_deref(), Some("Watch2,4"));
        assert_eq!(d.software.as_deref(), Some("4.3.1"));
        assert_eq!(d.kind(), "watch");
        let phone = ExportDevice::parse("<<HKDevice: 0x1>, name:iPhone, manufacturer:Apple Inc., model:iPhone, hardware:iPhone10,6, software:12.1>");
        assert_eq!(phone.kind(), "phone");
        let other =
            ExportDevice::parse("<<HKDevice: 0x2>, name:Blood pressure cuff, manufacturer:Acme>");
        assert_eq!(other.kind(), "other");
        assert_eq!(
            ExportDevice::parse("<<HKDevice: 0xdead>, name:Apple Watch, model:Watch>"),
            ExportDevice::parse("<<HKDevice: 0xbeef>, name:Apple Watch, model:Watch>")
        );
        assert_eq!(
            name_part("Ana's iPhone / Work, 2", 128).as_deref(),
            Some("Ana's iPhone - Work  2")
        );
    }
}
