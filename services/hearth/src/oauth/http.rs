//! The authorization server's endpoints: metadata (RFC 8414), the consent
//! page and its decision, the token endpoint and revocation (RFC 7009).

use axum::body::Bytes;
use std::net::SocketAddr;

use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::{challenge_is_valid, pkce_matches, redirect, Code, Pending};
use super::{ACCESS_TTL, CODE_TTL, REFRESH_TTL};
use crate::api::auth::{same_origin, session_cookie, session_cookie_header};
use crate::api::openapi;
use crate::api::problem::Problem;
use crate::api::AppState;
use crate::apps::{digest, new_secret};
use crate::catalogue;
use crate::crypto;
use crate::lock::LockError;
use crate::log::event::{AppKind, AppRecord, Event, GrantChange, TokenKind, TokenRecord};
use crate::log::writer::Write;

const CONSENT_SCRIPT: &str = include_str!("consent.js");
const CONSENT_STYLE: &str = include_str!("consent.css");

/// The issuer: the configured public URL, else what the client called us by.
fn issuer(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.public_url {
        return url.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// Authorization server metadata (RFC 8414).
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "oauth",
    responses((status = 200, body = openapi::ServerMetadata)))]
pub async fn metadata(State(state): State<AppState>, headers: HeaderMap) -> Json<Value> {
    let iss = issuer(&state, &headers);
    let mut scopes: Vec<String> = Vec::new();
    for t in catalogue::all() {
        scopes.push(format!("read:{}", t.id));
        scopes.push(format!("write:{}", t.id));
    }
    scopes.push("research:export".into());
    Json(json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/oauth/authorize"),
        "token_endpoint": format!("{iss}/oauth/token"),
        "revocation_endpoint": format!("{iss}/oauth/revoke"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "scopes_supported": scopes,
        "authorization_response_iss_parameter_supported": true,
    }))
}

/// Parameters of a query string or form; any name given twice is refused
/// (RFC 6749 §3.1, §3.2).
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(bytes: &[u8]) -> Params {
        Params(
            url::form_urlencoded::parse(bytes)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The single value of `name`; `Err` if it is repeated.
    fn get(&self, name: &str) -> Result<Option<&str>, ()> {
        let mut found = None;
        for (k, v) in &self.0 {
            if k == name {
                if found.is_some() {
                    return Err(());
                }
                found = Some(v.as_str());
            }
        }
        Ok(found)
    }

    fn one(&self, name: &str) -> Option<&str> {
        self.get(name).ok().flatten().filter(|v| !v.is_empty())
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><link rel=\"stylesheet\" href=\"/static/consent.css\"></head>\
         <body><main>{body}</main><script src=\"/static/consent.js\"></script></body></html>",
        escape(title)
    );
    (status, Html(html)).into_response()
}

/// An error shown to the owner and never sent back to the client: used
/// whenever the client or redirect URI cannot be trusted (no open redirect).
fn error_page(status: StatusCode, message: &str) -> Response {
    page(
        status,
        "Authorization failed",
        &format!(
            "<h1>This request cannot be completed</h1><p id=\"error\">{}</p>",
            escape(message)
        ),
    )
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

fn redirect_error(uri: &str, state: Option<&str>, iss: &str, error: &str, desc: &str) -> Response {
    let mut params = vec![("error", error), ("error_description", desc)];
    if let Some(s) = state {
        params.push(("state", s));
    }
    params.push(("iss", iss));
    redirect_to(uri, &params)
}

/// Checks requested scopes; `Err` is the OAuth error description.
fn parse_scope(scope: &str, kind: AppKind) -> Result<Vec<String>, &'static str> {
    let mut out: Vec<String> = Vec::new();
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        let ok = match s.split_once(':') {
            Some(("read" | "write", ty)) => catalogue::lookup(ty).is_some(),
            Some(("research", "export")) => kind == AppKind::Research,
            // Owner access is the passphrase's alone; no app may ask for it.
            _ => false,
        };
        if !ok {
            return Err("a requested scope is unknown or not available to this client");
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    if out.is_empty() {
        return Err("request at least one scope");
    }
    Ok(out)
}

fn display_name(type_id: &str) -> String {
    let spaced = type_id.replace('_', " ");
    let mut chars = spaced.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().collect::<String>() + chars.as_str(),
        None => spaced,
    }
}

/// The form-action sources the consent page needs: itself, and the
/// client's redirect origin, which the browser checks on the redirect too.
fn consent_csp(redirect_uri: &str) -> String {
    let target = match url::Url::parse(redirect_uri) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => u.origin().ascii_serialization(),
        Ok(u) => format!("{}:", u.scheme()),
        Err(_) => String::new(),
    };
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; form-action 'self' {target}; \
         frame-ancestors 'none'; base-uri 'none'"
    )
}

