//! What binds an authorisation that comes back to the consent it was asked for, per provider
//! profile. A standard bank signs its id tokens: they are verified (signature against the
//! bank's keys, PS256 or ES256 only, issuer, audience, times, nonce, `c_hash` and `s_hash`, the
//! consent id) before the code is spent, and again on the token endpoint's answer. Leatherback's
//! tokens cannot be verified (HS256, opaque id tokens): what can be read is checked
//! (`binding.rs`), and a customer token must name this consent, or it is not written.

use super::binding::{check_id_token, check_token_consent, Mismatch};
use super::ConsentRun;
use crate::api::{IntentClaim, ProviderProfile};
use crate::controller::providers::bank_keys;
use crate::oidc::{verify_id_token, IdTokenExpectations, IntentCheck};
use crate::provider::Target;

/// Oldest id token accepted, in seconds: it was issued moments before the customer came back.
const MAX_ID_TOKEN_AGE: i64 = 600;
/// Clock skew tolerated against the bank, in seconds.
const LEEWAY: i64 = 60;

/// What the id token of an authorisation must say.
pub(super) struct Expected<'a> {
    /// The registration's client id at the provider.
    pub client_id: &'a str,
    /// The consent.
    pub consent_id: &'a str,
    /// The pending authorisation's nonce.
    pub nonce: Option<&'a str>,
    /// The code and the state the redirect carried (the redirect's id token binds both).
    pub redirect: Option<(&'a str, &'a str)>,
}

impl ConsentRun<'_> {
    /// Checks an id token (of the redirect when `expected.redirect` is set, else of the token
    /// endpoint's answer) as the provider's profile allows.
    pub(super) async fn check_id_token(
        &self,
        target: &Target,
        id_token: Option<&str>,
        expected: &Expected<'_>,
    ) -> Result<(), Mismatch> {
        if target.profile == ProviderProfile::Leatherback {
            let nonce = expected.redirect.and(expected.nonce);
            return check_id_token(id_token, nonce, expected.consent_id);
        }
        let Some(token) = id_token else {
            // FAPI 1 Advanced: the redirect of `code id_token` must carry one; an answer of the
            // token endpoint may leave it out.
            return match expected.redirect {
                Some(_) => Err(Mismatch::MissingIdToken),
                None => Ok(()),
            };
        };
        let kid = jsonwebtoken::decode_header(token).ok().and_then(|h| h.kid);
        let keys = bank_keys(self.ctx, target, kid.as_deref())
            .await
            .map_err(Mismatch::BankKeys)?;
        let intent = match target.quirks.intent_claim {
            IntentClaim::OpenbankingIntentId => IntentCheck::Claim(expected.consent_id.into()),
            IntentClaim::Sub => IntentCheck::Sub(expected.consent_id.into()),
        };
        let expectations = IdTokenExpectations {
            issuer: target.endpoints.issuer.clone().unwrap_or_default(),
            client_id: expected.client_id.to_string(),
            nonce: expected.redirect.and(expected.nonce).map(str::to_string),
            intent,
            code: expected.redirect.map(|(code, _)| code.to_string()),
            state: expected.redirect.map(|(_, state)| state.to_string()),
            require_s_hash: expected.redirect.is_some(),
            max_age_secs: MAX_ID_TOKEN_AGE,
            leeway_secs: LEEWAY,
        };
        verify_id_token(token, &keys, &expectations, self.now)
            .map(|_| ())
            .map_err(Mismatch::IdToken)
    }

    /// Checks that a customer token is this consent's, as far as the profile tells: a
    /// Leatherback customer token must name this consent (`consentId`); a standard bank's is
    /// opaque, bound by the verified id token instead.
    pub(super) fn check_customer_token(
        &self,
        target: &Target,
        access_token: &str,
        consent_id: &str,
    ) -> Result<(), Mismatch> {
        match target.profile {
            ProviderProfile::Leatherback => check_token_consent(access_token, consent_id),
            ProviderProfile::OpenBankingUk => Ok(()),
        }
    }
}
