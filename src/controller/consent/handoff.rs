//! The hand-off phase: the customer's redirect reaches the leader in the Secret
//! `<consent>-authorisation` (written by any replica's callback, or by the platform's own
//! redirect page); the leader checks its state, exchanges the code (`exchange_code`), writes
//! the customer token Secret and deletes the hand-off.

use super::binding::{check_id_token, check_token_consent, token_consent, Mismatch};
use super::registration_view::{RegistrationGate, RegistrationView};
use super::ConsentRun;
use crate::api::contract::{handoff as handoff_keys, rfc3339, token, Handoff, TokenSecret};
use crate::api::{reason, ConsentStatus};
use crate::controller::error::Step;
use crate::controller::report::Outcome;
use crate::controller::schedule::FailureKind;
use crate::controller::time::add;
use crate::provider::{token as token_lifetime, Sensitive, TokenResponse};
use crate::secrets::{is_handoff, text_value, SecretError};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::EventType;

/// How long a refused authorisation stays the Ready reason before a new URL is published.
const MISMATCH_SHOWN: std::time::Duration = std::time::Duration::from_secs(5);

/// A hand-off whose state is the consent's pending one: what the customer's redirect brought,
/// and the Secret that carried it.
pub(super) struct PendingHandoff {
    secret: Secret,
    handoff: Handoff,
}

