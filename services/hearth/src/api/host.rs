//! The `Host` allow-list. A page on another site can make a browser talk to
//! Hearth by pointing its own name at the owner's address (DNS rebinding);
//! the browser then sends that name as `Host`. Hearth answers only to the
//! names it was told it has: the loopback names, the public URL's host, the
//! address it listens on, and `HEARTH_ALLOWED_HOSTS`.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::problem::Problem;
use crate::wire::ErrorCode;

#[derive(Clone, Debug)]
pub struct AllowedHosts {
    /// Lower-case host names and addresses, without ports (IPv6 in brackets).
    names: Vec<String>,
}

impl AllowedHosts {
    pub fn new(extra: &[String], public_url: Option<&str>, listen: SocketAddr) -> AllowedHosts {
        let mut names: Vec<String> = ["localhost", "127.0.0.1", "[::1]"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if let Some(host) = public_url
            .and_then(|u| url::Url::parse(u).ok())
            .and_then(|u| u.host_str().map(str::to_string))
        {
            names.push(host);
        }
        if !listen.ip().is_unspecified() {
            names.push(match listen.ip() {
                IpAddr::V4(ip) => ip.to_string(),
                IpAddr::V6(ip) => format!("[{ip}]"),
            });
        }
        names.extend(extra.iter().map(|h| h.trim().to_string()));
        let mut names: Vec<String> = names.iter().filter_map(|h| normalise(h)).collect();
        names.sort();
        names.dedup();
        AllowedHosts { names }
    }

    /// Whether a `Host` header value names this server.
    pub fn allows(&self, host: &str) -> bool {
        normalise(host).is_some_and(|name| self.names.contains(&name))
    }

    /// The names, for the certificate Hearth makes itself.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// The host part of a `Host` value, lower-cased, without port or trailing dot.
fn normalise(host: &str) -> Option<String> {
    let host = host.trim();
    let name = if host.starts_with('[') {
        // An IPv6 literal: keep the brackets, drop what follows them.
        &host[..=host.find(']')?]
    } else {
        host.rsplit_once(':').map_or(host, |(name, _port)| name)
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    (!name.is_empty()).then(|| name.to_ascii_lowercase())
}

pub async fn check_host(
    State(allowed): State<std::sync::Arc<AllowedHosts>>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        // HTTP/2 carries the host in the URI's authority.
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    match host {
        Some(host) if allowed.allows(host) => next.run(request).await,
        _ => Problem::new(
            StatusCode::MISDIRECTED_REQUEST,
            ErrorCode::HostNotAllowed,
            "this server does not answer to that host name (see HEARTH_ALLOWED_HOSTS)",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(extra: &[&str], public: Option<&str>, listen: &str) -> AllowedHosts {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        AllowedHosts::new(&extra, public, listen.parse().unwrap())
    }

    #[test]
    fn loopback_names_are_allowed_on_any_port() {
        let h = hosts(&[], None, "127.0.0.1:7380");
        for ok in [
            "localhost",
            "localhost:7380",
            "127.0.0.1:1",
            "[::1]:7380",
            "localhost.",
        ] {
            assert!(h.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:7380",
            "127.0.0.1.evil.example",
            "",
            ":7380",
        ] {
            assert!(!h.allows(bad), "{bad}");
        }
    }

    #[test]
    fn configured_names_public_url_and_listen_address() {
        let h = hosts(
            &["hearth.home.arpa", " 192.168.1.20:7380"],
            Some("https://Store.Example:8443/"),
            "10.0.0.5:7380",
        );
        for ok in [
            "hearth.home.arpa",
            "192.168.1.20",
            "store.example:8443",
            "10.0.0.5:7380",
        ] {
            assert!(h.allows(ok), "{ok}");
        }
        assert!(!h.allows("hearth.home.arpa.evil.example"));
        // An unspecified listen address names no host.
        assert!(!hosts(&[], None, "0.0.0.0:7380").allows("0.0.0.0"));
    }

    #[test]
    fn names_compare_without_case() {
        let h = hosts(&["Hearth.Home.Arpa"], None, "127.0.0.1:0");
        assert!(h.allows("hearth.home.arpa"));
        assert!(h.allows("HEARTH.HOME.ARPA:7380"));
    }
}
