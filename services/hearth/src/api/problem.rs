//! `application/problem+json` errors (RFC 9457) with a stable `code`, and the
//! JSON extractor that turns every malformed body into one.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::lock::Unavailable;
pub use crate::wire::{ErrorCode, FieldError, ProblemDetails};

#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub detail: String,
    pub errors: Vec<FieldError>,
    pub retry_after_secs: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, code: ErrorCode, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after_secs: None,
        }
    }

    pub fn with_code(self, code: ErrorCode) -> Problem {
        Problem { code, ..self }
    }

    pub fn bad_request(code: ErrorCode, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn invalid(index: Option<usize>, field: &str, message: impl Into<String>) -> Problem {
        let message = message.into();
        let at = match index {
            Some(i) => format!("sample {i}, field `{field}`: "),
            None => format!("field `{field}`: "),
        };
        Problem {
            errors: vec![FieldError {
                index,
                field: field.to_string(),
                message: message.clone(),
            }],
            ..Problem::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidInput,
                format!("{at}{message}"),
            )
        }
    }

    pub fn not_found() -> Problem {
        Problem::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no such resource",
        )
    }

    pub fn unauthenticated() -> Problem {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthenticated,
            "a valid bearer token or owner session is required",
        )
    }

    pub fn owner_only() -> Problem {
        Problem::new(
            StatusCode::FORBIDDEN,
            ErrorCode::OwnerOnly,
            "only the store's owner may do this",
        )
    }

    pub fn internal() -> Problem {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::InternalError,
            "the server could not complete the request",
        )
    }
}

impl From<Unavailable> for Problem {
    fn from(u: Unavailable) -> Problem {
        let (code, detail) = match u {
            Unavailable::Uninitialised => (
                ErrorCode::StoreUninitialised,
                "the store has not been set up; use the setup code printed on the server console",
            ),
            Unavailable::Sealed => (
                ErrorCode::StoreSealed,
                "the store is sealed until the owner unlocks it",
            ),
            Unavailable::Locked => (ErrorCode::StoreLocked, "the store is locked"),
        };
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, code, detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = ProblemDetails {
            kind: format!("https://hearth.invalid/problems/{}", self.code.as_str()),
            title: self.status.canonical_reason().unwrap_or("Error"),
            status: self.status.as_u16(),
            code: self.code,
            detail: self.detail,
            errors: self.errors,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// The raw body of a JSON request: the media type is checked and the size
/// limit applied, parsing is left to the handler (which may borrow from it).
pub struct JsonBody(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // Requiring the JSON media type also keeps cross-site HTML forms out.
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
                "send the body as application/json",
            ));
        }
        match axum::body::Bytes::from_request(req, state).await {
            Ok(bytes) => Ok(JsonBody(bytes)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::PayloadTooLarge,
                    "the request body is larger than the server accepts",
                ))
            }
            Err(rejection) => Err(Problem::bad_request(
                ErrorCode::UnreadableBody,
                rejection.body_text(),
            )),
        }
    }
}

/// A JSON body parsed into `T`; every failure is a problem naming the field.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let JsonBody(bytes) = JsonBody::from_request(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

pub fn parse_json<'de, T: serde::Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, Problem> {
    let malformed = |e: serde_json::Error| {
        Problem::bad_request(
            ErrorCode::MalformedJson,
            format!("the body is not valid JSON: {e}"),
        )
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(value) => {
            de.end().map_err(malformed)?;
            Ok(value)
        }
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                Err(malformed(inner))
            } else {
                // `samples[3].value` names sample 3's `value`.
                let (index, field) = match path
                    .split_once('[')
                    .and_then(|(_, rest)| rest.split_once("]."))
                {
                    Some((i, field)) => (i.parse().ok(), field.to_string()),
                    None if path == "." => (None, "body".to_string()),
                    None => (None, path),
                };
                Err(Problem::invalid(index, &field, inner.to_string()))
            }
        }
    }
}

/// Path parameters whose failures (say, a segment that is not UTF-8) are
/// problems rather than axum's `text/plain`.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(|e| Problem::bad_request(ErrorCode::InvalidPath, e.body_text()))
    }
}

impl From<crate::samples::SampleError> for Problem {
    fn from(e: crate::samples::SampleError) -> Problem {
        match e.code {
            ErrorCode::TooManySamples => {
                Problem::new(StatusCode::PAYLOAD_TOO_LARGE, e.code, e.message)
            }
            code => Problem::invalid(e.index, &e.field, e.message).with_code(code),
        }
    }
}

impl From<crate::policy::WriteDenied> for Problem {
    fn from(e: crate::policy::WriteDenied) -> Problem {
        Problem::new(
            StatusCode::FORBIDDEN,
            ErrorCode::WriteNotAuthorized,
            e.to_string(),
        )
    }
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
    Unauthenticated(#[to_schema] ProblemDetails),
    /// The request took too long.
    #[response(status = 408)]
    Timeout,
    /// The store is uninitialised, sealed or locked, or the server is at its
    /// limit of concurrent requests (`overloaded`, with `Retry-After`).
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(#[to_schema] ProblemDetails),
}

/// Errors of endpoints that take a JSON body.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum BodyErrors {
    /// Body too large, or too many samples.
    #[response(status = 413, content_type = "application/problem+json")]
    TooLarge(#[to_schema] ProblemDetails),
    /// The body is not `application/json`.
    #[response(status = 415, content_type = "application/problem+json")]
    UnsupportedMediaType(#[to_schema] ProblemDetails),
}
