//! FHIR Bulk Data export for studies over HTTP: kick-off, status, delete
//! and the output files, all under the study's SMART access token. Errors
//! are FHIR `OperationOutcome`s. The substance is in
//! [`crate::research::bulk`].

use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::oauth::issuer;
use super::problem::ApiPath;
use super::AppState;
use crate::lock::Unavailable;
use crate::research::bulk::{self, KickOffError, ResourceKind, Status, POLL_INTERVAL};
use crate::research::resources::OutputFormat;
use crate::research::Study;
use crate::wire::ProblemDetails;

const FHIR_JSON: &str = "application/fhir+json";

/// A FHIR error: an `OperationOutcome` with one issue.
fn outcome(status: StatusCode, code: &str, diagnostics: impl Into<String>) -> Response {
    let body = json!({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics.into()}],
    });
    let mut response = (status, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    response
}

fn unauthorized() -> Response {
    let mut r = outcome(
        StatusCode::UNAUTHORIZED,
        "login",
        "a live access token of a consented study is required",
    );
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

fn not_found() -> Response {
    outcome(StatusCode::NOT_FOUND, "not-found", "no such export")
}

fn unavailable(u: Unavailable) -> Response {
    let (code, text) = match u {
        Unavailable::Locked => (
            "store_locked",
            "the store is locked; try again after the owner unlocks it",
        ),
        _ => ("store_sealed", "the store has not been unlocked yet"),
    };
    let mut r = outcome(
        StatusCode::SERVICE_UNAVAILABLE,
        "transient",
        format!("{code}: {text}"),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
    r
}

fn retry_after(mut r: Response) -> Response {
    r.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(POLL_INTERVAL.as_secs().max(1)),
    );
    r
}

/// The study behind the request's bearer token, with the consent in force.
// The refusal is the response itself, made once per request.
#[allow(clippy::result_large_err)]
fn study(state: &AppState, headers: &HeaderMap) -> Result<Study, Response> {
    if !state.store.registry_loaded() {
        return Err(unavailable(Unavailable::Sealed));
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .ok_or_else(unauthorized)?;
    state
        .research
        .authenticate(token.trim(), state.store.apps())
        .ok_or_else(unauthorized)
}

/// What a kick-off asks for.
struct KickOff {
    resources: Vec<ResourceKind>,
    since_us: Option<i64>,
    format: OutputFormat,
}

#[allow(clippy::result_large_err)]
fn parse_kick_off(
    study: &Study,
    headers: &HeaderMap,
    query: Option<&str>,
    now_us: i64,
) -> Result<KickOff, Response> {
    let prefer = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_ascii_lowercase())
        .collect::<Vec<_>>();
    if !prefer.iter().any(|p| p == "respond-async") {
        return Err(outcome(
            StatusCode::BAD_REQUEST,
            "invalid",
            "send `Prefer: respond-async`: exports run in the background",
        ));
    }
    let lenient = prefer.iter().any(|p| p == "handling=lenient");
    if let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) {
        let ok = accept.split(',').any(|a| {
            let a = a.split(';').next().unwrap_or("").trim();
            matches!(a, "application/fhir+json" | "application/json" | "*/*" | "")
        });
        if !ok {
            return Err(outcome(
                StatusCode::BAD_REQUEST,
                "invalid",
                "`Accept` must allow application/fhir+json",
            ));
        }
    }
    let mut resources: Option<Vec<ResourceKind>> = None;
    let mut since_us = None;
    let mut format = OutputFormat::Fhir;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "_type" => {
                for name in value.split(',').filter(|n| !n.trim().is_empty()) {
                    match ResourceKind::parse(name) {
                        Some(kind) => {
                            let list = resources.get_or_insert_with(Vec::new);
                            if !list.contains(&kind) {
                                list.push(kind);
                            }
                        }
                        None if lenient => {}
                        None => {
                            return Err(outcome(
                                StatusCode::BAD_REQUEST,
                                "not-supported",
                                format!("`_type` {name}: only Patient and Observation are exported"),
                            ))
                        }
                    }
                }
            }
            "_since" => {
                let at: jiff::Timestamp = value.replace(' ', "+").parse().map_err(|_| {
                    outcome(StatusCode::BAD_REQUEST, "invalid", "`_since` must be an instant (RFC 3339 with offset)")
                })?;
                if at.as_microsecond() > now_us {
                    return Err(outcome(StatusCode::BAD_REQUEST, "invalid", "`_since` is in the future"));
                }
                since_us = Some(at.as_microsecond());
            }
            "_outputFormat" => {
                format = OutputFormat::parse(&value).ok_or_else(|| {
                    outcome(
                        StatusCode::BAD_REQUEST,
                        "not-supported",
                        "`_outputFormat`: application/fhir+ndjson (also application/ndjson, ndjson) or application/vnd.openmhealth+ndjson",
                    )
                })?;
            }
            _ if lenient => {}
            other => {
                return Err(outcome(
                    StatusCode::BAD_REQUEST,
                    "not-supported",
                    format!("the parameter `{other}` is not supported (send `Prefer: handling=lenient` to have it ignored)"),
                ))
            }
        }
    }
    let resources = match resources {
        Some(list) => {
            if let Some(kind) = list.iter().find(|k| !study.has_scope(k.scope())) {
                return Err(outcome(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!(
                        "the access token's scope does not cover {}",
                        kind.scope().as_str()
                    ),
                ));
            }
            list
        }
        None => [ResourceKind::Patient, ResourceKind::Observation]
            .into_iter()
            .filter(|k| study.has_scope(k.scope()))
            .collect(),
    };
    if resources.is_empty() {
        return Err(outcome(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the access token's scope covers no resource type",
        ));
    }
    Ok(KickOff {
        resources,
        since_us,
        format,
    })
}

