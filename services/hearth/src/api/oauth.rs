//! The authorization server's endpoints: metadata (RFC 8414), the consent
//! page and its decision, the token endpoint and revocation (RFC 7009).
//!
//! Each handler reads the request, calls [`AuthorizationServer`] and renders
//! its answer; the server's errors become responses here, in one place per
//! kind of answer: [`oauth_error`] (JSON), [`authorize_error`] and
//! [`consent_error`] (pages and redirects).

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::auth::{same_origin, session_cookie, session_cookie_header};
use super::openapi::ProblemDetails;
use super::problem::Problem;
use super::AppState;
use crate::oauth::authorize::{AuthorizeError, Authorized, ClientRedirect, ConsentError};
use crate::oauth::token::{ClientCredentials, IssuedTokens};
use crate::oauth::wire::{
    AuthorizeQuery, ConsentForm, ErrorResponse, Params, RevokeRequest, ServerMetadata,
    TokenRequest, TokenResponse,
};
use crate::oauth::{AuthorizationServer, OAuthError, ACCESS_TTL};
use crate::web::consent::{consent_page, error_page};

fn server(state: &AppState) -> AuthorizationServer<'_> {
    AuthorizationServer::new(&state.store, &state.oauth)
}

/// The issuer: the configured public URL, else what the client called us by.
pub(crate) fn issuer(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.public_url {
        return url.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let scheme = if state.tls { "https" } else { "http" };
    format!("{scheme}://{host}")
}

/// Authorization server metadata (RFC 8414).
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "oauth",
    responses((status = 200, body = ServerMetadata)))]
pub async fn metadata(State(state): State<AppState>, headers: HeaderMap) -> Json<ServerMetadata> {
    Json(ServerMetadata::new(issuer(&state, &headers)))
}

/// A redirect back to the client with `params` appended to its URI.
fn redirect_to(uri: &str, params: &[(&str, &str)]) -> Response {
    let Ok(mut url) = url::Url::parse(uri) else {
        return error_page(StatusCode::BAD_REQUEST, "invalid redirect URI");
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(url.as_str()) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// An error for the client, at its redirect URI (RFC 6749 §4.1.2.1).
fn redirect_error(to: &ClientRedirect, iss: &str) -> Response {
    let description = to.error.to_string();
    let mut params = vec![
        ("error", to.error.code()),
        ("error_description", description.as_str()),
    ];
    if let Some(s) = &to.state {
        params.push(("state", s));
    }
    params.push(("iss", iss));
    redirect_to(&to.redirect_uri, &params)
}

/// What an authorization request that gets no consent page is answered.
fn authorize_error(error: AuthorizeError, iss: &str) -> Response {
    match error {
        AuthorizeError::Sealed => error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "The store is sealed. Unlock it on its home page, then try again.",
        ),
        AuthorizeError::UnknownClient => error_page(
            StatusCode::BAD_REQUEST,
            "The app or its redirect URI is not registered with this store.",
        ),
        AuthorizeError::Client(to) => redirect_error(&to, iss),
    }
}

/// Validates an authorization request and shows the owner the consent page.
#[utoipa::path(get, path = "/oauth/authorize", tag = "oauth",
    params(AuthorizeQuery),
    responses(
        (status = 200, description = "The consent page", body = String, content_type = "text/html"),
        (status = 303, description = "An error sent back to the registered redirect URI", headers(("Location" = String, description = "The client's redirect URI with `code` or `error`, `state` and `iss`"))),
        (status = 400, description = "Unknown client or unregistered redirect URI (never redirected)", body = String, content_type = "text/html"),
        (status = 429, description = "Too many authorization requests from this address", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "The store is sealed", body = String, content_type = "text/html"),
    ))]
pub async fn authorize(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(p) = state.authorize_limiter.take(peer.ip()) {
        return p.into_response();
    }
    let query = AuthorizeQuery::from_params(&Params::parse(query.unwrap_or_default().as_bytes()));
    match server(&state).authorize(&query, session_cookie(&headers)) {
        Ok(prompt) => consent_page(&prompt, None, StatusCode::OK),
        Err(e) => authorize_error(e, &issuer(&state, &headers)),
    }
}

