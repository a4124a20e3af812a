//! What every owner page shares: the owner signed in with the session
//! cookie, the token that binds a form to that session, and the pages
//! that say why something cannot be shown.

use std::time::Duration;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::render;
use crate::api::auth::{session_cookie, OwnerAccess};
use crate::api::AppState;
use crate::oauth::wire::Params;

/// The owner, signed in with the session cookie: the token that proves a
/// form came from one of the owner's pages is derived from it.
#[derive(Clone)]
pub struct OwnerPage {
    pub access: OwnerAccess,
    pub frame: OwnerFrame,
}

/// What the layout of every owner page shows around its content: the lock
/// button's form token, and when Hearth locks itself.
#[derive(Clone)]
pub struct OwnerFrame {
    pub csrf_token: String,
    pub idle_lock: Option<IdleLock>,
}

/// How long Hearth stays unlocked without the owner: in words for the
/// notice, in milliseconds for the script that warns before it acts and
/// clears the page once it has.
#[derive(Clone)]
pub struct IdleLock {
    pub text: String,
    pub ms: u128,
}

/// `90 s` → `2 minutes`; under a minute in seconds.
fn duration_text(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..=59 => format!("{secs} second{}", if secs == 1 { "" } else { "s" }),
        _ => {
            let minutes = secs.div_ceil(60);
            format!("{minutes} minute{}", if minutes == 1 { "" } else { "s" })
        }
    }
}

/// Bound to one session and useless without it: a page elsewhere can
/// neither read the cookie nor compute this.
fn csrf_token(session: &str) -> String {
    hex::encode(
        Sha256::new()
            .chain_update(b"hearth/page-form/v1\0")
            .chain_update(session)
            .finalize(),
    )
}

impl FromRequestParts<AppState> for OwnerPage {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(session) = session_cookie(&parts.headers).map(str::to_owned) else {
            return Err(sign_in_first());
        };
        let access = OwnerAccess::from_request_parts(parts, state)
            .await
            .map_err(|p| match p.status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => sign_in_first(),
                _ => message_page(p.status, "Hearth cannot show this page now", &p.detail),
            })?;
        let idle_lock = state.store.idle_lock().map(|d| IdleLock {
            text: duration_text(d),
            ms: d.as_millis(),
        });
        Ok(OwnerPage {
            access,
            frame: OwnerFrame {
                csrf_token: csrf_token(&session),
                idle_lock,
            },
        })
    }
}

/// Why a form was refused before anything was done.
pub enum FormRefused {
    NotAForm,
    ForeignToken,
}

impl IntoResponse for FormRefused {
    fn into_response(self) -> Response {
        match self {
            FormRefused::NotAForm => message_page(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "This form cannot be read",
                "Send the form from Hearth's page.",
            ),
            FormRefused::ForeignToken => message_page(
                StatusCode::FORBIDDEN,
                "This form did not come from your Hearth page",
                "Open the page again and send the form from there.",
            ),
        }
    }
}

/// A form posted from one of the owner's pages: the owner signed in, and
/// the fields of a form whose token matched the session's. Every form
/// handler takes it, so none can forget the check.
pub struct OwnerForm {
    pub page: OwnerPage,
    pub params: Params,
}

impl FromRequest<AppState> for OwnerForm {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let page = OwnerPage::from_request_parts(&mut parts, state).await?;
        let headers = parts.headers.clone();
        let body = Bytes::from_request(Request::from_parts(parts, body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        let params = checked_form(&page, &headers, &body).map_err(IntoResponse::into_response)?;
        Ok(OwnerForm { page, params })
    }
}

/// A form's fields, once its token matched the session's.
fn checked_form(page: &OwnerPage, headers: &HeaderMap, body: &[u8]) -> Result<Params, FormRefused> {
    if !crate::oauth::wire::is_form(headers) {
        return Err(FormRefused::NotAForm);
    }
    let params = Params::parse(body);
    let sent = params.get("csrf_token").ok().flatten().unwrap_or("");
    if !bool::from(sent.as_bytes().ct_eq(page.frame.csrf_token.as_bytes())) {
        return Err(FormRefused::ForeignToken);
    }
    Ok(params)
}

pub fn urlencoding(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    title: &'a str,
    message: &'a str,
    sign_in: bool,
}

pub fn message_page(status: StatusCode, title: &str, message: &str) -> Response {
    render(
        status,
        &MessagePage {
            title,
            message,
            sign_in: false,
        },
    )
}

pub fn sign_in_first() -> Response {
    render(
        StatusCode::UNAUTHORIZED,
        &MessagePage {
            title: "Unlock Hearth first",
            message: "This page is for the owner. Unlock Hearth on its home page, then come back.",
            sign_in: true,
        },
    )
}

/// A handler's query parameters from the query string a page composed, as
/// the API would take them from a request.
pub fn api_query<T: serde::de::DeserializeOwned>(
    query: &str,
) -> Result<T, crate::api::problem::Problem> {
    use crate::api::problem::Problem;
    let uri: axum::http::Uri = format!("/?{query}")
        .parse()
        .map_err(|_| Problem::internal())?;
    axum::extract::Query::<T>::try_from_uri(&uri)
        .map(|axum::extract::Query(q)| q)
        .map_err(|e| Problem::invalid(None, "query", e.body_text()))
}
