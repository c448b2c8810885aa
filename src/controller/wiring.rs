//! The controllers' wiring: one watch per kind and scope, which changes wake which object,
//! and the controllers run while this replica leads.

use super::error::Error;
use super::frame::{reconcile, Reconciled, SECRET};
use super::{consent, providers, registration, Context};
use crate::api::{AccountConsent, ClusterProvider, TppRegistration};
use crate::leader::{self, LeaseConfig, LostLeadership};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs the controllers while this replica holds the lease (always, without a lease) until
/// `shutdown` is cancelled; see `leader::while_leading` for what losing the lease does.
pub async fn run_elected(
    ctx: Arc<Context>,
    lease: Option<LeaseConfig>,
    shutdown: CancellationToken,
) -> Result<(), LostLeadership> {
    let lead = |stop: CancellationToken| {
        let ctx = ctx.clone();
        async move {
            let _leading = ctx.metrics.process.leading();
            run(ctx.clone(), stop).await;
        }
    };
    match lease {
        None => {
            lead(shutdown).await;
            Ok(())
        }
        Some(lease) => {
            // A standby serves health, readiness, the JWKS and callbacks, but reconciles nothing.
            ctx.readiness.standby();
            leader::while_leading(ctx.client.clone(), lease, shutdown, lead).await
        }
    }
}

/// Runs both controllers until `stop` is cancelled (in-flight reconciles finish first): one
/// watch per kind over all namespaces, or one per namespace of the configured list.
pub async fn run(ctx: Arc<Context>, stop: CancellationToken) {
    let scopes: Vec<Option<String>> = if ctx.settings.namespaces.is_empty() {
        vec![None]
    } else {
        ctx.settings.namespaces.iter().cloned().map(Some).collect()
    };
    // Ready once every watch (the ClusterProviders, and two kinds per scope) has listed its
    // objects, not merely when the process is up.
    ctx.readiness.syncing(1 + scopes.len() * 2);
    let controllers = scopes
        .into_iter()
        .map(|scope| run_scope(ctx.clone(), scope, stop.clone()));
    futures::future::join(
        run_providers(ctx.clone(), stop.clone()),
        futures::future::join_all(controllers),
    )
    .await;
}

