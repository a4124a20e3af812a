//! Study descriptions: strict validation of what the owner adds, and the
//! study's client keys (RS384 and ES384 public JWKs).

use std::collections::HashSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use crate::catalogue;
use crate::wire::research::{DateRange, Jwks, StudyDescription};

const MAX_NAME: usize = 200;
const MAX_CONTACT: usize = 500;
const MAX_SECTION: usize = 5000;
const MAX_TYPES: usize = 64;
const MAX_KEYS: usize = 10;
const MAX_KID: usize = 200;
const MAX_URL: usize = 2000;
/// RSA keys shorter than this are refused (NIST SP 800-131A).
const MIN_RSA_MODULUS_BYTES: usize = 256;
/// A P-384 coordinate.
const P384_COORDINATE_BYTES: usize = 48;
/// JWK members that only a private key has.
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// A field of the description that is not acceptable, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

fn invalid(field: &str, message: impl Into<String>) -> Invalid {
    Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

fn text(field: &str, value: &str, max: usize) -> Result<(), Invalid> {
    let n = value.trim().chars().count();
    if n == 0 || value.chars().count() > max {
        return Err(invalid(field, format!("between 1 and {max} characters")));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(invalid(field, "control characters"));
    }
    Ok(())
}

/// The first and last day of a date range; `None` for an open end.
pub fn parse_range(
    range: &DateRange,
) -> Result<(jiff::civil::Date, Option<jiff::civil::Date>), Invalid> {
    let day = |field: &str, s: &str| {
        s.parse::<jiff::civil::Date>()
            .ok()
            .filter(|_| s.len() == 10)
            .ok_or_else(|| invalid(field, "a date as YYYY-MM-DD"))
    };
    let start = day("date_range.start", &range.start)?;
    let end = range
        .end
        .as_deref()
        .map(|e| day("date_range.end", e))
        .transpose()?;
    if end.is_some_and(|end| end < start) {
        return Err(invalid("date_range.end", "on or after the start"));
    }
    Ok((start, end))
}

/// Checks a description the owner sends; `Ok` means it may be stored.
pub fn validate(d: &StudyDescription) -> Result<(), Invalid> {
    text("name", &d.name, MAX_NAME)?;
    text("organisation", &d.organisation, MAX_NAME)?;
    text("contact", &d.contact, MAX_CONTACT)?;
    for (field, value) in [
        ("purpose", &d.purpose),
        ("procedures", &d.procedures),
        ("risks_and_benefits", &d.risks_and_benefits),
        ("duration", &d.duration),
        ("data_use_and_sharing", &d.data_use_and_sharing),
        ("withdrawal", &d.withdrawal),
    ] {
        text(field, value, MAX_SECTION)?;
    }
    if d.requested_types.is_empty() || d.requested_types.len() > MAX_TYPES {
        return Err(invalid(
            "requested_types",
            format!("1 to {MAX_TYPES} type ids"),
        ));
    }
    let mut seen = HashSet::new();
    for id in &d.requested_types {
        if catalogue::lookup(id).is_none() {
            return Err(invalid(
                "requested_types",
                format!("unknown sample type '{id}' (see GET /v1/types)"),
            ));
        }
        if !seen.insert(id) {
            return Err(invalid(
                "requested_types",
                format!("'{id}' is listed twice"),
            ));
        }
    }
    parse_range(&d.date_range)?;
    match (&d.jwks, &d.jwks_uri) {
        (Some(jwks), None) => {
            inline_keys(jwks)?;
        }
        (None, Some(uri)) => jwks_uri(uri)?,
        _ => {
            return Err(invalid(
                "jwks",
                "exactly one of `jwks` (the keys inline) and `jwks_uri`",
            ))
        }
    }
    Ok(())
}

/// A `jwks_uri` Hearth may fetch: `https`, or `http` on a loopback address.
pub fn jwks_uri(value: &str) -> Result<(), Invalid> {
    let bad = || {
        invalid(
            "jwks_uri",
            "an absolute https URL (http only on a loopback address), without credentials or fragment",
        )
    };
    if value.len() > MAX_URL {
        return Err(bad());
    }
    let url = url::Url::parse(value).map_err(|_| bad())?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => return Err(bad()),
    };
    let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    if !scheme_ok || !url.username().is_empty() || url.password().is_some() {
        return Err(bad());
    }
    if url.fragment().is_some() {
        return Err(bad());
    }
    Ok(())
}

/// The signature algorithms studies may use, and the key type each needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// `kty` `RSA`: RS384.
    Rsa,
    /// `kty` `EC`, `crv` `P-384`: ES384.
    EcP384,
}

impl KeyKind {
    /// The key kind an assertion's `alg` needs; `None` for every other
    /// algorithm (`none`, HMAC, PS*, RS256, ...).
    pub fn for_alg(alg: &str) -> Option<(KeyKind, Algorithm)> {
        match alg {
            "RS384" => Some((KeyKind::Rsa, Algorithm::RS384)),
            "ES384" => Some((KeyKind::EcP384, Algorithm::ES384)),
            _ => None,
        }
    }
}

/// A study's public key, ready to verify assertions.
#[derive(Clone)]
pub struct ClientKey {
    pub kid: String,
    pub kind: KeyKind,
    pub key: DecodingKey,
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

fn b64(field: &str, v: Option<&Value>) -> Result<Vec<u8>, String> {
    let s = v
        .and_then(Value::as_str)
        .ok_or_else(|| format!("`{field}` is missing"))?;
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| format!("`{field}` is not base64url without padding"))
}

