//! The change feed (`GET /v1/changes`) and the observer stream
//! (`GET /v1/observe`, Server-Sent Events).
//!
//! Both see only what the caller's `View` shows: a change to
//! a type the caller cannot read is invisible unless it is the caller's own;
//! a correlation's, unless it holds a member the caller reads.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::Json;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use utoipa::IntoParams;
use uuid::Uuid;

use super::auth::{Access, Caller};
use super::problem::{CommonErrors, Problem};
use super::samples::{page_limit, ApiQuery};
use super::AppState;
use crate::apps::Apps;
use crate::catalogue::{self, TypeIndex};
use crate::projection::Note;
use crate::query::changes::{self, Anchor, Change};
use crate::samples::{self, check_unit, lookup_type};
use crate::store::OpenStore;
use crate::view::View;
use crate::wire::queries as wire;
use crate::wire::ErrorCode;

const MAX_TYPES: usize = 256;

/// `types=a,b`; all types when absent.
fn parse_types(text: Option<&str>) -> Result<Vec<TypeIndex>, Problem> {
    let Some(text) = text else {
        return Ok((0..catalogue::all().len() as u16).map(TypeIndex).collect());
    };
    let mut out = Vec::new();
    for id in text.split(',') {
        let ti = lookup_type(None, id.trim())?;
        if !out.contains(&ti) {
            out.push(ti);
        }
    }
    if out.is_empty() || out.len() > MAX_TYPES {
        return Err(Problem::invalid(None, "types", "one or more type ids"));
    }
    Ok(out)
}

fn parse_anchor(text: Option<&str>, key: &[u8; 32]) -> Result<Anchor, Problem> {
    match text {
        None => Ok(Anchor::default()),
        Some(t) => Anchor::decode(t, key).ok_or_else(|| {
            Problem::invalid(None, "anchor", "not an anchor returned by this server")
        }),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesQuery {
    /// Comma-separated type ids; default all types.
    types: Option<String>,
    /// `anchor` of the previous page; default from the beginning.
    anchor: Option<String>,
    /// 1 to 1000; default 100.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// With exactly one type: a unit compatible with it.
    unit: Option<String>,
}

/// Samples added and deleted after an anchor, as the caller may see them.
#[utoipa::path(get, path = "/v1/changes", tag = "queries", operation_id = "changes",
    params(ChangesQuery),
    responses((status = 200, body = wire::ChangePage), CommonErrors),
    security(("owner" = []), ("apps" = [])))]
