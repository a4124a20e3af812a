//! The owner's registry of apps, their grants and credentials.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientType {
    Public,
    Confidential,
}

#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AppKind {
    App,
    Research,
}

/// The owner's decision on one type; null where never decided.
#[derive(Serialize, ToSchema)]
pub struct GrantState {
    pub read: Option<bool>,
    pub write: Option<bool>,
}

/// A registered app (an OAuth client).
#[derive(Serialize, ToSchema)]
pub struct App {
    pub id: String,
    /// The same as `id`.
    pub client_id: String,
    pub name: String,
    pub description: String,
    pub purpose: String,
    pub privacy_policy_url: String,
    pub redirect_uris: Vec<String>,
    pub client_type: ClientType,
    pub kind: AppKind,
    /// Keyed by type id.
    pub grants: BTreeMap<String, GrantState>,
    /// Confidential clients, on registration only: shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub client_secret: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AppList {
    pub apps: Vec<App>,
}

/// An app to register.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApp {
    /// 1 to 100 characters.
    pub name: String,
    /// Up to 2000 characters.
    #[serde(default)]
    pub description: String,
    /// 1 to 2000 characters, shown on the consent page.
    pub purpose: String,
    /// An absolute http(s) URL.
    pub privacy_policy_url: String,
    /// 1 to 10 redirect URIs: https, http on loopback, or a private scheme.
    pub redirect_uris: Vec<String>,
    pub client_type: ClientType,
    /// Default `app`.
    pub kind: Option<AppKind>,
}

/// Changes to an app; absent fields stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub purpose: Option<String>,
    pub privacy_policy_url: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
}

/// Grant (`true`) or deny (`false`) types, keyed by type id.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantChanges {
    #[serde(default)]
    pub read: BTreeMap<String, bool>,
    #[serde(default)]
    pub write: BTreeMap<String, bool>,
}

/// A long-lived credential to mint; the types are granted to the app.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCredential {
    /// 1 to 100 characters.
    pub name: String,
    /// Type ids to read.
    #[serde(default)]
    pub read: Vec<String>,
    /// Type ids to write.
    #[serde(default)]
    pub write: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Credential {
    pub id: Uuid,
    pub name: Option<String>,
    /// Space-separated scopes.
    pub scope: String,
    /// RFC 3339.
    pub created: Option<String>,
    /// The bearer token, in the answer to minting only: shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub token: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CredentialList {
    pub credentials: Vec<Credential>,
}
