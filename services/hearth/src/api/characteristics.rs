//! Characteristics: facts about the owner (date of birth, biological sex,
//! blood type, skin type, wheelchair use), set by the owner alone and stored
//! as encrypted events. Reading follows the silent rule: a caller that may
//! not read one sees it unset.

use axum::http::StatusCode;
use axum::Json;
use serde_json::{Map, Value};

use super::auth::{Access, Caller};
use super::problem::{ApiJson, BodyErrors, CommonErrors, Problem};
use crate::catalogue;
use crate::log::writer::Write;
use crate::wire::queries::Characteristics;
use crate::wire::{ErrorCode, ProblemDetails};

/// The characteristics to store, as `(type id, value)`.
fn validate(
    body: Characteristics,
    today: jiff::civil::Date,
) -> Result<Vec<(String, String)>, Problem> {
    if let Some(text) = &body.date_of_birth {
        let field = "date_of_birth";
        let date: jiff::civil::Date = text
            .parse()
            .map_err(|_| Problem::invalid(None, field, "expected a date, YYYY-MM-DD"))?;
        if date.year() < 1900 || date > today {
            return Err(Problem::invalid(None, field, "a date from 1900 to today"));
        }
    }
    // The wire names of the set values are what the log keeps.
    let Value::Object(set) = serde_json::to_value(&body).map_err(|_| Problem::internal())? else {
        return Err(Problem::internal());
    };
    Ok(set
        .into_iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some((k, s)),
            _ => None,
        })
        .collect())
}

/// The characteristics the caller may read; unset (and unreadable) ones null.
fn view(access: &Access) -> Characteristics {
    let set = access.view.characteristics();
    let mut readable = Map::new();
    for (i, ty) in catalogue::all().iter().enumerate() {
        if !ty.is_characteristic() {
            continue;
        }
        let ti = catalogue::TypeIndex(i as u16);
        // Characteristics are only ever the owner's: readable with `All`.
        if !access.view.reads(ti) {
            continue;
        }
        if let Some((_, v)) = set.iter().find(|(k, _)| k == ty.id) {
            readable.insert(ty.id.to_string(), Value::String(v.clone()));
        }
    }
    // Stored values were validated against the same type on the way in.
    serde_json::from_value(Value::Object(readable)).unwrap_or_default()
}

/// The owner's characteristics the caller may read; the others are null.
#[utoipa::path(get, path = "/v1/characteristics", tag = "queries", operation_id = "get_characteristics",
    responses((status = 200, body = Characteristics), CommonErrors),
    security(("owner" = []), ("apps" = [])))]
pub async fn get(access: Access) -> Json<Characteristics> {
    Json(view(&access))
}

/// Replaces the owner's characteristics: absent or null means unset.
#[utoipa::path(put, path = "/v1/characteristics", tag = "queries", operation_id = "set_characteristics",
    request_body = Characteristics,
    responses(
        (status = 200, description = "The characteristics now set", body = Characteristics),
        (status = 403, description = "Only the owner sets characteristics", body = ProblemDetails, content_type = "application/problem+json"),
        CommonErrors, BodyErrors,
    ),
    security(("owner" = [])))]
pub async fn put(
    access: Access,
    ApiJson(body): ApiJson<Characteristics>,
) -> Result<Json<Characteristics>, Problem> {
    if !matches!(access.caller, Caller::Owner) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            ErrorCode::OwnerOnly,
            "only the owner sets characteristics",
        ));
    }
    let values = validate(body, access.apps.clock.today())?;
    access
        .open
        .writer
        .write(Write::SetCharacteristics { values })
        .await
        .map_err(|_| {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::StorageUnavailable,
                "the characteristics were not stored",
            )
        })?;
    Ok(Json(view(&access)))
}