pub async fn changes(
    access: Access,
    ApiQuery(q): ApiQuery<ChangesQuery>,
) -> Result<Json<wire::ChangePage>, Problem> {
    let types = parse_types(q.types.as_deref())?;
    if q.unit.is_some() {
        if types.len() != 1 {
            return Err(Problem::invalid(
                None,
                "unit",
                "a unit needs exactly one type",
            ));
        }
        check_unit(catalogue::get(types[0]), q.unit.as_deref())?;
    }
    let view = &access.view;
    let anchor = parse_anchor(q.anchor.as_deref(), &view.anchor_key())?;
    let limit = page_limit(q.limit.as_deref())?;
    let page = changes::page(view, &types, anchor, limit);
    let mut added = Vec::new();
    let mut deleted = Vec::new();
    for change in page.changes {
        match change {
            Change::Added { ty, row } => added.push(samples::present(
                view,
                catalogue::get(ty),
                &row,
                q.unit.as_deref(),
            )?),
            Change::Deleted { ty, id } => deleted.push(wire::DeletedSample {
                id: Uuid::from_u128(id),
                type_id: catalogue::get(ty).id,
            }),
        }
    }
    Ok(Json(wire::ChangePage {
        added,
        deleted,
        anchor: page.next.encode(&view.anchor_key()),
        has_more: page.has_more,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ObserveQuery {
    /// Comma-separated type ids; default all types.
    types: Option<String>,
    /// Seconds between heartbeats (1–60, default 15).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 60)]
    heartbeat: Option<String>,
}

struct Observer {
    store: Weak<OpenStore>,
    caller: Caller,
    apps: Arc<Apps>,
    types: Vec<TypeIndex>,
    notes: tokio::sync::broadcast::Receiver<Note>,
    /// Changes up to this record have been reported.
    reported: u64,
    queue: VecDeque<SseEvent>,
    done: bool,
    heartbeat: Duration,
    next_heartbeat: Instant,
    _slot: StreamSlot,
}

fn change_event(ty: TypeIndex, seq: u64, key: &[u8; 32]) -> SseEvent {
    let anchor = Anchor {
        seq,
        after_id: None,
    }
    .encode(key);
    SseEvent::default()
        .event("change")
        .id(anchor.clone())
        .json_data(wire::ChangeData {
            type_id: catalogue::get(ty).id,
            anchor,
        })
        .expect("an event serialises")
}

fn locked_event() -> SseEvent {
    SseEvent::default()
        .event("store_locked")
        .json_data(wire::EndData {
            code: ErrorCode::StoreLocked,
            detail: "the store is locked",
        })
        .expect("an event serialises")
}

fn revoked_event() -> SseEvent {
    SseEvent::default()
        .event("token_revoked")
        .json_data(wire::EndData {
            code: ErrorCode::Unauthenticated,
            detail: "the token no longer works",
        })
        .expect("an event serialises")
}

/// Most observer streams open at once for one token (or the owner).
const MAX_STREAMS_PER_CALLER: usize = 8;
/// Most observer streams open at once in all.
const MAX_STREAMS: usize = 256;

/// Whose streams count together: a token's id, or `None` for the owner.
type StreamOwner = Option<[u8; 16]>;

/// Open observer streams, counted per token and in all.
#[derive(Default)]
pub struct StreamSlots {
    /// Per token, and the total.
    open: parking_lot::Mutex<(HashMap<StreamOwner, usize>, usize)>,
}

/// One open stream's slot, given back when the stream ends.
struct StreamSlot {
    slots: Arc<StreamSlots>,
    key: StreamOwner,
}

impl StreamSlots {
    fn take(self: &Arc<Self>, caller: &Caller) -> Result<StreamSlot, Problem> {
        let key = match caller {
            Caller::Owner => None,
            Caller::App(app) => Some(app.token_id),
            Caller::Study(_) => None,
        };
        let mut guard = self.open.lock();
        let (per_caller, total) = &mut *guard;
        let mine = per_caller.get(&key).copied().unwrap_or(0);
        if mine >= MAX_STREAMS_PER_CALLER || *total >= MAX_STREAMS {
            return Err(Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TooManyStreams,
                format!(
                    "at most {MAX_STREAMS_PER_CALLER} observer streams per token \
                     ({MAX_STREAMS} in all) may be open at once"
                ),
            ));
        }
        *per_caller.entry(key).or_default() += 1;
        *total += 1;
        Ok(StreamSlot {
            slots: self.clone(),
            key,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut guard = self.slots.open.lock();
        let (per_caller, total) = &mut *guard;
        *total -= 1;
        if let Some(n) = per_caller.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                per_caller.remove(&self.key);
            }
        }
    }
}

impl Observer {
    /// Queues an event per type visibly changed after `self.reported`.
    fn catch_up(&mut self, open: &OpenStore) {
        let view = self.view(open);
        let (types, latest) = changes::changed_types(&view, &self.types, self.reported);
        for ty in types {
            self.queue
                .push_back(change_event(ty, latest, &view.anchor_key()));
        }
        self.reported = latest;
    }

    fn on_note(&mut self, note: Note) {
        match note {
            Note::Locked => {
                self.queue.push_back(locked_event());
                self.done = true;
            }
            Note::Changed { seq, touched } => {
                if seq <= self.reported {
                    return;
                }
                let Some(open) = self.store.upgrade() else {
                    self.queue.push_back(locked_event());
                    self.done = true;
                    return;
                };
                let view = self.view(&open);
                let mut fired: Vec<TypeIndex> = Vec::new();
                for &(ty, source) in touched.iter() {
                    if !self.types.contains(&ty) || fired.contains(&ty) {
                        continue;
                    }
                    // Another source's correlation is seen when it holds a
                    // member the caller reads: ask the view's change feed.
                    let seen = view.sees_change(ty, source)
                        || (view.reads_in_part(ty)
                            && changes::changed_types(&view, &[ty], seq - 1)
                                .0
                                .contains(&ty));
                    if seen {
                        fired.push(ty);
                        self.queue
                            .push_back(change_event(ty, seq, &view.anchor_key()));
                    }
                }
                self.reported = seq;
            }
        }
    }

    /// The store as the observer's caller sees it now (grants are looked
    /// up afresh).
    fn view(&self, open: &OpenStore) -> View {
        open.view(self.caller.clone(), self.apps.clone())
    }

    /// Whether the caller's credential still works. Checked before every
    /// event and heartbeat: a revoked token's stream ends at once. (A read
    /// grant taken away narrows what the stream reports, silently.)
    fn still_authorized(&self) -> bool {
        match &self.caller {
            Caller::Owner => true,
            Caller::App(app) => self.apps.still_valid(app),
            Caller::Study(_) => false,
        }
    }

    async fn next(mut self) -> Option<(Result<SseEvent, Infallible>, Observer)> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                self.next_heartbeat = Instant::now() + self.heartbeat;
                return Some((Ok(event), self));
            }
            if self.done {
                return None;
            }
            let received = tokio::time::timeout_at(self.next_heartbeat, self.notes.recv()).await;
            if !self.still_authorized() {
                self.queue.push_back(revoked_event());
                self.done = true;
                continue;
            }
            match received {
                Err(_quiet) => self
                    .queue
                    .push_back(SseEvent::default().comment("heartbeat")),
                Ok(Ok(note)) => self.on_note(note),
                Ok(Err(RecvError::Lagged(_))) => match self.store.upgrade() {
                    Some(open) => self.catch_up(&open),
                    None => self.on_note(Note::Locked),
                },
                Ok(Err(RecvError::Closed)) => self.on_note(Note::Locked),
            }
        }
    }
}

