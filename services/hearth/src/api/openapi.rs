//! The OpenAPI 3.1 document: its info, security schemes and tags. The
//! paths and schemas come from the router (`api::routes`), which registers
//! every documented handler with its annotation, and from the wire types
//! those handlers send; committed as `openapi/hearth.yaml` and served at
//! `/openapi.yaml`. A test fails when the two differ; `hearth openapi`
//! prints the current one.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::security::{
    AuthorizationCode, Flow, HttpAuthScheme, HttpBuilder, OAuth2, Scopes, SecurityScheme,
};
use utoipa::{Modify, OpenApi, ToSchema};

pub use super::problem::{BodyErrors, CommonErrors};
use crate::catalogue;
pub use crate::wire::ProblemDetails;

// The authorization server's form bodies and answers, until its handlers
// parse and send typed bodies of their own.

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
    components(schemas(
        crate::wire::ErrorCode,
        crate::wire::queries::ReadyData,
        crate::wire::queries::ChangeData,
        crate::wire::queries::LockedData,
    )),
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
