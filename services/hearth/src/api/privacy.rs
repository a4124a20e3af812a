//! The privacy notice over HTTP: `GET /v1/privacy` (JSON) and the page at
//! `/privacy`. The substance is in [`crate::privacy`].
//!
//! The JSON notice is an API read like any other: it needs an unlocked
//! store (`503` with the lock state otherwise, the same for every caller)
//! and a caller, the owner (everything) or an app (itself only). The page
//! answers everyone: a visitor who is not the signed-in owner or an app
//! gets the public notice, which says how Hearth works and nothing about
//! this store's apps, studies or configuration, in every lock state.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::Response;
use axum::Json;

use super::auth::Access;
use super::problem::{CommonErrors, Problem};
use super::AppState;
use crate::audit::AuditFilter;
use crate::privacy::{self, Deployment};
use crate::wire::privacy::PrivacyNotice;

fn deployment(state: &AppState) -> Deployment {
    Deployment {
        backend: state.store.storage().backend_name(),
        state_file: state
            .store
            .state_file_path()
            .map(|p| p.display().to_string()),
        kdf: state.store.kdf(),
        telemetry: crate::telemetry::exporting(),
    }
}

fn notice_for(state: &AppState, access: Option<&Access>) -> PrivacyNotice {
    let apps = state.store.apps();
    let registry = apps.read();
    privacy::notice(
        access.map(|a| &a.caller),
        &registry,
        &deployment(state),
        apps.clock.now_us(),
    )
}

/// The privacy notice, generated from the live configuration: what Hearth
/// keeps and where, how it is encrypted, which apps may read and write
/// which types, which studies receive what, whether telemetry is on, and
/// how to erase. The owner sees everything; an app sees only itself and
/// the types it may write (never what it may read).
#[utoipa::path(get, path = "/v1/privacy", tag = "audit", operation_id = "get_privacy_notice",
    responses((status = 200, body = PrivacyNotice), CommonErrors),
    security(("owner" = []), ("apps" = [])))]
pub async fn notice(
    State(state): State<AppState>,
    access: Access,
) -> Result<Json<PrivacyNotice>, Problem> {
    Ok(Json(notice_for(&state, Some(&access))))
}

/// Disclosures the owner's page lists, newest first.
const RECENT_DISCLOSURES: usize = 50;

/// `/privacy`: the notice as a page, for whoever asks (see the module);
/// the owner's also lists the newest disclosures of the audit.
pub async fn page(State(state): State<AppState>, mut parts: Parts) -> Response {
    let access = Access::from_request_parts(&mut parts, &state).await.ok();
    let notice = notice_for(&state, access.as_ref());
    let mut recent = Vec::new();
    if let Some(access) = access.as_ref().filter(|a| a.caller.is_owner()) {
        let _ = crate::audit::flush(&access.apps, &access.open.writer).await;
        let registry = access.apps.read();
        let (records, _) = registry
            .audit()
            .page(&AuditFilter::default(), None, RECENT_DISCLOSURES);
        recent = records
            .into_iter()
            .map(|r| super::audit::entry(r, &registry))
            .collect();
    }
    crate::web::privacy::privacy_page(&notice, &recent)
}
