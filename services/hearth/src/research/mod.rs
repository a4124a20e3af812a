//! Consented research: studies the owner adds, the owner's consent and
//! withdrawal, the signed consent receipt, and SMART Backend Services
//! authorization for the study's own client.
//!
//! - [`study`]: the study description and the study's client keys;
//! - [`event`]: what the log keeps (studies, decisions, withdrawals);
//! - [`registry`]: the studies as the log says they stand, kept beside the
//!   app registry;
//! - [`consent`]: the consent document, the decision, the receipt's claims;
//! - [`signing`]: the store's receipt-signing key;
//! - [`smart`]: the token endpoint's checks and the `jwks_uri` cache.
//!
//! A study reaches data only as a [`Study`]: an access token checked on
//! every request against the consent in force, so a withdrawal or a
//! narrower decision takes effect at once. Reads made for a study are to
//! go through the read boundary (`View`) like every other caller's.

pub mod bulk;
pub mod consent;
pub mod deidentify;
pub mod event;
pub mod registry;
pub mod resources;
pub mod signing;
pub mod smart;
pub mod study;

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::apps::{digest, Apps};
use event::ConsentRecord;

/// What a study's token may ask for (SMART `system/*.rs` scopes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StudyScope {
    /// `system/Observation.rs`: the consented types as Observations.
    Observation,
    /// `system/Patient.rs`: the study's pseudonym for the owner.
    Patient,
}

impl StudyScope {
    pub fn as_str(self) -> &'static str {
        match self {
            StudyScope::Observation => "system/Observation.rs",
            StudyScope::Patient => "system/Patient.rs",
        }
    }
}

/// A study's access token as presented on a request, with the consent in
/// force at that moment: the caller a study's reads are made for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Study {
    pub study_id: String,
    pub scopes: Vec<StudyScope>,
    /// The owner's decision in force: which types, whether routes.
    pub consent: ConsentRecord,
    /// The SHA-256 of the token presented, to check again later.
    pub token_hash: [u8; 32],
}

impl Study {
    pub fn has_scope(&self, scope: StudyScope) -> bool {
        self.scopes.contains(&scope)
    }
}

pub(crate) struct TokenEntry {
    pub study_id: String,
    pub scopes: Vec<StudyScope>,
    pub expires_us: i64,
}

/// Studies' access tokens, by hash. In memory only: they live five
/// minutes, and a restart simply makes the study ask again.
#[derive(Default)]
pub struct StudyTokens {
    tokens: Mutex<HashMap<[u8; 32], TokenEntry>>,
}

impl StudyTokens {
    pub(crate) fn add(&self, hash: [u8; 32], entry: TokenEntry, now_us: i64) {
        let mut tokens = self.tokens.lock();
        tokens.retain(|_, t| t.expires_us > now_us);
        tokens.insert(hash, entry);
    }

    /// Every token of `study_id` dies now.
    pub fn revoke_study(&self, study_id: &str) {
        self.tokens.lock().retain(|_, t| t.study_id != study_id);
    }
}

/// The research side of the server: studies' tokens and fetched key sets.
#[derive(Default)]
pub struct Research {
    pub tokens: StudyTokens,
    pub jwks: smart::JwksCache,
    /// Bulk Data export jobs.
    pub exports: std::sync::Arc<bulk::ExportJobs>,
}

impl Research {
    /// The study behind a bearer token: the token is live, the study not
    /// withdrawn or removed, and the owner's consent in force.
    pub fn authenticate(&self, token: &str, apps: &Apps) -> Option<Study> {
        let hash = digest(token);
        let now = apps.clock.now_us();
        let (study_id, scopes) = {
            let tokens = self.tokens.tokens.lock();
            let t = tokens.get(&hash).filter(|t| t.expires_us > now)?;
            (t.study_id.clone(), t.scopes.clone())
        };
        let registry = apps.read();
        let consent = registry.studies().get(&study_id)?.live_consent()?.clone();
        Some(Study {
            study_id,
            scopes,
            consent,
            token_hash: hash,
        })
    }
}

