//! Imports: upload an export, then follow its job.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use super::auth::OwnerAccess;
use super::problem::{ApiPath, CommonErrors, Problem};
use super::AppState;
use crate::import::apple_health::archive::ArchiveLimits;
use crate::import::{self, StartError};
use crate::wire::imports as wire;
use crate::wire::{ErrorCode, ProblemDetails};

fn too_large(max: u64) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::PayloadTooLarge,
        format!("an export may be at most {} MiB", max >> 20),
    )
}

/// Imports an Apple Health export as the owner. The body is the
/// `export.zip` the Health app writes, or its export XML alone; it is
/// stored in a temporary file as it arrives, checked whole (a refusal
/// stores nothing), then imported in the background. Follow the job with
/// `GET /v1/imports/{id}`.
///
/// Each `sourceName` of the export becomes a source `apple-health:<name>`;
/// every sample carries a `sync_id` derived from its content, so importing
/// the same export again, or a newer one that overlaps it, adds nothing
/// twice.
#[utoipa::path(post, path = "/v1/imports", tag = "imports", operation_id = "create_import",
    request_body(content = wire::ExportUpload, description = "An Apple Health `export.zip`, or its export XML", content_type = "application/zip"),
    responses(
        (status = 202, description = "The export was accepted and is being imported", body = wire::ImportJob),
        (status = 400, description = "Not an acceptable export (`import_refused`): damaged or truncated zip, unsafe file names, a zip bomb, entity declarations, no `HealthData`; nothing was stored", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 403, description = "Only the owner imports", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "Another import is running (`import_running`)", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 413, description = "Larger than the server's import cap", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors,
    ),
    security(("owner" = [])))]
pub async fn create(
    State(state): State<AppState>,
    OwnerAccess(access): OwnerAccess,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<wire::ImportJob>), Problem> {
    let max = state.max_import_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large(max));
    }
    let unreadable = |what: String| Problem::bad_request(ErrorCode::UnreadableBody, what);
    let file = import::upload_file(&std::env::temp_dir())
        .map_err(|e| unreadable(format!("no room for the upload: {e}")))?;
    let (std_file, path) = file.into_parts();
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::from_std(std_file));
    let mut stream = body.into_data_stream();
    let mut received: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| unreadable(format!("reading the upload: {e}")))?;
        received += chunk.len() as u64;
        if received > max {
            return Err(too_large(max));
        }
        out.write_all(&chunk)
            .await
            .map_err(|e| unreadable(format!("storing the upload: {e}")))?;
    }
    out.flush()
        .await
        .map_err(|e| unreadable(format!("storing the upload: {e}")))?;
    drop(out);
    if received == 0 {
        return Err(Problem::bad_request(
            ErrorCode::ImportRefused,
            "the body is empty: send the export.zip or its export XML",
        ));
    }
    let job = state
        .imports
        .start_apple_health(
            access.open.clone(),
            access.apps.clone(),
            path,
            ArchiveLimits::default(),
        )
        .await
        .map_err(|e| match e {
            StartError::Busy => Problem::new(
                StatusCode::CONFLICT,
                ErrorCode::ImportRunning,
                e.to_string(),
            ),
            StartError::Refused(why) => Problem::bad_request(
                ErrorCode::ImportRefused,
                format!("{why}; nothing was stored"),
            ),
        })?;
    Ok((StatusCode::ACCEPTED, Json(job.snapshot())))
}

/// An import job: progress while it runs, then its summary (or its error).
#[utoipa::path(get, path = "/v1/imports/{id}", tag = "imports", operation_id = "get_import",
    params(("id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, body = wire::ImportJob),
        (status = 403, description = "Only the owner imports", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such job (jobs are kept while the server runs)", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors,
    ),
    security(("owner" = [])))]
pub async fn get_one(
    State(state): State<AppState>,
    OwnerAccess(_owner): OwnerAccess,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<wire::ImportJob>, Problem> {
    let job = state.imports.get(id).ok_or_else(Problem::not_found)?;
    Ok(Json(job.snapshot()))
}
