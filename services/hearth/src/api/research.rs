//! Research studies over HTTP: the owner's routes (add, list, remove, the
//! consent document and decision, the receipt, withdrawal), the store's
//! public signing keys, and the studies' SMART Backend Services discovery
//! and token endpoints. The substance is in [`crate::research`].

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::auth::OwnerAccess;
use super::oauth::issuer;
use super::problem::{ApiJson, ApiPath, BodyErrors, CommonErrors, Problem};
use super::AppState;
use crate::crypto;
use crate::log::event::Event;
use crate::log::writer::Write;
use crate::oauth::wire::{ErrorResponse, Params};
use crate::research::consent::{self, ReceiptClaims, RECEIPT_TYPE, WITHDRAWAL_NOTICE};
use crate::research::event::{ConsentRecord, ResearchEvent, StudyRecord};
use crate::research::registry::StudyEntry;
use crate::research::smart::{TokenError, TOKEN_TTL};
use crate::research::{rfc3339, signing, study};
use crate::wire::research as wire;
use crate::wire::{ErrorCode, ProblemDetails};

/// Where studies send token requests, below the issuer.
pub const TOKEN_PATH: &str = "/fhir/token";

fn study_wire(entry: &StudyEntry) -> wire::Study {
    wire::Study {
        id: entry.record.study_id.clone(),
        client_id: entry.record.study_id.clone(),
        status: entry.status(),
        added_at: rfc3339(entry.record.added_us),
        description: entry.description.clone(),
    }
}

async fn log(access: &OwnerAccess, event: ResearchEvent) -> Result<(), Problem> {
    access
        .0
        .open
        .writer
        .write(Write::Registry(Event::Research(event)))
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

fn with_study<T>(
    access: &OwnerAccess,
    id: &str,
    f: impl FnOnce(&StudyEntry) -> Result<T, Problem>,
) -> Result<T, Problem> {
    let registry = access.0.apps.read();
    f(registry.studies().get(id).ok_or_else(Problem::not_found)?)
}

fn withdrawn() -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        ErrorCode::StudyWithdrawn,
        "the owner withdrew from this study; it cannot be consented to again",
    )
}

/// Adds a study from its description. Nothing leaves until the owner
/// consents.
#[utoipa::path(post, path = "/v1/studies", tag = "research", operation_id = "add_study",
    request_body = wire::StudyDescription,
    responses(
        (status = 201, description = "Added, awaiting the owner's consent", body = wire::Study),
        (status = 403, description = "Only the owner manages studies", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors, BodyErrors,
    ),
    security(("owner" = [])))]
pub async fn create(
    access: OwnerAccess,
    ApiJson(description): ApiJson<wire::StudyDescription>,
) -> Result<(StatusCode, Json<wire::Study>), Problem> {
    study::validate(&description).map_err(|e| Problem::invalid(None, &e.field, e.message))?;
    let record = StudyRecord {
        study_id: format!("study_{}", hex::encode(crypto::random_bytes::<12>())),
        description: serde_json::to_string(&description).map_err(|_| Problem::internal())?,
        added_us: access.0.apps.clock.now_us(),
    };
    let id = record.study_id.clone();
    log(&access, ResearchEvent::StudyAdded(record)).await?;
    let study = with_study(&access, &id, |s| Ok(study_wire(s)))?;
    Ok((StatusCode::CREATED, Json(study)))
}

/// Every study the owner added.
#[utoipa::path(get, path = "/v1/studies", tag = "research", operation_id = "list_studies",
    responses(
        (status = 200, body = wire::StudyList),
        (status = 403, description = "Only the owner manages studies", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors,
    ),
    security(("owner" = [])))]
pub async fn list(access: OwnerAccess) -> Json<wire::StudyList> {
    let registry = access.0.apps.read();
    Json(wire::StudyList {
        studies: registry.studies().iter().map(study_wire).collect(),
    })
}

