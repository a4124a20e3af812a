//! SMART Backend Services authorization (SMART App Launch 2.2): a study
//! trades a signed client assertion (`private_key_jwt`, RFC 7523) for a
//! short-lived access token. Every check the specification names is made
//! here, and every failure of client authentication is the one answer
//! `invalid_client` (RFC 6749 §5.2), so a caller learns nothing from which
//! check failed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Validation;
use parking_lot::Mutex;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::study::{self, ClientKey, KeyKind};
use super::{Research, StudyScope};
use crate::apps::Apps;
use crate::oauth::wire::Params;
use crate::storage::Storage;

pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Access tokens live this long (SMART: at most five minutes).
pub const TOKEN_TTL: Duration = Duration::from_secs(300);
/// An assertion may expire at most this far ahead.
const MAX_ASSERTION_LIFETIME_SECS: f64 = 300.0;
/// Tolerance for the study's clock against ours.
const CLOCK_SKEW_SECS: f64 = 10.0;
const MAX_JTI: usize = 256;
const MAX_ASSERTION_BYTES: usize = 16 * 1024;

/// How long a fetch of a `jwks_uri` may take.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// A key set larger than this is refused.
const MAX_JWKS_BYTES: usize = 64 * 1024;
/// How long a key set is kept when its answer says nothing.
const DEFAULT_JWKS_TTL: Duration = Duration::from_secs(300);
/// And at most, whatever it says.
const MAX_JWKS_TTL: Duration = Duration::from_secs(24 * 3600);
/// A `kid` missing from a cached set fetches it again, at most this often.
const REFETCH_AFTER: Duration = Duration::from_secs(30);

/// Why no token was issued, by its OAuth error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("{0}")]
    InvalidRequest(&'static str),
    #[error("client authentication failed")]
    InvalidClient,
    #[error("{0}")]
    InvalidScope(&'static str),
    #[error("use client_credentials")]
    UnsupportedGrantType,
    #[error("the token could not be issued now; try again")]
    TemporarilyUnavailable,
}

impl TokenError {
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::InvalidRequest(_) => "invalid_request",
            TokenError::InvalidClient => "invalid_client",
            TokenError::InvalidScope(_) => "invalid_scope",
            TokenError::UnsupportedGrantType => "unsupported_grant_type",
            TokenError::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

/// A token handed out.
pub struct Issued {
    pub access_token: String,
    pub scopes: Vec<StudyScope>,
}

/// The assertion's header, read before anything is trusted.
struct AssertionHeader {
    kind: KeyKind,
    alg: jsonwebtoken::Algorithm,
    kid: String,
    jku: Option<String>,
}

fn decode_part(part: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice::<Value>(&bytes)
        .ok()
        .filter(Value::is_object)
}

fn header(part: &str) -> Result<AssertionHeader, TokenError> {
    let h = decode_part(part).ok_or(TokenError::InvalidClient)?;
    let alg = h.get("alg").and_then(Value::as_str).unwrap_or("none");
    // RS384 and ES384 only: never `none`, never an HMAC keyed with a
    // public key, never another algorithm.
    let (kind, alg) = KeyKind::for_alg(alg).ok_or(TokenError::InvalidClient)?;
    let kid = h
        .get("kid")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or(TokenError::InvalidClient)?
        .to_string();
    let jku = match h.get("jku") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(TokenError::InvalidClient),
    };
    // Keys named in the header itself are never trusted.
    if h.get("jwk").is_some() || h.get("x5u").is_some() || h.get("x5c").is_some() {
        return Err(TokenError::InvalidClient);
    }
    Ok(AssertionHeader {
        kind,
        alg,
        kid,
        jku,
    })
}

/// A NumericDate claim: a JSON number (a string is refused).
fn numeric(claims: &Value, name: &str) -> Result<Option<f64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_f64().map(Some).ok_or(TokenError::InvalidClient),
        Some(_) => Err(TokenError::InvalidClient),
    }
}

