//! The hand-off contract between the public callback (any replica, or the platform's own
//! redirect page) and the leader: the `state` that names exactly one consent and its pending
//! authorisation, and what the customer's redirect brought back.

use super::handoff;
use crate::api::AccountConsent;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::collections::BTreeMap;
use subtle::ConstantTimeEq;

/// The namespace and name of the consent a state was made for (see `new_state`); `None` for
/// anything else.
pub fn state_owner(state: &str) -> Option<(String, String)> {
    let mut parts = state.splitn(3, '.');
    let decode = |p: Option<&str>| {
        URL_SAFE_NO_PAD
            .decode(p?)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|s| !s.is_empty() && s.len() <= 253)
    };
    let namespace = decode(parts.next())?;
    let name = decode(parts.next())?;
    parts.next().filter(|r| r.len() >= 32)?;
    Some((namespace, name))
}

/// Whether `state` is the consent's pending authorisation state (compared in constant time, so
/// the time taken says nothing about a guessed state).
pub fn accepts_state(consent: &AccountConsent, state: &str) -> bool {
    consent
        .status
        .as_ref()
        .and_then(|s| s.authorisation_state.as_deref())
        .is_some_and(|pending| bool::from(pending.as_bytes().ct_eq(state.as_bytes())))
}

/// A new authorisation state: the consent's namespace and name (so any replica's callback can
/// find it with one read) and 32 random bytes, each part base64url.
pub fn new_state(namespace: &str, name: &str) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(namespace),
        URL_SAFE_NO_PAD.encode(name),
        random_token()
    )
}

/// 32 random bytes, base64url: state and nonce values.
pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What a customer's redirect brought back, as handed from the callback (any replica, or the
/// platform's own redirect page) to the leader in the hand-off Secret.
#[derive(Clone, PartialEq, Eq)]
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

/// Printed without its values: the code (and the id token) buy a customer token once, and the
/// state is the consent's pending one.
impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Handoff::Code { id_token, .. } => f
                .debug_struct("Handoff::Code")
                .field("state", &"[redacted]")
                .field("code", &"[redacted]")
                .field("id_token", &id_token.as_ref().map(|_| "[redacted]"))
                .finish(),
            Handoff::Refused { error, .. } => f
                .debug_struct("Handoff::Refused")
                .field("state", &"[redacted]")
                .field("error", error)
                .finish(),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn states_are_unguessable_and_url_safe() {
        let a = random_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token());
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    #[test]
    fn a_state_names_its_consent_and_nothing_else_does() {
        let state = new_state("team-a", "acme");
        assert_eq!(state_owner(&state), Some(("team-a".into(), "acme".into())));
        assert_ne!(state, new_state("team-a", "acme"));
        assert_eq!(state_owner("not-a-state"), None);
        assert_eq!(state_owner("dGVhbQ.YWNtZQ.short"), None);
        assert_eq!(state_owner("..x"), None);
    }

    #[test]
    fn a_handoff_never_prints_its_code() {
        let handoff = Handoff::Code {
            state: "st4te".into(),
            code: "c0de".into(),
            id_token: Some("t0ken".into()),
        };
        let printed = format!("{handoff:?}");
        for secret in ["st4te", "c0de", "t0ken"] {
            assert!(!printed.contains(secret), "{printed}");
        }
    }
}
