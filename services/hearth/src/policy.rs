//! The read and write policy: the one place that decides what a caller may
//! see and write. [`crate::view::View`] asks it on every read and enforces
//! the answer; no endpoint filters on its own.
//!
//! An app reads a type when its token asked for `read:<type>` *and* the
//! owner's grant allows it, looked up on every request so a revocation takes
//! effect at once. Writing likewise needs `write:<type>` and a write grant.
//!
//! Correlations (`blood_pressure`, `food`) are seen through their members:
//! a caller sees one only if it reads the type of at least one of its
//! members (or wrote it), sees only those members, and sees its free-text
//! metadata only if it reads every member's type.

use crate::apps::{AppCaller, Apps};
use crate::caller::Caller;
use crate::catalogue::{self, TypeIndex};
use crate::projection::{Projection, Row};

/// Which samples of a type a caller sees: all of them, or only those its own
/// source wrote (and, for a correlation type it reads in part, those
/// [`CorrelationReads`] lets through).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visibility {
    All,
    OnlySource(u32),
}

/// The types a correlation type may hold.
fn member_types(ty: TypeIndex) -> Option<impl Iterator<Item = TypeIndex>> {
    let members = catalogue::get(ty).members()?;
    Some(
        members
            .iter()
            .map(|m| catalogue::lookup(m).expect("members are in the catalogue")),
    )
}

/// Whether the caller may read every sample of `ty`. Private: callers learn
/// only the effect, through [`visibility`].
fn may_read(caller: &Caller, apps: &Apps, ty: TypeIndex) -> bool {
    // A correlation is governed by its members, as in HealthKit. Every one
    // is readable only to who reads every type it may hold; others see the
    // correlations that hold a type they read, one by one
    // ([`CorrelationReads`]).
    if let Some(mut members) = member_types(ty) {
        return members.all(|m| may_read(caller, apps, m));
    }
    match caller {
        Caller::Owner => true,
        Caller::App(app) => {
            let type_id = catalogue::get(ty).id;
            app.has_scope(&format!("read:{type_id}"))
                && apps.read().grant(&app.app_id, type_id).read == Some(true)
        }
        Caller::Study(study) => study_may_read(study, ty),
    }
}

/// A study reads a type when the consent in force switches it on (a
/// correlation's member types come with it, inside the correlation), under
/// the SMART scope that covers it; workout routes also need the owner's
/// separate switch.
fn study_may_read(study: &crate::research::Study, ty: TypeIndex) -> bool {
    use crate::research::StudyScope;
    let sample_type = catalogue::get(ty);
    let consented = |id: &str| study.consent.types.iter().any(|t| t == id);
    if sample_type.is_characteristic() {
        return study.has_scope(StudyScope::Patient) && consented(sample_type.id);
    }
    if !study.has_scope(StudyScope::Observation) {
        return false;
    }
    if matches!(sample_type.kind, catalogue::Kind::Route) {
        return study.consent.routes && consented(sample_type.id);
    }
    consented(sample_type.id)
        || study.consent.types.iter().any(|t| {
            catalogue::lookup(t)
                .and_then(|c| catalogue::get(c).members())
                .is_some_and(|members| members.contains(&sample_type.id))
        })
}

/// Which samples of `ty` the caller sees. A caller without read access sees
/// only what it wrote itself, exactly as if nothing else existed.
pub fn visibility(
    caller: &Caller,
    apps: &Apps,
    ty: TypeIndex,
    projection: &Projection,
) -> Visibility {
    if may_read(caller, apps, ty) {
        return Visibility::All;
    }
    // A source never seen has written nothing: it sees nothing.
    Visibility::OnlySource(projection.source_id(caller.source()).unwrap_or(u32::MAX))
}

/// Whether the caller sees one sample of `ty` written by `source`.
pub fn sees(
    caller: &Caller,
    apps: &Apps,
    ty: TypeIndex,
    projection: &Projection,
    source: u32,
) -> bool {
    match visibility(caller, apps, ty, projection) {
        Visibility::All => true,
        Visibility::OnlySource(s) => s == source,
    }
}

