//! The owner's app pages: each app with its purpose and privacy policy,
//! a switch per type it may read and write (as on iOS), its credentials
//! (minted with the token shown once, revoked one by one or all at once),
//! and "delete all data from this app", which destroys the keys its
//! samples were sealed under. Registration of a new app too.
//!
//! Every change goes through the same handler as the JSON API.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::display_name;
use super::owner::{message_page, urlencoding, OwnerForm, OwnerFrame, OwnerPage};
use super::render;
use crate::api::problem::{ApiJson, ApiPath, Problem};
use crate::api::{apps, erasure, AppState};
use crate::oauth::wire::Params;
use crate::wire::apps::{App, ClientType, GrantChanges, NewApp, NewCredential};
use crate::wire::audit::AuditEntry;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/apps", get(list_page).post(register_form))
        .route("/apps/{id}", get(app_page))
        .route("/apps/{id}/grants", post(grants_form))
        .route("/apps/{id}/credentials", post(mint_form))
        .route(
            "/apps/{id}/credentials/{credential}/revoke",
            post(revoke_form),
        )
        .route("/apps/{id}/revoke-all", post(revoke_all_form))
        .route("/apps/{id}/erase", post(erase_form))
}

struct AppRow {
    id: String,
    name: String,
    purpose: String,
}

#[derive(Template)]
#[template(path = "apps.html")]
struct AppsPage {
    frame: OwnerFrame,
    apps: Vec<AppRow>,
    error: Option<String>,
}

async fn list_page(page: OwnerPage) -> Response {
    show_list(page, StatusCode::OK, None).await
}

async fn show_list(page: OwnerPage, status: StatusCode, error: Option<String>) -> Response {
    let Json(list) = apps::list(page.access).await;
    let apps = list
        .apps
        .into_iter()
        .map(|a| AppRow {
            id: a.id,
            name: a.name,
            purpose: a.purpose,
        })
        .collect();
    render(
        status,
        &AppsPage {
            frame: page.frame,
            apps,
            error,
        },
    )
}

/// What a refused change says on the page: the first field's message.
fn problem_text(p: &Problem) -> String {
    p.errors.first().map_or_else(
        || p.detail.clone(),
        |e| format!("{}: {}", e.field, e.message),
    )
}

async fn register_form(OwnerForm { page, params }: OwnerForm) -> Response {
    let field = |name: &str| params.one(name).unwrap_or("").to_string();
    let new = NewApp {
        name: field("name"),
        description: field("description"),
        purpose: field("purpose"),
        privacy_policy_url: field("privacy_policy_url"),
        redirect_uris: vec![field("redirect_uri")],
        client_type: match params.one("client_type") {
            Some("confidential") => ClientType::Confidential,
            _ => ClientType::Public,
        },
        kind: None,
    };
    let again = page.clone();
    match apps::create(page.access, ApiJson(new)).await {
        Ok((_, Json(app))) => match app.client_secret {
            // A confidential client's secret is shown this once.
            Some(secret) => {
                show_app(again, app.id, StatusCode::CREATED, Shown::Secret(secret)).await
            }
            None => Redirect::to(&format!("/apps/{}", urlencoding(&app.id))).into_response(),
        },
        Err(p) if p.status == StatusCode::BAD_REQUEST => {
            show_list(again, StatusCode::BAD_REQUEST, Some(problem_text(&p))).await
        }
        Err(p) => message_page(p.status, "The app cannot be registered", &p.detail),
    }
}

struct GrantRow {
    type_id: String,
    name: String,
    read: bool,
    write: bool,
}

struct CredentialRow {
    id: String,
    name: String,
    scope: String,
    created: String,
}

/// Something shown once on the app's page.
enum Shown {
    Nothing,
    Error(String),
    Token(String),
    Secret(String),
    Erased(String),
}

#[derive(Template)]
#[template(path = "app.html")]
struct AppPage {
    frame: OwnerFrame,
    app: App,
    grants: Vec<GrantRow>,
    credentials: Vec<CredentialRow>,
    error: Option<String>,
    token: Option<String>,
    secret: Option<String>,
    erased: Option<String>,
    /// From the audit: the last day it read and wrote, and what.
    last_read: Option<String>,
    last_write: Option<String>,
}

/// The newest day of `kind` in the app's audit, with the types used then.
async fn last_use(page: &OwnerPage, id: &str, kind: &str) -> Result<Option<String>, Problem> {
    let query = format!("kind={kind}&app={}&limit=50", urlencoding(id));
    let listed = super::access::audit_entries(page.access.clone(), &query).await?;
    let mut newest: Option<(String, Vec<String>)> = None;
    for entry in listed.entries {
        let (AuditEntry::AppRead(u) | AuditEntry::AppWrite(u)) = entry else {
            continue;
        };
        match &mut newest {
            Some((day, types)) if *day == u.day => types.push(display_name(&u.type_id)),
            Some(_) => {}
            None => newest = Some((u.day, vec![display_name(&u.type_id)])),
        }
    }
    Ok(newest.map(|(day, types)| format!("{day} ({})", types.join(", "))))
}

async fn app_page(page: OwnerPage, Path(id): Path<String>) -> Response {
    show_app(page, id, StatusCode::OK, Shown::Nothing).await
}

