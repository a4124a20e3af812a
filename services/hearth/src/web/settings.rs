//! The owner's key settings: change the passphrase, and make a new recovery
//! key (shown once). Both go through the same handlers as
//! `POST /v1/owner/passphrase` and `POST /v1/owner/recovery`, with their
//! back-off after wrong secrets; every form carries the session's token.
//! The page also says how long Hearth stays unlocked without the owner,
//! when it locks itself.

use std::net::SocketAddr;
use std::time::Duration;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use zeroize::Zeroizing;

use super::owner::{checked_form, OwnerPage};
use super::render;
use crate::api::problem::{ApiJson, Problem};
use crate::api::{keys, AppState};
use crate::store::Store;
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
    csrf_token: String,
    /// What the last form did, or why it was refused.
    notice: Option<Notice>,
    /// A new recovery key, shown this once.
    recovery_key: Option<Zeroizing<String>>,
    /// How long Hearth stays unlocked without the owner, when it locks
    /// itself.
    idle_lock: Option<String>,
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

struct Notice {
    refused: bool,
    text: String,
}

fn show(
    store: &Store,
    page: OwnerPage,
    status: StatusCode,
    notice: Option<Notice>,
    recovery_key: Option<Zeroizing<String>>,
) -> Response {
    render(
        status,
        &SettingsPage {
            csrf_token: page.csrf,
            notice,
            recovery_key,
            idle_lock: store.idle_lock().map(duration_text),
        },
    )
}

fn refused(store: &Store, page: OwnerPage, problem: Problem) -> Response {
    let text = if problem.status == StatusCode::UNAUTHORIZED {
        "The current passphrase is not right.".to_string()
    } else {
        problem.detail.clone()
    };
    show(
        store,
        page,
        problem.status,
        Some(Notice {
            refused: true,
            text,
        }),
        None,
    )
}

async fn settings_page(State(state): State<AppState>, page: OwnerPage) -> Response {
    show(&state.store, page, StatusCode::OK, None, None)
}

async fn passphrase_form(
    State(state): State<AppState>,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    page: OwnerPage,
    body: Bytes,
) -> Response {
    let params = match checked_form(&page, &headers, &body) {
        Ok(params) => params,
        Err(refused) => return refused.into_response(),
    };
    let field = |name: &str| Zeroizing::new(params.one(name).unwrap_or("").to_string());
    if *field("new_passphrase") != *field("repeat_passphrase") {
        let notice = Notice {
            refused: true,
            text: "The new passphrase and its repetition differ.".into(),
        };
        return show(
            &state.store,
            page,
            StatusCode::BAD_REQUEST,
            Some(notice),
            None,
        );
    }
    let change = PassphraseChange {
        passphrase: Some(field("current_passphrase")),
        recovery_key: None,
        new_passphrase: field("new_passphrase"),
    };
    let owner = page.access.clone();
    let store = state.store.clone();
    match keys::change_passphrase(State(state), peer, owner, ApiJson(change)).await {
        Ok(_) => {
            let notice = Notice {
                refused: false,
                text: "Your passphrase is changed: the old one no longer opens Hearth.".into(),
            };
            show(&store, page.clone(), StatusCode::OK, Some(notice), None)
        }
        Err(problem) => refused(&store, page, problem),
    }
}

async fn recovery_key_form(
    State(state): State<AppState>,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    page: OwnerPage,
    body: Bytes,
) -> Response {
    let params = match checked_form(&page, &headers, &body) {
        Ok(params) => params,
        Err(refused) => return refused.into_response(),
    };
    let current = CurrentSecret {
        passphrase: Some(Zeroizing::new(
            params.one("current_passphrase").unwrap_or("").to_string(),
        )),
        recovery_key: None,
    };
    let owner = page.access.clone();
    let store = state.store.clone();
    match keys::recreate_recovery_key(State(state), peer, owner, ApiJson(current)).await {
        Ok(Json(new)) => {
            let notice = Notice {
                refused: false,
                text: "A new recovery key was made: the old one no longer opens Hearth.".into(),
            };
            show(
                &store,
                page.clone(),
                StatusCode::OK,
                Some(notice),
                Some(new.recovery_key),
            )
        }
        Err(problem) => refused(&store, page, problem),
    }
}
