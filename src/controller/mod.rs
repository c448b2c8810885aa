//! The reconcilers, their shared context, and the pure decisions they rely on.

pub mod consent;
pub mod consent_plan;
pub mod keygen;
mod outcome;
pub mod plan;
pub mod registration;
pub mod schedule;

pub use outcome::rfc3339;

use crate::api::{AccountConsent, TppRegistration};
use crate::provider::ProviderClient;
use crate::secrets::SecretError;
use crate::telemetry::{KindLabels, Metrics, ReconcileLabels};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::watcher;
use kube::Client;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// Source of the current time, injected so that tests control it.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> jiff::Timestamp;
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
}

/// Operator-wide settings the reconcilers need.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Provider base URL for objects that do not name one.
    pub default_provider_url: Url,
    /// Namespaces to watch; empty watches all namespaces.
    pub namespaces: Vec<String>,
    /// External base URL of the operator's HTTP server (JWKS, callback), if it has one.
    pub public_url: Option<Url>,
    /// First interval between two status polls of a consent awaiting authorisation (it
    /// doubles while nothing changes, up to five minutes).
    pub consent_poll_interval: Duration,
    /// Status polls per second all consents together may use (a share of the provider rate
    /// limit); with many consents the poll interval grows to stay within it.
    pub consent_poll_rate: f64,
}

/// Everything a reconcile needs, shared by all of them.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Provider API client.
    pub provider: ProviderClient,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Event recorder.
    pub recorder: Recorder,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Settings.
    pub settings: Settings,
    /// True once the controller has started watching.
    pub ready: AtomicBool,
    /// When each consent (by uid) is next polled at the provider. Kept in memory, not in
    /// status, so that polls that find nothing new cost no API-server write.
    pub consent_polls: std::sync::Mutex<std::collections::HashMap<String, consent::PollState>>,
    /// Makes signing keys, one at a time, off the reconcilers.
    pub keygen: keygen::KeyGenerator,
}

impl Context {
    /// Builds the context; events are reported as `tpp-operator`.
    pub fn new(
        client: Client,
        provider: ProviderClient,
        metrics: Arc<Metrics>,
        settings: Settings,
    ) -> Self {
        let reporter = Reporter {
            controller: "tpp-operator".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            provider,
            metrics,
            clock: Arc::new(SystemClock),
            settings,
            ready: AtomicBool::new(false),
            consent_polls: Default::default(),
            keygen: keygen::KeyGenerator::start(),
        }
    }
}

/// Errors that abort a reconcile; provider failures are not among them: they are reported in
/// status and retried on the object's own schedule.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API failed.
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    /// A Secret operation failed.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The object has no namespace or uid (never true for objects read from the API).
    #[error("object is missing {0}")]
    Incomplete(&'static str),
    /// The finalizer machinery failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// Generating or encoding a signing key failed.
    #[error("signing key: {0}")]
    Signing(String),
    /// A provider call that must succeed before the reconcile can finish failed transiently.
    #[error("provider: {0}")]
    Provider(String),
}

impl Error {
    /// Short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube_error",
            Error::Secret(_) => "secret_error",
            Error::Incomplete(_) => "incomplete_object",
            Error::Finalizer(_) => "finalizer_error",
            Error::Signing(_) => "signing_error",
            Error::Provider(_) => "provider_error",
        }
    }
}

/// Checks that the CRDs are installed and readable in every watched namespace, so a missing
/// install or missing RBAC fails loudly at start.
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
        run(ctx, shutdown).await;
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
    // Only Secrets the operator wrote are watched, never every Secret in the cluster.
    let owned = watcher::Config::default().labels(&format!(
        "{}={}",
        crate::api::LABEL_MANAGED_BY,
        crate::api::MANAGED_BY
    ));

    let registrations = Controller::new(
        scoped::<TppRegistration>(&client, &namespace),
        watcher::Config::default().any_semantic(),
    );
    count_when_synced(registrations.store(), ctx.clone(), synced.clone(), total);
    let registrations = registrations
        .owns(scoped::<Secret>(&client, &namespace), owned.clone())
        .with_config(controller_config())
        .graceful_shutdown_on(stopped(stop.clone()))
        .run(reconcile_registration, error_policy, ctx.clone())
        .for_each(log_loop_error);

    let consents = Controller::new(
        scoped::<AccountConsent>(&client, &namespace),
        watcher::Config::default().any_semantic(),
    );
    let consent_store = consents.store();
    count_when_synced(consent_store.clone(), ctx.clone(), synced, total);
    // A registration that becomes Ready (or gets a new token) wakes the consents that use it.
    // Secrets are mapped by label rather than owner reference, so a hand-off Secret created by
    // the platform's own redirect page (labelled, without an owner reference) is seen at once.
    let consents = consents
        .watches(
            scoped::<Secret>(&client, &namespace),
            owned,
            consent::labelled_for,
        )
        .watches(
            scoped::<TppRegistration>(&client, &namespace),
            watcher::Config::default().any_semantic(),
            move |registration| consent::using(&consent_store, &registration),
        )
        .with_config(controller_config())
        .graceful_shutdown_on(stopped(stop))
        .run(reconcile_consent, error_policy, ctx)
        .for_each(log_loop_error);
    futures::future::join(registrations, consents).await;
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

async fn reconcile_registration(
    obj: Arc<TppRegistration>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = registration::reconcile(obj, &ctx).await;
    record(&ctx, "TppRegistration", started, &result);
    result
}

async fn reconcile_consent(obj: Arc<AccountConsent>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = consent::reconcile(obj, &ctx).await;
    record(&ctx, "AccountConsent", started, &result);
    result
}

fn record(
    ctx: &Context,
    kind: &'static str,
    started: std::time::Instant,
    result: &Result<Action, Error>,
) {
    ctx.metrics
        .reconcile_duration
        .get_or_create(&KindLabels { kind })
        .observe(started.elapsed().as_secs_f64());
    let label = match result {
        Ok(_) => "success".to_string(),
        Err(e) => e.metric_label().to_string(),
    };
    ctx.metrics
        .reconciles
        .get_or_create(&ReconcileLabels {
            kind,
            result: label,
        })
        .inc();
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
        %error,
        "reconcile failed; retrying"
    );
    let jitter = rand::random_range(0..5_000);
    Action::requeue(Duration::from_millis(10_000 + jitter))
}
