//! `GET /v1/export`: the owner's full export as a download, streamed a page
//! of samples at a time (see [`crate::export`]).

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::OwnerAccess;
use super::problem::{CommonErrors, Problem};
use super::samples::ApiQuery;
use crate::export::{Export, Format};
use crate::wire::ProblemDetails;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `ndjson` (Hearth's own, the default; `hearth import ndjson` reads it
    /// back) or `fhir` (FHIR R4 Patient and Observations as NDJSON).
    #[param(value_type = Option<String>, example = "ndjson")]
    format: Option<String>,
}

/// Everything the owner's store holds — characteristics, the source
/// priority order and every sample with its source, device and metadata,
/// correlations with their members, workouts with their routes — as
/// NDJSON, streamed.
#[utoipa::path(get, path = "/v1/export", tag = "samples", operation_id = "export",
    params(ExportQuery),
    responses(
        (status = 200, description = "One JSON document per line", body = String, content_type = "application/x-ndjson"),
        (status = 403, description = "Only the owner exports", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors,
    ),
    security(("owner" = [])))]
pub async fn export(
    OwnerAccess(access): OwnerAccess,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Response, Problem> {
    let format = match q.format.as_deref() {
        None => Format::Ndjson,
        Some(f) => {
            Format::parse(f).ok_or_else(|| Problem::invalid(None, "format", "ndjson or fhir"))?
        }
    };
    let export = Export::new(access.view, format);
    let chunks = futures_util::stream::unfold(export, |mut export| async move {
        match export.next_chunk() {
            Ok(Some(chunk)) => Some((Ok::<_, std::io::Error>(Bytes::from(chunk)), export)),
            Ok(None) => None,
            Err(e) => {
                // The body ends short of its last line: the download fails
                // rather than passing for complete.
                tracing::error!(error = %e, "export stopped");
                Some((Err(std::io::Error::other(e.to_string())), export))
            }
        }
    });
    let mut response = Body::from_stream(chunks).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.media_type()),
    );
    if let Ok(disposition) =
        HeaderValue::from_str(&format!("attachment; filename=\"{}\"", format.file_name()))
    {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    Ok(response)
}
