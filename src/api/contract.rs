//! The Secret contract: every Secret the operator writes or reads for users, its key names, and
//! how its data is built. README's contract table mirrors this module; apps mount these Secrets,
//! so a key name changes only with a new API version.

use jiff::Timestamp;
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

/// Keys of a generated signing-key Secret (`<name>-signing-key`).
pub mod signing_key {
    /// The private key, PKCS#8 PEM.
    pub const PRIVATE_KEY: &str = "private_key";
    /// The public key as a JWK (JSON).
    pub const JWK: &str = "jwk";
    /// The key id (RFC 7638 thumbprint).
    pub const KID: &str = "kid";
}

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

/// What a customer's redirect brought back, as handed from the callback (any replica, or the
/// platform's own redirect page) to the leader in the hand-off Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handoff {
    /// The customer authorised: a code to exchange.
    Code {
        /// The `state` the redirect carried.
        state: String,
        /// The authorisation code (a secret).
        code: String,
        /// The id token, when the provider sent one.
        id_token: Option<String>,
    },
    /// The customer or the provider refused.
    Refused {
        /// The `state` the redirect carried.
        state: String,
        /// The OAuth error code, printable and short.
        error: String,
    },
}

/// Why a hand-off Secret cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandoffError {
    /// No `state` key.
    #[error("it has no {} key", handoff::STATE)]
    NoState,
    /// Neither a code nor an error.
    #[error("it has neither a {} nor an {} key", handoff::CODE, handoff::ERROR)]
    Empty,
}

impl Handoff {
    /// The state the redirect carried.
    pub fn state(&self) -> &str {
        match self {
            Handoff::Code { state, .. } | Handoff::Refused { state, .. } => state,
        }
    }

    /// The Secret's data.
    pub fn data(&self) -> BTreeMap<String, String> {
        let mut data = BTreeMap::from([(handoff::STATE.to_string(), self.state().to_string())]);
        match self {
            Handoff::Code { code, id_token, .. } => {
                data.insert(handoff::CODE.to_string(), code.clone());
                if let Some(t) = id_token {
                    data.insert(handoff::ID_TOKEN.to_string(), t.clone());
                }
            }
            Handoff::Refused { error, .. } => {
                data.insert(handoff::ERROR.to_string(), sanitize_oauth_error(error));
            }
        }
        data
    }

    /// Reads a hand-off from a Secret's text values (`value(key)`); an error wins over a code.
    pub fn from_values(value: impl Fn(&str) -> Option<String>) -> Result<Self, HandoffError> {
        let state = value(handoff::STATE).ok_or(HandoffError::NoState)?;
        if let Some(error) = value(handoff::ERROR) {
            return Ok(Handoff::Refused {
                state,
                error: sanitize_oauth_error(&error),
            });
        }
        let code = value(handoff::CODE).ok_or(HandoffError::Empty)?;
        Ok(Handoff::Code {
            state,
            code,
            id_token: value(handoff::ID_TOKEN),
        })
    }
}

/// Keeps an OAuth error code printable and short before it goes into status and events.
pub fn sanitize_oauth_error(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(64)
        .collect()
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

    #[test]
    fn handoff_round_trips_and_prefers_the_error() {
        let code = Handoff::Code {
            state: "s".into(),
            code: "c".into(),
            id_token: Some("i".into()),
        };
        let data = code.data();
        let back = Handoff::from_values(|k| data.get(k).cloned()).unwrap();
        assert_eq!(back, code);
        let both = BTreeMap::from([
            ("state".to_string(), "s".to_string()),
            ("code".to_string(), "c".to_string()),
            ("error".to_string(), "<b>access_denied</b>".to_string()),
        ]);
        assert_eq!(
            Handoff::from_values(|k| both.get(k).cloned()).unwrap(),
            Handoff::Refused {
                state: "s".into(),
                error: "baccess_deniedb".into()
            }
        );
        assert_eq!(Handoff::from_values(|_| None), Err(HandoffError::NoState));
    }

    #[test]
    fn oauth_errors_are_sanitised() {
        assert_eq!(sanitize_oauth_error("access_denied"), "access_denied");
        assert_eq!(sanitize_oauth_error("<script>x</script>"), "scriptxscript");
        assert_eq!(sanitize_oauth_error(&"a".repeat(100)).len(), 64);
    }
}
