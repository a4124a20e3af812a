//! Key derivation, key wrapping and record sealing.
//!
//! The store's root key ([`DataKey`]) seals log records with AES-256-GCM-SIV;
//! the additional data binds store id, sequence number and key id so a record
//! cannot be moved to another place or store undetected. Subkeys for other
//! purposes come from [`DataKey::derive`] (HKDF-SHA256). How the root key is
//! wrapped (key slots) is [`crate::keys`]; the whole hierarchy is
//! `docs/keys.md`.

use aes_gcm_siv::aead::{Aead, AeadInPlace, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub const KEY_LEN: usize = 32;
pub const NONCE_LEN: usize = 12;
pub const SALT_LEN: usize = 16;
pub const STORE_ID_LEN: usize = 16;

/// The one data key id in use; key rotation adds new ids.
pub const FIRST_KEY_ID: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("authentication failed")]
    Authentication,
    #[error("key derivation failed: {0}")]
    Kdf(String),
    #[error("malformed key material")]
    Malformed,
    #[error("KDF parameters out of bounds: {0}")]
    OutOfBounds(String),
}

/// Argon2id cost parameters; stored in the clear beside the salt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl KdfParams {
    /// OWASP's first recommended Argon2id configuration, one lane.
    pub const RECOMMENDED: KdfParams = KdfParams {
        memory_kib: 64 * 1024,
        iterations: 3,
        parallelism: 1,
    };

    /// Argon2id memory, iterations and lanes accepted from storage. Checked
    /// before anything is allocated: the parameters sit in the clear, and a
    /// huge value must give an error, not an allocation failure.
    pub const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
    pub const MIN_MEMORY_KIB: u32 = 8;
    pub const MAX_ITERATIONS: u32 = 64;
    pub const MAX_PARALLELISM: u32 = 16;

    pub fn check_bounds(&self) -> Result<(), CryptoError> {
        let within = |v: u32, lo: u32, hi: u32| (lo..=hi).contains(&v);
        if !within(self.parallelism, 1, Self::MAX_PARALLELISM) {
            return Err(CryptoError::OutOfBounds(format!(
                "parallelism {} (allowed 1 to {})",
                self.parallelism,
                Self::MAX_PARALLELISM
            )));
        }
        let min_memory = Self::MIN_MEMORY_KIB.max(8 * self.parallelism);
        if !within(self.memory_kib, min_memory, Self::MAX_MEMORY_KIB) {
            return Err(CryptoError::OutOfBounds(format!(
                "memory {} KiB (allowed {min_memory} to {} KiB)",
                self.memory_kib,
                Self::MAX_MEMORY_KIB
            )));
        }
        if !within(self.iterations, 1, Self::MAX_ITERATIONS) {
            return Err(CryptoError::OutOfBounds(format!(
                "iterations {} (allowed 1 to {})",
                self.iterations,
                Self::MAX_ITERATIONS
            )));
        }
        Ok(())
    }

    pub fn is_weaker_than_recommended(&self) -> bool {
        self.memory_kib < Self::RECOMMENDED.memory_kib
            || self.iterations < Self::RECOMMENDED.iterations
    }
}

pub type SecretKey = Zeroizing<[u8; KEY_LEN]>;

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut out);
    out
}

/// A new sample id: a v4 UUID drawn from the thread's CSPRNG (ChaCha,
/// seeded and reseeded from the OS), not from the OS directly: an import
/// or a large batch asks for millions, and a system call each shows in
/// their profiles.
pub fn new_sample_id() -> uuid::Uuid {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

pub fn random_key() -> SecretKey {
    Zeroizing::new(random_bytes::<KEY_LEN>())
}

/// Argon2id over `passphrase`. The parameters are bounds-checked and the
/// working memory is reserved fallibly, so no value read from storage can
/// abort the process.
pub fn derive_kek(
    passphrase: &[u8],
    salt: &[u8],
    params: KdfParams,
) -> Result<SecretKey, CryptoError> {
    params.check_bounds()?;
    let argon_params = argon2::Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        Some(KEY_LEN),
    )
    .map_err(|e| CryptoError::Kdf(e.to_string()))?;
    let blocks = argon_params.block_count();
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon_params,
    );
    let mut memory: Vec<argon2::Block> = Vec::new();
    memory.try_reserve_exact(blocks).map_err(|_| {
        CryptoError::Kdf(format!(
            "cannot reserve {} KiB for Argon2id",
            params.memory_kib
        ))
    })?;
    memory.resize(blocks, argon2::Block::default());
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    let result = argon
        .hash_password_into_with_memory(passphrase, salt, out.as_mut(), &mut memory)
        .map_err(|e| CryptoError::Kdf(e.to_string()));
    // The working memory holds values derived from the passphrase.
    memory.iter_mut().for_each(zeroize::Zeroize::zeroize);
    result?;
    Ok(out)
}

