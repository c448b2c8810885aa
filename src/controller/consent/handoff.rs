//! The hand-off phase: the customer's redirect reaches the leader in the Secret
//! `<consent>-authorisation` (written by any replica's callback, or by the platform's own
//! redirect page); the leader checks its state and what binds it to this consent
//! (`verification.rs`), then exchanges the code (`exchange.rs`) or, for a refusal, asks the
//! provider whether it is final.

use super::binding::Mismatch;
use super::polling::Confirmation;
use super::registration_view::RegistrationGate;
use super::verification::Expected;
use super::ConsentRun;
use crate::api::contract::{
    handoff as handoff_keys, refresh_token as refresh_keys, token, Handoff,
};
use crate::api::{reason, ConsentStatus};
use crate::controller::error::Step;
use crate::controller::report::Outcome;
use crate::controller::schedule::FailureKind;
use crate::controller::time::add;
use crate::provider::Sensitive;
use crate::secrets::{is_handoff, text_value};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::EventType;

/// How long a refused authorisation stays the Ready reason before a new URL is published.
const MISMATCH_SHOWN: std::time::Duration = std::time::Duration::from_secs(5);
/// How long an id token naming a key the bank does not publish (yet) is given: a bank that
/// rotated its keys publishes the new one within the operator's refetch interval (30 s); a
/// forged kid is refused after this.
const UNKNOWN_KEY_GRACE: std::time::Duration = std::time::Duration::from_secs(120);

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
            Handoff::Refused { error, .. } => self.refused(gate, &error, &secret).await,
            Handoff::Code {
                code,
                id_token,
                state,
            } => {
                let registration = gate.view()?;
                let credentials = self.registration_credentials(registration).await?;
                let consent_id = self.status.consent_id.clone().unwrap_or_default();
                let nonce = self.status.authorisation_nonce.clone();
                let expected = Expected {
                    client_id: &credentials.client_id,
                    consent_id: &consent_id,
                    nonce: nonce.as_deref(),
                    redirect: Some((&code, &state)),
                };
                let target = registration.target();
                if let Err(m) = self
                    .check_id_token(target, id_token.as_deref(), &expected)
                    .await
                {
                    let young = secret
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .is_some_and(|t| add(t.0, UNKNOWN_KEY_GRACE) > self.now);
                    let undecided = match &m {
                        Mismatch::BankKeys(_) => true,
                        Mismatch::IdToken(crate::oidc::IdTokenError::UnknownKid) => young,
                        _ => false,
                    };
                    if undecided {
                        // The bank's keys could not be read, or do not hold the token's key
                        // yet (a rotation): nothing is proven either way, and the code stays in
                        // its hand-off Secret for the next try.
                        return Ok(self.failure(
                            reason::PROVIDER_UNAVAILABLE,
                            format!("The authorisation's id token cannot be verified yet: {m}."),
                            FailureKind::Transient,
                            None,
                        ));
                    }
                    // Refused before the code is spent: it may be someone else's.
                    return self.refuse_authorisation(&secret, m).await;
                }
                self.exchange_code(registration, &credentials, Sensitive::new(code), &secret)
                    .await
            }
        }
    }

    /// The customer's browser came back refused. Anyone holding the consent's `state` (it is in
    /// the URL the browser and the bank see) could send that, so a refusal becomes final only
    /// once the provider confirms it; without a way to ask, it is recorded as not final and the
    /// customer may try again with a new authorisation URL.
    async fn refused(
        &mut self,
        gate: &RegistrationGate,
        error: &str,
        secret: &Secret,
    ) -> Step<Outcome> {
        if error != "access_denied" {
            return self
                .code_spent(
                    secret,
                    reason::AUTHORISATION_CODE_REJECTED,
                    format!("The provider redirected the customer back with error {error:?}. A new authorisation URL is published for the customer to try again."),
                )
                .await
                .map(|o| o.until(Some(add(self.now, MISMATCH_SHOWN))));
        }
        let confirmed = match self.provider_status(gate.view()?).await? {
            Confirmation::Status(status) => status,
            Confirmation::Wait(outcome) => return Ok(outcome),
            Confirmation::Unknown => None,
        };
        match confirmed {
            Some(ConsentStatus::Rejected) => {
                self.status.consent_status = Some(ConsentStatus::Rejected);
                self.end_authorisation();
                self.persist().await?;
                self.secrets.delete_exact(secret).await?;
                Ok(self.finalise(ConsentStatus::Rejected))
            }
            other => {
                let why = match other {
                    Some(status) => format!(
                        "the provider still holds consent {} as {status}",
                        self.status.consent_id.as_deref().unwrap_or("?")
                    ),
                    None => {
                        "the provider offers no way to confirm it (no GET on consents)".to_string()
                    }
                };
                // Only the refusal goes: the pending state and nonce stay, so the customer's
                // real answer (which a forged refusal may have beaten to the hand-off) is still
                // taken when the browser repeats it, and the URL stays usable.
                self.persist().await?;
                self.secrets.delete_exact(secret).await?;
                let outcome = Outcome::failed(
                    reason::AUTHORISATION_REFUSED,
                    format!("The customer's browser came back with a refusal (access_denied), but {why}: the refusal is not final, and anyone holding the authorisation URL could have sent it. The authorisation URL stays valid for the customer to try again."),
                    None,
                );
                Ok(outcome.until(Some(add(self.now, MISMATCH_SHOWN))))
            }
        }
    }

    /// An authorisation that belongs to another consent (or another request): nothing is
    /// stored, the pending authorisation ends and a new URL is published at the next look.
    pub(super) async fn refuse_authorisation(
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
    pub(super) async fn code_spent(
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

    /// Recovers from a crash (or a failed status write) between writing the customer token and
    /// recording it in status: the token written then is taken as is, with the refresh token
    /// written just before it, and the hand-off whose code was spent goes, so that the code is
    /// never sent twice.
    pub(super) async fn adopt_written_token(&mut self, expiry: Timestamp) -> Step<Outcome> {
        self.status.consent_status = Some(ConsentStatus::Authorised);
        self.status.token_expires_at = Some(Time(expiry));
        self.status.authorised_at.get_or_insert(Time(self.now));
        let refresh_name = self.obj.refresh_token_secret_name();
        if let Some(secret) = self.secrets.get(&refresh_name).await? {
            let ours = self.owner.owns(&secret)
                && text_value(&secret, refresh_keys::CONSENT_ID).ok() == self.status.consent_id
                && text_value(&secret, refresh_keys::REFRESH_TOKEN).is_ok();
            if ours {
                self.status.refresh_token_secret = Some(refresh_name);
                self.status.refresh_token_expires_at =
                    text_value(&secret, refresh_keys::EXPIRES_AT)
                        .ok()
                        .and_then(|t| t.parse::<Timestamp>().ok())
                        .map(Time);
                self.status.next_token_refresh_at = Some(Time(self.customer_refresh_at(expiry)));
            }
        }
        self.end_authorisation();
        self.persist().await?;
        if let Some(spent) = self
            .secrets
            .get(&self.obj.authorisation_secret_name())
            .await?
            .filter(|s| is_handoff(s) && !self.owner.owned_by_another(s))
        {
            self.secrets.delete_exact(&spent).await?;
        }
        Ok(self.authorised())
    }
}
