//! The OpenAPI 3.1 description, generated from the handlers' annotations and
//! the schemas below; committed as `openapi/hearth.yaml` and served at
//! `/openapi.yaml`. A test fails when the two differ; `hearth openapi`
//! prints the current one.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::security::{
    AuthorizationCode, Flow, HttpAuthScheme, HttpBuilder, OAuth2, Scopes, SecurityScheme,
};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{changes, characteristics, lifecycle, samples, sources, statistics, status};
use crate::apps::http as apps;
use crate::catalogue;
use crate::oauth::http as oauth;

/// A sample as the API returns it.
#[derive(Serialize, ToSchema)]
pub struct Sample {
    pub id: uuid::Uuid,
    /// The type's id from `GET /v1/types`.
    #[serde(rename = "type")]
    #[schema(example = "step_count")]
    pub type_id: String,
    /// RFC 3339 with the offset the sample was written with.
    #[schema(example = "2026-01-01T10:00:00+01:00")]
    pub start: String,
    #[schema(example = "2026-01-01T10:01:00+01:00")]
    pub end: String,
    /// Quantity and category types only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<SampleValue>,
    /// Quantity types only: the unit of `value`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// String, number or boolean values.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// The app that wrote the sample (`owner` for the owner).
    pub source: String,
    /// The device that measured it, if one was named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
    /// Correlations: the members' ids, or the members themselves where the
    /// caller may read them.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Value>>)]
    pub members: Option<Vec<serde_json::Value>>,
    /// Workouts: the activity type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activity: Option<String>,
    /// Workouts: seconds from start to end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f64>,
    /// Workouts: total energy, `{value, unit}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub energy: Option<serde_json::Value>,
    /// Workouts: total distance, `{value, unit}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub distance: Option<serde_json::Value>,
    /// Routes: the workout's id (null if unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub workout: Option<serde_json::Value>,
    /// Routes: the points.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub route: Option<Vec<serde_json::Value>>,
}

/// A device as recorded with a sample: absent fields are left out.
#[derive(Serialize, ToSchema)]
pub struct Device {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    /// One of `device_kinds` from `GET /v1/types`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// A number for quantity types, one of the type's values for category types.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum SampleValue {
    Quantity(f64),
    Category(String),
}

/// One sample to write.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSample {
    /// Supply it to make retries idempotent; generated otherwise.
    pub id: Option<uuid::Uuid>,
    #[serde(rename = "type")]
    #[schema(example = "step_count")]
    pub type_id: String,
    /// RFC 3339 with an offset, 1900–2200.
    #[schema(example = "2026-01-01T10:00:00+01:00")]
    pub start: String,
    /// Not before `start`.
    #[schema(example = "2026-01-01T10:01:00+01:00")]
    pub end: String,
    pub value: SampleValue,
    /// Required for quantity types; any unit compatible with the type.
    #[schema(example = "count")]
    pub unit: Option<String>,
    /// Up to 64 keys with string, number or boolean values, 4 KiB in all.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SampleBatch {
    /// 1 to 10,000 samples, stored all or nothing.
    pub samples: Vec<NewSample>,
}

#[derive(Serialize, ToSchema)]
pub struct WriteOutcome {
    pub added: u64,
    /// Samples already stored with the same id and content.
    pub unchanged: u64,
    /// The id of every sample of the request, in order.
    pub ids: Vec<uuid::Uuid>,
}

