//! Synthetic Apple Health exports for tests and the benchmark: years of
//! steps, heart rate (with beat-to-beat lists), sleep, blood pressure
//! correlations (with the records they repeat), body mass in pounds,
//! oxygen saturation as a fraction, workouts with events, statistics and
//! routes, several sources and devices, `Me` and daily activity summaries,
//! in export versions 11 to 14 and with the quirks real exports have.
//! No real person's data: every value comes from a seeded generator.
//!
//! [`Written`] reports what was written in the terms an import reports.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use chrono::{Duration, FixedOffset, NaiveDate, TimeZone};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// What to generate.
#[derive(Clone, Debug)]
pub struct Options {
    /// Export version, 11 to 14: 11 has inline `Location` routes and no
    /// sleep stages; 12 has the malformed DTD; 13 and 14 have sleep stages
    /// and workout totals as `WorkoutStatistics` only.
    pub version: u8,
    /// Days of data.
    pub days: u32,
    /// Keep adding days until the XML is at least this large.
    pub min_xml_bytes: u64,
    /// Minutes between heart rate readings.
    pub heart_rate_every_min: u32,
    /// The quirks: a `\x0b` in a value, an unknown type, a 0-byte route
    /// file, a workout whose route file is missing, `export_cda.xml` with
    /// junk after its document element.
    pub quirks: bool,
    /// The export file's name (localised exports: `eksport.xml`, ...).
    pub file_name: String,
    pub seed: u64,
    /// Mixed into the device strings' memory addresses, which differ from
    /// one export to the next while everything else stays.
    pub pointer_salt: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            version: 14,
            days: 10,
            min_xml_bytes: 0,
            heart_rate_every_min: 10,
            quirks: true,
            file_name: "export.xml".into(),
            seed: 7,
            pointer_salt: 0,
        }
    }
}

/// What was written, as an import should count it.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Written {
    /// Elements below `<HealthData>`.
    pub records: u64,
    /// Samples an import stores, by Hearth type.
    pub samples: BTreeMap<String, u64>,
    /// Records of types Hearth lacks, by identifier.
    pub unknown: BTreeMap<String, u64>,
    pub steps_sum: f64,
    pub heart_rate_min: f64,
    pub heart_rate_max: f64,
    pub heart_rate_sum: f64,
    /// Seconds of sleep samples, by Hearth value.
    pub sleep_seconds: BTreeMap<String, i64>,
    pub activity_summaries: u64,
    pub empty_route_files: u64,
    pub missing_route_files: u64,
    /// Records that repeat a correlation's members.
    pub correlation_duplicates: u64,
    pub route_points: u64,
    pub xml_bytes: u64,
    pub sources: Vec<String>,
}

impl Written {
    fn count(&mut self, ty: &str, n: u64) {
        *self.samples.entry(ty.to_string()).or_default() += n;
    }
}

/// The generator of one day's values of one kind: a longer export holds the
/// same values for the days a shorter one has.
fn day_rng(seed: u64, day: u32, kind: u64) -> Rng {
    let mut r = Rng(seed ^ (u64::from(day) << 8) ^ kind);
    r.next();
    r
}

/// splitmix64: small, seeded, the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

struct Counting<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

const PHONE: &str = "iPhone";
const WATCH: &str = "Apple Watch";
const CUFF: &str = "Blood Pressure";
const SCALE: &str = "Withings";

fn device(
    pointer: u64,
    name: &str,
    manufacturer: &str,
    model: &str,
    hardware: &str,
    software: &str,
) -> String {
    format!(
        "&lt;&lt;HKDevice: 0x{pointer:x}&gt;, name:{name}, manufacturer:{manufacturer}, model:{model}, hardware:{hardware}, software:{software}&gt;"
    )
}