async fn kick_off(
    state: AppState,
    headers: HeaderMap,
    uri: OriginalUri,
    query: Option<String>,
    group: Option<String>,
) -> Response {
    let study = match study(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if group.is_some_and(|g| g != study.study_id) {
        return outcome(StatusCode::NOT_FOUND, "not-found", "no such group");
    }
    let now = state.store.apps().clock.now_us();
    let asked = match parse_kick_off(&study, &headers, query.as_deref(), now) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let open = match state.store.open_store() {
        Ok(open) => open,
        Err(u) => return unavailable(u),
    };
    let level = {
        let registry = state.store.apps().read();
        match registry.studies().get(&study.study_id) {
            Some(s) => s.description.deidentification,
            None => return unauthorized(),
        }
    };
    let base = issuer(&state, &headers);
    let request = format!("{base}{}", uri.0);
    let started = state
        .research
        .exports
        .kick_off(
            &state.store,
            &open,
            &study,
            request,
            asked.resources,
            asked.since_us,
            asked.format,
            level,
        )
        .await;
    match started {
        Ok(job_id) => {
            let mut r = StatusCode::ACCEPTED.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("{base}/fhir/bulk-status/{job_id}")) {
                r.headers_mut().insert(header::CONTENT_LOCATION, v);
            }
            r
        }
        Err(KickOffError::Busy) => retry_after(outcome(
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            "an export of this study is running; wait for it, or delete it, first",
        )),
        Err(KickOffError::FormatNeedsDates) => outcome(
            StatusCode::BAD_REQUEST,
            "not-supported",
            "Open mHealth data points need whole dates, and this study receives the year only: ask for application/fhir+ndjson",
        ),
        Err(KickOffError::Storage) => outcome(
            StatusCode::SERVICE_UNAVAILABLE,
            "transient",
            "the export could not be recorded",
        ),
    }
}

