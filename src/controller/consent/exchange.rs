//! The code exchange: the customer's authorisation code becomes the customer token (and, at a
//! standard bank, a refresh token), checked as the provider's profile allows, then written to
//! the token Secret (and the refresh-token Secret); the hand-off goes last.

use super::registration_view::RegistrationView;
use super::verification::Expected;
use super::ConsentRun;
use crate::api::contract::{refresh_token as refresh_keys, rfc3339, TokenSecret};
use crate::api::{reason, ConsentStatus};
use crate::controller::error::Step;
use crate::controller::report::Outcome;
use crate::controller::schedule::FailureKind;
use crate::controller::token_schedule::refresh_at;
use crate::provider::{
    token as token_lifetime, ClientCredentials, Sensitive, Target, TokenResponse,
};
use crate::secrets::SecretError;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::EventType;
use std::collections::BTreeMap;

/// A customer token and what came with it, checked and ready to be written.
pub(super) struct CustomerToken<'a> {
    /// The access token.
    pub access_token: &'a str,
    /// When it expires.
    pub expiry: Timestamp,
    /// A refresh token, when the provider issued one.
    pub refresh_token: Option<&'a Sensitive>,
    /// When that refresh token expires, when the provider says.
    pub refresh_expiry: Option<Timestamp>,
}

impl<'a> CustomerToken<'a> {
    /// The token in `response`, obtained at `now`, its lifetime read by `target`'s rule.
    pub fn of(target: &Target, response: &'a TokenResponse, now: Timestamp) -> Self {
        let access_token = response.access_token.expose();
        CustomerToken {
            access_token,
            expiry: token_lifetime::expiry(target.lifetime, now, response.expires_in, access_token),
            // Only a standard bank's refresh tokens are used (Leatherback documents none and
            // has no refresh call): one stored for another profile would only fail later.
            refresh_token: response
                .refresh_token
                .as_ref()
                .filter(|_| target.profile == crate::api::ProviderProfile::OpenBankingUk),
            refresh_expiry: response
                .refresh_token_expires_at
                .and_then(|s| Timestamp::from_second(s).ok()),
        }
    }
}