fn consent_page(
    app: &AppRecord,
    pending: &Pending,
    request_id: &str,
    ask_passphrase: bool,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let name = escape(&app.name);
    let section = |dir: &str, title: &str| -> String {
        let items: String = pending
            .scope
            .iter()
            .filter_map(|s| s.strip_prefix(&format!("{dir}:")))
            .map(|ty| {
                let field = escape(&format!("{dir}:{ty}"));
                format!(
                    "<li><label><input type=\"checkbox\" role=\"switch\" name=\"{field}\" \
                     id=\"{field}\"> {}</label></li>",
                    escape(&display_name(ty))
                )
            })
            .collect();
        if items.is_empty() {
            String::new()
        } else {
            format!("<section id=\"{dir}\"><h2>{title}</h2><ul>{items}</ul></section>")
        }
    };
    let research = if pending.scope.iter().any(|s| s == "research:export") {
        "<p class=\"research\">This is a research app: it asks to export de-identified data \
         under a study consent you create separately.</p>"
    } else {
        ""
    };
    let passphrase = if ask_passphrase {
        "<p><label>Store passphrase <input type=\"password\" name=\"passphrase\" \
         id=\"passphrase\" autocomplete=\"current-password\"></label></p>"
    } else {
        ""
    };
    let error = error
        .map(|e| format!("<p id=\"error\" class=\"error\">{}</p>", escape(e)))
        .unwrap_or_default();
    let body = format!(
        "<h1>“{name}” would like to access your health data</h1>\
         <p class=\"purpose\" id=\"purpose\">{purpose}</p>\
         <p><a id=\"privacy\" href=\"{privacy}\" rel=\"noopener noreferrer\" target=\"_blank\">\
         Privacy policy of {name}</a></p>{research}{error}\
         <form method=\"post\" action=\"/oauth/authorize\">\
         <input type=\"hidden\" name=\"request_id\" value=\"{rid}\">\
         <input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">\
         <p><button type=\"button\" id=\"all-on\">Turn all on</button></p>\
         {write}{read}{passphrase}\
         <p><button type=\"submit\" name=\"decision\" value=\"deny\" id=\"deny\">Don’t allow</button> \
         <button type=\"submit\" name=\"decision\" value=\"allow\" id=\"allow\">Allow</button></p>\
         </form>",
        purpose = escape(&app.purpose),
        privacy = escape(&app.privacy_policy_url),
        rid = escape(request_id),
        csrf = escape(&pending.csrf),
        write = section("write", &format!("Allow “{name}” to write")),
        read = section("read", &format!("Allow “{name}” to read")),
    );
    let mut response = page(status, &format!("Allow {} access?", app.name), &body);
    if let Ok(v) = HeaderValue::from_str(&consent_csp(&pending.redirect_uri)) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
    // With `no-referrer` browsers send `Origin: null` on the form post, and
    // the decision could not be told from a cross-site one; `same-origin`
    // still sends nothing to any other site, the client included.
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// Validates an authorization request and shows the owner the consent page.
#[utoipa::path(get, path = "/oauth/authorize", tag = "oauth",
    params(openapi::AuthorizeQuery),
    responses(
        (status = 200, description = "The consent page", body = String, content_type = "text/html"),
        (status = 303, description = "An error sent back to the registered redirect URI", headers(("Location" = String, description = "The client's redirect URI with `code` or `error`, `state` and `iss`"))),
        (status = 400, description = "Unknown client or unregistered redirect URI (never redirected)", body = String, content_type = "text/html"),
        (status = 429, description = "Too many authorization requests from this address", body = openapi::ProblemDetails, content_type = "application/problem+json"),
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
    if !state.store.registry_loaded() {
        return error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "The store is sealed. Unlock it on its home page, then try again.",
        );
    }
    let q = Params::parse(query.unwrap_or_default().as_bytes());
    let invalid_client = || {
        // Unknown client and unregistered redirect URI look the same: no
        // way to probe which client ids exist.
        error_page(
            StatusCode::BAD_REQUEST,
            "The app or its redirect URI is not registered with this store.",
        )
    };
    let (Some(client_id), Some(redirect_uri)) = (q.one("client_id"), q.one("redirect_uri")) else {
        return invalid_client();
    };
    let app = match state.store.apps().read().app(client_id) {
        Some(a) => a.record.clone(),
        None => return invalid_client(),
    };
    if !redirect::matches(&app.redirect_uris, redirect_uri) {
        return invalid_client();
    }
    // From here on errors go back to the (now trusted) redirect URI.
    let iss = issuer(&state, &headers);
    let st = match q.get("state") {
        Ok(s) => s,
        Err(()) => {
            return redirect_error(
                redirect_uri,
                None,
                &iss,
                "invalid_request",
                "repeated state",
            )
        }
    };
    let fail = |error: &str, desc: &str| redirect_error(redirect_uri, st, &iss, error, desc);
    for name in [
        "response_type",
        "scope",
        "code_challenge",
        "code_challenge_method",
        "client_id",
        "redirect_uri",
    ] {
        if q.get(name).is_err() {
            return fail("invalid_request", "a parameter is repeated");
        }
    }
    if q.one("response_type") != Some("code") {
        return fail(
            "unsupported_response_type",
            "only the authorization code flow is supported",
        );
    }
    let Some(challenge) = q.one("code_challenge") else {
        return fail("invalid_request", "PKCE is required: send code_challenge");
    };
    if q.one("code_challenge_method") != Some("S256") || !challenge_is_valid(challenge) {
        return fail(
            "invalid_request",
            "PKCE with code_challenge_method=S256 is required",
        );
    }
    let scope = match parse_scope(q.one("scope").unwrap_or(""), app.kind) {
        Ok(s) => s,
        Err(e) => return fail("invalid_scope", e),
    };
    let session = session_cookie(&headers)
        .filter(|t| state.store.is_owner_session(t))
        .map(digest);
    let now = state.store.apps().clock.now_us();
    let pending = Pending {
        client_id: app.app_id.clone(),
        redirect_uri: redirect_uri.to_string(),
        state: st.map(str::to_string),
        challenge: challenge.to_string(),
        scope,
        csrf: URL_SAFE_NO_PAD.encode(crypto::random_bytes::<32>()),
        session,
        created_us: now,
    };
    let request_id = URL_SAFE_NO_PAD.encode(crypto::random_bytes::<18>());
    let response = consent_page(
        &app,
        &pending,
        &request_id,
        session.is_none(),
        None,
        StatusCode::OK,
    );
    state.oauth.add_pending(request_id, pending, now);
    response
}

