//! The access log: what left the store, for whom and how much, newest first,
//! filtered by kind, app, type and date and paged with the audit's cursor
//! (100 entries a page unless `limit` says otherwise).
//!
//! The page reads through `GET /v1/audit`'s handler, so it shows exactly
//! what the API answers the owner.

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::display_name;
use super::owner::{message_page, OwnerFrame, OwnerPage};
use super::render;
use crate::api::problem::Problem;
use crate::api::samples::ApiQuery;
use crate::api::{apps, audit, AppState};
use crate::wire::audit::AuditEntry;

pub fn routes() -> Router<AppState> {
    Router::new().route("/access", get(access_page))
}

/// The page's filter form, as the browser sends it; empty fields are
/// no filter.
#[derive(Deserialize, Default)]
pub struct AccessFilter {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    app: String,
    #[serde(default, rename = "type")]
    type_id: String,
    /// `YYYY-MM-DD`, UTC: from the start of that day.
    #[serde(default)]
    from: String,
    /// `YYYY-MM-DD`, UTC: to the end of that day.
    #[serde(default)]
    to: String,
    /// Entries a page; `GET /v1/audit`'s default when empty.
    #[serde(default)]
    limit: String,
    #[serde(default)]
    cursor: String,
}

struct Choice {
    value: String,
    label: String,
}

struct Row {
    class: &'static str,
    when: String,
    who: String,
    action: &'static str,
    what: String,
    how_much: String,
}

#[derive(Template)]
#[template(path = "access.html")]
struct AccessPage {
    frame: OwnerFrame,
    filter: AccessFilter,
    apps: Vec<Choice>,
    types: Vec<Choice>,
    rows: Vec<Row>,
    /// The next page's address, with the same filters.
    next: Option<String>,
}

impl AccessFilter {
    /// The filter's fields that are set, as `(name, value)` pairs of the
    /// page's own query.
    fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("kind", self.kind.as_str()),
            ("app", self.app.as_str()),
            ("type", self.type_id.as_str()),
            ("from", self.from.as_str()),
            ("to", self.to.as_str()),
            ("limit", self.limit.as_str()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect()
    }

    /// The same filter as `GET /v1/audit`'s query: dates become the UTC
    /// instants that bound those days.
    fn api_query(&self) -> Result<String, Problem> {
        let day = |field: &str, text: &str| {
            text.parse::<jiff::civil::Date>()
                .map_err(|_| Problem::invalid(None, field, "a date, YYYY-MM-DD"))
        };
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in [
            ("kind", &self.kind),
            ("app", &self.app),
            ("type", &self.type_id),
            ("cursor", &self.cursor),
            ("limit", &self.limit),
        ] {
            if !value.is_empty() {
                query.append_pair(name, value);
            }
        }
        if !self.from.is_empty() {
            query.append_pair("since", &format!("{}T00:00:00Z", day("from", &self.from)?));
        }
        if !self.to.is_empty() {
            let end = day("to", &self.to)?
                .tomorrow()
                .map_err(|_| Problem::invalid(None, "to", "a date, YYYY-MM-DD"))?;
            query.append_pair("until", &format!("{end}T00:00:00Z"));
        }
        Ok(query.finish())
    }

    fn next_page(&self, cursor: &str) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.extend_pairs(self.pairs());
        query.append_pair("cursor", cursor);
        format!("/access?{}", query.finish())
    }
}

fn row(entry: AuditEntry) -> Row {
    match entry {
        AuditEntry::AppRead(u) => Row {
            class: "app-read",
            when: u.day,
            who: u.app_name.unwrap_or(u.app_id),
            action: "read",
            what: display_name(&u.type_id),
            how_much: format!("{} samples, {} summaries", u.samples, u.summaries),
        },
        AuditEntry::AppWrite(u) => Row {
            class: "app-write",
            when: u.day,
            who: u.app_name.unwrap_or(u.app_id),
            action: "wrote",
            what: display_name(&u.type_id),
            how_much: format!("{} samples", u.samples),
        },
        AuditEntry::StudyExport(e) => Row {
            class: "study-export",
            when: e.at,
            who: e.study_name.unwrap_or(e.study_id),
            action: "was sent an export",
            what: e
                .types
                .iter()
                .map(|t| display_name(t))
                .collect::<Vec<_>>()
                .join(", "),
            how_much: format!("{} bytes", e.bytes),
        },
    }
}

async fn access_page(
    page: OwnerPage,
    filter: Result<Query<AccessFilter>, QueryRejection>,
) -> Response {
    let filter = match filter {
        Ok(Query(filter)) => filter,
        Err(e) => {
            return message_page(
                StatusCode::BAD_REQUEST,
                "This log cannot be shown",
                &e.body_text(),
            )
        }
    };
    let listed = match audit_page(page.access.clone(), &filter).await {
        Ok(listed) => listed,
        Err(p) => return message_page(p.status, "This log cannot be shown", &p.detail),
    };
    let Json(app_list) = apps::list(page.access).await;
    let apps = app_list
        .apps
        .into_iter()
        .map(|a| Choice {
            value: a.id,
            label: a.name,
        })
        .collect();
    let types = crate::catalogue::all()
        .iter()
        .map(|t| Choice {
            value: t.id.to_string(),
            label: display_name(t.id),
        })
        .collect();
    let next = listed.next_cursor.as_deref().map(|c| filter.next_page(c));
    render(
        StatusCode::OK,
        &AccessPage {
            frame: page.frame,
            rows: listed.entries.into_iter().map(row).collect(),
            filter,
            apps,
            types,
            next,
        },
    )
}

/// `GET /v1/audit`'s answer to the filter, through its handler.
async fn audit_page(
    access: crate::api::auth::OwnerAccess,
    filter: &AccessFilter,
) -> Result<crate::wire::audit::AuditPage, Problem> {
    audit_entries(access, &filter.api_query()?).await
}

/// `GET /v1/audit?{query}` through its handler, for any owner page.
pub async fn audit_entries(
    access: crate::api::auth::OwnerAccess,
    query: &str,
) -> Result<crate::wire::audit::AuditPage, Problem> {
    let q = super::owner::api_query::<audit::AuditQuery>(query)?;
    audit::list(access, ApiQuery(q)).await.map(|Json(p)| p)
}