fn parse_scopes(scope: &str) -> Result<Vec<StudyScope>, TokenError> {
    let mut out = Vec::new();
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        let parsed = match s {
            "system/Observation.rs" | "system/Observation.read" => StudyScope::Observation,
            "system/Patient.rs" | "system/Patient.read" => StudyScope::Patient,
            _ => {
                return Err(TokenError::InvalidScope(
                    "only system/Observation.rs and system/Patient.rs are offered",
                ))
            }
        };
        if !out.contains(&parsed) {
            out.push(parsed);
        }
    }
    if out.is_empty() {
        return Err(TokenError::InvalidRequest("`scope` is required"));
    }
    Ok(out)
}

impl Research {
    /// Answers a token request: `form` as posted to `token_url`.
    pub async fn issue_token(
        &self,
        storage: &dyn Storage,
        apps: &Apps,
        token_url: &str,
        form: &Params,
    ) -> Result<Issued, TokenError> {
        let one = |name: &'static str| {
            form.get(name)
                .map_err(|_| TokenError::InvalidRequest("a parameter is repeated"))
        };
        match one("grant_type")? {
            Some("client_credentials") => {}
            Some(_) => return Err(TokenError::UnsupportedGrantType),
            None => return Err(TokenError::InvalidRequest("`grant_type` is required")),
        }
        if one("client_assertion_type")? != Some(CLIENT_ASSERTION_TYPE) {
            return Err(TokenError::InvalidClient);
        }
        if one("client_secret")?.is_some() {
            return Err(TokenError::InvalidClient);
        }
        let assertion = one("client_assertion")?.ok_or(TokenError::InvalidClient)?;
        let scopes = parse_scopes(one("scope")?.unwrap_or(""))?;
        let client_id = one("client_id")?;
        let now_us = apps.clock.now_us();
        let study_id = self
            .authenticate_client(storage, apps, token_url, assertion, client_id, now_us)
            .await?;

