//! The reconcilers, their shared context, and the pure decisions they rely on.

pub mod plan;
pub mod registration;
pub mod schedule;

use crate::api::TppRegistration;
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
    let total = scopes.len();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let controllers = scopes.into_iter().map(|scope| {
        let mut rx = stop_rx.clone();
        let stop = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        run_scope(ctx.clone(), scope, stop, synced.clone(), total)
    });
    let stopper = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    futures::future::join(stopper, futures::future::join_all(controllers)).await;
}

async fn run_scope(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    synced: Arc<std::sync::atomic::AtomicUsize>,
    total: usize,
) {
    let client = ctx.client.clone();
    let (registrations, secrets): (Api<TppRegistration>, Api<Secret>) = match &namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client, ns),
        ),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    // Only Secrets the operator wrote are watched, never every Secret in the cluster.
    let owned = watcher::Config::default().labels(&format!(
        "{}={}",
        crate::api::LABEL_MANAGED_BY,
        crate::api::MANAGED_BY
    ));
    let controller = Controller::new(registrations, watcher::Config::default().any_semantic());
    let store = controller.store();
    let ready_ctx = ctx.clone();
    tokio::spawn(async move {
        // The store wakes only one waiter (the controller's own), so look again every 200 ms
        // instead of waiting once.
        loop {
            match tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready()).await {
                Ok(Ok(())) => {
                    if synced.fetch_add(1, Ordering::SeqCst) + 1 == total {
                        ready_ctx.ready.store(true, Ordering::Relaxed);
                    }
                    break;
                }
                Ok(Err(_)) => break,
                Err(_) => continue,
            }
        }
    });
    controller
        .owns(secrets, owned)
        .graceful_shutdown_on(shutdown)
        .run(reconcile_registration, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::debug!(error = %e, "reconcile loop reported an error");
            }
        })
        .await;
}

async fn reconcile_registration(
    obj: Arc<TppRegistration>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let result = registration::reconcile(obj, &ctx).await;
    let kind = "TppRegistration";
    ctx.metrics
        .reconcile_duration
        .get_or_create(&KindLabels { kind })
        .observe(started.elapsed().as_secs_f64());
    let label = match &result {
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
    result
}

fn error_policy(obj: Arc<TppRegistration>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(
        namespace = obj.metadata.namespace.as_deref().unwrap_or_default(),
        name = obj.metadata.name.as_deref().unwrap_or_default(),
        %error,
        "reconcile failed; retrying"
    );
    let jitter = rand::random_range(0..5_000);
    Action::requeue(Duration::from_millis(10_000 + jitter))
}
