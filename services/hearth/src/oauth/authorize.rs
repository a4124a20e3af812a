//! Authorization requests and the owner's consent decision: from a client's
//! request to the consent page, and from the owner's answer to a code.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use subtle::ConstantTimeEq;

use super::wire::{AuthorizeQuery, ConsentForm, Decision};
use super::CODE_TTL;
use super::{challenge_is_valid, redirect, AuthorizationServer, Code, OAuthError, Pending};
use crate::apps::{digest, new_secret};
use crate::catalogue;
use crate::crypto;
use crate::lock::{Client, LockError};
use crate::log::event::{AppKind, AppRecord, Event, GrantChange};
use crate::log::writer::Write;
use crate::store::SessionToken;

/// An answer for the client, sent to its registered redirect URI.
#[derive(Debug)]
pub struct ClientRedirect {
    pub redirect_uri: String,
    pub state: Option<String>,
    pub error: OAuthError,
}

/// Why an authorization request gets no consent page.
#[derive(Debug)]
pub enum AuthorizeError {
    /// The store is sealed: the registry of apps is not loaded yet.
    Sealed,
    /// Unknown client or unregistered redirect URI, which look the same so
    /// that nobody can probe which client ids exist. Shown to the owner and
    /// never redirected: the redirect URI cannot be trusted.
    UnknownClient,
    /// Anything else, told to the (now trusted) client.
    Client(ClientRedirect),
}

/// A request waiting for the owner, and what its consent page shows.
#[derive(Debug)]
pub struct ConsentPrompt {
    pub request_id: String,
    pub app: AppRecord,
    pub pending: Pending,
}

impl ConsentPrompt {
    /// No owner session saw the page: the decision must bring the passphrase.
    pub fn asks_passphrase(&self) -> bool {
        self.pending.session.is_none()
    }
}

/// Why a consent decision ends without a code.
#[derive(Debug)]
pub enum ConsentError {
    MissingRequestId,
    /// Expired, or answered already.
    UnknownRequest,
    /// Missing or wrong CSRF token, or a form posted from another origin.
    Forged,
    /// The owner said no, or the client must be told something else.
    Client(ClientRedirect),
    /// The app was removed while the page was open.
    AppRemoved,
    /// The owner session the page was shown to is gone.
    SessionEnded,
    /// The page again, for another try.
    WrongPassphrase(Box<ConsentPrompt>),
    TooManyAttempts(Box<ConsentPrompt>),
    /// Checking the passphrase failed for another reason (logged).
    StoreFailed,
    /// A concurrent decision answered the request first.
    AlreadyAnswered,
    Locked,
    /// The log did not take the decision.
    NotStored,
}

/// A decision on a pending request, checked up to the owner's proof.
#[derive(Debug)]
pub struct Answer {
    prompt: ConsentPrompt,
    /// When the answer came in.
    now_us: i64,
}

impl Answer {
    /// The owner proves themselves with the passphrase, not a session.
    pub fn needs_passphrase(&self) -> bool {
        self.prompt.asks_passphrase()
    }
}

/// The owner allowed: the code for the client, and the owner session a
/// passphrase on the page opened.
pub struct Authorized {
    pub redirect_uri: String,
    pub state: Option<String>,
    pub code: String,
    pub session: Option<SessionToken>,
}

/// Checks requested scopes; `Err` is the OAuth error description.
fn parse_scope(scope: &str, kind: AppKind) -> Result<Vec<String>, &'static str> {
    let mut out: Vec<String> = Vec::new();
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        let ok = match s.split_once(':') {
            Some(("read" | "write", ty)) => catalogue::lookup(ty).is_some(),
            Some(("research", "export")) => kind == AppKind::Research,
            // Owner access is the passphrase's alone; no app may ask for it.
            _ => false,
        };
        if !ok {
            return Err("a requested scope is unknown or not available to this client");
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    if out.is_empty() {
        return Err("request at least one scope");
    }
    Ok(out)
}

