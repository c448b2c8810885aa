//! The ClusterProvider reconciler: each ClusterProvider becomes an entry of the provider
//! directory (`directory.rs`) with a `Target` ready to be called. A Leatherback provider is
//! ready as soon as it is seen; a standard one once its discovery document has been read
//! (`discovery.rs`), and read again every hour. Status says Ready and what was found.

mod declared;
mod directory;
mod discovery;
mod keys;
mod resolve;

pub use declared::apply_declared;
pub use directory::{same_provider, ProviderDirectory, ProviderEntry, ProviderState};
pub(crate) use keys::bank_keys;
pub(crate) use resolve::{resolve, usable_by, ProviderRefusal, Resolved};

use super::report::truncate;
use super::{Context, Error, Result};
use crate::api::{
    condition, find, reason, ClusterProvider, ProviderProfile, ResolvedEndpoints, READY,
};
use crate::provider::{Limits, Target};
use crate::secrets::FIELD_MANAGER;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::watcher::Event;
use kube::ResourceExt;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// How often a standard provider's discovery document is read again.
const REDISCOVER: Duration = Duration::from_secs(3600);
/// How soon a failed discovery is tried again.
const RETRY: Duration = Duration::from_secs(30);

/// The limits of `obj`: its own, else the operator's defaults.
fn limits(obj: &ClusterProvider, defaults: &Limits) -> Limits {
    let own = obj.spec.limits.clone().unwrap_or_default();
    Limits {
        rate: own.requests_per_second.unwrap_or(defaults.rate),
        burst: own.burst.unwrap_or(defaults.burst),
        timeout: own
            .timeout_seconds
            .map(|s| Duration::from_secs(u64::from(s)))
            .unwrap_or(defaults.timeout),
        max_retry_after: own
            .max_retry_after_seconds
            .map(|s| Duration::from_secs(u64::from(s)))
            .unwrap_or(defaults.max_retry_after),
    }
}

/// What the directory knows of `obj` before any I/O: a Leatherback provider's target, or a
/// standard provider waiting for its discovery (its last good target is kept while the spec
/// is unchanged).
fn entry_of(obj: &ClusterProvider, ctx: &Context) -> ProviderEntry {
    let name = obj.name_any();
    let generation = obj.metadata.generation;
    let url = Url::parse(&obj.spec.url).ok();
    let state = match (obj.spec.profile, &url) {
        (_, None) => ProviderState::NotReady(format!("spec.url {:?} is not a URL", obj.spec.url)),
        (ProviderProfile::Leatherback, Some(url)) => match Target::leatherback(
            &name,
            url.clone(),
            limits(obj, ctx.provider.default_limits()),
            obj.spec.token_lifetime,
            obj.spec.ca_bundle.as_deref(),
        ) {
            Ok(target) => ProviderState::Ready(Arc::new(target)),
            Err(e) => ProviderState::NotReady(e.to_string()),
        },
        (ProviderProfile::OpenBankingUk, Some(_)) => match ctx.providers.get(&name) {
            Some(known) if known.generation == generation => known.state.clone(),
            _ => ProviderState::NotReady("its discovery document has not been read yet".into()),
        },
    };
    ProviderEntry {
        name,
        generation,
        url,
        allowed: obj.spec.allowed_namespaces.clone(),
        state,
    }
}

/// Keeps the directory in step with the ClusterProvider watch (also on standbys' first
/// lead): entries appear and go with their objects, and the first complete list marks the
/// directory synced.
pub fn observe(event: &Event<ClusterProvider>, ctx: &Context) {
    match event {
        Event::Apply(obj) => ctx.providers.set(entry_of(obj, ctx)),
        Event::InitApply(obj) => {
            ctx.providers.relisted(&obj.name_any());
            ctx.providers.set(entry_of(obj, ctx));
        }
        Event::Delete(obj) => ctx.providers.remove(&obj.name_any()),
        Event::Init => ctx.providers.relist_started(),
        Event::InitDone => ctx.providers.relist_done(),
    }
}