/// One study.
#[utoipa::path(get, path = "/v1/studies/{id}", tag = "research", operation_id = "get_study",
    params(("id" = String, Path, description = "The study's id (its client id)")),
    responses(
        (status = 200, body = wire::Study),
        (status = 403, description = "Only the owner manages studies", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such study", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors,
    ),
    security(("owner" = [])))]
pub async fn get_one(
    access: OwnerAccess,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<wire::Study>, Problem> {
    with_study(&access, &id, |s| Ok(Json(study_wire(s))))
}

/// Removes a study with the owner's decision on it: its tokens stop at once.
#[utoipa::path(delete, path = "/v1/studies/{id}", tag = "research", operation_id = "remove_study",
    params(("id" = String, Path, description = "The study's id (its client id)")),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "Only the owner manages studies", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such study", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors,
    ),
    security(("owner" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    access: OwnerAccess,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, Problem> {
    with_study(&access, &id, |_| Ok(()))?;
    log(
        &access,
        ResearchEvent::StudyRemoved {
            study_id: id.clone(),
        },
    )
    .await?;
    state.research.tokens.revoke_study(&id);
    state
        .research
        .exports
        .withdraw(&**state.store.storage(), Some(&access.0.open), &id)
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// The consent document: its sections, one switch per requested type (all
/// off until the owner decides) and a summary of exactly what leaves.
#[utoipa::path(get, path = "/v1/studies/{id}/consent", tag = "research", operation_id = "get_consent",
    params(("id" = String, Path, description = "The study's id")),
    responses(
        (status = 200, body = wire::ConsentDocument),
        (status = 403, description = "Only the owner decides", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such study", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors,
    ),
    security(("owner" = [])))]
pub async fn get_consent(
    access: OwnerAccess,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<wire::ConsentDocument>, Problem> {
    with_study(&access, &id, |s| {
        let decided = s.consent.as_ref().map(|c| rfc3339(c.decided_us));
        Ok(Json(consent::document(s, decided)))
    })
}

/// Records the owner's decision (the types switched on) as an encrypted
/// event, and returns the consent receipt Hearth signed for it. A later
/// decision replaces an earlier one.
#[utoipa::path(post, path = "/v1/studies/{id}/consent", tag = "research", operation_id = "give_consent",
    params(("id" = String, Path, description = "The study's id")),
    request_body = wire::ConsentDecision,
    responses(
        (status = 200, description = "Recorded; the receipt is signed", body = wire::ConsentGiven),
        (status = 403, description = "Only the owner decides", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such study", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 409, description = "The owner withdrew from this study (`study_withdrawn`)", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors, BodyErrors,
    ),
    security(("owner" = [])))]
pub async fn give_consent(
    State(state): State<AppState>,
    headers: HeaderMap,
    access: OwnerAccess,
    ApiPath(id): ApiPath<String>,
    ApiJson(decision): ApiJson<wire::ConsentDecision>,
) -> Result<Json<wire::ConsentGiven>, Problem> {
    let iss = issuer(&state, &headers);
    let decided_us = access.0.apps.clock.now_us();
    let (mut record, claims) = with_study(&access, &id, |s| {
        if s.withdrawn_us.is_some() {
            return Err(withdrawn());
        }
        let types = consent::check_decision(s, &decision.types, decision.routes)
            .map_err(|e| Problem::invalid(None, "types", e.to_string()))?;
        let record = ConsentRecord {
            study_id: id.clone(),
            types,
            routes: decision.routes,
            decided_us,
            receipt: String::new(),
        };
        let claims = serde_json::to_value(ReceiptClaims::new(&iss, s, &record))
            .map_err(|_| Problem::internal())?;
        Ok((record, claims))
    })?;
    record.receipt = signing::sign(
        &**state.store.storage(),
        &access.0.open.signing_wrap,
        RECEIPT_TYPE,
        &claims,
    )
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "signing a consent receipt failed");
        Problem::internal()
    })?;
    let answer = wire::ConsentGiven {
        study_id: id.clone(),
        types: record.types.clone(),
        routes: record.routes,
        decided_at: rfc3339(decided_us),
        receipt: record.receipt.clone(),
    };
    log(&access, ResearchEvent::ConsentGiven(record)).await?;
    // A withdrawal that raced this decision wins.
    with_study(&access, &id, |s| match s.withdrawn_us {
        Some(_) => Err(withdrawn()),
        None => Ok(()),
    })?;
    Ok(Json(answer))
}