#[derive(Serialize, ToSchema)]
pub struct SamplePage {
    pub samples: Vec<Sample>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// `sum` for cumulative types; `min`, `max`, `avg`, `most_recent` for
/// discrete types (null without samples).
#[derive(Serialize, ToSchema)]
pub struct Statistics {
    #[serde(rename = "type")]
    pub type_id: String,
    pub count: u64,
    pub unit: Option<String>,
    pub sum: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub avg: Option<f64>,
    pub most_recent: Option<f64>,
    /// With `by_source=true`: the figures of each source.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub sources: Option<Vec<SourceStatistics>>,
}

/// One source's figures (`by_source=true`).
#[derive(Serialize, ToSchema)]
pub struct SourceStatistics {
    pub source: String,
    pub device: Option<Device>,
    pub count: u64,
    pub sum: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub avg: Option<f64>,
    pub most_recent: Option<f64>,
}

#[derive(Serialize, ToSchema)]
pub struct TypeList {
    #[schema(value_type = Vec<Object>)]
    pub types: Vec<serde_json::Value>,
    /// The values a device's `kind` may take.
    pub device_kinds: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    pub state: crate::lock::LockStateName,
}

/// An owner session; the token is also set as an `HttpOnly` cookie.
#[derive(Serialize, ToSchema)]
pub struct Session {
    pub token: String,
    pub state: crate::lock::LockStateName,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupRequest {
    /// Printed on the server's console at first start.
    pub setup_code: String,
    /// At least 10 characters.
    pub passphrase: String,
}

#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnlockRequest {
    pub passphrase: String,
}

/// `sum` for cumulative types; `min`, `max`, `avg`, `most_recent` (and
/// `count`) for discrete types. A figure without samples is null.
#[derive(Serialize, ToSchema)]
pub struct Bucket {
    /// RFC 3339 in the requested time zone.
    pub start: String,
    pub end: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sum: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avg: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub most_recent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub count: Option<u64>,
}

/// One source's buckets (`by_source=true`).
#[derive(Serialize, ToSchema)]
pub struct SourceBuckets {
    pub source: String,
    pub device: Option<Device>,
    pub buckets: Vec<Bucket>,
}

/// A statistics collection: `buckets`, or `sources` with `by_source=true`.
#[derive(Serialize, ToSchema)]
pub struct BucketCollection {
    #[serde(rename = "type")]
    pub type_id: String,
    pub unit: String,
    /// As requested, e.g. `1d`, `1h`, `1w`, `1mo`.
    pub interval: String,
    /// The IANA time zone the buckets follow.
    pub tz: String,
    /// The start of the bucket grid.
    pub anchor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buckets: Option<Vec<Bucket>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<SourceBuckets>>,
}

/// Statistics of one type over a workout's time.
#[derive(Serialize, ToSchema)]
pub struct WorkoutFigures {
    #[serde(rename = "type")]
    pub type_id: String,
    pub count: u64,
    pub unit: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sum: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub avg: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub most_recent: Option<f64>,
}

/// The workout sample, with `statistics` when a `type` was asked for.
#[derive(Serialize, ToSchema)]
pub struct WorkoutStatistics {
    #[serde(flatten)]
    pub workout: Sample,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub statistics: Option<WorkoutFigures>,
}

/// A source of samples: an app (`owner` for the owner) and its device.
#[derive(Serialize, ToSchema)]
pub struct SourceInfo {
    pub source: String,
    pub device: Option<Device>,
}

/// Sources in the order statistics prefer them.
#[derive(Serialize, ToSchema)]
pub struct SourceList {
    pub sources: Vec<SourceInfo>,
}

/// An app, or one of its devices.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceKey {
    /// 1 to 128 bytes.
    pub source: String,
    /// 1 to 128 bytes; null or absent for the app as a whole.
    pub device: Option<String>,
}

