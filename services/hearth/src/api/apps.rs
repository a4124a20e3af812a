//! The owner's API for apps: register, list, change, grant, mint
//! credentials, revoke. Every change is an event in the encrypted log.

use axum::http::StatusCode;
use axum::Json;
use uuid::Uuid;

use super::auth::OwnerAccess;
use super::problem::{ApiJson, ApiPath, BodyErrors, CommonErrors, Problem};
use crate::apps::{digest, new_secret, App, Apps};
use crate::crypto;
use crate::log::event::{AppKind, AppRecord, Event, GrantChange, TokenKind, TokenRecord};
use crate::log::writer::Write;
use crate::oauth::redirect;
use crate::samples::lookup_type;
use crate::wire::apps as wire;
use crate::wire::apps::ClientType;
use crate::wire::{ErrorCode, ProblemDetails};

const MAX_NAME: usize = 100;
const MAX_TEXT: usize = 2000;
const MAX_URL: usize = 2000;
const MAX_REDIRECTS: usize = 10;
const MAX_CREDENTIAL_NAME: usize = 100;

fn text(field: &str, value: &str, min: usize, max: usize) -> Result<String, Problem> {
    let n = value.chars().count();
    if n < min || n > max {
        return Err(Problem::invalid(
            None,
            field,
            format!("between {min} and {max} characters"),
        ));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Problem::invalid(None, field, "control characters"));
    }
    Ok(value.to_string())
}

fn policy_url(value: &str) -> Result<String, Problem> {
    let ok = value.len() <= MAX_URL
        && url::Url::parse(value)
            .is_ok_and(|u| matches!(u.scheme(), "https" | "http") && u.host().is_some());
    if !ok {
        return Err(Problem::invalid(
            None,
            "privacy_policy_url",
            "an absolute http(s) URL",
        ));
    }
    Ok(value.to_string())
}

fn redirect_uris(values: &[String]) -> Result<Vec<String>, Problem> {
    if values.is_empty() || values.len() > MAX_REDIRECTS {
        return Err(Problem::invalid(
            None,
            "redirect_uris",
            format!("1 to {MAX_REDIRECTS} redirect URIs"),
        ));
    }
    for v in values {
        if v.len() > MAX_URL {
            return Err(Problem::invalid(None, "redirect_uris", "URI too long"));
        }
        redirect::validate_registered(v)
            .map_err(|e| Problem::invalid(None, "redirect_uris", format!("{v}: {e}")))?;
    }
    Ok(values.to_vec())
}

fn app_wire(app: &App) -> wire::App {
    let r = &app.record;
    wire::App {
        id: r.app_id.clone(),
        client_id: r.app_id.clone(),
        name: r.name.clone(),
        description: r.description.clone(),
        purpose: r.purpose.clone(),
        privacy_policy_url: r.privacy_policy_url.clone(),
        redirect_uris: r.redirect_uris.clone(),
        client_type: if r.secret_hash.is_some() {
            ClientType::Confidential
        } else {
            ClientType::Public
        },
        kind: match r.kind {
            AppKind::App => wire::AppKind::App,
            AppKind::Research => wire::AppKind::Research,
        },
        grants: app
            .grants
            .iter()
            .map(|(ty, g)| {
                let state = wire::GrantState {
                    read: g.read,
                    write: g.write,
                };
                (ty.clone(), state)
            })
            .collect(),
        client_secret: None,
    }
}

/// The app as it is now, after a change.
fn current(access: &OwnerAccess, id: &str) -> Result<wire::App, Problem> {
    let registry = access.0.apps.read();
    Ok(app_wire(registry.app(id).ok_or_else(Problem::not_found)?))
}

async fn log(access: &OwnerAccess, event: Event) -> Result<(), Problem> {
    access
        .0
        .open
        .writer
        .write(Write::Registry(event))
        .await
        .map(|_| ())
        .map_err(|_| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::StorageUnavailable,
                "the change could not be stored",
            )
        })
}

fn known_app(apps: &Apps, id: &str) -> Result<AppRecord, Problem> {
    apps.read()
        .app(id)
        .map(|a| a.record.clone())
        .ok_or_else(Problem::not_found)
}

/// Registers an app (an OAuth client).
#[utoipa::path(post, path = "/v1/apps", tag = "apps", operation_id = "register_app",
    request_body = wire::NewApp,
    responses(
        (status = 201, description = "Registered; a confidential client's secret is shown this once", body = wire::App),
        (status = 403, description = "Only the owner manages apps", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors, BodyErrors,
    ),
    security(("owner" = [])))]