/// What a consent decision that ends without a code is answered.
fn consent_error(error: ConsentError, iss: &str) -> Response {
    match error {
        ConsentError::MissingRequestId => error_page(StatusCode::BAD_REQUEST, "missing request id"),
        ConsentError::UnknownRequest => error_page(
            StatusCode::BAD_REQUEST,
            "This request expired or was already answered. Start again from the app.",
        ),
        ConsentError::Forged => error_page(
            StatusCode::FORBIDDEN,
            "The form did not come from this page (missing or wrong CSRF token).",
        ),
        ConsentError::Client(to) => redirect_error(&to, iss),
        ConsentError::AppRemoved => {
            error_page(StatusCode::BAD_REQUEST, "This app is no longer registered.")
        }
        ConsentError::SessionEnded => {
            error_page(StatusCode::FORBIDDEN, "Your session ended. Start again.")
        }
        ConsentError::WrongPassphrase(prompt) => {
            consent_page(&prompt, Some("Wrong passphrase."), StatusCode::UNAUTHORIZED)
        }
        ConsentError::TooManyAttempts(prompt) => consent_page(
            &prompt,
            Some("Too many attempts. Wait a moment and try again."),
            StatusCode::TOO_MANY_REQUESTS,
        ),
        ConsentError::StoreFailed => {
            error_page(StatusCode::INTERNAL_SERVER_ERROR, "The store failed.")
        }
        ConsentError::AlreadyAnswered => error_page(
            StatusCode::BAD_REQUEST,
            "This request was already answered.",
        ),
        ConsentError::Locked => error_page(StatusCode::SERVICE_UNAVAILABLE, "The store is locked."),
        ConsentError::NotStored => error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "The decision could not be stored.",
        ),
    }
}

/// The code back to the client; the owner session a passphrase opened
/// goes to the browser.
fn authorized_redirect(authorized: Authorized, iss: &str, secure_cookie: bool) -> Response {
    let mut params = vec![("code", authorized.code.as_str())];
    if let Some(s) = &authorized.state {
        params.push(("state", s));
    }
    params.push(("iss", iss));
    let mut response = redirect_to(&authorized.redirect_uri, &params);
    if let Some(v) = authorized
        .session
        .and_then(|s| session_cookie_header(s.0.as_str(), secure_cookie))
    {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// The owner's decision from the consent page.
#[utoipa::path(post, path = "/oauth/authorize", tag = "oauth",
    request_body(content = ConsentForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "The decision sent back to the client: `code` or `error=access_denied`", headers(("Location" = String, description = "The client's redirect URI with `code` or `error`, `state` and `iss`"))),
        (status = 400, description = "Unknown, expired or answered request", body = String, content_type = "text/html"),
        (status = 401, description = "Wrong passphrase: the page again", body = String, content_type = "text/html"),
        (status = 403, description = "Missing or wrong CSRF token, cross-origin form, or the session ended", body = String, content_type = "text/html"),
        (status = 415, description = "The body is not a form", body = String, content_type = "text/html"),
        (status = 413, description = "The form is larger than the server accepts", body = String, content_type = "text/html"),
        (status = 429, description = "Too many passphrase attempts", content(
            (ProblemDetails = "application/problem+json"),
            (String = "text/html"),
        )),
        (status = 500, description = "The store failed to check the passphrase", body = String, content_type = "text/html"),
        (status = 503, description = "The store is locked, or the decision could not be stored", body = String, content_type = "text/html"),
    ))]
pub async fn decide(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if !crate::oauth::wire::is_form(&headers) {
        return error_page(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send a form");
    }
    let body = match body {
        Ok(body) => body,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error_page(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.")
        }
        Err(_) => return error_page(StatusCode::BAD_REQUEST, "The form could not be read."),
    };
    let form = ConsentForm::from_params(&Params::parse(&body));
    let iss = issuer(&state, &headers);
    let server = server(&state);
    let answer = match server.answer(&form, same_origin(&headers)) {
        Ok(answer) => answer,
        Err(e) => return consent_error(e, &iss),
    };
    if answer.needs_passphrase() {
        if let Err(p) = state.passphrase_limiter.take(peer.ip()) {
            return p.into_response();
        }
    }
    match server
        .allow(answer, &form, session_cookie(&headers), Some(peer.ip()))
        .await
    {
        Ok(authorized) => authorized_redirect(authorized, &iss, state.tls),
        Err(e) => consent_error(e, &iss),
    }
}

/// An OAuth error response (RFC 6749 §5.2).
fn oauth_error(error: OAuthError) -> Response {
    let status = match error {
        OAuthError::InvalidClient => StatusCode::UNAUTHORIZED,
        OAuthError::TemporarilyUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    let mut response = (status, Json(ErrorResponse::from(error))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"hearth\""),
        );
    }
    response
}

/// The client's credentials from HTTP Basic or the form, one method per
/// request (RFC 6749 §2.3); `None` when they are malformed, repeated,
/// missing or contradict each other.
fn client_credentials(headers: &HeaderMap, form: &Params) -> Option<ClientCredentials> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, b64)| {
            let raw = STANDARD.decode(b64.trim()).map_err(|_| ())?;
            let text = String::from_utf8(raw).map_err(|_| ())?;
            let (id, secret) = text.split_once(':').ok_or(())?;
            let decode = |s: &str| {
                url::form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            Ok::<_, ()>((decode(id), decode(secret)))
        });
    let (Ok(body_id), Ok(body_secret)) = (form.get("client_id"), form.get("client_secret")) else {
        return None;
    };
    match basic {
        Some(Err(())) => None,
        Some(Ok(_)) if body_secret.is_some() => None,
        Some(Ok((id, _))) if body_id.is_some_and(|b| b != id) => None,
        Some(Ok((client_id, secret))) => Some(ClientCredentials {
            client_id,
            secret: Some(secret),
        }),
        None => Some(ClientCredentials {
            client_id: body_id?.to_string(),
            secret: body_secret.map(str::to_string),
        }),
    }
}