        // Within what the owner consented, looked up now.
        let registry = apps.read();
        let study = registry
            .studies()
            .get(&study_id)
            .filter(|s| s.withdrawn_us.is_none())
            .ok_or(TokenError::InvalidClient)?;
        if study.live_consent().is_none() {
            return Err(TokenError::InvalidScope(
                "the owner has not consented to this study",
            ));
        }
        let secret = crate::apps::new_secret("hst_");
        self.tokens.add(
            crate::apps::digest(&secret),
            super::TokenEntry {
                study_id,
                scopes: scopes.clone(),
                expires_us: now_us + TOKEN_TTL.as_micros() as i64,
            },
            now_us,
        );
        Ok(Issued {
            access_token: secret,
            scopes,
        })
    }

    /// Checks a client assertion (RFC 7523 §3 and SMART Backend Services);
    /// returns the study it authenticates.
    async fn authenticate_client(
        &self,
        storage: &dyn Storage,
        apps: &Apps,
        token_url: &str,
        assertion: &str,
        client_id: Option<&str>,
        now_us: i64,
    ) -> Result<String, TokenError> {
        if assertion.len() > MAX_ASSERTION_BYTES {
            return Err(TokenError::InvalidClient);
        }
        let mut parts = assertion.split('.');
        let (Some(h), Some(p), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::InvalidClient);
        };
        let header = header(h)?;
        // Unverified: only to find whose keys to verify with.
        let claimed = decode_part(p).ok_or(TokenError::InvalidClient)?;
        let iss = claimed
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(TokenError::InvalidClient)?
            .to_string();
        if client_id.is_some_and(|c| c != iss) {
            return Err(TokenError::InvalidClient);
        }

        // The study: known, not withdrawn; its registered keys.
        let (inline, jwks_uri) = {
            let registry = apps.read();
            let study = registry
                .studies()
                .get(&iss)
                .filter(|s| s.withdrawn_us.is_none())
                .ok_or(TokenError::InvalidClient)?;
            (
                study.description.jwks.clone(),
                study.description.jwks_uri.clone(),
            )
        };
        if let Some(jku) = &header.jku {
            if jwks_uri.as_deref() != Some(jku.as_str()) {
                return Err(TokenError::InvalidClient);
            }
        }
        let key = match (inline, jwks_uri) {
            (Some(jwks), _) => {
                let keys = study::inline_keys(&jwks).map_err(|_| TokenError::InvalidClient)?;
                only_match(&keys, &header)?
            }
            (None, Some(uri)) => self.published_key(&uri, &header).await?,
            (None, None) => return Err(TokenError::InvalidClient),
        };

        // The signature, with the one algorithm the key is for.
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Value>(assertion, &key.key, &validation)
            .map_err(|_| TokenError::InvalidClient)?
            .claims;

        // The claims, now that they are the study's.
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        if text("iss") != Some(iss.as_str()) || text("sub") != Some(iss.as_str()) {
            return Err(TokenError::InvalidClient);
        }
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => a == token_url,
            Some(Value::Array(list)) => list.len() == 1 && list[0] == token_url,
            _ => false,
        };
        if !aud_ok {
            return Err(TokenError::InvalidClient);
        }
        let now = now_us as f64 / 1e6;
        let exp = numeric(&claims, "exp")?.ok_or(TokenError::InvalidClient)?;
        if exp <= now || exp > now + MAX_ASSERTION_LIFETIME_SECS + CLOCK_SKEW_SECS {
            return Err(TokenError::InvalidClient);
        }
        if numeric(&claims, "nbf")?.is_some_and(|nbf| nbf > now + CLOCK_SKEW_SECS) {
            return Err(TokenError::InvalidClient);
        }
        numeric(&claims, "iat")?;
        let jti = text("jti")
            .filter(|j| !j.is_empty() && j.len() <= MAX_JTI)
            .ok_or(TokenError::InvalidClient)?;

        // Never the same jti twice from a study while it could be valid;
        // kept in the database, so a restart forgets nothing.
        let mut h = Sha256::new();
        h.update(b"hearth/assertion-jti/v1");
        h.update((iss.len() as u64).to_be_bytes());
        h.update(iss.as_bytes());
        h.update(jti.as_bytes());
        let digest: [u8; 32] = h.finalize().into();
        let keep_until = ((exp + CLOCK_SKEW_SECS) * 1e6) as i64;
        let fresh = storage
            .spend_assertion(&digest, keep_until, now_us)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "recording a client assertion failed");
                TokenError::TemporarilyUnavailable
            })?;
        if !fresh {
            return Err(TokenError::InvalidClient);
        }
        Ok(iss)
    }

    /// The key of a study that publishes its set at `uri`.
    async fn published_key(
        &self,
        uri: &str,
        header: &AssertionHeader,
    ) -> Result<ClientKey, TokenError> {
        if let Some((keys, fetched)) = self.jwks.cached(uri) {
            match only_match(&keys, header) {
                Ok(key) => return Ok(key),
                // A key rotated in since: look again, but not too often.
                Err(_) if fetched.elapsed() >= REFETCH_AFTER => {}
                Err(e) => return Err(e),
            }
        }
        let keys = self.jwks.fetch(uri).await?;
        only_match(&keys, header)
    }
}

/// The one key whose `kid` is the header's and whose type fits its `alg`.
fn only_match(keys: &[ClientKey], header: &AssertionHeader) -> Result<ClientKey, TokenError> {
    let mut matching = keys
        .iter()
        .filter(|k| k.kid == header.kid && k.kind == header.kind);
    match (matching.next(), matching.next()) {
        (Some(key), None) => Ok(key.clone()),
        _ => Err(TokenError::InvalidClient),
    }
}

/// Key sets fetched from studies' `jwks_uri`s, kept as their answers'
/// `Cache-Control` allows.
pub struct JwksCache {
    client: reqwest::Client,
    sets: Mutex<HashMap<String, CachedSet>>,
}

struct CachedSet {
    keys: Vec<ClientKey>,
    fetched: Instant,
    until: Instant,
}

impl Default for JwksCache {
    fn default() -> JwksCache {
        JwksCache {
            client: reqwest::Client::builder()
                .timeout(JWKS_FETCH_TIMEOUT)
                .connect_timeout(JWKS_FETCH_TIMEOUT)
                // The registered URL is the one trusted: no detours.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client with default TLS settings builds"),
            sets: Mutex::new(HashMap::new()),
        }
    }
}

