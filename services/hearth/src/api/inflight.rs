//! Reads in flight when the store locks.
//!
//! A handler holds the open store (`Arc<OpenStore>`) for as long as it
//! works, but locking wipes the projection underneath it: a read that began
//! before the lock and finishes after it could answer from half-emptied
//! columns, or answer an empty `200`. Every read is therefore checked on the
//! way out: if the store locked (or locked and unlocked again) while it
//! ran, its answer is dropped and the caller gets `503 store_locked`, as if
//! it had arrived a moment later.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::lock::Unavailable;
use crate::store::Store;

pub(crate) async fn reads_finish_before_lock(
    State(store): State<Arc<Store>>,
    request: Request,
    next: Next,
) -> Response {
    let is_read = matches!(*request.method(), Method::GET | Method::HEAD)
        && request.uri().path().starts_with("/v1/");
    let before = store.unlocked_epoch();
    let response = next.run(request).await;
    if is_read
        && before.is_some()
        && response.status().is_success()
        && store.unlocked_epoch() != before
    {
        return Unavailable::Locked.into_response();
    }
    response
}
