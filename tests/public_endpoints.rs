//! The internet-facing listener (`/jwks`, `/callback`) with a Kubernetes client that records
//! every request: input Kubernetes could not have named is refused before any API call, and
//! the listener refuses floods instead of queueing them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{Request, Response};
use kube::client::Body;
use kube::Client;
use std::sync::Arc;
use std::time::Duration;
use tower_test::mock;
use tpp_operator::controller::{Context, Settings};
use tpp_operator::http::{public_router, HttpState, PublicLimits};
use tpp_operator::provider::{ProviderClient, ProviderConfig};
use tpp_operator::telemetry::Metrics;

type ApiHandle = mock::Handle<Request<Body>, Response<Body>>;

/// The public listener on a loopback port, and the handle that sees every API request.
async fn listener(limits: PublicLimits) -> (String, ApiHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let metrics = Arc::new(Metrics::new());
    let provider =
        ProviderClient::new(&ProviderConfig::default(), metrics.clone()).expect("client");
    let settings = Settings {
        default_provider_url: "https://bank.example".parse().expect("url"),
        allowed_providers: vec!["https://bank.example".parse().expect("url")],
        namespaces: vec![],
        public_url: None,
        consent_poll_interval: Duration::from_secs(10),
        consent_poll_rate: 1.0,
        template_policy: Default::default(),
        allowed_return_urls: vec![],
    };
    let ctx = Arc::new(Context::new(client, provider, metrics, settings));
    let state = HttpState::new(ctx, &limits);
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = socket.local_addr().expect("addr");
    let router = public_router(state, &limits);
    tokio::spawn(async move {
        tpp_operator::http::serve_on(socket, router, &limits, std::future::pending()).await
    });
    (format!("http://{addr}"), handle)
}

/// Fails if the API server is asked anything within a moment.
async fn no_api_request(handle: &mut ApiHandle) {
    if let Ok(Some((request, _))) =
        tokio::time::timeout(Duration::from_millis(300), handle.next_request()).await
    {
        panic!(
            "an API request was made: {} {}",
            request.method(),
            request.uri()
        );
    }
}

fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

#[tokio::test]
async fn path_tricks_are_refused_before_any_api_request() {
    let (base, mut api) = listener(PublicLimits::default()).await;
    let http = reqwest::Client::new();
    for path in [
        "/jwks/a%2Fb/c",
        "/jwks/default/x%2F..%2F..%2Fsecrets",
        "/jwks/default/acme%3Fwatch=true",
        "/jwks/Default/acme",
        "/jwks/default/acme%20x",
    ] {
        let r = http.get(format!("{base}{path}")).send().await.expect("get");
        assert_eq!(r.status().as_u16(), 400, "{path}");
    }
    let random = "A".repeat(43);
    for (namespace, name) in [
        ("a/b", "acme"),
        ("default", "acme?watch=true"),
        ("default", "../../secrets/x"),
        ("default", &"a".repeat(254)),
    ] {
        let state = format!("{}.{}.{random}", b64(namespace), b64(name));
        let r = http
            .get(format!("{base}/callback?state={state}&code=c"))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status().as_u16(), 400, "{namespace}/{name}");
    }
    no_api_request(&mut api).await;
}

#[tokio::test]
async fn a_flood_is_refused_not_queued() {
    let limits = PublicLimits {
        callback_rate: 2.5,
        ..PublicLimits::default()
    };
    let (base, mut api) = listener(limits).await;
    let http = reqwest::Client::new();
    let mut refused = 0;
    for _ in 0..20 {
        let r = http
            .get(format!("{base}/callback"))
            .send()
            .await
            .expect("get");
        if r.status().as_u16() == 429 {
            assert!(r.headers().contains_key("retry-after"));
            refused += 1;
        }
    }
    assert!(refused >= 10, "only {refused} of 20 refused at 5/s");
    let long = "a".repeat(10_000);
    let r = http
        .get(format!("{base}/callback?state={long}"))
        .send()
        .await
        .expect("get");
    assert!([414, 429].contains(&r.status().as_u16()), "{}", r.status());
    no_api_request(&mut api).await;
}

