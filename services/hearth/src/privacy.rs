//! The privacy notice, generated from the live configuration: what Hearth
//! keeps and where, how it is encrypted, which apps may read and write
//! which types, which studies receive what, whether telemetry leaves, and
//! how to erase.
//!
//! Each audience sees only what it may know:
//!
//! - the owner: everything, storage location included;
//! - an app: how Hearth works, and itself with the types it may write —
//!   never what it may read (an app cannot learn its read status), never
//!   another app or a study;
//! - anyone else: how Hearth works in general, nothing of this store's
//!   apps, studies or configuration, so a stranger on the network learns
//!   nothing by asking.

use crate::apps::{App, Registry};
use crate::caller::Caller;
use crate::crypto::KdfParams;
use crate::research::registry::StudyEntry;
use crate::wire::privacy::{
    AppNotice, EncryptionNotice, NoticeAudience, PrivacyNotice, StorageNotice, StudyNotice,
    TelemetryNotice,
};

/// What the notice says about this deployment.
pub struct Deployment {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    pub state_file: Option<String>,
    /// The Argon2id parameters of new passphrase slots.
    pub kdf: KdfParams,
    /// Whether telemetry is exported.
    pub telemetry: bool,
}

const STORES: [&str; 5] = [
    "Health samples apps and the owner write: type, time, value, unit, the device that \
     measured them and their metadata.",
    "The owner's characteristics (date of birth, biological sex, blood type) if set, the \
     owner's order of sources and the types pinned to the summary.",
    "Apps registered with the store, the owner's per-type read and write decisions, and \
     token state (tokens only as hashes).",
    "Studies the owner added, the owner's consent decisions with their signed receipts, \
     and withdrawals.",
    "An audit of every disclosure: how many samples of which type each app read or wrote \
     per day, and each export to a study.",
];

const CHOICES: [&str; 6] = [
    "See what was shared: GET /v1/audit lists apps' reads and writes per day and type, and \
     every study export.",
    "Stop an app: DELETE /v1/apps/{id} removes it with its grants and tokens at once; \
     changing its grants takes effect on its next request.",
    "Stop a study: POST /v1/studies/{id}/withdraw. Nothing more leaves for it; data \
     already exported may continue to be analysed.",
    "Erase an app's data: DELETE /v1/sources/{source} destroys the keys its samples are \
     sealed under, so they can never be read again.",
    "Erase a type: DELETE /v1/types/{type}/samples destroys the keys of every sample of \
     that type; DELETE /v1/source-families/{family} erases an import.",
    "Erase everything: delete the database (and the state file); without the keys nothing \
     in a copy can be read.",
];

/// The notice for `caller`; `None`: the public notice.
pub fn notice(
    caller: Option<&Caller>,
    registry: &Registry,
    deployment: &Deployment,
    now_us: i64,
) -> PrivacyNotice {
    let audience = match caller {
        Some(Caller::Owner) => NoticeAudience::Owner,
        Some(Caller::App(_)) => NoticeAudience::App,
        // A study learns nothing of the store beyond what it was given.
        Some(Caller::Study(_)) | None => NoticeAudience::Public,
    };
    let owner = audience == NoticeAudience::Owner;
    let apps = match caller {
        Some(Caller::Owner) => registry.apps().map(|a| app_notice(a, true)).collect(),
        Some(Caller::App(app)) => registry
            .app(&app.app_id)
            .map(|a| app_notice(a, false))
            .into_iter()
            .collect(),
        Some(Caller::Study(_)) | None => Vec::new(),
    };
    let studies = if owner {
        registry.studies().iter().map(study_notice).collect()
    } else {
        Vec::new()
    };
    PrivacyNotice {
        audience,
        generated_at: crate::research::rfc3339(now_us),
        stores: STORES.iter().map(|s| s.to_string()).collect(),
        storage: owner.then(|| StorageNotice {
            backend: deployment.backend.to_string(),
            state_file: deployment.state_file.clone(),
            description: format!(
                "Everything is kept in this store's own {} database on the owner's device or \
                 server, as an append-only log of encrypted records. Nothing is synced to any \
                 cloud.",
                deployment.backend
            ),
        }),
        encryption: encryption(owner.then_some(deployment.kdf)),
        apps,
        studies,
        telemetry: TelemetryNotice {
            enabled: (audience != NoticeAudience::Public).then_some(deployment.telemetry),
            carries: "Routes, status codes, durations and counts, sent only to an \
                      OpenTelemetry endpoint the operator configured."
                .into(),
            never: "Health values, data-type names, sample metadata or anything an app wrote."
                .into(),
        },
        your_choices: CHOICES.iter().map(|s| s.to_string()).collect(),
    }
}

fn encryption(kdf: Option<KdfParams>) -> EncryptionNotice {
    let key_derivation = match kdf {
        Some(k) => format!(
            "Argon2id ({} KiB, {} iterations, {} lanes) turns the owner's passphrase into \
             the key that unwraps the root key; the data keys are wrapped under it.",
            k.memory_kib, k.iterations, k.parallelism
        ),
        None => "Argon2id turns the owner's passphrase into the key that unwraps the root \
                 key; the data keys are wrapped under it."
            .into(),
    };
    EncryptionNotice {
        cipher: "AES-256-GCM-SIV; each record's additional data binds the store, its \
                 sequence number and its key."
            .into(),
        data_keys: "A data key per source and type, and one for management records (apps, \
                    grants, studies, audit); erasing destroys keys."
            .into(),
        key_derivation,
        in_the_clear: "Sequence numbers, key ids, sizes, hashes, KDF parameters and public \
                       keys."
            .into(),
    }
}

fn app_notice(app: &App, owner: bool) -> AppNotice {
    let allowed = |write: bool| {
        app.grants
            .iter()
            .filter(|(_, g)| if write { g.write } else { g.read } == Some(true))
            .map(|(ty, _)| ty.clone())
            .collect::<Vec<_>>()
    };
    AppNotice {
        id: app.record.app_id.clone(),
        name: app.record.name.clone(),
        purpose: app.record.purpose.clone(),
        privacy_policy_url: app.record.privacy_policy_url.clone(),
        reads: owner.then(|| allowed(false)),
        writes: allowed(true),
    }
}

fn study_notice(study: &StudyEntry) -> StudyNotice {
    let d = &study.description;
    let consent = study.live_consent();
    StudyNotice {
        id: study.record.study_id.clone(),
        name: d.name.clone(),
        organisation: d.organisation.clone(),
        status: study.status(),
        requested_types: d.requested_types.clone(),
        consented_types: consent.map(|c| c.types.clone()).unwrap_or_default(),
        routes: consent.is_some_and(|c| c.routes),
        deidentification: d.deidentification,
        resolution: d.resolution,
        date_range_start: d.date_range.start.clone(),
        date_range_end: d.date_range.end.clone(),
    }
}
