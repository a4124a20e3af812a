//! The audit over HTTP: `GET /v1/audit`, the owner's alone. The substance
//! is in [`crate::audit`].

use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::OwnerAccess;
use super::problem::{CommonErrors, Problem};
use super::samples::{page_limit, ApiQuery};
use crate::apps::Registry;
use crate::audit::{self, AuditFilter, AuditKind, AuditPosition, AuditRecord, Direction};
use crate::research::rfc3339;
use crate::samples::{lookup_type, parse_time};
use crate::wire::audit as wire;
use crate::wire::ProblemDetails;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// `app_read`, `app_write` or `study_export`.
    #[param(value_type = Option<AuditKindParam>, inline)]
    kind: Option<String>,
    /// An app id: only that app's reads and writes.
    app: Option<String>,
    /// A study id: only exports to that study.
    study: Option<String>,
    /// A type id: only disclosures of that type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    type_id: Option<String>,
    /// RFC 3339: disclosures at or after it (a day of app usage counts
    /// when it overlaps).
    since: Option<String>,
    /// RFC 3339: disclosures before it.
    until: Option<String>,
    /// 1 to 1000; default 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// The kinds of disclosure.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum AuditKindParam {
    AppRead,
    AppWrite,
    StudyExport,
}

fn filter(q: &AuditQuery) -> Result<AuditFilter, Problem> {
    let kind = match q.kind.as_deref() {
        None => None,
        Some("app_read") => Some(AuditKind::AppRead),
        Some("app_write") => Some(AuditKind::AppWrite),
        Some("study_export") => Some(AuditKind::StudyExport),
        Some(_) => {
            return Err(Problem::invalid(
                None,
                "kind",
                "one of app_read, app_write, study_export",
            ))
        }
    };
    let time = |field: &str, text: &Option<String>| {
        text.as_deref()
            .map(|t| parse_time(None, field, t).map(|(us, _)| us))
            .transpose()
    };
    let since_us = time("since", &q.since)?;
    let until_us = time("until", &q.until)?;
    if let (Some(since), Some(until)) = (since_us, until_us) {
        if since > until {
            return Err(Problem::invalid(None, "until", "until is before since"));
        }
    }
    let type_id = match &q.type_id {
        Some(t) => Some(crate::catalogue::get(lookup_type(None, t)?).id.to_string()),
        None => None,
    };
    Ok(AuditFilter {
        kind,
        app_id: q.app.clone(),
        study_id: q.study.clone(),
        type_id,
        since_us,
        until_us,
    })
}

fn encode_cursor(position: &AuditPosition) -> String {
    URL_SAFE_NO_PAD.encode(postcard::to_stdvec(position).expect("in-memory encoding"))
}

fn decode_cursor(text: &str) -> Result<AuditPosition, Problem> {
    URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|bytes| postcard::from_bytes(&bytes).ok())
        .ok_or_else(|| Problem::invalid(None, "cursor", "not a cursor returned by this endpoint"))
}

fn day_text(day: i32) -> String {
    jiff::Timestamp::from_microsecond(audit::tally::day_start_us(day))
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

pub(super) fn entry(record: AuditRecord, registry: &Registry) -> wire::AuditEntry {
    match record {
        AuditRecord::Usage(u) => {
            let usage = wire::AppUsage {
                app_name: registry.app(&u.app_id).map(|a| a.record.name.clone()),
                app_id: u.app_id,
                type_id: u.type_id,
                day: day_text(u.day),
                samples: u.samples,
                summaries: u.summaries,
            };
            match u.direction {
                Direction::Read => wire::AuditEntry::AppRead(usage),
                Direction::Write => wire::AuditEntry::AppWrite(usage),
            }
        }
        AuditRecord::StudyExport(d) => wire::AuditEntry::StudyExport(wire::StudyExport {
            study_name: registry
                .studies()
                .get(&d.study_id)
                .map(|s| s.description.name.clone()),
            study_id: d.study_id,
            job_id: d.job_id,
            types: d.types,
            counts: d.counts,
            range_start: d.range_start_us.map(rfc3339),
            range_end: d.range_end_us.map(rfc3339),
            bytes: d.bytes,
            at: rfc3339(d.at_us),
        }),
    }
}

/// What left the store, newest first: each app's reads and writes per type
/// and day (counts only), and each export to a study. Apps' counts are
/// kept in memory for up to a minute before they are logged; this request
/// logs them first, so the answer is current.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", operation_id = "list_audit",
    params(AuditQuery),
    responses(
        (status = 200, body = wire::AuditPage),
        (status = 403, description = "Only the owner reads the audit", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors,
    ),
    security(("owner" = [])))]
pub async fn list(
    access: OwnerAccess,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<wire::AuditPage>, Problem> {
    let filter = filter(&q)?;
    let limit = page_limit(q.limit.as_deref())?;
    let after = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let access = access.0;
    // Kept in the tally when the log refuses: the listing is then only
    // as old as the last flush.
    let _ = audit::flush(&access.apps, &access.open.writer).await;
    let registry = access.apps.read();
    let (records, next) = registry.audit().page(&filter, after.as_ref(), limit);
    Ok(Json(wire::AuditPage {
        entries: records.into_iter().map(|r| entry(r, &registry)).collect(),
        next_cursor: next.as_ref().map(encode_cursor),
    }))
}
