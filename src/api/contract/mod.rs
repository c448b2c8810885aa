//! The Secret contract: every Secret the operator writes or reads for users, its key names, and
//! how its data is built. README's contract table mirrors this module; apps mount these Secrets,
//! so a key name changes only with a new API version.

use jiff::Timestamp;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Keys of a registration's credentials Secret (`<name>-credentials`).
pub mod credentials {
    /// The client id issued at registration.
    pub const CLIENT_ID: &str = "client_id";
    /// The password for the token endpoint (`Certificate` in the registration answer).
    pub const CERTIFICATE: &str = "certificate";
}

/// Keys of a token Secret: a registration's client token or a consent's customer token.
pub mod token {
    /// The access token itself.
    pub const ACCESS_TOKEN: &str = "access_token";
    /// Always `Bearer` (see [`super::TokenSecret`]).
    pub const TOKEN_TYPE: &str = "token_type";
    /// RFC 3339, UTC, whole seconds, never later than the real expiry.
    pub const EXPIRES_AT: &str = "expires_at";
    /// The whole header value, `Bearer <access_token>`.
    pub const AUTHORIZATION: &str = "authorization";
    /// Customer tokens only: the ConsentId the token was issued for.
    pub const CONSENT_ID: &str = "consent_id";
}

/// Keys of a consent's refresh-token Secret (`<consent>-refresh-token`), kept for the operator:
/// apps mount the token Secret.
pub mod refresh_token {
    /// The refresh token.
    pub const REFRESH_TOKEN: &str = "refresh_token";
    /// When it expires (RFC 3339), when the provider said.
    pub const EXPIRES_AT: &str = "expires_at";
    /// The ConsentId it was issued for.
    pub const CONSENT_ID: &str = "consent_id";
}

/// Keys of a generated signing-key Secret (`<name>-signing-key`).
pub mod signing_key {
    /// The private key, PKCS#8 PEM.
    pub const PRIVATE_KEY: &str = "private_key";
    /// The public key as a JWK (JSON).
    pub const JWK: &str = "jwk";
    /// The key id (RFC 7638 thumbprint).
    pub const KID: &str = "kid";
}

mod authorisation;
pub use authorisation::{
    accepts_state, new_state, random_token, sanitize_oauth_error, state_owner, Handoff,
    HandoffError,
};

mod return_url;
pub use return_url::{
    allows_return_url, outcome_url, parse_return_url_prefix, parse_return_url_prefixes,
    ReturnOutcome, ReturnUrlPrefixError, CONSENT_PARAM, OUTCOME_PARAM,
};

/// Keys of the authorisation hand-off Secret (`<consent>-authorisation`).
pub mod handoff {
    /// The authorisation code from the redirect.
    pub const CODE: &str = "code";
    /// The `state` echoed by the provider; must be the consent's pending state.
    pub const STATE: &str = "state";
    /// The id token from the redirect, when the provider sent one.
    pub const ID_TOKEN: &str = "id_token";
    /// The OAuth error of a refused authorisation (e.g. `access_denied`).
    pub const ERROR: &str = "error";
}

/// A secret string: never printed, never serialized by accident into logs.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Sensitive(String);

impl Sensitive {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Sensitive(value.into())
    }

    /// The secret itself; call only where it is sent or stored.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True for an empty or whitespace-only value.
    pub fn is_blank(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl std::fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Sensitive {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Sensitive)
    }
}

/// Credentials issued at registration (or brought by the user), as the credentials Secret holds
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    /// Client id.
    pub client_id: String,
    /// The password for the token endpoint (`Certificate` in the registration answer).
    pub certificate: Sensitive,
}

impl ClientCredentials {
    /// Reads the credentials Secret's keys through `value` (a Secret's text value by key).
    pub fn from_values<E>(value: impl Fn(&str) -> Result<String, E>) -> Result<Self, E> {
        Ok(ClientCredentials {
            client_id: value(credentials::CLIENT_ID)?,
            certificate: Sensitive::new(value(credentials::CERTIFICATE)?),
        })
    }
}

/// The only token type written: the provider documents Bearer tokens, and apps send
/// `authorization` verbatim, so its scheme must be the one the provider's APIs accept whatever
/// spelling the token endpoint used.
pub const BEARER: &str = "Bearer";

/// The data of a token Secret, built in one place for both kinds.
pub struct TokenSecret<'a> {
    /// The access token.
    pub access_token: &'a str,
    /// When it expires.
    pub expires_at: Timestamp,
    /// The consent it was issued for (customer tokens only).
    pub consent_id: Option<&'a str>,
}

impl TokenSecret<'_> {
    /// The Secret's data.
    pub fn data(&self) -> BTreeMap<String, String> {
        let mut data = BTreeMap::from([
            (
                token::ACCESS_TOKEN.to_string(),
                self.access_token.to_string(),
            ),
            (token::TOKEN_TYPE.to_string(), BEARER.to_string()),
            (token::EXPIRES_AT.to_string(), rfc3339(self.expires_at)),
            (
                token::AUTHORIZATION.to_string(),
                format!("{BEARER} {}", self.access_token),
            ),
        ]);
        if let Some(id) = self.consent_id {
            data.insert(token::CONSENT_ID.to_string(), id.to_string());
        }
        data
    }
}

/// RFC 3339 in UTC with whole seconds, as written to `expires_at`. Sub-seconds are cut, never
/// rounded up, so the written expiry is never later than the real one.
pub fn rfc3339(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_cuts_sub_seconds() {
        let t = Timestamp::from_millisecond(1_700_000_000_999).unwrap();
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn token_secrets_are_bearer_with_the_header_ready() {
        let t = Timestamp::from_second(1_700_000_000).unwrap();
        let client = TokenSecret {
            access_token: "abc",
            expires_at: t,
            consent_id: None,
        }
        .data();
        assert_eq!(client["token_type"], "Bearer");
        assert_eq!(client["authorization"], "Bearer abc");
        assert_eq!(client["expires_at"], "2023-11-14T22:13:20Z");
        assert!(!client.contains_key("consent_id"));
        let customer = TokenSecret {
            access_token: "xyz",
            expires_at: t,
            consent_id: Some("c-1"),
        }
        .data();
        assert_eq!(customer["consent_id"], "c-1");
        assert_eq!(customer.len(), 5);
    }
}