/// The consent receipt of the decision in force (also after a
/// withdrawal): a compact JWS to keep or hand to anyone who needs to
/// verify it against `/.well-known/jwks.json`.
#[utoipa::path(get, path = "/v1/studies/{id}/receipt", tag = "research", operation_id = "get_receipt",
    params(("id" = String, Path, description = "The study's id")),
    responses(
        (status = 200, description = "The receipt", body = String, content_type = "application/jwt",
            headers(("Content-Disposition" = String, description = "`attachment`, named after the study"))),
        (status = 403, description = "Only the owner downloads receipts", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such study, or no decision yet", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors,
    ),
    security(("owner" = [])))]
pub async fn receipt(
    access: OwnerAccess,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, Problem> {
    let receipt = with_study(&access, &id, |s| {
        s.consent
            .as_ref()
            .map(|c| c.receipt.clone())
            .ok_or_else(Problem::not_found)
    })?;
    let disposition = format!("attachment; filename=\"consent-receipt-{id}.jwt\"");
    let mut response = receipt.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwt"),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// Withdraws from a study: its tokens stop at once and every later request
/// it makes is refused. Data it already received may continue to be
/// analysed; the notice says so. Withdrawing again answers the same.
#[utoipa::path(post, path = "/v1/studies/{id}/withdraw", tag = "research", operation_id = "withdraw_from_study",
    params(("id" = String, Path, description = "The study's id")),
    responses(
        (status = 200, description = "Withdrawn", body = wire::Withdrawn),
        (status = 403, description = "Only the owner withdraws", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 404, description = "No such study", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors,
    ),
    security(("owner" = [])))]
pub async fn withdraw(
    State(state): State<AppState>,
    access: OwnerAccess,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<wire::Withdrawn>, Problem> {
    let already = with_study(&access, &id, |s| Ok(s.withdrawn_us))?;
    if already.is_none() {
        log(
            &access,
            ResearchEvent::StudyWithdrawn {
                study_id: id.clone(),
            },
        )
        .await?;
    }
    state.research.tokens.revoke_study(&id);
    state
        .research
        .exports
        .withdraw(&**state.store.storage(), Some(&access.0.open), &id)
        .await;
    let at = with_study(&access, &id, |s| {
        s.withdrawn_us.ok_or_else(Problem::internal)
    })?;
    Ok(Json(wire::Withdrawn {
        study_id: id,
        withdrawn_at: rfc3339(at),
        notice: WITHDRAWAL_NOTICE.into(),
    }))
}

/// The store's public signing keys (JWKS), with which consent receipts
/// verify; empty until the first receipt is signed.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "research", operation_id = "store_jwks",
    responses(
        (status = 200, body = wire::StoreJwks),
        (status = 503, description = "The database is unreachable", body = ProblemDetails, content_type = "application/problem+json"),
    ))]
pub async fn jwks(State(state): State<AppState>) -> Result<Json<wire::StoreJwks>, Problem> {
    let keys = signing::published(&**state.store.storage())
        .await
        .map_err(|_| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::StorageUnavailable,
                "the keys could not be read",
            )
        })?;
    Ok(Json(wire::StoreJwks { keys }))
}