/// What the token and revocation endpoints check first, in order: the
/// per-address rate limit, the body, the lock state, the form encoding.
fn endpoint_form(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Params, Box<Response>> {
    if let Err(p) = state.token_limiter.take(peer.ip()) {
        return Err(Box::new(p.into_response()));
    }
    let body = body.map_err(|rejection| Box::new(body_error(rejection)))?;
    if let Err(u) = state.store.open_store() {
        return Err(Box::new(Problem::from(u).into_response()));
    }
    if !crate::oauth::wire::is_form(headers) {
        return Err(Box::new(oauth_error(OAuthError::InvalidRequest(
            "send a form",
        ))));
    }
    Ok(Params::parse(&body))
}

/// The answer to a token or revocation request whose body failed.
fn body_error(rejection: BytesRejection) -> Response {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        // axum's own answer would be `text/plain`.
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            crate::wire::ErrorCode::PayloadTooLarge,
            "the request body is larger than the server accepts",
        )
        .into_response()
    } else {
        oauth_error(OAuthError::InvalidRequest("the body could not be read"))
    }
}

/// Exchanges an authorization code, or rotates a refresh token, for tokens.
#[utoipa::path(post, path = "/oauth/token", tag = "oauth",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "A new access and refresh token", body = TokenResponse,
            headers(("Pragma" = String, description = "`no-cache`"))),
        (status = 400, description = "`invalid_request`, `invalid_grant` or `unsupported_grant_type`", body = ErrorResponse),
        (status = 401, description = "`invalid_client`: client authentication failed", body = ErrorResponse,
            headers(("WWW-Authenticate" = String, description = "`Basic realm=\"hearth\"`"))),
        (status = 413, description = "The body is larger than the server accepts", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "Too many token requests from this address", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "The store is not unlocked, or the token could not be stored", content(
            (ProblemDetails = "application/problem+json"),
            (ErrorResponse = "application/json"),
        )),
    ),
    security((), ("client" = [])))]
pub async fn token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let form = match endpoint_form(&state, peer, &headers, body) {
        Ok(form) => form,
        Err(refused) => return *refused,
    };
    let request = match TokenRequest::from_params(&form) {
        Ok(request) => request,
        Err(e) => return oauth_error(e),
    };
    let server = server(&state);
    let issued = match server.authenticate_client(client_credentials(&headers, &form)) {
        Ok(client) => server.token(&client, &request).await,
        Err(e) => Err(e),
    };
    match issued {
        Ok(tokens) => {
            let mut response = Json(TokenResponse::from(tokens)).into_response();
            response
                .headers_mut()
                .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            response
        }
        Err(e) => oauth_error(e),
    }
}

impl From<IssuedTokens> for TokenResponse {
    fn from(tokens: IssuedTokens) -> TokenResponse {
        TokenResponse {
            access_token: tokens.access_token,
            token_type: "Bearer".into(),
            expires_in: ACCESS_TTL.as_secs(),
            refresh_token: tokens.refresh_token,
            scope: tokens.scope.join(" "),
        }
    }
}

/// Revokes a token (RFC 7009): always `200` for an authenticated client.
#[utoipa::path(post, path = "/oauth/revoke", tag = "oauth",
    request_body(content = RevokeRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or the token was unknown, expired or another client's"),
        (status = 400, description = "`invalid_request`: not a form, or no `token`", body = ErrorResponse),
        (status = 401, description = "`invalid_client`: client authentication failed", body = ErrorResponse,
            headers(("WWW-Authenticate" = String, description = "`Basic realm=\"hearth\"`"))),
        (status = 413, description = "The body is larger than the server accepts", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests from this address", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "The store is not unlocked, or the revocation could not be stored", content(
            (ProblemDetails = "application/problem+json"),
            (ErrorResponse = "application/json"),
        )),
    ),
    security((), ("client" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let form = match endpoint_form(&state, peer, &headers, body) {
        Ok(form) => form,
        Err(refused) => return *refused,
    };
    let request = RevokeRequest::from_params(&form);
    let server = server(&state);
    let revoked = match server.authenticate_client(client_credentials(&headers, &form)) {
        Ok(client) => server.revoke(&client, request.token.as_deref()).await,
        Err(e) => Err(e),
    };
    match revoked {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => oauth_error(e),
    }
}