/// The owner's priority order, highest first.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourcePriority {
    /// At most 64 entries, none twice.
    pub order: Vec<SourceKey>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BiologicalSex {
    Female,
    Male,
    Other,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BloodType {
    APositive,
    ANegative,
    BPositive,
    BNegative,
    AbPositive,
    AbNegative,
    OPositive,
    ONegative,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SkinType {
    I,
    Ii,
    Iii,
    Iv,
    V,
    Vi,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WheelchairUse {
    No,
    Yes,
}

/// The owner's characteristics. Answers carry every key, null when unset
/// or not readable; a `PUT` replaces the set (absent or null unsets).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Characteristics {
    /// `YYYY-MM-DD`, from 1900 to today.
    #[schema(value_type = Option<String>, format = Date)]
    pub date_of_birth: Option<String>,
    pub biological_sex: Option<BiologicalSex>,
    pub blood_type: Option<BloodType>,
    pub fitzpatrick_skin_type: Option<SkinType>,
    pub wheelchair_use: Option<WheelchairUse>,
}

/// A deleted sample in the change feed.
#[derive(Serialize, ToSchema)]
pub struct DeletedSample {
    pub id: uuid::Uuid,
    #[serde(rename = "type")]
    pub type_id: String,
}

/// Changes after an anchor, oldest first.
#[derive(Serialize, ToSchema)]
pub struct ChangePage {
    pub added: Vec<Sample>,
    pub deleted: Vec<DeletedSample>,
    /// Pass as `anchor` for the changes after this page.
    pub anchor: String,
    /// More changes wait after `anchor`.
    pub has_more: bool,
}

#[derive(Serialize, ToSchema)]
pub enum ObserveEventName {
    #[serde(rename = "ready")]
    Ready,
    #[serde(rename = "change")]
    Change,
    #[serde(rename = "store_locked")]
    StoreLocked,
}

/// One Server-Sent Event: `ready` first (data `{anchor}`), then `change`
/// (data `{type, anchor}`) per changed type, and `store_locked` (data
/// `{code, detail}`) last when the store locks. Heartbeats are comments.
#[derive(Serialize, ToSchema)]
pub struct ObserveEvent {
    pub event: ObserveEventName,
    /// JSON text.
    #[schema(content_media_type = "application/json")]
    pub data: String,
    /// The anchor; send it back as `Last-Event-ID` when reconnecting.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub id: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WriteStatus {
    NotDetermined,
    Denied,
    Authorized,
}

/// The caller's write status per requested type.
#[derive(Serialize, ToSchema)]
pub struct WriteStatuses {
    /// Keyed by type id.
    pub write: std::collections::BTreeMap<String, WriteStatus>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatusValue {
    ShouldRequest,
    Unnecessary,
}

/// Whether asking the owner for these types would show anything new.
#[derive(Serialize, ToSchema)]
pub struct RequestStatus {
    pub status: RequestStatusValue,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientType {
    Public,
    Confidential,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AppKind {
    App,
    Research,
}

/// The owner's decision on one type; null where never decided.
#[derive(Serialize, ToSchema)]
pub struct GrantState {
    pub read: Option<bool>,
    pub write: Option<bool>,
}

/// A registered app (an OAuth client).
#[derive(Serialize, ToSchema)]
pub struct App {
    pub id: String,
    /// The same as `id`.
    pub client_id: String,
    pub name: String,
    pub description: String,
    pub purpose: String,
    pub privacy_policy_url: String,
    pub redirect_uris: Vec<String>,
    pub client_type: ClientType,
    pub kind: AppKind,
    /// Keyed by type id.
    pub grants: std::collections::BTreeMap<String, GrantState>,
    /// Confidential clients, on registration only: shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub client_secret: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AppList {
    pub apps: Vec<App>,
}

/// An app to register.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApp {
    /// 1 to 100 characters.
    pub name: String,
    /// Up to 2000 characters.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub description: Option<String>,
    /// 1 to 2000 characters, shown on the consent page.
    pub purpose: String,
    /// An absolute http(s) URL.
    pub privacy_policy_url: String,
    /// 1 to 10 redirect URIs: https, http on loopback, or a private scheme.
    pub redirect_uris: Vec<String>,
    pub client_type: ClientType,
    /// Default `app`.
    pub kind: Option<AppKind>,
}

/// Changes to an app; absent fields stay as they are.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub purpose: Option<String>,
    pub privacy_policy_url: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
}

/// Grant (`true`) or deny (`false`) types, keyed by type id.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantChanges {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub read: Option<std::collections::BTreeMap<String, bool>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub write: Option<std::collections::BTreeMap<String, bool>>,
}

/// A long-lived credential to mint; the types are granted to the app.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCredential {
    /// 1 to 100 characters.
    pub name: String,
    /// Type ids to read.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub read: Option<Vec<String>>,
    /// Type ids to write.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub write: Option<Vec<String>>,
}

#[derive(Serialize, ToSchema)]
pub struct Credential {
    pub id: uuid::Uuid,
    pub name: Option<String>,
    /// Space-separated scopes.
    pub scope: String,
    /// RFC 3339.
    pub created: Option<String>,
    /// The bearer token, in the answer to minting only: shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub token: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CredentialList {
    pub credentials: Vec<Credential>,
}

/// Authorization server metadata (RFC 8414).
#[derive(Serialize, ToSchema)]
pub struct ServerMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub revocation_endpoint: String,
    pub response_types_supported: Vec<String>,
    pub response_modes_supported: Vec<String>,
    pub grant_types_supported: Vec<String>,
    pub code_challenge_methods_supported: Vec<String>,
    pub token_endpoint_auth_methods_supported: Vec<String>,
    pub revocation_endpoint_auth_methods_supported: Vec<String>,
    pub scopes_supported: Vec<String>,
    pub authorization_response_iss_parameter_supported: bool,
}