/// The answer to a body over the size limit (axum's own is `text/plain`).
fn too_large() -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "the request body is larger than the server accepts",
    )
}

/// The answer to a token or revocation request whose body failed.
fn body_error(rejection: BytesRejection) -> Response {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large().into_response()
    } else {
        oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body could not be read",
        )
    }
}

fn form_ok(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// The owner's decision from the consent page.
#[utoipa::path(post, path = "/oauth/authorize", tag = "oauth",
    request_body(content = openapi::ConsentForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 303, description = "The decision sent back to the client: `code` or `error=access_denied`", headers(("Location" = String, description = "The client's redirect URI with `code` or `error`, `state` and `iss`"))),
        (status = 400, description = "Unknown, expired or answered request", body = String, content_type = "text/html"),
        (status = 401, description = "Wrong passphrase: the page again", body = String, content_type = "text/html"),
        (status = 403, description = "Missing or wrong CSRF token, cross-origin form, or the session ended", body = String, content_type = "text/html"),
        (status = 415, description = "The body is not a form", body = String, content_type = "text/html"),
        (status = 413, description = "The form is larger than the server accepts", body = String, content_type = "text/html"),
        (status = 429, description = "Too many passphrase attempts", content(
            (openapi::ProblemDetails = "application/problem+json"),
            (String = "text/html"),
        )),
        (status = 500, description = "The store failed to check the passphrase", body = String, content_type = "text/html"),
        (status = 503, description = "The store is locked, or the decision could not be stored", body = String, content_type = "text/html"),
    ))]
