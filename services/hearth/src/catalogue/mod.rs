//! The catalogue of sample types Hearth understands.
//!
//! Modelled on HealthKit's `HKQuantityTypeIdentifier` / `HKCategoryTypeIdentifier`,
//! with snake_case ids (`HKQuantityTypeIdentifierStepCount` -> `step_count`),
//! plus HealthKit's correlations (`blood_pressure`, `food`), workouts, workout
//! routes and characteristics (date of birth, biological sex, ...).

use std::sync::OnceLock;

use crate::wire::samples::{AggregationStyle, TypeInfo, ValueFormat};

mod types;
pub mod units;

pub use units::UnitError;

/// Position of a type in `all()`. Stable within one build; never persisted (the log stores the `id` string).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TypeIndex(pub u16);

/// How samples of a quantity type combine over an interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// Samples add up: statistics offer `sum`.
    Cumulative,
    /// Samples are point readings: statistics offer `min`, `max`, `avg`, `most_recent`.
    Discrete,
}

impl Aggregation {
    /// The same string serde produces.
    pub fn as_str(self) -> &'static str {
        match self {
            Aggregation::Cumulative => "cumulative",
            Aggregation::Discrete => "discrete",
        }
    }
}

#[derive(Debug)]
pub enum Kind {
    Quantity {
        canonical_unit: &'static str,
        aggregation: Aggregation,
    },
    /// The stored value is the index into `values`.
    Category { values: &'static [&'static str] },
    /// One sample grouping samples of its member types, written at once and
    /// governed by the members' permissions. The stored value is the number
    /// of members.
    Correlation { members: &'static [&'static str] },
    /// An exercise session; the stored value is the index into `activities`.
    /// Energy and distance ride along; duration is end minus start.
    Workout { activities: &'static [&'static str] },
    /// The locations recorded during a workout: its own type, because
    /// location is sensitive. The stored value is the number of points.
    Route,
    /// A fact about the owner, set by the owner alone; never a sample.
    /// `values: None` is a date.
    Characteristic {
        values: Option<&'static [&'static str]>,
    },
}

#[derive(Debug)]
pub struct SampleType {
    pub id: &'static str,
    pub group: &'static str,
    pub kind: Kind,
}

/// Every group a type may belong to, in presentation order.
pub const GROUPS: &[&str] = &[
    "activity",
    "body_measurements",
    "vital_signs",
    "lab_results",
    "nutrition",
    "hearing",
    "mobility",
    "reproductive_health",
    "sleep",
    "mindfulness",
    "symptoms",
    "other",
    "characteristics",
];

pub fn all() -> &'static [SampleType] {
    types::TABLE
}

/// Exact, case-sensitive id lookup. Called per sample on ingest, hence the sorted index.
pub fn lookup(id: &str) -> Option<TypeIndex> {
    static INDEX: OnceLock<Vec<(&'static str, TypeIndex)>> = OnceLock::new();
    let index = INDEX.get_or_init(|| {
        let mut index: Vec<_> = all()
            .iter()
            .enumerate()
            .map(|(i, ty)| {
                let i = u16::try_from(i).expect("catalogue has fewer than 65536 types");
                (ty.id, TypeIndex(i))
            })
            .collect();
        index.sort_unstable_by_key(|&(id, _)| id);
        index
    });
    index
        .binary_search_by(|&(probe, _)| probe.cmp(id))
        .ok()
        .map(|at| index[at].1)
}

/// Panics if `index` did not come from this build's `lookup`.
pub fn get(index: TypeIndex) -> &'static SampleType {
    &all()[usize::from(index.0)]
}

impl SampleType {
    /// `None` for categories.
    pub fn aggregation(&self) -> Option<Aggregation> {
        match self.kind {
            Kind::Quantity { aggregation, .. } => Some(aggregation),
            _ => None,
        }
    }

    /// `None` for categories.
    pub fn canonical_unit(&self) -> Option<&'static str> {
        match self.kind {
            Kind::Quantity { canonical_unit, .. } => Some(canonical_unit),
            _ => None,
        }
    }

    /// The category's value set; `None` for quantities.
    pub fn values(&self) -> Option<&'static [&'static str]> {
        match self.kind {
            Kind::Category { values } | Kind::Workout { activities: values } => Some(values),
            Kind::Characteristic { values } => values,
            _ => None,
        }
    }

    pub fn is_quantity(&self) -> bool {
        matches!(self.kind, Kind::Quantity { .. })
    }

    /// Member types of a correlation; `None` for other kinds.
    pub fn members(&self) -> Option<&'static [&'static str]> {
        match self.kind {
            Kind::Correlation { members } => Some(members),
            _ => None,
        }
    }

    pub fn is_characteristic(&self) -> bool {
        matches!(self.kind, Kind::Characteristic { .. })
    }

    /// The kind's name in `GET /v1/types`.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::Quantity { .. } => "quantity",
            Kind::Category { .. } => "category",
            Kind::Correlation { .. } => "correlation",
            Kind::Workout { .. } => "workout",
            Kind::Route => "workout_route",
            Kind::Characteristic { .. } => "characteristic",
        }
    }

    /// Position of `value` in the category's value set; `None` for quantities or unknown values.
    pub fn category_index(&self, value: &str) -> Option<u16> {
        let at = self.values()?.iter().position(|&v| v == value)?;
        u16::try_from(at).ok()
    }

    /// Name of the category value stored as `index`; `None` for quantities or out-of-range indices.
    pub fn category_name(&self, index: u16) -> Option<&'static str> {
        self.values()?.get(usize::from(index)).copied()
    }

    /// Molar mass in g/mol, for types that accept molar concentrations (blood glucose).
    pub fn molar_mass(&self) -> Option<f64> {
        types::molar_mass(self.id)
    }
}