/// Encrypts `plaintext`; the output is `nonce || ciphertext+tag`.
pub fn seal(key: &[u8; KEY_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let cipher = Aes256GcmSiv::new(key.into());
    let nonce = random_bytes::<NONCE_LEN>();
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("AES-GCM-SIV encryption of an in-memory buffer cannot fail");
    let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    out
}

/// Bytes [`seal_in_place`] adds after the message (the authentication tag).
pub const TAG_LEN: usize = 16;

/// [`seal`] without a second buffer: `buf` holds [`NONCE_LEN`] bytes of
/// room, then the message; it comes back as what [`seal`] would give (the
/// nonce, the ciphertext and the tag), grown by [`TAG_LEN`] bytes, which
/// costs no copy when its capacity allows.
pub fn seal_in_place(key: &[u8; KEY_LEN], aad: &[u8], mut buf: Vec<u8>) -> Vec<u8> {
    assert!(buf.len() >= NONCE_LEN, "room for the nonce");
    let cipher = Aes256GcmSiv::new(key.into());
    let nonce = random_bytes::<NONCE_LEN>();
    buf[..NONCE_LEN].copy_from_slice(&nonce);
    let tag = cipher
        .encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, &mut buf[NONCE_LEN..])
        .expect("AES-GCM-SIV encryption of an in-memory buffer cannot fail");
    buf.extend_from_slice(&tag);
    buf
}

pub fn open(
    key: &[u8; KEY_LEN],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if sealed.len() < NONCE_LEN + 16 {
        return Err(CryptoError::Authentication);
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let cipher = Aes256GcmSiv::new(key.into());
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Authentication)
}

/// Opens `sealed` (as [`seal`] made it) onto the end of `out`, in place:
/// no copy of the plaintext is made when `out` has the capacity. On failure
/// `out` is as it was.
pub fn open_onto(
    key: &[u8; KEY_LEN],
    aad: &[u8],
    sealed: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    use aes_gcm_siv::aead::AeadInPlace;
    let size = sealed
        .len()
        .checked_sub(NONCE_LEN + TAG_LEN)
        .ok_or(CryptoError::Authentication)?;
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(size);
    let at = out.len();
    out.extend_from_slice(ciphertext);
    let cipher = Aes256GcmSiv::new(key.into());
    cipher
        .decrypt_in_place_detached(Nonce::from_slice(nonce), aad, &mut out[at..], tag.into())
        .map_err(|_| {
            // What was decrypted before the tag failed is wiped.
            zeroize::Zeroize::zeroize(&mut out[at..]);
            out.truncate(at);
            CryptoError::Authentication
        })
}

/// The store's root key and store id: what each key slot wraps (see
/// [`crate::keys`], which calls it [`crate::keys::RootKey`]). Today it also
/// seals the log records, as key id 1.
pub struct DataKey {
    pub key_id: u32,
    pub key: SecretKey,
    pub store_id: [u8; STORE_ID_LEN],
}

fn wrap_aad(key_id: u32) -> Vec<u8> {
    let mut aad = b"hearth-keyring-v1".to_vec();
    aad.extend_from_slice(&key_id.to_be_bytes());
    aad
}

impl DataKey {
    pub fn generate() -> DataKey {
        DataKey {
            key_id: FIRST_KEY_ID,
            key: random_key(),
            store_id: random_bytes(),
        }
    }

    pub fn wrap(&self, kek: &[u8; KEY_LEN]) -> Vec<u8> {
        let mut plain = Zeroizing::new(Vec::with_capacity(KEY_LEN + STORE_ID_LEN));
        plain.extend_from_slice(self.key.as_ref());
        plain.extend_from_slice(&self.store_id);
        seal(kek, &wrap_aad(self.key_id), &plain)
    }