/// One public JWK as a verification key; the error says what is wrong.
pub fn client_key(jwk: &Map<String, Value>) -> Result<ClientKey, String> {
    if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
        return Err(format!(
            "holds the private member `{m}`: register the public key only"
        ));
    }
    let kid = jwk
        .get("kid")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty() && k.len() <= MAX_KID)
        .ok_or("needs a `kid` of 1 to 200 characters")?
        .to_string();
    if jwk.get("use").is_some_and(|u| u != "sig") {
        return Err("`use` must be `sig`".into());
    }
    let alg = jwk.get("alg").map(|a| a.as_str().unwrap_or("?"));
    let (kind, key) = match jwk.get("kty").and_then(Value::as_str) {
        Some("RSA") => {
            if alg.is_some_and(|a| a != "RS384") {
                return Err("an RSA key must be for RS384".into());
            }
            let n = b64("n", jwk.get("n"))?;
            let e = b64("e", jwk.get("e"))?;
            let significant = n.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                return Err("an RSA key must have at least 2048 bits".into());
            }
            if e.is_empty() {
                return Err("`e` is empty".into());
            }
            let key = DecodingKey::from_rsa_raw_components(&n, &e);
            (KeyKind::Rsa, key)
        }
        Some("EC") => {
            if alg.is_some_and(|a| a != "ES384") {
                return Err("an EC key must be for ES384".into());
            }
            if jwk.get("crv").and_then(Value::as_str) != Some("P-384") {
                return Err("an EC key must be on the curve P-384".into());
            }
            let x = b64("x", jwk.get("x"))?;
            let y = b64("y", jwk.get("y"))?;
            if x.len() != P384_COORDINATE_BYTES || y.len() != P384_COORDINATE_BYTES {
                return Err("`x` and `y` must be 48 bytes each".into());
            }
            let mut point = Vec::with_capacity(1 + 2 * P384_COORDINATE_BYTES);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (KeyKind::EcP384, DecodingKey::from_ec_der(&point))
        }
        _ => return Err("`kty` must be `RSA` (RS384) or `EC` (ES384)".into()),
    };
    Ok(ClientKey { kid, kind, key })
}

/// The keys of an inline set, checked strictly: every key usable, every
/// `kid` once.
pub fn inline_keys(jwks: &Jwks) -> Result<Vec<ClientKey>, Invalid> {
    if jwks.keys.is_empty() || jwks.keys.len() > MAX_KEYS {
        return Err(invalid("jwks.keys", format!("1 to {MAX_KEYS} keys")));
    }
    let mut kids = HashSet::new();
    let mut out = Vec::new();
    for (i, jwk) in jwks.keys.iter().enumerate() {
        let key = client_key(jwk).map_err(|m| invalid(&format!("jwks.keys[{i}]"), m))?;
        if !kids.insert(key.kid.clone()) {
            return Err(invalid(
                &format!("jwks.keys[{i}]"),
                format!("the kid '{}' is used twice", key.kid),
            ));
        }
        out.push(key);
    }
    Ok(out)
}

/// The usable keys of a set fetched from a `jwks_uri`: keys Hearth cannot
/// use (other algorithms, encryption keys) are passed over, not refused.
pub fn published_keys(jwks: &Value) -> Vec<ClientKey> {
    jwks.get("keys")
        .and_then(Value::as_array)
        .map(|keys| {
            keys.iter()
                .filter_map(Value::as_object)
                .take(64)
                .filter_map(|k| client_key(k).ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn keys_are_checked() {
        let x = URL_SAFE_NO_PAD.encode([1u8; 48]);
        let ok = json!({"kty": "EC", "crv": "P-384", "kid": "a", "x": x, "y": x});
        assert!(client_key(&map(ok.clone())).is_ok());
        let mut private = ok.clone();
        private["d"] = json!(x);
        assert!(client_key(&map(private)).unwrap_err().contains("private"));
        let mut p256 = ok.clone();
        p256["crv"] = json!("P-256");
        assert!(client_key(&map(p256)).is_err());
        let mut no_kid = ok.clone();
        no_kid.as_object_mut().unwrap().remove("kid");
        assert!(client_key(&map(no_kid)).is_err());
        let mut hs = ok;
        hs["alg"] = json!("HS384");
        assert!(client_key(&map(hs)).is_err());
        let short_rsa =
            json!({"kty": "RSA", "kid": "r", "n": URL_SAFE_NO_PAD.encode([7u8; 128]), "e": "AQAB"});
        assert!(client_key(&map(short_rsa)).unwrap_err().contains("2048"));
        let oct = json!({"kty": "oct", "kid": "o", "k": "c2VjcmV0"});
        assert!(client_key(&map(oct)).is_err());
    }

    #[test]
    fn jwks_uris() {
        assert!(jwks_uri("https://study.example/jwks.json").is_ok());
        assert!(jwks_uri("http://127.0.0.1:8080/jwks.json").is_ok());
        assert!(jwks_uri("http://localhost/jwks.json").is_ok());
        assert!(jwks_uri("http://study.example/jwks.json").is_err());
        assert!(jwks_uri("https://u:p@study.example/jwks.json").is_err());
        assert!(jwks_uri("ftp://study.example/jwks.json").is_err());
        assert!(jwks_uri("/jwks.json").is_err());
    }

    #[test]
    fn date_ranges() {
        let r = |s: &str, e: Option<&str>| DateRange {
            start: s.into(),
            end: e.map(String::from),
        };
        assert!(parse_range(&r("2025-01-01", Some("2025-12-31"))).is_ok());
        assert!(parse_range(&r("2025-01-01", None)).is_ok());
        assert!(parse_range(&r("2025-12-31", Some("2025-01-01"))).is_err());
        assert!(parse_range(&r("2025-1-1", None)).is_err());
        assert!(parse_range(&r("2025-02-30", None)).is_err());
    }
}
