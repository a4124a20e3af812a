//! Who is asking: the owner or an app. Authentication happens at the edge
//! (the HTTP extractor in `api::auth`); everything below only asks what a
//! caller is.

use crate::apps::AppCaller;

/// The authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    Owner,
    App(AppCaller),
}

impl Caller {
    /// The source recorded on samples this caller writes: for an app, its
    /// id, taken from the token and never from the request body.
    pub fn source(&self) -> &str {
        match self {
            Caller::Owner => "owner",
            Caller::App(app) => &app.app_id,
        }
    }

    pub fn is_owner(&self) -> bool {
        matches!(self, Caller::Owner)
    }
}