    pub fn unwrap(
        kek: &[u8; KEY_LEN],
        key_id: u32,
        wrapped: &[u8],
    ) -> Result<DataKey, CryptoError> {
        let plain = open(kek, &wrap_aad(key_id), wrapped)?;
        if plain.len() != KEY_LEN + STORE_ID_LEN {
            return Err(CryptoError::Malformed);
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(&plain[..KEY_LEN]);
        let mut store_id = [0u8; STORE_ID_LEN];
        store_id.copy_from_slice(&plain[KEY_LEN..]);
        Ok(DataKey {
            key_id,
            key,
            store_id,
        })
    }

    /// A key for another purpose: HKDF-SHA256 of the root key with `label`
    /// (named `hearth/<purpose>/v1`) as its info.
    pub fn derive(&self, label: &[u8]) -> SecretKey {
        let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(None, self.key.as_ref());
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        hkdf.expand(label, out.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        out
    }

    /// Additional data for the record at `seq`.
    pub fn record_aad(&self, seq: u64) -> [u8; 15 + STORE_ID_LEN + 8 + 4] {
        let mut aad = [0u8; 15 + STORE_ID_LEN + 8 + 4];
        aad[..15].copy_from_slice(b"hearth-event-v1");
        aad[15..31].copy_from_slice(&self.store_id);
        aad[31..39].copy_from_slice(&seq.to_be_bytes());
        aad[39..].copy_from_slice(&self.key_id.to_be_bytes());
        aad
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_ids_are_random_v4_uuids() {
        let ids: std::collections::HashSet<uuid::Uuid> =
            (0..10_000).map(|_| new_sample_id()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in &ids {
            assert_eq!(id.get_version(), Some(uuid::Version::Random));
            assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        }
        // Each of the 122 random bits is set in about half of the ids.
        for bit in 0..128 {
            let set = ids
                .iter()
                .filter(|id| (id.as_u128() >> bit) & 1 == 1)
                .count();
            let fixed = matches!(bit, 76..=79 | 62 | 63);
            assert!(fixed || (4_500..5_500).contains(&set), "bit {bit}: {set}");
        }
    }

    #[test]
    fn sealing_in_place_opens_as_sealing_does() {
        let key = random_bytes::<KEY_LEN>();
        let message = b"heart rate 61 bpm".repeat(100);
        let mut buf = Vec::with_capacity(NONCE_LEN + message.len() + TAG_LEN);
        buf.extend_from_slice(&[0; NONCE_LEN]);
        buf.extend_from_slice(&message);
        let at = buf.as_ptr();
        let sealed = seal_in_place(&key, b"aad", buf);
        assert_eq!(sealed.as_ptr(), at, "no second buffer");
        assert_eq!(sealed.len(), NONCE_LEN + message.len() + TAG_LEN);
        assert!(!sealed.windows(message.len()).any(|w| w == &message[..]));
        assert_eq!(&open(&key, b"aad", &sealed).unwrap()[..], &message[..]);
        assert!(open(&key, b"other", &sealed).is_err());
        let again = seal(&key, b"aad", &message);
        assert_eq!(again.len(), sealed.len());
        assert_eq!(&open(&key, b"aad", &again).unwrap()[..], &message[..]);
    }

    const FAST: KdfParams = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[test]
    fn wrapped_key_opens_only_with_the_right_passphrase() {
        let salt = random_bytes::<SALT_LEN>();
        let kek = derive_kek(b"correct horse", &salt, FAST).unwrap();
        let dk = DataKey::generate();
        let wrapped = dk.wrap(&kek);
        let back = DataKey::unwrap(&kek, dk.key_id, &wrapped).unwrap();
        assert_eq!(back.key.as_ref(), dk.key.as_ref());
        assert_eq!(back.store_id, dk.store_id);
        let wrong = derive_kek(b"battery staple", &salt, FAST).unwrap();
        assert!(DataKey::unwrap(&wrong, dk.key_id, &wrapped).is_err());
        assert!(DataKey::unwrap(&kek, dk.key_id + 1, &wrapped).is_err());
    }

    #[test]
    fn derive_is_hkdf_sha256_with_the_label_as_info() {
        let dk = DataKey::generate();
        let mut okm = [0u8; KEY_LEN];
        hkdf::Hkdf::<sha2::Sha256>::new(None, dk.key.as_ref())
            .expand(b"hearth/head-mac/v1", &mut okm)
            .unwrap();
        assert_eq!(dk.derive(b"hearth/head-mac/v1").as_ref(), &okm);
        let a = dk.derive(b"hearth/head-mac/v1");
        let b = dk.derive(b"hearth/pending-key-wrap/v1");
        assert_ne!(a.as_ref(), b.as_ref());
        assert_eq!(a.as_ref(), dk.derive(b"hearth/head-mac/v1").as_ref());
    }

    #[test]
    fn kdf_parameters_out_of_bounds_are_refused_before_allocating() {
        for memory_kib in [u32::MAX, KdfParams::MAX_MEMORY_KIB + 1, 0] {
            let params = KdfParams { memory_kib, ..FAST };
            assert!(matches!(
                derive_kek(b"pw", &[0; SALT_LEN], params),
                Err(CryptoError::OutOfBounds(_))
            ));
        }
        for (iterations, parallelism) in [(0, 1), (65, 1), (1, 0), (1, 17)] {
            let params = KdfParams {
                iterations,
                parallelism,
                ..FAST
            };
            assert!(params.check_bounds().is_err());
        }
        assert!(KdfParams::RECOMMENDED.check_bounds().is_ok());
    }

    #[test]
    fn record_aad_binds_sequence_number() {
        let dk = DataKey::generate();
        let sealed = seal(&dk.key, &dk.record_aad(7), b"payload");
        assert_eq!(
            &open(&dk.key, &dk.record_aad(7), &sealed).unwrap()[..],
            b"payload"
        );
        assert!(open(&dk.key, &dk.record_aad(8), &sealed).is_err());
        let mut flipped = sealed.clone();
        flipped[NONCE_LEN + 2] ^= 1;
        assert!(open(&dk.key, &dk.record_aad(7), &flipped).is_err());
        assert!(open(&dk.key, &dk.record_aad(7), &sealed[..10]).is_err());
    }
}
