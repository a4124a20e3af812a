//! The privacy notice: what Hearth keeps, how, who receives what, and how
//! to erase it, generated from the live configuration.

use serde::Serialize;
use utoipa::ToSchema;

use super::research::{DeidentificationLevel, Resolution, StudyStatus};

/// Who the notice was generated for: it shows no more than they may know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoticeAudience {
    /// Everything: storage, every app's grants, every study.
    Owner,
    /// The app asking, and what it may write; nothing about other apps or
    /// studies.
    App,
    /// How Hearth works in general; nothing about this store's apps,
    /// studies or configuration (the page shown without signing in).
    Public,
}

/// The privacy notice.
#[derive(Serialize, ToSchema)]
pub struct PrivacyNotice {
    pub audience: NoticeAudience,
    /// RFC 3339: when this notice was generated.
    pub generated_at: String,
    /// What Hearth keeps, in plain words.
    pub stores: Vec<String>,
    /// Where it keeps it (the owner's notice only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub storage: Option<StorageNotice>,
    pub encryption: EncryptionNotice,
    /// Apps and what they may do: every app for the owner, only the
    /// asking app for an app, none in the public notice.
    pub apps: Vec<AppNotice>,
    /// Studies and what they receive (the owner's notice only).
    pub studies: Vec<StudyNotice>,
    pub telemetry: TelemetryNotice,
    /// How to see what was shared and how to erase data.
    pub your_choices: Vec<String>,
}

/// Where the data is kept.
#[derive(Serialize, ToSchema)]
pub struct StorageNotice {
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// The file holding the log's high-water mark (beside the SQLite
    /// database unless configured elsewhere).
    pub state_file: Option<String>,
    pub description: String,
}

/// How everything stored is encrypted.
#[derive(Serialize, ToSchema)]
pub struct EncryptionNotice {
    /// The authenticated cipher every record is sealed with.
    pub cipher: String,
    /// How data keys are divided.
    pub data_keys: String,
    /// How the owner's passphrase becomes the key that unwraps the data
    /// keys.
    pub key_derivation: String,
    /// What is stored in the clear.
    pub in_the_clear: String,
}

/// One app and the types it may read and write.
#[derive(Serialize, ToSchema)]
pub struct AppNotice {
    pub id: String,
    pub name: String,
    pub purpose: String,
    pub privacy_policy_url: String,
    /// Types the owner lets it read. Absent in an app's own notice: an app
    /// never learns what it may read.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub reads: Option<Vec<String>>,
    /// Types the owner lets it write.
    pub writes: Vec<String>,
}

/// One study and what leaves for it.
#[derive(Serialize, ToSchema)]
pub struct StudyNotice {
    pub id: String,
    pub name: String,
    pub organisation: String,
    pub status: StudyStatus,
    /// The types the study asked for.
    pub requested_types: Vec<String>,
    /// The types the owner's consent in force lets leave (none before a
    /// decision and after withdrawal).
    pub consented_types: Vec<String>,
    /// Whether workout routes leave (coarsened) under the consent.
    pub routes: bool,
    pub deidentification: DeidentificationLevel,
    pub resolution: Resolution,
    /// `YYYY-MM-DD`, inclusive.
    pub date_range_start: String,
    pub date_range_end: Option<String>,
}

/// Whether anything leaves for monitoring.
#[derive(Serialize, ToSchema)]
pub struct TelemetryNotice {
    /// Whether spans and metrics are exported to an OpenTelemetry endpoint
    /// the operator configured (absent in the public notice).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub enabled: Option<bool>,
    /// What telemetry carries when enabled.
    pub carries: String,
    /// What it never carries.
    pub never: String,
}
