//! The consent document a study's description becomes, the owner's
//! decision on it, and the receipt Hearth signs for that decision.

use serde::Serialize;

use super::event::ConsentRecord;
use super::registry::StudyEntry;
use crate::wire::research::{
    ConsentDocument, ConsentSection, ConsentSummary, DateRange, DeidentificationLevel, Frequency,
    Resolution, TypeSwitch,
};

/// The `typ` of a consent receipt's JWS header.
pub const RECEIPT_TYPE: &str = "consent-receipt+jwt";

/// What withdrawing does, said plainly on every withdrawal.
pub const WITHDRAWAL_NOTICE: &str = "You have withdrawn from this study. From now on nothing \
    more of your data leaves for it: its access tokens stop working at once and every later \
    request it makes is refused. Data it already received cannot be called back: the study may \
    continue to analyse what was exported before you withdrew, as its withdrawal terms say.";

/// What never leaves for any study, whatever the owner switches on.
pub fn identifiers_removed(routes_requested: bool) -> Vec<String> {
    let mut out: Vec<String> = [
        "your name and every other name",
        "app and source names",
        "device names, models, manufacturers and serial numbers",
        "free-text metadata written with samples",
        "URLs and IP addresses",
        "Hearth's own sample and source ids (a random pseudonym, made for this study alone, stands in for you)",
        "ages over 89 (given as \"90 or older\")",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    out.push(if routes_requested {
        "locations, except workout routes if you switch them on separately (then coarsened)".into()
    } else {
        "locations, including workout routes".into()
    });
    out
}

/// How dates change before they leave, at `level`.
pub fn dates_text(level: DeidentificationLevel) -> &'static str {
    match level {
        DeidentificationLevel::SafeHarbor => {
            "No calendar date leaves: every date is reduced to its year and a day counted from \
             the start of the date range."
        }
        DeidentificationLevel::ShiftedDates => {
            "Every date and time is moved by the same secret, random number of whole days, \
             chosen once for this study: intervals between your samples stay exact, calendar \
             dates do not."
        }
        DeidentificationLevel::ShiftedDatesKeepWeekday => {
            "Every date and time is moved by the same secret, random number of whole weeks, \
             chosen once for this study: intervals and weekdays stay exact, calendar dates do \
             not."
        }
    }
}

fn resolution_text(r: Resolution) -> &'static str {
    match r {
        Resolution::Samples => {
            "Each sample leaves as one record, with its value and its (changed) time."
        }
        Resolution::Hourly => "Samples leave as hourly totals or averages, never one by one.",
        Resolution::Daily => "Samples leave as daily totals or averages, never one by one.",
    }
}

fn frequency_text(f: Frequency) -> &'static str {
    match f {
        Frequency::Once => "once",
        Frequency::Daily => "daily",
        Frequency::Weekly => "weekly",
        Frequency::Monthly => "monthly",
    }
}

fn range_text(r: &DateRange) -> String {
    match &r.end {
        Some(end) => format!("from {} to {end}", r.start),
        None => format!("from {} until the study ends", r.start),
    }
}

/// The consent document of `study`: the switches show the decision in force
/// (all off before the owner decides, and after a withdrawal).
pub fn document(study: &StudyEntry, decided_at: Option<String>) -> ConsentDocument {
    let d = &study.description;
    let consent = study.live_consent();
    let on = |ty: &str| consent.is_some_and(|c| c.types.iter().any(|t| t == ty));
    let switches: Vec<TypeSwitch> = d
        .requested_types
        .iter()
        .map(|ty| TypeSwitch {
            type_id: ty.clone(),
            on: on(ty),
        })
        .collect();
    let routes_on = d.requests_routes && consent.is_some_and(|c| c.routes);
    let section = |key, title, text: String| ConsentSection { key, title, text };
    let sections = vec![
        section(
            "overview",
            "Overview",
            format!(
                "{} asks to include your data in the study \"{}\". {}",
                d.organisation, d.name, d.purpose
            ),
        ),
        section(
            "data_gathering",
            "Data gathering",
            format!(
                "The study asks for these types: {}; recorded {}; collected {}. {} Each type \
                 leaves only if you switch it on.",
                d.requested_types.join(", "),
                range_text(&d.date_range),
                frequency_text(d.frequency),
                resolution_text(d.resolution),
            ),
        ),
        section("procedures", "Study tasks", d.procedures.clone()),
        section(
            "risks_and_benefits",
            "Risks and benefits",
            d.risks_and_benefits.clone(),
        ),
        section("time_commitment", "Duration", d.duration.clone()),
        section(
            "data_use",
            "Data use and sharing",
            d.data_use_and_sharing.clone(),
        ),
        section(
            "privacy",
            "Privacy",
            format!(
                "Before anything leaves, Hearth removes {}. {}",
                identifiers_removed(d.requests_routes).join("; "),
                dates_text(d.deidentification)
            ),
        ),
        section(
            "withdrawing",
            "Withdrawing",
            format!(
                "{} You can withdraw at any time; nothing more leaves for the study from then \
                 on, but data it already received may continue to be analysed.",
                d.withdrawal
            ),
        ),
    ];
    ConsentDocument {
        study_id: study.record.study_id.clone(),
        name: d.name.clone(),
        organisation: d.organisation.clone(),
        contact: d.contact.clone(),
        status: study.status(),
        sections,
        summary: ConsentSummary {
            types: switches
                .iter()
                .filter(|s| s.on)
                .map(|s| s.type_id.clone())
                .collect(),
            date_range: d.date_range.clone(),
            frequency: d.frequency,
            resolution: d.resolution,
            resolution_text: resolution_text(d.resolution).into(),
            deidentification: d.deidentification,
            identifiers_removed: identifiers_removed(d.requests_routes),
            dates: dates_text(d.deidentification).into(),
            routes: routes_on,
        },
        switches,
        routes_switch: d.requests_routes.then_some(routes_on),
        decided_at: consent.and(decided_at),
    }
}

