//! The read and write policy: the one place that decides what a caller may
//! see and write. Every read path asks [`visibility`]; no endpoint filters on
//! its own.

use crate::api::auth::Caller;
use crate::api::problem::Problem;
use crate::catalogue::TypeIndex;
use crate::projection::{Projection, Visibility};

/// Which samples of `ty` the caller sees. A caller without read access sees
/// only what it wrote itself, exactly as if nothing else existed.
pub fn visibility(caller: &Caller, _ty: TypeIndex, _projection: &Projection) -> Visibility {
    match caller {
        Caller::Owner => Visibility::All,
    }
}

/// Whether the caller may write `ty`; a refusal is explicit (`403`).
pub fn check_write(caller: &Caller, _ty: TypeIndex) -> Result<(), Problem> {
    match caller {
        Caller::Owner => Ok(()),
    }
}
