//! Reconcile tests on a scripted API server: what a registration reads and writes when its
//! token is not due (nothing but reads), and when the injected clock reaches the refresh time.

use crate::api::TppRegistration;
use crate::controller::fixtures::{context, secret, ApiServer};
use crate::controller::frame::reconcile;
use crate::signing::SigningKey;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const REG: &str = "/apis/tpp-operator.dev/v1alpha1/namespaces/default/tppregistrations/acme";
const SECRETS: &str = "/api/v1/namespaces/default/secrets";

fn owned() -> serde_json::Value {
    json!({"app.kubernetes.io/managed-by": "tpp-operator", "tpp-operator.dev/registration": "acme"})
}

/// A registered registration with a token issued at `issued`, due at `issued + 200`.
fn refreshed(issued: Timestamp, provider: &str, key: &SigningKey) -> TppRegistration {
    let at = |s: i64| Timestamp::from_second(issued.as_second() + s).unwrap();
    TppRegistration::test()
        .registered(issued, provider)
        .with_token(issued, at(300), at(200))
        .with_key(key)
}

/// Answers the reads every reconcile of `obj` makes up to the token decision.
async fn reads(api: &mut ApiServer, obj: &TppRegistration, client_id: &str, certificate: &str) {
    api.expect("GET", REG, 200, serde_json::to_value(obj).unwrap())
        .await;
    let credentials = secret(
        "acme-credentials",
        owned(),
        &[("client_id", client_id), ("certificate", certificate)],
    );
    api.expect(
        "GET",
        &format!("{SECRETS}/acme-credentials"),
        200,
        credentials,
    )
    .await;
    let token = secret("acme-token", owned(), &[("access_token", "old")]);
    api.expect("GET", &format!("{SECRETS}/acme-token"), 200, token)
        .await;
}

/// Answers the read of the generated signing key.
async fn expect_signing_key(api: &mut ApiServer, key: &SigningKey) {
    let stored = secret(
        "acme-signing-key",
        owned(),
        &[
            ("private_key", &key.to_pkcs8_pem().unwrap()),
            ("kid", key.kid()),
        ],
    );
    api.expect("GET", &format!("{SECRETS}/acme-signing-key"), 200, stored)
        .await;
}

#[tokio::test]
async fn a_token_not_due_costs_reads_only() {
    let issued = Timestamp::from_second(1_800_000_000).unwrap();
    let key = SigningKey::generate().unwrap();
    let obj = refreshed(issued, "https://bank.example", &key);
    let (ctx, clock, mut api) = context(issued, &["https://bank.example"]);
    clock.advance(Duration::from_secs(100));

    let run = tokio::spawn(reconcile(Arc::new(obj.clone()), ctx));
    reads(&mut api, &obj, "C1", "secret").await;
    expect_signing_key(&mut api, &key).await;
    // No status write, no event, no Secret write: nothing changed.
    api.expect_nothing().await;
    let action = run.await.unwrap().unwrap();
    assert_eq!(
        format!("{action:?}"),
        format!(
            "{:?}",
            kube::runtime::controller::Action::requeue(Duration::from_secs(100))
        )
    );
}

#[tokio::test]
async fn the_injected_clock_reaching_the_refresh_time_refreshes_once() {
    let fake = fake_provider::FakeProvider::start(fake_provider::Config::default())
        .await
        .expect("fake");
    let issued = Timestamp::from_second(Timestamp::now().as_second() - 1_000).unwrap();
    let registered = reqwest_register(&fake.base_url()).await;
    let key = SigningKey::generate().unwrap();
    let obj = refreshed(issued, &fake.base_url(), &key);
    let (ctx, clock, mut api) = context(issued, &[&fake.base_url()]);
    clock.advance(Duration::from_secs(200));

    let run = tokio::spawn(reconcile(Arc::new(obj.clone()), ctx));
    reads(&mut api, &obj, &registered.0, &registered.1).await;
    // The token Secret is written with server-side apply; its ownership was checked on the
    // read above, not read again.
    let token = secret("acme-token", owned(), &[("access_token", "old")]);
    let written = api
        .expect("PATCH", &format!("{SECRETS}/acme-token"), 200, token)
        .await;
    assert!(written["data"]["authorization"].is_string());
    expect_signing_key(&mut api, &key).await;
    let status = api
        .expect(
            "PATCH",
            &format!("{REG}/status"),
            200,
            serde_json::to_value(&obj).unwrap(),
        )
        .await;
    let now = Timestamp::from_second(issued.as_second() + 200).unwrap();
    assert_eq!(
        status["status"]["tokenIssuedAt"],
        json!(Time(now)),
        "issued at the injected time"
    );
    api.expect_nothing().await;
    run.await.unwrap().unwrap();
    assert_eq!(fake.calls().client_token, 1);
}

