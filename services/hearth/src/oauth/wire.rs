//! What the authorization server's endpoints take and answer: these types
//! are both what the handlers use and what the OpenAPI description says.
//!
//! Requests are forms and query strings in which any parameter given twice
//! is refused (RFC 6749 §3.1, §3.2), so they are read with [`Params`] rather
//! than a deserializer that would keep the last value.

use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use super::OAuthError;
use crate::catalogue;

/// Whether the request's body is a form (`application/x-www-form-urlencoded`,
/// parameters such as a charset aside).
pub fn is_form(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Parameters of a query string or form.
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(bytes: &[u8]) -> Params {
        Params(
            url::form_urlencoded::parse(bytes)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The single value of `name`; `Err` if it is repeated.
    pub fn get(&self, name: &str) -> Result<Option<&str>, Repeated> {
        let mut found = None;
        for (k, v) in &self.0 {
            if k == name {
                if found.is_some() {
                    return Err(Repeated);
                }
                found = Some(v.as_str());
            }
        }
        Ok(found)
    }

    /// Every value of `name`, in order (a form's checkboxes of one name).
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The single, non-empty value of `name`.
    pub fn one(&self, name: &str) -> Option<&str> {
        self.get(name).ok().flatten().filter(|v| !v.is_empty())
    }

    fn owned(&self, name: &str) -> Option<String> {
        self.one(name).map(str::to_string)
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }
}

/// A parameter was given more than once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repeated;

/// Authorization server metadata (RFC 8414).
#[derive(Debug, Serialize, ToSchema)]
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

impl ServerMetadata {
    /// The metadata of the server known to its clients as `issuer`.
    pub fn new(issuer: String) -> ServerMetadata {
        let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let client_auth = strings(&["none", "client_secret_basic", "client_secret_post"]);
        let mut scopes: Vec<String> = Vec::new();
        for t in catalogue::all() {
            scopes.push(format!("read:{}", t.id));
            scopes.push(format!("write:{}", t.id));
        }
        scopes.push("research:export".into());
        ServerMetadata {
            authorization_endpoint: format!("{issuer}/oauth/authorize"),
            token_endpoint: format!("{issuer}/oauth/token"),
            revocation_endpoint: format!("{issuer}/oauth/revoke"),
            issuer,
            response_types_supported: strings(&["code"]),
            response_modes_supported: strings(&["query"]),
            grant_types_supported: strings(&["authorization_code", "refresh_token"]),
            code_challenge_methods_supported: strings(&["S256"]),
            token_endpoint_auth_methods_supported: client_auth.clone(),
            revocation_endpoint_auth_methods_supported: client_auth,
            scopes_supported: scopes,
            authorization_response_iss_parameter_supported: true,
        }
    }
}

/// An authorization request (RFC 6749 §4.1.1 with PKCE, RFC 7636).
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuthorizeQuery {
    /// `code`.
    pub response_type: Option<String>,
    /// The app's id.
    pub client_id: Option<String>,
    /// One of the app's registered redirect URIs.
    pub redirect_uri: Option<String>,
    /// Space-separated `read:TYPE`, `write:TYPE` (and `research:export`
    /// for research apps).
    pub scope: Option<String>,
    /// Returned unchanged with the answer.
    pub state: Option<String>,
    /// The PKCE challenge: base64url of the verifier's SHA-256.
    pub code_challenge: Option<String>,
    /// `S256`.
    pub code_challenge_method: Option<String>,
    /// The first parameter given twice, `state` checked first: a repeated
    /// `client_id` or `redirect_uri` is read as absent instead.
    #[param(ignore)]
    pub repeated: Option<&'static str>,
}

impl AuthorizeQuery {
    pub fn from_params(q: &Params) -> AuthorizeQuery {
        let checked = [
            "state",
            "response_type",
            "scope",
            "code_challenge",
            "code_challenge_method",
        ];
        AuthorizeQuery {
            response_type: q.owned("response_type"),
            client_id: q.owned("client_id"),
            redirect_uri: q.owned("redirect_uri"),
            scope: q.owned("scope"),
            // Returned as given, even empty.
            state: q.get("state").ok().flatten().map(str::to_string),
            code_challenge: q.owned("code_challenge"),
            code_challenge_method: q.owned("code_challenge_method"),
            repeated: checked.into_iter().find(|name| q.get(name).is_err()),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub enum Decision {
    #[serde(rename = "allow")]
    Allow,
    #[serde(rename = "deny")]
    Deny,
}

/// The consent form. Each switched-on `read:TYPE` / `write:TYPE` field
/// grants that type; a switched-off one is absent and denies it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentForm {
    /// From the consent page.
    #[schema(value_type = String)]
    pub request_id: Option<String>,
    /// From the consent page.
    #[schema(value_type = String)]
    pub csrf_token: Option<String>,
    /// Anything but `allow` denies.
    #[schema(nullable = false)]
    pub decision: Option<Decision>,
    /// Asked when the browser has no owner session.
    #[schema(nullable = false)]
    pub passphrase: Option<String>,
    /// The name of every field sent: the switched-on scopes among them.
    #[serde(skip)]
    pub fields: Vec<String>,
}

impl ConsentForm {
    pub fn from_params(form: &Params) -> ConsentForm {
        ConsentForm {
            request_id: form.owned("request_id"),
            csrf_token: form.owned("csrf_token"),
            decision: form.one("decision").map(|d| match d {
                "allow" => Decision::Allow,
                _ => Decision::Deny,
            }),
            passphrase: form.owned("passphrase"),
            fields: form.names().map(str::to_string).collect(),
        }
    }

    /// Whether the switch for `scope` was on.
    pub fn switched_on(&self, scope: &str) -> bool {
        self.fields.iter().any(|f| f == scope)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub enum GrantType {
    #[serde(rename = "authorization_code")]
    AuthorizationCode,
    #[serde(rename = "refresh_token")]
    RefreshToken,
}

/// A token request (RFC 6749 §4.1.3, §6). Confidential clients
/// authenticate with HTTP Basic or `client_secret`, not both.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenRequest {
    // As sent: an unknown grant type is `unsupported_grant_type`.
    #[schema(value_type = GrantType)]
    pub grant_type: Option<String>,
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

impl TokenRequest {
    /// The form, or `invalid_request` if a parameter of the grant is
    /// repeated (a repeated client credential fails authentication instead).
    pub fn from_params(form: &Params) -> Result<TokenRequest, OAuthError> {
        for name in [
            "grant_type",
            "code",
            "redirect_uri",
            "code_verifier",
            "refresh_token",
            "scope",
        ] {
            if form.get(name).is_err() {
                return Err(OAuthError::InvalidRequest("a parameter is repeated"));
            }
        }
        Ok(TokenRequest {
            grant_type: form.owned("grant_type"),
            code: form.owned("code"),
            redirect_uri: form.owned("redirect_uri"),
            code_verifier: form.owned("code_verifier"),
            refresh_token: form.owned("refresh_token"),
            scope: form.owned("scope"),
            client_id: form.get("client_id").ok().flatten().map(str::to_string),
            client_secret: form.get("client_secret").ok().flatten().map(str::to_string),
        })
    }
}

/// A revocation request (RFC 7009).
#[derive(Debug, Serialize, ToSchema)]
pub struct RevokeRequest {
    /// An access or refresh token; revoking a refresh token ends its grant.
    #[schema(value_type = String)]
    pub token: Option<String>,
    /// Ignored.
    #[schema(nullable = false)]
    pub token_type_hint: Option<String>,
    #[schema(nullable = false)]
    pub client_id: Option<String>,
    #[schema(nullable = false)]
    pub client_secret: Option<String>,
}

impl RevokeRequest {
    pub fn from_params(form: &Params) -> RevokeRequest {
        let single = |name| form.get(name).ok().flatten().map(str::to_string);
        RevokeRequest {
            token: single("token"),
            token_type_hint: single("token_type_hint"),
            client_id: single("client_id"),
            client_secret: single("client_secret"),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
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

/// An OAuth error (RFC 6749 §5.2).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = OAuthError)]
pub struct ErrorResponse {
    /// `invalid_request`, `invalid_client`, `invalid_grant`,
    /// `unsupported_grant_type` or `temporarily_unavailable`.
    pub error: String,
    pub error_description: String,
}

impl From<OAuthError> for ErrorResponse {
    fn from(e: OAuthError) -> ErrorResponse {
        ErrorResponse {
            error: e.code().to_string(),
            error_description: e.to_string(),
        }
    }
}
