//! What a log record holds once opened: one event, encoded compactly.
//!
//! Encoding: one version byte, then postcard. New event kinds are appended
//! at the end of `Event` so older records keep decoding. Records written
//! now compress the postcard bytes (LZ4): samples of one source repeat
//! their metadata, so a record of many shrinks to a fraction. A record
//! holds one writer's event, so its length says nothing more about other
//! sources than before.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::crypto;

/// Postcard, as it is.
const FORMAT_PLAIN: u8 = 1;
/// The postcard bytes' length (u32, little-endian), then the bytes
/// compressed as one LZ4 block.
const FORMAT_LZ4: u8 = 2;
const LENGTH_BYTES: usize = 4;
/// LZ4 turns no more than 255 bytes into one (a match's length byte), so a
/// declared length beyond that is not of this block.
const LZ4_MAX_RATIO: usize = 255;

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
    /// An import's samples of one source, as [`Event::SamplesWritten`]
    /// records a write, where most samples' ids are derived from their
    /// sync identifiers (see `projection::derived_ids`): such a sample's
    /// identifier is not listed in `synced` but given back from its id with
    /// the store's key. `derived` has a byte for each sample of `groups`,
    /// in order: the bits its id's derivation overwrote, or
    /// [`NOT_DERIVED`].
    SamplesImported {
        source: String,
        groups: Vec<DeviceGroup>,
        synced: Vec<SyncRecord>,
        replaced: Vec<[u8; 16]>,
        derived: Vec<u8>,
    },
}

/// In [`Event::SamplesImported`], a sample whose id is not derived (read
/// so: any value above the six bits a derived id keeps).
pub const NOT_DERIVED: u8 = u8::MAX;

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

/// The device a sample was measured on, as the writer described it. Its
/// texts are shared: an import hands the same device to millions of
/// samples, and a copy of one costs no allocation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Device {
    pub name: Arc<str>,
    pub model: Option<Arc<str>>,
    pub manufacturer: Option<Arc<str>>,
    /// One of `catalogue::DEVICE_KINDS`.
    pub kind: Option<Arc<str>>,
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

/// The buffers a record's plaintext passes through as it is sealed (its
/// encoding, then that compressed), kept from one record to the next: a
/// busy writer then neither asks the allocator for a record's worth of
/// fresh memory each time nor zeroes a buffer sized for an event that does
/// not compress. [`Envelope::seal`] wipes what it wrote to them.
#[derive(Default)]
pub struct SealBuffers {
    plain: Vec<u8>,
    compressed: Vec<u8>,
}

impl SealBuffers {
    /// Buffers grown past this (a record with a long route) are let go
    /// rather than kept.
    const KEEP_BYTES: usize = 16 << 20;

    /// Keeps `plain` (wiped and empty) for the next record, unless it or
    /// the compressed buffer grew too large to keep.
    fn keep(&mut self, plain: Vec<u8>) {
        if plain.capacity() <= Self::KEEP_BYTES {
            self.plain = plain;
        }
        if self.compressed.len() > Self::KEEP_BYTES {
            self.compressed = Vec::new();
        }
    }
}

impl Envelope {
    /// Samples this event adds.
    pub fn sample_count(&self) -> usize {
        match &self.event {
            Event::SamplesAdded { batches, .. } => batches.iter().map(|b| b.samples.len()).sum(),
            Event::DeviceSamplesAdded { groups, .. }
            | Event::SamplesWritten { groups, .. }
            | Event::SamplesImported { groups, .. } => groups
                .iter()
                .flat_map(|g| &g.batches)
                .map(|b| b.samples.len())
                .sum(),
            _ => 0,
        }
    }

