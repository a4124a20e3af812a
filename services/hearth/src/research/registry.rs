//! The studies the owner added, with the decision in force for each,
//! rebuilt from the log at unlock beside the app registry (and, like it,
//! kept across lock).

use std::collections::BTreeMap;

use super::event::{ConsentRecord, ResearchEvent, StudyRecord};
use crate::wire::research::{StudyDescription, StudyStatus};

pub struct StudyEntry {
    pub record: StudyRecord,
    pub description: StudyDescription,
    /// The owner's decision in force, if any.
    pub consent: Option<ConsentRecord>,
    pub withdrawn_us: Option<i64>,
}

impl StudyEntry {
    pub fn status(&self) -> StudyStatus {
        match (&self.consent, self.withdrawn_us) {
            (_, Some(_)) => StudyStatus::Withdrawn,
            (Some(_), None) => StudyStatus::Consented,
            (None, None) => StudyStatus::AwaitingConsent,
        }
    }

    /// The consent that lets data leave now: none before the owner decides
    /// and none ever after a withdrawal.
    pub fn live_consent(&self) -> Option<&ConsentRecord> {
        self.consent
            .as_ref()
            .filter(|_| self.withdrawn_us.is_none())
    }
}

#[derive(Default)]
pub struct Studies {
    studies: BTreeMap<String, StudyEntry>,
}

impl Studies {
    pub fn apply(&mut self, event: &ResearchEvent, at_us: i64) {
        match event {
            ResearchEvent::StudyAdded(record) => {
                // Validated before it was logged; a description this build
                // cannot read is left out rather than half understood.
                let Ok(description) = serde_json::from_str(&record.description) else {
                    tracing::error!("a study description in the log does not parse; skipped");
                    return;
                };
                self.studies.insert(
                    record.study_id.clone(),
                    StudyEntry {
                        record: record.clone(),
                        description,
                        consent: None,
                        withdrawn_us: None,
                    },
                );
            }
            ResearchEvent::StudyRemoved { study_id } => {
                self.studies.remove(study_id);
            }
            ResearchEvent::ConsentGiven(consent) => {
                if let Some(study) = self.studies.get_mut(&consent.study_id) {
                    if study.withdrawn_us.is_none() {
                        study.consent = Some(consent.clone());
                    }
                }
            }
            ResearchEvent::StudyWithdrawn { study_id } => {
                if let Some(study) = self.studies.get_mut(study_id) {
                    study.withdrawn_us.get_or_insert(at_us);
                }
            }
        }
    }

    pub fn get(&self, study_id: &str) -> Option<&StudyEntry> {
        self.studies.get(study_id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &StudyEntry> {
        self.studies.values()
    }
}

/// The studies as a snapshot of the registry keeps them, in id order:
/// each study's record, the decision in force and when it was withdrawn.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StudiesState {
    studies: Vec<(StudyRecord, Option<ConsentRecord>, Option<i64>)>,
}

impl Studies {
    pub fn to_state(&self) -> StudiesState {
        StudiesState {
            studies: self
                .studies
                .values()
                .map(|s| (s.record.clone(), s.consent.clone(), s.withdrawn_us))
                .collect(),
        }
    }

    pub fn from_state(state: StudiesState) -> Studies {
        let mut studies = Studies::default();
        for (record, consent, withdrawn_us) in state.studies {
            let (id, added_us) = (record.study_id.clone(), record.added_us);
            studies.apply(&ResearchEvent::StudyAdded(record), added_us);
            if let Some(entry) = studies.studies.get_mut(&id) {
                entry.consent = consent;
                entry.withdrawn_us = withdrawn_us;
            }
        }
        studies
    }
}
