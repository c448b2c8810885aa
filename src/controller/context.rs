//! What every reconcile shares: the clients, the event recorder, metrics, the clock and the
//! operator's settings.

use super::consent::polling::PollBook;
use super::providers::ProviderDirectory;
use super::readiness::Readiness;
use super::registration::keygen::KeyGenerator;
use crate::oidc::BankKeyCache;
use crate::provider::ProviderClient;
use crate::secrets::{SecretCache, Secrets, TemplatePolicy};
use crate::signing::KeyCache;
use crate::telemetry::Metrics;
use jiff::Timestamp;
use kube::runtime::events::{Recorder, Reporter};
use kube::Client;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use url::Url;

/// Source of the current time, injected so that tests control it.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that moves only when told to, for tests of time-dependent decisions.
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock(Mutex::new(start))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *now = super::time::add(*now, by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The resourceVersions this operator's reconcilers last wrote, per object. A watch event that
/// carries one of them is this operator's own write coming back: it wakes no reconcile (the
/// reconcile that wrote it already scheduled the next look), and a cached object at that version
/// is known to be fresh, so it is not read again.
#[derive(Default)]
pub struct OwnWrites(Mutex<HashMap<(&'static str, String, String), String>>);

impl OwnWrites {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(&'static str, String, String), String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a write of `kind` `namespace/name` at `version`.
    pub fn record(&self, kind: &'static str, namespace: &str, name: &str, version: String) {
        if !version.is_empty() {
            self.map()
                .insert((kind, namespace.to_string(), name.to_string()), version);
        }
    }

    /// The version of the last write of `kind` `namespace/name`, if this process made one.
    pub fn version(&self, kind: &'static str, namespace: &str, name: &str) -> Option<String> {
        self.map()
            .get(&(kind, namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// True when `obj` is exactly as this operator last wrote it.
    pub fn is_own<K: kube::Resource>(&self, kind: &'static str, obj: &K) -> bool {
        let meta = obj.meta();
        let (Some(ns), Some(name), Some(version)) = (
            meta.namespace.as_deref(),
            meta.name.as_deref(),
            meta.resource_version.as_deref(),
        ) else {
            return false;
        };
        self.version(kind, ns, name).as_deref() == Some(version)
    }

    /// Forgets an object (it was deleted).
    pub fn forget(&self, kind: &'static str, namespace: &str, name: &str) {
        self.map()
            .remove(&(kind, namespace.to_string(), name.to_string()));
    }
}

/// Operator-wide settings the reconcilers need.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The ClusterProvider of registrations that name none.
    pub default_provider: String,
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
    /// Which label and annotation keys `spec.secretTemplate` may set.
    pub template_policy: TemplatePolicy,
    /// URL prefixes an AccountConsent's `spec.returnUrl` must start with (see
    /// `contract::allows_return_url`); empty allows none.
    pub allowed_return_urls: Vec<Url>,
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
    /// Whether this replica is ready (`/readyz`).
    pub readiness: Readiness,
    /// When each consent is next polled at the provider. Kept in memory, not in status, so
    /// that polls that find nothing new cost no API-server write.
    pub(crate) consent_polls: PollBook,
    /// Makes signing keys, one at a time, off the reconcilers.
    pub(crate) keygen: KeyGenerator,
    /// The ClusterProviders, ready to be called.
    pub(crate) providers: ProviderDirectory,
    /// Standard banks' signing keys, for their id tokens.
    pub(crate) bank_keys: BankKeyCache,
    /// Signing keys parsed once per version of their Secret.
    pub(crate) keys: KeyCache,
    /// What this operator's reconcilers wrote last, to recognise it coming back.
    pub(crate) own_writes: OwnWrites,
    /// Contents of the operator's Secrets, read again only when the watch reports a change.
    pub(crate) secret_cache: Arc<SecretCache>,
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
            readiness: Readiness::default(),
            consent_polls: PollBook::default(),
            keygen: KeyGenerator::start(),
            providers: ProviderDirectory::default(),
            bank_keys: BankKeyCache::default(),
            keys: KeyCache::default(),
            own_writes: OwnWrites::default(),
            secret_cache: Arc::default(),
        }
    }

    /// Secret access in `namespace`, reading the operator's own Secrets through the cache.
    pub(crate) fn secrets(&self, namespace: &str) -> Secrets {
        Secrets::new(self.client.clone(), namespace).cached(self.secret_cache.clone())
    }

    /// The same context with another clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}
