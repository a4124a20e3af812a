//! The recovery key: 160 random bits and a 20-bit checksum, written for
//! people in Crockford base32 as nine groups of four characters.

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::crypto;
use crate::lock::LockError;

const KEY_BYTES: usize = 20;
const CHECK_BITS: u32 = 20;
const CHARS: usize = (KEY_BYTES * 8 + CHECK_BITS as usize) / 5;
const GROUP: usize = 4;
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A recovery key: its bytes, and the text shown to the owner once.
pub struct RecoveryKey {
    bytes: Zeroizing<[u8; KEY_BYTES]>,
    text: Zeroizing<String>,
}

impl RecoveryKey {
    pub(super) fn generate() -> RecoveryKey {
        Self::from_bytes(Zeroizing::new(crypto::random_bytes::<KEY_BYTES>()))
    }

    fn from_bytes(bytes: Zeroizing<[u8; KEY_BYTES]>) -> RecoveryKey {
        let text = encode(&bytes);
        RecoveryKey { bytes, text }
    }

    /// Reads a recovery key as typed: case, spaces and dashes do not matter,
    /// `I` and `L` read as `1`, `O` as `0`. A typo fails the checksum.
    pub fn parse(typed: &str) -> Result<RecoveryKey, LockError> {
        let mut values = Zeroizing::new(Vec::with_capacity(CHARS));
        for c in typed.chars() {
            let c = match c.to_ascii_uppercase() {
                '-' | ' ' | '\t' | '\n' | '\r' => continue,
                'I' | 'L' => '1',
                'O' => '0',
                c => c,
            };
            let v = ALPHABET
                .iter()
                .position(|&a| a as char == c)
                .ok_or(LockError::MalformedRecoveryKey)?;
            values.push(v as u8);
        }
        if values.len() != CHARS {
            return Err(LockError::MalformedRecoveryKey);
        }
        let mut bits = Zeroizing::new(Vec::with_capacity(CHARS * 5));
        for v in values.iter() {
            bits.extend((0..5).rev().map(|i| (v >> i) & 1));
        }
        let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = bits[i * 8..i * 8 + 8]
                .iter()
                .fold(0, |acc, b| (acc << 1) | b);
        }
        let check = bits[KEY_BYTES * 8..]
            .iter()
            .fold(0u32, |acc, &b| (acc << 1) | u32::from(b));
        if check != checksum(&bytes) {
            return Err(LockError::MalformedRecoveryKey);
        }
        Ok(Self::from_bytes(bytes))
    }

    pub(super) fn bytes(&self) -> &[u8] {
        self.bytes.as_ref()
    }

    /// `XXXX-XXXX-…`, to show once.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

fn checksum(bytes: &[u8; KEY_BYTES]) -> u32 {
    let digest = Sha256::new()
        .chain_update(b"hearth-recovery-v1")
        .chain_update(bytes)
        .finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) >> (32 - CHECK_BITS)
}

fn encode(bytes: &[u8; KEY_BYTES]) -> Zeroizing<String> {
    let mut bits = Zeroizing::new(Vec::with_capacity(CHARS * 5));
    for byte in bytes.iter() {
        bits.extend((0..8).rev().map(|i| (byte >> i) & 1));
    }
    let check = checksum(bytes);
    bits.extend((0..CHECK_BITS).rev().map(|i| ((check >> i) & 1) as u8));
    let mut text = Zeroizing::new(String::with_capacity(CHARS + CHARS / GROUP));
    for (i, chunk) in bits.chunks(5).enumerate() {
        if i > 0 && i % GROUP == 0 {
            text.push('-');
        }
        let v = chunk.iter().fold(0usize, |acc, &b| (acc << 1) | b as usize);
        text.push(ALPHABET[v] as char);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_forgivingly_and_catches_typos() {
        // A fixed key, so the typo check below is deterministic.
        let key = RecoveryKey::from_bytes(Zeroizing::new(*b"hearth recovery test"));
        let text = key.as_str().to_string();
        assert_eq!(text.len(), CHARS + CHARS / GROUP - 1);
        assert_eq!(text.split('-').count(), CHARS / GROUP);
        let back = RecoveryKey::parse(&text).unwrap();
        assert_eq!(back.bytes(), key.bytes());
        let sloppy = text.to_lowercase().replace('-', " ");
        assert_eq!(RecoveryKey::parse(&sloppy).unwrap().bytes(), key.bytes());
        let forgiving = text.replace('1', "l").replace('0', "O");
        assert_eq!(RecoveryKey::parse(&forgiving).unwrap().bytes(), key.bytes());

        // Every single-character substitution is caught by the checksum.
        let compact: Vec<char> = text.chars().filter(|&c| c != '-').collect();
        for i in 0..compact.len() {
            let mut typo = compact.clone();
            typo[i] = if typo[i] == 'X' { 'Y' } else { 'X' };
            let typo: String = typo.into_iter().collect();
            assert!(RecoveryKey::parse(&typo).is_err(), "typo at {i} accepted");
        }
        assert!(RecoveryKey::parse(&text[..text.len() - 1]).is_err());
        assert!(RecoveryKey::parse("correct horse battery staple").is_err());
        assert_ne!(RecoveryKey::generate().bytes(), key.bytes());
    }
}
