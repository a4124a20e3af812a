//! What a log record holds once opened: one event, encoded compactly.
//!
//! Encoding: one version byte, then postcard. New event kinds are appended
//! at the end of `Event` so older records keep decoding.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto;

const FORMAT_VERSION: u8 = 1;

/// A sample as the log keeps it: canonical unit, UTC microseconds plus the
/// offset the client wrote it with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredSample {
    pub id: [u8; 16],
    pub start_us: i64,
    pub start_offset_min: i16,
    pub end_us: i64,
    pub end_offset_min: i16,
    pub value: f64,
    /// A JSON object, as text.
    pub metadata: Option<String>,
}

/// Samples of one type, so the type name is stored once per batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TypeBatch {
    pub type_id: String,
    pub samples: Vec<StoredSample>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Event {
    SamplesAdded {
        source: String,
        batches: Vec<TypeBatch>,
    },
    SamplesDeleted {
        source: String,
        ids: Vec<[u8; 16]>,
    },
    /// A new app, or a changed registration (the record replaces the old one).
    AppRegistered(AppRecord),
    /// The app is gone, with every grant and token of it.
    AppRemoved {
        app_id: String,
    },
    /// The owner's decisions, per type and direction.
    GrantsChanged {
        app_id: String,
        changes: Vec<GrantChange>,
    },
    /// Tokens handed out; `spent` is the refresh token this rotation consumed.
    TokensIssued {
        tokens: Vec<TokenRecord>,
        spent: Option<[u8; 32]>,
    },
    /// Tokens that die now: single ones, and whole families (one grant).
    TokensRevoked {
        hashes: Vec<[u8; 32]>,
        families: Vec<[u8; 16]>,
    },
    /// Samples that name the device that measured them; one group per device.
    DeviceSamplesAdded {
        source: String,
        groups: Vec<DeviceGroup>,
    },
    /// The owner's order of sources for merging overlapping samples.
    SourcePriority {
        order: Vec<SourceKey>,
    },
    /// The owner's characteristics, the whole set: (type id, value).
    CharacteristicsSet {
        values: Vec<(String, String)>,
    },
    /// Samples of one source, with the sync identifiers of those that carry
    /// one, replacing earlier samples of the same source: the samples in
    /// `replaced` are deleted by this same event.
    SamplesWritten {
        source: String,
        groups: Vec<DeviceGroup>,
        synced: Vec<SyncRecord>,
        replaced: Vec<[u8; 16]>,
    },
    /// Data keys destroyed (erasure): the records sealed under `key_ids`
    /// can never be opened again, and the samples of `source` (of every
    /// type, or of `type_id` only) written before this event are gone. With
    /// no source, `type_id` of every source.
    KeysDestroyed {
        key_ids: Vec<u32>,
        source: Option<String>,
        type_id: Option<String>,
    },
    /// The owner accepted a log behind its high-water mark (a restored
    /// older copy, or a cut tail): the mark stood at `mark_seq`, the log
    /// ended at `restored_seq`.
    RestoreAccepted {
        mark_seq: u64,
        restored_seq: u64,
    },
    /// Studies: added, removed, consented to, withdrawn from.
    Research(crate::research::event::ResearchEvent),
    /// Disclosures: apps' usage per app, type and day, and study exports.
    Audit(crate::audit::AuditEvent),
    /// The types the owner pinned to the summary, in their order: the whole
    /// set. Which types someone watches says something about their health,
    /// so the choice is kept in the log like the data.
    TypesPinned {
        type_ids: Vec<String>,
    },
}

/// A sample's sync identifier: chosen by the source that wrote it and
/// unique among that source's live samples.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRecord {
    /// The sample's id.
    pub id: [u8; 16],
    pub sync_id: String,
    pub version: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppKind {
    App,
    Research,
}

