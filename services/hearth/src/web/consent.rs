//! The consent page, where the owner switches each requested type on or
//! off, read and write apart; and the page that says a request cannot go on.

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;

use super::{display_name, render};
use crate::oauth::authorize::ConsentPrompt;

/// One switch: a requested scope and the type's name.
struct Switch {
    scope: String,
    label: String,
}

/// The switches of one direction, `write` or `read`.
struct Section {
    direction: &'static str,
    switches: Vec<Switch>,
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage<'a> {
    app_name: &'a str,
    purpose: &'a str,
    privacy_policy_url: &'a str,
    request_id: &'a str,
    csrf_token: &'a str,
    research: bool,
    /// Only the directions something is requested in, write first.
    sections: Vec<Section>,
    ask_passphrase: bool,
    error: Option<&'a str>,
}

impl<'a> ConsentPage<'a> {
    fn new(prompt: &'a ConsentPrompt, error: Option<&'a str>) -> ConsentPage<'a> {
        let scope = &prompt.pending.scope;
        let sections = ["write", "read"]
            .into_iter()
            .map(|direction| Section {
                direction,
                switches: scope
                    .iter()
                    .filter_map(|s| {
                        let ty = s.strip_prefix(direction)?.strip_prefix(':')?;
                        Some(Switch {
                            scope: s.clone(),
                            label: display_name(ty),
                        })
                    })
                    .collect(),
            })
            .filter(|section| !section.switches.is_empty())
            .collect();
        ConsentPage {
            app_name: &prompt.app.name,
            purpose: &prompt.app.purpose,
            privacy_policy_url: &prompt.app.privacy_policy_url,
            request_id: &prompt.request_id,
            csrf_token: &prompt.pending.csrf,
            research: scope.iter().any(|s| s == "research:export"),
            sections,
            ask_passphrase: prompt.asks_passphrase(),
            error,
        }
    }
}

/// The form-action sources the consent page needs: itself, and the
/// client's redirect origin, which the browser checks on the redirect too.
fn consent_csp(redirect_uri: &str) -> String {
    let target = match url::Url::parse(redirect_uri) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => u.origin().ascii_serialization(),
        Ok(u) => format!("{}:", u.scheme()),
        Err(_) => String::new(),
    };
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; form-action 'self' {target}; \
         frame-ancestors 'none'; base-uri 'none'"
    )
}

/// The consent page for `prompt`, with an `error` from the last try.
pub fn consent_page(prompt: &ConsentPrompt, error: Option<&str>, status: StatusCode) -> Response {
    let mut response = render(status, &ConsentPage::new(prompt, error));
    if let Ok(v) = HeaderValue::from_str(&consent_csp(&prompt.pending.redirect_uri)) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
    // With `no-referrer` browsers send `Origin: null` on the form post, and
    // the decision could not be told from a cross-site one; `same-origin`
    // still sends nothing to any other site, the client included.
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

#[derive(Template)]
#[template(path = "oauth_error.html")]
struct ErrorPage<'a> {
    message: &'a str,
}

/// An error shown to the owner and never sent back to the client: used
/// whenever the client or redirect URI cannot be trusted (no open redirect).
pub fn error_page(status: StatusCode, message: &str) -> Response {
    render(status, &ErrorPage { message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::event::{AppKind, AppRecord};
    use crate::oauth::Pending;

    fn prompt(name: &str, purpose: &str, scope: &[&str]) -> ConsentPrompt {
        ConsentPrompt {
            request_id: "rid".into(),
            app: AppRecord {
                app_id: "app_1".into(),
                name: name.into(),
                description: String::new(),
                purpose: purpose.into(),
                privacy_policy_url: "https://app.example/privacy?a=1&b=2".into(),
                redirect_uris: vec!["https://app.example/cb".into()],
                kind: AppKind::App,
                secret_hash: None,
                created_us: 0,
            },
            pending: Pending {
                client_id: "app_1".into(),
                redirect_uri: "https://app.example/cb".into(),
                state: None,
                challenge: String::new(),
                scope: scope.iter().map(|s| s.to_string()).collect(),
                csrf: "csrf".into(),
                session: None,
                created_us: 0,
            },
        }
    }

    #[test]
    fn sections_list_requested_types_write_first() {
        let p = prompt("A", "B", &["read:heart_rate", "write:step_count"]);
        let html = ConsentPage::new(&p, None).render().unwrap();
        let write = html.find("id=\"write:step_count\"").unwrap();
        let read = html.find("id=\"read:heart_rate\"").unwrap();
        assert!(write < read);
        assert!(html.contains("> Heart rate</label>"));
        assert!(html.contains("name=\"passphrase\""));
        assert!(!html.contains("class=\"research\""));
    }

    #[test]
    fn csp_allows_the_form_to_reach_the_client_only() {
        let csp = consent_csp("https://app.example:8443/cb?x=1");
        assert!(csp.contains("form-action 'self' https://app.example:8443;"));
        assert!(consent_csp("com.example.app:/cb").contains("form-action 'self' com.example.app:;"));
    }
}
