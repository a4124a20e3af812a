//! The static table, one line per type.
//!
//! Order is presentation order only: `TypeIndex` is never persisted, so rows may be
//! reordered or inserted freely. Ids, units and value sets are persisted contracts; don't
//! rename them. Category values are stored as indices, so value sets may only grow at the end.
//!
//! Aggregation follows HealthKit's `HKQuantityAggregationStyle`. Percentages are stored
//! as 0–100 (HealthKit uses 0–1). HealthKit's category raw values are not kept; a value is
//! stored as its position in the list.

use super::Aggregation::{self, Cumulative, Discrete};
use super::{Kind, SampleType};

const ACTIVITY: &str = "activity";
const BODY: &str = "body_measurements";
const VITALS: &str = "vital_signs";
const LAB: &str = "lab_results";
const NUTRITION: &str = "nutrition";
const HEARING: &str = "hearing";
const MOBILITY: &str = "mobility";
const REPRODUCTIVE: &str = "reproductive_health";
const SLEEP: &str = "sleep";
const MINDFULNESS: &str = "mindfulness";
const SYMPTOMS: &str = "symptoms";
const OTHER: &str = "other";
const CHARACTERISTICS: &str = "characteristics";

/// Event-only categories: the sample's existence and time range are the data.
const NOT_APPLICABLE: &[&str] = &["not_applicable"];
const SEVERITY: &[&str] = &["not_present", "present", "mild", "moderate", "severe"];
const PRESENCE: &[&str] = &["present", "not_present"];
const BLEEDING: &[&str] = &["unspecified", "light", "medium", "heavy", "none"];
const TEST_RESULT: &[&str] = &["negative", "positive", "indeterminate"];

const fn q(
    id: &'static str,
    group: &'static str,
    unit: &'static str,
    agg: Aggregation,
) -> SampleType {
    let kind = Kind::Quantity {
        canonical_unit: unit,
        aggregation: agg,
    };
    SampleType { id, group, kind }
}

/// Everything eaten or drunk adds up.
const fn diet(id: &'static str, unit: &'static str) -> SampleType {
    q(id, NUTRITION, unit, Cumulative)
}

const fn c(id: &'static str, group: &'static str, values: &'static [&'static str]) -> SampleType {
    SampleType {
        id,
        group,
        kind: Kind::Category { values },
    }
}

