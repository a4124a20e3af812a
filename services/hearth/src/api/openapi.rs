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

use super::{lifecycle, samples, statistics};
use crate::catalogue;

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
    pub value: SampleValue,
    /// Quantity types only: the unit of `value`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// String, number or boolean values.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// The app that wrote the sample (`owner` for the owner).
    pub source: String,
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

/// `sum` for cumulative types; `min`, `max`, `avg` for discrete types with samples.
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
}

#[derive(Serialize, ToSchema)]
pub struct TypeList {
    #[schema(value_type = Vec<Object>)]
    pub types: Vec<serde_json::Value>,
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
    /// `method_not_allowed`, `internal_error`.
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
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "lifecycle", description = "Health checks and the lock model"),
        (name = "samples", description = "Writing and reading health samples"),
    )
)]
pub struct ApiDoc;

/// The spec as YAML, exactly as committed.
pub fn spec_yaml() -> String {
    ApiDoc::openapi()
        .to_yaml()
        .expect("the OpenAPI document serialises")
}

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
