//! The AccountConsent reconciler: read its registration (`registration_view.rs`), create the
//! consent at the provider exactly once (`creation.rs`), publish a signed authorisation URL
//! (`authorisation.rs`), take the customer's code from the hand-off Secret and exchange it
//! (`handoff.rs`, see `exchange_code`), follow the consent's status (`polling.rs`), and revoke it
//! on deletion (`revocation.rs`). The decisions are pure functions in `plan.rs`.

mod authorisation;
mod binding;
mod creation;
mod exchange;
mod handoff;
mod plan;
pub(crate) mod polling;
mod refresh;
mod registration_view;
mod return_url;
mod revocation;
#[cfg(test)]
mod tests;
mod verification;

use super::error::{Result, Step};
use super::frame::{FailureFields, Reconciled, Run};
use super::report::Outcome;
use super::time::earliest;
use crate::api::contract::{handoff as handoff_keys, rfc3339};
use crate::api::{
    reason, AccountConsent, AccountConsentStatus, ConsentStatus, SecretTemplate, ANNOTATION_OWNER,
    LABEL_CONSENT,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;
use plan::{stage, Stage};
use registration_view::RegistrationGate;
use std::future::Future;

/// One reconcile of one AccountConsent.
pub(crate) type ConsentRun<'a> = Run<'a, AccountConsent>;

impl Reconciled for AccountConsent {
    type Status = AccountConsentStatus;
    const KIND: &'static str = "AccountConsent";
    const OWNER_LABEL: &'static str = LABEL_CONSENT;

    fn status(&self) -> Option<&AccountConsentStatus> {
        self.status.as_ref()
    }

    fn secret_template(&self) -> Option<&SecretTemplate> {
        self.spec.secret_template.as_ref()
    }

    fn secret_names(&self) -> Vec<String> {
        vec![self.token_secret_name(), self.refresh_token_secret_name()]
    }

    fn observed_generation(status: &AccountConsentStatus) -> Option<i64> {
        status.observed_generation
    }

    fn conditions(status: &AccountConsentStatus) -> &[Condition] {
        &status.conditions
    }

    fn conditions_mut(status: &mut AccountConsentStatus) -> &mut Vec<Condition> {
        &mut status.conditions
    }

    fn observe_generation(status: &mut AccountConsentStatus, generation: Option<i64>) {
        status.observed_generation = generation;
    }

    fn failure_fields(status: &mut AccountConsentStatus) -> FailureFields<'_> {
        FailureFields {
            count: &mut status.consecutive_failures,
            next_at: &mut status.next_check_at,
            last: &mut status.last_failure,
        }
    }

    fn apply(run: &mut ConsentRun<'_>) -> impl Future<Output = Step<Outcome>> + Send {
        apply(run)
    }

    fn cleanup(run: &mut ConsentRun<'_>) -> impl Future<Output = Result<()>> + Send {
        revocation::cleanup(run)
    }

    fn publish(_: &Outcome, changed: bool) -> bool {
        // Consent outcomes are states, not routine work: an event only when the state changes.
        changed
    }

    fn record(run: &ConsentRun<'_>, outcome: &Outcome) {
        run.ctx
            .metrics
            .consent
            .record(&run.labels(), outcome.ready, &run.status);
    }
}

/// The consents that use `registration` (for the registration watch).
pub fn using<R: kube::Resource>(
    store: &Store<AccountConsent>,
    registration: &R,
) -> Vec<ObjectRef<AccountConsent>> {
    let namespace = registration.meta().namespace.clone();
    let name = registration.meta().name.clone().unwrap_or_default();
    store
        .state()
        .iter()
        .filter(|c| c.namespace() == namespace && c.spec.registration_ref.name == name)
        .map(|c| ObjectRef::from_obj(&**c))
        .collect()
}

/// The consent a Secret belongs to: the owner annotation's full name, or the
/// `tpp-operator.dev/consent` label of a Secret without it (a platform's own hand-off).
pub fn labelled_for<S: kube::Resource>(secret: S) -> Option<ObjectRef<AccountConsent>> {
    let meta = secret.meta();
    meta.labels.as_ref()?.get(LABEL_CONSENT)?;
    let name = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_OWNER))
        .or_else(|| meta.labels.as_ref()?.get(LABEL_CONSENT))?;
    Some(ObjectRef::new(name).within(meta.namespace.as_deref()?))
}

