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