#[derive(Serialize, ToSchema)]
pub enum Decision {
    #[serde(rename = "allow")]
    Allow,
    #[serde(rename = "deny")]
    Deny,
}

/// The consent form. Each switched-on `read:TYPE` / `write:TYPE` field
/// grants that type; a switched-off one is absent and denies it.
#[derive(Serialize, ToSchema)]
pub struct ConsentForm {
    /// From the consent page.
    pub request_id: String,
    /// From the consent page.
    pub csrf_token: String,
    /// Anything but `allow` denies.
    #[schema(nullable = false)]
    pub decision: Option<Decision>,
    /// Asked when the browser has no owner session.
    #[schema(nullable = false)]
    pub passphrase: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub enum GrantType {
    #[serde(rename = "authorization_code")]
    AuthorizationCode,
    #[serde(rename = "refresh_token")]
    RefreshToken,
}

/// A token request (RFC 6749 §4.1.3, §6). Confidential clients
/// authenticate with HTTP Basic or `client_secret`, not both.
#[derive(Serialize, ToSchema)]
pub struct TokenRequest {
    pub grant_type: GrantType,
    /// `authorization_code`: the code from the redirect.
    #[schema(nullable = false)]
    pub code: Option<String>,
    /// `authorization_code`: as in the authorization request.
    #[schema(nullable = false)]
    pub redirect_uri: Option<String>,
    /// `authorization_code`: the PKCE verifier.
    #[schema(nullable = false)]
    pub code_verifier: Option<String>,
    /// `refresh_token`: the refresh token (rotated on use).
    #[schema(nullable = false)]
    pub refresh_token: Option<String>,
    /// Ignored: a refreshed token keeps its grant's scope.
    #[schema(nullable = false)]
    pub scope: Option<String>,
    #[schema(nullable = false)]
    pub client_id: Option<String>,
    #[schema(nullable = false)]
    pub client_secret: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: String,
    /// Seconds.
    pub expires_in: u64,
    pub refresh_token: String,
    /// Space-separated.
    pub scope: String,
}

/// A revocation request (RFC 7009).
#[derive(Serialize, ToSchema)]
pub struct RevokeRequest {
    /// An access or refresh token; revoking a refresh token ends its grant.
    pub token: String,
    /// Ignored.
    #[schema(nullable = false)]
    pub token_type_hint: Option<String>,
    #[schema(nullable = false)]
    pub client_id: Option<String>,
    #[schema(nullable = false)]
    pub client_secret: Option<String>,
}

/// An authorization request (RFC 6749 §4.1.1 with PKCE, RFC 7636).
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct AuthorizeQuery {
    /// `code`.
    response_type: Option<String>,
    /// The app's id.
    client_id: Option<String>,
    /// One of the app's registered redirect URIs.
    redirect_uri: Option<String>,
    /// Space-separated `read:TYPE`, `write:TYPE` (and `research:export`
    /// for research apps).
    scope: Option<String>,
    /// Returned unchanged with the answer.
    state: Option<String>,
    /// The PKCE challenge: base64url of the verifier's SHA-256.
    code_challenge: Option<String>,
    /// `S256`.
    code_challenge_method: Option<String>,
}

/// An OAuth error (RFC 6749 §5.2).
#[derive(Serialize, ToSchema)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_client`, `invalid_grant`,
    /// `unsupported_grant_type` or `temporarily_unavailable`.
    pub error: String,
    pub error_description: String,
}

/// An `application/problem+json` error (RFC 9457).
#[derive(Serialize, ToSchema)]
pub struct ProblemDetails {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// Stable, machine-readable: `invalid_input`, `malformed_json`,
    /// `unsupported_media_type`, `payload_too_large`, `too_many_samples`,
    /// `not_found`, `unauthenticated`, `id_conflict`, `id_deleted`,
    /// `store_uninitialised`, `store_sealed`, `store_locked`,
    /// `wrong_passphrase`, `wrong_setup_code`, `too_many_attempts`,
    /// `already_initialised`, `log_tampered`, `storage_unavailable`,
    /// `method_not_allowed`, `internal_error`, `invalid_query`,
    /// `unreadable_body`, `owner_only`, `delete_not_authorized`,
    /// `too_many_buckets`, `invalid_path`.
    pub code: String,
    pub detail: String,
    /// For invalid input: which sample (`index`) and field.
    pub errors: Option<Vec<super::problem::FieldError>>,
}