/// Runs the ClusterProvider controller until `stop` is cancelled. Its watch keeps the provider
/// directory in step (entries appear and go with their objects); its reconciles read the
/// standard profile's discovery documents and write the status.
async fn run_providers(ctx: Arc<Context>, stop: CancellationToken) {
    let (reader, writer) = kube::runtime::reflector::store();
    let observer = ctx.clone();
    let stream = watcher(
        Api::<ClusterProvider>::all(ctx.client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .modify(|obj: &mut ClusterProvider| obj.metadata.managed_fields = None)
    .inspect_ok(move |event| providers::observe(event, &observer))
    .reflect(writer)
    .touched_objects();
    report_when_synced(reader.clone(), ctx.clone());
    Controller::for_stream(stream, reader)
        .with_config(controller_config())
        .graceful_shutdown_on(stop.cancelled_owned())
        .run(providers::reconcile, provider_error_policy, ctx)
        .for_each(log_loop_error)
        .await;
}

fn provider_error_policy(obj: Arc<ClusterProvider>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(provider = %obj.name_any(), error = %error, "ClusterProvider reconcile failed; retrying");
    Action::requeue(Duration::from_secs(10))
}

/// Reports the store to the readiness once it has listed its objects.
fn report_when_synced<K>(store: kube::runtime::reflector::Store<K>, ctx: Arc<Context>)
where
    K: kube::Resource + Clone + Send + Sync + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone + Send + Sync,
{
    tokio::spawn(async move {
        // The store wakes only one waiter (the controller's own), so look again every 200 ms
        // instead of waiting once.
        loop {
            match tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready()).await {
                Ok(Ok(())) => {
                    ctx.readiness.synced();
                    break;
                }
                Ok(Err(_)) => break,
                Err(_) => continue,
            }
        }
    });
}

/// Runs both controllers for one scope (a namespace, or all of them).
async fn run_scope(ctx: Arc<Context>, namespace: Option<String>, stop: CancellationToken) {
    fn scoped<K>(client: &Client, namespace: &Option<String>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let client = ctx.client.clone();
    // Only Secrets the operator wrote are watched, never every Secret in the cluster, and only
    // their metadata: a watch is a trigger, the reconcile reads what it needs.
    let owned = watcher::Config::default().labels(&format!(
        "{}={}",
        crate::api::LABEL_MANAGED_BY,
        crate::api::MANAGED_BY
    ));
    // This operator's own Secret writes come back as events too; they wake nothing.
    // Every event also tells the Secret cache which contents are still current.
    let secrets = || {
        let ctx = ctx.clone();
        let cache = ctx.secret_cache.clone();
        let scope = namespace.clone();
        watcher(
            scoped::<PartialObjectMeta<Secret>>(&client, &namespace),
            owned.clone(),
        )
        .default_backoff()
        .inspect_ok(move |event| cache.observe(scope.as_deref(), event))
        .touched_objects()
        .try_filter(move |s| std::future::ready(!ctx.own_writes.is_own(SECRET, s)))
    };

    let registrations = stripped_controller(
        scoped::<TppRegistration>(&client, &namespace),
        watcher::Config::default().any_semantic(),
        ctx.clone(),
    );
    report_when_synced(registrations.store(), ctx.clone());
    // A ClusterProvider that changes (or becomes ready) wakes the registrations that use it.
    let registration_store = registrations.store();
    let default_provider = ctx.settings.default_provider.clone();
    let provider_changes = watcher(
        Api::<PartialObjectMeta<ClusterProvider>>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .touched_objects();
    let registrations = registrations
        .watches_stream(provider_changes, move |provider| {
            registration::using_provider(&registration_store, &provider, &default_provider)
        })
        .owns_stream(secrets())
        .with_config(controller_config())
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(reconcile::<TppRegistration>, error_policy, ctx.clone())
        .for_each(log_loop_error);

    let consents = stripped_controller(
        scoped::<AccountConsent>(&client, &namespace),
        watcher::Config::default().any_semantic(),
        ctx.clone(),
    );
    let consent_store = consents.store();
    report_when_synced(consent_store.clone(), ctx.clone());
    // A registration that becomes Ready (or gets a new token) wakes the consents that use it.
    // Secrets are mapped by label rather than owner reference, so a hand-off Secret created by
    // the platform's own redirect page (labelled, without an owner reference) is seen at once.
    let consents = consents
        .watches_stream(secrets(), consent::labelled_for)
        .watches_stream(
            watcher(
                scoped::<PartialObjectMeta<TppRegistration>>(&client, &namespace),
                watcher::Config::default().any_semantic(),
            )
            .default_backoff()
            .touched_objects(),
            move |registration| consent::using(&consent_store, &registration),
        )
        .with_config(controller_config())
        .graceful_shutdown_on(stop.cancelled_owned())
        .run(reconcile::<AccountConsent>, error_policy, ctx)
        .for_each(log_loop_error);
    futures::future::join(registrations, consents).await;
}

/// A controller whose store holds its objects without `managedFields` (the reconcilers read
/// what they need; the field-ownership records of every manager would otherwise be most of each
/// cached object), and which is not woken by this operator's own status writes: the reconcile
/// that wrote one already scheduled the next look. The store still takes them in.
fn stripped_controller<K>(api: Api<K>, config: watcher::Config, ctx: Arc<Context>) -> Controller<K>
where
    K: Reconciled,
{
    let (reader, writer) = kube::runtime::reflector::store();
    let stream = watcher(api, config)
        .default_backoff()
        .modify(|obj: &mut K| obj.meta_mut().managed_fields = None)
        .reflect(writer)
        .touched_objects()
        .try_filter(move |obj| std::future::ready(!ctx.own_writes.is_own(K::KIND, obj)));
    Controller::for_stream(stream, reader)
}

/// Reconciles run at most this many at a time per kind and scope: enough to keep the provider
/// busy at its rate limit, few enough that thousands of objects do not open thousands of
/// connections to the API server at once.
const CONCURRENT_RECONCILES: u16 = 32;

/// Bursts of changes to one object (its status and Secrets written in one reconcile) wake it
/// once, not once per write.
const DEBOUNCE: Duration = Duration::from_millis(500);

fn controller_config() -> kube::runtime::controller::Config {
    kube::runtime::controller::Config::default()
        .concurrency(CONCURRENT_RECONCILES)
        .debounce(DEBOUNCE)
}

async fn log_loop_error<T, E: std::fmt::Display>(result: Result<T, E>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "reconcile loop reported an error");
    }
}

fn error_policy<K: kube::Resource<DynamicType = ()>>(
    obj: Arc<K>,
    error: &Error,
    _ctx: Arc<Context>,
) -> Action {
    let meta = obj.meta();
    tracing::warn!(
        kind = %K::kind(&()),
        namespace = meta.namespace.as_deref().unwrap_or_default(),
        name = meta.name.as_deref().unwrap_or_default(),
        error = %error,
        "reconcile failed; retrying"
    );
    let jitter = rand::random_range(0..5_000);
    Action::requeue(Duration::from_millis(10_000 + jitter))
}