/// A Server-Sent Events stream: `change` events ("type T changed, new anchor
/// A"), heartbeats, and a final `store_locked` event when the store locks or
/// `token_revoked` when the token stops working (checked at every event and
/// heartbeat). At most 8 streams per token (256 in all) are open at once.
/// Reconnecting with `Last-Event-ID` reports every type changed since.
#[utoipa::path(get, path = "/v1/observe", tag = "queries", operation_id = "observe",
    params(
        ObserveQuery,
        ("Last-Event-ID" = Option<String>, Header, nullable = false, description = "The `id` of the last event received: catch up from there"),
    ),
    responses(
        (status = 200, description = "A Server-Sent Events stream that ends when the store locks or the token stops working", body = wire::ObserveEvent, content_type = "text/event-stream"),
        (status = 429, description = "Too many observer streams are open for this token, or in all", body = crate::wire::ProblemDetails, content_type = "application/problem+json"),
        CommonErrors,
    ),
    security(("owner" = []), ("apps" = [])))]
pub async fn observe(
    State(state): State<AppState>,
    access: Access,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<ObserveQuery>,
) -> Result<Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>>, Problem> {
    let types = parse_types(q.types.as_deref())?;
    let heartbeat = match q.heartbeat.as_deref() {
        None => 15,
        Some(h) => h
            .parse::<u64>()
            .ok()
            .filter(|h| (1..=60).contains(h))
            .ok_or_else(|| Problem::invalid(None, "heartbeat", "seconds from 1 to 60"))?,
    };
    let last = headers
        .get("last-event-id")
        .map(|v| {
            let key = access.view.anchor_key();
            v.to_str()
                .ok()
                .and_then(|t| Anchor::decode(t, &key))
                .ok_or_else(|| {
                    Problem::invalid(None, "Last-Event-ID", "not an event id from this stream")
                })
        })
        .transpose()?;
    let slot = state.observers.take(&access.caller)?;
    let open: Arc<OpenStore> = access.open;
    // Subscribe before looking, so nothing falls between catch-up and live.
    let notes = access.view.subscribe();
    let mut observer = Observer {
        store: Arc::downgrade(&open),
        caller: access.caller,
        apps: access.apps.clone(),
        types,
        notes,
        // Without an id: from the latest change the caller can see, so the
        // first anchor says nothing about changes it cannot.
        reported: last.map_or(0, |a| a.seq),
        queue: VecDeque::new(),
        done: false,
        heartbeat: Duration::from_secs(heartbeat),
        next_heartbeat: Instant::now() + Duration::from_secs(heartbeat),
        _slot: slot,
    };
    if last.is_some() {
        observer.catch_up(&open);
    } else {
        let view = observer.view(&open);
        observer.reported = changes::changed_types(&view, &observer.types, 0).1;
    }
    let anchor = Anchor {
        seq: observer.reported,
        after_id: None,
    }
    .encode(&access.view.anchor_key());
    observer.queue.push_back(
        SseEvent::default()
            .event("ready")
            .id(anchor.clone())
            .json_data(wire::ReadyData { anchor })
            .expect("an event serialises"),
    );
    drop(open);
    let stream = futures_util::stream::unfold(observer, Observer::next);
    Ok(Sse::new(stream))
}
