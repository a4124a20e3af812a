//! The store's signing key: it signs consent receipts (EdDSA, Ed25519), and
//! its public half is published at `/.well-known/jwks.json` so a study can
//! verify them.
//!
//! The private key (PKCS#8) is kept wrapped under a key derived from the
//! root key with the label [`WRAP_LABEL`], so it exists in memory only while
//! a receipt is signed, and only while the store is unlocked. The key pair
//! is made on first use and never changes.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::crypto::{self, SecretKey};
use crate::storage::{Storage, StorageError};

/// The label of the key that wraps the private half.
pub const WRAP_LABEL: &[u8] = b"hearth/signing-key-wrap/v1";
const WRAP_AAD: &[u8] = b"hearth-signing-key-v1";

/// The key pair as the database keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSigningKey {
    /// The RFC 7638 thumbprint of the public key.
    pub kid: String,
    /// The public key as a JWK (JSON text).
    pub public_jwk: String,
    /// The PKCS#8 private key sealed under the wrap key.
    pub wrapped_private_key: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the signing key does not open with this store's root key")]
    Unwrap,
    #[error("signing failed")]
    Sign,
}

/// The public JWK of an Ed25519 key, and its RFC 7638 thumbprint.
fn public_jwk(public_key: &[u8]) -> (String, Value) {
    let x = URL_SAFE_NO_PAD.encode(public_key);
    // RFC 7638: the required members, lexicographic, no whitespace.
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
    let jwk = json!({
        "kty": "OKP", "crv": "Ed25519", "x": x,
        "kid": kid, "alg": "EdDSA", "use": "sig",
    });
    (kid, jwk)
}

fn generate(wrap: &SecretKey) -> StoredSigningKey {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Zeroizing::new(
        Ed25519KeyPair::generate_pkcs8(&rng)
            .expect("the system random source works")
            .as_ref()
            .to_vec(),
    );
    let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).expect("a key ring just made parses");
    let (kid, jwk) = public_jwk(pair.public_key().as_ref());
    StoredSigningKey {
        kid,
        public_jwk: jwk.to_string(),
        wrapped_private_key: crypto::seal(wrap, WRAP_AAD, &pkcs8),
    }
}

/// The public keys to publish: empty until the first receipt is signed.
pub async fn published(storage: &dyn Storage) -> Result<Vec<Value>, StorageError> {
    Ok(storage
        .signing_key()
        .await?
        .and_then(|k| serde_json::from_str(&k.public_jwk).ok())
        .into_iter()
        .collect())
}

/// Signs `claims` as a compact JWS with the store's key, making the key on
/// first use. `wrap` is `DataKey::derive(WRAP_LABEL)` of the root key.
pub async fn sign(
    storage: &dyn Storage,
    wrap: &SecretKey,
    typ: &str,
    claims: &impl Serialize,
) -> Result<String, SigningError> {
    let stored = match storage.signing_key().await? {
        Some(k) => k,
        // Two racing first receipts: the stored key wins for both.
        None => storage.put_signing_key(&generate(wrap)).await?,
    };
    let pkcs8 = crypto::open(wrap, WRAP_AAD, &stored.wrapped_private_key)
        .map_err(|_| SigningError::Unwrap)?;
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(stored.kid.clone());
    header.typ = Some(typ.to_string());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&pkcs8))
        .map_err(|_| SigningError::Sign)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_follows_rfc_8037() {
        // RFC 8037 appendix A.1 / A.3.
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let (kid, jwk) = public_jwk(&x);
        assert_eq!(kid, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
        assert_eq!(jwk["kid"], kid.as_str());
    }
}