pub async fn decide(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if !form_ok(&headers) {
        return error_page(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send a form");
    }
    let body = match body {
        Ok(body) => body,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error_page(StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.")
        }
        Err(_) => return error_page(StatusCode::BAD_REQUEST, "The form could not be read."),
    };
    let form = Params::parse(&body);
    let now = state.store.apps().clock.now_us();
    let Some(request_id) = form.one("request_id") else {
        return error_page(StatusCode::BAD_REQUEST, "missing request id");
    };
    let Some(pending) = state.oauth.pending(request_id, now) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This request expired or was already answered. Start again from the app.",
        );
    };
    let csrf_ok = form
        .one("csrf_token")
        .is_some_and(|t| bool::from(t.as_bytes().ct_eq(pending.csrf.as_bytes())));
    if !csrf_ok || !same_origin(&headers) {
        state.oauth.take_pending(request_id);
        return error_page(
            StatusCode::FORBIDDEN,
            "The form did not come from this page (missing or wrong CSRF token).",
        );
    }
    let iss = issuer(&state, &headers);
    let st = pending.state.as_deref();
    if form.one("decision") != Some("allow") {
        state.oauth.take_pending(request_id);
        return redirect_error(
            &pending.redirect_uri,
            st,
            &iss,
            "access_denied",
            "the owner did not allow access",
        );
    }
    let Some(app) = state
        .store
        .apps()
        .read()
        .app(&pending.client_id)
        .map(|a| a.record.clone())
    else {
        state.oauth.take_pending(request_id);
        return error_page(StatusCode::BAD_REQUEST, "This app is no longer registered.");
    };
    // The owner: the session the page was shown to, or the passphrase now.
    let mut new_session = None;
    match pending.session {
        Some(expected) => {
            let same = session_cookie(&headers).is_some_and(|t| {
                state.store.is_owner_session(t) && bool::from(digest(t).ct_eq(&expected))
            });
            if !same {
                state.oauth.take_pending(request_id);
                return error_page(StatusCode::FORBIDDEN, "Your session ended. Start again.");
            }
        }
        None => {
            if let Err(p) = state.passphrase_limiter.take() {
                return p.into_response();
            }
            let passphrase = form.one("passphrase").unwrap_or("");
            match state.store.unlock(passphrase).await {
                Ok(session) => new_session = Some(session),
                Err(LockError::WrongPassphrase) => {
                    return consent_page(
                        &app,
                        &pending,
                        request_id,
                        true,
                        Some("Wrong passphrase."),
                        StatusCode::UNAUTHORIZED,
                    );
                }
                Err(LockError::BackOff { .. }) => {
                    return consent_page(
                        &app,
                        &pending,
                        request_id,
                        true,
                        Some("Too many attempts. Wait a moment and try again."),
                        StatusCode::TOO_MANY_REQUESTS,
                    );
                }
                Err(e) => {
                    tracing::error!(error = %e, "owner login on the consent page failed");
                    return error_page(StatusCode::INTERNAL_SERVER_ERROR, "The store failed.");
                }
            }
        }
    }
    if state.oauth.take_pending(request_id).is_none() {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This request was already answered.",
        );
    }
    let open = match state.store.open_store() {
        Ok(o) => o,
        Err(_) => {
            return error_page(StatusCode::SERVICE_UNAVAILABLE, "The store is locked.");
        }
    };
    // One decision per requested type and direction, exactly as switched.
    let changes: Vec<GrantChange> = pending
        .scope
        .iter()
        .filter_map(|s| {
            let (dir, ty) = s.split_once(':')?;
            let write = match dir {
                "read" => false,
                "write" => true,
                _ => return None,
            };
            Some(GrantChange {
                type_id: ty.to_string(),
                write,
                allowed: form.has(s),
            })
        })
        .collect();
    if !changes.is_empty() {
        let logged = open
            .writer
            .write(Write::Registry(Event::GrantsChanged {
                app_id: app.app_id.clone(),
                changes,
            }))
            .await;
        if logged.is_err() {
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "The decision could not be stored.",
            );
        }
    }
    let code = new_secret("hac_");
    state.oauth.add_code(
        digest(&code),
        Code {
            client_id: app.app_id.clone(),
            redirect_uri: pending.redirect_uri.clone(),
            challenge: pending.challenge.clone(),
            scope: pending.scope.clone(),
            expires_us: now + CODE_TTL.as_micros() as i64,
            family: crypto::random_bytes(),
            redeemed: false,
        },
        now,
    );
    let mut params = vec![("code", code.as_str())];
    if let Some(s) = st {
        params.push(("state", s));
    }
    params.push(("iss", &iss));
    let mut response = redirect_to(&pending.redirect_uri, &params);
    if let Some(v) = new_session.and_then(|s| session_cookie_header(s.0.as_str(), state.tls)) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// An OAuth error response (RFC 6749 §5.2).
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut response = (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"hearth\""),
        );
    }
    response
}