pub async fn create(
    access: OwnerAccess,
    ApiJson(body): ApiJson<wire::NewApp>,
) -> Result<(StatusCode, Json<wire::App>), Problem> {
    let secret = (body.client_type == ClientType::Confidential).then(|| new_secret("hcs_"));
    let record = AppRecord {
        app_id: format!("app_{}", hex::encode(crypto::random_bytes::<12>())),
        name: text("name", &body.name, 1, MAX_NAME)?,
        description: text("description", &body.description, 0, MAX_TEXT)?,
        purpose: text("purpose", &body.purpose, 1, MAX_TEXT)?,
        privacy_policy_url: policy_url(&body.privacy_policy_url)?,
        redirect_uris: redirect_uris(&body.redirect_uris)?,
        kind: match body.kind {
            Some(wire::AppKind::Research) => AppKind::Research,
            _ => AppKind::App,
        },
        secret_hash: secret.as_deref().map(digest),
        created_us: access.0.apps.clock.now_us(),
    };
    let id = record.app_id.clone();
    log(&access, Event::AppRegistered(record)).await?;
    let mut out = {
        let registry = access.0.apps.read();
        app_wire(registry.app(&id).ok_or_else(Problem::internal)?)
    };
    // Shown once; only its hash is kept.
    out.client_secret = secret;
    Ok((StatusCode::CREATED, Json(out)))
}

/// Every registered app with its grants.
#[utoipa::path(get, path = "/v1/apps", tag = "apps", operation_id = "list_apps",
    responses(
        (status = 200, body = wire::AppList),
        (status = 403, description = "Only the owner manages apps", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors,
    ),
    security(("owner" = [])))]
pub async fn list(access: OwnerAccess) -> Json<wire::AppList> {
    let registry = access.0.apps.read();
    Json(wire::AppList {
        apps: registry.apps().map(app_wire).collect(),
    })
}

/// One app with its grants.
#[utoipa::path(get, path = "/v1/apps/{id}", tag = "apps", operation_id = "get_app",
    params(("id" = String, Path, description = "The app's id (its `client_id`)")),
    responses(
        (status = 200, body = wire::App),
        (status = 403, description = "Only the owner manages apps", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such app", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors,
    ),
    security(("owner" = [])))]
pub async fn get_one(
    access: OwnerAccess,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<wire::App>, Problem> {
    current(&access, &id).map(Json)
}

/// Changes an app's registration; absent fields stay as they are.
#[utoipa::path(patch, path = "/v1/apps/{id}", tag = "apps", operation_id = "update_app",
    params(("id" = String, Path, description = "The app's id (its `client_id`)")),
    request_body = wire::AppChanges,
    responses(
        (status = 200, description = "The app as changed", body = wire::App),
        (status = 403, description = "Only the owner manages apps", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such app", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors, BodyErrors,
    ),
    security(("owner" = [])))]
pub async fn update(
    access: OwnerAccess,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<wire::AppChanges>,
) -> Result<Json<wire::App>, Problem> {
    let mut record = known_app(&access.0.apps, &id)?;
    if let Some(v) = &body.name {
        record.name = text("name", v, 1, MAX_NAME)?;
    }
    if let Some(v) = &body.description {
        record.description = text("description", v, 0, MAX_TEXT)?;
    }
    if let Some(v) = &body.purpose {
        record.purpose = text("purpose", v, 1, MAX_TEXT)?;
    }
    if let Some(v) = &body.privacy_policy_url {
        record.privacy_policy_url = policy_url(v)?;
    }
    if let Some(v) = &body.redirect_uris {
        record.redirect_uris = redirect_uris(v)?;
    }
    log(&access, Event::AppRegistered(record)).await?;
    current(&access, &id).map(Json)
}

/// Revokes the app entirely: registration, grants and every token.
#[utoipa::path(delete, path = "/v1/apps/{id}", tag = "apps", operation_id = "remove_app",
    params(("id" = String, Path, description = "The app's id (its `client_id`)")),
    responses(
        (status = 204, description = "Removed, with its grants and tokens"),
        (status = 403, description = "Only the owner manages apps", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such app", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors,
    ),
    security(("owner" = [])))]