const fn characteristic(id: &'static str, values: Option<&'static [&'static str]>) -> SampleType {
    SampleType {
        id,
        group: CHARACTERISTICS,
        kind: Kind::Characteristic { values },
    }
}

/// Every nutrient a `food` correlation may hold.
const FOOD: &[&str] = &[
    "dietary_energy_consumed",
    "dietary_carbohydrates",
    "dietary_fiber",
    "dietary_sugar",
    "dietary_fat_total",
    "dietary_fat_monounsaturated",
    "dietary_fat_polyunsaturated",
    "dietary_fat_saturated",
    "dietary_cholesterol",
    "dietary_protein",
    "dietary_vitamin_a",
    "dietary_thiamin",
    "dietary_riboflavin",
    "dietary_niacin",
    "dietary_pantothenic_acid",
    "dietary_vitamin_b6",
    "dietary_biotin",
    "dietary_vitamin_b12",
    "dietary_vitamin_c",
    "dietary_vitamin_d",
    "dietary_vitamin_e",
    "dietary_vitamin_k",
    "dietary_folate",
    "dietary_calcium",
    "dietary_chloride",
    "dietary_iron",
    "dietary_magnesium",
    "dietary_phosphorus",
    "dietary_potassium",
    "dietary_sodium",
    "dietary_zinc",
    "dietary_chromium",
    "dietary_copper",
    "dietary_iodine",
    "dietary_manganese",
    "dietary_molybdenum",
    "dietary_selenium",
    "dietary_water",
    "dietary_caffeine",
];

/// HealthKit's `HKWorkoutActivityType`, snake_case. Stored as indices: only append.
pub(super) const ACTIVITIES: &[&str] = &[
    "american_football",
    "archery",
    "australian_football",
    "badminton",
    "baseball",
    "basketball",
    "bowling",
    "boxing",
    "climbing",
    "cricket",
    "cross_training",
    "curling",
    "cycling",
    "dance",
    "elliptical",
    "equestrian_sports",
    "fencing",
    "fishing",
    "functional_strength_training",
    "golf",
    "gymnastics",
    "handball",
    "hiking",
    "hockey",
    "hunting",
    "lacrosse",
    "martial_arts",
    "mind_and_body",
    "paddle_sports",
    "play",
    "preparation_and_recovery",
    "racquetball",
    "rowing",
    "rugby",
    "running",
    "sailing",
    "skating_sports",
    "snow_sports",
    "soccer",
    "softball",
    "squash",
    "stair_climbing",
    "surfing_sports",
    "swimming",
    "table_tennis",
    "tennis",
    "track_and_field",
    "traditional_strength_training",
    "volleyball",
    "walking",
    "water_fitness",
    "water_polo",
    "water_sports",
    "wrestling",
    "yoga",
    "barre",
    "core_training",
    "cross_country_skiing",
    "downhill_skiing",
    "flexibility",
    "high_intensity_interval_training",
    "jump_rope",
    "kickboxing",
    "pilates",
    "snowboarding",
    "stairs",
    "step_training",
    "wheelchair_walk_pace",
    "wheelchair_run_pace",
    "tai_chi",
    "mixed_cardio",
    "hand_cycling",
    "disc_sports",
    "fitness_gaming",
    "cardio_dance",
    "social_dance",
    "pickleball",
    "cooldown",
    "swim_bike_run",
    "transition",
    "underwater_diving",
    "other",
];

const fn symptom(id: &'static str) -> SampleType {
    c(id, SYMPTOMS, SEVERITY)
}

/// Types that accept molar concentrations, with their molar mass in g/mol.
pub(super) fn molar_mass(id: &str) -> Option<f64> {
    match id {
        // Glucose, C6H12O6; the value HealthKit itself uses.
        "blood_glucose" => Some(180.155_88),
        _ => None,
    }
}

#[rustfmt::skip]
pub(super) static TABLE: &[SampleType] = &[
    // Activity
    q("step_count", ACTIVITY, "count", Cumulative),
    q("distance_walking_running", ACTIVITY, "m", Cumulative),
    q("distance_cycling", ACTIVITY, "m", Cumulative),
    q("distance_wheelchair", ACTIVITY, "m", Cumulative),
    q("distance_swimming", ACTIVITY, "m", Cumulative),
    q("distance_downhill_snow_sports", ACTIVITY, "m", Cumulative),
    q("distance_rowing", ACTIVITY, "m", Cumulative),
    q("distance_paddle_sports", ACTIVITY, "m", Cumulative),
    q("distance_cross_country_skiing", ACTIVITY, "m", Cumulative),
    q("distance_skating_sports", ACTIVITY, "m", Cumulative),
    q("active_energy_burned", ACTIVITY, "kcal", Cumulative),
    q("basal_energy_burned", ACTIVITY, "kcal", Cumulative),
    q("flights_climbed", ACTIVITY, "count", Cumulative),
    q("push_count", ACTIVITY, "count", Cumulative),
    q("swimming_stroke_count", ACTIVITY, "count", Cumulative),
    q("nike_fuel", ACTIVITY, "count", Cumulative),
    q("apple_exercise_time", ACTIVITY, "min", Cumulative),
    q("apple_move_time", ACTIVITY, "min", Cumulative),
    q("apple_stand_time", ACTIVITY, "min", Cumulative),
    q("time_in_daylight", ACTIVITY, "min", Cumulative),
    q("vo2_max", ACTIVITY, "mL/kg/min", Discrete),
    q("physical_effort", ACTIVITY, "kcal/(kg*hr)", Discrete),
    q("workout_effort_score", ACTIVITY, "appleEffortScore", Discrete),
    q("estimated_workout_effort_score", ACTIVITY, "appleEffortScore", Discrete),
    q("cycling_speed", ACTIVITY, "m/s", Discrete),
    q("cycling_power", ACTIVITY, "W", Discrete),
    q("cycling_functional_threshold_power", ACTIVITY, "W", Discrete),
    q("cycling_cadence", ACTIVITY, "count/min", Discrete),
    q("running_speed", ACTIVITY, "m/s", Discrete),
    q("running_power", ACTIVITY, "W", Discrete),
    q("running_stride_length", ACTIVITY, "m", Discrete),
    q("running_vertical_oscillation", ACTIVITY, "m", Discrete),
    q("running_ground_contact_time", ACTIVITY, "ms", Discrete),
    q("rowing_speed", ACTIVITY, "m/s", Discrete),
    q("paddle_sports_speed", ACTIVITY, "m/s", Discrete),
    q("cross_country_skiing_speed", ACTIVITY, "m/s", Discrete),
    c("apple_stand_hour", ACTIVITY, &["stood", "idle"]),
    c("low_cardio_fitness_event", ACTIVITY, &["low_fitness"]),

    // Body measurements
    q("height", BODY, "m", Discrete),
    q("body_mass", BODY, "kg", Discrete),
    q("body_mass_index", BODY, "count", Discrete),
    q("body_fat_percentage", BODY, "%", Discrete),
    q("lean_body_mass", BODY, "kg", Discrete),
    q("waist_circumference", BODY, "m", Discrete),
    q("apple_sleeping_wrist_temperature", BODY, "degC", Discrete),

    // Vital signs
    q("heart_rate", VITALS, "count/min", Discrete),
    q("resting_heart_rate", VITALS, "count/min", Discrete),
    q("walking_heart_rate_average", VITALS, "count/min", Discrete),
    q("heart_rate_variability_sdnn", VITALS, "ms", Discrete),
    q("heart_rate_recovery_one_minute", VITALS, "count/min", Discrete),
    q("atrial_fibrillation_burden", VITALS, "%", Discrete),
    q("oxygen_saturation", VITALS, "%", Discrete),
    q("body_temperature", VITALS, "degC", Discrete),
    q("blood_pressure_systolic", VITALS, "mmHg", Discrete),
    q("blood_pressure_diastolic", VITALS, "mmHg", Discrete),
    q("respiratory_rate", VITALS, "count/min", Discrete),
    c("high_heart_rate_event", VITALS, NOT_APPLICABLE),
    c("low_heart_rate_event", VITALS, NOT_APPLICABLE),
    c("irregular_heart_rhythm_event", VITALS, NOT_APPLICABLE),

    // Lab and test results
    q("blood_glucose", LAB, "mg/dL", Discrete),
    q("blood_alcohol_content", LAB, "%", Discrete),
    q("number_of_alcoholic_beverages", LAB, "count", Cumulative),
    q("insulin_delivery", LAB, "IU", Cumulative),
    q("electrodermal_activity", LAB, "S", Discrete),
    q("forced_expiratory_volume_1", LAB, "L", Discrete),
    q("forced_vital_capacity", LAB, "L", Discrete),
    q("peak_expiratory_flow_rate", LAB, "L/min", Discrete),
    q("inhaler_usage", LAB, "count", Cumulative),
    q("number_of_times_fallen", LAB, "count", Cumulative),
    q("peripheral_perfusion_index", LAB, "%", Discrete),

    // Nutrition: energy and macronutrients
    diet("dietary_energy_consumed", "kcal"),
    diet("dietary_carbohydrates", "g"),
    diet("dietary_fiber", "g"),
    diet("dietary_sugar", "g"),
    diet("dietary_fat_total", "g"),
    diet("dietary_fat_monounsaturated", "g"),
    diet("dietary_fat_polyunsaturated", "g"),
    diet("dietary_fat_saturated", "g"),
    diet("dietary_cholesterol", "g"),
    diet("dietary_protein", "g"),
    // Vitamins
    diet("dietary_vitamin_a", "g"),
    diet("dietary_thiamin", "g"),
    diet("dietary_riboflavin", "g"),
    diet("dietary_niacin", "g"),
    diet("dietary_pantothenic_acid", "g"),
    diet("dietary_vitamin_b6", "g"),
    diet("dietary_biotin", "g"),
    diet("dietary_vitamin_b12", "g"),
    diet("dietary_vitamin_c", "g"),
    diet("dietary_vitamin_d", "g"),
    diet("dietary_vitamin_e", "g"),
    diet("dietary_vitamin_k", "g"),
    diet("dietary_folate", "g"),
    // Minerals
    diet("dietary_calcium", "g"),
    diet("dietary_chloride", "g"),
    diet("dietary_iron", "g"),
    diet("dietary_magnesium", "g"),
    diet("dietary_phosphorus", "g"),
    diet("dietary_potassium", "g"),
    diet("dietary_sodium", "g"),
    diet("dietary_zinc", "g"),
    diet("dietary_chromium", "g"),
    diet("dietary_copper", "g"),
    diet("dietary_iodine", "g"),
    diet("dietary_manganese", "g"),
    diet("dietary_molybdenum", "g"),
    diet("dietary_selenium", "g"),
    // Hydration and stimulants
    diet("dietary_water", "mL"),
    diet("dietary_caffeine", "g"),

    // Hearing
    q("environmental_audio_exposure", HEARING, "dBASPL", Discrete),
    q("headphone_audio_exposure", HEARING, "dBASPL", Discrete),
    q("environmental_sound_reduction", HEARING, "dBASPL", Discrete),
    // HealthKit's deprecated `audio_exposure_event` is left out in favour of this one.
    c("environmental_audio_exposure_event", HEARING, &["momentary_limit"]),
    c("headphone_audio_exposure_event", HEARING, &["seven_day_limit"]),

    // Mobility
    q("walking_speed", MOBILITY, "m/s", Discrete),
    q("walking_step_length", MOBILITY, "m", Discrete),
    q("walking_asymmetry_percentage", MOBILITY, "%", Discrete),
    q("walking_double_support_percentage", MOBILITY, "%", Discrete),
    q("stair_ascent_speed", MOBILITY, "m/s", Discrete),
    q("stair_descent_speed", MOBILITY, "m/s", Discrete),
    q("six_minute_walk_test_distance", MOBILITY, "m", Discrete),
    q("apple_walking_steadiness", MOBILITY, "%", Discrete),
    c("apple_walking_steadiness_event", MOBILITY, &["initial_low", "initial_very_low", "repeat_low", "repeat_very_low"]),

    // Reproductive health
    q("basal_body_temperature", REPRODUCTIVE, "degC", Discrete),
    c("menstrual_flow", REPRODUCTIVE, BLEEDING),
    c("intermenstrual_bleeding", REPRODUCTIVE, NOT_APPLICABLE),
    c("cervical_mucus_quality", REPRODUCTIVE, &["dry", "sticky", "creamy", "watery", "egg_white"]),
    // `positive` is a deprecated alias of luteinizing_hormone_surge in HealthKit.
    c("ovulation_test_result", REPRODUCTIVE, &["negative", "luteinizing_hormone_surge", "indeterminate", "estrogen_surge"]),
    c("pregnancy_test_result", REPRODUCTIVE, TEST_RESULT),
    c("progesterone_test_result", REPRODUCTIVE, TEST_RESULT),
    // Protection used is metadata in HealthKit, not a value.
    c("sexual_activity", REPRODUCTIVE, NOT_APPLICABLE),
    c("contraceptive", REPRODUCTIVE, &["unspecified", "implant", "injection", "intrauterine_device", "intravaginal_ring", "oral", "patch"]),
    c("pregnancy", REPRODUCTIVE, NOT_APPLICABLE),
    c("lactation", REPRODUCTIVE, NOT_APPLICABLE),
    c("bleeding_during_pregnancy", REPRODUCTIVE, BLEEDING),
    c("bleeding_after_pregnancy", REPRODUCTIVE, BLEEDING),
    c("infrequent_menstrual_cycles", REPRODUCTIVE, NOT_APPLICABLE),
    c("irregular_menstrual_cycles", REPRODUCTIVE, NOT_APPLICABLE),
    c("persistent_intermenstrual_bleeding", REPRODUCTIVE, NOT_APPLICABLE),
    c("prolonged_menstrual_periods", REPRODUCTIVE, NOT_APPLICABLE),

    // Sleep
    c("sleep_analysis", SLEEP, &["in_bed", "asleep_unspecified", "awake", "asleep_core", "asleep_deep", "asleep_rem"]),
    c("sleep_apnea_event", SLEEP, NOT_APPLICABLE),
    q("apple_sleeping_breathing_disturbances", SLEEP, "count", Discrete),

    // Mindfulness
    c("mindful_session", MINDFULNESS, NOT_APPLICABLE),

    // Symptoms
    symptom("abdominal_cramps"),
    symptom("acne"),
    c("appetite_changes", SYMPTOMS, &["unspecified", "no_change", "decreased", "increased"]),
    symptom("bladder_incontinence"),
    symptom("bloating"),
    symptom("breast_pain"),
    symptom("chest_tightness_or_pain"),
    symptom("chills"),
    symptom("constipation"),
    symptom("coughing"),
    symptom("diarrhea"),
    symptom("dizziness"),
    symptom("dry_skin"),
    symptom("fainting"),
    symptom("fatigue"),
    symptom("fever"),
    symptom("generalized_body_ache"),
    symptom("hair_loss"),
    symptom("headache"),
    symptom("heartburn"),
    symptom("hot_flashes"),
    symptom("loss_of_smell"),
    symptom("loss_of_taste"),
    symptom("lower_back_pain"),
    symptom("memory_lapse"),
    c("mood_changes", SYMPTOMS, PRESENCE),
    symptom("nausea"),
    symptom("night_sweats"),
    symptom("pelvic_pain"),
    symptom("rapid_pounding_or_fluttering_heartbeat"),
    symptom("runny_nose"),
    symptom("shortness_of_breath"),
    symptom("sinus_congestion"),
    symptom("skipped_heartbeat"),
    c("sleep_changes", SYMPTOMS, PRESENCE),
    symptom("sore_throat"),
    symptom("vaginal_dryness"),
    symptom("vomiting"),
    symptom("wheezing"),

    // Other
    q("uv_exposure", OTHER, "count", Discrete),
    q("water_temperature", OTHER, "degC", Discrete),
    q("underwater_depth", OTHER, "m", Discrete),
    c("toothbrushing_event", OTHER, NOT_APPLICABLE),
    c("handwashing_event", OTHER, NOT_APPLICABLE),

    // Correlations: governed by their member types.
    SampleType { id: "blood_pressure", group: VITALS, kind: Kind::Correlation { members: &["blood_pressure_systolic", "blood_pressure_diastolic"] } },
    SampleType { id: "food", group: NUTRITION, kind: Kind::Correlation { members: FOOD } },

    // Workouts, and their routes as a type of their own (location is sensitive).
    SampleType { id: "workout", group: ACTIVITY, kind: Kind::Workout { activities: ACTIVITIES } },
    SampleType { id: "workout_route", group: ACTIVITY, kind: Kind::Route },

    // Characteristics: set by the owner with PUT /v1/characteristics.
    characteristic("date_of_birth", None),
    characteristic("biological_sex", Some(&["female", "male", "other"])),
    characteristic("blood_type", Some(&["a_positive", "a_negative", "b_positive", "b_negative", "ab_positive", "ab_negative", "o_positive", "o_negative"])),
    characteristic("fitzpatrick_skin_type", Some(&["i", "ii", "iii", "iv", "v", "vi"])),
    characteristic("wheelchair_use", Some(&["no", "yes"])),
];