fn invalid_client() -> Response {
    oauth_error(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "client authentication failed",
    )
}

fn invalid_grant(description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

/// Authenticates the client of a token or revocation request.
fn authenticate_client(state: &AppState, headers: &HeaderMap, form: &Params) -> Option<AppRecord> {
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
    let (client_id, secret) = match basic {
        Some(Err(())) => return None,
        // One authentication method per request (RFC 6749 §2.3).
        Some(Ok(_)) if body_secret.is_some() => return None,
        Some(Ok((id, secret))) => {
            if body_id.is_some_and(|b| b != id) {
                return None;
            }
            (id, Some(secret))
        }
        None => (body_id?.to_string(), body_secret.map(str::to_string)),
    };
    let app = state
        .store
        .apps()
        .read()
        .app(&client_id)
        .map(|a| a.record.clone())?;
    match (&app.secret_hash, secret) {
        (Some(hash), Some(secret)) if bool::from(digest(&secret).ct_eq(hash)) => Some(app),
        (None, None) => Some(app),
        _ => None,
    }
}

/// Mints an access and a refresh token in `family` and logs them.
async fn issue(
    state: &AppState,
    app: &AppRecord,
    scope: &[String],
    family: [u8; 16],
    spent: Option<[u8; 32]>,
) -> Response {
    let Ok(open) = state.store.open_store() else {
        return oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the store is locked",
        );
    };
    let now = state.store.apps().clock.now_us();
    let access = new_secret("hat_");
    let refresh = new_secret("hrt_");
    let record = |secret: &str, kind, ttl: std::time::Duration| TokenRecord {
        hash: digest(secret),
        id: crypto::random_bytes(),
        app_id: app.app_id.clone(),
        kind,
        family,
        scope: scope.to_vec(),
        name: None,
        issued_us: now,
        expires_us: Some(now + ttl.as_micros() as i64),
    };
    let tokens = vec![
        record(&access, TokenKind::Access, ACCESS_TTL),
        record(&refresh, TokenKind::Refresh, REFRESH_TTL),
    ];
    let logged = open
        .writer
        .write(Write::Registry(Event::TokensIssued { tokens, spent }))
        .await;
    if logged.is_err() {
        return oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the token could not be stored",
        );
    }
    let mut response = Json(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ACCESS_TTL.as_secs(),
        "refresh_token": refresh,
        "scope": scope.join(" "),
    }))
    .into_response();
    response
        .headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

async fn revoke_families(state: &AppState, families: Vec<[u8; 16]>) {
    if let Ok(open) = state.store.open_store() {
        let _ = open
            .writer
            .write(Write::Registry(Event::TokensRevoked {
                hashes: vec![],
                families,
            }))
            .await;
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
    if !form_ok(headers) {
        return Err(Box::new(oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "send a form",
        )));
    }
    Ok(Params::parse(&body))
}

