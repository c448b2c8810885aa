//! The Prometheus metrics a team can alert on, registered per concern: provider calls,
//! reconciles, registrations, consents and the process itself.

use crate::api::{AccountConsentStatus, TppRegistrationStatus};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    pub result: &'static str,
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

/// Labels of the build.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// Crate version.
    pub version: &'static str,
    /// Source revision, when the build knew it.
    pub revision: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

fn seconds(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> f64 {
    t.0.as_millisecond() as f64 / 1000.0
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Calls to the provider.
pub struct ProviderMetrics {
    calls: Family<CallLabels, Counter>,
    latency: HistogramFamily<EndpointLabels>,
}

impl ProviderMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = ProviderMetrics {
            calls: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
        };
        registry.register(
            "provider_requests",
            "Calls to the provider API by endpoint and outcome",
            m.calls.clone(),
        );
        registry.register(
            "provider_request_duration_seconds",
            "Latency of calls to the provider API",
            m.latency.clone(),
        );
        m
    }

    /// Counts one call and its latency.
    pub fn observe(&self, endpoint: &'static str, outcome: &'static str, took: Duration) {
        self.latency
            .get_or_create(&EndpointLabels { endpoint })
            .observe(took.as_secs_f64());
        self.calls
            .get_or_create(&CallLabels { endpoint, outcome })
            .inc();
    }
}

/// Reconciles of both kinds.
pub struct ReconcileMetrics {
    reconciles: Family<ReconcileLabels, Counter>,
    duration: HistogramFamily<KindLabels>,
}

impl ReconcileMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = ReconcileMetrics {
            reconciles: Family::default(),
            duration: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
        };
        registry.register(
            "reconciles",
            "Reconciles by kind and result",
            m.reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconciles",
            m.duration.clone(),
        );
        m
    }

    /// Starts timing one reconcile of `kind`.
    pub fn measure(&self, kind: &'static str) -> ReconcileMeasure<'_> {
        ReconcileMeasure {
            metrics: self,
            kind,
            started: Instant::now(),
            result: "dropped",
        }
    }
}

/// One reconcile being timed; its duration and result are recorded when it is dropped, so a
/// reconcile cancelled half-way (lost leadership) is counted too.
pub struct ReconcileMeasure<'a> {
    metrics: &'a ReconcileMetrics,
    kind: &'static str,
    started: Instant,
    result: &'static str,
}

impl ReconcileMeasure<'_> {
    /// Records how the reconcile ended: `success`, or the error's label.
    pub fn finish(mut self, result: &'static str) {
        self.result = result;
    }
}

impl Drop for ReconcileMeasure<'_> {
    fn drop(&mut self) {
        self.metrics
            .duration
            .get_or_create(&KindLabels { kind: self.kind })
            .observe(self.started.elapsed().as_secs_f64());
        self.metrics
            .reconciles
            .get_or_create(&ReconcileLabels {
                kind: self.kind,
                result: self.result,
            })
            .inc();
    }
}

/// Per-registration series (exported by the leader).
#[derive(Default)]
pub struct RegistrationMetrics {
    token_expiry: Family<ObjectLabels, FloatGauge>,
    token_next_refresh: Family<ObjectLabels, FloatGauge>,
    failures: Family<ObjectLabels, Gauge>,
    refreshes: Family<ObjectLabels, Counter>,
    ready: Family<ObjectLabels, Gauge>,
}

impl RegistrationMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = RegistrationMetrics::default();
        registry.register(
            "token_expiry_timestamp_seconds",
            "Unix time at which the registration's current client token expires",
            m.token_expiry.clone(),
        );
        registry.register(
            "token_next_refresh_timestamp_seconds",
            "Unix time of the next scheduled call to the token endpoint",
            m.token_next_refresh.clone(),
        );
        registry.register(
            "token_refresh_consecutive_failures",
            "Failed token refreshes since the last success",
            m.failures.clone(),
        );
        registry.register(
            "token_refreshes",
            "Client tokens obtained",
            m.refreshes.clone(),
        );
        registry.register(
            "registration_ready",
            "1 when the TppRegistration's Ready condition is True, else 0",
            m.ready.clone(),
        );
        m
    }

    /// Sets the series of one registration after a reconcile.
    pub fn record(&self, labels: &ObjectLabels, ready: bool, status: &TppRegistrationStatus) {
        self.ready.get_or_create(labels).set(i64::from(ready));
        self.failures
            .get_or_create(labels)
            .set(i64::from(status.consecutive_failures));
        if let Some(t) = &status.token_expires_at {
            self.token_expiry.get_or_create(labels).set(seconds(t));
        }
        if let Some(t) = &status.next_refresh_at {
            self.token_next_refresh
                .get_or_create(labels)
                .set(seconds(t));
        }
    }

    /// Counts one client token obtained.
    pub fn refreshed(&self, labels: &ObjectLabels) {
        self.refreshes.get_or_create(labels).inc();
    }

    /// Drops every series of a deleted registration.
    pub fn forget(&self, labels: &ObjectLabels) {
        self.token_expiry.remove(labels);
        self.token_next_refresh.remove(labels);
        self.failures.remove(labels);
        self.refreshes.remove(labels);
        self.ready.remove(labels);
    }
}

