//! The read boundary: every read of samples goes through a [`View`].
//!
//! A view is the projection as one caller may see it. It is built from the
//! caller, the app registry (for grants, looked up on every read so a
//! revocation takes effect at once) and the projection, and it is the only
//! thing the HTTP layer can read from: the store hands out views, never the
//! projection itself.
//!
//! Contract:
//!
//! - For a type the caller may read ([`policy`] decides), the view shows
//!   every live sample.
//! - For any other type it shows only the samples the caller wrote, and it
//!   shows them as [`Columns::Own`], a copy of those rows alone, gathered
//!   through the per-source index of the type. Everything computed from
//!   them — values to the last bit, order, paging, time and memory — is the
//!   same as in a store where nothing else existed.
//! - Sources, devices and deletions are likewise limited to what the caller
//!   sees.
//!
//! A view of a type the caller reads holds that type's read lock while an
//! answer is computed; the copy of a caller's own rows holds it only while
//! copying.
//!
//! What an answer hands an app is counted for the audit through
//! [`View::disclose`]: once per sample presented, once per aggregate answer.

use std::ops::Deref;
use std::sync::Arc;

use parking_lot::RwLockReadGuard;
use tokio::sync::broadcast;

use crate::apps::Apps;
use crate::caller::Caller;
use crate::catalogue::TypeIndex;
use crate::log::event::{Device, SourceKey};
use crate::policy::{self, CorrelationReads, Visibility};
use crate::projection::{Deletion, Note, Projection, Row, TypeColumns};
use crate::query::series::{Series, SeriesKey};
use crate::query::sources::{Origin, SourceTable};

/// What one caller may read.
#[derive(Clone)]
pub struct View {
    projection: Arc<Projection>,
    caller: Caller,
    apps: Arc<Apps>,
}

/// One type's samples as a caller sees them.
pub enum Columns<'a> {
    /// The caller reads the type: the shared columns, read-locked. They
    /// may hold deleted rows; [`TypeColumns::live`] tells.
    Shared(RwLockReadGuard<'a, TypeColumns>),
    /// The caller does not: its own live rows, copied.
    Own(Arc<TypeColumns>),
}

impl Deref for Columns<'_> {
    type Target = TypeColumns;

    fn deref(&self) -> &TypeColumns {
        match self {
            Columns::Shared(cols) => cols,
            Columns::Own(cols) => cols,
        }
    }
}

impl View {
    pub(crate) fn new(projection: Arc<Projection>, caller: Caller, apps: Arc<Apps>) -> View {
        View {
            projection,
            caller,
            apps,
        }
    }

    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    pub fn apps(&self) -> &Apps {
        &self.apps
    }

    /// Whether the caller sees every sample of `ty`, not only its own.
    pub fn reads(&self, ty: TypeIndex) -> bool {
        self.visibility(ty) == Visibility::All
    }

    /// Whether `ty` is a correlation type the caller reads only in part:
    /// it sees other sources' correlations that hold a member it reads.
    pub fn reads_in_part(&self, ty: TypeIndex) -> bool {
        self.correlation_reads(ty).is_some()
    }

    fn correlation_reads(&self, ty: TypeIndex) -> Option<CorrelationReads> {
        CorrelationReads::of(&self.caller, &self.apps, ty)
    }

    fn visibility(&self, ty: TypeIndex) -> Visibility {
        policy::visibility(&self.caller, &self.apps, ty, &self.projection)
    }