/// A client whose requests come from `address` (any 127.0.0.0/8 address is this machine's).
fn client_from(address: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(address.parse::<std::net::IpAddr>().expect("address"))
        .build()
        .expect("client")
}

/// Answers the API requests of one accepted authorisation: the consent (whose pending state
/// is `state`), then the hand-off Secret's creation.
async fn accept_one_authorisation(api: &mut ApiHandle, state: &str) {
    let consent = serde_json::json!({
        "apiVersion": "tpp-operator.dev/v1alpha1", "kind": "AccountConsentList",
        "metadata": {"resourceVersion": "1"},
        "items": [{
            "apiVersion": "tpp-operator.dev/v1alpha1", "kind": "AccountConsent",
            "metadata": {"name": "acme", "namespace": "team-a", "uid": "u-1"},
            "spec": {"registrationRef": {"name": "r"}, "permissions": ["ReadAccountsBasic"], "redirectUri": "https://x.example/cb"},
            "status": {"authorisationState": state},
        }],
    });
    for (method, body, status) in [
        ("GET", consent, 200),
        (
            "POST",
            serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "acme-authorisation"}}),
            201,
        ),
    ] {
        let (request, send) = tokio::time::timeout(Duration::from_secs(5), api.next_request())
            .await
            .expect("an API request")
            .expect("client alive");
        assert_eq!(request.method().as_str(), method, "{}", request.uri());
        send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&body).expect("json")))
                .expect("response"),
        );
    }
}

#[tokio::test]
async fn a_flood_from_one_client_leaves_the_others_served() {
    let (base, mut api) = listener(PublicLimits::default()).await;
    // One client floods both paths far beyond its budget, from its own address.
    let flooder = client_from("127.0.0.1");
    let flood = {
        let base = base.clone();
        tokio::spawn(async move {
            let mut refused = 0;
            for i in 0..300 {
                let path = if i % 2 == 0 {
                    "/jwks/team-a/acme%2F"
                } else {
                    "/callback"
                };
                if let Ok(r) = flooder.get(format!("{base}{path}")).send().await {
                    refused += u32::from(r.status().as_u16() == 429);
                }
            }
            refused
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Meanwhile a customer comes back from the bank: the authorisation is recorded.
    let random = "A".repeat(43);
    let state = format!("{}.{}.{random}", b64("team-a"), b64("acme"));
    let customer = client_from("127.0.0.2");
    let redirect = customer
        .get(format!("{base}/callback?state={state}&code=the-code"))
        .send();
    let (answer, ()) = tokio::join!(redirect, accept_one_authorisation(&mut api, &state));
    assert_eq!(answer.expect("callback").status().as_u16(), 200);
    // And a third client (the provider fetching keys) is served too: its path tricks are
    // refused for what they are (400), not for the flood (429).
    let provider = client_from("127.0.0.3");
    let r = provider
        .get(format!("{base}/jwks/Team-A/acme"))
        .send()
        .await
        .expect("jwks");
    assert_eq!(r.status().as_u16(), 400);
    let refused = flood.await.expect("flood");
    assert!(
        refused >= 200,
        "only {refused} of 300 flood requests refused"
    );
    no_api_request(&mut api).await;
}

#[tokio::test]
async fn behind_trusted_proxies_each_forwarded_client_has_its_own_budget() {
    let limits = PublicLimits {
        callback_rate: 1.0,
        trusted_proxies: vec!["127.0.0.0/8".parse().expect("cidr")],
        ..PublicLimits::default()
    };
    let (base, mut api) = listener(limits).await;
    let http = reqwest::Client::new();
    let get = |client: &'static str| {
        http.get(format!("{base}/callback"))
            .header("x-forwarded-for", format!("198.51.100.9, {client}"))
            .send()
    };
    // The forged left-most hop changes nothing: 203.0.113.1 spends its burst of 2.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(get("203.0.113.1").await.expect("get").status().as_u16());
    }
    assert_eq!(&statuses[2..], [429, 429], "{statuses:?}");
    // Another client behind the same proxy is not affected.
    assert_eq!(
        get("203.0.113.2").await.expect("get").status().as_u16(),
        400
    );
    no_api_request(&mut api).await;
}
