//! Logging set-up and the Prometheus metrics a team can alert on.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use tracing_subscriber::EnvFilter;

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Installs the global tracing subscriber; `RUST_LOG` overrides the default filter.
pub fn init_logging(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests) is harmless, so the error is ignored on purpose.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Labels of a provider call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// Endpoint name, e.g. `registration` or `client_token`.
    pub endpoint: &'static str,
    /// `success`, `transient_error` or `permanent_error`.
    pub outcome: &'static str,
}

/// Labels naming one custom resource.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    /// Namespace of the object.
    pub namespace: String,
    /// Name of the object.
    pub name: String,
}

/// Labels of a reconcile.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// Kind reconciled.
    pub kind: &'static str,
    /// `success` or the error's reason.
    pub result: String,
}

/// Labels naming a kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// Kind reconciled.
    pub kind: &'static str,
}

/// Labels naming an endpoint.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    /// Endpoint name.
    pub endpoint: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric the operator exports.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Provider calls by endpoint and outcome.
    pub provider_calls: Family<CallLabels, Counter>,
    /// Provider call latency.
    pub provider_latency: Family<EndpointLabels, Histogram>,
    /// Reconciles by kind and result.
    pub reconciles: Family<ReconcileLabels, Counter>,
    /// Reconcile latency.
    pub reconcile_duration: Family<KindLabels, Histogram>,
    /// Unix time at which the current client token expires.
    pub token_expiry: Family<ObjectLabels, FloatGauge>,
    /// Unix time of the next scheduled token call.
    pub token_next_refresh: Family<ObjectLabels, FloatGauge>,
    /// Failed token refreshes since the last success.
    pub token_refresh_failures: Family<ObjectLabels, Gauge>,
    /// Token refreshes done.
    pub token_refreshes: Family<ObjectLabels, Counter>,
    /// 1 when the registration's Ready condition is True.
    pub registration_ready: Family<ObjectLabels, Gauge>,
    /// 1 when the consent's Ready condition is True (authorised, customer token valid).
    pub consent_ready: Family<ObjectLabels, Gauge>,
    /// Unix time at which the consent's customer token expires.
    pub customer_token_expiry: Family<ObjectLabels, FloatGauge>,
    /// Customer tokens obtained by exchanging an authorisation code.
    pub customer_tokens: Family<ObjectLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

impl Metrics {
    /// Creates and registers all metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tpp_operator");
        let provider_calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "provider_requests",
            "Calls to the provider API by endpoint and outcome",
            provider_calls.clone(),
        );
        let provider_latency = Family::<EndpointLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "provider_request_duration_seconds",
            "Latency of calls to the provider API",
            provider_latency.clone(),
        );
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles by kind and result",
            reconciles.clone(),
        );
        let reconcile_duration = Family::<KindLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconciles",
            reconcile_duration.clone(),
        );
        let token_expiry = Family::<ObjectLabels, FloatGauge>::default();
        registry.register(
            "token_expiry_timestamp_seconds",
            "Unix time at which the registration's current client token expires",
            token_expiry.clone(),
        );
        let token_next_refresh = Family::<ObjectLabels, FloatGauge>::default();
        registry.register(
            "token_next_refresh_timestamp_seconds",
            "Unix time of the next scheduled call to the token endpoint",
            token_next_refresh.clone(),
        );
        let token_refresh_failures = Family::<ObjectLabels, Gauge>::default();
        registry.register(
            "token_refresh_consecutive_failures",
            "Failed token refreshes since the last success",
            token_refresh_failures.clone(),
        );
        let token_refreshes = Family::<ObjectLabels, Counter>::default();
        registry.register(
            "token_refreshes",
            "Client tokens obtained",
            token_refreshes.clone(),
        );
        let registration_ready = Family::<ObjectLabels, Gauge>::default();
        registry.register(
            "registration_ready",
            "1 when the TppRegistration's Ready condition is True, else 0",
            registration_ready.clone(),
        );
        let consent_ready = Family::<ObjectLabels, Gauge>::default();
        registry.register(
            "consent_ready",
            "1 when the AccountConsent's Ready condition is True (authorised, customer token valid), else 0",
            consent_ready.clone(),
        );
        let customer_token_expiry = Family::<ObjectLabels, FloatGauge>::default();
        registry.register(
            "customer_token_expiry_timestamp_seconds",
            "Unix time at which the consent's customer token expires",
            customer_token_expiry.clone(),
        );
        let customer_tokens = Family::<ObjectLabels, Counter>::default();
        registry.register(
            "customer_tokens",
            "Customer tokens obtained by exchanging an authorisation code",
            customer_tokens.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            consent_ready,
            customer_token_expiry,
            customer_tokens,
            provider_calls,
            provider_latency,
            reconciles,
            reconcile_duration,
            token_expiry,
            token_next_refresh,
            token_refresh_failures,
            token_refreshes,
            registration_ready,
        }
    }

    /// Renders the OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }

    /// Drops every per-object series of a deleted registration.
    pub fn forget_registration(&self, labels: &ObjectLabels) {
        self.token_expiry.remove(labels);
        self.token_next_refresh.remove(labels);
        self.token_refresh_failures.remove(labels);
        self.token_refreshes.remove(labels);
        self.registration_ready.remove(labels);
    }

    /// Drops every per-object series of a deleted consent.
    pub fn forget_consent(&self, labels: &ObjectLabels) {
        self.consent_ready.remove(labels);
        self.customer_token_expiry.remove(labels);
        self.customer_tokens.remove(labels);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
