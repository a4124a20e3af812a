//! `POST /v1/ingest/health-auto-export`: the Health Auto Export app pushes
//! here. The payload is mapped by [`crate::import::health_auto_export`];
//! each mapped sample then takes the path of `POST /v1/samples` — the same
//! validation, the same per-type write policy, the same writer — except
//! that a bad item is reported and the good ones are stored.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::Json;
use serde_json::Value;
use uuid::Uuid;

use super::auth::{Access, Caller};
use super::problem::{parse_json, BodyErrors, CommonErrors, JsonBody, Problem};
use super::samples::write_problem;
use super::AppState;
use crate::import::health_auto_export::{self as hae, PayloadError};
use crate::log::writer::{NewEntry, Write, WriteError, WriteOutcome};
use crate::policy;
use crate::samples::{self, MAX_BATCH};
use crate::wire::ingest::{IngestError, IngestOutcome};
use crate::wire::samples::NewSample;
use crate::wire::{ErrorCode, ProblemDetails};

/// The header the app sends a key in when set up with one.
const API_KEY: &str = "api-key";
/// Conflicting resends handled one at a time before every changed reading
/// is replaced at once.
const TARGETED_RETRIES: usize = 8;

/// The caller of an ingest request: `Authorization: Bearer` as everywhere,
/// or an app credential in the app's `api-key` header.
pub struct IngestAccess(Access);

impl FromRequestParts<AppState> for IngestAccess {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let key = parts
            .headers
            .get(API_KEY)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|k| !k.is_empty());
        let Some(key) = key.filter(|_| !parts.headers.contains_key(header::AUTHORIZATION)) else {
            return Access::from_request_parts(parts, state)
                .await
                .map(IngestAccess);
        };
        let open = state.store.open_store()?;
        let apps = state.store.apps().clone();
        let app = state
            .store
            .registry_loaded()
            .then(|| apps.authenticate(key))
            .flatten()
            .ok_or_else(Problem::unauthenticated)?;
        let caller = Caller::App(app);
        Ok(IngestAccess(Access {
            view: open.view(caller.clone(), apps.clone()),
            open,
            caller,
            apps,
        }))
    }
}

/// Stores a Health Auto Export push (REST API automation, JSON, version 2).
///
/// Authenticate with an app credential, as `Authorization: Bearer …` or in
/// the app's `api-key` header. Each reading gets a `sync_id` from its
/// metric, date and source, so overlapping resends store it once (and a
/// resend with other values replaces it). Every item needs `write:<type>`
/// for the type it maps to; items of other types are reported, not stored.
/// `207` lists every item not stored, the rest being stored.
#[utoipa::path(post, path = "/v1/ingest/health-auto-export", tag = "samples",
    operation_id = "ingest_health_auto_export",
    params(("api-key" = Option<String>, Header, description = "An app credential, instead of `Authorization: Bearer`")),
    request_body(content = Object, description = "`{\"data\":{\"metrics\":[…],\"workouts\":[…]}}` as the app sends it"),
    responses(
        (status = 200, description = "Every item was stored (or already was)", body = IngestOutcome),
        (status = 207, description = "Some items were not stored: `errors` lists each; the others were stored", body = IngestOutcome),
        (status = 409, description = "A reading was changed by another write at the same moment; send again", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors, BodyErrors,
    ),
    security(("apps" = []), ("app_key" = []), ("owner" = [])))]
pub async fn health_auto_export(
    IngestAccess(access): IngestAccess,
    JsonBody(bytes): JsonBody,
) -> Result<(StatusCode, Json<IngestOutcome>), Problem> {
    let payload: Value = parse_json(&bytes)?;
    drop(bytes);
    let plan = hae::plan(&payload).map_err(|e| match e {
        PayloadError::Shape(detail) => Problem::invalid(None, "data", detail),
        e @ PayloadError::TooManyItems => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooManySamples,
            e.to_string(),
        ),
    })?;
    drop(payload);
    let mut outcome = IngestOutcome {
        received: plan.received as u64,
        added: 0,
        replaced: 0,
        unchanged: 0,
        repeated: plan.repeated as u64,
        errors: plan
            .rejected
            .into_iter()
            .map(|r| IngestError {
                item: r.item,
                type_id: r.type_id,
                code: if r.not_imported {
                    ErrorCode::NotImported
                } else {
                    ErrorCode::InvalidInput
                },
                message: r.reason,
            })
            .collect(),
    };

    // Samples and workouts first: a route names its stored workout.
    let mut admitted = Vec::new();
    let mut slot_of = vec![None; plan.samples.len()];
    for (i, planned) in plan.samples.into_iter().enumerate() {
        if let Some(entry) = admit(
            &access,
            &mut outcome,
            planned.item,
            planned.type_id,
            planned.sample,
        ) {
            slot_of[i] = Some(admitted.len());
            admitted.push(entry);
        }
    }
    let ids = store(&access, admitted, &mut outcome).await?;

    let mut routes = Vec::new();
    for route in plan.routes {
        let Some(workout) = slot_of[route.workout].map(|slot| ids[slot]) else {
            outcome.errors.push(IngestError {
                item: route.item,
                type_id: Some("workout_route"),
                code: ErrorCode::InvalidInput,
                message: "its workout was not stored".into(),
            });
            continue;
        };
        let item = route.item.clone();
        let sample = route.sample(Uuid::from_u128(workout));
        if let Some(entry) = admit(&access, &mut outcome, item.clone(), "workout_route", sample) {
            match samples::check_routes(&access.view, std::slice::from_ref(&entry)) {
                Ok(()) => routes.push(entry),
                Err(e) => outcome.errors.push(IngestError {
                    item,
                    type_id: Some("workout_route"),
                    code: e.code,
                    message: e.to_string(),
                }),
            }
        }
    }
    store(&access, routes, &mut outcome).await?;

    let status = if outcome.errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::MULTI_STATUS
    };
    Ok((status, Json(outcome)))
}

