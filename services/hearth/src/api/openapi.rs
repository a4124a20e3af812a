//! The OpenAPI 3.1 document: its info, security schemes and tags. The
//! paths and schemas come from the router (`api::routes`), which registers
//! every documented handler with its annotation, and from the wire types
//! those handlers send; committed as `openapi/hearth.yaml` and served at
//! `/openapi.yaml`. A test fails when the two differ; `hearth openapi`
//! prints the current one.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, AuthorizationCode, Flow, HttpAuthScheme, HttpBuilder, OAuth2, Scopes,
    SecurityScheme,
};
use utoipa::{Modify, OpenApi};

pub use super::problem::{BodyErrors, CommonErrors};
use crate::catalogue;
pub use crate::wire::ProblemDetails;

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
        components.add_security_scheme(
            "study",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A study's access token from /fhir/token (SMART Backend Services)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "app_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "api-key",
                "An app credential in the header Health Auto Export sends (its ingest endpoint only)",
            ))),
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
                       application/problem+json with a stable `code`.\n\n\
                       Limits: a batch holds at most 10,000 samples (`too_many_samples`); \
                       a source (an app) writes with at most 64 distinct devices, and a \
                       batch that would add a 65th is refused whole (`400 too_many_devices`); \
                       a `by_source` answer holds at most 65 series, one source's 64 \
                       devices and its samples without a device (`400 too_many_series` \
                       beyond; narrow it with `sources=`); a bucket query at most 10,000 \
                       buckets (`400 too_many_buckets`); requests in progress beyond the \
                       server's limit (`HEARTH_MAX_CONCURRENT_REQUESTS`, default 256) are \
                       answered at once with `503 overloaded` and `Retry-After`, while \
                       setup, unlock, lock, the health checks and the pages keep a small \
                       pool of their own.",
        license(name = "AGPL-3.0-or-later", identifier = "AGPL-3.0-or-later"),
    ),
    components(schemas(
        crate::wire::ErrorCode,
        crate::wire::queries::ReadyData,
        crate::wire::queries::ChangeData,
        crate::wire::queries::EndData,
    )),
    modifiers(&SecuritySchemes),
    tags(
        (name = "lifecycle", description = "Health checks and the lock model"),
        (name = "samples", description = "Writing and reading health samples"),
        (name = "queries", description = "Statistics collections, sources, characteristics, the change feed and the observer stream"),
        (name = "apps", description = "The owner's registry of apps, their grants and credentials; an app's own permission status"),
        (name = "imports", description = "Bringing data in: Apple Health exports, imported as background jobs"),
        (name = "oauth", description = "The OAuth 2.1 authorization server: metadata, consent, tokens, revocation"),
        (name = "keys", description = "The owner's keys: passphrase change, recovery key, key slots for unattended unlock"),
        (name = "research", description = "Research studies: the owner adds them, consents per type with a signed receipt, and withdraws; studies authenticate with SMART Backend Services"),
        (name = "audit", description = "What left the store: the owner's audit of apps' reads and writes and of study exports, and the privacy notice"),
        (name = "fhir", description = "FHIR Bulk Data export for studies (kick-off, status, manifest, files): de-identified data under the consent in force, with the study's SMART access token; errors are OperationOutcomes"),
    )
)]
pub struct ApiDoc;

/// The spec as YAML, exactly as committed.
pub fn spec_yaml() -> String {
    static SPEC: OnceLock<String> = OnceLock::new();
    SPEC.get_or_init(|| {
        super::documented_routes()
            .into_openapi()
            .to_yaml()
            .expect("the OpenAPI document serialises")
    })
    .clone()
}

/// This description, as YAML.
#[utoipa::path(get, path = "/openapi.yaml", tag = "lifecycle", operation_id = "openapi",
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