impl ConsentRun<'_> {
    /// The hand-off waiting in `<consent>-authorisation`, if it is this consent's pending one.
    /// A hand-off with another state (replayed, outdated, forged) or without a code or error is
    /// deleted; a Secret of that name that is not a hand-off is left untouched.
    pub(super) async fn pending_handoff(&mut self) -> Step<Option<PendingHandoff>> {
        let secret_name = self.obj.authorisation_secret_name();
        let Some(secret) = self.secrets.get(&secret_name).await? else {
            return Ok(None);
        };
        if !is_handoff(&secret) || self.owner.owned_by_another(&secret) {
            // Someone else's Secret under that name: neither read nor deleted.
            tracing::info!(secret = %secret_name, "a Secret that is not this consent's hand-off is in the way; left untouched");
            return Ok(None);
        }
        let state = text_value(&secret, handoff_keys::STATE).ok();
        if state.is_none() || state.as_deref() != self.status.authorisation_state.as_deref() {
            // An old, replayed or forged redirect: its code is of no use to this consent.
            self.secrets.delete_exact(&secret).await?;
            self.event(
                EventType::Warning,
                "StateMismatch",
                "TakeAuthorisation",
                format!("Ignored the authorisation in Secret {secret_name}: its state does not match the pending authorisation of this consent (replayed, outdated or foreign)."),
            )
            .await;
            return Ok(None);
        }
        match Handoff::from_values(|key| text_value(&secret, key).ok()) {
            Ok(handoff) => Ok(Some(PendingHandoff { secret, handoff })),
            Err(_) => {
                self.secrets.delete_exact(&secret).await?;
                Ok(None)
            }
        }
    }

    /// Takes the code (or the refusal) the customer's redirect brought: the reconcile's answer.
    pub(super) async fn take_handoff(
        &mut self,
        pending: PendingHandoff,
        gate: &RegistrationGate,
    ) -> Step<Outcome> {
        let PendingHandoff { secret, handoff } = pending;
        match handoff {
            Handoff::Refused { error, .. } => {
                let denied = error == "access_denied";
                if denied {
                    self.status.consent_status = Some(ConsentStatus::Rejected);
                }
                self.end_authorisation();
                self.persist().await?;
                self.secrets.delete_exact(&secret).await?;
                if denied {
                    return Ok(self.finalise(ConsentStatus::Rejected));
                }
                Ok(Outcome::failed(
                    reason::AUTHORISATION_CODE_REJECTED,
                    format!("The provider redirected the customer back with error {error:?}. Create a new AccountConsent to ask the customer again."),
                    None,
                ))
            }
            Handoff::Code { code, id_token, .. } => {
                let consent_id = self.status.consent_id.clone().unwrap_or_default();
                let nonce = self.status.authorisation_nonce.clone();
                if let Err(m) = check_id_token(id_token.as_deref(), nonce.as_deref(), &consent_id) {
                    // Refused before the code is spent: it may be someone else's.
                    return self.refuse_authorisation(&secret, m).await;
                }
                self.exchange_code(gate.view()?, Sensitive::new(code), &secret)
                    .await
            }
        }
    }

    /// Exchanges the authorisation code for the customer token and stores it.
    async fn exchange_code(
        &mut self,
        registration: &RegistrationView,
        code: Sensitive,
        handoff: &Secret,
    ) -> Step<Outcome> {
        let waiting = format!(
            "The authorisation code waits in Secret {}",
            self.obj.authorisation_secret_name()
        );
        let credentials = registration
            .credentials(self.ctx)
            .await
            .map_err(|u| u.halt(&waiting, self.now))?;
        let response = match self
            .ctx
            .provider
            .exchange_code(registration.base(), &credentials, &code)
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
        self.store_customer_token(&response, handoff).await
    }

    /// Writes the customer token Secret and records the authorisation.
    async fn store_customer_token(
        &mut self,
        response: &TokenResponse,
        handoff: &Secret,
    ) -> Step<Outcome> {
        let token_value = response.access_token.expose();
        let expiry = token_lifetime::expiry(self.now, response.expires_in, token_value);
        let expected = self.status.consent_id.clone().unwrap_or_default();
        let checked = check_token_consent(token_value, &expected).and_then(|()| {
            check_id_token(
                response.id_token.as_ref().map(|t| t.expose()),
                None,
                &expected,
            )
        });
        if let Err(m) = checked {
            return self.refuse_authorisation(handoff, m).await;
        }
        let consent_id = token_consent(token_value).unwrap_or(expected);
        let data = TokenSecret {
            access_token: token_value,
            expires_at: expiry,
            consent_id: Some(&consent_id),
        }
        .data();
        let token_name = self.obj.token_secret_name();
        let written = self.secrets.apply(&token_name, &self.owner, data).await;
        if let Ok(version) = &written {
            self.wrote_secret(&token_name, version.clone());
        }
        if let Err(e) = written {
            if let SecretError::NotOwned { .. } = e {
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
        self.status.consent_status = Some(ConsentStatus::Authorised);
        self.status.token_expires_at = Some(Time(expiry));
        self.status.authorised_at = Some(Time(self.now));
        self.succeeded();
        self.status.next_check_at = None;
        self.end_authorisation();
        self.persist().await?;
        self.secrets.delete_exact(handoff).await?;
        self.ctx.metrics.consent.exchanged(&self.labels());
        self.event(
            EventType::Normal,
            reason::AUTHORISED,
            "ExchangeCode",
            format!(
                "The customer authorised consent {consent_id}; customer token stored in Secret {token_name}, valid until {}.",
                rfc3339(expiry)
            ),
        )
        .await;
        Ok(self.authorised())
    }

    /// An authorisation that belongs to another consent (or another request): nothing is
    /// stored, the pending authorisation ends and a new URL is published at the next look.
    async fn refuse_authorisation(
        &mut self,
        handoff: &Secret,
        mismatch: Mismatch,
    ) -> Step<Outcome> {
        let message = format!(
            "The authorisation brought back for this consent was refused: {mismatch}. A code of another customer or consent (replayed or injected) must not buy this consent a token; nothing was stored. A new authorisation URL is published for the customer."
        );
        let outcome = self
            .code_spent(handoff, reason::AUTHORISATION_MISMATCH, message)
            .await?;
        // Shown for a few seconds (the event keeps it), then a new authorisation URL is
        // published; this reconcile's own status write wakes nothing by itself.
        Ok(outcome.until(Some(add(self.now, MISMATCH_SHOWN))))
    }

    /// The code cannot be used again: the authorisation ends, the hand-off goes.
    async fn code_spent(
        &mut self,
        handoff: &Secret,
        reason: &'static str,
        message: String,
    ) -> Step<Outcome> {
        self.end_authorisation();
        self.persist().await?;
        self.secrets.delete_exact(handoff).await?;
        Ok(Outcome::failed(reason, message, None))
    }

    /// A customer token Secret of this consent that status does not know about: written just
    /// before a crash that lost the status write. Returns its expiry.
    pub(super) async fn written_token(&self) -> Step<Option<Timestamp>> {
        if self.status.token_expires_at.is_some() || self.status.consent_id.is_none() {
            return Ok(None);
        }
        let Some(secret) = self.secrets.get(&self.obj.token_secret_name()).await? else {
            return Ok(None);
        };
        let matches = self.owner.owns(&secret)
            && text_value(&secret, token::CONSENT_ID).ok() == self.status.consent_id;
        let expiry = text_value(&secret, token::EXPIRES_AT)
            .ok()
            .and_then(|t| t.parse::<Timestamp>().ok());
        Ok(expiry.filter(|_| matches))
    }

    /// Recovers from a crash between writing the customer token and recording it in status:
    /// the token written then is taken as is.
    pub(super) async fn adopt_written_token(&mut self, expiry: Timestamp) -> Step<Outcome> {
        self.status.consent_status = Some(ConsentStatus::Authorised);
        self.status.token_expires_at = Some(Time(expiry));
        self.status.authorised_at.get_or_insert(Time(self.now));
        self.end_authorisation();
        self.persist().await?;
        Ok(self.authorised())
    }
}