/// Per-consent series (exported by the leader).
#[derive(Default)]
pub struct ConsentMetrics {
    ready: Family<ObjectLabels, Gauge>,
    token_expiry: Family<ObjectLabels, FloatGauge>,
    tokens: Family<ObjectLabels, Counter>,
    refreshes: Family<ObjectLabels, Counter>,
}

impl ConsentMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = ConsentMetrics::default();
        registry.register(
            "consent_ready",
            "1 when the AccountConsent's Ready condition is True (authorised, customer token valid), else 0",
            m.ready.clone(),
        );
        registry.register(
            "customer_token_expiry_timestamp_seconds",
            "Unix time at which the consent's customer token expires",
            m.token_expiry.clone(),
        );
        registry.register(
            "customer_tokens",
            "Customer tokens obtained by exchanging an authorisation code",
            m.tokens.clone(),
        );
        registry.register(
            "customer_token_refreshes",
            "Customer tokens renewed with a refresh token (providers that issue them)",
            m.refreshes.clone(),
        );
        m
    }

    /// Sets the series of one consent after a reconcile.
    pub fn record(&self, labels: &ObjectLabels, ready: bool, status: &AccountConsentStatus) {
        self.ready.get_or_create(labels).set(i64::from(ready));
        if let Some(t) = &status.token_expires_at {
            self.token_expiry.get_or_create(labels).set(seconds(t));
        }
    }

    /// Counts one authorisation code exchanged.
    pub fn exchanged(&self, labels: &ObjectLabels) {
        self.tokens.get_or_create(labels).inc();
    }

    /// Counts one customer token renewed with a refresh token.
    pub fn refreshed(&self, labels: &ObjectLabels) {
        self.refreshes.get_or_create(labels).inc();
    }

    /// Drops every series of a deleted consent.
    pub fn forget(&self, labels: &ObjectLabels) {
        self.ready.remove(labels);
        self.token_expiry.remove(labels);
        self.tokens.remove(labels);
        self.refreshes.remove(labels);
    }
}

/// The process: which build runs and whether this replica leads.
pub struct ProcessMetrics {
    leader: Gauge,
}

impl ProcessMetrics {
    fn register(registry: &mut Registry) -> Self {
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
                revision: option_env!("TPP_OPERATOR_REVISION").unwrap_or("unknown"),
            })
            .set(1);
        registry.register(
            "build_info",
            "Always 1 on every replica; its labels name the build",
            build,
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 on the replica that holds the leader Lease (or runs without election), else 0",
            leader.clone(),
        );
        ProcessMetrics { leader }
    }

    /// Says whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Says this replica leads until the guard is dropped, also when its work is dropped on
    /// a lost lease.
    pub fn leading(&self) -> Leading<'_> {
        self.set_leader(true);
        Leading(self)
    }
}

/// While alive, the leader gauge says 1.
pub struct Leading<'a>(&'a ProcessMetrics);

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        self.0.set_leader(false);
    }
}

/// Every metric the operator exports.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Calls to the provider.
    pub provider: ProviderMetrics,
    /// Reconciles.
    pub reconcile: ReconcileMetrics,
    /// Registrations.
    pub registration: RegistrationMetrics,
    /// Consents.
    pub consent: ConsentMetrics,
    /// The process.
    pub process: ProcessMetrics,
}

impl Metrics {
    /// Creates and registers all metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tpp_operator");
        Metrics {
            provider: ProviderMetrics::register(&mut registry),
            reconcile: ReconcileMetrics::register(&mut registry),
            registration: RegistrationMetrics::register(&mut registry),
            consent: ConsentMetrics::register(&mut registry),
            process: ProcessMetrics::register(&mut registry),
            registry: Mutex::new(registry),
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
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_concern_is_exported() {
        let m = Metrics::new();
        m.provider
            .observe("client_token", "success", Duration::from_millis(5));
        drop(m.reconcile.measure("TppRegistration"));
        let labels = ObjectLabels {
            namespace: "ns".into(),
            name: "a".into(),
        };
        m.registration
            .record(&labels, true, &TppRegistrationStatus::default());
        m.consent
            .record(&labels, false, &AccountConsentStatus::default());
        m.process.set_leader(true);
        let text = m.encode();
        for series in [
            "tpp_operator_provider_requests_total{endpoint=\"client_token\",outcome=\"success\"} 1",
            "tpp_operator_reconciles_total{kind=\"TppRegistration\",result=\"dropped\"} 1",
            "tpp_operator_registration_ready{namespace=\"ns\",name=\"a\"} 1",
            "tpp_operator_consent_ready{namespace=\"ns\",name=\"a\"} 0",
            "tpp_operator_leader 1",
            "tpp_operator_build_info{version=",
        ] {
            assert!(text.contains(series), "{series} missing from:\n{text}");
        }
        m.registration.forget(&labels);
        assert!(!m.encode().contains("registration_ready{"));
    }
}
