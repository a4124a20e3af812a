//! The pending-write key pair and HPKE sealing (RFC 9180, mode base,
//! X25519-HKDF-SHA256 / HKDF-SHA256 / ChaCha20Poly1305).
//!
//! The public half stays in the clear, in the database and in memory while
//! locked, so writes can be sealed without any secret. The private half is
//! kept wrapped under a key derived from the root key, and exists in memory
//! only while an unlock merges pending writes.

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use zeroize::Zeroizing;

use crate::crypto::{self, CryptoError, DataKey};

type Kem = X25519HkdfSha256;

/// The label of the key that wraps the private half.
pub const WRAP_LABEL: &[u8] = b"hearth/pending-key-wrap/v1";
/// HPKE `info`: binds every sealed batch to this purpose.
const INFO: &[u8] = b"hearth/pending-write/v1";
const WRAP_AAD: &[u8] = b"hearth-pending-key-v1";
/// Size of the encapsulated key that leads every sealed batch.
const ENCAPPED_LEN: usize = 32;

/// The public half, with which anyone may seal a batch.
#[derive(Clone)]
pub struct SealingKey(<Kem as hpke::Kem>::PublicKey);

/// The private half, unwrapped for a merge; wiped when dropped.
pub struct OpeningKey(<Kem as hpke::Kem>::PrivateKey);

/// A key pair as the database keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKeyPair {
    pub public_key: Vec<u8>,
    /// The private key sealed under `DataKey::derive(WRAP_LABEL)`.
    pub wrapped_private_key: Vec<u8>,
}

impl SealingKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<SealingKey, CryptoError> {
        <Kem as hpke::Kem>::PublicKey::from_bytes(bytes)
            .map(SealingKey)
            .map_err(|_| CryptoError::Malformed)
    }

    /// `encapsulated key || ciphertext`.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let (encapped, ciphertext) =
            hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, Kem, _>(
                &OpModeS::Base,
                &self.0,
                INFO,
                plaintext,
                &[],
                &mut rand::rngs::OsRng,
            )
            .expect("HPKE sealing to a valid public key cannot fail");
        let mut out = Vec::with_capacity(ENCAPPED_LEN + ciphertext.len());
        out.extend_from_slice(&encapped.to_bytes());
        out.extend_from_slice(&ciphertext);
        out
    }
}

impl OpeningKey {
    pub fn open(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed.len() < ENCAPPED_LEN {
            return Err(CryptoError::Authentication);
        }
        let (encapped, ciphertext) = sealed.split_at(ENCAPPED_LEN);
        let encapped = <Kem as hpke::Kem>::EncappedKey::from_bytes(encapped)
            .map_err(|_| CryptoError::Authentication)?;
        hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, Kem>(
            &OpModeR::Base,
            &self.0,
            &encapped,
            INFO,
            ciphertext,
            &[],
        )
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Authentication)
    }
}

/// A new key pair, its private half wrapped under the root key.
pub fn generate(root: &DataKey) -> (StoredKeyPair, OpeningKey) {
    let (private, public) = Kem::gen_keypair(&mut rand::rngs::OsRng);
    let secret = Zeroizing::new(private.to_bytes().to_vec());
    let stored = StoredKeyPair {
        public_key: public.to_bytes().to_vec(),
        wrapped_private_key: crypto::seal(&root.derive(WRAP_LABEL), WRAP_AAD, &secret),
    };
    (stored, OpeningKey(private))
}

/// The private half of `stored`, unwrapped with the root key; also checks
/// that it belongs to the public half kept beside it.
pub fn unwrap(root: &DataKey, stored: &StoredKeyPair) -> Result<OpeningKey, CryptoError> {
    let secret = crypto::open(
        &root.derive(WRAP_LABEL),
        WRAP_AAD,
        &stored.wrapped_private_key,
    )?;
    let private =
        <Kem as hpke::Kem>::PrivateKey::from_bytes(&secret).map_err(|_| CryptoError::Malformed)?;
    if Kem::sk_to_pk(&private).to_bytes().as_slice() != stored.public_key.as_slice() {
        return Err(CryptoError::Malformed);
    }
    Ok(OpeningKey(private))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_batch_opens_only_with_its_pair() {
        let root = DataKey::generate();
        let (stored, opening) = generate(&root);
        let sealing = SealingKey::from_bytes(&stored.public_key).unwrap();
        let sealed = sealing.seal(b"batch");
        assert_eq!(&opening.open(&sealed).unwrap()[..], b"batch");
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(opening.open(&flipped).is_err());
        let (_, other) = generate(&root);
        assert!(other.open(&sealed).is_err());
    }

    #[test]
    fn the_private_half_unwraps_only_with_the_root_key() {
        let root = DataKey::generate();
        let (stored, _) = generate(&root);
        let again = unwrap(&root, &stored).unwrap();
        let sealed = SealingKey::from_bytes(&stored.public_key)
            .unwrap()
            .seal(b"x");
        assert_eq!(&again.open(&sealed).unwrap()[..], b"x");
        assert!(unwrap(&DataKey::generate(), &stored).is_err());
        let mut swapped = stored.clone();
        swapped.public_key = generate(&root).0.public_key;
        assert!(unwrap(&root, &swapped).is_err());
    }
}
