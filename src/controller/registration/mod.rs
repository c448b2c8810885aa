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
use super::inputs::RegistrationInputs;
use super::providers::{usable_by, ProviderRefusal};
use super::report::Outcome;
use super::time::add;
use super::time::earliest;
use crate::api::{
    reason, SecretTemplate, TppRegistration, TppRegistrationStatus, LABEL_REGISTRATION,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::events::EventType;
use kube::runtime::reflector::{ObjectRef, Store};
use std::future::Future;

/// How soon a registration looks again while the ClusterProviders are being read.
const PROVIDERS_LOADING: std::time::Duration = std::time::Duration::from_secs(2);
/// How soon a registration whose provider is not ready looks again (besides its watch).
const PROVIDER_RETRY: std::time::Duration = std::time::Duration::from_secs(30);

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

/// The registrations that use the ClusterProvider `provider` (for the ClusterProvider watch):
/// those naming it, those resolved to it before, and those naming none when it is the default.
pub fn using_provider<P: kube::Resource>(
    store: &Store<TppRegistration>,
    provider: &P,
    default_provider: &str,
) -> Vec<ObjectRef<TppRegistration>> {
    let name = provider.meta().name.as_deref().unwrap_or_default();
    store
        .state()
        .iter()
        .filter(|r| {
            let named = r.spec.provider_ref.as_ref().map(|p| p.name.as_str());
            let resolved = r.status.as_ref().and_then(|s| s.provider.as_deref());
            named.or(resolved).unwrap_or(default_provider) == name
                || r.provider_url().is_some() && resolved.is_none()
        })
        .map(|r| ObjectRef::from_obj(&**r))
        .collect()
}

/// Registration (or adoption), then the token, then the signing key.
async fn apply(run: &mut RegistrationRun<'_>) -> Step<Outcome> {
    let provider = match RegistrationInputs::of(run.ctx, run.obj).provider().await {
        Ok(provider) => provider,
        Err(refusal) => {
            let usable = match refusal.is_wrong_choice() {
                true => usable_by(run.ctx, &run.namespace).await,
                false => Vec::new(),
            };
            return Err(provider_refused(run, &refusal, &usable));
        }
    };
    run.status.provider = Some(provider.name.clone());
    run.status.credentials_secret = Some(run.obj.credentials_secret_name());
    run.status.token_secret = Some(run.obj.token_secret_name());

    let credentials = run.credentials(&provider).await?;
    let token = run.token(&provider.target, &credentials).await?;
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
fn provider_refused(
    run: &RegistrationRun<'_>,
    refusal: &ProviderRefusal,
    usable: &[String],
) -> Halt {
    let name = &run.name;
    let (reason, advice) = match refusal {
        // Just after a start: nothing to report, the ClusterProviders come in a moment.
        ProviderRefusal::NotLoaded => {
            return Halt::Report(run.unchanged(Some(add(run.now, PROVIDERS_LOADING))));
        }
        ProviderRefusal::Namespace { .. } => (
            reason::PROVIDER_UNAVAILABLE,
            "It is tried again shortly.".to_string(),
        ),
        ProviderRefusal::NotReady { .. } => (
            reason::PROVIDER_UNAVAILABLE,
            "Its status says why (kubectl get clusterprovider -o yaml); this registration waits for it.".to_string(),
        ),
        ProviderRefusal::Moved { .. } => (
            reason::PROVIDER_CHANGED,
            format!("Its credentials belong to the provider it registered with; to use the new one, create a new TppRegistration (and delete {name})."),
        ),
        ProviderRefusal::NotFound(_)
        | ProviderRefusal::NoProviderForUrl(_)
        | ProviderRefusal::NotAllowed { .. } => (
            reason::PROVIDER_NOT_ALLOWED,
            match usable {
                [] => "No ClusterProvider allows this namespace: ask the platform team to allow it.".to_string(),
                names => format!("Name one this namespace may use in spec.providerRef: {}.", names.join(", ")),
            },
        ),
    };
    let next = match refusal {
        ProviderRefusal::NotReady { .. } | ProviderRefusal::Namespace { .. } => {
            Some(add(run.now, PROVIDER_RETRY))
        }
        _ => None,
    };
    Halt::Report(Outcome::failed(
        reason,
        format!("{refusal}. {advice}"),
        next,
    ))
}
