//! The internet-facing listener (`/jwks`, `/callback`) with a Kubernetes client that records
//! every request: input Kubernetes could not have named is refused before any API call, and
//! the listener refuses floods instead of queueing them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{Request, Response};
use kube::client::Body;
use kube::Client;
use serde_json::Value;
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
    listener_allowing(limits, &[]).await
}

/// The same, with the return-URL prefixes the platform team allows.
async fn listener_allowing(limits: PublicLimits, return_urls: &[&str]) -> (String, ApiHandle) {
    let allowed_return_urls = return_urls
        .iter()
        .map(|u| u.parse().expect("url"))
        .collect();
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let metrics = Arc::new(Metrics::new());
    let provider =
        ProviderClient::new(&ProviderConfig::default(), metrics.clone()).expect("client");
    let settings = Settings {
        default_provider: "leatherback".into(),
        namespaces: vec![],
        public_url: None,
        consent_poll_interval: Duration::from_secs(10),
        consent_poll_rate: 1.0,
        template_policy: Default::default(),
        allowed_return_urls,
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
    // Another client behind the same proxy is not affected (a callback without parameters is
    // answered with the fragment page).
    assert_eq!(
        get("203.0.113.2").await.expect("get").status().as_u16(),
        200
    );
    no_api_request(&mut api).await;
}

// --- The fragment page, the posted answer, and the way back to the app ---

/// The page's policy when no return URL is allowed.
const CSP: &str = "default-src 'none'; script-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
/// The return-URL prefix the platform allows in these tests.
const APP: &str = "https://app.example/done";

/// A header of an answer, as text.
fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A browser that shows redirects instead of following them.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A state naming consent `team-a/acme`.
fn acme_state() -> String {
    format!("{}.{}.{}", b64("team-a"), b64("acme"), "A".repeat(43))
}

#[tokio::test]
async fn the_fragment_page_and_its_script_are_locked_down() {
    let (base, mut api) = listener(PublicLimits::default()).await;
    let http = reqwest::Client::new();
    for (path, content_type) in [
        ("/callback", "text/html; charset=utf-8"),
        ("/callback?lang=en", "text/html; charset=utf-8"),
        ("/callback.js", "text/javascript"),
    ] {
        let r = http.get(format!("{base}{path}")).send().await.expect("get");
        assert_eq!(r.status().as_u16(), 200, "{path}");
        assert_eq!(header(&r, "content-type").as_deref(), Some(content_type));
        assert_eq!(header(&r, "content-security-policy").as_deref(), Some(CSP));
        assert_eq!(header(&r, "cache-control").as_deref(), Some("no-store"));
        assert_eq!(
            header(&r, "referrer-policy").as_deref(),
            Some("no-referrer")
        );
        assert_eq!(
            header(&r, "x-content-type-options").as_deref(),
            Some("nosniff")
        );
        let body = r.text().await.expect("body");
        if path == "/callback.js" {
            assert!(body.contains("location.hash") && body.contains("form.submit()"));
        } else {
            // One script, the operator's own file; nothing inline.
            assert_eq!(body.matches("<script").count(), 1, "{body}");
            assert!(body.contains(r#"<script src="callback.js" defer></script>"#));
        }
    }
    no_api_request(&mut api).await;

    // With return URLs allowed, the posted form may also be redirected to their origin:
    // browsers hold that redirect to the page's form-action.
    let (base, mut api) = listener_allowing(PublicLimits::default(), &[APP]).await;
    let r = http
        .get(format!("{base}/callback"))
        .send()
        .await
        .expect("get");
    assert_eq!(
        header(&r, "content-security-policy").as_deref(),
        Some("default-src 'none'; script-src 'self'; form-action 'self' https://app.example; base-uri 'none'; frame-ancestors 'none'")
    );
    no_api_request(&mut api).await;
}

#[tokio::test]
async fn posted_answers_are_refused_like_queries_before_any_api_request() {
    // Room for every case below within the per-client budget.
    let limits = PublicLimits {
        callback_rate: 100.0,
        ..PublicLimits::default()
    };
    let (base, mut api) = listener(limits).await;
    let http = reqwest::Client::new();
    let state = acme_state();
    let (long_code, long_token) = ("c".repeat(5000), "t".repeat(5000));
    let mut cases: Vec<Vec<(&str, String)>> = vec![
        vec![("code", "c".into())],
        vec![("state", String::new()), ("code", "c".into())],
        vec![("state", "A".repeat(600)), ("code", "c".into())],
        vec![("state", state.clone())],
        vec![("state", state.clone()), ("code", long_code)],
        vec![
            ("state", state.clone()),
            ("code", "c".into()),
            ("id_token", long_token),
        ],
        vec![("state", "not-a-state".into()), ("code", "c".into())],
    ];
    let random = "A".repeat(43);
    for (namespace, name) in [
        ("a/b", "acme"),
        ("default", "acme?watch=true"),
        ("default", "../../secrets/x"),
        ("Default", "acme"),
    ] {
        let tricky = format!("{}.{}.{random}", b64(namespace), b64(name));
        cases.push(vec![("state", tricky), ("code", "c".into())]);
    }
    for (i, pairs) in cases.iter().enumerate() {
        let posted = http
            .post(format!("{base}/callback"))
            .form(pairs)
            .send()
            .await
            .expect("post");
        assert_eq!(posted.status().as_u16(), 400, "POST case {i}");
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        let got = http
            .get(format!("{base}/callback?{query}"))
            .send()
            .await
            .expect("get");
        assert_eq!(got.status().as_u16(), 400, "GET case {i}");
    }
    // A body beyond 8 KiB is refused unread; a body that is not a form is not read either.
    let huge = [("state", state.clone()), ("code", "c".repeat(9000))];
    let r = http
        .post(format!("{base}/callback"))
        .form(&huge)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 413);
    let r = http
        .post(format!("{base}/callback"))
        .json(&serde_json::json!({"state": state, "code": "c"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 415);
    // Every other route keeps its 1 KiB bound.
    let r = http
        .get(format!("{base}/callback.js"))
        .body("x".repeat(2000))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 413);
    no_api_request(&mut api).await;
}

/// Answers the next API request, which must be `method`, with `status` and `body`; returns
/// what the request sent.
async fn answer(api: &mut ApiHandle, method: &str, status: u16, body: serde_json::Value) -> Value {
    let (request, send) = tokio::time::timeout(Duration::from_secs(5), api.next_request())
        .await
        .expect("an API request")
        .expect("client alive");
    assert_eq!(request.method().as_str(), method, "{}", request.uri());
    let sent = request
        .into_body()
        .collect_bytes()
        .await
        .expect("request body");
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(&body).expect("json")))
            .expect("response"),
    );
    serde_json::from_slice(&sent).unwrap_or(Value::Null)
}