    /// The plaintext a record seals, as [`Envelope::seal`] seals it.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.encoded_onto(0, 0, &mut SealBuffers::default()))
    }

    /// The postcard encoding, appended to `buf`.
    fn postcard(&self, buf: Vec<u8>) -> Vec<u8> {
        postcard::to_extend(self, buf).expect("events always serialise")
    }

    /// A log record's body: the envelope encoded, compressed after room
    /// for the nonce and sealed in place, as `crypto::seal` would seal
    /// [`Envelope::encode`]. The plaintext passes through `buffers`, which
    /// are wiped before this returns.
    pub fn seal(
        &self,
        key: &[u8; crypto::KEY_LEN],
        aad: &[u8],
        buffers: &mut SealBuffers,
    ) -> Vec<u8> {
        let body = self.encoded_onto(crypto::NONCE_LEN, crypto::TAG_LEN, buffers);
        crypto::seal_in_place(key, aad, body)
    }

    /// `room` zero bytes, then the version byte, the encoding's length and
    /// the encoding compressed, in a buffer of just that size and `tail`
    /// more. The encoding passes through `buffers`, wiped after use.
    fn encoded_onto(&self, room: usize, tail: usize, buffers: &mut SealBuffers) -> Vec<u8> {
        let mut plain = self.postcard(std::mem::take(&mut buffers.plain));
        let most = lz4_flex::block::get_maximum_output_size(plain.len());
        if buffers.compressed.len() < most {
            buffers.compressed.resize(most, 0);
        }
        let written = lz4_flex::block::compress_into(&plain, &mut buffers.compressed[..most])
            .expect("the buffer has LZ4's maximum output size");
        let length = u32::try_from(plain.len()).expect("a record's event is under 4 GiB");
        let mut out = Vec::with_capacity(room + 1 + LENGTH_BYTES + written + tail);
        out.resize(room, 0);
        out.push(FORMAT_LZ4);
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(&buffers.compressed[..written]);
        buffers.compressed[..written].zeroize();
        plain.as_mut_slice().zeroize();
        plain.clear();
        buffers.keep(plain);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
        match bytes.split_first() {
            Some((&FORMAT_LZ4, rest)) => {
                let plain = decompress(rest)?;
                postcard::from_bytes(&plain).map_err(|e| DecodeError(e.to_string()))
            }
            Some((&FORMAT_PLAIN, rest)) => {
                postcard::from_bytes(rest).map_err(|e| DecodeError(e.to_string()))
            }
            Some((v, _)) => Err(DecodeError(format!("unknown format version {v}"))),
            None => Err(DecodeError("empty record".into())),
        }
    }
}

