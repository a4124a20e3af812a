//! The app registry: registrations, the owner's per-type grants and token
//! state, rebuilt from the log at unlock.
//!
//! It lives beside the health-data projection, not inside it: locking wipes
//! samples but keeps this management state, as iOS does after first unlock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use parking_lot::RwLock;
use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::crypto;
use crate::log::event::{AppRecord, Envelope, Event, TokenKind, TokenRecord};

/// Every this many token insertions, expired tokens are dropped from memory.
const PRUNE_EVERY: u32 = 256;

/// The owner's decision on one type; `None`: never asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Grant {
    pub read: Option<bool>,
    pub write: Option<bool>,
}

pub struct App {
    pub record: AppRecord,
    /// By type id.
    pub grants: BTreeMap<String, Grant>,
}

/// An app's token as presented on a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppCaller {
    pub app_id: Arc<str>,
    pub token_id: [u8; 16],
    pub scope: Arc<[String]>,
    /// The SHA-256 of the token presented, as the registry keeps it: what
    /// a long-lived request (an observer stream) checks again later.
    pub token_hash: [u8; 32],
}

impl AppCaller {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.iter().any(|s| s == scope)
    }
}

#[derive(Default)]
pub struct Registry {
    apps: BTreeMap<String, App>,
    tokens: HashMap<[u8; 32], TokenRecord>,
    /// Refresh tokens already rotated, with their family and expiry:
    /// presenting one again before it would have expired is theft.
    spent: HashMap<[u8; 32], ([u8; 16], Option<i64>)>,
    revoked_families: HashSet<[u8; 16]>,
    inserts: u32,
    /// Research studies and the owner's decisions on them.
    studies: crate::research::registry::Studies,
    /// Disclosures, as the log records them; wiped at lock (see
    /// [`Apps::wipe_audit`]) and carried by snapshots beside the registry.
    audit: crate::audit::AuditIndex,
}

/// SHA-256 of a token or secret: what the log and memory keep.
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A fresh random secret with a readable prefix (`hat_`, `hrt_`, ...).
pub fn new_secret(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        URL_SAFE_NO_PAD.encode(crypto::random_bytes::<32>())
    )
}

impl Registry {
    /// Applies one event; returns false for events that are not the registry's.
    pub fn apply(&mut self, envelope: &Envelope, now_us: i64) -> bool {
        match &envelope.event {
            Event::SamplesAdded { .. }
            | Event::SamplesDeleted { .. }
            | Event::DeviceSamplesAdded { .. }
            | Event::SamplesWritten { .. }
            | Event::SamplesImported { .. }
            | Event::SourcePriority { .. }
            | Event::CharacteristicsSet { .. }
            | Event::TypesPinned { .. }
            | Event::KeysDestroyed { .. }
            | Event::RestoreAccepted { .. } => return false,
            Event::AppRegistered(record) => match self.apps.get_mut(&record.app_id) {
                Some(app) => app.record = record.clone(),
                None => {
                    self.apps.insert(
                        record.app_id.clone(),
                        App {
                            record: record.clone(),
                            grants: BTreeMap::new(),
                        },
                    );
                }
            },
            Event::AppRemoved { app_id } => {
                self.apps.remove(app_id);
                self.tokens.retain(|_, t| t.app_id != *app_id);
            }
            Event::GrantsChanged { app_id, changes } => {
                if let Some(app) = self.apps.get_mut(app_id) {
                    for c in changes {
                        let grant = app.grants.entry(c.type_id.clone()).or_default();
                        if c.write {
                            grant.write = Some(c.allowed);
                        } else {
                            grant.read = Some(c.allowed);
                        }
                    }
                }
            }
            Event::TokensIssued { tokens, spent } => {
                if let Some(hash) = spent {
                    if let Some(t) = self.tokens.remove(hash) {
                        self.spent.insert(*hash, (t.family, t.expires_us));
                    }
                }
                for t in tokens {
                    let live = t.expires_us.is_none_or(|e| e > now_us);
                    if live
                        && self.apps.contains_key(&t.app_id)
                        && !self.revoked_families.contains(&t.family)
                    {
                        self.tokens.insert(t.hash, t.clone());
                    }
                }
                self.inserts += 1;
                if self.inserts >= PRUNE_EVERY {
                    self.inserts = 0;
                    self.tokens
                        .retain(|_, t| t.expires_us.is_none_or(|e| e > now_us));
                    self.spent
                        .retain(|_, (_, expires)| expires.is_none_or(|e| e > now_us));
                }
            }
            Event::Research(event) => self.studies.apply(event, envelope.at_us),
            Event::Audit(event) => self.audit.apply(event),
            Event::TokensRevoked { hashes, families } => {
                for h in hashes {
                    self.tokens.remove(h);
                }
                for f in families {
                    self.revoked_families.insert(*f);
                }
                self.tokens.retain(|_, t| !families.contains(&t.family));
            }
        }
        true
    }