/// Registers at the fake provider directly; returns the client id and certificate.
async fn reqwest_register(base: &str) -> (String, String) {
    let response: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/api/account/registration"))
        .header("signature-certificate", "sig")
        .json(&json!({"countryISO": "GB", "address": "a", "name": "n", "email": "e@x.io", "certificateType": "account", "callbackUrl": "https://x.example"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        response["ClientId"].as_str().unwrap().to_string(),
        response["Certificate"].as_str().unwrap().to_string(),
    )
}

/// Starts the fake provider and registers at it; the registration of `refreshed` at it.
async fn registered_at_fake(
    issued: Timestamp,
    key: &SigningKey,
) -> (
    fake_provider::FakeProvider,
    TppRegistration,
    (String, String),
) {
    let fake = fake_provider::FakeProvider::start(fake_provider::Config::default())
        .await
        .expect("fake");
    let credentials = reqwest_register(&fake.base_url()).await;
    let mut obj = refreshed(issued, &fake.base_url(), key);
    // The client the provider issued, so that only what a test changes triggers a call.
    obj.status.as_mut().expect("status").client_id = Some(credentials.0.clone());
    (fake, obj, credentials)
}

#[tokio::test]
async fn a_forced_refresh_calls_once_per_annotation_value() {
    let issued = Timestamp::from_second(Timestamp::now().as_second() - 1_000).unwrap();
    let key = SigningKey::generate().unwrap();
    let (fake, obj, (id, certificate)) = registered_at_fake(issued, &key).await;
    let obj = obj.annotated("tpp-operator.dev/force-refresh", "first");
    let (ctx, clock, mut api) = context(issued, &[&fake.base_url()]);
    // Not due for another 100 s: only the annotation asks for a token.
    clock.advance(Duration::from_secs(100));

    let run = tokio::spawn(reconcile(Arc::new(obj.clone()), ctx.clone()));
    reads(&mut api, &obj, &id, &certificate).await;
    let token = secret("acme-token", owned(), &[("access_token", "old")]);
    api.expect("PATCH", &format!("{SECRETS}/acme-token"), 200, token)
        .await;
    expect_signing_key(&mut api, &key).await;
    let written = api
        .expect(
            "PATCH",
            &format!("{REG}/status"),
            200,
            serde_json::to_value(&obj).unwrap(),
        )
        .await;
    assert_eq!(written["status"]["handledForceRefresh"], "first");
    api.expect_nothing().await;
    run.await.unwrap().unwrap();
    assert_eq!(fake.calls().client_token, 1);

    // The same value again (as stored once handled): nothing but reads, no second token.
    let mut handled = obj.clone();
    let status = handled.status.as_mut().unwrap();
    status.handled_force_refresh = Some("first".into());
    handled.metadata.resource_version = Some("2".into());
    let run = tokio::spawn(reconcile(Arc::new(handled.clone()), ctx));
    reads(&mut api, &handled, &id, &certificate).await;
    expect_signing_key(&mut api, &key).await;
    api.expect_nothing().await;
    run.await.unwrap().unwrap();
    assert_eq!(
        fake.calls().client_token,
        1,
        "one token per annotation value"
    );
}

#[tokio::test]
async fn a_refresh_failing_keeps_the_token_and_retries_before_it_expires() {
    let issued = Timestamp::from_second(Timestamp::now().as_second() - 1_000).unwrap();
    let key = SigningKey::generate().unwrap();
    let (fake, obj, (id, certificate)) = registered_at_fake(issued, &key).await;
    fake.inject(
        fake_provider::Endpoint::ClientToken,
        fake_provider::Fault::Status(503),
        None,
    );
    let (ctx, clock, mut api) = context(issued, &[&fake.base_url()]);
    clock.advance(Duration::from_secs(200));

    let run = tokio::spawn(reconcile(Arc::new(obj.clone()), ctx));
    reads(&mut api, &obj, &id, &certificate).await;
    // No token Secret write: the old token stays for the apps.
    expect_signing_key(&mut api, &key).await;
    let written = api
        .expect(
            "PATCH",
            &format!("{REG}/status"),
            200,
            serde_json::to_value(&obj).unwrap(),
        )
        .await;
    let status = &written["status"];
    let ready = &status["conditions"][0];
    assert_eq!(ready["reason"], "RefreshFailing");
    assert_eq!(ready["status"], "True", "the old token is still valid");
    assert_eq!(status["consecutiveFailures"], 1);
    let next: Timestamp = status["nextRefreshAt"].as_str().unwrap().parse().unwrap();
    let expiry = Timestamp::from_second(issued.as_second() + 300).unwrap();
    assert!(
        next < expiry,
        "the retry at {next} comes before the token expires at {expiry}"
    );
    // A warning event says the refresh failed.
    api.expect(
        "POST",
        "/apis/events.k8s.io/v1/namespaces/default/events",
        201,
        json!({}),
    )
    .await;
    api.expect_nothing().await;
    run.await.unwrap().unwrap();
    assert_eq!(fake.calls().client_token, 1);
}
