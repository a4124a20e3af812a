//! Characteristics: facts about the owner (date of birth, biological sex,
//! blood type, skin type, wheelchair use), set by the owner alone and stored
//! as encrypted events. Reading follows the silent rule: a caller that may
//! not read one sees it unset.

use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Map, Value};

use super::auth::{Access, Caller};
use super::openapi;
use super::problem::{ApiJson, Problem};
use crate::catalogue::{self, Kind};
use crate::log::writer::Write;
use crate::policy;
use crate::projection::Visibility;

fn validate(
    body: Map<String, Value>,
    today: jiff::civil::Date,
) -> Result<Vec<(String, String)>, Problem> {
    let mut out = Vec::new();
    for (key, value) in body {
        let ty = catalogue::lookup(&key)
            .map(catalogue::get)
            .filter(|t| t.is_characteristic())
            .ok_or_else(|| {
                Problem::invalid(None, &key, "not a characteristic (see GET /v1/types)")
            })?;
        let text = match value {
            Value::Null => continue,
            Value::String(s) => s,
            _ => return Err(Problem::invalid(None, &key, "expected a string or null")),
        };
        match ty.kind {
            Kind::Characteristic {
                values: Some(values),
            } => {
                if !values.contains(&text.as_str()) {
                    return Err(Problem::invalid(
                        None,
                        &key,
                        format!("expected one of {values:?}"),
                    ));
                }
            }
            _ => {
                let date: jiff::civil::Date = text
                    .parse()
                    .map_err(|_| Problem::invalid(None, &key, "expected a date, YYYY-MM-DD"))?;
                if date.year() < 1900 || date > today {
                    return Err(Problem::invalid(None, &key, "a date from 1900 to today"));
                }
            }
        }
        out.push((ty.id.to_string(), text));
    }
    Ok(out)
}

/// The characteristics the caller may read; unset (and unreadable) ones null.
fn view(access: &Access) -> Value {
    let projection = &access.open.projection;
    let set = projection.characteristics();
    let mut out = Map::new();
    for (i, ty) in catalogue::all().iter().enumerate() {
        if !ty.is_characteristic() {
            continue;
        }
        let ti = catalogue::TypeIndex(i as u16);
        // Characteristics are only ever the owner's: readable with `All`.
        let readable =
            policy::visibility(&access.caller, &access.apps, ti, projection) == Visibility::All;
        let value = set
            .iter()
            .find(|(k, _)| k == ty.id)
            .filter(|_| readable)
            .map(|(_, v)| json!(v))
            .unwrap_or(Value::Null);
        out.insert(ty.id.to_string(), value);
    }
    Value::Object(out)
}

/// The owner's characteristics the caller may read; the others are null.
#[utoipa::path(get, path = "/v1/characteristics", tag = "queries",
    responses((status = 200, body = openapi::Characteristics), openapi::CommonErrors),
    security(("owner" = []), ("apps" = [])))]
pub async fn get(access: Access) -> Json<Value> {
    Json(view(&access))
}

/// Replaces the owner's characteristics: absent or null means unset.
#[utoipa::path(put, path = "/v1/characteristics", tag = "queries",
    request_body = openapi::Characteristics,
    responses(
        (status = 200, description = "The characteristics now set", body = openapi::Characteristics),
        (status = 403, description = "Only the owner sets characteristics", body = openapi::ProblemDetails, content_type = "application/problem+json"),
        openapi::CommonErrors, openapi::BodyErrors,
    ),
    security(("owner" = [])))]
pub async fn put(
    access: Access,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> Result<Json<Value>, Problem> {
    if !matches!(access.caller, Caller::Owner) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "owner_only",
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
                "storage_unavailable",
                "the characteristics were not stored",
            )
        })?;
    Ok(Json(view(&access)))
}