/// The list answering the callback's read of consent `team-a/acme`, pending `state`.
fn acme(state: &str, return_url: Option<&str>) -> Value {
    let mut spec = serde_json::json!({
        "registrationRef": {"name": "r"},
        "permissions": ["ReadAccountsBasic"],
        "redirectUri": "https://x.example/cb",
    });
    if let Some(url) = return_url {
        spec["returnUrl"] = url.into();
    }
    serde_json::json!({
        "apiVersion": "tpp-operator.dev/v1alpha1", "kind": "AccountConsentList",
        "metadata": {"resourceVersion": "1"},
        "items": [{
            "apiVersion": "tpp-operator.dev/v1alpha1", "kind": "AccountConsent",
            "metadata": {"name": "acme", "namespace": "team-a", "uid": "u-1"},
            "spec": spec,
            "status": {"authorisationState": state},
        }],
    })
}

/// The API server's answer to a Secret creation: created, or a failure Status of `code`.
fn secret_answer(code: u16) -> Value {
    if code == 201 {
        return serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "acme-authorisation"}});
    }
    serde_json::json!({
        "apiVersion": "v1", "kind": "Status", "status": "Failure",
        "reason": if code == 409 { "AlreadyExists" } else { "InternalError" },
        "message": "scripted", "code": code,
    })
}

