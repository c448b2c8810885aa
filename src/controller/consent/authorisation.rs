//! The authorisation phase: the `state` that binds a redirect to one consent, the PS256-signed
//! request object, and the authorisation URL kept valid (re-signed before it expires). The
//! callback (`crate::http`) uses the small public API at the top: `state_owner` and
//! `accepts_state`.

use super::plan::{needs_signing, resign_at};
use super::registration_view::{not_ready, RegistrationView};
use super::ConsentRun;
use crate::api::contract::handoff;
use crate::api::{reason, AccountConsent};
use crate::controller::error::Step;
use crate::controller::report::Outcome;
use crate::signing::{RequestObjectClaims, REQUEST_OBJECT_LIFETIME_SECS};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use subtle::ConstantTimeEq;
use url::Url;

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
fn new_state(namespace: &str, name: &str) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(namespace),
        URL_SAFE_NO_PAD.encode(name),
        random_token()
    )
}

/// 32 random bytes, base64url: state and nonce values.
fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

impl ConsentRun<'_> {
    /// A consent awaiting the customer: keep a valid authorisation URL published.
    pub(super) async fn awaiting(&mut self, registration: &RegistrationView) -> Step<Outcome> {
        if self.status.authorisation_state.is_none() {
            self.status.authorisation_state = Some(new_state(&self.namespace, &self.name));
            self.status.authorisation_nonce = Some(random_token());
            self.status.authorisation_url = None;
            self.status.authorisation_url_expires_at = None;
        }
        if self.status.authorisation_nonce.is_none() {
            // A pending authorisation from before nonces were kept: sign anew with one.
            self.status.authorisation_nonce = Some(random_token());
            self.status.authorisation_url_expires_at = None;
        }
        let expires = self
            .status
            .authorisation_url_expires_at
            .as_ref()
            .map(|t| t.0);
        if needs_signing(expires, self.now) {
            if let Err(problem) = self.sign_authorisation_url(registration).await? {
                return Ok(not_ready(problem, self.now).with_event());
            }
        }
        let url_expires = self
            .status
            .authorisation_url_expires_at
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(self.now);
        let callback_hint = match &self.ctx.settings.public_url {
            Some(u) => format!(
                " If spec.redirectUri is {}/callback the operator receives the code itself; otherwise",
                u.as_str().trim_end_matches('/')
            ),
            None => " Your".to_string(),
        };
        Ok(Outcome {
            ready: false,
            reason: reason::AWAITING_AUTHORISATION,
            message: format!(
                "Consent {} awaits the customer: send them to status.authorisationUrl (renewed before it expires).{callback_hint} the page at spec.redirectUri hands the code over in Secret {} (keys {}, {}).",
                self.status.consent_id.as_deref().unwrap_or("?"),
                self.obj.authorisation_secret_name(),
                handoff::CODE,
                handoff::STATE
            ),
            next: Some(resign_at(url_expires)),
            event: None,
        })
    }

    /// Signs a fresh request object and publishes the authorisation URL; the inner error is a
    /// message for the user.
    async fn sign_authorisation_url(
        &mut self,
        registration: &RegistrationView,
    ) -> Step<Result<(), String>> {
        let key = match registration.signing_key(&self.ctx.keys).await? {
            Ok(k) => k,
            Err(e) => {
                return Ok(Err(format!(
                    "Cannot sign the authorisation request of TppRegistration {}: {e}.",
                    registration.name()
                )))
            }
        };
        let credentials = match registration.credentials().await? {
            Ok(c) => c,
            Err(e) => return Ok(Err(format!("Cannot build the authorisation request: {e}."))),
        };
        let Some(self_link) = self.status.self_link.clone() else {
            return Ok(Err("The provider returned no Links.Self for the consent, so there is no authorisation page to send the customer to.".into()));
        };
        let Ok(mut url) = Url::parse(&self_link) else {
            return Ok(Err(format!(
                "The provider's Links.Self ({self_link:?}) is not a URL."
            )));
        };
        let consent_id = self.status.consent_id.clone().unwrap_or_default();
        let state = self.status.authorisation_state.clone().unwrap_or_default();
        let nonce = self.status.authorisation_nonce.clone().unwrap_or_default();
        let claims = RequestObjectClaims::new(
            &credentials.client_id,
            registration.provider_url.trim_end_matches('/'),
            &self.obj.spec.redirect_uri,
            &consent_id,
            &state,
            &nonce,
            self.now.as_second(),
            REQUEST_OBJECT_LIFETIME_SECS,
        );
        let jwt = key.sign(&claims)?;
        url.query_pairs_mut()
            .append_pair("client_id", &credentials.client_id)
            .append_pair("response_type", "code id_token")
            .append_pair("scope", "openid accounts")
            .append_pair("redirect_uri", &self.obj.spec.redirect_uri)
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("request", &jwt);
        self.status.authorisation_url = Some(url.to_string());
        self.status.authorisation_url_expires_at =
            Timestamp::from_second(claims.exp).ok().map(Time);
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
