//! Reconcile tests on a scripted API server.

use crate::api::AccountConsent;
use crate::controller::fixtures::context;
use crate::controller::frame::reconcile;
use jiff::Timestamp;
use std::sync::Arc;

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
