//! The owner's key settings: change the passphrase, and make a new recovery
//! key (shown once). Both go through the same handlers as
//! `POST /v1/owner/passphrase` and `POST /v1/owner/recovery`, with their
//! back-off after wrong secrets; every form carries the session's token.

use std::net::SocketAddr;

use askama::Template;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use zeroize::Zeroizing;

use super::owner::{OwnerForm, OwnerFrame, OwnerPage};
use super::render;
use crate::api::problem::{ApiJson, Problem};
use crate::api::{keys, AppState};
use crate::wire::keys::{CurrentSecret, PassphraseChange};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/settings", get(settings_page))
        .route("/settings/passphrase", post(passphrase_form))
        .route("/settings/recovery-key", post(recovery_key_form))
}

#[derive(Template)]
#[template(path = "settings.html")]
struct SettingsPage {
    frame: OwnerFrame,
    /// What the last form did, or why it was refused.
    notice: Option<Notice>,
    /// A new recovery key, shown this once.
    recovery_key: Option<Zeroizing<String>>,
}

struct Notice {
    refused: bool,
    text: String,
}

fn show(
    page: OwnerPage,
    status: StatusCode,
    notice: Option<Notice>,
    recovery_key: Option<Zeroizing<String>>,
) -> Response {
    render(
        status,
        &SettingsPage {
            frame: page.frame,
            notice,
            recovery_key,
        },
    )
}

fn refused(page: OwnerPage, problem: Problem) -> Response {
    let text = if problem.status == StatusCode::UNAUTHORIZED {
        "The current passphrase is not right.".to_string()
    } else {
        problem.detail.clone()
    };
    show(
        page,
        problem.status,
        Some(Notice {
            refused: true,
            text,
        }),
        None,
    )
}

async fn settings_page(page: OwnerPage) -> Response {
    show(page, StatusCode::OK, None, None)
}

async fn passphrase_form(
    State(state): State<AppState>,
    peer: ConnectInfo<SocketAddr>,
    OwnerForm { page, params }: OwnerForm,
) -> Response {
    let field = |name: &str| Zeroizing::new(params.one(name).unwrap_or("").to_string());
    if *field("new_passphrase") != *field("repeat_passphrase") {
        let notice = Notice {
            refused: true,
            text: "The new passphrase and its repetition differ.".into(),
        };
        return show(page, StatusCode::BAD_REQUEST, Some(notice), None);
    }
    let change = PassphraseChange {
        passphrase: Some(field("current_passphrase")),
        recovery_key: None,
        new_passphrase: field("new_passphrase"),
    };
    let owner = page.access.clone();
    match keys::change_passphrase(State(state), peer, owner, ApiJson(change)).await {
        Ok(_) => {
            let notice = Notice {
                refused: false,
                text: "Your passphrase is changed: the old one no longer opens Hearth.".into(),
            };
            show(page.clone(), StatusCode::OK, Some(notice), None)
        }
        Err(problem) => refused(page, problem),
    }
}

async fn recovery_key_form(
    State(state): State<AppState>,
    peer: ConnectInfo<SocketAddr>,
    OwnerForm { page, params }: OwnerForm,
) -> Response {
    let current = CurrentSecret {
        passphrase: Some(Zeroizing::new(
            params.one("current_passphrase").unwrap_or("").to_string(),
        )),
        recovery_key: None,
    };
    let owner = page.access.clone();
    match keys::recreate_recovery_key(State(state), peer, owner, ApiJson(current)).await {
        Ok(Json(new)) => {
            let notice = Notice {
                refused: false,
                text: "A new recovery key was made: the old one no longer opens Hearth.".into(),
            };
            show(
                page.clone(),
                StatusCode::OK,
                Some(notice),
                Some(new.recovery_key),
            )
        }
        Err(problem) => refused(page, problem),
    }
}