fn smart_configuration_for(state: &AppState, headers: &HeaderMap) -> wire::SmartConfiguration {
    let iss = issuer(state, headers);
    wire::SmartConfiguration {
        jwks_uri: format!("{iss}/.well-known/jwks.json"),
        token_endpoint: format!("{iss}{TOKEN_PATH}"),
        token_endpoint_auth_methods_supported: vec!["private_key_jwt"],
        token_endpoint_auth_signing_alg_values_supported: vec!["RS384", "ES384"],
        grant_types_supported: vec!["client_credentials"],
        scopes_supported: vec!["system/Observation.rs", "system/Patient.rs"],
        capabilities: vec!["client-confidential-asymmetric"],
        issuer: iss,
    }
}

/// SMART configuration for studies (Backend Services).
#[utoipa::path(get, path = "/.well-known/smart-configuration", tag = "research",
    operation_id = "smart_configuration",
    responses((status = 200, body = wire::SmartConfiguration)))]
pub async fn smart_configuration(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Json<wire::SmartConfiguration> {
    Json(smart_configuration_for(&state, &headers))
}

/// The same, below the FHIR base URL, where SMART clients look for it.
#[utoipa::path(get, path = "/fhir/.well-known/smart-configuration", tag = "research",
    operation_id = "fhir_smart_configuration",
    responses((status = 200, body = wire::SmartConfiguration)))]
pub async fn fhir_smart_configuration(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Json<wire::SmartConfiguration> {
    Json(smart_configuration_for(&state, &headers))
}

fn token_error(error: TokenError) -> Response {
    let status = match error {
        TokenError::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    let body = ErrorResponse {
        error: error.code().to_string(),
        error_description: error.to_string(),
    };
    (status, Json(body)).into_response()
}

/// A study's token request: `client_credentials` with a signed client
/// assertion (RFC 7523). Every failure of the assertion is
/// `invalid_client`.
#[utoipa::path(post, path = "/fhir/token", tag = "research", operation_id = "study_token",
    request_body(content = wire::StudyTokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "An access token of at most 300 seconds; no refresh token", body = wire::StudyToken,
            headers(("Pragma" = String, description = "`no-cache`"))),
        (status = 400, description = "`invalid_client`, `invalid_request`, `invalid_scope` or `unsupported_grant_type`", body = ErrorResponse),
        (status = 413, description = "The body is larger than the server accepts", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 429, description = "Too many token requests from this address", body = ProblemDetails, content_type = "application/problem+json"),
        (status = 503, description = "The store has not been unlocked since the server started, or the request could not be recorded", content(
            (ProblemDetails = "application/problem+json"),
            (ErrorResponse = "application/json"),
        )),
    ))]
pub async fn token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(p) = state.token_limiter.take(peer.ip()) {
        return p.into_response();
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::PayloadTooLarge,
                "the request body is larger than the server accepts",
            )
            .into_response()
        }
        Err(_) => return token_error(TokenError::InvalidRequest("the body could not be read")),
    };
    if !state.store.registry_loaded() {
        return Problem::from(crate::lock::Unavailable::Sealed).into_response();
    }
    if !crate::oauth::wire::is_form(&headers) {
        return token_error(TokenError::InvalidRequest("send a form"));
    }
    let token_url = format!("{}{TOKEN_PATH}", issuer(&state, &headers));
    let issued = state
        .research
        .issue_token(
            &**state.store.storage(),
            state.store.apps(),
            &token_url,
            &Params::parse(&body),
        )
        .await;
    match issued {
        Ok(issued) => {
            let scope: Vec<&str> = issued.scopes.iter().map(|s| s.as_str()).collect();
            let mut response = Json(wire::StudyToken {
                access_token: issued.access_token,
                token_type: "bearer",
                expires_in: TOKEN_TTL.as_secs(),
                scope: scope.join(" "),
            })
            .into_response();
            response
                .headers_mut()
                .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            response
        }
        Err(e) => token_error(e),
    }
}
