//! Records and the SHA-256 chain that links them.
//!
//! The chain covers only what is stored in the clear (sequence number, key id,
//! predecessor hash, ciphertext), so it can be checked without a key and still
//! verifies after keys are destroyed.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// The hash that precedes the first record.
pub const GENESIS: Hash = [0u8; 32];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub seq: u64,
    pub key_id: u32,
    pub prev_hash: Hash,
    pub hash: Hash,
    /// `nonce || ciphertext` of one encoded event.
    pub body: Vec<u8>,
}

/// The last record committed, kept in the store metadata so that a cut tail
/// is noticed too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogHead {
    pub seq: u64,
    pub hash: Hash,
}

impl LogHead {
    pub const EMPTY: LogHead = LogHead {
        seq: 0,
        hash: GENESIS,
    };
}

pub fn record_hash(seq: u64, key_id: u32, prev_hash: &Hash, body: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(b"hearth-chain-v1");
    h.update(seq.to_be_bytes());
    h.update(key_id.to_be_bytes());
    h.update(prev_hash);
    h.update((body.len() as u64).to_be_bytes());
    h.update(body);
    h.finalize().into()
}

impl LogRecord {
    pub fn new(seq: u64, key_id: u32, prev_hash: Hash, body: Vec<u8>) -> LogRecord {
        let hash = record_hash(seq, key_id, &prev_hash, &body);
        LogRecord {
            seq,
            key_id,
            prev_hash,
            hash,
            body,
        }
    }
}

/// Why the chain is broken at a given sequence number.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainFault {
    #[error(
        "record {seq}: expected sequence number {expected} (a record is missing or out of order)"
    )]
    Gap { seq: u64, expected: u64 },
    #[error("record {seq}: does not link to its predecessor")]
    BrokenLink { seq: u64 },
    #[error("record {seq}: contents do not match its hash")]
    Modified { seq: u64 },
    #[error("log ends at record {last} but the store head says {head}: records were cut")]
    Cut { last: u64, head: u64 },
    #[error("record {seq}: the store head hash does not match")]
    HeadMismatch { seq: u64 },
}

impl ChainFault {
    /// The first sequence number at which the log differs from what was written.
    pub fn seq(&self) -> u64 {
        match self {
            ChainFault::Gap { expected, .. } => *expected,
            ChainFault::BrokenLink { seq }
            | ChainFault::Modified { seq }
            | ChainFault::HeadMismatch { seq } => *seq,
            ChainFault::Cut { last, .. } => last + 1,
        }
    }
}

/// Whether a record's stored hash is the hash of its contents.
pub fn record_intact(record: &LogRecord) -> bool {
    record.hash == record_hash(record.seq, record.key_id, &record.prev_hash, &record.body)
}

/// Checks records one by one, in order.
pub struct ChainVerifier {
    pub last: LogHead,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier {
            last: LogHead::EMPTY,
        }
    }
}

impl ChainVerifier {
    pub fn check(&mut self, record: &LogRecord) -> Result<(), ChainFault> {
        self.check_hashed(record, record_intact(record))
    }

    /// [`ChainVerifier::check`] with whether the record's hash matches its
    /// contents worked out already (on another thread, beside others').
    pub fn check_hashed(&mut self, record: &LogRecord, intact: bool) -> Result<(), ChainFault> {
        let expected = self.last.seq + 1;
        if record.seq != expected {
            return Err(ChainFault::Gap {
                seq: record.seq,
                expected,
            });
        }
        if !intact {
            return Err(ChainFault::Modified { seq: record.seq });
        }
        if record.prev_hash != self.last.hash {
            return Err(ChainFault::BrokenLink { seq: record.seq });
        }
        self.last = LogHead {
            seq: record.seq,
            hash: record.hash,
        };
        Ok(())
    }

    /// After the last record: the log must end where the stored head says.
    pub fn finish(&self, head: LogHead) -> Result<(), ChainFault> {
        if self.last.seq < head.seq {
            return Err(ChainFault::Cut {
                last: self.last.seq,
                head: head.seq,
            });
        }
        if self.last.seq > head.seq {
            // Records beyond the head were never acknowledged by a commit of ours.
            return Err(ChainFault::Gap {
                seq: self.last.seq,
                expected: head.seq + 1,
            });
        }
        if self.last.hash != head.hash {
            return Err(ChainFault::HeadMismatch { seq: head.seq });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<LogRecord> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|seq| {
                let r = LogRecord::new(seq, 1, prev, vec![seq as u8; 40]);
                prev = r.hash;
                r
            })
            .collect()
    }

    fn first_fault(records: &[LogRecord], head: LogHead) -> Option<u64> {
        let mut v = ChainVerifier::default();
        for r in records {
            if let Err(f) = v.check(r) {
                return Some(f.seq());
            }
        }
        v.finish(head).err().map(|f| f.seq())
    }

    #[test]
    fn intact_chain_verifies() {
        let records = chain(5);
        let head = LogHead {
            seq: 5,
            hash: records[4].hash,
        };
        assert_eq!(first_fault(&records, head), None);
    }

    #[test]
    fn each_kind_of_tampering_names_its_sequence_number() {
        let records = chain(6);
        let head = LogHead {
            seq: 6,
            hash: records[5].hash,
        };
        let mut flipped = records.clone();
        flipped[2].body[3] ^= 0x40;
        assert_eq!(first_fault(&flipped, head), Some(3));

        let mut deleted = records.clone();
        deleted.remove(3);
        assert_eq!(first_fault(&deleted, head), Some(4));

        // Swapping contents while the sequence numbers stay in place.
        let mut swapped = records.clone();
        let (a, b) = (swapped[1].clone(), swapped[2].clone());
        swapped[1] = LogRecord { seq: 2, ..b };
        swapped[2] = LogRecord { seq: 3, ..a };
        assert_eq!(first_fault(&swapped, head), Some(2));

        let cut = &records[..4];
        assert_eq!(first_fault(cut, head), Some(5));
    }
}