/// An app registration as the log keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppRecord {
    pub app_id: String,
    pub name: String,
    pub description: String,
    pub purpose: String,
    pub privacy_policy_url: String,
    pub redirect_uris: Vec<String>,
    pub kind: AppKind,
    /// SHA-256 of the client secret; `None` for a public client.
    pub secret_hash: Option<[u8; 32]>,
    pub created_us: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantChange {
    pub type_id: String,
    /// Write access if true, read access if false.
    pub write: bool,
    pub allowed: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TokenKind {
    Access,
    Refresh,
    /// A named, long-lived credential the owner minted for a script or device.
    Credential,
}

/// A token, by the SHA-256 of its secret value: the value itself is never kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub hash: [u8; 32],
    pub id: [u8; 16],
    pub app_id: String,
    pub kind: TokenKind,
    /// The grant it belongs to: one authorization and all its rotations.
    pub family: [u8; 16],
    pub scope: Vec<String>,
    pub name: Option<String>,
    pub issued_us: i64,
    pub expires_us: Option<i64>,
}

/// The device a sample was measured on, as the writer described it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Device {
    pub name: String,
    pub model: Option<String>,
    pub manufacturer: Option<String>,
    /// One of `catalogue::DEVICE_KINDS`.
    pub kind: Option<String>,
}

/// Samples of one device (or of none), by type.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceGroup {
    pub device: Option<Device>,
    pub batches: Vec<TypeBatch>,
}

/// A source as the owner names it in a priority order: the app, and
/// optionally the device name within it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceKey {
    pub source: String,
    pub device: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// When the writer accepted the event, UTC microseconds.
    pub at_us: i64,
    pub event: Event,
}

#[derive(Debug, thiserror::Error)]
#[error("undecodable event: {0}")]
pub struct DecodeError(String);

