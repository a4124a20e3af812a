//! Erasure and data-key rotation.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What an erasure destroyed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Erasure {
    /// Data keys destroyed: the records they sealed can never be opened
    /// again, with any passphrase.
    pub keys_destroyed: usize,
    /// Live samples that went with them.
    pub samples_erased: usize,
}

/// What a data-key rotation did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyRotation {
    /// Keys retired: they keep opening the records they sealed, and seal
    /// nothing new.
    pub keys_retired: usize,
}