async fn show_app(page: OwnerPage, id: String, status: StatusCode, shown: Shown) -> Response {
    let app = match apps::get_one(page.access.clone(), ApiPath(id.clone())).await {
        Ok(Json(app)) => app,
        Err(p) => return message_page(p.status, "No such app", &p.detail),
    };
    let (last_read, last_write) = match (
        last_use(&page, &id, "app_read").await,
        last_use(&page, &id, "app_write").await,
    ) {
        (Ok(read), Ok(write)) => (read, write),
        (Err(p), _) | (_, Err(p)) => {
            return message_page(p.status, "The audit cannot be read", &p.detail)
        }
    };
    let credentials = match apps::list_credentials(page.access, ApiPath(id)).await {
        Ok(Json(list)) => list.credentials,
        Err(p) => return message_page(p.status, "No such app", &p.detail),
    };
    let grants = app
        .grants
        .iter()
        .map(|(type_id, g)| GrantRow {
            name: display_name(type_id),
            type_id: type_id.clone(),
            read: g.read == Some(true),
            write: g.write == Some(true),
        })
        .collect();
    let credentials = credentials
        .into_iter()
        .map(|c| CredentialRow {
            id: c.id.to_string(),
            name: c.name.unwrap_or_default(),
            scope: c.scope,
            created: c
                .created
                .map(|c| c.get(..16).unwrap_or(&c).replace('T', " "))
                .unwrap_or_default(),
        })
        .collect();
    let (mut error, mut token, mut secret, mut erased) = (None, None, None, None);
    match shown {
        Shown::Nothing => {}
        Shown::Error(e) => error = Some(e),
        Shown::Token(t) => token = Some(t),
        Shown::Secret(s) => secret = Some(s),
        Shown::Erased(e) => erased = Some(e),
    }
    render(
        status,
        &AppPage {
            frame: page.frame,
            app,
            grants,
            credentials,
            error,
            token,
            secret,
            erased,
            last_read,
            last_write,
        },
    )
}

fn back_to(id: &str) -> Response {
    Redirect::to(&format!("/apps/{}", urlencoding(id))).into_response()
}

/// Every switch on the page is sent: a type missing from the form is off.
async fn grants_form(Path(id): Path<String>, OwnerForm { page, params }: OwnerForm) -> Response {
    let app = match apps::get_one(page.access.clone(), ApiPath(id.clone())).await {
        Ok(Json(app)) => app,
        Err(p) => return message_page(p.status, "No such app", &p.detail),
    };
    let on = |params: &Params, direction: &str| -> BTreeMap<String, bool> {
        let chosen: Vec<&str> = params.all(direction).collect();
        app.grants
            .keys()
            .map(|t| (t.clone(), chosen.contains(&t.as_str())))
            .collect()
    };
    let changes = GrantChanges {
        read: on(&params, "read"),
        write: on(&params, "write"),
    };
    match apps::set_grants(page.access, ApiPath(id.clone()), ApiJson(changes)).await {
        Ok(_) => back_to(&id),
        Err(p) => message_page(p.status, "The switches cannot be changed", &p.detail),
    }
}

/// `step_count, heart_rate` → the type ids, without blanks.
fn type_list(params: &Params, name: &str) -> Vec<String> {
    params
        .one(name)
        .unwrap_or("")
        .split([',', ' '])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

async fn mint_form(Path(id): Path<String>, OwnerForm { page, params }: OwnerForm) -> Response {
    let new = NewCredential {
        name: params.one("name").unwrap_or("").to_string(),
        read: type_list(&params, "read"),
        write: type_list(&params, "write"),
    };
    let again = page.clone();
    match apps::mint_credential(page.access, ApiPath(id.clone()), ApiJson(new)).await {
        Ok((_, Json(c))) => {
            let token = c.token.unwrap_or_default();
            show_app(again, id, StatusCode::CREATED, Shown::Token(token)).await
        }
        Err(p) if p.status == StatusCode::BAD_REQUEST => {
            show_app(
                again,
                id,
                StatusCode::BAD_REQUEST,
                Shown::Error(problem_text(&p)),
            )
            .await
        }
        Err(p) => message_page(p.status, "No credential was made", &p.detail),
    }
}

async fn revoke_form(
    Path((id, credential)): Path<(String, String)>,
    OwnerForm { page, .. }: OwnerForm,
) -> Response {
    match apps::revoke_credential(page.access, ApiPath((id.clone(), credential))).await {
        Ok(_) => back_to(&id),
        Err(p) => message_page(p.status, "The credential cannot be revoked", &p.detail),
    }
}

/// Revokes every credential the app holds; its grants stay as they are.
async fn revoke_all_form(Path(id): Path<String>, OwnerForm { page, .. }: OwnerForm) -> Response {
    let credentials = match apps::list_credentials(page.access.clone(), ApiPath(id.clone())).await {
        Ok(Json(list)) => list.credentials,
        Err(p) => return message_page(p.status, "No such app", &p.detail),
    };
    for c in credentials {
        let path = ApiPath((id.clone(), c.id.to_string()));
        if let Err(p) = apps::revoke_credential(page.access.clone(), path).await {
            return message_page(p.status, "Not every credential was revoked", &p.detail);
        }
    }
    back_to(&id)
}

/// Deletes all data from this app, once the owner ticked that they mean it.
async fn erase_form(Path(id): Path<String>, OwnerForm { page, params }: OwnerForm) -> Response {
    let again = page.clone();
    if let Err(p) = apps::get_one(page.access.clone(), ApiPath(id.clone())).await {
        return message_page(p.status, "No such app", &p.detail);
    }
    if params.one("confirm") != Some("yes") {
        let error = "Tick the box to confirm: deleted data cannot be brought back.".to_string();
        return show_app(again, id, StatusCode::BAD_REQUEST, Shown::Error(error)).await;
    }
    match erasure::erase_source(page.access, ApiPath(id.clone())).await {
        Ok(Json(erased)) => {
            let text = format!(
                "{} samples deleted; their keys are destroyed.",
                erased.samples_erased
            );
            show_app(again, id, StatusCode::OK, Shown::Erased(text)).await
        }
        Err(p) => message_page(p.status, "The data cannot be deleted", &p.detail),
    }
}