/// The postcard bytes of a [`FORMAT_LZ4`] record, after its version byte.
fn decompress(rest: &[u8]) -> Result<Zeroizing<Vec<u8>>, DecodeError> {
    let (length, block) = rest
        .split_first_chunk::<LENGTH_BYTES>()
        .ok_or_else(|| DecodeError("no length before the compressed event".into()))?;
    let length = u32::from_le_bytes(*length) as usize;
    if length > block.len().saturating_mul(LZ4_MAX_RATIO) + 16 {
        return Err(DecodeError(format!(
            "{length} bytes cannot come of a {}-byte block",
            block.len()
        )));
    }
    let mut plain = Zeroizing::new(vec![0; length]);
    match lz4_flex::block::decompress_into(block, &mut plain) {
        Ok(n) if n == length => Ok(plain),
        Ok(n) => Err(DecodeError(format!(
            "the compressed event is {n} bytes, not the {length} it declares"
        ))),
        Err(e) => Err(DecodeError(format!("the compressed event: {e}"))),
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
            assert_eq!(envelope.postcard(vec![FORMAT_PLAIN]), hex(text));
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

    /// An import's record: thousands of samples of one device, whose
    /// metadata repeats.
    fn import_like(samples: usize) -> Envelope {
        let samples = (0..samples)
            .map(|i| StoredSample {
                id: crate::crypto::new_sample_id().into_bytes(),
                start_us: 1_700_000_000_000_000 + i as i64 * 61_000_000,
                start_offset_min: 60,
                end_us: 1_700_000_000_000_000 + i as i64 * 61_000_000,
                end_offset_min: 60,
                value: 60.0 + (i % 40) as f64,
                metadata: Some(format!(
                    "{{\"HKMetadataKeyHeartRateMotionContext\":\"{}\",\
                     \"deviceHardware\":\"Watch6,2\",\"sourceVersion\":\"10.1\"}}",
                    i % 3
                )),
            })
            .collect();
        Envelope {
            at_us: 7,
            event: Event::SamplesAdded {
                source: "Apple Watch".into(),
                batches: vec![TypeBatch {
                    type_id: "heart_rate".into(),
                    samples,
                }],
            },
        }
    }

    #[test]
    fn records_are_compressed_and_sealed_as_encoded() {
        let env = import_like(4000);
        let plain = env.postcard(Vec::new());
        let encoded = env.encode();
        assert_eq!(encoded[0], FORMAT_LZ4);
        assert!(
            encoded.len() * 3 < plain.len(),
            "{} bytes compressed from {}",
            encoded.len(),
            plain.len()
        );
        assert_eq!(Envelope::decode(&encoded).unwrap(), env);

        let key = [3; crypto::KEY_LEN];
        let mut buffers = SealBuffers::default();
        let body = env.seal(&key, b"aad", &mut buffers);
        let opened = crypto::open(&key, b"aad", &body).unwrap();
        assert_eq!(*opened, *encoded);
        assert_eq!(Envelope::decode(&opened).unwrap(), env);
        assert!(crypto::open(&key, b"other", &body).is_err());
        // The body is the sealed encoding and no larger: nonce, tag.
        assert_eq!(
            body.len(),
            crypto::NONCE_LEN + encoded.len() + crypto::TAG_LEN
        );
    }

    #[test]
    fn seal_buffers_serve_record_after_record_and_keep_nothing() {
        let key = [3; crypto::KEY_LEN];
        let mut buffers = SealBuffers::default();
        // Large, small, then large again: what a longer record left in the
        // buffers never leaks into a shorter one's body.
        for env in [import_like(4000), import_like(3), import_like(2500)] {
            let body = env.seal(&key, b"aad", &mut buffers);
            let opened = crypto::open(&key, b"aad", &body).unwrap();
            assert_eq!(*opened, *env.encode());
            assert!(buffers.plain.is_empty());
            assert!(!buffers.compressed.is_empty());
            assert!(
                buffers.compressed.iter().all(|&b| b == 0),
                "the compressed event is wiped"
            );
        }
    }

    #[test]
    fn a_damaged_compressed_record_is_refused() {
        let encoded = import_like(50).encode();
        let block = &encoded[1 + LENGTH_BYTES..];
        let length = u32::from_le_bytes(encoded[1..1 + LENGTH_BYTES].try_into().unwrap());
        let with = |length: u32, block: &[u8]| {
            let mut bytes = vec![FORMAT_LZ4];
            bytes.extend_from_slice(&length.to_le_bytes());
            bytes.extend_from_slice(block);
            Envelope::decode(&bytes)
        };
        assert!(with(length, block).is_ok());
        for (why, bytes) in [
            ("no length", vec![FORMAT_LZ4, 1, 0]),
            ("cut short", encoded[..encoded.len() / 2].to_vec()),
        ] {
            assert!(Envelope::decode(&bytes).is_err(), "{why}");
        }
        // A declared length the block could not hold is refused before
        // anything of that size is allocated.
        let err = with(u32::MAX, block).unwrap_err().to_string();
        assert!(err.contains("cannot come of"), "{err}");
        let err = with(length + 1, block).unwrap_err().to_string();
        assert!(err.contains("not the"), "{err}");
        assert!(with(length - 1, block).is_err());
        let mut flipped = block.to_vec();
        flipped[block.len() / 2] ^= 0x40;
        // A block changed inside decodes to other bytes or to none; never
        // to the same event.
        assert_ne!(with(length, &flipped).ok(), Some(import_like(0)));
    }
}
