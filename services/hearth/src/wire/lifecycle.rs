//! Health checks and the lock lifecycle.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use zeroize::Zeroizing;

use crate::lock::LockStateName;

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    pub state: LockStateName,
}

/// An owner session; the token is also set as an `HttpOnly` cookie.
#[derive(Serialize, ToSchema)]
pub struct Session {
    pub token: String,
    pub state: LockStateName,
    /// At setup only: the recovery key, shown this once. It opens the store
    /// if the passphrase is lost; keep it apart from the passphrase.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, nullable = false)]
    pub recovery_key: Option<Zeroizing<String>>,
    /// What became of the writes accepted while locked, when this unlock
    /// merged them: batches that failed to open or were refused are named
    /// by arrival number and kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub pending: Option<crate::pending::merge::MergeReport>,
}

/// First-run setup.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupRequest {
    /// Printed on the server's console at first start.
    #[schema(value_type = String)]
    pub setup_code: Zeroizing<String>,
    /// At least 10 characters.
    #[schema(value_type = String)]
    pub passphrase: Zeroizing<String>,
}

/// Unlock with the passphrase, or with the recovery key instead.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnlockRequest {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub passphrase: Option<Zeroizing<String>>,
    /// The recovery key (`XXXX-XXXX-…`), when the passphrase is lost.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub recovery_key: Option<Zeroizing<String>>,
}