/// How long an answer may be kept: `no-store`/`no-cache`: not at all;
/// `max-age`: that long (capped); nothing said: a default.
pub fn cache_lifetime(cache_control: Option<&str>) -> Duration {
    let Some(value) = cache_control else {
        return DEFAULT_JWKS_TTL;
    };
    let mut max_age = None;
    for directive in value.split(',').map(|d| d.trim().to_ascii_lowercase()) {
        if directive == "no-store" || directive == "no-cache" {
            return Duration::ZERO;
        }
        if let Some(secs) = directive.strip_prefix("max-age=") {
            max_age = Some(secs.trim_matches('"').parse::<u64>().unwrap_or(0));
        }
    }
    max_age.map_or(DEFAULT_JWKS_TTL, |s| {
        Duration::from_secs(s).min(MAX_JWKS_TTL)
    })
}

impl JwksCache {
    fn cached(&self, uri: &str) -> Option<(Vec<ClientKey>, Instant)> {
        let sets = self.sets.lock();
        let set = sets.get(uri).filter(|s| s.until > Instant::now())?;
        Some((set.keys.clone(), set.fetched))
    }

    async fn fetch(&self, uri: &str) -> Result<Vec<ClientKey>, TokenError> {
        let failed = |what: &str| {
            tracing::warn!(what, "fetching a study's key set failed");
            TokenError::InvalidClient
        };
        let mut response = self
            .client
            .get(uri)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|_| failed("request"))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(failed("status"));
        }
        let lifetime = cache_lifetime(
            response
                .headers()
                .get(reqwest::header::CACHE_CONTROL)
                .and_then(|v| v.to_str().ok()),
        );
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|_| failed("body"))? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(failed("size"));
            }
            body.extend_from_slice(&chunk);
        }
        let set: Value = serde_json::from_slice(&body).map_err(|_| failed("json"))?;
        let keys = study::published_keys(&set);
        let now = Instant::now();
        let mut sets = self.sets.lock();
        if lifetime.is_zero() {
            sets.remove(uri);
        } else {
            sets.retain(|_, s| s.until > now);
            sets.insert(
                uri.to_string(),
                CachedSet {
                    keys: keys.clone(),
                    fetched: now,
                    until: now + lifetime,
                },
            );
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control() {
        assert_eq!(cache_lifetime(None), DEFAULT_JWKS_TTL);
        assert_eq!(cache_lifetime(Some("no-store")), Duration::ZERO);
        assert_eq!(
            cache_lifetime(Some("public, no-cache, max-age=60")),
            Duration::ZERO
        );
        assert_eq!(
            cache_lifetime(Some("public, max-age=60")),
            Duration::from_secs(60)
        );
        assert_eq!(cache_lifetime(Some("max-age=999999999")), MAX_JWKS_TTL);
        assert_eq!(cache_lifetime(Some("max-age=x")), Duration::ZERO);
    }

    #[test]
    fn scopes() {
        assert_eq!(
            parse_scopes("system/Observation.rs system/Patient.rs").unwrap(),
            vec![StudyScope::Observation, StudyScope::Patient]
        );
        assert!(parse_scopes("system/*.rs").is_err());
        assert!(parse_scopes("user/Observation.rs").is_err());
        assert!(parse_scopes("").is_err());
    }

    #[test]
    fn headers() {
        let enc = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        assert!(header(&enc(serde_json::json!({"alg": "none", "kid": "a"}))).is_err());
        assert!(header(&enc(serde_json::json!({"alg": "HS384", "kid": "a"}))).is_err());
        assert!(header(&enc(serde_json::json!({"alg": "RS256", "kid": "a"}))).is_err());
        assert!(header(&enc(serde_json::json!({"alg": "ES384"}))).is_err());
        assert!(header(&enc(
            serde_json::json!({"alg": "ES384", "kid": "a", "jwk": {}})
        ))
        .is_err());
        assert!(header(&enc(serde_json::json!({"alg": "ES384", "kid": "a"}))).is_ok());
    }
}