/// Kicks off an export of what the owner consented to for this study (the
/// group is the study: its id is the study's client id).
#[utoipa::path(get, path = "/fhir/Group/{study}/$export", tag = "fhir", operation_id = "fhir_group_export",
    params(
        ("study" = String, Path, description = "The study's id"),
        ("_type" = Option<String>, Query, description = "`Patient`, `Observation` or both, comma-separated"),
        ("_since" = Option<String>, Query, description = "Only data that reached Hearth after this instant"),
        ("_outputFormat" = Option<String>, Query, description = "`application/fhir+ndjson` (default; also `application/ndjson`, `ndjson`) or `application/vnd.openmhealth+ndjson`"),
        ("Prefer" = String, Header, description = "`respond-async` (required); `handling=lenient` ignores unknown parameters"),
    ),
    responses(
        (status = 202, description = "Started", headers(("Content-Location" = String, description = "The status URL"))),
        (status = 400, description = "A malformed request (OperationOutcome)"),
        (status = 401, description = "No live token of a consented study (OperationOutcome)"),
        (status = 403, description = "The token's scope does not cover a requested type (OperationOutcome)"),
        (status = 404, description = "Not this study's group (OperationOutcome)"),
        (status = 429, description = "An export of this study is running (OperationOutcome)", headers(("Retry-After" = u64))),
        (status = 503, description = "The store is locked or sealed (OperationOutcome)"),
    ),
    security(("study" = [])))]
pub async fn group_export(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
    RawQuery(query): RawQuery,
    ApiPath(group): ApiPath<String>,
) -> Response {
    kick_off(state, headers, uri, query, Some(group)).await
}

/// The same export, for the one patient a study has: the owner.
#[utoipa::path(get, path = "/fhir/Patient/$export", tag = "fhir", operation_id = "fhir_patient_export",
    params(
        ("_type" = Option<String>, Query, description = "`Patient`, `Observation` or both"),
        ("_since" = Option<String>, Query, description = "Only data that reached Hearth after this instant"),
        ("_outputFormat" = Option<String>, Query, description = "As for the group export"),
        ("Prefer" = String, Header, description = "`respond-async` (required)"),
    ),
    responses(
        (status = 202, description = "Started", headers(("Content-Location" = String, description = "The status URL"))),
        (status = 400, description = "A malformed request (OperationOutcome)"),
        (status = 401, description = "No live token of a consented study (OperationOutcome)"),
        (status = 429, description = "An export of this study is running (OperationOutcome)"),
        (status = 503, description = "The store is locked or sealed (OperationOutcome)"),
    ),
    security(("study" = [])))]
pub async fn patient_export(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: OriginalUri,
    RawQuery(query): RawQuery,
) -> Response {
    kick_off(state, headers, uri, query, None).await
}

fn http_date(us: i64) -> Option<HeaderValue> {
    let t = jiff::Timestamp::from_microsecond(us).ok()?;
    HeaderValue::from_str(&t.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string()).ok()
}

/// An export's status: `202` with `X-Progress` while it runs (or waits for
/// the owner to unlock), `200` with the manifest when done.
#[utoipa::path(get, path = "/fhir/bulk-status/{job}", tag = "fhir", operation_id = "fhir_export_status",
    params(("job" = String, Path, description = "The export's id")),
    responses(
        (status = 200, description = "The manifest: transactionTime, request, requiresAccessToken, output[{type,url,count}], error[]", content_type = "application/json",
            headers(("Expires" = String, description = "When the files go"))),
        (status = 202, description = "In progress", headers(("X-Progress" = String), ("Retry-After" = u64))),
        (status = 401, description = "No live token of a consented study (OperationOutcome)"),
        (status = 404, description = "No such export, deleted or expired (OperationOutcome)"),
        (status = 429, description = "Polled too soon (OperationOutcome)", headers(("Retry-After" = u64))),
        (status = 500, description = "The export failed (OperationOutcome)"),
        (status = 503, description = "The store has not been unlocked since the server started (OperationOutcome)"),
    ),
    security(("study" = [])))]