impl ConsentRun<'_> {
    /// The registration's credentials; while they cannot be read, the code waits in its
    /// hand-off Secret.
    pub(super) async fn registration_credentials(
        &self,
        registration: &RegistrationView,
    ) -> Step<ClientCredentials> {
        let waiting = format!(
            "The authorisation code waits in Secret {}",
            self.obj.authorisation_secret_name()
        );
        registration
            .credentials(self.ctx)
            .await
            .map_err(|u| u.halt(&waiting, self.now))
    }

    /// Exchanges the authorisation code for the customer token and stores it.
    pub(super) async fn exchange_code(
        &mut self,
        registration: &RegistrationView,
        credentials: &ClientCredentials,
        code: Sensitive,
        handoff: &Secret,
    ) -> Step<Outcome> {
        let target = registration.target();
        let response = match self
            .ctx
            .provider
            .exchange_code(target, credentials, &code, &self.obj.spec.redirect_uri)
            .await
        {
            Ok(r) => r,
            // Held back, not sent: the code waits in its hand-off Secret until then.
            Err(e) if e.is_throttled() => {
                return Ok(self.deferred(e.retry_after().unwrap_or_default()))
            }
            Err(e) if e.is_transient() && !e.outcome_unknown() => {
                return Ok(self.failure(
                    reason::PROVIDER_UNAVAILABLE,
                    format!("Exchanging the authorisation code failed: {e}."),
                    FailureKind::Transient,
                    e.retry_after(),
                ))
            }
            Err(e) => {
                // Codes are single-use: a refused (or possibly consumed) code cannot be tried
                // again, so the customer has to authorise anew.
                return self
                    .code_spent(
                        handoff,
                        reason::AUTHORISATION_CODE_REJECTED,
                        format!("Exchanging the authorisation code failed: {e}. Authorisation codes work once; create a new AccountConsent to ask the customer again."),
                    )
                    .await;
            }
        };
        let consent_id = self.status.consent_id.clone().unwrap_or_default();
        let expected = Expected {
            client_id: &credentials.client_id,
            consent_id: &consent_id,
            nonce: None,
            redirect: None,
        };
        let id_token = response.id_token.as_ref().map(|t| t.expose());
        let checked =
            match self.check_customer_token(target, response.access_token.expose(), &consent_id) {
                Ok(()) => self.check_id_token(target, id_token, &expected).await,
                Err(m) => Err(m),
            };
        if let Err(m) = checked {
            return self.refuse_authorisation(handoff, m).await;
        }
        let token = CustomerToken::of(target, &response, self.now);
        self.store_customer_token(&token, &consent_id, Some(handoff))
            .await
    }

    /// Writes the customer token (and its refresh token) and records the authorisation;
    /// `handoff`, when the token came from a code, is deleted last.
    pub(super) async fn store_customer_token(
        &mut self,
        token: &CustomerToken<'_>,
        consent_id: &str,
        handoff: Option<&Secret>,
    ) -> Step<Outcome> {
        let token_name = self.obj.token_secret_name();
        if let Err(e) = self.write_customer_token(token, consent_id).await {
            if let (SecretError::NotOwned { .. }, Some(handoff)) = (&e, handoff) {
                // The code is spent either way; say where the token could not go.
                return self
                    .code_spent(
                        handoff,
                        reason::SECRET_CONFLICT,
                        format!("{e}. The customer token could not be stored; set spec.tokenSecretName to a free name on a new AccountConsent."),
                    )
                    .await;
            }
            return Err(e.into());
        }
        let first = self.status.consent_status != Some(ConsentStatus::Authorised);
        self.status.consent_status = Some(ConsentStatus::Authorised);
        self.status.token_expires_at = Some(Time(token.expiry));
        self.status.authorised_at.get_or_insert(Time(self.now));
        let issued_refresh = token.refresh_token.is_some_and(|r| !r.is_blank());
        if issued_refresh {
            self.status.refresh_token_secret = Some(self.obj.refresh_token_secret_name());
        }
        if self.status.refresh_token_secret.is_some() {
            self.status.refresh_token_expires_at = token
                .refresh_expiry
                .map(Time)
                .or(self.status.refresh_token_expires_at.take());
            self.status.next_token_refresh_at = Some(Time(self.customer_refresh_at(token.expiry)));
        }
        self.succeeded();
        self.status.next_check_at = None;
        self.end_authorisation();
        self.persist().await?;
        if let Some(handoff) = handoff {
            self.secrets.delete_exact(handoff).await?;
            self.ctx.metrics.consent.exchanged(&self.labels());
        }
        if first {
            self.event(
                EventType::Normal,
                reason::AUTHORISED,
                "ExchangeCode",
                format!(
                    "The customer authorised consent {consent_id}; customer token stored in Secret {token_name}, valid until {}.",
                    rfc3339(token.expiry)
                ),
            )
            .await;
        }
        Ok(self.authorised())
    }

    /// Writes the token Secret (today's keys, what apps mount) and, when there is one, the
    /// refresh token to its own Secret.
    async fn write_customer_token(
        &self,
        token: &CustomerToken<'_>,
        consent_id: &str,
    ) -> Result<(), SecretError> {
        // The refresh token first: a bank that rotates them has just invalidated the one
        // stored, and it alone can bring back an access token lost to a failed write.
        self.write_refresh_token(token, consent_id).await?;
        let data = TokenSecret {
            access_token: token.access_token,
            expires_at: token.expiry,
            consent_id: Some(consent_id),
        }
        .data();
        let token_name = self.obj.token_secret_name();
        let version = self
            .secrets
            .apply_issued(&token_name, &self.owner, data)
            .await?;
        self.wrote_secret(&token_name, version);
        Ok(())
    }

    /// When a customer token expiring at `expiry`, obtained now, is refreshed: a registration's
    /// default refresh policy (two thirds, 5 % jitter, 90 s margin).
    pub(super) fn customer_refresh_at(&self, expiry: Timestamp) -> Timestamp {
        refresh_at(
            self.now,
            expiry,
            &Default::default(),
            rand::random_range(-1.0..=1.0),
        )
    }

    /// Writes the refresh token `token` carries, if any, to the Secret only the operator reads.
    pub(super) async fn write_refresh_token(
        &self,
        token: &CustomerToken<'_>,
        consent_id: &str,
    ) -> Result<(), SecretError> {
        let Some(refresh) = token.refresh_token.filter(|r| !r.is_blank()) else {
            return Ok(());
        };
        let mut data = BTreeMap::from([
            (
                refresh_keys::REFRESH_TOKEN.to_string(),
                refresh.expose().to_string(),
            ),
            (refresh_keys::CONSENT_ID.to_string(), consent_id.to_string()),
        ]);
        if let Some(expiry) = token.refresh_expiry {
            data.insert(refresh_keys::EXPIRES_AT.to_string(), rfc3339(expiry));
        }
        let name = self.obj.refresh_token_secret_name();
        let version = self.secrets.apply_issued(&name, &self.owner, data).await?;
        self.wrote_secret(&name, version);
        Ok(())
    }
}