#[tokio::test]
async fn a_posted_authorisation_is_handed_over_and_the_customer_sent_back_to_the_app() {
    let (base, mut api) = listener_allowing(PublicLimits::default(), &[APP]).await;
    let state = acme_state();
    let posted = browser()
        .post(format!("{base}/callback"))
        .form(&[
            ("state", state.as_str()),
            ("code", "the-code"),
            ("id_token", "the-id-token"),
        ])
        .send();
    let script = async {
        let return_url = "https://app.example/done/accounts?tab=2";
        answer(&mut api, "GET", 200, acme(&state, Some(return_url))).await;
        answer(&mut api, "POST", 201, secret_answer(201)).await
    };
    let (r, secret) = tokio::join!(posted, script);
    let r = r.expect("post");
    assert_eq!(r.status().as_u16(), 303);
    let location = header(&r, "location").expect("location");
    assert_eq!(
        location,
        "https://app.example/done/accounts?tab=2&consent=acme&outcome=authorised"
    );
    assert_eq!(header(&r, "cache-control").as_deref(), Some("no-store"));
    assert_eq!(
        header(&r, "referrer-policy").as_deref(),
        Some("no-referrer")
    );
    // The code went to the hand-off Secret, and nowhere near the app.
    assert_eq!(secret["metadata"]["name"], "acme-authorisation");
    assert_eq!(secret["stringData"]["code"], "the-code");
    assert_eq!(secret["stringData"]["id_token"], "the-id-token");
    assert_eq!(secret["stringData"]["state"], state.as_str());
    no_api_request(&mut api).await;
}

#[tokio::test]
async fn refusals_and_replays_go_back_to_the_app_with_their_outcome() {
    let (base, mut api) = listener_allowing(PublicLimits::default(), &[APP]).await;
    let state = acme_state();
    let browser = browser();
    // (the redirect's answer, the API server's answer to the hand-off, the outcome)
    for (pairs, secret_status, outcome) in [
        (vec![("error", "access_denied")], 201, "refused"),
        (vec![("code", "c")], 409, "failed"),
        (vec![("code", "c")], 500, "failed"),
    ] {
        let mut pairs = pairs;
        pairs.push(("state", &state));
        let sent = browser.post(format!("{base}/callback")).form(&pairs).send();
        let script = async {
            answer(&mut api, "GET", 200, acme(&state, Some(APP))).await;
            answer(
                &mut api,
                "POST",
                secret_status,
                secret_answer(secret_status),
            )
            .await
        };
        let (r, _) = tokio::join!(sent, script);
        let r = r.expect("post");
        assert_eq!(r.status().as_u16(), 303, "{pairs:?}");
        assert_eq!(
            header(&r, "location").as_deref(),
            Some(format!("{APP}?consent=acme&outcome={outcome}").as_str()),
            "{pairs:?} answered {secret_status}"
        );
    }

    // A return URL the list does not allow (here: outside the allowed path) is never
    // redirected to: the authorisation is recorded and the plain page answers.
    let query = format!("state={state}&code=c");
    let sent = browser.get(format!("{base}/callback?{query}")).send();
    let script = async {
        let elsewhere = "https://app.example/donE/../evil";
        answer(&mut api, "GET", 200, acme(&state, Some(elsewhere))).await;
        answer(&mut api, "POST", 201, secret_answer(201)).await
    };
    let (r, _) = tokio::join!(sent, script);
    let r = r.expect("get");
    assert_eq!(r.status().as_u16(), 200);
    assert!(header(&r, "location").is_none());
    assert_eq!(
        header(&r, "content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );

    // A state that names no pending consent sends nobody anywhere: there is no consent whose
    // return URL could be trusted.
    let sent = browser.get(format!("{base}/callback?{query}")).send();
    let script = answer(
        &mut api,
        "GET",
        200,
        acme("another-pending-state", Some(APP)),
    );
    let (r, _) = tokio::join!(sent, script);
    let r = r.expect("get");
    assert_eq!(r.status().as_u16(), 400);
    assert!(header(&r, "location").is_none());
    no_api_request(&mut api).await;
}