pub async fn remove(
    access: OwnerAccess,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, Problem> {
    known_app(&access.0.apps, &id)?;
    log(&access, Event::AppRemoved { app_id: id }).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn grant_changes(
    read: impl IntoIterator<Item = (String, bool)>,
    write: impl IntoIterator<Item = (String, bool)>,
) -> Result<Vec<GrantChange>, Problem> {
    let mut out = Vec::new();
    for (is_write, items) in [
        (false, read.into_iter().collect::<Vec<_>>()),
        (true, write.into_iter().collect()),
    ] {
        for (type_id, allowed) in items {
            lookup_type(None, &type_id)?;
            out.push(GrantChange {
                type_id,
                write: is_write,
                allowed,
            });
        }
    }
    Ok(out)
}

/// Grants or denies types to an app: a grant change the app sees at once.
#[utoipa::path(patch, path = "/v1/apps/{id}/grants", tag = "apps", operation_id = "set_grants",
    params(("id" = String, Path, description = "The app's id (its `client_id`)")),
    request_body = wire::GrantChanges,
    responses(
        (status = 200, description = "The app with its grants as changed", body = wire::App),
        (status = 403, description = "Only the owner manages apps", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such app", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors, BodyErrors,
    ),
    security(("owner" = [])))]
pub async fn set_grants(
    access: OwnerAccess,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<wire::GrantChanges>,
) -> Result<Json<wire::App>, Problem> {
    known_app(&access.0.apps, &id)?;
    let changes = grant_changes(body.read, body.write)?;
    if !changes.is_empty() {
        log(
            &access,
            Event::GrantsChanged {
                app_id: id.clone(),
                changes,
            },
        )
        .await?;
    }
    current(&access, &id).map(Json)
}

fn credential_wire(t: &TokenRecord) -> wire::Credential {
    wire::Credential {
        id: Uuid::from_bytes(t.id),
        name: t.name.clone(),
        scope: t.scope.join(" "),
        created: chrono::DateTime::from_timestamp_micros(t.issued_us).map(|d| d.to_rfc3339()),
        token: None,
    }
}

/// Mints a named, long-lived credential for a script or device: the chosen
/// types are granted to the app, and the credential's scope asks for them.
#[utoipa::path(post, path = "/v1/apps/{id}/credentials", tag = "apps", operation_id = "mint_credential",
    params(("id" = String, Path, description = "The app's id (its `client_id`)")),
    request_body = wire::NewCredential,
    responses(
        (status = 201, description = "Minted; the token is shown this once", body = wire::Credential),
        (status = 403, description = "Only the owner manages apps", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such app", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors, BodyErrors,
    ),
    security(("owner" = [])))]
pub async fn mint_credential(
    access: OwnerAccess,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<wire::NewCredential>,
) -> Result<(StatusCode, Json<wire::Credential>), Problem> {
    known_app(&access.0.apps, &id)?;
    let name = text("name", &body.name, 1, MAX_CREDENTIAL_NAME)?;
    let changes = grant_changes(
        body.read.iter().map(|t| (t.clone(), true)),
        body.write.iter().map(|t| (t.clone(), true)),
    )?;
    let scope: Vec<String> = changes
        .iter()
        .map(|c| format!("{}:{}", if c.write { "write" } else { "read" }, c.type_id))
        .collect();
    if !changes.is_empty() {
        log(
            &access,
            Event::GrantsChanged {
                app_id: id.clone(),
                changes,
            },
        )
        .await?;
    }
    let secret = new_secret("hdc_");
    let record = TokenRecord {
        hash: digest(&secret),
        id: crypto::random_bytes(),
        app_id: id,
        kind: TokenKind::Credential,
        family: crypto::random_bytes(),
        scope,
        name: Some(name),
        issued_us: access.0.apps.clock.now_us(),
        expires_us: None,
    };
    let out = wire::Credential {
        token: Some(secret),
        ..credential_wire(&record)
    };
    log(
        &access,
        Event::TokensIssued {
            tokens: vec![record],
            spent: None,
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// The app's credentials (never their tokens).
#[utoipa::path(get, path = "/v1/apps/{id}/credentials", tag = "apps", operation_id = "list_credentials",
    params(("id" = String, Path, description = "The app's id (its `client_id`)")),
    responses(
        (status = 200, body = wire::CredentialList),
        (status = 403, description = "Only the owner manages apps", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such app", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors,
    ),
    security(("owner" = [])))]
pub async fn list_credentials(
    access: OwnerAccess,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<wire::CredentialList>, Problem> {
    known_app(&access.0.apps, &id)?;
    let registry = access.0.apps.read();
    Ok(Json(wire::CredentialList {
        credentials: registry
            .credentials(&id)
            .into_iter()
            .map(credential_wire)
            .collect(),
    }))
}

/// Revokes one credential.
#[utoipa::path(delete, path = "/v1/apps/{id}/credentials/{credential}", tag = "apps", operation_id = "revoke_credential",
    params(("id" = String, Path, description = "The app's id (its `client_id`)"), ("credential" = String, Path, description = "The credential's id (a UUID)")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "Only the owner manages apps", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such app or credential", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors,
    ),
    security(("owner" = [])))]
pub async fn revoke_credential(
    access: OwnerAccess,
    ApiPath((id, credential)): ApiPath<(String, String)>,
) -> Result<StatusCode, Problem> {
    let cred = Uuid::parse_str(&credential).map_err(|_| Problem::not_found())?;
    let hash = access
        .0
        .apps
        .read()
        .credential_by_id(&id, cred.as_bytes())
        .map(|t| t.hash)
        .ok_or_else(Problem::not_found)?;
    log(
        &access,
        Event::TokensRevoked {
            hashes: vec![hash],
            families: vec![],
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
