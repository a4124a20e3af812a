//! The token endpoint's logic: client authentication, code exchange,
//! refresh-token rotation, and revocation (RFC 7009).

use subtle::ConstantTimeEq;

use super::wire::TokenRequest;
use super::{pkce_matches, AuthorizationServer, Code, OAuthError, OAuthState};
use super::{ACCESS_TTL, REFRESH_TTL};
use crate::apps::{digest, new_secret, Registry};
use crate::crypto;
use crate::log::event::{AppRecord, Event, TokenKind, TokenRecord};
use crate::log::writer::Write;

/// The client's id, and its secret if it sent one, from the one method it
/// authenticated with (RFC 6749 §2.3).
#[derive(Debug)]
pub struct ClientCredentials {
    pub client_id: String,
    pub secret: Option<String>,
}

/// A fresh access and refresh token of one grant.
#[derive(Debug)]
pub struct IssuedTokens {
    pub access_token: String,
    pub refresh_token: String,
    pub scope: Vec<String>,
}

/// Why an authorization code is not exchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeRejected {
    UnknownOrExpired,
    /// Redeemed once already: whoever did may be a thief, so the tokens of
    /// that grant must die (RFC 9700 §4.5).
    Replayed {
        family: [u8; 16],
    },
    OtherClient,
    OtherRedirectUri,
    PkceMismatch,
}

impl From<CodeRejected> for OAuthError {
    fn from(rejected: CodeRejected) -> OAuthError {
        OAuthError::InvalidGrant(match rejected {
            CodeRejected::UnknownOrExpired => "unknown or expired code",
            CodeRejected::Replayed { .. } => "this code was already used",
            CodeRejected::OtherClient => "the code was issued to another client",
            CodeRejected::OtherRedirectUri => "redirect_uri differs from the authorization request",
            CodeRejected::PkceMismatch => "code_verifier does not match the code challenge",
        })
    }
}

impl OAuthState {
    /// Redeems a code for `client_id`: the checks of RFC 6749 §4.1.3 and
    /// RFC 7636 §4.6. A failed attempt leaves the code as it was; a
    /// redeemed one stays known until it expires, so a replay is
    /// recognised as one.
    pub fn redeem_code(
        &self,
        code: &str,
        client_id: &str,
        redirect_uri: Option<&str>,
        verifier: &str,
        now_us: i64,
    ) -> Result<Code, CodeRejected> {
        let mut codes = self.codes.lock();
        let Some(c) = codes.get_mut(&digest(code)) else {
            return Err(CodeRejected::UnknownOrExpired);
        };
        if c.redeemed {
            return Err(CodeRejected::Replayed { family: c.family });
        }
        if c.expires_us <= now_us {
            return Err(CodeRejected::UnknownOrExpired);
        }
        if c.client_id != client_id {
            return Err(CodeRejected::OtherClient);
        }
        if redirect_uri != Some(c.redirect_uri.as_str()) {
            return Err(CodeRejected::OtherRedirectUri);
        }
        if !pkce_matches(verifier, &c.challenge) {
            return Err(CodeRejected::PkceMismatch);
        }
        c.redeemed = true;
        Ok(c.clone())
    }
}

/// What presenting a refresh token means.
#[derive(Debug, PartialEq, Eq)]
pub enum Refresh {
    /// A live refresh token of this client: rotate it.
    Rotate(TokenRecord),
    /// A token that was rotated already: its grant is compromised.
    Reused {
        family: [u8; 16],
    },
    Unknown,
}

/// Classifies the refresh token with `hash` presented by `client_id`.
pub fn refresh(registry: &Registry, hash: &[u8; 32], client_id: &str, now_us: i64) -> Refresh {
    let live = registry
        .token(hash, now_us)
        .filter(|t| t.kind == TokenKind::Refresh && t.app_id == client_id);
    if let Some(t) = live {
        return Refresh::Rotate(t.clone());
    }
    match registry.spent_family(hash) {
        Some(family) => Refresh::Reused { family },
        None => Refresh::Unknown,
    }
}