    pub fn app(&self, app_id: &str) -> Option<&App> {
        self.apps.get(app_id)
    }

    pub fn studies(&self) -> &crate::research::registry::Studies {
        &self.studies
    }

    pub fn audit(&self) -> &crate::audit::AuditIndex {
        &self.audit
    }

    /// Sets the audit a snapshot carried.
    pub fn set_audit(&mut self, audit: crate::audit::AuditIndex) {
        self.audit = audit;
    }

    pub fn apps(&self) -> impl Iterator<Item = &App> {
        self.apps.values()
    }

    pub fn grant(&self, app_id: &str, type_id: &str) -> Grant {
        self.apps
            .get(app_id)
            .and_then(|a| a.grants.get(type_id).copied())
            .unwrap_or_default()
    }

    /// The live token with this hash, if any.
    pub fn token(&self, hash: &[u8; 32], now_us: i64) -> Option<&TokenRecord> {
        self.tokens
            .get(hash)
            .filter(|t| t.expires_us.is_none_or(|e| e > now_us))
            .filter(|t| self.apps.contains_key(&t.app_id))
    }

    /// The family of a refresh token that was already rotated.
    pub fn spent_family(&self, hash: &[u8; 32]) -> Option<[u8; 16]> {
        self.spent.get(hash).map(|(family, _)| *family)
    }

    pub fn credentials(&self, app_id: &str) -> Vec<&TokenRecord> {
        let mut out: Vec<_> = self
            .tokens
            .values()
            .filter(|t| t.app_id == app_id && t.kind == TokenKind::Credential)
            .collect();
        out.sort_by_key(|t| (t.issued_us, t.id));
        out
    }

    pub fn credential_by_id(&self, app_id: &str, id: &[u8; 16]) -> Option<&TokenRecord> {
        self.tokens
            .values()
            .find(|t| t.app_id == app_id && t.kind == TokenKind::Credential && t.id == *id)
    }
}

/// One grant as a snapshot keeps it: (type id, read, write).
type GrantState = (String, Option<bool>, Option<bool>);

/// The registry as a snapshot keeps it: every collection in a fixed order,
/// so equal registries encode alike.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RegistryState {
    /// Each app with its grants.
    apps: Vec<(AppRecord, Vec<GrantState>)>,
    tokens: Vec<TokenRecord>,
    spent: Vec<([u8; 32], [u8; 16], Option<i64>)>,
    revoked_families: Vec<[u8; 16]>,
    inserts: u32,
    studies: crate::research::registry::StudiesState,
}

impl Registry {
    pub fn to_state(&self) -> RegistryState {
        let mut tokens: Vec<TokenRecord> = self.tokens.values().cloned().collect();
        tokens.sort_unstable_by_key(|t| t.hash);
        let mut spent: Vec<_> = self
            .spent
            .iter()
            .map(|(hash, (family, expires))| (*hash, *family, *expires))
            .collect();
        spent.sort_unstable();
        let mut revoked_families: Vec<[u8; 16]> = self.revoked_families.iter().copied().collect();
        revoked_families.sort_unstable();
        RegistryState {
            apps: self
                .apps
                .values()
                .map(|app| {
                    let grants = app
                        .grants
                        .iter()
                        .map(|(ty, g)| (ty.clone(), g.read, g.write))
                        .collect();
                    (app.record.clone(), grants)
                })
                .collect(),
            tokens,
            spent,
            revoked_families,
            inserts: self.inserts,
            studies: self.studies.to_state(),
        }
    }

    pub fn from_state(state: RegistryState) -> Registry {
        Registry {
            apps: state
                .apps
                .into_iter()
                .map(|(record, grants)| {
                    let grants = grants
                        .into_iter()
                        .map(|(ty, read, write)| (ty, Grant { read, write }))
                        .collect();
                    (record.app_id.clone(), App { record, grants })
                })
                .collect(),
            tokens: state.tokens.into_iter().map(|t| (t.hash, t)).collect(),
            spent: state
                .spent
                .into_iter()
                .map(|(hash, family, expires)| (hash, (family, expires)))
                .collect(),
            revoked_families: state.revoked_families.into_iter().collect(),
            inserts: state.inserts,
            studies: crate::research::registry::Studies::from_state(state.studies),
            audit: crate::audit::AuditIndex::default(),
        }
    }
}

/// The registry shared by the lock model, the writer and the API.
#[derive(Default)]
pub struct Apps {
    registry: RwLock<Registry>,
    pub clock: Clock,
    /// Serialises check-then-write changes of token state (code exchange,
    /// refresh rotation), so two racing requests cannot both pass a check.
    pub gate: tokio::sync::Mutex<()>,
    /// Apps' reads and writes not yet written to the audit.
    pub tally: crate::audit::Tally,
}