/// One decision per requested type and direction, exactly as switched.
fn grant_changes(scope: &[String], form: &ConsentForm) -> Vec<GrantChange> {
    scope
        .iter()
        .filter_map(|s| {
            let (dir, ty) = s.split_once(':')?;
            let write = match dir {
                "read" => false,
                "write" => true,
                _ => return None,
            };
            Some(GrantChange {
                type_id: ty.to_string(),
                write,
                allowed: form.switched_on(s),
            })
        })
        .collect()
}

impl AuthorizationServer<'_> {
    /// Validates an authorization request and keeps it for the owner's
    /// decision. `owner_session` is the session the browser presented.
    pub fn authorize(
        &self,
        query: &AuthorizeQuery,
        owner_session: Option<&str>,
    ) -> Result<ConsentPrompt, AuthorizeError> {
        if !self.store.registry_loaded() {
            return Err(AuthorizeError::Sealed);
        }
        let (Some(client_id), Some(redirect_uri)) =
            (query.client_id.as_deref(), query.redirect_uri.as_deref())
        else {
            return Err(AuthorizeError::UnknownClient);
        };
        let app = self
            .store
            .apps()
            .read()
            .app(client_id)
            .map(|a| a.record.clone())
            .ok_or(AuthorizeError::UnknownClient)?;
        if !redirect::matches(&app.redirect_uris, redirect_uri) {
            return Err(AuthorizeError::UnknownClient);
        }
        let fail = |state: Option<&String>, error| {
            AuthorizeError::Client(ClientRedirect {
                redirect_uri: redirect_uri.to_string(),
                state: state.cloned(),
                error,
            })
        };
        let state = query.state.as_ref();
        match query.repeated {
            Some("state") => {
                return Err(fail(None, OAuthError::InvalidRequest("repeated state")));
            }
            Some(_) => {
                return Err(fail(
                    state,
                    OAuthError::InvalidRequest("a parameter is repeated"),
                ));
            }
            None => {}
        }
        if query.response_type.as_deref() != Some("code") {
            return Err(fail(state, OAuthError::UnsupportedResponseType));
        }
        let Some(challenge) = query.code_challenge.as_deref() else {
            return Err(fail(
                state,
                OAuthError::InvalidRequest("PKCE is required: send code_challenge"),
            ));
        };
        if query.code_challenge_method.as_deref() != Some("S256") || !challenge_is_valid(challenge)
        {
            return Err(fail(
                state,
                OAuthError::InvalidRequest("PKCE with code_challenge_method=S256 is required"),
            ));
        }
        let scope = parse_scope(query.scope.as_deref().unwrap_or(""), app.kind)
            .map_err(|e| fail(state, OAuthError::InvalidScope(e)))?;
        let session = owner_session
            .filter(|t| self.store.is_owner_session(t))
            .map(digest);
        let now = self.store.apps().clock.now_us();
        let pending = Pending {
            client_id: app.app_id.clone(),
            redirect_uri: redirect_uri.to_string(),
            state: state.cloned(),
            challenge: challenge.to_string(),
            scope,
            csrf: URL_SAFE_NO_PAD.encode(crypto::random_bytes::<32>()),
            session,
            created_us: now,
        };
        let request_id = URL_SAFE_NO_PAD.encode(crypto::random_bytes::<18>());
        self.requests
            .add_pending(request_id.clone(), pending.clone(), now);
        Ok(ConsentPrompt {
            request_id,
            app,
            pending,
        })
    }

    /// Checks a consent decision up to the owner's proof. A forged or
    /// negative answer ends the request.
    pub fn answer(&self, form: &ConsentForm, same_origin: bool) -> Result<Answer, ConsentError> {
        let now = self.store.apps().clock.now_us();
        let Some(request_id) = form.request_id.as_deref() else {
            return Err(ConsentError::MissingRequestId);
        };
        let Some(pending) = self.requests.pending(request_id, now) else {
            return Err(ConsentError::UnknownRequest);
        };
        let csrf_ok = form
            .csrf_token
            .as_deref()
            .is_some_and(|t| bool::from(t.as_bytes().ct_eq(pending.csrf.as_bytes())));
        if !csrf_ok || !same_origin {
            self.requests.take_pending(request_id);
            return Err(ConsentError::Forged);
        }
        if form.decision != Some(Decision::Allow) {
            self.requests.take_pending(request_id);
            return Err(ConsentError::Client(ClientRedirect {
                redirect_uri: pending.redirect_uri,
                state: pending.state,
                error: OAuthError::AccessDenied,
            }));
        }
        let Some(app) = self
            .store
            .apps()
            .read()
            .app(&pending.client_id)
            .map(|a| a.record.clone())
        else {
            self.requests.take_pending(request_id);
            return Err(ConsentError::AppRemoved);
        };
        Ok(Answer {
            prompt: ConsentPrompt {
                request_id: request_id.to_string(),
                app,
                pending,
            },
            now_us: now,
        })
    }

    /// Completes an allowing answer: checks the owner (the session the
    /// page was shown to, or the passphrase now), records the decision per
    /// type and direction, and issues the code.
    pub async fn allow(
        &self,
        answer: Answer,
        form: &ConsentForm,
        owner_session: Option<&str>,
        client: Client,
    ) -> Result<Authorized, ConsentError> {
        let ConsentPrompt {
            request_id,
            app,
            pending,
        } = &answer.prompt;
        let mut new_session = None;
        match pending.session {
            Some(expected) => {
                let same = owner_session.is_some_and(|t| {
                    self.store.is_owner_session(t) && bool::from(digest(t).ct_eq(&expected))
                });
                if !same {
                    self.requests.take_pending(request_id);
                    return Err(ConsentError::SessionEnded);
                }
            }
            None => {
                let passphrase = form.passphrase.as_deref().unwrap_or("");
                match self.store.unlock(passphrase, client).await {
                    Ok(session) => new_session = Some(session),
                    Err(LockError::WrongPassphrase) => {
                        return Err(ConsentError::WrongPassphrase(Box::new(answer.prompt)));
                    }
                    Err(LockError::BackOff { .. }) => {
                        return Err(ConsentError::TooManyAttempts(Box::new(answer.prompt)));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "owner login on the consent page failed");
                        return Err(ConsentError::StoreFailed);
                    }
                }
            }
        }
        if self.requests.take_pending(request_id).is_none() {
            return Err(ConsentError::AlreadyAnswered);
        }
        let open = self.store.open_store().map_err(|_| ConsentError::Locked)?;
        let changes = grant_changes(&pending.scope, form);
        if !changes.is_empty() {
            open.writer
                .write(Write::Registry(Event::GrantsChanged {
                    app_id: app.app_id.clone(),
                    changes,
                }))
                .await
                .map_err(|_| ConsentError::NotStored)?;
        }
        let code = new_secret("hac_");
        let now = answer.now_us;
        self.requests.add_code(
            digest(&code),
            Code {
                client_id: app.app_id.clone(),
                redirect_uri: pending.redirect_uri.clone(),
                challenge: pending.challenge.clone(),
                scope: pending.scope.clone(),
                expires_us: now + CODE_TTL.as_micros() as i64,
                family: crypto::random_bytes(),
                redeemed: false,
            },
            now,
        );
        Ok(Authorized {
            redirect_uri: pending.redirect_uri.clone(),
            state: pending.state.clone(),
            code,
            session: new_session,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_checked_and_deduplicated() {
        assert_eq!(
            parse_scope(
                "read:step_count  write:step_count read:step_count",
                AppKind::App
            ),
            Ok(vec!["read:step_count".into(), "write:step_count".into()])
        );
        assert!(parse_scope("", AppKind::App).is_err());
        assert!(parse_scope("owner", AppKind::App).is_err());
        assert!(parse_scope("read:no_such_type", AppKind::App).is_err());
        assert!(parse_scope("research:export", AppKind::App).is_err());
        assert!(parse_scope("research:export", AppKind::Research).is_ok());
    }
}
