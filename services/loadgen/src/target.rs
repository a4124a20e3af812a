//! Which servers may be loaded. A load generator pointed at the wrong host
//! is a denial-of-service tool, so only loopback is accepted unless the
//! operator says `--allow-remote`. The check looks at the URL only: no name
//! is resolved, so nothing is sent anywhere before it passes.

use reqwest::Url;

/// Parses `url` and refuses it unless it is plain HTTP on loopback (or
/// `allow_remote` is set). Returns the base URL.
pub fn check(url: &str, allow_remote: bool) -> anyhow::Result<Url> {
    let parsed = Url::parse(url).map_err(|e| anyhow::anyhow!("--url '{url}': {e}"))?;
    anyhow::ensure!(
        parsed.scheme() == "http",
        "--url '{url}': only http:// is supported (put k6 in front of a TLS endpoint)"
    );
    anyhow::ensure!(
        parsed.username().is_empty() && parsed.password().is_none(),
        "--url '{url}': credentials in the URL are not supported; use --token or --passphrase"
    );
    if !allow_remote && !is_loopback(&parsed) {
        anyhow::bail!(
            "--url '{url}' is not a loopback address (127.0.0.0/8, [::1], localhost); \
             pass --allow-remote to load a server elsewhere that you operate"
        );
    }
    Ok(parsed)
}

/// Whether the URL's host is on loopback, judged from the text alone.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        // URLs of other schemes (postgres://) keep their host as text.
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.');
            let bare = name.trim_start_matches('[').trim_end_matches(']');
            name.eq_ignore_ascii_case("localhost")
                || bare
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only_unless_allowed() {
        for ok in [
            "http://127.0.0.1:7380",
            "http://127.8.9.10:1/",
            "http://localhost:7380",
            "http://LOCALHOST.:7380",
            "http://[::1]:7380",
        ] {
            assert!(check(ok, false).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1:7380",
            "http://192.168.1.2",
            "http://example.org",
            "http://localhost.example.org",
            "http://[::2]:7380",
            "http://0.0.0.0:7380",
        ] {
            assert!(check(bad, false).is_err(), "{bad}");
            assert!(check(bad, true).is_ok(), "{bad}");
        }
        assert!(check("https://127.0.0.1", false).is_err());
        assert!(check("http://u:p@127.0.0.1", false).is_err());
        assert!(check("not a url", false).is_err());
        let db = |u: &str| is_loopback(&Url::parse(u).unwrap());
        assert!(db("postgres://postgres@127.0.0.1:5432/postgres"));
        assert!(db("postgresql://u:p@localhost/x"));
        assert!(db("postgres://[::1]:5432/x"));
        assert!(!db("postgres://db.example.org/x"));
        assert!(!db("postgres://10.1.2.3/x"));
        assert!(!db("postgres:///x?host=/run/postgresql"));
    }
}