/// Reconciles one ClusterProvider: discovery for the standard profile, then its status.
pub async fn reconcile(obj: Arc<ClusterProvider>, ctx: Arc<Context>) -> Result<Action> {
    let name = obj.name_any();
    let generation = obj.metadata.generation;
    let now = ctx.clock.now();
    let mut status = obj.status.clone().unwrap_or_default();
    let (ready, why, message, next) = match obj.spec.profile {
        ProviderProfile::Leatherback => {
            let entry = entry_of(&obj, &ctx);
            let outcome = match &entry.state {
                ProviderState::Ready(target) => {
                    status.endpoints = Some(resolved(target));
                    status.last_failure = None;
                    (
                        true,
                        reason::PROVIDER_READY,
                        format!("Leatherback API at {}.", obj.spec.url),
                        None,
                    )
                }
                ProviderState::NotReady(problem) => {
                    status.last_failure = Some(problem.clone());
                    (
                        false,
                        reason::PROVIDER_MISCONFIGURED,
                        format!("{problem}. Fix the ClusterProvider."),
                        None,
                    )
                }
            };
            ctx.providers.set_if_current(entry);
            outcome
        }
        ProviderProfile::OpenBankingUk => match discovery::target(&obj, &ctx).await {
            Ok(target) => {
                status.endpoints = Some(resolved(&target));
                status.discovered_at = Some(Time(now));
                status.last_failure = None;
                let entry = ProviderEntry {
                    state: ProviderState::Ready(Arc::new(target)),
                    ..entry_of(&obj, &ctx)
                };
                ctx.providers.set_if_current(entry);
                (true, reason::PROVIDER_READY, format!("Discovery document of {} read; its endpoints are in status.endpoints. Read again every hour.", obj.spec.url), Some(REDISCOVER))
            }
            Err(problem) => {
                let problem = truncate(problem, 512);
                status.last_failure = Some(problem.clone());
                let still_usable = ctx.providers.get(&name).is_some_and(|e| {
                    matches!(e.state, ProviderState::Ready(_)) && e.generation == generation
                });
                if still_usable {
                    // A bank's discovery hiccup must not stop every registration that uses it:
                    // the endpoints read last time stay in use.
                    (true, reason::PROVIDER_READY, format!("Reading the discovery document again failed ({problem}); the endpoints read at {} stay in use.", status.discovered_at.as_ref().map(|t| t.0.to_string()).unwrap_or_default()), Some(RETRY))
                } else {
                    ctx.providers.set_if_current(ProviderEntry {
                        state: ProviderState::NotReady(problem.clone()),
                        ..entry_of(&obj, &ctx)
                    });
                    (false, reason::PROVIDER_UNAVAILABLE, format!("{problem}. Registrations using this provider wait; it is tried again in {} s.", RETRY.as_secs()), Some(RETRY))
                }
            }
        },
    };
    let previous = find(&status.conditions, READY).cloned();
    let ready_condition = condition(
        previous.as_ref(),
        READY,
        ready,
        why,
        message,
        generation,
        now,
    );
    status.conditions.retain(|c| c.type_ != READY);
    status.conditions.push(ready_condition);
    status.observed_generation = generation;
    if obj.status.as_ref() != Some(&status) {
        let api: Api<ClusterProvider> = Api::all(ctx.client.clone());
        let patch = serde_json::json!({
            "apiVersion": "tpp-operator.dev/v1alpha1",
            "kind": "ClusterProvider",
            "status": status,
        });
        api.patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(patch),
        )
        .await
        .map_err(Error::Kube)?;
    }
    Ok(match next {
        Some(wait) => Action::requeue(wait),
        None => Action::await_change(),
    })
}

/// The endpoints of `target`, as status shows them.
fn resolved(target: &Target) -> ResolvedEndpoints {
    let e = &target.endpoints;
    ResolvedEndpoints {
        issuer: e.issuer.clone(),
        authorization: e.authorization.as_ref().map(Url::to_string),
        token: e.token.to_string(),
        jwks: e.jwks.as_ref().map(Url::to_string),
        registration: e.registration.as_ref().map(Url::to_string),
        consents: e.consents.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_providers_own_limits_win_over_the_defaults() {
        let mut obj: ClusterProvider = serde_json::from_value(serde_json::json!({
            "apiVersion": "tpp-operator.dev/v1alpha1", "kind": "ClusterProvider",
            "metadata": {"name": "p"},
            "spec": {"profile": "leatherback", "url": "https://bank.example"},
        }))
        .unwrap();
        let defaults = Limits::default();
        assert_eq!(limits(&obj, &defaults), defaults);
        obj.spec.limits = Some(crate::api::ProviderLimits {
            requests_per_second: Some(2.5),
            timeout_seconds: Some(5),
            ..Default::default()
        });
        let own = limits(&obj, &defaults);
        assert_eq!(own.rate, 2.5);
        assert_eq!(own.timeout, Duration::from_secs(5));
        assert_eq!(own.burst, defaults.burst);
    }
}
