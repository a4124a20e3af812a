//! The body of every `application/problem+json` error (RFC 9457).

use serde::Serialize;
use utoipa::ToSchema;

macro_rules! error_codes {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal,)*) => {
        /// Stable, machine-readable error codes: every code the API answers.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $($(#[doc = $doc])* $variant,)*
        }

        impl ErrorCode {
            /// The code as it appears on the wire.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $name,)*
                }
            }

            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];
        }
    };
}

error_codes! {
    InvalidInput = "invalid_input",
    MalformedJson = "malformed_json",
    UnreadableBody = "unreadable_body",
    UnsupportedMediaType = "unsupported_media_type",
    PayloadTooLarge = "payload_too_large",
    TooManySamples = "too_many_samples",
    InvalidQuery = "invalid_query",
    InvalidPath = "invalid_path",
    NotFound = "not_found",
    MethodNotAllowed = "method_not_allowed",
    Unauthenticated = "unauthenticated",
    OwnerOnly = "owner_only",
    WriteNotAuthorized = "write_not_authorized",
    DeleteNotAuthorized = "delete_not_authorized",
    SyncConflict = "sync_conflict",
    TooManyBuckets = "too_many_buckets",
    StoreUninitialised = "store_uninitialised",
    StoreSealed = "store_sealed",
    StoreLocked = "store_locked",
    WrongPassphrase = "wrong_passphrase",
    WrongSetupCode = "wrong_setup_code",
    TooManyAttempts = "too_many_attempts",
    AlreadyInitialised = "already_initialised",
    LogTampered = "log_tampered",
    StorageUnavailable = "storage_unavailable",
    InternalError = "internal_error",
    HostNotAllowed = "host_not_allowed",
    TooManyStreams = "too_many_streams",
    /// A write would give its source more than 64 distinct devices.
    TooManyDevices = "too_many_devices",
    /// A `by_source` answer would hold more series than one response carries.
    TooManySeries = "too_many_series",
    /// The server is at its limit of concurrent requests; retry after a moment.
    Overloaded = "overloaded",
    WrongRecoveryKey = "wrong_recovery_key",
    /// A key slot in the database is out of bounds or unknown: refused
    /// before any key derivation.
    KeySlotInvalid = "key_slot_invalid",
    /// An uploaded export was refused before anything of it was stored.
    ImportRefused = "import_refused",
    /// Another import is running.
    ImportRunning = "import_running",
    /// An item of a pushed payload that Hearth does not import.
    NotImported = "not_imported",
    /// The store is locked and the writes waiting for its unlock fill the
    /// space allowed them (`507`).
    PendingFull = "pending_full",
    /// The store is locked and as many writes as allowed wait for its
    /// unlock (`429`).
    PendingBatchesFull = "pending_batches_full",
    /// The log is behind its high-water mark or its head fails
    /// authentication (an older copy was restored, or the tail was cut);
    /// `hearth restore --accept-rollback` accepts a deliberate restore.
    RollbackDetected = "rollback_detected",
}

/// One invalid field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Index of the sample at fault, for batch requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub index: Option<usize>,
    pub field: String,
    pub message: String,
}

/// An `application/problem+json` error (RFC 9457).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemDetails {
    /// `https://hearth.invalid/problems/` followed by the code.
    #[serde(rename = "type")]
    pub kind: String,
    /// The status code's reason phrase.
    pub title: &'static str,
    pub status: u16,
    pub code: ErrorCode,
    /// A sentence for people.
    pub detail: String,
    /// For invalid input: which sample (`index`) and field.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub errors: Vec<FieldError>,
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn every_code_serialises_as_its_name() {
        for code in ErrorCode::ALL {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::Value::from(code.as_str())
            );
        }
    }
}
