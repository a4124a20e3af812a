//! The errors of the authorization server, by their OAuth error codes
//! (RFC 6749 §4.1.2.1 and §5.2).

/// An OAuth error: the variant is the `error` code, the text its
/// `error_description`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    #[error("{0}")]
    InvalidRequest(&'static str),
    /// Client authentication failed: unknown client, wrong or missing
    /// secret, or more than one authentication method.
    #[error("client authentication failed")]
    InvalidClient,
    #[error("{0}")]
    InvalidGrant(&'static str),
    #[error("{0}")]
    InvalidScope(&'static str),
    #[error("only the authorization code flow is supported")]
    UnsupportedResponseType,
    #[error("use authorization_code or refresh_token")]
    UnsupportedGrantType,
    #[error("the owner did not allow access")]
    AccessDenied,
    /// The store is locked, or the log did not take the change.
    #[error("{0}")]
    TemporarilyUnavailable(&'static str),
}

impl OAuthError {
    /// The `error` code on the wire.
    pub fn code(&self) -> &'static str {
        match self {
            OAuthError::InvalidRequest(_) => "invalid_request",
            OAuthError::InvalidClient => "invalid_client",
            OAuthError::InvalidGrant(_) => "invalid_grant",
            OAuthError::InvalidScope(_) => "invalid_scope",
            OAuthError::UnsupportedResponseType => "unsupported_response_type",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::AccessDenied => "access_denied",
            OAuthError::TemporarilyUnavailable(_) => "temporarily_unavailable",
        }
    }
}