/// Errors every data endpoint may answer.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum CommonErrors {
    /// Malformed or invalid request.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(#[to_schema] ProblemDetails),
    /// No valid bearer token or owner session.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthenticated(ProblemDetails),
    /// The request took too long.
    #[response(status = 408)]
    Timeout,
    /// The store is uninitialised, sealed or locked (`code` says which).
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(ProblemDetails),
}

/// Errors of endpoints that take a JSON body.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum BodyErrors {
    /// Body too large, or too many samples.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(ProblemDetails),
    /// The body is not `application/json`.
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(ProblemDetails),
}

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "owner",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The owner session from /v1/setup or /v1/unlock (also sent as the \
                         hearth_session cookie)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "client",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "A confidential client's id and secret (or `client_id` and \
                         `client_secret` in the form); public clients send `client_id` only",
                    ))
                    .build(),
            ),
        );
        let mut scopes: Vec<(String, String)> = catalogue::all()
            .iter()
            .flat_map(|t| {
                [
                    (format!("read:{}", t.id), format!("Read {}", t.id)),
                    (format!("write:{}", t.id), format!("Write {}", t.id)),
                ]
            })
            .collect();
        scopes.push((
            "research:export".into(),
            "Export de-identified data under a consent".into(),
        ));
        scopes.push(("owner".into(), "Act as the owner".into()));
        components.add_security_scheme(
            "apps",
            SecurityScheme::OAuth2(OAuth2::new([Flow::AuthorizationCode(
                AuthorizationCode::new(
                    "/oauth/authorize",
                    "/oauth/token",
                    Scopes::from_iter(scopes),
                ),
            )])),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hearth",
        description = "A self-hosted, encrypted personal health data store. Errors are \
                       application/problem+json with a stable `code`.",
        license(name = "AGPL-3.0-or-later", identifier = "AGPL-3.0-or-later"),
    ),
    paths(
        lifecycle::healthz,
        lifecycle::readyz,
        lifecycle::setup,
        lifecycle::unlock,
        lifecycle::lock,
        samples::types,
        samples::add,
        samples::list,
        samples::get_one,
        samples::delete,
        statistics::statistics,
        statistics::buckets,
        statistics::workout,
        sources::list,
        sources::get_priority,
        sources::put_priority,
        characteristics::get,
        characteristics::put,
        changes::changes,
        changes::observe,
        status::write_status,
        status::request_status,
        apps::create,
        apps::list,
        apps::get_one,
        apps::update,
        apps::remove,
        apps::set_grants,
        apps::mint_credential,
        apps::list_credentials,
        apps::revoke_credential,
        oauth::metadata,
        oauth::authorize,
        oauth::decide,
        oauth::token,
        oauth::revoke,
        serve_spec,
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "lifecycle", description = "Health checks and the lock model"),
        (name = "samples", description = "Writing and reading health samples"),
        (name = "queries", description = "Statistics collections, sources, characteristics, the change feed and the observer stream"),
        (name = "apps", description = "The owner's registry of apps, their grants and credentials; an app's own permission status"),
        (name = "oauth", description = "The OAuth 2.1 authorization server: metadata, consent, tokens, revocation"),
    )
)]
pub struct ApiDoc;

/// The spec as YAML, exactly as committed.
pub fn spec_yaml() -> String {
    ApiDoc::openapi()
        .to_yaml()
        .expect("the OpenAPI document serialises")
}

/// This description, as YAML.
#[utoipa::path(get, path = "/openapi.yaml", tag = "lifecycle",
    responses((status = 200, description = "The OpenAPI document", body = Object, content_type = "application/yaml")))]
pub async fn serve_spec() -> Response {
    ([(header::CONTENT_TYPE, "application/yaml")], spec_yaml()).into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn committed_spec_matches_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi/hearth.yaml");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == super::spec_yaml(),
            "openapi/hearth.yaml is out of date: run `cargo run -p hearth -- openapi > openapi/hearth.yaml`"
        );
    }
}