/// Creation, then the hand-off, then tracking: polling and the authorisation URL.
async fn apply(run: &mut ConsentRun<'_>) -> Step<Outcome> {
    run.status.token_secret = Some(run.obj.token_secret_name());
    let expiration = run.obj.spec.expiration_date_time.as_ref().map(|t| t.0);
    let current = stage(&run.status, expiration, run.now);
    if let Stage::Final(status) = current {
        return Ok(run.finalise(status));
    }
    // Before the consent exists at the provider: a return URL the platform does not allow
    // stops it there. Later, the callback merely never redirects to it.
    if current == Stage::Create {
        if let Some(refused) = run.return_url_refused() {
            return Ok(refused);
        }
    }

    // Checked once: creation, the code exchange, polling and signing all need it.
    let gate = RegistrationGate::check(
        run.ctx,
        &run.namespace,
        &run.obj.spec.registration_ref.name,
        run.now,
    )
    .await?;
    if current == Stage::Create {
        run.create(gate.view()?).await?;
    }
    // A token written but not recorded first: its hand-off's code is already spent.
    if let Some(expiry) = run.written_token().await? {
        return run.adopt_written_token(expiry).await;
    }
    if let Some(handoff) = run.pending_handoff().await? {
        return run.take_handoff(handoff, &gate).await;
    }

    let authorised = run.status.consent_status == Some(ConsentStatus::Authorised);
    let registration = match gate {
        RegistrationGate::Open(r) => Some(r),
        // An authorised consent's token does not depend on the registration any more.
        RegistrationGate::Closed(_) if authorised => None,
        RegistrationGate::Closed(outcome) => return Ok(outcome),
    };
    let poll_next = match &registration {
        Some(r) => run.poll(r).await?,
        None => None,
    };
    if let Some(status) = run
        .status
        .consent_status
        .clone()
        .filter(ConsentStatus::is_final)
    {
        return Ok(run.finalise(status));
    }
    let refreshable = run.status.refresh_token_secret.is_some();
    let outcome = match (&run.status.consent_status, &registration) {
        (Some(ConsentStatus::Authorised), registration) if refreshable => {
            run.keep_customer_token(registration.as_deref()).await?
        }
        (Some(ConsentStatus::Authorised), _) => run.authorised(),
        (_, Some(registration)) => run.awaiting(registration).await?,
        (_, None) => return Ok(run.unchanged(None)),
    };
    let next = earliest(outcome.next, poll_next);
    Ok(outcome.until(next))
}

impl ConsentRun<'_> {
    /// A consent that will not change any more: the pending authorisation goes, polling stops,
    /// and Ready says why.
    fn finalise(&mut self, status: ConsentStatus) -> Outcome {
        if self.status.consent_status.as_ref() != Some(&status) {
            self.status.consent_status = Some(status.clone());
        }
        self.end_authorisation();
        self.ctx.consent_polls.forget(&self.uid);
        self.final_outcome(&status)
    }

    /// Ready=False for a consent that will not change any more.
    fn final_outcome(&self, status: &ConsentStatus) -> Outcome {
        let (reason, what) = match status {
            ConsentStatus::Rejected => (
                reason::REJECTED,
                "was rejected (by the customer or the provider)",
            ),
            ConsentStatus::Revoked => (reason::REVOKED, "was revoked at the provider"),
            _ => (reason::EXPIRED, "has expired"),
        };
        Outcome::failed(
            reason,
            format!(
                "Consent {} {what}; it grants no access any more. Create a new AccountConsent to ask the customer again.",
                self.status.consent_id.as_deref().unwrap_or("(never created)")
            ),
            None,
        )
    }

    /// An authorised consent: Ready while the customer token lasts.
    fn authorised(&self) -> Outcome {
        let token_name = self.obj.token_secret_name();
        match self.status.token_expires_at.as_ref().map(|t| t.0) {
            Some(exp) if exp <= self.now => self.reauthorisation_required(&format!(
                "it expired at {} and the provider issued no refresh token",
                rfc3339(exp)
            )),
            Some(exp) => {
                let renewal = match self.refresh_note() {
                    Some(at) => format!("; it is refreshed at {}", rfc3339(at)),
                    None => String::new(),
                };
                Outcome {
                    ready: true,
                    reason: reason::AUTHORISED,
                    message: format!(
                        "Consent {} is authorised; the customer token in Secret {token_name} is valid until {}{renewal}.",
                        self.status.consent_id.as_deref().unwrap_or("?"),
                        rfc3339(exp)
                    ),
                    next: earliest(Some(exp), self.refresh_note()),
                    event: None,
                }
            }
            None => Outcome {
                ready: false,
                reason: reason::AWAITING_AUTHORISATION_CODE,
                message: format!(
                    "The provider says the customer authorised consent {}, but no authorisation code has reached the operator. Have the page at spec.redirectUri hand it over in Secret {} (keys {}, {}), or use the operator's /callback as redirect URI.",
                    self.status.consent_id.as_deref().unwrap_or("?"),
                    self.obj.authorisation_secret_name(),
                    handoff_keys::CODE,
                    handoff_keys::STATE
                ),
                next: None,
                event: Some(EventType::Warning),
            },
        }
    }

    /// The pending authorisation is over (used, refused, or moot): its state and URL go.
    fn end_authorisation(&mut self) {
        self.status.authorisation_state = None;
        self.status.authorisation_nonce = None;
        self.status.authorisation_url = None;
        self.status.authorisation_url_expires_at = None;
    }
}
