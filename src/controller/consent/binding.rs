//! What binds an authorisation that comes back to the consent it was asked for, at a Leatherback
//! provider (standard banks' id tokens are verified: `verification.rs`). Leatherback's keys are
//! not published to TPPs, so signatures cannot be checked; what can be checked is:
//! the id token of the redirect, when it is a JWS, must carry the pending authorisation's
//! `nonce` and this consent's `openbanking_intent_id`; and the customer token, a JWT whose
//! payload names its `consentId` (Leatherback's documented sample), must name this consent.
//! A code stolen from one customer and brought back with another consent's state fails the
//! second check at the latest.

use crate::provider::token::jwt_claims;

/// Why an authorisation is refused for this consent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// The id token's nonce is not the pending authorisation's.
    #[error("its id token carries another nonce than this authorisation's request")]
    Nonce,
    /// The id token names another consent.
    #[error("its id token was issued for consent {0}")]
    IdTokenIntent(String),
    /// The customer token names another consent.
    #[error("the customer token was issued for consent {0}")]
    TokenConsent(String),
    /// The customer token names no consent, so nothing binds it to this one.
    #[error("the customer token names no consent (no consentId claim)")]
    TokenConsentMissing,
    /// A standard bank's redirect carried no id token.
    #[error("the redirect carried no id token")]
    MissingIdToken,
    /// A standard bank's id token failed verification.
    #[error("its id token failed verification: {0}")]
    IdToken(crate::oidc::IdTokenError),
    /// The bank's keys could not be read to verify its id token.
    #[error("its id token could not be verified: {0}")]
    BankKeys(String),
}

fn text_claim(token: &str, names: &[&str]) -> Option<String> {
    let claims = jwt_claims(token)?;
    names.iter().find_map(|n| claims.get(*n)).map(|v| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// Checks an id token against the pending authorisation: when it is a JWS, its `nonce` must be
/// `nonce` (when one is expected) and its `openbanking_intent_id`, when present, `consent_id`.
/// An opaque id token (as in the provider's sample) tells nothing and passes.
pub fn check_id_token(
    id_token: Option<&str>,
    nonce: Option<&str>,
    consent_id: &str,
) -> Result<(), Mismatch> {
    let Some(token) = id_token.filter(|t| jwt_claims(t).is_some()) else {
        return Ok(());
    };
    if let Some(expected) = nonce {
        if text_claim(token, &["nonce"]).as_deref() != Some(expected) {
            return Err(Mismatch::Nonce);
        }
    }
    match text_claim(token, &["openbanking_intent_id"]) {
        Some(intent) if intent != consent_id => Err(Mismatch::IdTokenIntent(short(&intent))),
        _ => Ok(()),
    }
}

/// The consent a customer token was issued for, when it says (`consentId`).
pub fn token_consent(access_token: &str) -> Option<String> {
    text_claim(
        access_token,
        &["consentId", "ConsentId", "openbanking_intent_id"],
    )
}

/// Checks that a customer token names `consent_id`: one that names another consent, or none
/// at all, is not this consent's (fail closed: an absent claim binds nothing).
pub fn check_token_consent(access_token: &str, consent_id: &str) -> Result<(), Mismatch> {
    match token_consent(access_token) {
        Some(issued) if issued == consent_id => Ok(()),
        Some(issued) => Err(Mismatch::TokenConsent(short(&issued))),
        None => Err(Mismatch::TokenConsentMissing),
    }
}

/// Provider-sent text going into status and events: printable and short.
fn short(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    fn jws(claims: serde_json::Value) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"PS256"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    #[test]
    fn id_tokens_must_carry_the_nonce_and_this_consent() {
        let good = jws(serde_json::json!({"nonce": "n1", "openbanking_intent_id": "c1"}));
        assert_eq!(check_id_token(Some(&good), Some("n1"), "c1"), Ok(()));
        assert_eq!(
            check_id_token(Some(&good), Some("n2"), "c1"),
            Err(Mismatch::Nonce)
        );
        assert_eq!(
            check_id_token(Some(&good), Some("n1"), "c2"),
            Err(Mismatch::IdTokenIntent("c1".into()))
        );
        let no_nonce = jws(serde_json::json!({"openbanking_intent_id": "c1"}));
        assert_eq!(
            check_id_token(Some(&no_nonce), Some("n1"), "c1"),
            Err(Mismatch::Nonce)
        );
        assert_eq!(check_id_token(Some(&no_nonce), None, "c1"), Ok(()));
        // Opaque id tokens (the provider's sample) and no id token tell nothing.
        assert_eq!(check_id_token(Some("oa_stg_abc"), Some("n1"), "c1"), Ok(()));
        assert_eq!(check_id_token(None, Some("n1"), "c1"), Ok(()));
    }

    #[test]
    fn customer_tokens_must_name_this_consent_when_they_name_one() {
        let token = jws(serde_json::json!({"consentId": "c1", "customerId": "u"}));
        assert_eq!(token_consent(&token).as_deref(), Some("c1"));
        assert_eq!(check_token_consent(&token, "c1"), Ok(()));
        assert_eq!(
            check_token_consent(&token, "c2"),
            Err(Mismatch::TokenConsent("c1".into()))
        );
        assert_eq!(
            check_token_consent("opaque", "c2"),
            Err(Mismatch::TokenConsentMissing)
        );
        let unnamed = jws(serde_json::json!({"customerId": "u"}));
        assert_eq!(
            check_token_consent(&unnamed, "c1"),
            Err(Mismatch::TokenConsentMissing)
        );
    }
}
