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
    };
    let ctx = Arc::new(Context::new(client, provider, metrics, settings));
    let state = HttpState::new(ctx, &limits);
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = socket.local_addr().expect("addr");
    tokio::spawn(tpp_operator::http::serve_on(
        socket,
        public_router(state, &limits),
        std::future::pending(),
    ));
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
        rate: 5.0,
        burst: 5,
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