fn dtd(version: u8) -> String {
    let vision = if version == 12 {
        // The version 12 declaration: the attribute list is never closed.
        "<!ATTLIST VisionPrescription\n  type             CDATA #REQUIRED\n  dateIssued       CDATA #REQUIRED\n  expirationDate   CDATA #IMPLIED\n  brand            CDATA #IMPLIED\n\n<!ELEMENT RightEye EMPTY>\n"
    } else {
        "<!ATTLIST VisionPrescription\n  type             CDATA #REQUIRED\n  dateIssued       CDATA #REQUIRED\n  expirationDate   CDATA #IMPLIED\n  brand            CDATA #IMPLIED\n>\n"
    };
    format!(
        "<!DOCTYPE HealthData [\n\
<!-- HealthKit Export Version: {version} -->\n\
<!ELEMENT HealthData (ExportDate,Me,(Record|Correlation|Workout|ActivitySummary|ClinicalRecord|Audiogram|VisionPrescription)*)>\n\
<!ATTLIST HealthData\n  locale CDATA #REQUIRED\n>\n\
<!ELEMENT ExportDate EMPTY>\n<!ATTLIST ExportDate\n  value CDATA #REQUIRED\n>\n\
<!ELEMENT Me EMPTY>\n\
<!ELEMENT Record ((MetadataEntry|HeartRateVariabilityMetadataList)*)>\n\
<!ATTLIST Record\n  type          CDATA #REQUIRED\n  unit          CDATA #IMPLIED\n  value         CDATA #IMPLIED\n  sourceName    CDATA #REQUIRED\n  sourceVersion CDATA #IMPLIED\n  device        CDATA #IMPLIED\n  creationDate  CDATA #IMPLIED\n  startDate     CDATA #REQUIRED\n  endDate       CDATA #REQUIRED\n>\n\
<!ELEMENT VisionPrescription (RightEye?, LeftEye?, Attachment*, MetadataEntry*)>\n\
{vision}\
<!ELEMENT Workout ((MetadataEntry|WorkoutEvent|WorkoutRoute|WorkoutStatistics)*)>\n\
<!ELEMENT WorkoutRoute ((MetadataEntry|FileReference|Location)*)>\n\
<!ELEMENT FileReference EMPTY>\n<!ATTLIST FileReference\n  path CDATA #REQUIRED\n>\n\
]>\n"
    )
}

/// Writes an `export.zip` (the folder `apple_health_export/` inside, as
/// the Health app names it) at `path`.
pub fn write_zip(path: &Path, options: &Options) -> io::Result<Written> {
    let mut zip = ZipWriter::new(BufWriter::new(File::create(path)?));
    let deflated = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .compression_level(Some(1))
        .large_file(true);
    zip.start_file(
        format!("apple_health_export/{}", options.file_name),
        deflated,
    )?;
    let mut routes = Vec::new();
    let written = write_xml(&mut zip, options, &mut routes)?;
    for (name, body) in routes {
        zip.start_file(format!("apple_health_export/{name}"), deflated)?;
        zip.write_all(&body)?;
    }
    if options.quirks {
        zip.start_file("apple_health_export/export_cda.xml", deflated)?;
        zip.write_all(
            b"<?xml version=\"1.0\"?>\n<ClinicalDocument xmlns=\"urn:hl7-org:v3\"></ClinicalDocument>\n<component/>\n",
        )?;
    }
    zip.finish()?.flush()?;
    Ok(written)
}

