//! Hearth's own OAuth 2.1 authorization server: authorization code with
//! PKCE (S256 only), rotating refresh tokens, revocation, metadata.
//!
//! Tokens are opaque random strings, kept only as SHA-256 hashes in the
//! encrypted log and in memory, and looked up on every request. That binds
//! them to this store (another store has never heard of them), makes
//! revocation immediate, and leaves nothing in a token to forge or read:
//! there is no signature algorithm to confuse and no claim to tamper with.
//!
//! [`AuthorizationServer`] holds the protocol's logic ([`authorize`]:
//! authorization requests and the owner's consent; [`token`]: code
//! exchange, refresh rotation, revocation) and answers with [`OAuthError`]s;
//! [`wire`] has what the endpoints take and answer; the HTTP handlers
//! (`api::oauth`) only read requests, call the server and render its answers.

pub mod authorize;
mod error;
pub mod redirect;
pub mod token;
pub mod wire;

pub use error::OAuthError;

use std::collections::HashMap;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::Store;

/// Authorization codes live at most this long (RFC 9700: short).
pub const CODE_TTL: Duration = Duration::from_secs(600);
/// Access tokens live this long.
pub const ACCESS_TTL: Duration = Duration::from_secs(900);
/// Refresh tokens live this long unless rotated first.
pub const REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// How long the owner has to decide on a consent page.
pub const PENDING_TTL: Duration = Duration::from_secs(1800);
/// Most consent pages open at once; the oldest are dropped beyond this.
const MAX_PENDING: usize = 256;
/// Most unredeemed codes at once.
const MAX_CODES: usize = 1024;

/// The authorization server over a store and the requests and codes kept
/// in memory.
pub struct AuthorizationServer<'a> {
    store: &'a Store,
    requests: &'a OAuthState,
}

impl<'a> AuthorizationServer<'a> {
    pub fn new(store: &'a Store, requests: &'a OAuthState) -> AuthorizationServer<'a> {
        AuthorizationServer { store, requests }
    }
}

/// An authorization request waiting for the owner's decision.
#[derive(Clone, Debug)]
pub struct Pending {
    pub client_id: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub challenge: String,
    pub scope: Vec<String>,
    pub csrf: String,
    /// The owner session the page was shown to; `None`: the page asked for
    /// the passphrase, and the decision must carry it.
    pub session: Option<[u8; 32]>,
    pub created_us: i64,
}

/// An issued authorization code, by the hash of its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Code {
    pub client_id: String,
    pub redirect_uri: String,
    pub challenge: String,
    pub scope: Vec<String>,
    pub expires_us: i64,
    /// The grant the code's tokens belong to.
    pub family: [u8; 16],
    /// Set once redeemed: a second use revokes what the first one got.
    pub redeemed: bool,
}

/// Authorization requests waiting for the owner, and issued codes.
#[derive(Default)]
pub struct OAuthState {
    pending: Mutex<HashMap<String, Pending>>,
    codes: Mutex<HashMap<[u8; 32], Code>>,
}

impl OAuthState {
    pub fn add_pending(&self, id: String, p: Pending, now_us: i64) {
        let mut pending = self.pending.lock();
        pending.retain(|_, p| now_us - p.created_us < PENDING_TTL.as_micros() as i64);
        if pending.len() >= MAX_PENDING {
            if let Some(oldest) = pending
                .iter()
                .min_by_key(|(_, p)| p.created_us)
                .map(|(k, _)| k.clone())
            {
                pending.remove(&oldest);
            }
        }
        pending.insert(id, p);
    }

    pub fn pending(&self, id: &str, now_us: i64) -> Option<Pending> {
        self.pending
            .lock()
            .get(id)
            .filter(|p| now_us - p.created_us < PENDING_TTL.as_micros() as i64)
            .cloned()
    }

    pub fn take_pending(&self, id: &str) -> Option<Pending> {
        self.pending.lock().remove(id)
    }

    pub fn add_code(&self, hash: [u8; 32], code: Code, now_us: i64) {
        let mut codes = self.codes.lock();
        codes.retain(|_, c| c.expires_us > now_us);
        if codes.len() >= MAX_CODES {
            if let Some(oldest) = codes
                .iter()
                .min_by_key(|(_, c)| c.expires_us)
                .map(|(k, _)| *k)
            {
                codes.remove(&oldest);
            }
        }
        codes.insert(hash, code);
    }
}

/// `BASE64URL(SHA256(verifier))` against the stored challenge, in constant time.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let valid = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !valid {
        return false;
    }
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

/// A valid S256 challenge is 43 base64url characters (a SHA-256 digest).
pub fn challenge_is_valid(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_rfc7636_example() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(challenge_is_valid(challenge));
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches(challenge, challenge));
        assert!(!pkce_matches("short", challenge));
    }
}