/// Whether the caller sees this sample of `ty`: as [`sees`], and for a
/// correlation also when it holds a member of a type the caller reads.
pub fn sees_row(
    caller: &Caller,
    apps: &Apps,
    ty: TypeIndex,
    projection: &Projection,
    row: &Row,
) -> bool {
    sees(caller, apps, ty, projection, row.source)
        || CorrelationReads::of(caller, apps, ty).is_some_and(|c| c.sees(projection, row.id))
}

/// How a caller that reads some, but not all, of the types a correlation
/// type may hold sees other sources' correlations: one with a member of a
/// type it reads is visible (with only those members); any other is as if
/// it did not exist.
pub struct CorrelationReads {
    readable: Vec<TypeIndex>,
}

impl CorrelationReads {
    /// `None` unless `ty` is a correlation type the caller reads in part
    /// (in full, [`visibility`] is `All`; not at all, only its own).
    pub fn of(caller: &Caller, apps: &Apps, ty: TypeIndex) -> Option<CorrelationReads> {
        let members: Vec<TypeIndex> = member_types(ty)?.collect();
        let readable: Vec<TypeIndex> = members
            .iter()
            .copied()
            .filter(|&m| may_read(caller, apps, m))
            .collect();
        (!readable.is_empty() && readable.len() < members.len())
            .then_some(CorrelationReads { readable })
    }

    /// Whether the correlation `id` (written or deleted) holds a member of
    /// a type the caller reads.
    pub fn sees(&self, projection: &Projection, id: u128) -> bool {
        projection
            .correlation_member_types(id)
            .iter()
            .any(|t| self.readable.contains(t))
    }
}

/// Whether the caller sees a visible correlation's free-text metadata: only
/// when it may read every member type it holds (or wrote it).
pub fn sees_correlation_metadata(
    caller: &Caller,
    apps: &Apps,
    projection: &Projection,
    row: &Row,
) -> bool {
    caller.is_owner()
        || projection.source_id(caller.source()) == Some(row.source)
        || projection
            .correlation_member_types(row.id)
            .iter()
            .all(|&t| may_read(caller, apps, t))
}

/// An app's write status for one type, as it may learn it.
pub use crate::wire::queries::WriteStatus;

pub fn write_status(caller: &Caller, apps: &Apps, ty: TypeIndex) -> WriteStatus {
    match caller {
        Caller::Owner => WriteStatus::Authorized,
        Caller::App(app) => {
            let type_id = catalogue::get(ty).id;
            match apps.read().grant(&app.app_id, type_id).write {
                Some(true) if app.has_scope(&format!("write:{type_id}")) => WriteStatus::Authorized,
                // Granted, but this token did not ask for it.
                Some(true) => WriteStatus::NotDetermined,
                Some(false) => WriteStatus::Denied,
                None => WriteStatus::NotDetermined,
            }
        }
        Caller::Study(_) => WriteStatus::Denied,
    }
}

/// Whether asking the owner would show anything new: some requested type
/// was never decided. Says nothing about what was decided.
pub fn should_request(
    app: &AppCaller,
    apps: &Apps,
    read: &[TypeIndex],
    write: &[TypeIndex],
) -> bool {
    let registry = apps.read();
    read.iter().any(|&t| {
        registry
            .grant(&app.app_id, catalogue::get(t).id)
            .read
            .is_none()
    }) || write.iter().any(|&t| {
        registry
            .grant(&app.app_id, catalogue::get(t).id)
            .write
            .is_none()
    })
}

/// A refused write: explicit, unlike a refused read.
#[derive(Debug, thiserror::Error)]
#[error("this app may not write {type_id}; ask the owner for write access")]
pub struct WriteDenied {
    pub type_id: &'static str,
}

/// Whether the caller may write `ty`; a refusal is explicit (`403`).
pub fn check_write(caller: &Caller, apps: &Apps, ty: TypeIndex) -> Result<(), WriteDenied> {
    match write_status(caller, apps, ty) {
        WriteStatus::Authorized => Ok(()),
        _ => Err(WriteDenied {
            type_id: catalogue::get(ty).id,
        }),
    }
}

/// Whether the caller may delete a sample written by `source`: apps delete
/// only what they wrote.
pub fn may_delete(caller: &Caller, source: &str) -> bool {
    caller.is_owner() || caller.source() == source
}