/// Writes the export XML to `out`; the route files it references go to
/// `routes` as `(path below the export folder, contents)`.
pub fn write_xml(
    out: &mut dyn Write,
    options: &Options,
    routes: &mut Vec<(String, Vec<u8>)>,
) -> io::Result<Written> {
    let mut w = Counting {
        inner: BufWriter::with_capacity(1 << 20, out),
        bytes: 0,
    };
    let salt = options.pointer_salt;
    let mut report = Written {
        heart_rate_min: f64::INFINITY,
        heart_rate_max: f64::NEG_INFINITY,
        ..Written::default()
    };
    let tz = FixedOffset::west_opt(7 * 3600).expect("a valid offset");
    let fmt = |t: chrono::DateTime<FixedOffset>| t.format("%Y-%m-%d %H:%M:%S %z").to_string();
    let first = NaiveDate::from_ymd_opt(2016, 1, 1).expect("a date");
    let v = options.version;
    let watch_dev = |r: &mut Rng| {
        device(
            (r.next() & 0xffff_ffff) ^ salt,
            WATCH,
            "Apple Inc.",
            "Watch",
            "Watch6,1",
            "10.1",
        )
    };
    let phone_dev = |r: &mut Rng| {
        device(
            (r.next() & 0xffff_ffff) ^ salt,
            PHONE,
            "Apple Inc.",
            "iPhone",
            "iPhone14,2",
            "17.1",
        )
    };
    let cuff_dev = |r: &mut Rng| {
        device(
            (r.next() & 0xffff_ffff) ^ salt,
            "BP7",
            "Acme Health",
            "BP7",
            "1",
            "2.0",
        )
    };

    writeln!(w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>")?;
    w.write_all(dtd(v).as_bytes())?;
    writeln!(w, "<HealthData locale=\"en_US\">")?;
    writeln!(w, " <ExportDate value=\"2026-01-01 09:00:00 -0700\"/>")?;
    writeln!(
        w,
        " <Me HKCharacteristicTypeIdentifierDateOfBirth=\"1984-05-06\" HKCharacteristicTypeIdentifierBiologicalSex=\"HKBiologicalSexFemale\" HKCharacteristicTypeIdentifierBloodType=\"HKBloodTypeABPositive\" HKCharacteristicTypeIdentifierFitzpatrickSkinType=\"HKFitzpatrickSkinTypeNotSet\" HKCharacteristicTypeIdentifierCardioFitnessMedicationsUse=\"None\"/>"
    )?;
    report.records += 2;

    let mut day = 0u32;
    let mut workouts = 0u32;
    let mut correlations = Vec::new();
    loop {
        let done_days = day >= options.days;
        let done_bytes = w.bytes >= options.min_xml_bytes;
        if done_days && done_bytes {
            break;
        }
        let mut rng = day_rng(options.seed, day, 1);
        let date = first + Duration::days(i64::from(day));
        let midnight = tz
            .from_local_datetime(&date.and_hms_opt(0, 0, 0).expect("a time"))
            .single()
            .expect("a fixed offset");
        // Steps: the phone, one record per waking hour.
        for hour in 7..22 {
            let start = midnight + Duration::hours(hour);
            let end = start + Duration::minutes(rng.range(10, 50) as i64);
            let steps = rng.range(50, 1500);
            let quirk = options.quirks && day == 0 && hour == 7;
            let meta = if quirk {
                // A stray vertical tab, as real exports carry.
                "\n  <MetadataEntry key=\"HKWasUserEntered\" value=\"0\u{b}\"/>\n "
            } else {
                ""
            };
            writeln!(
                w,
                " <Record type=\"HKQuantityTypeIdentifierStepCount\" sourceName=\"{PHONE}\" sourceVersion=\"17.1\" device=\"{}\" unit=\"count\" creationDate=\"{}\" startDate=\"{}\" endDate=\"{}\" value=\"{steps}\">{meta}</Record>",
                phone_dev(&mut rng),
                fmt(end),
                fmt(start),
                fmt(end)
            )?;
            report.records += 1;
            report.count("step_count", 1);
            report.steps_sum += steps as f64;
        }
        // Heart rate: the watch, all day.
        let mut minute = 0;
        while minute < 24 * 60 {
            let at = midnight + Duration::minutes(i64::from(minute));
            let bpm = rng.range(52, 165) as f64;
            writeln!(
                w,
                " <Record type=\"HKQuantityTypeIdentifierHeartRate\" sourceName=\"{WATCH}\" sourceVersion=\"10.1\" device=\"{}\" unit=\"count/min\" creationDate=\"{}\" startDate=\"{}\" endDate=\"{}\" value=\"{bpm}\">\n  <MetadataEntry key=\"HKMetadataKeyHeartRateMotionContext\" value=\"{}\"/>\n </Record>",
                watch_dev(&mut rng),
                fmt(at),
                fmt(at),
                fmt(at),
                rng.range(0, 2)
            )?;
            report.records += 1;
            report.count("heart_rate", 1);
            report.heart_rate_sum += bpm;
            report.heart_rate_min = report.heart_rate_min.min(bpm);
            report.heart_rate_max = report.heart_rate_max.max(bpm);
            minute += options.heart_rate_every_min.max(1);
        }
        // Heart rate variability, with its beat-to-beat list.
        {
            let at = midnight + Duration::hours(3);
            write!(
                w,
                " <Record type=\"HKQuantityTypeIdentifierHeartRateVariabilitySDNN\" sourceName=\"{WATCH}\" sourceVersion=\"10.1\" device=\"{}\" unit=\"ms\" creationDate=\"{}\" startDate=\"{}\" endDate=\"{}\" value=\"{}\">\n  <HeartRateVariabilityMetadataList>\n",
                watch_dev(&mut rng),
                fmt(at + Duration::minutes(1)),
                fmt(at),
                fmt(at + Duration::minutes(1)),
                rng.range(20, 90)
            )?;
            for beat in 0..8 {
                writeln!(
                    w,
                    "   <InstantaneousBeatsPerMinute bpm=\"{}\" time=\"3:00:0{beat}.{:02} AM\"/>",
                    rng.range(50, 70),
                    rng.range(0, 99)
                )?;
            }
            writeln!(w, "  </HeartRateVariabilityMetadataList>\n </Record>")?;
            report.records += 1;
            report.count("heart_rate_variability_sdnn", 1);
        }
        // Oxygen saturation, as HealthKit writes it: a fraction.
        {
            let at = midnight + Duration::hours(4);
            writeln!(
                w,
                " <Record type=\"HKQuantityTypeIdentifierOxygenSaturation\" sourceName=\"{WATCH}\" sourceVersion=\"10.1\" device=\"{}\" unit=\"%\" creationDate=\"{}\" startDate=\"{}\" endDate=\"{}\" value=\"0.{}\"/>",
                watch_dev(&mut rng),
                fmt(at),
                fmt(at),
                fmt(at),
                rng.range(93, 99)
            )?;
            report.records += 1;
            report.count("oxygen_saturation", 1);
        }
        // Body mass in pounds, weekly, from a scale's app.
        if day.is_multiple_of(7) {
            let at = midnight + Duration::hours(7);
            writeln!(
                w,
                " <Record type=\"HKQuantityTypeIdentifierBodyMass\" sourceName=\"{SCALE}\" sourceVersion=\"6.2\" unit=\"lb\" creationDate=\"{}\" startDate=\"{}\" endDate=\"{}\" value=\"{}.{}\"/>",
                fmt(at),
                fmt(at),
                fmt(at),
                rng.range(140, 160),
                rng.range(0, 9)
            )?;
            report.records += 1;
            report.count("body_mass", 1);
        }
        // Sleep: in bed from the phone, asleep (by stage from version 13) from the watch.
        {
            let bed = midnight - Duration::minutes(60);
            let rise = midnight + Duration::hours(7);
            writeln!(
                w,
                " <Record type=\"HKCategoryTypeIdentifierSleepAnalysis\" sourceName=\"{PHONE}\" sourceVersion=\"17.1\" creationDate=\"{}\" startDate=\"{}\" endDate=\"{}\" value=\"HKCategoryValueSleepAnalysisInBed\"/>",
                fmt(rise),
                fmt(bed),
                fmt(rise)
            )?;
            report.records += 1;
            report.count("sleep_analysis", 1);
            *report.sleep_seconds.entry("in_bed".into()).or_default() += (rise - bed).num_seconds();
            let stages: &[(&str, &str)] = if v >= 13 {
                &[
                    ("HKCategoryValueSleepAnalysisAsleepCore", "asleep_core"),
                    ("HKCategoryValueSleepAnalysisAsleepDeep", "asleep_deep"),
                    ("HKCategoryValueSleepAnalysisAsleepREM", "asleep_rem"),
                    ("HKCategoryValueSleepAnalysisAwake", "awake"),
                ]
            } else {
                &[
                    ("HKCategoryValueSleepAnalysisAsleep", "asleep_unspecified"),
                    ("HKCategoryValueSleepAnalysisAwake", "awake"),
                ]
            };
            let mut at = bed + Duration::minutes(10);
            let mut i = 0;
            while at < rise - Duration::minutes(30) {
                let (hk, hearth) = stages[i % stages.len()];
                let len = Duration::minutes(rng.range(15, 60) as i64);
                writeln!(
                    w,
                    " <Record type=\"HKCategoryTypeIdentifierSleepAnalysis\" sourceName=\"{WATCH}\" sourceVersion=\"10.1\" device=\"{}\" creationDate=\"{}\" startDate=\"{}\" endDate=\"{}\" value=\"{hk}\">\n  <MetadataEntry key=\"HKTimeZone\" value=\"America/Los_Angeles\"/>\n </Record>",
                    watch_dev(&mut rng),
                    fmt(rise),
                    fmt(at),
                    fmt(at + len)
                )?;
                report.records += 1;
                report.count("sleep_analysis", 1);
                *report.sleep_seconds.entry(hearth.into()).or_default() += len.num_seconds();
                at += len;
                i += 1;
            }
        }
        // Blood pressure every third day: the records now, the correlation
        // that repeats them after all records, as the Health app orders them.
        if day.is_multiple_of(3) {
            let at = midnight + Duration::hours(8);
            let (sys, dia) = (rng.range(105, 140), rng.range(65, 90));
            let dev = cuff_dev(&mut rng);
            let member = |ty: &str, value: u64| {
                format!(
                    "<Record type=\"HKQuantityTypeIdentifierBloodPressure{ty}\" sourceName=\"{CUFF}\" sourceVersion=\"3\" device=\"{dev}\" unit=\"mmHg\" creationDate=\"{}\" startDate=\"{}\" endDate=\"{}\" value=\"{value}\"/>",
                    fmt(at),
                    fmt(at),
                    fmt(at)
                )
            };
            let (s, d) = (member("Systolic", sys), member("Diastolic", dia));
            writeln!(w, " {s}\n {d}")?;
            report.records += 2;
            report.correlation_duplicates += 2;
            correlations.push(format!(
                " <Correlation type=\"HKCorrelationTypeIdentifierBloodPressure\" sourceName=\"{CUFF}\" sourceVersion=\"3\" device=\"{dev}\" creationDate=\"{}\" startDate=\"{}\" endDate=\"{}\">\n  <MetadataEntry key=\"Cuff position\" value=\"left arm\"/>\n  {s}\n  {d}\n </Correlation>",
                fmt(at),
                fmt(at),
                fmt(at)
            ));
            report.count("blood_pressure", 1);
            report.count("blood_pressure_systolic", 1);
            report.count("blood_pressure_diastolic", 1);
        }
        if options.quirks && day == 1 {
            // A type Hearth does not have.
            writeln!(
                w,
                " <Record type=\"HKDataTypeSleepDurationGoal\" sourceName=\"{PHONE}\" sourceVersion=\"17.1\" unit=\"hr\" creationDate=\"{0}\" startDate=\"{0}\" endDate=\"{0}\" value=\"8\"/>",
                fmt(midnight)
            )?;
            report.records += 1;
            *report
                .unknown
                .entry("HKDataTypeSleepDurationGoal".into())
                .or_default() += 1;
        }
        day += 1;
    }
    let days = day;
    for c in &correlations {
        writeln!(w, "{c}")?;
        report.records += 1;
    }
    // Workouts every other day, each a 30-minute run with a route.
    for day in (0..days).step_by(2) {
        let mut rng = day_rng(options.seed, day, 2);
        let date = first + Duration::days(i64::from(day));
        let start = tz
            .from_local_datetime(&date.and_hms_opt(18, 0, 0).expect("a time"))
            .single()
            .expect("a fixed offset");
        let end = start + Duration::minutes(30);
        let energy = rng.range(200, 400);
        let km = 4.0 + rng.range(0, 20) as f64 / 10.0;
        let totals = if v <= 12 {
            format!(" totalDistance=\"{km}\" totalDistanceUnit=\"km\" totalEnergyBurned=\"{energy}\" totalEnergyBurnedUnit=\"kcal\"")
        } else {
            String::new()
        };
        writeln!(
            w,
            " <Workout workoutActivityType=\"HKWorkoutActivityTypeRunning\" duration=\"30\" durationUnit=\"min\"{totals} sourceName=\"{WATCH}\" sourceVersion=\"10.1\" device=\"{}\" creationDate=\"{}\" startDate=\"{}\" endDate=\"{}\">",
            watch_dev(&mut rng),
            fmt(end),
            fmt(start),
            fmt(end)
        )?;
        writeln!(w, "  <MetadataEntry key=\"HKIndoorWorkout\" value=\"0\"/>")?;
        writeln!(
            w,
            "  <WorkoutEvent type=\"HKWorkoutEventTypePause\" date=\"{}\"/>\n  <WorkoutEvent type=\"HKWorkoutEventTypeResume\" date=\"{}\"/>",
            fmt(start + Duration::minutes(10)),
            fmt(start + Duration::minutes(11))
        )?;
        if v >= 13 {
            writeln!(
                w,
                "  <WorkoutStatistics type=\"HKQuantityTypeIdentifierActiveEnergyBurned\" startDate=\"{0}\" endDate=\"{1}\" sum=\"{energy}\" unit=\"kcal\"/>\n  <WorkoutStatistics type=\"HKQuantityTypeIdentifierDistanceWalkingRunning\" startDate=\"{0}\" endDate=\"{1}\" sum=\"{km}\" unit=\"km\"/>\n  <WorkoutStatistics type=\"HKQuantityTypeIdentifierHeartRate\" startDate=\"{0}\" endDate=\"{1}\" average=\"142\" minimum=\"120\" maximum=\"171\" unit=\"count/min\"/>",
                fmt(start),
                fmt(end)
            )?;
        }
        let points: u32 = 120;
        let mut route = String::new();
        let (lat0, lon0) = (37.33 + rng.range(0, 100) as f64 / 1e4, -122.03);
        if v == 11 {
            route.push_str(&format!(
                "  <WorkoutRoute sourceName=\"{WATCH}\" sourceVersion=\"10.1\" creationDate=\"{}\" startDate=\"{}\" endDate=\"{}\">\n",
                fmt(end),
                fmt(start),
                fmt(end)
            ));
            for p in 0..points {
                route.push_str(&format!(
                    "   <Location date=\"{}\" latitude=\"{:.6}\" longitude=\"{:.6}\" altitude=\"{}\" horizontalAccuracy=\"3\" verticalAccuracy=\"2\" course=\"90\" speed=\"2.5\"/>\n",
                    fmt(start + Duration::seconds(i64::from(p) * 15)),
                    lat0 + f64::from(p) * 1e-4,
                    lon0,
                    10 + p % 7
                ));
            }
            route.push_str("  </WorkoutRoute>\n");
            report.route_points += u64::from(points);
            report.count("workout_route", 1);
        } else {
            let name = format!(
                "workout-routes/route_{}.gpx",
                date.format("%Y-%m-%d_6.00pm")
            );
            let empty = options.quirks && workouts == 1;
            let missing = options.quirks && workouts == 2;
            route.push_str(&format!(
                "  <WorkoutRoute sourceName=\"{WATCH}\" sourceVersion=\"10.1\" creationDate=\"{}\" startDate=\"{}\" endDate=\"{}\">\n   <FileReference path=\"/{name}\"/>\n  </WorkoutRoute>\n",
                fmt(end),
                fmt(start),
                fmt(end)
            ));
            if empty {
                routes.push((name, Vec::new()));
                report.empty_route_files += 1;
            } else if missing {
                report.missing_route_files += 1;
            } else {
                let mut gpx = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<gpx version=\"1.1\" creator=\"Apple Health Export\" xmlns=\"http://www.topografix.com/GPX/1/1\">\n <trk><name>Route</name><trkseg>\n");
                for p in 0..points {
                    let t =
                        (start + Duration::seconds(i64::from(p) * 15)).with_timezone(&chrono::Utc);
                    gpx.push_str(&format!(
                        "  <trkpt lon=\"{lon0:.6}\" lat=\"{:.6}\"><ele>{}</ele><time>{}</time><extensions><speed>2.5</speed><course>90</course><hAcc>3</hAcc><vAcc>2</vAcc></extensions></trkpt>\n",
                        lat0 + f64::from(p) * 1e-4,
                        10 + p % 7,
                        t.format("%Y-%m-%dT%H:%M:%SZ")
                    ));
                }
                gpx.push_str(" </trkseg></trk>\n</gpx>\n");
                routes.push((name, gpx.into_bytes()));
                report.route_points += u64::from(points);
                report.count("workout_route", 1);
            }
        }
        w.write_all(route.as_bytes())?;
        writeln!(w, " </Workout>")?;
        report.records += 1;
        report.count("workout", 1);
        workouts += 1;
    }
    for day in 0..days {
        let mut rng = day_rng(options.seed, day, 3);
        let date = first + Duration::days(i64::from(day));
        writeln!(
            w,
            " <ActivitySummary dateComponents=\"{}\" activeEnergyBurned=\"{}\" activeEnergyBurnedGoal=\"500\" activeEnergyBurnedUnit=\"kcal\" appleMoveTime=\"0\" appleMoveTimeGoal=\"0\" appleExerciseTime=\"{}\" appleExerciseTimeGoal=\"30\" appleStandHours=\"{}\" appleStandHoursGoal=\"12\"/>",
            date.format("%Y-%m-%d"),
            rng.range(200, 900),
            rng.range(0, 90),
            rng.range(4, 16)
        )?;
        report.records += 1;
        report.activity_summaries += 1;
    }
    writeln!(w, "</HealthData>")?;
    w.flush()?;
    report.xml_bytes = w.bytes;
    report.sources = [CUFF, PHONE, WATCH, SCALE]
        .iter()
        .map(|s| format!("{}{s}", super::SOURCE_PREFIX))
        .collect();
    report.sources.sort();
    Ok(report)
}
