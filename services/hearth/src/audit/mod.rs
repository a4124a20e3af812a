//! The audit: every disclosure of the owner's data, kept as encrypted
//! events in the log so the owner can always see what was shared.
//!
//! - [`event`]: what the log keeps — apps' usage per app, type and day
//!   (counts only), and each study export;
//! - [`tally`]: apps' reads and writes counted in memory between flushes;
//! - [`index`]: the audit as the log says it stands, answered from memory.
//!
//! Reads are counted at the read boundary: [`note_read`] is called by the
//! code that turns rows into answers for a [`View`](crate::view::View)
//! (every sample handed over, every aggregate answer), writes by the single
//! writer after each commit. The tally is written to the log every minute
//! ([`Flusher`]), before the store locks (and so at shutdown), and when the
//! owner lists the audit, so no count is lost at lock.

pub mod event;
pub mod index;
pub mod tally;

use std::sync::Arc;
use std::time::Duration;

pub use event::{AuditEvent, Direction, StudyExportDisclosure, UsageEntry};
pub use index::{AuditFilter, AuditIndex, AuditKind, AuditPosition, AuditRecord, AuditState};
pub use tally::Tally;

use crate::apps::Apps;
use crate::caller::Caller;
use crate::catalogue;
use crate::log::event::{Envelope, Event};
use crate::log::writer::{Write, WriteError, Writer};

/// How often counted reads and writes are written to the log.
pub const FLUSH_EVERY: Duration = Duration::from_secs(60);

/// Records that an export job handed `disclosure` to a study: one audit
/// event, committed before this returns.
pub async fn record_study_export(
    writer: &Writer,
    disclosure: StudyExportDisclosure,
) -> Result<(), WriteError> {
    writer
        .write(Write::Registry(Event::Audit(AuditEvent::StudyExport(
            disclosure,
        ))))
        .await
        .map(|_| ())
}

/// Counts what `caller` was handed of the type `type_id`: `samples`
/// samples in full and `summaries` aggregate answers. Only apps' reads are
/// audited: the owner reads their own data.
pub fn note_read(
    apps: &Apps,
    caller: &Caller,
    type_id: &'static str,
    samples: u64,
    summaries: u64,
) {
    if let Caller::App(app) = caller {
        apps.tally.note(
            apps.clock.now_us(),
            &app.app_id,
            type_id,
            Direction::Read,
            samples,
            summaries,
        );
    }
}

/// Counts the samples registered apps stored in `envelopes`, committed at
/// `at_us` (the writer calls this after each commit).
pub fn note_writes(apps: &Apps, at_us: i64, envelopes: &[(u64, Envelope)]) {
    for (_, envelope) in envelopes {
        let (source, batches): (&str, Vec<_>) = match &envelope.event {
            Event::SamplesAdded { source, batches } => (source, batches.iter().collect()),
            Event::DeviceSamplesAdded { source, groups }
            | Event::SamplesWritten { source, groups, .. }
            | Event::SamplesImported { source, groups, .. } => {
                (source, groups.iter().flat_map(|g| &g.batches).collect())
            }
            _ => continue,
        };
        if batches.is_empty() || apps.read().app(source).is_none() {
            continue;
        }
        let app_id: Arc<str> = source.into();
        for batch in batches {
            let Some(ty) = catalogue::lookup(&batch.type_id) else {
                continue;
            };
            apps.tally.note(
                at_us,
                &app_id,
                catalogue::get(ty).id,
                Direction::Write,
                batch.samples.len() as u64,
                0,
            );
        }
    }
}

/// Writes what the tally counted as one event; on failure the counts go
/// back into the tally for the next flush.
pub async fn flush(apps: &Apps, writer: &Writer) -> Result<(), WriteError> {
    let entries = apps.tally.take();
    if entries.is_empty() {
        return Ok(());
    }
    let event = Event::Audit(AuditEvent::AppUsage {
        entries: entries.clone(),
    });
    match writer.write(Write::Registry(event)).await {
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(error = %e, "writing the audit tally failed; kept for the next flush");
            apps.tally.restore(entries);
            Err(e)
        }
    }
}

/// Flushes the tally every [`FLUSH_EVERY`] while the store is unlocked.
pub struct Flusher {
    stop: tokio::sync::watch::Sender<bool>,
    task: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Flusher {
    pub fn spawn(apps: Arc<Apps>, writer: Writer) -> Flusher {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(FLUSH_EVERY);
            ticks.tick().await;
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stopped.changed() => return,
                }
                // Never cut off halfway: counts taken are written or put back.
                let _ = flush(&apps, &writer).await;
            }
        });
        Flusher {
            stop,
            task: parking_lot::Mutex::new(Some(task)),
        }
    }

    /// Stops the timer, after a flush in progress; the store flushes once
    /// more itself before locking.
    pub async fn finish(&self) {
        let _ = self.stop.send(true);
        let task = self.task.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}
