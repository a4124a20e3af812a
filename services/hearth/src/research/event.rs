//! What the log keeps of studies: each one an event sealed under the
//! management key, like app registrations and grants.

use serde::{Deserialize, Serialize};

/// One study event, carried by `Event::Research`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ResearchEvent {
    /// The owner added a study.
    StudyAdded(StudyRecord),
    /// The owner removed a study, with its consent: its tokens die at once.
    StudyRemoved { study_id: String },
    /// The owner's decision on a study, with the receipt Hearth signed for it.
    /// A later decision replaces an earlier one.
    ConsentGiven(ConsentRecord),
    /// The owner withdrew from a study: nothing more leaves for it, ever.
    StudyWithdrawn { study_id: String },
}

/// A study as the log keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StudyRecord {
    /// Also the study's OAuth client id.
    pub study_id: String,
    /// The validated study description, as JSON.
    pub description: String,
    pub added_us: i64,
}

/// The owner's decision: which of the requested types leave, and whether
/// workout routes do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRecord {
    pub study_id: String,
    pub types: Vec<String>,
    pub routes: bool,
    pub decided_us: i64,
    /// The consent receipt: a compact JWS.
    pub receipt: String,
}