impl Envelope {
    /// Samples this event adds.
    pub fn sample_count(&self) -> usize {
        match &self.event {
            Event::SamplesAdded { batches, .. } => batches.iter().map(|b| b.samples.len()).sum(),
            Event::DeviceSamplesAdded { groups, .. } | Event::SamplesWritten { groups, .. } => {
                groups
                    .iter()
                    .flat_map(|g| &g.batches)
                    .map(|b| b.samples.len())
                    .sum()
            }
            _ => 0,
        }
    }

    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.encode_onto(Vec::new()))
    }

    /// [`Envelope::encode`] appended to `buf`, which comes back.
    fn encode_onto(&self, mut buf: Vec<u8>) -> Vec<u8> {
        buf.push(FORMAT_VERSION);
        postcard::to_extend(self, buf).expect("events always serialise")
    }

    /// A log record's body: the envelope encoded after room for the nonce,
    /// in a buffer of `capacity` bytes, and sealed in place, as
    /// `crypto::seal` would seal [`Envelope::encode`]. A record of
    /// thousands of samples is neither copied nor regrown when `capacity`
    /// is about right; the plaintext is overwritten by its ciphertext, and
    /// the allocator wipes any buffer the encoding outgrew.
    pub fn seal(&self, key: &[u8; crypto::KEY_LEN], aad: &[u8], capacity: usize) -> Vec<u8> {
        let mut buf = Vec::with_capacity(capacity);
        buf.resize(crypto::NONCE_LEN, 0);
        crypto::seal_in_place(key, aad, self.encode_onto(buf))
    }

    pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
        match bytes.split_first() {
            Some((&FORMAT_VERSION, rest)) => {
                postcard::from_bytes(rest).map_err(|e| DecodeError(e.to_string()))
            }
            Some((v, _)) => Err(DecodeError(format!("unknown format version {v}"))),
            None => Err(DecodeError("empty record".into())),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let env = Envelope {
            at_us: 1_700_000_000_000_000,
            event: Event::SamplesAdded {
                source: "owner".into(),
                batches: vec![TypeBatch {
                    type_id: "step_count".into(),
                    samples: vec![StoredSample {
                        id: [7; 16],
                        start_us: 1,
                        start_offset_min: 60,
                        end_us: 2,
                        end_offset_min: -300,
                        value: 42.5,
                        metadata: Some("{\"k\":1}".into()),
                    }],
                }],
            },
        };
        assert_eq!(Envelope::decode(&env.encode()).unwrap(), env);
        assert!(Envelope::decode(&[9, 1, 2]).is_err());
        assert!(Envelope::decode(&[]).is_err());
    }

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    fn sample(id: u8, value: f64, metadata: Option<&str>) -> StoredSample {
        StoredSample {
            id: [id; 16],
            start_us: 1_767_225_600_000_000,
            start_offset_min: 60,
            end_us: 1_767_225_660_000_000,
            end_offset_min: 60,
            value,
            metadata: metadata.map(String::from),
        }
    }

    /// Records as servers before sync identifiers wrote them: stores made
    /// then must keep unlocking.
    const RECORDS_IN_THE_FIRST_FORM: [&str; 3] = [
            "018084b1c189d2a30600056f776e6572010a737465705f636f756e7402010101010101010101010101010101\
             01808082e288d2a30678809c9e9b89d2a306780000000000005e4001077b226b223a317d0202020202020202\
             0202020202020202808082e288d2a30678809c9e9b89d2a30678000000000000544000",
            "018088e0a08ad2a30607056170705f780101055761746368010257310001057761746368010a68656172745f\
             726174650103030303030303030303030303030303808082e288d2a30678809c9e9b89d2a306780000000000\
             804e4000",
            "01808c8f808bd2a30601056f776e65720102020202020202020202020202020202",
        ];

    pub(crate) fn records_in_the_first_form() -> Vec<Envelope> {
        RECORDS_IN_THE_FIRST_FORM
            .iter()
            .map(|text| Envelope::decode(&hex(text)).expect("an old record decodes"))
            .collect()
    }

    #[test]
    fn records_in_the_first_form_still_decode() {
        let expected = [
            Event::SamplesAdded {
                source: "owner".into(),
                batches: vec![TypeBatch {
                    type_id: "step_count".into(),
                    samples: vec![sample(1, 120.0, Some("{\"k\":1}")), sample(2, 80.0, None)],
                }],
            },
            Event::DeviceSamplesAdded {
                source: "app_x".into(),
                groups: vec![DeviceGroup {
                    device: Some(Device {
                        name: "Watch".into(),
                        model: Some("W1".into()),
                        manufacturer: None,
                        kind: Some("watch".into()),
                    }),
                    batches: vec![TypeBatch {
                        type_id: "heart_rate".into(),
                        samples: vec![sample(3, 61.0, None)],
                    }],
                }],
            },
            Event::SamplesDeleted {
                source: "owner".into(),
                ids: vec![[2; 16]],
            },
        ];
        let decoded = records_in_the_first_form();
        for ((envelope, event), text) in decoded.iter().zip(expected).zip(RECORDS_IN_THE_FIRST_FORM)
        {
            assert_eq!(envelope.event, event);
            // The old variants are untouched by the ones added after them.
            assert_eq!(*envelope.encode(), hex(text));
        }
        assert_eq!(decoded[0].at_us, 1_767_225_700_000_000);
    }

    #[test]
    fn written_samples_round_trip() {
        let env = Envelope {
            at_us: 5,
            event: Event::SamplesWritten {
                source: "app_x".into(),
                groups: vec![DeviceGroup {
                    device: None,
                    batches: vec![TypeBatch {
                        type_id: "step_count".into(),
                        samples: vec![sample(9, 1.0, None)],
                    }],
                }],
                synced: vec![SyncRecord {
                    id: [9; 16],
                    sync_id: "walk-1".into(),
                    version: 3,
                }],
                replaced: vec![[8; 16]],
            },
        };
        assert_eq!(Envelope::decode(&env.encode()).unwrap(), env);
        assert_eq!(env.sample_count(), 1);
    }

    #[test]
    fn key_destruction_round_trips() {
        let env = Envelope {
            at_us: 6,
            event: Event::KeysDestroyed {
                key_ids: vec![4, 9],
                source: Some("app_x".into()),
                type_id: None,
            },
        };
        assert_eq!(Envelope::decode(&env.encode()).unwrap(), env);
    }
}
