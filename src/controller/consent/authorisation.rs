//! The authorisation phase: a pending authorisation (its `state`, see `api::contract`, and its
//! nonce), the PS256-signed request object, and the authorisation URL kept valid (re-signed
//! before it expires).

use super::plan::{needs_signing, resign_at};
use super::registration_view::{not_ready, RegistrationView};
use super::ConsentRun;
use crate::api::contract::{handoff, new_state, random_token};
use crate::api::{reason, ProviderProfile, ResponseMode};
use crate::controller::error::{Halt, Step};
use crate::controller::report::Outcome;
use crate::signing::{RequestObjectClaims, REQUEST_OBJECT_LIFETIME_SECS};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use url::Url;

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
            self.sign_authorisation_url(registration).await?;
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

    /// Signs a fresh request object and publishes the authorisation URL.
    async fn sign_authorisation_url(&mut self, registration: &RegistrationView) -> Step<()> {
        let what = "Cannot build the authorisation request";
        let key = registration
            .signing_key(self.ctx)
            .await
            .map_err(|u| u.halt(what, self.now))?;
        let credentials = registration
            .credentials(self.ctx)
            .await
            .map_err(|u| u.halt(what, self.now))?;
        let no_page = |why: String| Halt::Report(not_ready(why, self.now).with_event());
        let target = registration.target();
        let standard = target.profile == ProviderProfile::OpenBankingUk;
        // Leatherback sends the customer to the consent's own page; a standard bank to its
        // authorisation endpoint.
        let page = match (&target.endpoints.authorization, &self.status.self_link) {
            (Some(endpoint), _) if standard => endpoint.to_string(),
            (_, Some(link)) if !standard => link.clone(),
            _ => return Err(no_page("The provider returned no Links.Self for the consent, so there is no authorisation page to send the customer to.".into())),
        };
        let Ok(mut url) = Url::parse(&page) else {
            return Err(no_page(format!(
                "The provider's authorisation page ({page:?}) is not a URL."
            )));
        };
        let consent_id = self.status.consent_id.clone().unwrap_or_default();
        let state = self.status.authorisation_state.clone().unwrap_or_default();
        let nonce = self.status.authorisation_nonce.clone().unwrap_or_default();
        let audience = match (
            &target.quirks.request_object_audience,
            &target.endpoints.issuer,
        ) {
            (Some(aud), _) if standard => aud.clone(),
            (None, Some(issuer)) if standard => issuer.clone(),
            _ => target.url.as_str().trim_end_matches('/').to_string(),
        };
        let mut claims = RequestObjectClaims::new(
            &credentials.client_id,
            &audience,
            &self.obj.spec.redirect_uri,
            &consent_id,
            &state,
            &nonce,
            self.now.as_second(),
            REQUEST_OBJECT_LIFETIME_SECS,
        );
        if standard {
            let mode = (target.quirks.response_mode == ResponseMode::Query).then_some("query");
            claims = claims.fapi(mode);
        }
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
        Ok(())
    }
}