/// Exchanges an authorization code, or rotates a refresh token, for tokens.
#[utoipa::path(post, path = "/oauth/token", tag = "oauth",
    request_body(content = openapi::TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "A new access and refresh token", body = openapi::TokenResponse,
            headers(("Pragma" = String, description = "`no-cache`"))),
        (status = 400, description = "`invalid_request`, `invalid_grant` or `unsupported_grant_type`", body = openapi::OAuthError),
        (status = 401, description = "`invalid_client`: client authentication failed", body = openapi::OAuthError,
            headers(("WWW-Authenticate" = String, description = "`Basic realm=\"hearth\"`"))),
        (status = 413, description = "The body is larger than the server accepts", body = openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "Too many token requests from this address", body = openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "The store is not unlocked, or the token could not be stored", content(
            (openapi::ProblemDetails = "application/problem+json"),
            (openapi::OAuthError = "application/json"),
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
    for name in [
        "grant_type",
        "code",
        "redirect_uri",
        "code_verifier",
        "refresh_token",
        "scope",
    ] {
        if form.get(name).is_err() {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "a parameter is repeated",
            );
        }
    }
    let Some(app) = authenticate_client(&state, &headers, &form) else {
        return invalid_client();
    };
    let apps = state.store.apps().clone();
    let _gate = apps.gate.lock().await;
    let now = apps.clock.now_us();
    match form.one("grant_type") {
        Some("authorization_code") => {
            let Some(code) = form.one("code") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "code is required",
                );
            };
            let hash = digest(code);
            let Some(c) = state.oauth.code(&hash) else {
                return invalid_grant("unknown or expired code");
            };
            if c.redeemed {
                // A replayed code: whoever redeemed it first may be the
                // thief, so everything issued from it dies (RFC 9700 §4.5).
                revoke_families(&state, vec![c.family]).await;
                return invalid_grant("this code was already used");
            }
            if c.expires_us <= now {
                return invalid_grant("unknown or expired code");
            }
            if c.client_id != app.app_id {
                return invalid_grant("the code was issued to another client");
            }
            if form.one("redirect_uri") != Some(c.redirect_uri.as_str()) {
                return invalid_grant("redirect_uri differs from the authorization request");
            }
            let verifier = form.one("code_verifier").unwrap_or("");
            if !pkce_matches(verifier, &c.challenge) {
                return invalid_grant("code_verifier does not match the code challenge");
            }
            state.oauth.mark_redeemed(&hash);
            issue(&state, &app, &c.scope, c.family, None).await
        }
        Some("refresh_token") => {
            let Some(refresh) = form.one("refresh_token") else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "refresh_token is required",
                );
            };
            let hash = digest(refresh);
            let found = apps
                .read()
                .token(&hash, now)
                .filter(|t| t.kind == TokenKind::Refresh && t.app_id == app.app_id)
                .cloned();
            if let Some(t) = found {
                return issue(&state, &app, &t.scope, t.family, Some(hash)).await;
            }
            let spent = apps.read().spent_family(&hash);
            if let Some(family) = spent {
                // Reuse of a rotated refresh token: revoke the whole grant.
                revoke_families(&state, vec![family]).await;
            }
            invalid_grant("unknown, expired or already used refresh token")
        }
        Some(_) => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "use authorization_code or refresh_token",
        ),
        None => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is required",
        ),
    }
}

/// Revokes a token (RFC 7009): always `200` for an authenticated client.
#[utoipa::path(post, path = "/oauth/revoke", tag = "oauth",
    request_body(content = openapi::RevokeRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Revoked, or the token was unknown, expired or another client's"),
        (status = 400, description = "`invalid_request`: not a form, or no `token`", body = openapi::OAuthError),
        (status = 401, description = "`invalid_client`: client authentication failed", body = openapi::OAuthError,
            headers(("WWW-Authenticate" = String, description = "`Basic realm=\"hearth\"`"))),
        (status = 413, description = "The body is larger than the server accepts", body = openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests from this address", body = openapi::ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "The store is not unlocked, or the revocation could not be stored", content(
            (openapi::ProblemDetails = "application/problem+json"),
            (openapi::OAuthError = "application/json"),
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
    let Some(app) = authenticate_client(&state, &headers, &form) else {
        return invalid_client();
    };
    let Ok(Some(token)) = form.get("token") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "token is required",
        );
    };
    let apps = state.store.apps().clone();
    let _gate = apps.gate.lock().await;
    let hash = digest(token);
    let found = apps
        .read()
        .token(&hash, apps.clock.now_us())
        .filter(|t| t.app_id == app.app_id)
        .cloned();
    if let (Some(t), Ok(open)) = (found, state.store.open_store()) {
        let event = match t.kind {
            // A refresh token stands for the grant: all of it goes.
            TokenKind::Refresh => Event::TokensRevoked {
                hashes: vec![],
                families: vec![t.family],
            },
            _ => Event::TokensRevoked {
                hashes: vec![hash],
                families: vec![],
            },
        };
        if open.writer.write(Write::Registry(event)).await.is_err() {
            return oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the revocation could not be stored",
            );
        }
    }
    StatusCode::OK.into_response()
}

pub async fn consent_script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        CONSENT_SCRIPT,
    )
        .into_response()
}

pub async fn consent_style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        CONSENT_STYLE,
    )
        .into_response()
}
