//! Studies, the owner's consent and withdrawal, and the SMART Backend
//! Services token endpoint.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// A study description: what a research study asks of the owner, in the
/// consent sections ResearchKit and the App Store name, and the study's
/// client keys for SMART Backend Services.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StudyDescription {
    /// 1 to 200 characters.
    pub name: String,
    /// Who runs the study; 1 to 200 characters.
    pub organisation: String,
    /// How to reach the study team; 1 to 500 characters.
    pub contact: String,
    /// Each consent section below: 1 to 5,000 characters.
    pub purpose: String,
    pub procedures: String,
    pub risks_and_benefits: String,
    pub duration: String,
    pub data_use_and_sharing: String,
    /// What withdrawing means for this study.
    pub withdrawal: String,
    /// Catalogue type ids, 1 to 64, each once.
    pub requested_types: Vec<String>,
    pub date_range: DateRange,
    pub frequency: Frequency,
    /// How finely samples leave; `samples` when absent.
    #[serde(default)]
    pub resolution: Resolution,
    /// Whether the study asks for workout routes (the owner decides apart).
    #[serde(default)]
    pub requests_routes: bool,
    pub deidentification: DeidentificationLevel,
    /// The study's public keys (RS384 or ES384, each with a `kid`), inline;
    /// exactly one of `jwks` and `jwks_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub jwks: Option<Jwks>,
    /// Where the study publishes its key set: `https`, or `http` on a
    /// loopback address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub jwks_uri: Option<String>,
}

/// Days, inclusive, as `YYYY-MM-DD`; no `end`: until the study ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DateRange {
    pub start: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub end: Option<String>,
}

/// How often the study collects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Frequency {
    Once,
    Daily,
    Weekly,
    Monthly,
}

/// How finely samples leave: each one, or hourly or daily aggregates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    #[default]
    Samples,
    Hourly,
    Daily,
}

/// How dates are de-identified: `safe_harbor` keeps the year only (HIPAA
/// Safe Harbor); `shifted_dates` moves every date by one secret random
/// number of whole days, the same for the whole study, which keeps
/// intervals; `shifted_dates_keep_weekday` shifts by whole weeks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeidentificationLevel {
    SafeHarbor,
    ShiftedDates,
    ShiftedDatesKeepWeekday,
}

/// A JSON Web Key Set (RFC 7517) of public keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Jwks {
    /// Public JWKs: `kty` `RSA` (`n`, `e`; at least 2048 bits) or `EC`
    /// (`crv` `P-384`, `x`, `y`), each with a `kid`; private members are
    /// refused.
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<Map<String, Value>>,
}

/// Where a study stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StudyStatus {
    /// Added; the owner has not decided.
    AwaitingConsent,
    Consented,
    Withdrawn,
}

/// A study the owner added.
#[derive(Serialize, ToSchema)]
pub struct Study {
    pub id: String,
    /// The client id the study's token requests name (`iss` and `sub`).
    pub client_id: String,
    pub status: StudyStatus,
    /// RFC 3339.
    pub added_at: String,
    #[serde(flatten)]
    pub description: StudyDescription,
}

#[derive(Serialize, ToSchema)]
pub struct StudyList {
    pub studies: Vec<Study>,
}

/// One section of the consent document.
#[derive(Serialize, ToSchema)]
pub struct ConsentSection {
    /// `overview`, `data_gathering`, `procedures`, `risks_and_benefits`,
    /// `time_commitment`, `data_use`, `privacy` or `withdrawing`.
    pub key: &'static str,
    pub title: &'static str,
    pub text: String,
}

/// The switch for one requested type; every switch starts off.
#[derive(Serialize, ToSchema)]
pub struct TypeSwitch {
    #[serde(rename = "type")]
    pub type_id: String,
    pub on: bool,
}

/// Exactly what leaves under the switches that are on.
#[derive(Serialize, ToSchema)]
pub struct ConsentSummary {
    /// The types switched on.
    pub types: Vec<String>,
    pub date_range: DateRange,
    pub frequency: Frequency,
    pub resolution: Resolution,
    /// A sentence on the resolution.
    pub resolution_text: String,
    pub deidentification: DeidentificationLevel,
    /// What never leaves.
    pub identifiers_removed: Vec<String>,
    /// How dates are changed before they leave.
    pub dates: String,
    /// Whether workout routes leave.
    pub routes: bool,
}

/// The consent document of a study.
#[derive(Serialize, ToSchema)]
pub struct ConsentDocument {
    pub study_id: String,
    pub name: String,
    pub organisation: String,
    pub contact: String,
    pub status: StudyStatus,
    pub sections: Vec<ConsentSection>,
    /// One per requested type, on where the owner's decision in force
    /// allows it, off otherwise.
    pub switches: Vec<TypeSwitch>,
    /// Present when the study asks for workout routes.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub routes_switch: Option<bool>,
    pub summary: ConsentSummary,
    /// RFC 3339: when the decision in force was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub decided_at: Option<String>,
}

/// The owner's decision: the requested types switched on.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentDecision {
    /// Some or all of the requested types; at least one.
    pub types: Vec<String>,
    /// Workout routes too (only if the study asks for them).
    #[serde(default)]
    pub routes: bool,
}

/// The decision as recorded, with its signed receipt.
#[derive(Serialize, ToSchema)]
pub struct ConsentGiven {
    pub study_id: String,
    pub types: Vec<String>,
    pub routes: bool,
    /// RFC 3339.
    pub decided_at: String,
    /// The consent receipt: a compact JWS (EdDSA) signed by the store's
    /// key, published at `/.well-known/jwks.json`.
    pub receipt: String,
}

/// The answer to a withdrawal.
#[derive(Serialize, ToSchema)]
pub struct Withdrawn {
    pub study_id: String,
    /// RFC 3339.
    pub withdrawn_at: String,
    /// What withdrawing does and does not do, in plain words.
    pub notice: String,
}

/// The store's public signing keys.
#[derive(Serialize, ToSchema)]
pub struct StoreJwks {
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<Value>,
}

/// SMART configuration (SMART App Launch 2.2, Backend Services).
#[derive(Serialize, ToSchema)]
pub struct SmartConfiguration {
    pub issuer: String,
    pub jwks_uri: String,
    pub token_endpoint: String,
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    pub token_endpoint_auth_signing_alg_values_supported: Vec<&'static str>,
    pub grant_types_supported: Vec<&'static str>,
    pub scopes_supported: Vec<&'static str>,
    pub capabilities: Vec<&'static str>,
}

/// A token request (`client_credentials` with a `private_key_jwt`
/// assertion, RFC 7523).
#[derive(Deserialize, ToSchema)]
pub struct StudyTokenRequest {
    /// `client_credentials`.
    pub grant_type: String,
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`.
    pub client_assertion_type: String,
    /// A JWT signed with one of the study's keys (RS384 or ES384).
    pub client_assertion: String,
    /// `system/Observation.rs` and/or `system/Patient.rs`.
    pub scope: String,
}

/// An access token for a study: at most 300 seconds, never refreshed.
#[derive(Serialize, ToSchema)]
pub struct StudyToken {
    pub access_token: String,
    /// `bearer`.
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: String,
}
