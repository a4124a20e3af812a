//! The owner's study pages: the studies added, and each study's consent
//! document with one switch per requested type (off until the owner turns
//! it on), the summary of exactly what leaves, the signed receipt to
//! download, and withdrawal.
//!
//! The pages read and decide through the same handlers as the JSON API, so
//! a decision made here is the one `GET /v1/studies/{id}/consent` shows.
//! They need the owner's session cookie; every form carries a token bound
//! to that session and must come from Hearth's own origin.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::owner::{message_page, urlencoding, OwnerForm, OwnerFrame, OwnerPage};
use super::{display_name, render};
use crate::api::problem::{ApiJson, ApiPath, Problem};
use crate::api::{research, AppState};
use crate::research::consent::WITHDRAWAL_NOTICE;
use crate::wire::audit::AuditEntry;
use crate::wire::research::{ConsentDecision, ConsentDocument, StudyStatus};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/studies", get(list_page))
        .route("/studies/{id}", get(study_page))
        .route("/studies/{id}/consent", post(consent_form))
        .route("/studies/{id}/withdraw", post(withdraw_form))
}

struct StudyRow {
    id: String,
    name: String,
    organisation: String,
    status: &'static str,
}

#[derive(Template)]
#[template(path = "studies.html")]
struct StudiesPage {
    frame: OwnerFrame,
    studies: Vec<StudyRow>,
}

fn status_text(status: StudyStatus) -> &'static str {
    match status {
        StudyStatus::AwaitingConsent => "Awaiting your decision",
        StudyStatus::Consented => "Sharing",
        StudyStatus::Withdrawn => "Withdrawn",
    }
}

async fn list_page(page: OwnerPage) -> Response {
    let frame = page.frame;
    let Json(list) = research::list(page.access).await;
    let studies = list
        .studies
        .into_iter()
        .map(|s| StudyRow {
            id: s.id,
            name: s.description.name,
            organisation: s.description.organisation,
            status: status_text(s.status),
        })
        .collect();
    render(StatusCode::OK, &StudiesPage { frame, studies })
}

struct SwitchRow {
    type_id: String,
    label: String,
    on: bool,
}

#[derive(Template)]
#[template(path = "study.html")]
struct StudyPage {
    doc: ConsentDocument,
    status: &'static str,
    withdrawn: bool,
    switches: Vec<SwitchRow>,
    frame: OwnerFrame,
    withdrawal_notice: &'static str,
    error: Option<String>,
    /// The exports the study received, newest first, from the audit.
    exports: Vec<ExportRow>,
}

struct ExportRow {
    at: String,
    types: String,
    resources: u64,
    bytes: u64,
}

async fn show(page: OwnerPage, id: String, status: StatusCode, error: Option<String>) -> Response {
    let query = format!("kind=study_export&study={}&limit=50", urlencoding(&id));
    let exports = match super::access::audit_entries(page.access.clone(), &query).await {
        Ok(listed) => listed
            .entries
            .into_iter()
            .filter_map(|e| match e {
                AuditEntry::StudyExport(x) => Some(ExportRow {
                    at: x.at.get(..16).unwrap_or(&x.at).replace('T', " "),
                    types: x.types.join(", "),
                    resources: x.counts.values().sum(),
                    bytes: x.bytes,
                }),
                _ => None,
            })
            .collect(),
        Err(p) => return problem_page(p),
    };
    let doc = match research::get_consent(page.access, ApiPath(id)).await {
        Ok(Json(doc)) => doc,
        Err(p) => return problem_page(p),
    };
    let switches = doc
        .switches
        .iter()
        .map(|s| SwitchRow {
            label: display_name(&s.type_id),
            type_id: s.type_id.clone(),
            on: s.on,
        })
        .collect();
    let page = StudyPage {
        status: status_text(doc.status),
        withdrawn: doc.status == StudyStatus::Withdrawn,
        doc,
        switches,
        frame: page.frame,
        withdrawal_notice: WITHDRAWAL_NOTICE,
        error,
        exports,
    };
    render(status, &page)
}

async fn study_page(page: OwnerPage, Path(id): Path<String>) -> Response {
    show(page, id, StatusCode::OK, None).await
}

/// The switches that are on become the decision; none on is no decision.
async fn consent_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    OwnerForm { page, params }: OwnerForm,
) -> Response {
    let types: Vec<String> = params.all("type").map(str::to_owned).collect();
    if types.is_empty() {
        let error = "Turn on at least one type to share, or leave the study as it is.";
        return show(page, id, StatusCode::BAD_REQUEST, Some(error.into())).await;
    }
    let routes = params.get("routes").ok().flatten() == Some("on");
    let decision = ConsentDecision { types, routes };
    let access = page.access.clone();
    match research::give_consent(
        State(state),
        headers,
        access,
        ApiPath(id.clone()),
        ApiJson(decision),
    )
    .await
    {
        Ok(_) => Redirect::to(&format!("/studies/{}", urlencoding(&id))).into_response(),
        Err(p) if p.status == StatusCode::BAD_REQUEST || p.status == StatusCode::CONFLICT => {
            let detail = p
                .errors
                .first()
                .map_or(p.detail.clone(), |e| e.message.clone());
            show(page, id, p.status, Some(detail)).await
        }
        Err(p) => problem_page(p),
    }
}

async fn withdraw_form(
    State(state): State<AppState>,
    Path(id): Path<String>,
    OwnerForm { page, .. }: OwnerForm,
) -> Response {
    match research::withdraw(State(state), page.access, ApiPath(id.clone())).await {
        Ok(_) => Redirect::to(&format!("/studies/{}", urlencoding(&id))).into_response(),
        Err(p) => problem_page(p),
    }
}

fn problem_page(p: Problem) -> Response {
    let title = match p.status {
        StatusCode::NOT_FOUND => "No such study",
        _ => "This cannot be done now",
    };
    message_page(p.status, title, &p.detail)
}