/// Validates one mapped sample and checks the caller may write every type
/// it is stored as; a refusal becomes an error of the item.
fn admit(
    access: &Access,
    outcome: &mut IngestOutcome,
    item: String,
    type_id: &'static str,
    sample: NewSample<'static>,
) -> Option<NewEntry> {
    let entry = match samples::validate(0, sample) {
        Ok(entry) => entry,
        Err(e) => {
            outcome.errors.push(IngestError {
                item,
                type_id: Some(type_id),
                code: e.code,
                message: e.to_string(),
            });
            return None;
        }
    };
    for new in &entry.samples {
        if let Err(denied) = policy::check_write(&access.caller, &access.apps, new.type_index) {
            outcome.errors.push(IngestError {
                item,
                type_id: Some(type_id),
                code: ErrorCode::WriteNotAuthorized,
                message: denied.to_string(),
            });
            return None;
        }
    }
    Some(entry)
}

/// The version of the caller's own stored entry under `entry`'s sync
/// identifier, if there is one.
fn own_sync_version(access: &Access, entry: &NewEntry) -> Option<i64> {
    let sync = entry.sync.as_ref()?;
    let ty = entry.samples.last()?.type_index;
    access.view.own_sync_version(&sync.sync_id, ty)
}

/// Writes entries through the writer, in batches of at most
/// [`MAX_BATCH`]; returns the stored id of each entry.
///
/// A reading sent again with other values (a day's step count that grew
/// since the last push) replaces the stored one: its `sync_version` is
/// raised above the stored version.
async fn store(
    access: &Access,
    entries: Vec<NewEntry>,
    outcome: &mut IngestOutcome,
) -> Result<Vec<u128>, Problem> {
    let mut ids = Vec::with_capacity(entries.len());
    let source = access.caller.source().to_string();
    for chunk in entries.chunks(MAX_BATCH) {
        let mut chunk = chunk.to_vec();
        for entry in &mut chunk {
            if let Some(version) = own_sync_version(access, entry) {
                if let Some(sync) = &mut entry.sync {
                    sync.version = version;
                }
            }
        }
        let mut retries = 0;
        let mut replaced_all = false;
        let written = loop {
            let write = Write::AddSamples {
                source: source.clone(),
                entries: chunk.clone(),
            };
            match access.open.writer.write(write).await {
                Ok(written) => break written,
                Err(WriteError::SyncConflict { index }) if retries < TARGETED_RETRIES => {
                    retries += 1;
                    if let Some(sync) = &mut chunk[index].sync {
                        sync.version += 1;
                    }
                }
                Err(WriteError::SyncConflict { .. }) if !replaced_all => {
                    // Many readings changed: replace every stored one, the
                    // unchanged among them with their same values.
                    replaced_all = true;
                    for entry in &mut chunk {
                        if let Some(version) = own_sync_version(access, entry) {
                            if let Some(sync) = &mut entry.sync {
                                sync.version = sync.version.max(version + 1);
                            }
                        }
                    }
                }
                Err(e) => return Err(write_problem(e)),
            }
        };
        let WriteOutcome::Added {
            added,
            replaced,
            unchanged,
            ids: written_ids,
            ..
        } = written
        else {
            return Err(Problem::internal());
        };
        outcome.added += added as u64;
        outcome.replaced += replaced as u64;
        outcome.unchanged += unchanged as u64;
        ids.extend(written_ids);
    }
    Ok(ids)
}
