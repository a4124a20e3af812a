//! What a log record holds once opened: one event, encoded compactly.
//!
//! Encoding: one version byte, then postcard. New event kinds are appended
//! at the end of `Event` so older records keep decoding.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

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
            Event::DeviceSamplesAdded { groups, .. } => groups
                .iter()
                .flat_map(|g| &g.batches)
                .map(|b| b.samples.len())
                .sum(),
            _ => 0,
        }
    }

    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(vec![FORMAT_VERSION]);
        let body = Zeroizing::new(postcard::to_stdvec(self).expect("events always serialise"));
        out.extend_from_slice(&body);
        out
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
mod tests {
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
}
