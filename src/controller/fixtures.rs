//! Test fixtures: objects built with `X::test()`, a context on a scripted API server with a
//! manual clock, and the script's verifier. For reconcile tests where the sequence of API
//! requests is the thing under test; behaviour of Kubernetes itself is tested against a real
//! API server under `tests/`.

use super::{Context, ManualClock, Settings};
use crate::api::{AccountConsent, TppRegistration, FINALIZER};
use crate::provider::{ProviderClient, ProviderConfig};
use crate::telemetry::Metrics;
use http::{Request, Response};
use jiff::Timestamp;
use kube::client::Body;
use kube::{Client, Resource};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tower_test::mock::{self, Handle};

/// The time `s` seconds after the Unix epoch.
pub fn ts(s: i64) -> Timestamp {
    Timestamp::from_second(s).expect("a time in range")
}

impl TppRegistration {
    /// A registration `acme` in namespace `default`, as the API server returns it once the
    /// operator added its finalizer.
    pub fn test() -> Self {
        let mut obj: TppRegistration = serde_json::from_value(json!({
            "apiVersion": "tpp-operator.dev/v1alpha1",
            "kind": "TppRegistration",
            "metadata": {
                "name": "acme",
                "namespace": "default",
                "uid": "uid-acme",
                "generation": 1,
                "finalizers": [FINALIZER],
            },
            "spec": {
                "organisation": {
                    "name": "Acme",
                    "email": "ops@acme.example",
                    "address": "1 Road",
                    "countryISO": "GB",
                },
                "callbackUrl": "https://acme.example/callback",
                "signatureCertificateSecretRef": {"name": "acme-signature"},
            },
        }))
        .expect("fixture");
        obj.meta_mut().resource_version = Some("1".into());
        obj
    }
}

impl AccountConsent {
    /// A consent `acme-accounts` of registration `acme` in namespace `default`, with the
    /// operator's finalizer.
    pub fn test() -> Self {
        serde_json::from_value(json!({
            "apiVersion": "tpp-operator.dev/v1alpha1",
            "kind": "AccountConsent",
            "metadata": {
                "name": "acme-accounts",
                "namespace": "default",
                "uid": "uid-acme-accounts",
                "generation": 1,
                "resourceVersion": "1",
                "finalizers": [FINALIZER],
            },
            "spec": {
                "registrationRef": {"name": "acme"},
                "permissions": ["ReadAccountsBasic"],
                "redirectUri": "https://acme.example/callback",
            },
        }))
        .expect("fixture")
    }
}

/// A context whose Kubernetes client talks to a script, with a manual clock at `now`.
pub fn context(now: Timestamp, allowed: &[&str]) -> (Arc<Context>, Arc<ManualClock>, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let metrics = Arc::new(Metrics::new());
    let provider = ProviderClient::new(
        &ProviderConfig {
            timeout: Duration::from_secs(2),
            rate_limit: 100.0,
            burst: 100,
        },
        metrics.clone(),
    )
    .expect("provider client");
    let settings = Settings {
        default_provider_url: "https://bank.example".parse().expect("url"),
        allowed_providers: allowed.iter().map(|u| u.parse().expect("url")).collect(),
        namespaces: vec!["default".into()],
        public_url: None,
        consent_poll_interval: Duration::from_secs(10),
        consent_poll_rate: 10.0,
    };
    let clock = Arc::new(ManualClock::new(now));
    let ctx = Context::new(client, provider, metrics, settings).with_clock(clock.clone());
    (Arc::new(ctx), clock, ApiServer(handle))
}

/// The scripted API server: each `expect` takes the next request, checks it and answers.
pub struct ApiServer(Handle<Request<Body>, Response<Body>>);

impl ApiServer {
    /// Expects `method path` next, answers `status` with `body`, returns the request's body.
    pub async fn expect(&mut self, method: &str, path: &str, status: u16, body: Value) -> Value {
        let next = tokio::time::timeout(Duration::from_secs(5), self.0.next_request()).await;
        let (request, send) = next
            .unwrap_or_else(|_| panic!("no request came; expected {method} {path}"))
            .unwrap_or_else(|| panic!("the client is gone; expected {method} {path}"));
        assert_eq!(
            (request.method().as_str(), request.uri().path()),
            (method, path),
            "unexpected request"
        );
        let sent = request.into_body().collect_bytes().await.expect("body");
        let response = Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(&body).expect("json")))
            .expect("response");
        send.send_response(response);
        serde_json::from_slice(&sent).unwrap_or(Value::Null)
    }

    /// Answers 404 to `GET path`.
    pub async fn not_found(&mut self, path: &str) {
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"});
        self.expect("GET", path, 404, status).await;
    }

    /// Asserts that no further request comes within a moment.
    pub async fn expect_nothing(&mut self) {
        if let Ok(Some((request, _))) =
            tokio::time::timeout(Duration::from_millis(300), self.0.next_request()).await
        {
            panic!(
                "unexpected request {} {}",
                request.method(),
                request.uri().path()
            );
        }
    }
}

/// A Secret as the API server returns it, with string values base64-encoded.
pub fn secret(name: &str, labels: Value, data: &[(&str, &str)]) -> Value {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(b64.encode(v))))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "data": data,
    })
}