/// The catalogue as `GET /v1/types` describes it.
pub fn describe() -> Vec<TypeInfo> {
    all().iter().map(SampleType::describe).collect()
}

impl SampleType {
    fn describe(&'static self) -> TypeInfo {
        let (id, group) = (self.id, self.group);
        match self.kind {
            Kind::Quantity {
                canonical_unit,
                aggregation,
            } => TypeInfo::Quantity {
                id,
                group,
                canonical_unit,
                aggregation: match aggregation {
                    Aggregation::Cumulative => AggregationStyle::Cumulative,
                    Aggregation::Discrete => AggregationStyle::Discrete,
                },
                compatible_units: units::compatible_units(self),
            },
            Kind::Category { values } => TypeInfo::Category { id, group, values },
            Kind::Correlation { members } => TypeInfo::Correlation { id, group, members },
            Kind::Workout { activities } => TypeInfo::Workout {
                id,
                group,
                activities,
                energy_unit: "kcal",
                distance_unit: "m",
            },
            Kind::Route => TypeInfo::WorkoutRoute {
                id,
                group,
                belongs_to: "workout",
            },
            Kind::Characteristic { values } => TypeInfo::Characteristic {
                id,
                group,
                values,
                format: values.is_none().then_some(ValueFormat::Date),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn is_snake_case(s: &str) -> bool {
        !s.is_empty()
            && s.split('_').all(|word| {
                !word.is_empty()
                    && word
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            })
            && s.as_bytes()[0].is_ascii_lowercase()
    }

    #[test]
    fn ids_are_unique_snake_case_and_round_trip() {
        assert!(all().len() < usize::from(u16::MAX));
        let mut seen = HashSet::new();
        for (i, ty) in all().iter().enumerate() {
            assert!(is_snake_case(ty.id), "{} is not snake_case", ty.id);
            assert!(seen.insert(ty.id), "duplicate id {}", ty.id);
            let index = lookup(ty.id).unwrap_or_else(|| panic!("lookup({}) failed", ty.id));
            assert_eq!(usize::from(index.0), i);
            assert_eq!(get(index).id, ty.id);
        }
    }

    #[test]
    fn groups_are_known() {
        for ty in all() {
            assert!(
                GROUPS.contains(&ty.group),
                "{} has group {}",
                ty.id,
                ty.group
            );
        }
        for group in GROUPS {
            assert!(
                all().iter().any(|ty| ty.group == *group),
                "{group} is empty"
            );
        }
    }

    #[test]
    fn kinds_are_well_formed() {
        for ty in all() {
            match ty.kind {
                Kind::Quantity { .. } => {
                    assert!(ty.aggregation().is_some());
                    assert!(ty.values().is_none());
                    assert_eq!(ty.category_index("not_applicable"), None);
                    assert_eq!(ty.category_name(0), None);
                }
                Kind::Correlation { members } => {
                    assert!(!members.is_empty(), "{}", ty.id);
                    for m in members {
                        let member =
                            get(lookup(m).unwrap_or_else(|| panic!("{} member {m}", ty.id)));
                        assert!(member.is_quantity(), "{}: {m}", ty.id);
                    }
                }
                Kind::Route | Kind::Characteristic { values: None } => {}
                Kind::Category { values }
                | Kind::Workout { activities: values }
                | Kind::Characteristic {
                    values: Some(values),
                } => {
                    assert!(!values.is_empty(), "{} has no values", ty.id);
                    assert!(ty.aggregation().is_none());
                    let unique: HashSet<_> = values.iter().collect();
                    assert_eq!(unique.len(), values.len(), "{} repeats a value", ty.id);
                    for (i, value) in values.iter().enumerate() {
                        assert!(is_snake_case(value), "{}: {value}", ty.id);
                        let i = u16::try_from(i).unwrap();
                        assert_eq!(ty.category_index(value), Some(i));
                        assert_eq!(ty.category_name(i), Some(*value));
                    }
                    let past_end = u16::try_from(values.len()).unwrap();
                    assert_eq!(ty.category_name(past_end), None);
                    assert_eq!(ty.category_index("no_such_value"), None);
                }
            }
        }
    }

    #[test]
    fn catalogue_is_thorough() {
        let quantities = all().iter().filter(|ty| ty.is_quantity()).count();
        let categories = all().len() - quantities;
        assert!(quantities >= 100, "{quantities} quantity types");
        assert!(categories >= 60, "{categories} category types");
        let dietary = all().iter().filter(|ty| ty.id.starts_with("dietary_"));
        for ty in dietary {
            assert_eq!(ty.group, "nutrition", "{}", ty.id);
            assert_eq!(ty.aggregation(), Some(Aggregation::Cumulative), "{}", ty.id);
        }
    }

    #[test]
    fn spot_checks() {
        let ty = |id: &str| get(lookup(id).unwrap_or_else(|| panic!("missing {id}")));
        let sleep = ty("sleep_analysis");
        assert_eq!(
            sleep.values().unwrap(),
            [
                "in_bed",
                "asleep_unspecified",
                "awake",
                "asleep_core",
                "asleep_deep",
                "asleep_rem"
            ]
        );
        assert_eq!(sleep.category_index("asleep_deep"), Some(4));
        assert_eq!(ty("mindful_session").values().unwrap(), ["not_applicable"]);
        assert_eq!(
            ty("menstrual_flow").values().unwrap(),
            ["unspecified", "light", "medium", "heavy", "none"]
        );
        assert_eq!(
            ty("headache").values().unwrap(),
            ["not_present", "present", "mild", "moderate", "severe"]
        );
        let steps = ty("step_count");
        assert_eq!(steps.canonical_unit(), Some("count"));
        assert_eq!(steps.aggregation(), Some(Aggregation::Cumulative));
        assert_eq!(ty("heart_rate").canonical_unit(), Some("count/min"));
        assert_eq!(ty("heart_rate").aggregation(), Some(Aggregation::Discrete));
        assert_eq!(ty("blood_glucose").group, "lab_results");
        assert!(ty("blood_glucose").molar_mass().is_some());
        assert!(ty("body_mass").molar_mass().is_none());
        assert_eq!(
            ty("blood_pressure").members().unwrap(),
            ["blood_pressure_systolic", "blood_pressure_diastolic"]
        );
        let food = ty("food").members().unwrap();
        assert!(food.contains(&"dietary_energy_consumed") && food.contains(&"dietary_water"));
        let dietary = all()
            .iter()
            .filter(|t| t.id.starts_with("dietary_"))
            .count();
        assert_eq!(food.len(), dietary, "food takes every nutrient");
        assert_eq!(ty("workout").category_index("running"), Some(34));
        assert_eq!(ty("workout_route").kind_name(), "workout_route");
        for c in [
            "date_of_birth",
            "biological_sex",
            "blood_type",
            "fitzpatrick_skin_type",
            "wheelchair_use",
        ] {
            assert!(ty(c).is_characteristic(), "{c}");
        }
    }

    #[test]
    fn lookup_rejects_near_misses() {
        for id in [
            "",
            "Step_Count",
            "step_count ",
            " step_count",
            "stepcount",
            "step_counts",
            "HKQuantityTypeIdentifierStepCount",
            "furlong",
        ] {
            assert_eq!(lookup(id), None, "{id:?}");
        }
    }

    #[test]
    fn describe_covers_everything() {
        let described = serde_json::to_value(describe()).unwrap();
        let entries = described.as_array().unwrap();
        assert_eq!(entries.len(), all().len());
        for (entry, ty) in entries.iter().zip(all()) {
            assert_eq!(entry["id"], ty.id);
            assert_eq!(entry["group"], ty.group);
            match ty.kind {
                Kind::Quantity {
                    canonical_unit,
                    aggregation,
                } => {
                    assert_eq!(entry["kind"], "quantity");
                    assert_eq!(entry["canonical_unit"], canonical_unit);
                    assert_eq!(entry["aggregation"], aggregation.as_str());
                    let units = entry["compatible_units"].as_array().unwrap();
                    assert!(units.iter().any(|u| u == canonical_unit));
                    assert!(entry.get("values").is_none());
                }
                Kind::Category { values } => {
                    assert_eq!(entry["kind"], "category");
                    assert_eq!(entry["values"].as_array().unwrap().len(), values.len());
                    assert!(entry.get("canonical_unit").is_none());
                    assert!(entry.get("compatible_units").is_none());
                }
                _ => {
                    assert_eq!(entry["kind"], ty.kind_name());
                    assert!(entry.get("canonical_unit").is_none());
                }
            }
        }
        let glucose = &entries[usize::from(lookup("blood_glucose").unwrap().0)];
        let units = glucose["compatible_units"].as_array().unwrap();
        assert!(units.iter().any(|u| u == "mmol/L"));
    }
}