/// Why a decision cannot be recorded.
#[derive(Debug, PartialEq, Eq)]
pub enum DecisionError {
    NoTypes,
    NotRequested(String),
    Repeated(String),
    RoutesNotRequested,
}

impl std::fmt::Display for DecisionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecisionError::NoTypes => {
                write!(
                    f,
                    "switch on at least one type (to decline, just do not consent)"
                )
            }
            DecisionError::NotRequested(t) => write!(f, "the study does not ask for '{t}'"),
            DecisionError::Repeated(t) => write!(f, "'{t}' is listed twice"),
            DecisionError::RoutesNotRequested => {
                write!(f, "the study does not ask for workout routes")
            }
        }
    }
}

/// Checks the owner's decision against what the study asks; returns the
/// types switched on, in the study's order.
pub fn check_decision(
    study: &StudyEntry,
    types: &[String],
    routes: bool,
) -> Result<Vec<String>, DecisionError> {
    let requested = &study.description.requested_types;
    if types.is_empty() {
        return Err(DecisionError::NoTypes);
    }
    for (i, t) in types.iter().enumerate() {
        if !requested.contains(t) {
            return Err(DecisionError::NotRequested(t.clone()));
        }
        if types[..i].contains(t) {
            return Err(DecisionError::Repeated(t.clone()));
        }
    }
    if routes && !study.description.requests_routes {
        return Err(DecisionError::RoutesNotRequested);
    }
    Ok(requested
        .iter()
        .filter(|t| types.contains(t))
        .cloned()
        .collect())
}

/// The study a receipt names.
#[derive(Serialize)]
pub struct ReceiptStudy<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub organisation: &'a str,
}

/// The claims of a consent receipt: who signed it (`iss`, this store), for
/// whom (`aud`, the study's client id), what was consented and when.
#[derive(Serialize)]
pub struct ReceiptClaims<'a> {
    pub iss: &'a str,
    pub aud: &'a str,
    pub iat: i64,
    pub jti: String,
    pub study: ReceiptStudy<'a>,
    pub types: &'a [String],
    pub routes: bool,
    pub date_range: &'a DateRange,
    pub frequency: Frequency,
    pub resolution: Resolution,
    pub deidentification: DeidentificationLevel,
    /// RFC 3339.
    pub consented_at: String,
}

impl<'a> ReceiptClaims<'a> {
    pub fn new(issuer: &'a str, study: &'a StudyEntry, consent: &'a ConsentRecord) -> Self {
        let d = &study.description;
        ReceiptClaims {
            iss: issuer,
            aud: &study.record.study_id,
            iat: consent.decided_us.div_euclid(1_000_000),
            jti: hex::encode(crate::crypto::random_bytes::<16>()),
            study: ReceiptStudy {
                id: &study.record.study_id,
                name: &d.name,
                organisation: &d.organisation,
            },
            types: &consent.types,
            routes: consent.routes,
            date_range: &d.date_range,
            frequency: d.frequency,
            resolution: d.resolution,
            deidentification: d.deidentification,
            consented_at: super::rfc3339(consent.decided_us),
        }
    }
}
