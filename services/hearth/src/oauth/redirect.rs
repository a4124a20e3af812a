//! Redirect URIs: what may be registered, and the exact match at use.
//!
//! Matching is a byte-for-byte string comparison, never a prefix, a
//! normalisation or a pattern. The one exception is RFC 8252's loopback
//! redirect for native apps: `http://127.0.0.1` or `http://[::1]` with any
//! port, the rest still compared exactly.

const LOOPBACK_HOSTS: [&str; 2] = ["http://127.0.0.1", "http://[::1]"];

/// Checks a URI the owner registers.
pub fn validate_registered(uri: &str) -> Result<(), &'static str> {
    let parsed = url::Url::parse(uri).map_err(|_| "not an absolute URI")?;
    if parsed.fragment().is_some() || uri.contains('#') {
        return Err("a redirect URI may not have a fragment");
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("a redirect URI may not carry credentials");
    }
    // What the parser would print must be what was given: no ambiguity
    // between how we compare and how a browser follows it.
    let canonical = parsed.as_str();
    let same = canonical == uri || canonical.strip_suffix('/') == Some(uri);
    if !same {
        return Err("write the URI in its canonical form");
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback_rest(uri).is_some() => Ok(()),
        "http" => Err("plain http is allowed only for 127.0.0.1 and [::1]"),
        // Private-use schemes of native apps look like reverse domain names.
        s if s.contains('.') => Ok(()),
        _ => Err("use https, a loopback http URI or a reverse-domain private scheme"),
    }
}

/// For a loopback URI: the host part and what follows the port.
fn loopback_rest(uri: &str) -> Option<(&'static str, &str)> {
    for host in LOOPBACK_HOSTS {
        if let Some(rest) = uri.strip_prefix(host) {
            let after_port = match rest.strip_prefix(':') {
                Some(p) => {
                    let digits = p.bytes().take_while(u8::is_ascii_digit).count();
                    if digits == 0 || digits > 5 {
                        return None;
                    }
                    &p[digits..]
                }
                None => rest,
            };
            if after_port.is_empty() || after_port.starts_with('/') {
                return Some((host, after_port));
            }
            return None;
        }
    }
    None
}

/// Whether `requested` is one of the registered URIs.
pub fn matches(registered: &[String], requested: &str) -> bool {
    registered.iter().any(|r| {
        if r == requested {
            return true;
        }
        match (loopback_rest(r), loopback_rest(requested)) {
            (Some((h1, rest1)), Some((h2, rest2))) => h1 == h2 && rest1 == rest2,
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_loopback() {
        let reg = vec![
            "https://app.example/cb".to_string(),
            "http://127.0.0.1/callback".to_string(),
        ];
        assert!(matches(&reg, "https://app.example/cb"));
        for bad in [
            "https://app.example/cb/",
            "https://app.example/c",
            "https://app.example/cbx",
            "https://APP.example/cb",
            "https://app.example/CB",
            "https://app.example/%63b",
            "https://app.example/cb?x=1",
            "https://app.example/cb#f",
            "https://app.example.evil/cb",
            "https://app.example@evil.example/cb",
            "http://app.example/cb",
            "http://127.0.0.1:8080@evil.example/callback",
            "http://127.0.0.1:/callback",
            "http://127.0.0.1:123456/callback",
            "http://127.0.0.1:80/callback/x",
            "http://127.0.0.1.evil.example/callback",
            "http://[::1]:80/callback",
        ] {
            assert!(!matches(&reg, bad), "{bad}");
        }
        assert!(matches(&reg, "http://127.0.0.1:51234/callback"));
        assert!(matches(&reg, "http://127.0.0.1/callback"));
    }

    #[test]
    fn registration() {
        assert!(validate_registered("https://app.example/cb").is_ok());
        assert!(validate_registered("http://127.0.0.1/cb").is_ok());
        assert!(validate_registered("com.example.app:/cb").is_ok());
        assert!(validate_registered("http://app.example/cb").is_err());
        assert!(validate_registered("https://app.example/cb#x").is_err());
        assert!(validate_registered("https://u:p@app.example/cb").is_err());
        assert!(validate_registered("https://APP.example/cb").is_err());
        assert!(validate_registered("javascript:alert(1)").is_err());
        assert!(validate_registered("/relative").is_err());
    }
}
