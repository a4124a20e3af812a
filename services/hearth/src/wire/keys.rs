//! The owner's key operations: passphrase change, recovery key, key slots.
//! Bodies holding secrets are wiped when dropped.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use zeroize::Zeroizing;

use crate::keys::SlotInfo;

/// Proof of a current secret: the passphrase, or the recovery key.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CurrentSecret {
    /// The current passphrase; or give `recovery_key` instead.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub passphrase: Option<Zeroizing<String>>,
    /// The recovery key (`XXXX-XXXX-…`), instead of the passphrase.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub recovery_key: Option<Zeroizing<String>>,
}

/// A new passphrase, proven by the current passphrase or the recovery key.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PassphraseChange {
    /// The current passphrase; or give `recovery_key` instead.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub passphrase: Option<Zeroizing<String>>,
    /// The recovery key, when the passphrase is lost.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub recovery_key: Option<Zeroizing<String>>,
    /// At least 10 characters.
    #[schema(value_type = String)]
    pub new_passphrase: Zeroizing<String>,
}

/// A recovery key, shown this once.
#[derive(Serialize, ToSchema)]
pub struct NewRecoveryKey {
    /// Nine groups of four characters; case, spaces and dashes do not matter.
    #[schema(value_type = String, example = "7Q2M-K8ZD-…")]
    pub recovery_key: Zeroizing<String>,
}

#[derive(Serialize, ToSchema)]
pub struct KeySlots {
    pub slots: Vec<SlotInfo>,
}

/// A new key-file slot and its file's contents, shown this once.
#[derive(Serialize, ToSchema)]
pub struct NewKeySlot {
    pub id: i64,
    /// Write this to a file only the service user can read (mode 600) and
    /// point `HEARTH_UNLOCK_KEY_FILE` at it.
    #[schema(value_type = String, example = "hearth-key-v1:3:…")]
    pub key_file: Zeroizing<String>,
}
