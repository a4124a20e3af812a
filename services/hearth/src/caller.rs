//! Who is asking: the owner, an app or a research study. Authentication happens at the edge
//! (the HTTP extractor in `api::auth`); everything below only asks what a
//! caller is.

use crate::apps::AppCaller;
use crate::research::Study;

/// The authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    Owner,
    App(AppCaller),
    /// A study exporting under the owner's consent in force; it writes
    /// nothing and reads only what that consent covers.
    Study(Box<Study>),
}

impl Caller {
    /// The source recorded on samples this caller writes: for an app, its
    /// id, taken from the token and never from the request body.
    pub fn source(&self) -> &str {
        match self {
            Caller::Owner => "owner",
            Caller::App(app) => &app.app_id,
            // No source carries this name (ids have no spaces): a study
            // has written nothing of its own.
            Caller::Study(_) => "research study",
        }
    }

    pub fn is_owner(&self) -> bool {
        matches!(self, Caller::Owner)
    }
}
