//! The TppRegistration reconciler: register once or adopt existing credentials
//! (`credentials.rs`), keep the client token fresh (`token.rs`, see `refresh_token`), keep a
//! signing key published (`signing_key.rs`, `keygen.rs`), and clean up on deletion
//! (`cleanup.rs`). The decisions are pure functions in `plan.rs`.

mod cleanup;
mod credentials;
pub(crate) mod keygen;
pub(crate) mod plan;
mod schedule;
mod signing_key;
#[cfg(test)]
mod tests;
mod token;

use super::error::{Halt, Result, Step};
use super::frame::{FailureFields, Reconciled, Run};
use super::inputs::{ProviderRefusal, RegistrationInputs};
use super::report::Outcome;
use super::time::earliest;
use crate::api::{
    reason, SecretTemplate, TppRegistration, TppRegistrationStatus, LABEL_REGISTRATION,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::events::EventType;
use std::future::Future;

/// One reconcile of one TppRegistration.
pub(crate) type RegistrationRun<'a> = Run<'a, TppRegistration>;

impl Reconciled for TppRegistration {
    type Status = TppRegistrationStatus;
    const KIND: &'static str = "TppRegistration";
    const OWNER_LABEL: &'static str = LABEL_REGISTRATION;

    fn status(&self) -> Option<&TppRegistrationStatus> {
        self.status.as_ref()
    }

    fn secret_template(&self) -> Option<&SecretTemplate> {
        self.spec.secret_template.as_ref()
    }

    fn secret_names(&self) -> Vec<String> {
        vec![
            self.credentials_secret_name(),
            self.token_secret_name(),
            self.signing_key_secret_name(),
        ]
    }

    fn observed_generation(status: &TppRegistrationStatus) -> Option<i64> {
        status.observed_generation
    }

    fn conditions(status: &TppRegistrationStatus) -> &[Condition] {
        &status.conditions
    }

    fn conditions_mut(status: &mut TppRegistrationStatus) -> &mut Vec<Condition> {
        &mut status.conditions
    }

    fn observe_generation(status: &mut TppRegistrationStatus, generation: Option<i64>) {
        status.observed_generation = generation;
    }

    fn failure_fields(status: &mut TppRegistrationStatus) -> FailureFields<'_> {
        FailureFields {
            count: &mut status.consecutive_failures,
            next_at: &mut status.next_refresh_at,
            last: &mut status.last_failure,
        }
    }

    fn apply(run: &mut RegistrationRun<'_>) -> impl Future<Output = Step<Outcome>> + Send {
        apply(run)
    }

    fn cleanup(run: &mut RegistrationRun<'_>) -> impl Future<Output = Result<()>> + Send {
        cleanup::cleanup(run)
    }

    fn publish(outcome: &Outcome, changed: bool) -> bool {
        // A routine refresh is not news (metrics count them; at scale an event per refresh
        // would be most of the operator's API-server writes), nor is a repeated failure.
        let routine =
            outcome.event == Some(EventType::Normal) && outcome.reason == reason::TOKEN_REFRESHED;
        changed || !(routine || outcome.reason == reason::REFRESH_FAILING)
    }

    fn record(run: &RegistrationRun<'_>, outcome: &Outcome) {
        run.ctx
            .metrics
            .registration
            .record(&run.labels(), outcome.ready, &run.status);
    }
}

/// Registration (or adoption), then the token, then the signing key.
async fn apply(run: &mut RegistrationRun<'_>) -> Step<Outcome> {
    let provider = RegistrationInputs::of(run.ctx, run.obj)
        .provider()
        .map_err(|refusal| provider_refused(&refusal))?;
    run.status.credentials_secret = Some(run.obj.credentials_secret_name());
    run.status.token_secret = Some(run.obj.token_secret_name());

    let credentials = run.credentials(&provider).await?;
    let token = run.token(&provider.base, &credentials).await?;
    // A bad signing key must not stop client tokens from being refreshed: it is reported on
    // top of the token's outcome.
    Ok(match run.signing_key().await {
        Ok(()) => {
            let next = earliest(token.next, run.next_key_retirement());
            token.until(next)
        }
        // A token problem matters more to the apps; it stays the reported one.
        Err(Halt::Report(problem)) if token.ready => {
            let next = earliest(token.next, problem.next);
            problem.until(next)
        }
        Err(Halt::Report(problem)) => {
            let next = earliest(token.next, problem.next);
            token.until(next)
        }
        Err(fail) => return Err(fail),
    })
}

/// What a registration whose provider may not be called reports; it calls nothing.
fn provider_refused(refusal: &ProviderRefusal) -> Outcome {
    match refusal {
        ProviderRefusal::Invalid(e) => Outcome::failed(
            reason::INVALID_PROVIDER_URL,
            format!("{e}. Set spec.providerUrl to the provider's https base URL."),
            None,
        ),
        ProviderRefusal::NotAllowed { url, allowed } => Outcome::failed(
            reason::PROVIDER_NOT_ALLOWED,
            format!(
                "The provider {url} is not one this operator may call (allowed: {allowed}). Remove spec.providerUrl, or ask the platform team to add it to the operator's allowed providers (Helm value allowedProviderUrls)."
            ),
            None,
        ),
    }
}
