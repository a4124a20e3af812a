//! The read and write policy: the one place that decides what a caller may
//! see and write. Every read path asks [`visibility`]; no endpoint filters on
//! its own.
//!
//! An app reads a type when its token asked for `read:<type>` *and* the
//! owner's grant allows it, looked up on every request so a revocation takes
//! effect at once. Writing likewise needs `write:<type>` and a write grant.

use crate::apps::{AppCaller, Apps};
use crate::caller::Caller;
use crate::catalogue::{self, TypeIndex};
use crate::projection::Projection;

/// Which samples of a type a caller sees: all of them, or only those its own
/// source wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visibility {
    All,
    OnlySource(u32),
}

/// Whether the caller may read every sample of `ty`. Private: callers learn
/// only the effect, through [`visibility`].
fn may_read(caller: &Caller, apps: &Apps, ty: TypeIndex) -> bool {
    // A correlation is governed by its members, as in HealthKit: readable
    // wherever any member type is.
    if let Some(members) = catalogue::get(ty).members() {
        return members.iter().any(|m| {
            let member = catalogue::lookup(m).expect("members are in the catalogue");
            may_read(caller, apps, member)
        });
    }
    match caller {
        Caller::Owner => true,
        Caller::App(app) => {
            let type_id = catalogue::get(ty).id;
            app.has_scope(&format!("read:{type_id}"))
                && apps.read().grant(&app.app_id, type_id).read == Some(true)
        }
    }
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