/// RFC 3339, to the second, for microseconds since the epoch.
pub fn rfc3339(us: i64) -> String {
    jiff::Timestamp::from_microsecond(us)
        .map(|t| t.round(jiff::Unit::Second).unwrap_or(t).to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::event::{Envelope, Event};
    use event::{ResearchEvent, StudyRecord};

    fn apply(apps: &Apps, at_us: i64, event: ResearchEvent) {
        apps.apply(&Envelope {
            at_us,
            event: Event::Research(event),
        });
    }

    fn description() -> String {
        serde_json::json!({
            "name": "n", "organisation": "o", "contact": "c", "purpose": "p",
            "procedures": "p", "risks_and_benefits": "r", "duration": "d",
            "data_use_and_sharing": "u", "withdrawal": "w",
            "requested_types": ["step_count"],
            "date_range": { "start": "2025-01-01" },
            "frequency": "once", "deidentification": "safe_harbor",
            "jwks_uri": "https://study.example/jwks.json",
        })
        .to_string()
    }

    fn consent(study_id: &str) -> ConsentRecord {
        ConsentRecord {
            study_id: study_id.into(),
            types: vec!["step_count".into()],
            routes: false,
            decided_us: 1,
            receipt: "r".into(),
        }
    }

    #[test]
    fn a_study_token_works_only_under_a_live_consent() {
        let apps = Apps::default();
        let research = Research::default();
        let now = apps.clock.now_us();
        apply(
            &apps,
            1,
            ResearchEvent::StudyAdded(StudyRecord {
                study_id: "study_a".into(),
                description: description(),
                added_us: 1,
            }),
        );
        let token = "hst_secret";
        let entry = |expires_us| TokenEntry {
            study_id: "study_a".into(),
            scopes: vec![StudyScope::Observation],
            expires_us,
        };
        research
            .tokens
            .add(digest(token), entry(now + 60_000_000), now);
        assert!(
            research.authenticate(token, &apps).is_none(),
            "no consent yet"
        );

        apply(&apps, 2, ResearchEvent::ConsentGiven(consent("study_a")));
        let study = research.authenticate(token, &apps).expect("consented");
        assert_eq!(study.study_id, "study_a");
        assert!(study.has_scope(StudyScope::Observation));
        assert!(!study.has_scope(StudyScope::Patient));
        assert_eq!(study.consent.types, ["step_count"]);
        assert!(research.authenticate("hst_other", &apps).is_none());

        // Withdrawal stops the token at once, and no consent revives it.
        apply(
            &apps,
            3,
            ResearchEvent::StudyWithdrawn {
                study_id: "study_a".into(),
            },
        );
        assert!(research.authenticate(token, &apps).is_none());
        apply(&apps, 4, ResearchEvent::ConsentGiven(consent("study_a")));
        assert!(research.authenticate(token, &apps).is_none());
        assert_eq!(
            apps.read().studies().get("study_a").unwrap().withdrawn_us,
            Some(3)
        );

        // Expired tokens and revoked ones are refused too.
        apply(
            &apps,
            5,
            ResearchEvent::StudyAdded(StudyRecord {
                study_id: "study_b".into(),
                description: description(),
                added_us: 5,
            }),
        );
        apply(&apps, 6, ResearchEvent::ConsentGiven(consent("study_b")));
        let mut b = entry(now - 1);
        b.study_id = "study_b".into();
        research.tokens.add(digest("hst_expired"), b, now - 2);
        assert!(research.authenticate("hst_expired", &apps).is_none());
        let mut b = entry(now + 60_000_000);
        b.study_id = "study_b".into();
        research.tokens.add(digest("hst_b"), b, now);
        assert!(research.authenticate("hst_b", &apps).is_some());
        research.tokens.revoke_study("study_b");
        assert!(research.authenticate("hst_b", &apps).is_none());
        apply(
            &apps,
            7,
            ResearchEvent::StudyRemoved {
                study_id: "study_b".into(),
            },
        );
        assert!(apps.read().studies().get("study_b").is_none());
    }

    #[test]
    fn studies_round_trip_through_their_snapshot_state() {
        let apps = Apps::default();
        apply(
            &apps,
            1,
            ResearchEvent::StudyAdded(StudyRecord {
                study_id: "study_a".into(),
                description: description(),
                added_us: 1,
            }),
        );
        apply(&apps, 2, ResearchEvent::ConsentGiven(consent("study_a")));
        apply(
            &apps,
            3,
            ResearchEvent::StudyWithdrawn {
                study_id: "study_a".into(),
            },
        );
        apply(
            &apps,
            4,
            ResearchEvent::StudyAdded(StudyRecord {
                study_id: "study_b".into(),
                description: description(),
                added_us: 4,
            }),
        );
        let state = apps.read().studies().to_state();
        let bytes = postcard::to_stdvec(&state).unwrap();
        let back = registry::Studies::from_state(postcard::from_bytes(&bytes).unwrap());
        assert_eq!(back.to_state(), state);
        let a = back.get("study_a").unwrap();
        assert_eq!(a.withdrawn_us, Some(3));
        assert!(a.consent.is_some() && a.live_consent().is_none());
        assert!(back.get("study_b").unwrap().consent.is_none());
    }

    #[test]
    fn study_events_round_trip_through_the_log_encoding() {
        let env = Envelope {
            at_us: 9,
            event: Event::Research(ResearchEvent::ConsentGiven(consent("study_a"))),
        };
        assert_eq!(Envelope::decode(&env.encode()).unwrap(), env);
    }
}
