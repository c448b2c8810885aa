//! Test fixtures: objects built with `X::test()`, a context on a scripted API server with a
//! manual clock, and the script's verifier. For reconcile tests where the sequence of API
//! requests is the thing under test; behaviour of Kubernetes itself is tested against a real
//! API server under `tests/`.

use super::{Context, ManualClock, Settings};
use crate::api::{
    AccountConsent, AllowedNamespaces, ConsentStatus, PublishedKey, RegistrationState,
    TppRegistration, FINALIZER,
};
use crate::controller::providers::{ProviderEntry, ProviderState};
use crate::provider::{ProviderClient, ProviderConfig, Target};
use crate::signing::SigningKey;
use crate::telemetry::Metrics;
use http::{Request, Response};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::client::Body;
use kube::{Client, ResourceExt};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tower_test::mock::{self, Handle};

/// The time `s` seconds after the Unix epoch.
pub fn ts(s: i64) -> Timestamp {
    Timestamp::from_second(s).expect("a time in range")
}

/// The builder the integration tests and the benchmark use too.
#[path = "../../tests/common/objects.rs"]
pub(crate) mod objects;

/// Metadata of an object as the API server returns it once the operator added its finalizer.
fn stored(name: &str) -> Value {
    json!({
        "name": name,
        "namespace": "default",
        "uid": format!("uid-{name}"),
        "generation": 1,
        "resourceVersion": "1",
        "finalizers": [FINALIZER],
    })
}

impl TppRegistration {
    /// A registration `acme` in namespace `default`, as the API server returns it once the
    /// operator added its finalizer.
    pub fn test() -> Self {
        let mut object = objects::registration("acme").json();
        object["metadata"] = stored("acme");
        serde_json::from_value(object).expect("fixture")
    }
}

/// A Ready condition with `reason`, as the operator writes it.
fn ready_condition(ready: bool, reason: &str, at: Timestamp) -> Condition {
    Condition {
        type_: "Ready".into(),
        status: if ready { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: reason.into(),
        observed_generation: Some(1),
        last_transition_time: Time(at),
    }
}

impl TppRegistration {
    /// The same, registered at `at` with `provider` (the context's ClusterProvider `p0`) as
    /// client C1, Ready.
    pub fn registered(mut self, at: Timestamp, provider: &str) -> Self {
        let name = self.name_any();
        let status = self.status.get_or_insert_with(Default::default);
        status.observed_generation = Some(1);
        status.conditions = vec![ready_condition(true, "TokenRefreshed", at)];
        status.provider = Some("p0".into());
        status.provider_url = Some(provider.into());
        status.client_id = Some("C1".into());
        status.registration = Some(RegistrationState::Registered);
        status.registered_at = Some(Time(at));
        status.credentials_secret = Some(format!("{name}-credentials"));
        status.token_secret = Some(format!("{name}-token"));
        status.signing_key_secret = Some(format!("{name}-signing-key"));
        self
    }

    /// The same, with a client token issued at `issued`, expiring at `expiry` and due for
    /// refresh at `due`.
    pub fn with_token(mut self, issued: Timestamp, expiry: Timestamp, due: Timestamp) -> Self {
        let status = self.status.get_or_insert_with(Default::default);
        status.token_issued_at = Some(Time(issued));
        status.token_expires_at = Some(Time(expiry));
        status.next_refresh_at = Some(Time(due));
        self
    }

    /// The same, publishing `key` as its current signing key.
    pub fn with_key(mut self, key: &SigningKey) -> Self {
        let (modulus, exponent) = key.public_components();
        let status = self.status.get_or_insert_with(Default::default);
        status.signing_keys = vec![PublishedKey {
            kid: key.kid().to_string(),
            modulus,
            exponent,
            retire_at: None,
        }];
        self
    }

    /// The same, with annotation `key` set to `value`.
    pub fn annotated(mut self, key: &str, value: &str) -> Self {
        self.annotations_mut().insert(key.into(), value.into());
        self
    }
}

impl AccountConsent {
    /// A consent `acme-accounts` of registration `acme` in namespace `default`, with the
    /// operator's finalizer.
    pub fn test() -> Self {
        let mut object = objects::consent("acme-accounts", "acme").json();
        object["metadata"] = stored("acme-accounts");
        serde_json::from_value(object).expect("fixture")
    }
}

impl AccountConsent {
    /// The same, created at the provider as consent `id` at `at`, awaiting authorisation.
    pub fn created(mut self, id: &str, at: Timestamp) -> Self {
        let token_secret = format!("{}-token", self.name_any());
        let status = self.status.get_or_insert_with(Default::default);
        status.observed_generation = Some(1);
        status.conditions = vec![ready_condition(false, "AwaitingAuthorisation", at)];
        status.consent_id = Some(id.into());
        status.consent_status = Some(ConsentStatus::AwaitingAuthorisation);
        status.token_secret = Some(token_secret);
        self
    }

    /// The same, authorised at `at` with a customer token valid until `expiry`.
    pub fn authorised(mut self, at: Timestamp, expiry: Timestamp) -> Self {
        let status = self.status.get_or_insert_with(Default::default);
        status.conditions = vec![ready_condition(true, "Authorised", at)];
        status.consent_status = Some(ConsentStatus::Authorised);
        status.authorised_at = Some(Time(at));
        status.token_expires_at = Some(Time(expiry));
        self
    }

    /// The same, expiring at `at` (`spec.expirationDateTime`).
    pub fn expiring(mut self, at: Timestamp) -> Self {
        self.spec.expiration_date_time = Some(Time(at));
        self
    }
}

/// A context whose Kubernetes client talks to a script, with a manual clock at `now`, and one
/// Leatherback ClusterProvider `p<i>` per URL of `allowed` that allows namespace `default`
/// (`p0` is the default provider).
pub fn context(now: Timestamp, allowed: &[&str]) -> (Arc<Context>, Arc<ManualClock>, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let metrics = Arc::new(Metrics::new());
    let provider = ProviderClient::new(
        &ProviderConfig {
            timeout: Duration::from_secs(2),
            rate_limit: 100.0,
            burst: 100,
            ..ProviderConfig::default()
        },
        metrics.clone(),
    )
    .expect("provider client");
    let settings = Settings {
        default_provider: "p0".into(),
        namespaces: vec!["default".into()],
        public_url: None,
        consent_poll_interval: Duration::from_secs(10),
        consent_poll_rate: 10.0,
        template_policy: Default::default(),
        allowed_return_urls: vec![],
    };
    let clock = Arc::new(ManualClock::new(now));
    let ctx = Context::new(client, provider, metrics, settings).with_clock(clock.clone());
    for (i, url) in allowed.iter().enumerate() {
        let url: url::Url = url.parse().expect("url");
        let name = format!("p{i}");
        let target = Target::leatherback(
            &name,
            url.clone(),
            ctx.provider.default_limits().clone(),
            Default::default(),
            None,
        )
        .expect("target");
        ctx.providers.set(ProviderEntry {
            name,
            generation: Some(1),
            url: Some(url),
            allowed: AllowedNamespaces {
                names: vec!["default".into()],
                selector: None,
            },
            state: ProviderState::Ready(Arc::new(target)),
        });
    }
    ctx.providers.mark_synced();
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