impl Apps {
    pub fn read(&self) -> parking_lot::RwLockReadGuard<'_, Registry> {
        self.registry.read()
    }

    pub fn apply(&self, envelope: &Envelope) -> bool {
        let now = self.clock.now_us();
        self.registry.write().apply(envelope, now)
    }

    /// Drops the audit from memory at lock: it says what apps did with
    /// health data, and unlock rebuilds it from the log.
    pub fn wipe_audit(&self) {
        self.registry.write().audit = crate::audit::AuditIndex::default();
    }

    /// Swaps in the registry rebuilt by replay at unlock.
    pub fn replace(&self, registry: Registry) {
        *self.registry.write() = registry;
    }

    /// The app behind a bearer token, if the token is live.
    pub fn authenticate(&self, token: &str) -> Option<AppCaller> {
        let hash = digest(token);
        let now = self.clock.now_us();
        let registry = self.registry.read();
        let t = registry.token(&hash, now)?;
        if t.kind == TokenKind::Refresh {
            return None;
        }
        Some(AppCaller {
            app_id: t.app_id.as_str().into(),
            token_id: t.id,
            scope: t.scope.clone().into(),
            token_hash: hash,
        })
    }

    /// Whether the token `app` authenticated with still works: not revoked,
    /// not expired, its app still registered.
    pub fn still_valid(&self, app: &AppCaller) -> bool {
        let now = self.clock.now_us();
        self.registry
            .read()
            .token(&app.token_hash, now)
            .is_some_and(|t| t.id == app.token_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::event::{AppKind, GrantChange};

    fn env(event: Event) -> Envelope {
        Envelope { at_us: 0, event }
    }

    fn app(id: &str) -> Event {
        Event::AppRegistered(AppRecord {
            app_id: id.into(),
            name: "n".into(),
            description: String::new(),
            purpose: "p".into(),
            privacy_policy_url: "https://x.example/p".into(),
            redirect_uris: vec!["https://x.example/cb".into()],
            kind: AppKind::App,
            secret_hash: None,
            created_us: 0,
        })
    }

    fn token(
        app: &str,
        secret: &str,
        kind: TokenKind,
        family: u8,
        expires: Option<i64>,
    ) -> TokenRecord {
        TokenRecord {
            hash: digest(secret),
            id: [family; 16],
            app_id: app.into(),
            kind,
            family: [family; 16],
            scope: vec!["read:step_count".into()],
            name: None,
            issued_us: 0,
            expires_us: expires,
        }
    }

    #[test]
    fn grants_tokens_rotation_and_revocation() {
        let mut r = Registry::default();
        assert!(!r.apply(
            &env(Event::SamplesDeleted {
                source: "owner".into(),
                ids: vec![]
            }),
            0
        ));
        r.apply(&env(app("a")), 0);
        r.apply(
            &env(Event::GrantsChanged {
                app_id: "a".into(),
                changes: vec![GrantChange {
                    type_id: "step_count".into(),
                    write: false,
                    allowed: true,
                }],
            }),
            0,
        );
        assert_eq!(
            r.grant("a", "step_count"),
            Grant {
                read: Some(true),
                write: None
            }
        );
        assert_eq!(r.grant("b", "step_count"), Grant::default());

        let issued = |tokens| {
            env(Event::TokensIssued {
                tokens,
                spent: None,
            })
        };
        r.apply(
            &issued(vec![token("a", "r1", TokenKind::Refresh, 1, Some(100))]),
            0,
        );
        r.apply(
            &issued(vec![token("a", "c1", TokenKind::Credential, 2, None)]),
            0,
        );
        assert!(r.token(&digest("r1"), 50).is_some());
        assert!(r.token(&digest("r1"), 100).is_none(), "expired");
        // Tokens of unknown apps are ignored.
        r.apply(
            &issued(vec![token("ghost", "g", TokenKind::Access, 3, None)]),
            0,
        );
        assert!(r.token(&digest("g"), 0).is_none());

        r.apply(
            &env(Event::TokensIssued {
                tokens: vec![token("a", "r2", TokenKind::Refresh, 1, Some(100))],
                spent: Some(digest("r1")),
            }),
            0,
        );
        assert!(r.token(&digest("r1"), 0).is_none());
        assert_eq!(r.spent_family(&digest("r1")), Some([1; 16]));

        r.apply(
            &env(Event::TokensRevoked {
                hashes: vec![],
                families: vec![[1; 16]],
            }),
            0,
        );
        assert!(r.token(&digest("r2"), 0).is_none());
        // A late token of a revoked family never comes alive.
        r.apply(
            &issued(vec![token("a", "r3", TokenKind::Refresh, 1, None)]),
            0,
        );
        assert!(r.token(&digest("r3"), 0).is_none());
        assert!(r.token(&digest("c1"), 0).is_some());

        r.apply(&env(Event::AppRemoved { app_id: "a".into() }), 0);
        assert!(r.token(&digest("c1"), 0).is_none());
        assert!(r.app("a").is_none());
    }
}
