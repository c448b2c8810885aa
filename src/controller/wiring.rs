//! The controllers' wiring: leader election, one watch per kind and scope, and which changes
//! wake which object.

use super::error::Error;
use super::frame::{reconcile, Reconciled, SECRET};
use super::{consent, Context};
use crate::api::{AccountConsent, TppRegistration};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Checks that the CRDs are installed and readable in every watched namespace, so a missing
pub async fn check_crds(client: &Client, namespaces: &[String]) -> Result<(), kube::Error> {
    if namespaces.is_empty() {
        let api: Api<TppRegistration> = Api::all(client.clone());
        return api.list(&ListParams::default().limit(1)).await.map(|_| ());
    }
    for ns in namespaces {
        let api: Api<TppRegistration> = Api::namespaced(client.clone(), ns);
        api.list(&ListParams::default().limit(1)).await?;
    }
    Ok(())
}

/// Checks that both CRDs exist and are established (the `check` subcommand, for `helm test`).
pub async fn check_crds_established(client: &Client) -> Result<(), String> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in [
        "tppregistrations.tpp-operator.dev",
        "accountconsents.tpp-operator.dev",
    ] {
        let crd = api
            .get_opt(name)
            .await
            .map_err(|e| format!("cannot read CRD {name}: {e}"))?
            .ok_or_else(|| format!("CRD {name} is not installed"))?;
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if !established {
            return Err(format!("CRD {name} is not established"));
        }
    }
    Ok(())
}

/// Leadership ended without a shutdown being asked for: the process should exit so that it
/// restarts as a standby.
#[derive(Debug, thiserror::Error)]
#[error("lost the leader lease")]
pub struct LostLeadership;

/// Runs the controllers while this replica holds the lease (always, without a lease) until
/// `shutdown` resolves. Losing the lease stops reconciling at once, in-flight work included, so
/// that two replicas never act on the same object.
pub async fn run_elected(
    ctx: Arc<Context>,
    lease: Option<crate::leader::LeaseConfig>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), LostLeadership> {
    let Some(lease) = lease else {
        ctx.metrics.process.set_leader(true);
        run(ctx.clone(), shutdown).await;
        ctx.metrics.process.set_leader(false);
        return Ok(());
    };
    let wait_stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    // The controller stops first; only then is the lease released, so a standby never starts
    // while this replica still finishes in-flight work.
    let (controller_stop, controller_stop_rx) = tokio::sync::watch::channel(false);
    let (election_stop, election_stop_rx) = tokio::sync::watch::channel(false);
    let (leading_tx, mut leading) = tokio::sync::watch::channel(false);
    // Released only on an explicit stop. If this future is dropped (the task is aborted, like a
    // crashed process) the election is aborted too and the lease simply expires.
    let explicit_stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        if rx.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let mut election = AbortOnDrop(tokio::spawn(crate::leader::run(
        ctx.client.clone(),
        lease,
        leading_tx,
        explicit_stop(election_stop_rx),
    )));
    tokio::pin!(shutdown);
    // A standby serves health and readiness but reconciles nothing.
    ctx.ready.store(true, Ordering::Relaxed);
    let became_leader = tokio::select! {
        _ = &mut shutdown => false,
        became = leading.wait_for(|l| *l) => became.is_ok(),
    };
    let result = if became_leader {
        ctx.metrics.process.set_leader(true);
        let controller = run(ctx.clone(), wait_stop(controller_stop_rx));
        tokio::pin!(controller);
        let lost = async {
            let _ = leading.wait_for(|l| !*l).await;
        };
        tokio::select! {
            _ = &mut controller => Ok(()),
            // Dropping the controller cancels in-flight reconciles at once.
            _ = lost => Err(LostLeadership),
            _ = &mut shutdown => {
                let _ = controller_stop.send(true);
                controller.await;
                Ok(())
            }
        }
    } else {
        Ok(())
    };
    ctx.metrics.process.set_leader(false);
    let _ = election_stop.send(true);
    let _ = (&mut election.0).await;
    result
}

/// Aborts a task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the TppRegistration controller until `shutdown` resolves: one watch over all
/// namespaces, or one per namespace of the configured list.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let scopes: Vec<Option<String>> = if ctx.settings.namespaces.is_empty() {
        vec![None]
    } else {
        ctx.settings.namespaces.iter().cloned().map(Some).collect()
    };
    // Ready once every watch has listed its TppRegistrations, not merely when the process is up.
    ctx.ready.store(false, Ordering::Relaxed);
    let synced = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Two kinds per scope.
    let total = scopes.len() * 2;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let controllers = scopes
        .into_iter()
        .map(|scope| run_scope(ctx.clone(), scope, stop_rx.clone(), synced.clone(), total));
    let stopper = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    futures::future::join(stopper, futures::future::join_all(controllers)).await;
}

/// A future that resolves once `stop` turns true. Written out because graceful shutdown needs
/// the future to be `Sync`, which an `async fn` cannot promise.
#[allow(clippy::manual_async_fn)]
fn stopped(mut stop: tokio::sync::watch::Receiver<bool>) -> impl Future<Output = ()> + Send + Sync {
    async move {
        let _ = stop.wait_for(|s| *s).await;
    }
}

/// Marks the context ready once `total` stores (every kind of every scope) have listed.
fn count_when_synced<K>(
    store: kube::runtime::reflector::Store<K>,
    ctx: Arc<Context>,
    synced: Arc<std::sync::atomic::AtomicUsize>,
    total: usize,
) where
    K: kube::Resource + Clone + Send + Sync + 'static,
    K::DynamicType: std::hash::Hash + Eq + Clone + Send + Sync,
{
    tokio::spawn(async move {
        // The store wakes only one waiter (the controller's own), so look again every 200 ms
        // instead of waiting once.
        loop {
            match tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready()).await {
                Ok(Ok(())) => {
                    if synced.fetch_add(1, Ordering::SeqCst) + 1 == total {
                        ctx.ready.store(true, Ordering::Relaxed);
                    }
                    break;
                }
                Ok(Err(_)) => break,
                Err(_) => continue,
            }
        }
    });
}

/// Runs both controllers for one scope (a namespace, or all of them).
async fn run_scope(
    ctx: Arc<Context>,
    namespace: Option<String>,
    stop: tokio::sync::watch::Receiver<bool>,
    synced: Arc<std::sync::atomic::AtomicUsize>,
    total: usize,
) {
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
    count_when_synced(registrations.store(), ctx.clone(), synced.clone(), total);
    let registrations = registrations
        .owns_stream(secrets())
        .with_config(controller_config())
        .graceful_shutdown_on(stopped(stop.clone()))
        .run(reconcile::<TppRegistration>, error_policy, ctx.clone())
        .for_each(log_loop_error);

    let consents = stripped_controller(
        scoped::<AccountConsent>(&client, &namespace),
        watcher::Config::default().any_semantic(),
        ctx.clone(),
    );
    let consent_store = consents.store();
    count_when_synced(consent_store.clone(), ctx.clone(), synced, total);
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
        .graceful_shutdown_on(stopped(stop))
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