    /// The samples of `ty` the caller sees.
    pub fn columns(&self, ty: TypeIndex) -> Columns<'_> {
        match self.visibility(ty) {
            Visibility::All => Columns::Shared(self.projection.columns(ty)),
            Visibility::OnlySource(source) => match self.correlation_reads(ty) {
                // Correlations seen through a member: which ones, only their
                // member types tell, so every row is asked.
                Some(reads) => {
                    let cols = self.projection.columns(ty);
                    Columns::Own(Arc::new(cols.select(|r| {
                        cols.source_of(r) == source || reads.sees(&self.projection, cols.id_of(r))
                    })))
                }
                None => Columns::Own(self.projection.only_source(ty, source)),
            },
        }
    }

    /// The live sample with `id`, if the caller sees it; hidden and unknown
    /// ids look alike.
    pub fn find(&self, id: u128) -> Option<(TypeIndex, Row)> {
        let (ty, row) = self.projection.find(id)?;
        policy::sees_row(&self.caller, &self.apps, ty, &self.projection, &row).then_some((ty, row))
    }

    /// Whether the caller sees the free-text metadata of a correlation it
    /// sees: only when it reads every member's type (or wrote it).
    pub fn sees_correlation_metadata(&self, row: &Row) -> bool {
        policy::sees_correlation_metadata(&self.caller, &self.apps, &self.projection, row)
    }

    /// Deletions of `ty` after log record `after` that the caller sees, in
    /// log order.
    pub fn deletions(&self, ty: TypeIndex, after: u64) -> Vec<Deletion> {
        match (self.visibility(ty), self.correlation_reads(ty)) {
            (Visibility::All, _) => self.projection.deletions_after(ty, None, after),
            (Visibility::OnlySource(s), Some(reads)) => {
                let mut all = self.projection.deletions_after(ty, None, after);
                all.retain(|d| d.source == s || reads.sees(&self.projection, d.id));
                all
            }
            (Visibility::OnlySource(s), None) => {
                self.projection.deletions_after(ty, Some(s), after)
            }
        }
    }

    /// The sync identifier and version of a sample the caller sees.
    pub fn sync_tag(&self, ty: TypeIndex, row: &Row) -> Option<(Box<str>, i64)> {
        self.projection.sync_tag(ty, row)
    }

    /// The version of the caller's own sample of type `ty` under
    /// `sync_id`, if one is stored: a caller always sees what it wrote.
    pub fn own_sync_version(&self, sync_id: &str, ty: TypeIndex) -> Option<i64> {
        let source = self.projection.source_id(self.caller.source())?;
        self.projection
            .synced(source, sync_id, ty)
            .map(|(_, tag)| tag.version)
    }

    /// The name of a source whose sample the caller sees.
    pub fn source_name(&self, source: u32) -> Arc<str> {
        self.projection.source_name(source)
    }

    /// The device of a sample the caller sees.
    pub fn device(&self, row: &Row) -> Option<Device> {
        self.projection.device(row.source, row.device)
    }

    /// Names the sources and devices of the origins the caller meets.
    pub fn source_table(&self) -> SourceTable<'_> {
        SourceTable::of(&self.projection)
    }

    /// The owner's source order.
    pub fn priority(&self) -> (u64, Vec<SourceKey>) {
        self.projection.priority()
    }

    /// The cumulative series of `cols` (from [`View::columns`] of `ty`) for
    /// the origins in `selection` (`None`: all). Shared columns' series are
    /// cached per type; a caller's own rows get a series of their own.
    pub fn series(
        &self,
        ty: TypeIndex,
        cols: &Columns<'_>,
        selection: Option<Vec<Origin>>,
        table: &SourceTable,
    ) -> Arc<Series> {
        let (priority_generation, order) = self.projection.priority();
        let key = SeriesKey {
            generation: cols.generation(),
            priority_generation,
            selection,
        };
        match cols {
            Columns::Shared(cols) => self.projection.series_cache(ty).get_or_build(
                key.clone(),
                cols.reshaped(),
                |stale| stale.extend(cols, key.clone()),
                || Series::build(cols, key.clone(), table, &order),
            ),
            Columns::Own(cols) => Arc::new(Series::build(cols, key, table, &order)),
        }
    }

    /// The last log record applied: the head of the change feed.
    pub fn applied_seq(&self) -> u64 {
        self.projection.applied_seq()
    }

    /// Seals change-feed anchors.
    pub fn anchor_key(&self) -> crate::crypto::SecretKey {
        self.projection.anchor_key()
    }

    /// Hears about every change from now on; a listener filters by view.
    pub fn subscribe(&self) -> broadcast::Receiver<Note> {
        self.projection.subscribe()
    }

    /// Whether a change to `ty` by `source` is one the caller sees.
    pub fn sees_change(&self, ty: TypeIndex, source: u32) -> bool {
        match self.visibility(ty) {
            Visibility::All => true,
            Visibility::OnlySource(s) => s == source,
        }
    }

    /// Counts, for the audit, what this caller is handed of `type_id`:
    /// `samples` samples in full, `summaries` aggregate answers. Every
    /// answer built from a view calls it once per sample or figure set.
    pub fn disclose(&self, type_id: &'static str, samples: u64, summaries: u64) {
        crate::audit::note_read(&self.apps, &self.caller, type_id, samples, summaries);
    }

    /// The owner's characteristics: (type id, value).
    pub fn characteristics(&self) -> Vec<(String, String)> {
        self.projection.characteristics()
    }

    /// The types pinned to the owner's summary that the caller reads.
    pub fn pinned_types(&self) -> Vec<String> {
        let mut out = self.projection.pinned_types();
        out.retain(|id| crate::catalogue::lookup(id).is_some_and(|ty| self.reads(ty)));
        out
    }

    /// The owner's characteristics the caller reads: (type id, value).
    pub fn readable_characteristics(&self) -> Vec<(String, String)> {
        let mut out = self.projection.characteristics();
        out.retain(|(id, _)| crate::catalogue::lookup(id).is_some_and(|ty| self.reads(ty)));
        out
    }

    /// The last log record that certainly reached Hearth by `since_us`:
    /// samples of later records arrived after it (or may have).
    pub fn settled_by(&self, since_us: i64) -> u64 {
        self.projection.arrivals().settled_by(since_us)
    }
}
