//! The privacy notice as a page: the same notice as `GET /v1/privacy`,
//! rendered for a browser.

use askama::Template;
use axum::http::StatusCode;
use axum::response::Response;

use super::render;
use crate::wire::audit::AuditEntry;
use crate::wire::privacy::{NoticeAudience, PrivacyNotice};

#[derive(Template)]
#[template(path = "privacy.html")]
struct PrivacyPage<'a> {
    notice: &'a PrivacyNotice,
    /// The newest audit entries (the owner's page only).
    recent: &'a [AuditEntry],
}

/// The notice as HTML, with the owner's newest disclosures; every name an
/// app or study chose is escaped.
pub fn privacy_page(notice: &PrivacyNotice, recent: &[AuditEntry]) -> Response {
    render(StatusCode::OK, &PrivacyPage { notice, recent })
}

impl PrivacyPage<'_> {
    /// An enum's wire word (`awaiting_consent`), with its underscores as
    /// spaces.
    fn word(&self, value: impl serde::Serialize) -> String {
        match serde_json::to_value(value) {
            Ok(serde_json::Value::String(s)) => s.replace('_', " "),
            _ => String::new(),
        }
    }
}