pub async fn status(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(job): ApiPath<String>,
) -> Response {
    let study = match study(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let now = state.store.apps().clock.now_us();
    let locked = state.store.open_store().is_err();
    match state.research.exports.status(&study.study_id, &job, now) {
        None => not_found(),
        Some(Status::TooSoon) => retry_after(outcome(
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            "polled too soon: wait as Retry-After says",
        )),
        Some(Status::InProgress(progress)) => {
            let progress = if locked {
                "waiting: the store is locked; resumes at unlock".to_string()
            } else {
                progress
            };
            let mut r = retry_after(StatusCode::ACCEPTED.into_response());
            if let Ok(v) = HeaderValue::from_str(&progress) {
                r.headers_mut().insert("x-progress", v);
            }
            r
        }
        Some(Status::Failed(message)) => {
            outcome(StatusCode::INTERNAL_SERVER_ERROR, "exception", message)
        }
        Some(Status::Done(record)) => {
            let base = issuer(&state, &headers);
            let mut r = Json(bulk::manifest(&record, &base)).into_response();
            if let Some(v) = record.expires_us.and_then(http_date) {
                r.headers_mut().insert(header::EXPIRES, v);
            }
            r
        }
    }
}

/// Cancels a running export, or releases a finished one's files.
#[utoipa::path(delete, path = "/fhir/bulk-status/{job}", tag = "fhir", operation_id = "fhir_export_delete",
    params(("job" = String, Path, description = "The export's id")),
    responses(
        (status = 202, description = "Cancelled, or its files deleted"),
        (status = 401, description = "No live token of a consented study (OperationOutcome)"),
        (status = 404, description = "No such export (OperationOutcome)"),
        (status = 503, description = "The store has not been unlocked since the server started (OperationOutcome)"),
    ),
    security(("study" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(job): ApiPath<String>,
) -> Response {
    let study = match study(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if state
        .research
        .exports
        .delete(&**state.store.storage(), &study.study_id, &job)
        .await
    {
        StatusCode::ACCEPTED.into_response()
    } else {
        not_found()
    }
}

/// One output file of a finished export, as NDJSON; needs the study's
/// token, and is gone once the export expires.
#[utoipa::path(get, path = "/fhir/bulk-files/{job}/{file}", tag = "fhir", operation_id = "fhir_export_file",
    params(
        ("job" = String, Path, description = "The export's id"),
        ("file" = usize, Path, description = "The file's number, as the manifest's URL gives it"),
    ),
    responses(
        (status = 200, description = "One resource per line", body = String, content_type = "application/fhir+ndjson"),
        (status = 400, description = "A malformed file number", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 401, description = "No live token of the study (OperationOutcome)"),
        (status = 404, description = "No such file, or expired (OperationOutcome)"),
        (status = 503, description = "The store is locked (OperationOutcome)"),
    ),
    security(("study" = [])))]
pub async fn file(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath((job, n)): ApiPath<(String, usize)>,
) -> Response {
    let study = match study(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Err(u) = state.store.open_store() {
        return unavailable(u);
    }
    let now = state.store.apps().clock.now_us();
    let Some((format, error, reader)) =
        state
            .research
            .exports
            .open_file(&study.study_id, &job, n, now)
    else {
        return not_found();
    };
    let chunks = futures_util::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        match reader.next_chunk() {
            Ok(Some(chunk)) => Some((Ok::<_, std::io::Error>(Bytes::from(chunk)), Some(reader))),
            Ok(None) => None,
            Err(e) => {
                // The body ends short: the download fails rather than
                // passing for complete.
                tracing::error!(error = %e, "an export file did not open");
                Some((Err(e), None))
            }
        }
    });
    let mut r = Body::from_stream(chunks).into_response();
    let media = if error {
        "application/fhir+ndjson"
    } else {
        format.media_type()
    };
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    r
}
