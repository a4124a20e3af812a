//! Unit strings as HealthKit writes them (case-sensitive), and conversion to and
//! from each type's canonical unit.
//!
//! A unit is a point on a linear scale within one dimension:
//! `reference = value * scale + offset`, where `reference` is in the dimension's
//! reference unit. Any two units of the same dimension therefore convert generically;
//! the offset is only non-zero for temperatures.

use super::{Kind, SampleType};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum UnitError {
    #[error("unknown unit '{0}'")]
    Unknown(String),
    #[error("unit '{unit}' is not compatible with {type_id} (canonical unit {canonical})")]
    Incompatible {
        unit: String,
        type_id: &'static str,
        canonical: &'static str,
    },
    #[error("{0} takes no unit")]
    NoUnits(&'static str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dim {
    Count,
    Frequency,
    Mass,
    Percent,
    Temperature,
    Length,
    Energy,
    Volume,
    InternationalUnit,
    Pressure,
    Time,
    Speed,
    OxygenUptake,
    MassConcentration,
    MolarConcentration,
    SoundPressureLevel,
    HearingLevel,
    FlowRate,
    Conductance,
    Power,
    EnergyRatePerMass,
    EffortScore,
}

#[derive(Clone, Copy, Debug)]
struct Unit {
    dim: Dim,
    scale: f64,
    offset: f64,
}

// One table yields both the parser (a `match`, so a duplicated name is a compile warning)
// and the list of names `compatible_units` enumerates.
macro_rules! units {
    ($($name:literal => $dim:ident, $scale:expr $(, $offset:expr)?;)*) => {
        /// Every unit string with a fixed meaning, in table order. (`mmol<M>/L` is also
        /// accepted but not listed.)
        pub const ALL_UNITS: &[&str] = &[$($name),*];

        fn parse_fixed(name: &str) -> Option<Unit> {
            match name {
                $($name => Some(Unit { dim: Dim::$dim, scale: $scale, offset: 0.0 $(+ $offset)? }),)*
                _ => None,
            }
        }
    };
}

#[rustfmt::skip]
units! {
    // Reference: count.
    "count" => Count, 1.0;
    // Reference: count/s.
    "count/s" => Frequency, 1.0;
    "Hz" => Frequency, 1.0;
    "count/min" => Frequency, 1.0 / 60.0;
    "bpm" => Frequency, 1.0 / 60.0;
    // Reference: g.
    "g" => Mass, 1.0;
    "kg" => Mass, 1e3;
    "mg" => Mass, 1e-3;
    "mcg" => Mass, 1e-6;
    "ug" => Mass, 1e-6;
    "lb" => Mass, 453.592_37;
    "oz" => Mass, 28.349_523_125;
    "st" => Mass, 6_350.293_18;
    // Percent 0–100; no unitless fraction, to keep a single meaning for a bare number.
    "%" => Percent, 1.0;
    // Reference: K.
    "K" => Temperature, 1.0;
    "degC" => Temperature, 1.0, 273.15;
    "degF" => Temperature, 5.0 / 9.0, 459.67 * 5.0 / 9.0;
    // Reference: m.
    "m" => Length, 1.0;
    "cm" => Length, 1e-2;
    "mm" => Length, 1e-3;
    "km" => Length, 1e3;
    "in" => Length, 0.025_4;
    "ft" => Length, 0.304_8;
    "yd" => Length, 0.914_4;
    "mi" => Length, 1_609.344;
    // Reference: J. `Cal` is the food calorie.
    "J" => Energy, 1.0;
    "kJ" => Energy, 1e3;
    "cal" => Energy, 4.184;
    "kcal" => Energy, 4_184.0;
    "Cal" => Energy, 4_184.0;
    // Reference: L.
    "L" => Volume, 1.0;
    "dL" => Volume, 0.1;
    "mL" => Volume, 1e-3;
    "fl_oz_us" => Volume, 0.029_573_529_562_5;
    "fl_oz_imp" => Volume, 0.028_413_062_5;
    "cup_us" => Volume, 0.236_588_236_5;
    "cup_imp" => Volume, 0.284_130_625;
    "pt_us" => Volume, 0.473_176_473;
    "pt_imp" => Volume, 0.568_261_25;
    // Substance-specific, so never converts.
    "IU" => InternationalUnit, 1.0;
    // Reference: Pa.
    "Pa" => Pressure, 1.0;
    "kPa" => Pressure, 1e3;
    "mmHg" => Pressure, 133.322_387_415;
    "cmAq" => Pressure, 98.066_5;
    "inHg" => Pressure, 3_386.388_64;
    "atm" => Pressure, 101_325.0;
    // Reference: s.
    "s" => Time, 1.0;
    "ms" => Time, 1e-3;
    "min" => Time, 60.0;
    "hr" => Time, 3_600.0;
    "d" => Time, 86_400.0;
    // Reference: m/s.
    "m/s" => Speed, 1.0;
    "km/hr" => Speed, 1.0 / 3.6;
    "mi/hr" => Speed, 0.447_04;
    "ft/s" => Speed, 0.304_8;
    // Reference: mL/(kg*min).
    "mL/kg/min" => OxygenUptake, 1.0;
    "mL/(kg*min)" => OxygenUptake, 1.0;
    // Reference: g/L.
    "g/L" => MassConcentration, 1.0;
    "mg/dL" => MassConcentration, 1e-2;
    // Reference: mol/L.
    "mmol/L" => MolarConcentration, 1e-3;
    // Logarithmic scales: nothing to convert between.
    "dBASPL" => SoundPressureLevel, 1.0;
    "dBHL" => HearingLevel, 1.0;
    // Reference: L/min.
    "L/min" => FlowRate, 1.0;
    "L/s" => FlowRate, 60.0;
    "mL/min" => FlowRate, 1e-3;
    // Reference: S. HealthKit writes micro as `mc`.
    "S" => Conductance, 1.0;
    "mS" => Conductance, 1e-3;
    "uS" => Conductance, 1e-6;
    "mcS" => Conductance, 1e-6;
    // Reference: W.
    "W" => Power, 1.0;
    "kW" => Power, 1e3;
    "kcal/hr" => Power, 4_184.0 / 3_600.0;
    "Cal/hr" => Power, 4_184.0 / 3_600.0;
    // Reference: kcal/(kg*hr), i.e. METs.
    "kcal/(kg*hr)" => EnergyRatePerMass, 1.0;
    "kcal/hr·kg" => EnergyRatePerMass, 1.0;
    // Apple's 1–10 workout effort scale.
    "appleEffortScore" => EffortScore, 1.0;
}

/// Parses a unit, returning the molar mass (g/mol) if the string carries one.
///
/// HealthKit exports molar units with the molar mass embedded: `mmol<180.1558800000541>/L`.
fn parse(name: &str) -> Option<(Unit, Option<f64>)> {
    if let Some(unit) = parse_fixed(name) {
        return Some((unit, None));
    }
    let mass = name
        .strip_prefix("mmol<")?
        .strip_suffix(">/L")?
        .parse::<f64>()
        .ok()
        .filter(|mass| mass.is_finite() && *mass > 0.0)?;
    let unit = Unit {
        dim: Dim::MolarConcentration,
        scale: 1e-3,
        offset: 0.0,
    };
    Some((unit, Some(mass)))
}

/// `canonical = value * factor + shift`
struct Linear {
    factor: f64,
    shift: f64,
}

fn resolve(ty: &SampleType, unit: &str) -> Result<Linear, UnitError> {
    let canonical = match ty.kind {
        Kind::Quantity { canonical_unit, .. } => canonical_unit,
        _ => return Err(UnitError::NoUnits(ty.id)),
    };
    let target = parse_fixed(canonical).expect("every canonical unit is in the table (tested)");
    let (from, embedded_mass) = parse(unit).ok_or_else(|| UnitError::Unknown(unit.to_owned()))?;
    let incompatible = || UnitError::Incompatible {
        unit: unit.to_owned(),
        type_id: ty.id,
        canonical,
    };
    let scale = if from.dim == target.dim {
        from.scale
    } else if from.dim == Dim::MolarConcentration && target.dim == Dim::MassConcentration {
        let mass = ty.molar_mass().ok_or_else(incompatible)?;
        // A different embedded molar mass means a different substance.
        if embedded_mass.is_some_and(|m| ((m - mass) / mass).abs() > 1e-9) {
            return Err(incompatible());
        }
        // mol/L * g/mol = g/L
        from.scale * mass
    } else {
        return Err(incompatible());
    };
    Ok(Linear {
        factor: scale / target.scale,
        shift: (from.offset - target.offset) / target.scale,
    })
}

/// Converts a value in `unit` to the type's canonical unit. Errors for unknown or incompatible units, or a category type.
pub fn to_canonical(ty: &SampleType, value: f64, unit: &str) -> Result<f64, UnitError> {
    let Linear { factor, shift } = resolve(ty, unit)?;
    Ok(value * factor + shift)
}

/// Converts a canonical value to `unit`.
pub fn from_canonical(ty: &SampleType, value: f64, unit: &str) -> Result<f64, UnitError> {
    let Linear { factor, shift } = resolve(ty, unit)?;
    Ok((value - shift) / factor)
}

/// Whether `unit` can express values of `ty`.
pub fn compatible(ty: &SampleType, unit: &str) -> bool {
    resolve(ty, unit).is_ok()
}

/// Whether `unit` parses at all, regardless of type.
pub fn is_known(unit: &str) -> bool {
    parse(unit).is_some()
}

/// The listed units (`ALL_UNITS`) that can express values of `ty`; empty for categories.
pub fn compatible_units(ty: &SampleType) -> Vec<&'static str> {
    ALL_UNITS
        .iter()
        .copied()
        .filter(|unit| compatible(ty, unit))
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::{all, get, lookup};
    use super::*;

    fn ty(id: &str) -> &'static SampleType {
        get(lookup(id).unwrap_or_else(|| panic!("missing {id}")))
    }

    #[track_caller]
    fn assert_close(actual: f64, expected: f64) {
        let tolerance = 1e-9 * expected.abs().max(1.0);
        assert!(
            (actual - expected).abs() <= tolerance,
            "{actual} != {expected}"
        );
    }

    fn to(id: &str, value: f64, unit: &str) -> f64 {
        to_canonical(ty(id), value, unit).unwrap()
    }

    fn from(id: &str, value: f64, unit: &str) -> f64 {
        from_canonical(ty(id), value, unit).unwrap()
    }

    #[test]
    fn canonical_units_parse_and_are_compatible() {
        for ty in all() {
            if let Some(unit) = ty.canonical_unit() {
                assert!(parse_fixed(unit).is_some(), "{}: {unit}", ty.id);
                assert!(compatible(ty, unit), "{}: {unit}", ty.id);
                assert_eq!(to_canonical(ty, 12.5, unit), Ok(12.5), "{}", ty.id);
                assert_eq!(from_canonical(ty, 12.5, unit), Ok(12.5), "{}", ty.id);
                assert!(compatible_units(ty).contains(&unit), "{}", ty.id);
            } else {
                assert!(compatible_units(ty).is_empty(), "{}", ty.id);
            }
        }
    }

    #[test]
    fn every_listed_unit_is_known() {
        for unit in ALL_UNITS {
            assert!(is_known(unit), "{unit}");
        }
        assert!(!is_known("furlong"));
        assert!(!is_known("KG"));
        assert!(!is_known(""));
    }

    #[test]
    fn mass() {
        assert_close(to("body_mass", 1.0, "lb"), 0.453_592_37);
        assert_close(from("body_mass", 0.453_592_37, "lb"), 1.0);
        assert_close(from("body_mass", 100.0, "lb"), 220.462_262_184_877_6);
        assert_close(to("body_mass", 1.0, "st"), 6.350_293_18);
        assert_close(to("dietary_protein", 250.0, "mg"), 0.25);
        assert_close(to("dietary_vitamin_d", 2e6, "mcg"), 2.0);
        assert_close(to("dietary_vitamin_d", 2e6, "ug"), 2.0);
    }

    #[test]
    fn glucose() {
        assert_close(to("blood_glucose", 1.0, "mmol/L"), 18.015_588);
        assert_close(to("blood_glucose", 5.5, "mmol/L"), 99.085_734);
        assert_close(from("blood_glucose", 90.0, "mmol/L"), 90.0 / 18.015_588);
        // As found in HealthKit exports.
        let exported = "mmol<180.1558800000541>/L";
        assert_close(to("blood_glucose", 1.0, exported), 18.015_588);
        assert!(!compatible(ty("blood_glucose"), "mmol<58.44>/L"));
        assert_close(to("blood_glucose", 1.0, "g/L"), 100.0);
    }

    #[test]
    fn temperature() {
        assert_close(from("body_temperature", 37.0, "degF"), 98.6);
        assert_close(to("body_temperature", 98.6, "degF"), 37.0);
        assert_close(to("body_temperature", 32.0, "degF"), 0.0);
        assert_close(to("body_temperature", -40.0, "degF"), -40.0);
        assert_close(to("basal_body_temperature", 310.15, "K"), 37.0);
        assert_close(from("water_temperature", 0.0, "K"), 273.15);
    }

    #[test]
    fn length_energy_volume_and_more() {
        assert_close(to("distance_walking_running", 1.0, "mi"), 1_609.344);
        assert_close(to("distance_walking_running", 5.0, "km"), 5_000.0);
        assert_close(from("distance_walking_running", 1_609.344, "km"), 1.609_344);
        assert_close(
            from("distance_cycling", 10_000.0, "mi"),
            6.213_711_922_373_34,
        );
        assert_close(to("height", 70.0, "in"), 1.778);
        assert_close(to("dietary_energy_consumed", 4.184, "kJ"), 1.0);
        assert_close(from("active_energy_burned", 1.0, "kJ"), 4.184);
        assert_close(to("active_energy_burned", 1.0, "Cal"), 1.0);
        assert_close(to("active_energy_burned", 1_000.0, "cal"), 1.0);
        assert_close(to("dietary_water", 1.0, "fl_oz_us"), 29.573_529_562_5);
        assert_close(from("dietary_water", 236.588_236_5, "fl_oz_us"), 8.0);
        assert_close(to("dietary_water", 1.0, "cup_us"), 236.588_236_5);
        assert_close(to("dietary_water", 1.5, "L"), 1_500.0);
        assert_close(to("heart_rate", 1.0, "count/s"), 60.0);
        assert_close(to("heart_rate", 72.0, "bpm"), 72.0);
        assert_close(to("blood_pressure_systolic", 133.322_387_415, "Pa"), 1.0);
        assert_close(to("apple_exercise_time", 1.0, "hr"), 60.0);
        assert_close(to("heart_rate_variability_sdnn", 0.05, "s"), 50.0);
        assert_close(to("walking_speed", 3.6, "km/hr"), 1.0);
        assert_close(to("electrodermal_activity", 2e6, "uS"), 2.0);
        assert_close(to("peak_expiratory_flow_rate", 10.0, "L/s"), 600.0);
        assert_close(to("cycling_power", 3.6, "kcal/hr"), 4.184);
    }

    #[test]
    fn incompatible_units_are_rejected() {
        let incompatible = |id: &'static str, unit: &str, canonical: &'static str| {
            let err = to_canonical(ty(id), 1.0, unit).unwrap_err();
            assert_eq!(
                err,
                UnitError::Incompatible {
                    unit: unit.to_owned(),
                    type_id: id,
                    canonical
                }
            );
            assert_eq!(from_canonical(ty(id), 1.0, unit).unwrap_err(), err);
            assert!(!compatible(ty(id), unit));
        };
        incompatible("step_count", "kg", "count");
        incompatible("body_mass", "mmol/L", "kg");
        incompatible("body_fat_percentage", "count", "%");
        incompatible("insulin_delivery", "mg", "IU");
        incompatible("environmental_audio_exposure", "dBHL", "dBASPL");
        incompatible("heart_rate", "min", "count/min");
        assert_eq!(
            to_canonical(ty("body_mass"), 1.0, "mmol/L")
                .unwrap_err()
                .to_string(),
            "unit 'mmol/L' is not compatible with body_mass (canonical unit kg)"
        );
    }

    #[test]
    fn unknown_units_are_rejected() {
        for unit in [
            "furlong",
            "",
            "KG",
            "Kg",
            "kg ",
            "mmol<abc>/L",
            "mmol<-1>/L",
        ] {
            let err = to_canonical(ty("body_mass"), 1.0, unit).unwrap_err();
            assert_eq!(err, UnitError::Unknown(unit.to_owned()));
        }
        assert_eq!(
            UnitError::Unknown("furlong".into()).to_string(),
            "unknown unit 'furlong'"
        );
    }

    #[test]
    fn categories_take_no_units() {
        for ty in all().iter().filter(|ty| !ty.is_quantity()) {
            for unit in ["count", "%", "furlong", ""] {
                assert_eq!(to_canonical(ty, 1.0, unit), Err(UnitError::NoUnits(ty.id)));
                assert_eq!(
                    from_canonical(ty, 1.0, unit),
                    Err(UnitError::NoUnits(ty.id))
                );
                assert!(!compatible(ty, unit));
            }
        }
        assert_eq!(
            UnitError::NoUnits("sleep_analysis").to_string(),
            "sleep_analysis takes no unit"
        );
    }

    proptest! {
        #[test]
        fn conversions_round_trip(x in -1e9f64..1e9) {
            for ty in all() {
                for unit in compatible_units(ty) {
                    let canonical = to_canonical(ty, x, unit).unwrap();
                    let back = from_canonical(ty, canonical, unit).unwrap();
                    let tolerance = 1e-9 * x.abs().max(1.0);
                    prop_assert!(
                        (back - x).abs() <= tolerance,
                        "{} in {}: {} -> {} -> {}", ty.id, unit, x, canonical, back
                    );
                }
            }
        }
    }
}