impl AuthorizationServer<'_> {
    /// The registered client these credentials prove, if they do.
    pub fn authenticate_client(
        &self,
        credentials: Option<ClientCredentials>,
    ) -> Result<AppRecord, OAuthError> {
        let ClientCredentials { client_id, secret } =
            credentials.ok_or(OAuthError::InvalidClient)?;
        let app = self
            .store
            .apps()
            .read()
            .app(&client_id)
            .map(|a| a.record.clone())
            .ok_or(OAuthError::InvalidClient)?;
        match (&app.secret_hash, secret) {
            (Some(hash), Some(secret)) if bool::from(digest(&secret).ct_eq(hash)) => Ok(app),
            (None, None) => Ok(app),
            _ => Err(OAuthError::InvalidClient),
        }
    }

    /// Exchanges an authorization code, or rotates a refresh token, for a
    /// new access and refresh token.
    pub async fn token(
        &self,
        client: &AppRecord,
        request: &TokenRequest,
    ) -> Result<IssuedTokens, OAuthError> {
        let apps = self.store.apps().clone();
        // Check and write as one step: two racing requests cannot both
        // redeem a code or rotate a refresh token.
        let _gate = apps.gate.lock().await;
        let now = apps.clock.now_us();
        match request.grant_type.as_deref() {
            Some("authorization_code") => {
                let Some(code) = request.code.as_deref() else {
                    return Err(OAuthError::InvalidRequest("code is required"));
                };
                let redeemed = self.requests.redeem_code(
                    code,
                    &client.app_id,
                    request.redirect_uri.as_deref(),
                    request.code_verifier.as_deref().unwrap_or(""),
                    now,
                );
                match redeemed {
                    Ok(c) => self.issue(client, &c.scope, c.family, None).await,
                    Err(rejected) => {
                        if let CodeRejected::Replayed { family } = rejected {
                            self.revoke_families(vec![family]).await;
                        }
                        Err(rejected.into())
                    }
                }
            }
            Some("refresh_token") => {
                let Some(presented) = request.refresh_token.as_deref() else {
                    return Err(OAuthError::InvalidRequest("refresh_token is required"));
                };
                let hash = digest(presented);
                let found = refresh(&apps.read(), &hash, &client.app_id, now);
                match found {
                    Refresh::Rotate(t) => self.issue(client, &t.scope, t.family, Some(hash)).await,
                    Refresh::Reused { family } => {
                        // Reuse of a rotated refresh token: revoke the grant.
                        self.revoke_families(vec![family]).await;
                        Err(OAuthError::InvalidGrant(
                            "unknown, expired or already used refresh token",
                        ))
                    }
                    Refresh::Unknown => Err(OAuthError::InvalidGrant(
                        "unknown, expired or already used refresh token",
                    )),
                }
            }
            Some(_) => Err(OAuthError::UnsupportedGrantType),
            None => Err(OAuthError::InvalidRequest("grant_type is required")),
        }
    }

    /// Revokes `token` if it is a live token of `client`; an unknown,
    /// expired or another client's token is no error (RFC 7009 §2.2).
    pub async fn revoke(&self, client: &AppRecord, token: Option<&str>) -> Result<(), OAuthError> {
        let Some(token) = token else {
            return Err(OAuthError::InvalidRequest("token is required"));
        };
        let apps = self.store.apps().clone();
        let _gate = apps.gate.lock().await;
        let hash = digest(token);
        let found = apps
            .read()
            .token(&hash, apps.clock.now_us())
            .filter(|t| t.app_id == client.app_id)
            .cloned();
        let (Some(t), Ok(open)) = (found, self.store.open_store()) else {
            return Ok(());
        };
        let event = match t.kind {
            // A refresh token stands for the grant: all of it goes.
            TokenKind::Refresh => Event::TokensRevoked {
                hashes: vec![],
                families: vec![t.family],
            },
            _ => Event::TokensRevoked {
                hashes: vec![hash],
                families: vec![],
            },
        };
        open.writer
            .write(Write::Registry(event))
            .await
            .map(|_| ())
            .map_err(|_| OAuthError::TemporarilyUnavailable("the revocation could not be stored"))
    }

    /// Mints an access and a refresh token in `family` and logs them;
    /// `spent` is the refresh token this rotation consumes.
    async fn issue(
        &self,
        client: &AppRecord,
        scope: &[String],
        family: [u8; 16],
        spent: Option<[u8; 32]>,
    ) -> Result<IssuedTokens, OAuthError> {
        let open = self
            .store
            .open_store()
            .map_err(|_| OAuthError::TemporarilyUnavailable("the store is locked"))?;
        let now = self.store.apps().clock.now_us();
        let access = new_secret("hat_");
        let refresh = new_secret("hrt_");
        let record = |secret: &str, kind, ttl: std::time::Duration| TokenRecord {
            hash: digest(secret),
            id: crypto::random_bytes(),
            app_id: client.app_id.clone(),
            kind,
            family,
            scope: scope.to_vec(),
            name: None,
            issued_us: now,
            expires_us: Some(now + ttl.as_micros() as i64),
        };
        let tokens = vec![
            record(&access, TokenKind::Access, ACCESS_TTL),
            record(&refresh, TokenKind::Refresh, REFRESH_TTL),
        ];
        open.writer
            .write(Write::Registry(Event::TokensIssued { tokens, spent }))
            .await
            .map_err(|_| OAuthError::TemporarilyUnavailable("the token could not be stored"))?;
        Ok(IssuedTokens {
            access_token: access,
            refresh_token: refresh,
            scope: scope.to_vec(),
        })
    }

    async fn revoke_families(&self, families: Vec<[u8; 16]>) {
        if let Ok(open) = self.store.open_store() {
            let _ = open
                .writer
                .write(Write::Registry(Event::TokensRevoked {
                    hashes: vec![],
                    families,
                }))
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::event::{AppKind, Envelope};

    // RFC 7636, appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    const CALLBACK: &str = "https://app.example/cb";

    fn with_code(code: &str, expires_us: i64) -> OAuthState {
        let state = OAuthState::default();
        state.add_code(
            digest(code),
            Code {
                client_id: "app_1".into(),
                redirect_uri: CALLBACK.into(),
                challenge: CHALLENGE.into(),
                scope: vec!["read:step_count".into()],
                expires_us,
                family: [7; 16],
                redeemed: false,
            },
            0,
        );
        state
    }

    #[test]
    fn a_code_is_redeemed_once_and_a_replay_names_its_grant() {
        let state = with_code("hac_1", 1_000);
        let code = state
            .redeem_code("hac_1", "app_1", Some(CALLBACK), VERIFIER, 10)
            .unwrap();
        assert_eq!(code.scope, vec!["read:step_count".to_string()]);
        assert_eq!(code.family, [7; 16]);
        assert_eq!(
            state.redeem_code("hac_1", "app_1", Some(CALLBACK), VERIFIER, 20),
            Err(CodeRejected::Replayed { family: [7; 16] })
        );
        assert_eq!(
            OAuthError::from(CodeRejected::Replayed { family: [7; 16] }).code(),
            "invalid_grant"
        );
    }

    #[test]
    fn a_failed_exchange_leaves_the_code_to_its_client() {
        let state = with_code("hac_1", 1_000);
        let other_verifier = "x".repeat(43);
        for (code, client, redirect, verifier, rejected) in [
            (
                "hac_2",
                "app_1",
                Some(CALLBACK),
                VERIFIER,
                CodeRejected::UnknownOrExpired,
            ),
            (
                "hac_1",
                "app_2",
                Some(CALLBACK),
                VERIFIER,
                CodeRejected::OtherClient,
            ),
            (
                "hac_1",
                "app_1",
                None,
                VERIFIER,
                CodeRejected::OtherRedirectUri,
            ),
            (
                "hac_1",
                "app_1",
                Some("https://app.example/cb/"),
                VERIFIER,
                CodeRejected::OtherRedirectUri,
            ),
            (
                "hac_1",
                "app_1",
                Some(CALLBACK),
                other_verifier.as_str(),
                CodeRejected::PkceMismatch,
            ),
            (
                "hac_1",
                "app_1",
                Some(CALLBACK),
                CHALLENGE,
                CodeRejected::PkceMismatch,
            ),
            (
                "hac_1",
                "app_1",
                Some(CALLBACK),
                "",
                CodeRejected::PkceMismatch,
            ),
        ] {
            assert_eq!(
                state.redeem_code(code, client, redirect, verifier, 10),
                Err(rejected)
            );
        }
        assert!(state
            .redeem_code("hac_1", "app_1", Some(CALLBACK), VERIFIER, 10)
            .is_ok());
    }

    #[test]
    fn an_expired_code_is_refused() {
        let state = with_code("hac_1", 1_000);
        assert_eq!(
            state.redeem_code("hac_1", "app_1", Some(CALLBACK), VERIFIER, 1_000),
            Err(CodeRejected::UnknownOrExpired)
        );
    }

    fn refresh_token(app: &str, secret: &str, family: u8) -> TokenRecord {
        TokenRecord {
            hash: digest(secret),
            id: [family; 16],
            app_id: app.into(),
            kind: TokenKind::Refresh,
            family: [family; 16],
            scope: vec!["read:step_count".into()],
            name: None,
            issued_us: 0,
            expires_us: Some(1_000),
        }
    }

    #[test]
    fn a_rotated_refresh_token_presented_again_names_its_grant() {
        let mut registry = Registry::default();
        let apply = |registry: &mut Registry, event| {
            registry.apply(&Envelope { at_us: 0, event }, 0);
        };
        apply(
            &mut registry,
            Event::AppRegistered(AppRecord {
                app_id: "app_1".into(),
                name: "n".into(),
                description: String::new(),
                purpose: "p".into(),
                privacy_policy_url: "https://app.example/p".into(),
                redirect_uris: vec![CALLBACK.into()],
                kind: AppKind::App,
                secret_hash: None,
                created_us: 0,
            }),
        );
        apply(
            &mut registry,
            Event::TokensIssued {
                tokens: vec![refresh_token("app_1", "hrt_1", 3)],
                spent: None,
            },
        );
        let first = refresh(&registry, &digest("hrt_1"), "app_1", 10);
        assert_eq!(first, Refresh::Rotate(refresh_token("app_1", "hrt_1", 3)));
        // Another client cannot use it; an unknown token is just unknown.
        assert_eq!(
            refresh(&registry, &digest("hrt_1"), "app_2", 10),
            Refresh::Unknown
        );
        assert_eq!(
            refresh(&registry, &digest("hrt_x"), "app_1", 10),
            Refresh::Unknown
        );
        assert_eq!(
            refresh(&registry, &digest("hrt_1"), "app_1", 1_000),
            Refresh::Unknown
        );

        // Rotation spends the old token: showing it again is theft.
        apply(
            &mut registry,
            Event::TokensIssued {
                tokens: vec![refresh_token("app_1", "hrt_2", 3)],
                spent: Some(digest("hrt_1")),
            },
        );
        assert_eq!(
            refresh(&registry, &digest("hrt_1"), "app_1", 20),
            Refresh::Reused { family: [3; 16] }
        );
        assert!(matches!(
            refresh(&registry, &digest("hrt_2"), "app_1", 20),
            Refresh::Rotate(_)
        ));
    }
}
