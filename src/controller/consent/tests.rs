//! Reconcile tests on a scripted API server: the consent's stage and waiting decisions, with
//! the clock injected.

use crate::api::{AccountConsent, TppRegistration};
use crate::controller::fixtures::{context, ts};
use crate::controller::frame::reconcile;
use jiff::Timestamp;
use kube::runtime::controller::Action;
use std::sync::Arc;
use std::time::Duration;

const CONSENT: &str =
    "/apis/tpp-operator.dev/v1alpha1/namespaces/default/accountconsents/acme-accounts";

#[tokio::test]
async fn a_consent_without_its_registration_waits_and_calls_nobody() {
    let (ctx, _clock, mut api) = context(
        Timestamp::from_second(1_800_000_000).unwrap(),
        &["https://bank.example"],
    );
    let obj = AccountConsent::test();
    let run = tokio::spawn(reconcile(Arc::new(obj.clone()), ctx));
    api.expect("GET", CONSENT, 200, serde_json::to_value(&obj).unwrap())
        .await;
    api.not_found("/apis/tpp-operator.dev/v1alpha1/namespaces/default/tppregistrations/acme")
        .await;
    let written = api
        .expect(
            "PATCH",
            &format!("{CONSENT}/status"),
            200,
            serde_json::to_value(&obj).unwrap(),
        )
        .await;
    let ready = &written["status"]["conditions"][0];
    assert_eq!(ready["reason"], "RegistrationNotReady");
    assert!(ready["message"]
        .as_str()
        .unwrap()
        .contains("TppRegistration acme does not exist"));
    // Waiting is not news: no event.
    api.expect_nothing().await;
    run.await.unwrap().unwrap();
}

const REGISTRATION: &str =
    "/apis/tpp-operator.dev/v1alpha1/namespaces/default/tppregistrations/acme";
const HANDOFF: &str = "/api/v1/namespaces/default/secrets/acme-accounts-authorisation";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";

fn json<T: serde::Serialize>(obj: &T) -> serde_json::Value {
    serde_json::to_value(obj).unwrap()
}

#[tokio::test]
async fn a_consent_past_its_expiration_is_expired_without_any_call() {
    let now = ts(1_800_000_000);
    let (ctx, _clock, mut api) = context(now, &["https://bank.example"]);
    let obj = AccountConsent::test()
        .created("c-1", ts(1_799_999_000))
        .expiring(ts(1_799_999_999));
    let run = tokio::spawn(reconcile(Arc::new(obj.clone()), ctx));
    api.expect("GET", CONSENT, 200, json(&obj)).await;
    // Neither the registration nor the provider is asked: the date decides.
    let written = api
        .expect("PATCH", &format!("{CONSENT}/status"), 200, json(&obj))
        .await;
    assert_eq!(written["status"]["consentStatus"], "Expired");
    assert_eq!(written["status"]["conditions"][0]["reason"], "Expired");
    api.expect("POST", EVENTS, 201, serde_json::json!({})).await;
    api.expect_nothing().await;
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_expired_customer_token_asks_for_reauthorisation() {
    let now = ts(1_800_000_000);
    let (ctx, clock, mut api) = context(now, &["https://bank.example"]);
    let registration = TppRegistration::test().registered(now, "https://bank.example");
    let mut obj = AccountConsent::test()
        .created("c-1", now)
        .authorised(now, ts(1_800_000_008));
    // A provider without GET: only the token's expiry can change this consent.
    obj.status.as_mut().unwrap().status_polling_supported = Some(false);

    let run = tokio::spawn(reconcile(Arc::new(obj.clone()), ctx.clone()));
    api.expect("GET", CONSENT, 200, json(&obj)).await;
    api.expect("GET", REGISTRATION, 200, json(&registration))
        .await;
    api.not_found(HANDOFF).await;
    let written = api
        .expect("PATCH", &format!("{CONSENT}/status"), 200, json(&obj))
        .await;
    assert_eq!(written["status"]["conditions"][0]["reason"], "Authorised");
    api.expect_nothing().await;
    let action = run.await.unwrap().unwrap();
    assert_eq!(
        format!("{action:?}"),
        format!("{:?}", Action::requeue(Duration::from_secs(8))),
        "looked at again when the token expires"
    );

    clock.advance(Duration::from_secs(8));
    // The object as this operator wrote it last: not read again.
    let run = tokio::spawn(reconcile(Arc::new(obj.clone()), ctx));
    api.expect("GET", REGISTRATION, 200, json(&registration))
        .await;
    api.not_found(HANDOFF).await;
    let written = api
        .expect("PATCH", &format!("{CONSENT}/status"), 200, json(&obj))
        .await;
    let ready = &written["status"]["conditions"][0];
    assert_eq!(ready["reason"], "ReauthorisationRequired");
    assert!(ready["message"]
        .as_str()
        .unwrap()
        .contains("must authorise again"));
    api.expect("POST", EVENTS, 201, serde_json::json!({})).await;
    api.expect_nothing().await;
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_return_url_the_platform_does_not_allow_stops_the_consent_before_anything() {
    let now = ts(1_800_000_000);
    let (ctx, _clock, mut api) = context(now, &["https://bank.example"]);
    let mut obj = AccountConsent::test();
    obj.spec.return_url = Some("https://app.example/done".into());
    let run = tokio::spawn(reconcile(Arc::new(obj.clone()), ctx));
    api.expect("GET", CONSENT, 200, json(&obj)).await;
    // Not even the registration is read: nothing happens for this consent until it is allowed.
    let written = api
        .expect("PATCH", &format!("{CONSENT}/status"), 200, json(&obj))
        .await;
    let ready = &written["status"]["conditions"][0];
    assert_eq!(ready["reason"], "ReturnUrlNotAllowed");
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.contains("returnUrls") && message.contains("remove spec.returnUrl"),
        "{message}"
    );
    api.expect("POST", EVENTS, 201, serde_json::json!({})).await;
    api.expect_nothing().await;
    run.await.unwrap().unwrap();
}
