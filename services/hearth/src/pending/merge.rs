//! Merging pending writes at unlock.
//!
//! Batches are opened and handed to the single writer in arrival order,
//! attributed to the app that sent them, so sync identifiers behave exactly
//! as if each write had arrived unlocked at that moment. Several batches
//! are queued at once and group-committed; a batch leaves the pending table
//! in the transaction that appends it, so a crash keeps it whole or merged.
//!
//! Samples keep the ids they were given on arrival: a batch whose ids the
//! log already holds (left by a store that removed batches after their
//! append) goes to the writer empty, which only removes it.
//!
//! A batch that does not open (a flipped byte) or that the writer refuses
//! (a sync conflict, the device cap, a route whose workout is gone) is
//! reported by arrival number and kept; the rest merges.

use std::sync::Arc;

use futures_util::future::join_all;
use serde::Serialize;

use super::batch::PendingBatch;
use super::seal::OpeningKey;
use crate::apps::Apps;
use crate::caller::Caller;
use crate::catalogue::{self, Kind};
use crate::log::writer::{NewEntry, Write, WriteError};
use crate::samples;
use crate::storage::Storage;
use crate::store::OpenStore;

/// Batches read (and queued to the writer) at a time.
const PAGE: u32 = 64;

/// What a merge did; arrival numbers only, nothing of the content.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MergeReport {
    /// Batches appended to the log (or found already there).
    pub merged_batches: u64,
    /// Samples those batches held.
    pub merged_samples: u64,
    /// Arrival numbers of batches that failed to open; they are kept.
    pub unopened: Vec<u64>,
    /// Batches that opened but were refused at merge; they are kept.
    pub refused: Vec<RefusedBatch>,
    /// Batches still waiting after the merge.
    pub waiting: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RefusedBatch {
    pub seq: u64,
    pub reason: String,
}

/// A batch opened and ready for the writer.
struct Ready {
    seq: u64,
    source: String,
    samples: u64,
    entries: Vec<NewEntry>,
}

enum Stop {
    /// The database failed: what is left waits for the next unlock.
    Storage,
}

/// Merges every pending batch into `open`'s log.
pub async fn merge(
    storage: &dyn Storage,
    opening: &OpeningKey,
    open: &OpenStore,
    apps: &Arc<Apps>,
) -> MergeReport {
    let mut report = MergeReport::default();
    let mut after = 0;
    'pages: loop {
        let page = match storage.pending_after(after, PAGE).await {
            Ok(page) if page.is_empty() => break,
            Ok(page) => page,
            Err(e) => {
                tracing::error!(error = %e, "reading pending writes failed");
                break;
            }
        };
        let mut queued: Vec<Ready> = Vec::new();
        for row in page {
            after = row.seq;
            let batch = match opening
                .open(&row.sealed)
                .ok()
                .and_then(|plain| PendingBatch::decode(&plain).ok())
            {
                Some(batch) => batch,
                None => {
                    tracing::error!(seq = row.seq, "a pending write does not open; it is kept");
                    report.unopened.push(row.seq);
                    continue;
                }
            };
            let caller = batch.caller();
            let samples = batch.sample_count() as u64;
            let source = batch.app_id.clone();
            if batch
                .entries
                .iter()
                .flat_map(|e| &e.samples)
                .any(|s| already_held(open, &s.type_id, s.sample.id))
            {
                // Appended already: only its removal is left.
                queued.push(Ready {
                    seq: row.seq,
                    source,
                    samples,
                    entries: Vec::new(),
                });
                continue;
            }
            let entries = match batch.into_entries() {
                Ok(entries) => entries,
                Err(e) => {
                    refuse(&mut report, row.seq, e.to_string());
                    continue;
                }
            };
            if has_route(&entries) {
                // A route names a workout an earlier batch may be adding.
                if let Err(Stop::Storage) = flush(open, &mut queued, &mut report).await {
                    break 'pages;
                }
                let view = open.view(Caller::App(caller), apps.clone());
                if let Err(e) = samples::check_routes(&view, &entries) {
                    refuse(&mut report, row.seq, e.to_string());
                    continue;
                }
            }
            queued.push(Ready {
                seq: row.seq,
                source,
                samples,
                entries,
            });
        }
        if let Err(Stop::Storage) = flush(open, &mut queued, &mut report).await {
            break;
        }
    }
    report.waiting = storage
        .pending_totals()
        .await
        .map(|t| t.batches)
        .unwrap_or_default();
    if !report.unopened.is_empty() || !report.refused.is_empty() {
        tracing::warn!(
            unopened = ?report.unopened,
            refused = ?report.refused.iter().map(|r| r.seq).collect::<Vec<_>>(),
            "some pending writes were not merged and are kept"
        );
    }
    tracing::info!(
        batches = report.merged_batches,
        samples = report.merged_samples,
        "pending writes merged"
    );
    report
}

/// Hands `queued` to the writer at once (they commit in order, grouped,
/// each removed from the pending table as it commits) and records what
/// became of each.
async fn flush(
    open: &OpenStore,
    queued: &mut Vec<Ready>,
    report: &mut MergeReport,
) -> Result<(), Stop> {
    let batches = std::mem::take(queued);
    let mut meta = Vec::with_capacity(batches.len());
    let mut futures = Vec::with_capacity(batches.len());
    for ready in batches {
        meta.push((ready.seq, ready.samples));
        futures.push(open.writer.write(Write::MergePending {
            arrival: ready.seq,
            source: ready.source,
            entries: ready.entries,
        }));
    }
    let mut stopped = Ok(());
    for ((seq, samples), outcome) in meta.into_iter().zip(join_all(futures).await) {
        match outcome {
            Ok(_) => {
                report.merged_batches += 1;
                report.merged_samples += samples;
            }
            Err(e @ (WriteError::Storage | WriteError::Unavailable)) => {
                tracing::error!(seq, error = %e, "merging a pending write failed; it is kept");
                stopped = Err(Stop::Storage);
            }
            Err(e) => refuse(report, seq, e.to_string()),
        }
    }
    stopped
}

fn refuse(report: &mut MergeReport, seq: u64, reason: String) {
    tracing::error!(seq, reason = %reason, "a pending write was refused at merge; it is kept");
    report.refused.push(RefusedBatch { seq, reason });
}

fn already_held(open: &OpenStore, type_id: &str, id: [u8; 16]) -> bool {
    catalogue::lookup(type_id).is_some_and(|ty| open.has_held(ty, u128::from_be_bytes(id)))
}

fn has_route(entries: &[NewEntry]) -> bool {
    entries
        .iter()
        .flat_map(|e| &e.samples)
        .any(|s| matches!(catalogue::get(s.type_index).kind, Kind::Route))
}
