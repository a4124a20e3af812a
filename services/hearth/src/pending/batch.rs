//! What a sealed pending batch holds once opened: who wrote it and its
//! validated samples, with the ids they were given on arrival. Encoding:
//! one version byte, then postcard.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::apps::AppCaller;
use crate::catalogue;
use crate::log::event::{Device, StoredSample};
use crate::log::writer::{NewEntry, NewSample, SyncKey};

const FORMAT_VERSION: u8 = 1;

/// One write accepted while locked.
#[derive(Debug, Serialize, Deserialize)]
pub struct PendingBatch {
    /// The writing app's token as it was presented: the source the samples
    /// are attributed to, and the caller route references are checked as.
    pub app_id: String,
    pub token_id: [u8; 16],
    pub scope: Vec<String>,
    pub token_hash: [u8; 32],
    pub received_at_us: i64,
    pub entries: Vec<PendingEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PendingEntry {
    pub sync: Option<(String, i64)>,
    pub samples: Vec<PendingSample>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PendingSample {
    /// The catalogue id (stable across builds, unlike the index).
    pub type_id: String,
    pub sample: StoredSample,
    pub device: Option<Device>,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("unknown pending batch format {0}")]
    Version(u8),
    #[error("undecodable pending batch: {0}")]
    Decode(String),
    #[error("pending batch names unknown type '{0}'")]
    UnknownType(String),
}

impl PendingBatch {
    pub fn new(app: &AppCaller, received_at_us: i64, entries: &[NewEntry]) -> PendingBatch {
        PendingBatch {
            app_id: app.app_id.to_string(),
            token_id: app.token_id,
            scope: app.scope.to_vec(),
            token_hash: app.token_hash,
            received_at_us,
            entries: entries
                .iter()
                .map(|e| PendingEntry {
                    sync: e.sync.as_ref().map(|s| (s.sync_id.to_string(), s.version)),
                    samples: e
                        .samples
                        .iter()
                        .map(|s| PendingSample {
                            type_id: catalogue::get(s.type_index).id.to_string(),
                            sample: s.sample.clone(),
                            device: s.device.clone(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(vec![FORMAT_VERSION]);
        postcard::to_io(self, &mut *out).expect("encoding to memory cannot fail");
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<PendingBatch, BatchError> {
        match bytes.split_first() {
            Some((&FORMAT_VERSION, rest)) => {
                postcard::from_bytes(rest).map_err(|e| BatchError::Decode(e.to_string()))
            }
            Some((&v, _)) => Err(BatchError::Version(v)),
            None => Err(BatchError::Decode("empty".into())),
        }
    }

    /// The app as it called.
    pub fn caller(&self) -> AppCaller {
        AppCaller {
            app_id: self.app_id.as_str().into(),
            token_id: self.token_id,
            scope: self.scope.clone().into(),
            token_hash: self.token_hash,
        }
    }

    pub fn sample_count(&self) -> usize {
        self.entries.iter().map(|e| e.samples.len()).sum()
    }

    /// Every sample id the batch holds.
    pub fn sample_ids(&self) -> impl Iterator<Item = u128> + '_ {
        self.entries
            .iter()
            .flat_map(|e| &e.samples)
            .map(|s| u128::from_be_bytes(s.sample.id))
    }

    /// The entries as the writer takes them.
    pub fn into_entries(self) -> Result<Vec<NewEntry>, BatchError> {
        self.entries
            .into_iter()
            .map(|e| {
                let samples = e
                    .samples
                    .into_iter()
                    .map(|s| {
                        let type_index = catalogue::lookup(&s.type_id)
                            .ok_or_else(|| BatchError::UnknownType(s.type_id.clone()))?;
                        Ok(NewSample {
                            type_index,
                            sample: s.sample,
                            device: s.device,
                        })
                    })
                    .collect::<Result<Vec<_>, BatchError>>()?;
                Ok(NewEntry {
                    sync: e.sync.map(|(sync_id, version)| SyncKey {
                        sync_id: sync_id.into(),
                        version,
                    }),
                    samples,
                })
            })
            .collect()
    }
}
