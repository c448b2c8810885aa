//! Errors of provider calls, classified so the reconcilers know whether to retry.

use std::time::Duration;

/// The provider endpoint a call went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /api/account/registration`.
    Registration,
    /// `POST /auth/token` with client credentials.
    ClientToken,
    /// `POST /auth/token` with an authorisation code.
    AuthorizationCodeToken,
    /// `POST /account-access-consents`.
    ConsentCreate,
    /// `GET /account-access-consents/{id}`.
    ConsentGet,
    /// `DELETE /account-access-consents/{id}`.
    ConsentDelete,
    /// The token endpoint with a refresh token (standard profile).
    RefreshToken,
    /// The standard profile's discovery document.
    Discovery,
    /// The bank's keys (standard profile).
    Jwks,
}

impl Endpoint {
    /// Stable name used in metrics and messages.
    pub fn as_str(&self) -> &'static str {
        match self {
            Endpoint::Registration => "registration",
            Endpoint::ClientToken => "client_token",
            Endpoint::AuthorizationCodeToken => "authorization_code_token",
            Endpoint::ConsentCreate => "consent_create",
            Endpoint::ConsentGet => "consent_get",
            Endpoint::ConsentDelete => "consent_delete",
            Endpoint::RefreshToken => "refresh_token",
            Endpoint::Discovery => "discovery",
            Endpoint::Jwks => "jwks",
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed provider call. Messages never contain secrets or raw response bodies.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// No answer within the client's timeout.
    #[error("{endpoint} call to the provider timed out after {timeout:?}")]
    Timeout {
        /// Endpoint called.
        endpoint: Endpoint,
        /// Timeout in force.
        timeout: Duration,
    },
    /// The connection could not be opened, so the request never reached the provider.
    #[error("could not connect to the provider for {endpoint}: {detail}")]
    Connect {
        /// Endpoint called.
        endpoint: Endpoint,
        /// What the network stack said.
        detail: String,
    },
    /// The connection broke after the request may have been sent.
    #[error("network error during {endpoint} call to the provider: {detail}")]
    Network {
        /// Endpoint called.
        endpoint: Endpoint,
        /// What the network stack said.
        detail: String,
    },
    /// The provider answered with an error status.
    #[error("provider answered {status} to {endpoint}{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Status {
        /// Endpoint called.
        endpoint: Endpoint,
        /// HTTP status code.
        status: u16,
        /// Retry-After, when the provider sent one.
        retry_after: Option<Duration>,
        /// The provider's own error message, shortened and with known secrets redacted.
        detail: Option<String>,
        /// The OAuth error code (RFC 6749 5.2, e.g. `invalid_grant`) when the body carried one.
        oauth_error: Option<String>,
    },
    /// The provider answered 2xx with a body this client cannot read.
    #[error("provider sent an unreadable {endpoint} response: {detail}")]
    Malformed {
        /// Endpoint called.
        endpoint: Endpoint,
        /// What was wrong (field names only, never values).
        detail: String,
    },
    /// The provider answered with a redirect. Redirects are never followed: they would carry
    /// the password form or the signature-certificate header to wherever they point.
    #[error("provider answered {status} (a redirect) to {endpoint}; redirects are never followed, so the request was not repeated elsewhere: check the provider URL")]
    Redirected {
        /// Endpoint called.
        endpoint: Endpoint,
        /// HTTP status code (3xx).
        status: u16,
    },
    /// The answer was larger than any genuine answer can be.
    #[error("provider sent a {endpoint} response larger than {limit} bytes; it was not read")]
    TooLarge {
        /// Endpoint called.
        endpoint: Endpoint,
        /// The limit.
        limit: usize,
    },
    /// The provider issued a token that cannot be used as a bearer token.
    #[error("provider issued an unusable {endpoint} token: {detail}")]
    InvalidToken {
        /// Endpoint called.
        endpoint: Endpoint,
        /// What is wrong with it (never the token).
        detail: &'static str,
    },
    /// The configured provider URL cannot be used.
    #[error("invalid provider URL: {0}")]
    InvalidUrl(String),
    /// The provider's profile has no such call.
    #[error("{endpoint}: this provider's profile does not support {what}")]
    Unsupported {
        /// Endpoint that would have been called.
        endpoint: Endpoint,
        /// What is missing.
        what: &'static str,
    },
    /// Not sent: the provider host is paused after a 429, or too many calls wait for it.
    #[error("{endpoint} call not sent: {}; try again in {}s", if *paused { "the provider asked to wait (429 Retry-After)" } else { "too many calls are waiting for this provider" }, retry_after.as_secs().max(1))]
    Throttled {
        /// Endpoint that would have been called.
        endpoint: Endpoint,
        /// How long until it may be called.
        retry_after: Duration,
        /// True when the host is paused after a 429; false when its queue is full.
        paused: bool,
    },
}

impl ProviderError {
    /// True when the same request may succeed later (5xx, 429, 408, timeouts, network errors,
    /// unreadable success bodies); false when it will fail again unchanged (other 4xx).
    pub fn is_transient(&self) -> bool {
        match self {
            ProviderError::Timeout { .. }
            | ProviderError::Connect { .. }
            | ProviderError::Network { .. }
            | ProviderError::Malformed { .. }
            | ProviderError::TooLarge { .. }
            | ProviderError::InvalidToken { .. }
            | ProviderError::Throttled { .. } => true,
            ProviderError::Status { status, .. } => {
                *status >= 500 || *status == 429 || *status == 408
            }
            ProviderError::Redirected { .. }
            | ProviderError::InvalidUrl(_)
            | ProviderError::Unsupported { .. } => false,
        }
    }

    /// The delay the provider asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::Status { retry_after, .. } => *retry_after,
            ProviderError::Throttled { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// HTTP status, when the provider answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ProviderError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True when a token endpoint said the grant itself is dead (`invalid_grant`: an expired,
    /// revoked or already rotated refresh token or code), rather than the client or the request.
    pub fn is_invalid_grant(&self) -> bool {
        matches!(self, ProviderError::Status { oauth_error: Some(code), .. } if code == "invalid_grant")
    }

    /// True when the call was not sent because this operator holds calls to the provider back
    /// (a 429 pause, a full queue): nothing failed, it is simply due later.
    pub fn is_throttled(&self) -> bool {
        matches!(self, ProviderError::Throttled { .. })
    }

    /// True when the provider may have acted on the request although no usable answer came
    /// back. A non-idempotent call (registration) must not be repeated blindly after such an error.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            ProviderError::Timeout { .. }
                | ProviderError::Network { .. }
                | ProviderError::Malformed { .. }
                | ProviderError::TooLarge { .. }
                | ProviderError::InvalidToken { .. }
        )
    }
}
