//! TppRegistration against a real API server and the fake provider: registration, adoption,
//! restarts, refresh before expiry, outages, permanent errors, bad input and deletion.

mod common;

use common::*;
use fake_provider::{Config as FakeConfig, Endpoint, FakeProvider, Fault};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;
use std::time::Duration;
use tpp_operator::api::{TppRegistration, TppRegistrationStatus};

const SIGNATURE: &str = "sig-cert-Adaobi@";

/// A TppRegistration named `name` with test-friendly refresh settings.
fn registration(name: &str, provider: &str, extra: serde_json::Value) -> TppRegistration {
    serde_json::from_value(
        serde_json::to_value(raw_registration(name, provider, extra)).expect("json"),
    )
    .expect("valid TppRegistration")
}

/// The same as untyped JSON, which may hold values the Rust types would refuse.
fn raw_registration(name: &str, provider: &str, extra: serde_json::Value) -> DynamicObject {
    let object = objects::registration(name)
        .provider(provider)
        .predictable_refresh(1)
        .spec_fields(extra);
    serde_json::from_value(object.json()).expect("object")
}

/// The message of the Ready condition.
fn ready_message(st: &TppRegistrationStatus) -> String {
    st.conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

struct Env {
    client: Client,
    ns: String,
    fake: FakeProvider,
    api: Api<TppRegistration>,
}

async fn env(prefix: &str, token_lifetime: u64) -> Env {
    let client = client().await;
    let ns = namespace(&client, prefix).await;
    let fake = FakeProvider::start(FakeConfig {
        token_lifetime_secs: token_lifetime,
        ..FakeConfig::default()
    })
    .await
    .expect("fake provider");
    let api = Api::namespaced(client.clone(), &ns);
    Env {
        client,
        ns,
        fake,
        api,
    }
}

impl Env {
    async fn create(&self, name: &str, extra: serde_json::Value) {
        create_secret(
            &self.client,
            &self.ns,
            &format!("{name}-signature"),
            &[("signature-certificate", SIGNATURE)],
        )
        .await;
        self.api
            .create(
                &PostParams::default(),
                &registration(name, &self.fake.base_url(), extra),
            )
            .await
            .expect("create TppRegistration");
    }

    async fn status(&self, name: &str) -> TppRegistrationStatus {
        self.api
            .get_status(name)
            .await
            .expect("get")
            .status
            .unwrap_or_default()
    }

    /// Waits until Ready has `status` and `reason`; returns the status.
    async fn wait_ready(
        &self,
        name: &str,
        ready: &str,
        reason: &str,
        secs: u64,
    ) -> TppRegistrationStatus {
        wait_ready(&self.api, name, ready, reason, secs)
            .await
            .status
            .unwrap_or_default()
    }

    /// Deletes `name` and waits until the finalizer has let it go.
    async fn delete_and_wait(&self, name: &str) {
        self.api
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete");
        let gone = wait_for(Duration::from_secs(20), || async {
            self.api
                .get_opt(name)
                .await
                .ok()
                .flatten()
                .is_none()
                .then_some(())
        })
        .await;
        assert!(
            gone.is_some(),
            "{name} still present: finalizer not removed"
        );
    }

    /// Starts the operator, creates `name` with default test settings and waits until Ready.
    async fn operator_with_ready(&self, name: &str) -> Operator {
        let op = Operator::start(&self.client, &self.ns, &self.fake.base_url()).await;
        self.create(name, json!({})).await;
        self.wait_ready(name, "True", "TokenRefreshed", 30).await;
        op
    }

    async fn token(&self, name: &str) -> String {
        secret_data(&self.client, &self.ns, &format!("{name}-token"))
            .await
            .expect("token secret")["access_token"]
            .clone()
    }
}

#[tokio::test]
async fn first_registration_stores_credentials_and_token() {
    let e = env("first", 300).await;
    // The platform team allows the fake; the TppRegistration names it in spec.providerUrl.
    let op = Operator::start_allowing(
        &e.client,
        &e.ns,
        "https://unused.example",
        &[&e.fake.base_url()],
    )
    .await;
    e.create("acme", json!({})).await;
    let st = e.wait_ready("acme", "True", "TokenRefreshed", 30).await;

    let regs = e.fake.registrations();
    assert_eq!(regs.len(), 1, "exactly one registration call");
    let creds = secret_data(&e.client, &e.ns, "acme-credentials")
        .await
        .expect("credentials Secret");
    assert_eq!(creds["client_id"], regs[0].client_id);
    assert!(!creds["certificate"].is_empty());
    assert_eq!(st.client_id.as_deref(), Some(regs[0].client_id.as_str()));

    let token = secret_data(&e.client, &e.ns, "acme-token")
        .await
        .expect("token Secret");
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(
        token["authorization"],
        format!("Bearer {}", token["access_token"])
    );
    let expires_at: jiff::Timestamp = token["expires_at"].parse().expect("RFC 3339 expires_at");
    assert_eq!(
        Some(expires_at.as_second()),
        st.token_expires_at.as_ref().map(|t| t.0.as_second())
    );
    assert!(token["expires_at"].ends_with('Z'));

    // Owned Secrets carry the contract's labels and an owner reference to the registration.
    let secrets: Api<Secret> = Api::namespaced(e.client.clone(), &e.ns);
    for name in ["acme-credentials", "acme-token"] {
        let s = secrets.get(name).await.expect("secret");
        let labels = s.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str),
            Some("tpp-operator")
        );
        assert_eq!(
            labels
                .get("tpp-operator.dev/registration")
                .map(String::as_str),
            Some("acme")
        );
        let owners = s.metadata.owner_references.unwrap_or_default();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "TppRegistration");
    }
    // Refresh scheduled at two thirds of the 300 s lifetime (jitter 0).
    let issued = st.token_issued_at.clone().expect("issued").0;
    let next = st.next_refresh_at.clone().expect("next").0;
    let offset = next.duration_since(issued).as_secs_f64();
    assert!((199.0..=201.0).contains(&offset), "refresh offset {offset}");
    assert_eq!(e.fake.calls().client_token, 1);

    // No secret value anywhere a human or a log pipeline reads: status and events.
    let secrets_values = [
        SIGNATURE.to_string(),
        creds["certificate"].clone(),
        token["access_token"].clone(),
    ];
    let status_json = serde_json::to_string(&st).expect("status json");
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(e.client.clone(), &e.ns);
    let events = events.list(&Default::default()).await.expect("events");
    assert!(
        events
            .items
            .iter()
            .any(|ev| ev.reason.as_deref() == Some("Registered")),
        "a Registered event is published"
    );
    let events_json = serde_json::to_string(&events.items).expect("events json");
    for value in &secrets_values {
        assert!(
            !status_json.contains(value.as_str()),
            "a secret value leaked into status"
        );
        assert!(
            !events_json.contains(value.as_str()),
            "a secret value leaked into an event"
        );
    }
    op.stop().await;
}

#[tokio::test]
async fn existing_credentials_are_adopted_without_registering() {
    let e = env("adopt", 300).await;
    // Register out of band, as a team with an existing registration would have done.
    let http = reqwest::Client::new();
    let reg: serde_json::Value = http
        .post(format!("{}/api/account/registration", e.fake.base_url()))
        .header("signature-certificate", SIGNATURE)
        .json(&json!({"countryISO": "GB", "address": "a", "name": "n", "email": "e@x.io", "certificateType": "account", "callbackUrl": "https://x.io/cb"}))
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("json");
    let client_id = reg["ClientId"].as_str().expect("ClientId").to_string();
    let certificate = reg["Certificate"]
        .as_str()
        .expect("Certificate")
        .to_string();
    create_secret(
        &e.client,
        &e.ns,
        "byo-credentials",
        &[("client_id", &client_id), ("certificate", &certificate)],
    )
    .await;

    let op = Operator::start(&e.client, &e.ns, &e.fake.base_url()).await;
    e.create("byo", json!({})).await;
    let st = e.wait_ready("byo", "True", "TokenRefreshed", 30).await;
    assert_eq!(
        e.fake.registrations().len(),
        1,
        "no registration call besides the out-of-band one"
    );
    assert_eq!(st.client_id.as_deref(), Some(client_id.as_str()));
    assert_eq!(
        st.registration,
        Some(tpp_operator::api::RegistrationState::Adopted)
    );
    // The adopted Secret is not taken over: no labels added, data untouched.
    let secrets: Api<Secret> = Api::namespaced(e.client.clone(), &e.ns);
    let s = secrets.get("byo-credentials").await.expect("secret");
    assert!(!s
        .metadata
        .labels
        .unwrap_or_default()
        .contains_key("app.kubernetes.io/managed-by"));
    // Deleting the registration leaves the adopted Secret alone.
    e.delete_and_wait("byo").await;
    assert!(secret_data(&e.client, &e.ns, "byo-credentials")
        .await
        .is_some());
    op.stop().await;
}

#[tokio::test]
async fn restart_neither_registers_nor_refreshes_again() {
    let e = env("restart", 300).await;
    let op = e.operator_with_ready("acme").await;
    let token_before = e.token("acme").await;
    op.stop().await;

    let op = Operator::start(&e.client, &e.ns, &e.fake.base_url()).await;
    // Give the new instance time to list, reconcile and settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        e.fake.registrations().len(),
        1,
        "a restart must not register again"
    );
    assert_eq!(
        e.fake.calls().client_token,
        1,
        "a restart must not refresh a token that is not due"
    );
    assert_eq!(e.token("acme").await, token_before);
    op.stop().await;
}

#[tokio::test]
async fn tokens_are_refreshed_before_they_expire() {
    let e = env("refresh", 6).await;
    let op = e.operator_with_ready("acme").await;
    // Over ~14 s a 6 s token refreshed at 2/3 of its life is renewed at least twice.
    let renewed = wait_for(Duration::from_secs(20), || async {
        (e.fake.tokens().len() >= 4).then_some(())
    })
    .await;
    assert!(
        renewed.is_some(),
        "expected >= 4 tokens, got {}",
        e.fake.tokens().len()
    );
    let tokens = e.fake.tokens();
    for pair in tokens.windows(2) {
        assert!(
            pair[1].issued_at < pair[0].expires_at,
            "token issued at {} after the previous one expired at {}",
            pair[1].issued_at,
            pair[0].expires_at
        );
    }
    // The Secret always holds a token that has not expired.
    let data = secret_data(&e.client, &e.ns, "acme-token")
        .await
        .expect("token");
    let expires_at: jiff::Timestamp = data["expires_at"].parse().expect("expires_at");
    assert!(expires_at > jiff::Timestamp::now());
    op.stop().await;
}

#[tokio::test]
async fn outage_keeps_the_old_token_backs_off_and_recovers() {
    let e = env("outage", 30).await;
    let op = Operator::start(&e.client, &e.ns, &e.fake.base_url()).await;
    e.create(
        "acme",
        json!({"refresh": {"jitterPercent": 0, "safetyMarginSeconds": 1, "atPercent": 10}}),
    )
    .await;
    e.wait_ready("acme", "True", "TokenRefreshed", 30).await;
    let old_token = e.token("acme").await;

    e.fake
        .inject(Endpoint::ClientToken, Fault::Status(503), None);
    // The refresh at 3 s fails; the token (valid for 30 s) stays and Ready says so.
    let st = e.wait_ready("acme", "True", "RefreshFailing", 20).await;
    assert!(st.consecutive_failures >= 1);
    assert_eq!(
        e.token("acme").await,
        old_token,
        "the still-valid token must stay in its Secret"
    );
    let msg = ready_message(&st);
    assert!(msg.contains("503"), "{msg}");
    // Backoff: 5 s doubling, so in 6 s at most 3 attempts happen, not a hammering loop.
    let before = e.fake.calls().client_token;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let during = e.fake.calls().client_token - before;
    assert!(during <= 3, "{during} token calls in 6 s during an outage");

    e.fake.clear_faults();
    let st = e.wait_ready("acme", "True", "TokenRefreshed", 30).await;
    assert_eq!(st.consecutive_failures, 0);
    assert_ne!(e.token("acme").await, old_token);
    op.stop().await;
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let e = env("retryafter", 300).await;
    let op = Operator::start(&e.client, &e.ns, &e.fake.base_url()).await;
    e.fake.inject(
        Endpoint::ClientToken,
        Fault::RateLimited {
            retry_after: Some(4),
        },
        Some(1),
    );
    e.create("acme", json!({})).await;
    let st = e
        .wait_ready("acme", "False", "ProviderUnavailable", 30)
        .await;
    // Both times come from the failing reconcile (whole seconds in the API, so up to 1 s is lost).
    let failed_at = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready")
        .last_transition_time
        .0;
    let next = st.next_refresh_at.expect("retry time").0;
    let wait = next.duration_since(failed_at).as_secs_f64();
    assert!(
        wait >= 3.0,
        "retry scheduled {wait:.1}s after a 429 asking for 4 s"
    );
    e.wait_ready("acme", "True", "TokenRefreshed", 30).await;
    assert_eq!(e.fake.calls().client_token, 2);
    op.stop().await;
}

#[tokio::test]
async fn permanent_401_is_reported_and_not_hammered() {
    let e = env("perm", 300).await;
    let op = Operator::start(&e.client, &e.ns, &e.fake.base_url()).await;
    e.fake
        .inject(Endpoint::ClientToken, Fault::Status(401), None);
    e.create("acme", json!({})).await;
    let st = e
        .wait_ready("acme", "False", "InvalidClientCredentials", 30)
        .await;
    let msg = ready_message(&st);
    assert!(
        msg.contains("acme-credentials"),
        "message names the Secret to check: {msg}"
    );
    let calls = e.fake.calls().client_token;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        e.fake.calls().client_token,
        calls,
        "a permanent error is not retried within seconds"
    );
    op.stop().await;
}

#[tokio::test]
async fn missing_signature_secret_is_named_and_then_picked_up() {
    let e = env("nosig", 300).await;
    let op = Operator::start(&e.client, &e.ns, &e.fake.base_url()).await;
    e.api
        .create(
            &PostParams::default(),
            &registration("acme", &e.fake.base_url(), json!({})),
        )
        .await
        .expect("create");
    let st = e
        .wait_ready("acme", "False", "InvalidSignatureCertificate", 30)
        .await;
    let msg = ready_message(&st);
    assert!(msg.contains("acme-signature"), "{msg}");
    assert_eq!(e.fake.registrations().len(), 0);
    create_secret(
        &e.client,
        &e.ns,
        "acme-signature",
        &[("signature-certificate", SIGNATURE)],
    )
    .await;
    e.wait_ready("acme", "True", "TokenRefreshed", 30).await;
    assert_eq!(e.fake.registrations().len(), 1);

    // Without a signature certificate at all, there is nothing to register with: said, not sent.
    let bare = objects::registration("bare")
        .provider(&e.fake.base_url())
        .without_signature_certificate();
    let bare: TppRegistration = serde_json::from_value(bare.json()).expect("registration");
    e.api
        .create(&PostParams::default(), &bare)
        .await
        .expect("create");
    let st = e
        .wait_ready("bare", "False", "InvalidSignatureCertificate", 30)
        .await;
    let msg = ready_message(&st);
    assert!(msg.contains("signatureCertificateSecretRef"), "{msg}");
    assert!(msg.contains("bare-credentials"), "{msg}");
    assert_eq!(e.fake.registrations().len(), 1);
    op.stop().await;
}

#[tokio::test]
async fn registration_with_unknown_outcome_is_not_repeated() {
    let e = env("unconfirmed", 300).await;
    let op = Operator::start(&e.client, &e.ns, &e.fake.base_url()).await;
    // The provider takes longer than the client timeout (2 s): did it register us or not?
    e.fake.inject(
        Endpoint::Registration,
        Fault::Delay(Duration::from_secs(4)),
        Some(1),
    );
    e.create("acme", json!({})).await;
    e.wait_ready("acme", "False", "RegistrationUnconfirmed", 30)
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        e.fake.calls().registration,
        1,
        "no second registration call on its own"
    );
    // A human allows one more attempt.
    e.api
        .patch(
            "acme",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"tpp-operator.dev/retry-registration": "1"}}}),
            ),
        )
        .await
        .expect("annotate");
    e.wait_ready("acme", "True", "TokenRefreshed", 30).await;
    assert_eq!(e.fake.calls().registration, 2);
    op.stop().await;
}

#[tokio::test]
async fn foreign_token_secret_is_not_overwritten() {
    let e = env("conflict", 300).await;
    create_secret(
        &e.client,
        &e.ns,
        "acme-token",
        &[("access_token", "someone-elses")],
    )
    .await;
    let op = Operator::start(&e.client, &e.ns, &e.fake.base_url()).await;
    e.create("acme", json!({})).await;
    let st = e.wait_ready("acme", "False", "SecretConflict", 30).await;
    let msg = ready_message(&st);
    assert!(msg.contains("acme-token"), "{msg}");
    assert_eq!(e.token("acme").await, "someone-elses");
    op.stop().await;
}

#[tokio::test]
async fn deletion_policies_delete_or_retain_the_secrets() {
    let e = env("delete", 300).await;
    let op = Operator::start(&e.client, &e.ns, &e.fake.base_url()).await;
    e.create("gone", json!({})).await;
    e.create("kept", json!({"deletionPolicy": "Retain"})).await;
    e.wait_ready("gone", "True", "TokenRefreshed", 30).await;
    e.wait_ready("kept", "True", "TokenRefreshed", 30).await;
    e.delete_and_wait("gone").await;
    e.delete_and_wait("kept").await;
    assert!(secret_data(&e.client, &e.ns, "gone-credentials")
        .await
        .is_none());
    assert!(secret_data(&e.client, &e.ns, "gone-token").await.is_none());
    let secrets: Api<Secret> = Api::namespaced(e.client.clone(), &e.ns);
    for name in ["kept-credentials", "kept-token"] {
        let s = secrets.get(name).await.expect("retained Secret");
        assert!(
            s.metadata.owner_references.unwrap_or_default().is_empty(),
            "{name} still owned, GC would delete it"
        );
    }
    op.stop().await;
}

#[tokio::test]
async fn invalid_specs_are_refused_at_admission() {
    let client = client().await;
    let ns = namespace(&client, "admission").await;
    let api: Api<TppRegistration> = Api::namespaced(client.clone(), &ns);
    // Untyped, so that values the Rust types would reject still reach the API server.
    let raw: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &ApiResource::erase::<TppRegistration>(&()),
    );
    let cases = [
        (
            json!({"callbackUrl": "http://insecure.example/cb"}),
            "callbackUrl must be an https URL",
        ),
        (
            json!({"providerUrl": "http://bank.example"}),
            "providerUrl must be an https URL",
        ),
        (
            json!({"organisation": {"name": "n", "email": "not-an-email", "address": "a", "countryISO": "GB"}}),
            "organisation.email",
        ),
        (
            json!({"organisation": {"name": "n", "email": "a@b.io", "address": "a", "countryISO": "gbr"}}),
            "countryISO",
        ),
        (json!({"refresh": {"atPercent": 99}}), "atPercent"),
        (json!({"certificateType": "payments"}), "certificateType"),
        (
            json!({"credentialsSecretName": "same", "tokenSecretName": "same"}),
            "must differ",
        ),
    ];
    for (i, (extra, expected)) in cases.into_iter().enumerate() {
        let obj = raw_registration(&format!("bad-{i}"), "https://bank.example", extra.clone());
        let err = raw
            .create(&PostParams::default(), &obj)
            .await
            .expect_err(&format!("{extra} must be refused"));
        let text = err.to_string();
        assert!(
            text.contains(expected),
            "refusing {extra}: expected {expected:?} in {text}"
        );
    }
    // Immutable after creation.
    api.create(
        &PostParams::default(),
        &registration("ok", "https://bank.example", json!({})),
    )
    .await
    .expect("valid object");
    let change = json!({"spec": {"organisation": {"name": "Other", "email": "a@b.io", "address": "a", "countryISO": "GB"}}});
    let err = api
        .patch("ok", &PatchParams::default(), &Patch::Merge(change))
        .await
        .expect_err("organisation is immutable");
    assert!(
        err.to_string().contains("organisation cannot change"),
        "{err}"
    );
}

#[tokio::test]
async fn generated_signing_key_is_stored_published_and_rotated() {
    let e = env("signing", 300).await;
    let op = e.operator_with_ready("acme").await;
    // The key is made right after Ready is reported (keys are generated one at a time).
    let st = wait_for(Duration::from_secs(20), || async {
        let st = e.status("acme").await;
        (!st.signing_keys.is_empty()).then_some(st)
    })
    .await
    .expect("a signing key is published");
    let secret = secret_data(&e.client, &e.ns, "acme-signing-key")
        .await
        .expect("signing key Secret");
    let key = tpp_operator::signing::SigningKey::from_pem(&secret["private_key"], None)
        .expect("PEM private key");
    assert_eq!(secret["kid"], key.kid());
    let jwk: serde_json::Value = serde_json::from_str(&secret["jwk"]).expect("jwk JSON");
    assert_eq!(jwk["kid"], key.kid());
    assert_eq!(st.signing_keys.len(), 1);
    assert_eq!(st.signing_keys[0].kid, key.kid());
    assert_eq!(st.signing_keys[0].modulus, key.public_components().0);
    assert_eq!(
        st.jwks_url.as_deref(),
        Some(format!("https://tpp.example/jwks/{}/acme", e.ns).as_str())
    );
    assert!(!serde_json::to_string(&st)
        .expect("json")
        .contains("PRIVATE KEY"));

    let rotate = json!({"metadata": {"annotations": {"tpp-operator.dev/rotate-signing-key": "1"}}});
    e.api
        .patch("acme", &PatchParams::default(), &Patch::Merge(rotate))
        .await
        .expect("annotate");
    let rotated = wait_for(Duration::from_secs(20), || async {
        let st = e.status("acme").await;
        (st.signing_keys.len() == 2).then_some(st)
    })
    .await
    .expect("rotation publishes a second key");
    assert_ne!(
        rotated.signing_keys[0].kid,
        key.kid(),
        "the new key comes first"
    );
    assert_eq!(
        rotated.signing_keys[1].kid,
        key.kid(),
        "the old key stays published"
    );
    let retire = rotated.signing_keys[1]
        .retire_at
        .clone()
        .expect("retirement time")
        .0;
    let left = retire.duration_since(jiff::Timestamp::now()).as_secs_f64();
    assert!(
        (600.0..=960.0).contains(&left),
        "old key retires in {left} s"
    );
    let secret = secret_data(&e.client, &e.ns, "acme-signing-key")
        .await
        .expect("secret");
    assert_eq!(secret["kid"], rotated.signing_keys[0].kid);
    assert_eq!(
        e.fake.calls().registration,
        1,
        "rotation does not re-register"
    );
    op.stop().await;
}

#[tokio::test]
async fn supplied_signing_key_is_used_and_a_bad_one_reported_without_stopping_tokens() {
    let e = env("ownkey", 300).await;
    let key = tpp_operator::signing::SigningKey::generate().expect("key");
    let pem = key.to_pkcs8_pem().expect("pem");
    create_signing_key_secret(
        &e.client,
        &e.ns,
        "tpp-key",
        &[("private_key", &pem), ("kid", "registered-kid")],
    )
    .await;
    create_signing_key_secret(
        &e.client,
        &e.ns,
        "bad-key",
        &[(
            "private_key",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )],
    )
    .await;
    let op = Operator::start(&e.client, &e.ns, &e.fake.base_url()).await;
    e.create("good", json!({"signingKeySecretRef": {"name": "tpp-key"}}))
        .await;
    e.create("bad", json!({"signingKeySecretRef": {"name": "bad-key"}}))
        .await;
    let st = e.wait_ready("good", "True", "TokenRefreshed", 30).await;
    assert_eq!(st.signing_keys[0].kid, "registered-kid");
    assert_eq!(st.signing_keys[0].modulus, key.public_components().0);
    let st = e.wait_ready("bad", "False", "InvalidSigningKey", 30).await;
    let msg = ready_message(&st);
    assert!(msg.contains("bad-key"), "{msg}");
    assert!(!msg.contains("AAAA"), "key material in a message: {msg}");
    assert!(
        secret_data(&e.client, &e.ns, "bad-token").await.is_some(),
        "tokens are refreshed regardless"
    );
    // The user's Secrets are theirs: never labelled or deleted.
    e.delete_and_wait("good").await;
    assert!(secret_data(&e.client, &e.ns, "tpp-key").await.is_some());
    op.stop().await;
}

// --- Trust boundaries (a tenant may create TppRegistrations but not read Secrets) ---

#[tokio::test]
async fn a_provider_outside_the_allowlist_gets_no_call() {
    let e = env("allowlist", 300).await;
    let elsewhere = FakeProvider::start(FakeConfig::default())
        .await
        .expect("second fake");
    // The platform team allows only e.fake; the tenant names another host.
    let op = Operator::start(&e.client, &e.ns, &e.fake.base_url()).await;
    create_secret(
        &e.client,
        &e.ns,
        "thief-signature",
        &[("signature-certificate", SIGNATURE)],
    )
    .await;
    e.api
        .create(
            &PostParams::default(),
            &registration("thief", &elsewhere.base_url(), json!({})),
        )
        .await
        .expect("create");
    let st = e
        .wait_ready("thief", "False", "ProviderNotAllowed", 30)
        .await;
    // The tenant learns which provider names it may use, never a host.
    let message = ready_message(&st);
    assert!(
        message.contains(&provider_name(&e.ns, 0)),
        "the message names what is allowed: {message}"
    );
    assert!(
        !message.contains(&e.fake.base_url()),
        "the allowed provider's host is not shown: {message}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        elsewhere.calls().total,
        0,
        "no request reached the host the tenant chose"
    );
    assert_eq!(e.fake.calls().total, 0);
    op.stop().await;
}

#[tokio::test]
async fn secrets_of_other_registrations_cannot_be_borrowed() {
    let e = env("borrow", 300).await;
    let op = Operator::start(&e.client, &e.ns, &e.fake.base_url()).await;
    e.create("victim", json!({})).await;
    e.wait_ready("victim", "True", "TokenRefreshed", 30).await;
    let victim_key = wait_for(Duration::from_secs(30), || async {
        e.status("victim")
            .await
            .signing_keys
            .first()
            .map(|k| k.kid.clone())
    })
    .await
    .expect("victim's signing key");
    let registrations = e.fake.registrations().len();
    let victim_tokens = e.fake.tokens().len();

    // Its credentials as "bring your own registration": refused, nothing sent.
    e.create(
        "thief1",
        json!({"credentialsSecretName": "victim-credentials"}),
    )
    .await;
    e.wait_ready("thief1", "False", "SecretNotAllowed", 30)
        .await;
    // Its token as the signature certificate: refused before any registration call.
    let thief2 = raw_registration(
        "thief2",
        &e.fake.base_url(),
        json!({"signatureCertificateSecretRef": {"name": "victim-token", "key": "access_token"}}),
    );
    let dynamic: Api<DynamicObject> = Api::namespaced_with(
        e.client.clone(),
        &e.ns,
        &ApiResource::erase::<TppRegistration>(&()),
    );
    dynamic
        .create(&PostParams::default(), &thief2)
        .await
        .expect("create");
    e.wait_ready("thief2", "False", "SecretNotAllowed", 30)
        .await;
    // Its generated signing key as "my own key": refused, never published.
    e.create(
        "thief3",
        json!({"signingKeySecretRef": {"name": "victim-signing-key"}}),
    )
    .await;
    let st = e
        .wait_ready("thief3", "False", "InvalidSigningKey", 30)
        .await;
    assert!(
        ready_message(&st).contains("another object"),
        "{}",
        ready_message(&st)
    );
    assert!(st.signing_keys.iter().all(|k| k.kid != victim_key));

    assert_eq!(
        e.fake.registrations().len(),
        registrations + 1,
        "only thief3 registered (with its own signature certificate)"
    );
    let victim_client = e.status("victim").await.client_id;
    let thief_tokens_with_victim_client = e
        .fake
        .tokens()
        .iter()
        .skip(victim_tokens)
        .filter(|t| Some(&t.client_id) == victim_client.as_ref())
        .count();
    assert_eq!(thief_tokens_with_victim_client, 0);
    op.stop().await;
}

#[tokio::test]
async fn a_malformed_pem_is_a_condition_and_others_keep_refreshing() {
    let e = env("pem", 6).await;
    let op = Operator::start(&e.client, &e.ns, &e.fake.base_url()).await;
    e.create("steady", json!({})).await;
    e.wait_ready("steady", "True", "TokenRefreshed", 30).await;
    // The input that sliced the old hand-written parser out of bounds.
    create_signing_key_secret(
        &e.client,
        &e.ns,
        "hostile-key",
        &[("private_key", "-----BEGIN X-----END X-----")],
    )
    .await;
    e.create(
        "hostile",
        json!({"signingKeySecretRef": {"name": "hostile-key"}}),
    )
    .await;
    let st = e
        .wait_ready("hostile", "False", "InvalidSigningKey", 30)
        .await;
    assert!(
        ready_message(&st).contains("hostile-key"),
        "{}",
        ready_message(&st)
    );
    // The operator is alive: the other registration keeps getting tokens.
    let before = e.fake.calls().client_token;
    let refreshed = wait_for(Duration::from_secs(20), || async {
        (e.fake.calls().client_token >= before + 3).then_some(())
    })
    .await;
    assert!(
        refreshed.is_some(),
        "token refresh stopped after the hostile PEM"
    );
    op.stop().await;
}

// --- A broken or hostile provider ---

#[tokio::test]
async fn provider_redirects_are_never_followed() {
    let e = env("redirect", 300).await;
    let elsewhere = FakeProvider::start(FakeConfig::default())
        .await
        .expect("second fake");
    let op = Operator::start(&e.client, &e.ns, &e.fake.base_url()).await;
    e.fake.inject(
        Endpoint::Registration,
        Fault::Redirect {
            status: 307,
            location: format!("{}/api/account/registration", elsewhere.base_url()),
        },
        Some(1),
    );
    e.create("acme", json!({})).await;
    let st = e
        .wait_ready("acme", "False", "ProviderRedirected", 30)
        .await;
    assert!(ready_message(&st).contains("307"), "{}", ready_message(&st));
    // The token endpoint redirects too, once registered.
    e.fake.inject(
        Endpoint::ClientToken,
        Fault::Redirect {
            status: 308,
            location: format!("{}/auth/token", elsewhere.base_url()),
        },
        None,
    );
    e.api
        .patch(
            "acme",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"tpp-operator.dev/retry-registration": "1"}}}),
            ),
        )
        .await
        .expect("annotate");
    e.wait_ready("acme", "False", "ProviderRedirected", 30)
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        elsewhere.calls().total,
        0,
        "the certificate and the signature certificate never went elsewhere"
    );
    assert_eq!(
        e.fake.calls().client_token,
        1,
        "a redirect is permanent: not retried at once"
    );
    op.stop().await;
}

#[tokio::test]
async fn oversized_and_malformed_tokens_keep_the_old_token() {
    let e = env("bodies", 300).await;
    let op = e.operator_with_ready("acme").await;
    for (fault, words) in [
        (
            Fault::Oversized {
                bytes: 10 * 1024 * 1024,
            },
            "larger than",
        ),
        (Fault::MalformedToken, "bearer token"),
    ] {
        let good = e.token("acme").await;
        e.fake.inject(Endpoint::ClientToken, fault, Some(1));
        let value = rand_suffix().to_string();
        e.api
            .patch(
                "acme",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"annotations": {"tpp-operator.dev/force-refresh": value}}}),
                ),
            )
            .await
            .expect("annotate");
        let st = e.wait_ready("acme", "True", "RefreshFailing", 30).await;
        assert!(
            st.last_failure
                .as_deref()
                .unwrap_or_default()
                .contains(words),
            "{:?}",
            st.last_failure
        );
        assert_eq!(e.token("acme").await, good, "the old token stays");
        // The next attempt (after the backoff) gets a good token again.
        e.wait_ready("acme", "True", "TokenRefreshed", 30).await;
    }
    op.stop().await;
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
}

#[tokio::test]
async fn a_conflicting_token_secret_does_not_loop_and_recovers_within_a_minute() {
    let e = env("conflict", 300).await;
    create_secret(&e.client, &e.ns, "acme-token", &[("mine", "not yours")]).await;
    let op = Operator::start(&e.client, &e.ns, &e.fake.base_url()).await;
    e.create("acme", json!({})).await;
    e.wait_ready("acme", "False", "SecretConflict", 30).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let st = e.status("acme").await;
    assert!(
        st.consecutive_failures <= 5,
        "{} failures in 20 s: the status write woke the next failure",
        st.consecutive_failures
    );
    Api::<Secret>::namespaced(e.client.clone(), &e.ns)
        .delete("acme-token", &DeleteParams::default())
        .await
        .expect("delete the conflicting Secret");
    e.wait_ready("acme", "True", "TokenRefreshed", 60).await;
    op.stop().await;
}

#[tokio::test]
async fn retry_after_pauses_the_whole_host() {
    let e = env("host429", 300).await;
    let op = Operator::start(&e.client, &e.ns, &e.fake.base_url()).await;
    e.create("one", json!({})).await;
    e.create("two", json!({})).await;
    e.wait_ready("one", "True", "TokenRefreshed", 30).await;
    e.wait_ready("two", "True", "TokenRefreshed", 30).await;
    let calls = e.fake.calls().client_token;
    let issued = e.fake.tokens().len();
    e.fake.inject(
        Endpoint::ClientToken,
        Fault::RateLimited {
            retry_after: Some(5),
        },
        Some(1),
    );
    let force = |name: &'static str| {
        let api = e.api.clone();
        async move {
            api.patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"tpp-operator.dev/force-refresh": rand_suffix().to_string()}}})),
            )
            .await
            .expect("annotate");
        }
    };
    force("one").await;
    // The moment the 429 was answered (seen within 20 ms).
    let limited_at = wait_for_fast(Duration::from_secs(10), || {
        (e.fake.calls().client_token > calls).then(jiff::Timestamp::now)
    })
    .await
    .expect("the 429");
    // Another registration asks now: it must wait for the host's Retry-After too.
    force("two").await;
    let after = wait_for(Duration::from_secs(30), || async {
        let tokens = e.fake.tokens();
        (tokens.len() >= issued + 2).then(|| tokens[issued..].to_vec())
    })
    .await
    .expect("both refreshed after the pause");
    for t in after {
        let waited = t.issued_at.duration_since(limited_at).as_secs_f64();
        assert!(
            // The old client paused nobody and counted 5 s from the request, not the answer.
            waited >= 4.5,
            "a token call came {waited:.2} s after a 429 asking for 5 s"
        );
    }
    op.stop().await;
}

#[tokio::test]
async fn an_endless_retry_after_is_capped_and_other_providers_carry_on() {
    let e = env("retry-forever", 300).await;
    let other = FakeProvider::start(FakeConfig::default())
        .await
        .expect("second provider");
    let op =
        Operator::start_allowing(&e.client, &e.ns, &e.fake.base_url(), &[&other.base_url()]).await;
    // The first provider asks to be left alone for 10^12 seconds (31 700 years).
    e.fake.inject(
        Endpoint::ClientToken,
        Fault::RateLimited {
            retry_after: Some(1_000_000_000_000),
        },
        None,
    );
    e.create("paused-1", json!({})).await;
    let st = e
        .wait_ready("paused-1", "False", "ProviderUnavailable", 30)
        .await;
    // Objects of the paused provider that come later are held back at once.
    for name in ["paused-2", "paused-3"] {
        e.create(name, json!({})).await;
    }
    let next = st.next_refresh_at.expect("next attempt").0;
    let wait = next.duration_since(jiff::Timestamp::now()).as_secs_f64();
    assert!(
        wait <= 3_601.0,
        "the next attempt is {wait:.0} s away: Retry-After must be capped at an hour"
    );
    // The objects of another provider are reconciled as usual meanwhile.
    let api = e.api.clone();
    create_secret(
        &e.client,
        &e.ns,
        "elsewhere-signature",
        &[("signature-certificate", SIGNATURE)],
    )
    .await;
    api.create(
        &PostParams::default(),
        &registration("elsewhere", &other.base_url(), json!({})),
    )
    .await
    .expect("create");
    e.wait_ready("elsewhere", "True", "TokenRefreshed", 30)
        .await;
    // The paused provider was asked once: the later objects' calls (their registrations
    // first) were held back, not sent, and held back is not a failure.
    assert_eq!(e.fake.calls().client_token, 1);
    assert_eq!(e.fake.calls().registration, 1);
    let paused = e.status("paused-2").await;
    assert_eq!(paused.registration, None);
    assert_eq!(
        paused.registration_attempt_started_at, None,
        "no attempt recorded"
    );
    assert_eq!(paused.consecutive_failures, 0);
    op.stop().await;
}

#[tokio::test]
async fn a_replicator_annotation_in_the_template_writes_nothing() {
    let e = env("template-policy", 300).await;
    let op = Operator::start(&e.client, &e.ns, &e.fake.base_url()).await;
    let template = json!({"secretTemplate": {
        "labels": {"team": "payments"},
        "annotations": {"reflector.v1.k8s.emberstack.com/reflection-allowed": "true",
                        "reflector.v1.k8s.emberstack.com/reflection-auto-namespaces": "tenant-b"},
    }});
    e.create("copycat", template).await;
    let st = e
        .wait_ready("copycat", "False", "SecretTemplateNotAllowed", 30)
        .await;
    assert!(
        ready_message(&st).contains("reflector.v1.k8s.emberstack.com/reflection-"),
        "{}",
        ready_message(&st)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    for secret in [
        "copycat-credentials",
        "copycat-token",
        "copycat-signing-key",
    ] {
        assert!(
            secret_data(&e.client, &e.ns, secret).await.is_none(),
            "{secret} was written"
        );
    }
    assert_eq!(e.fake.calls().registration, 0, "nothing sent either");
    op.stop().await;
}

#[tokio::test]
async fn a_key_made_for_something_else_is_not_a_signing_key() {
    let e = env("borrowed-key", 300).await;
    let key = tpp_operator::signing::SigningKey::generate().expect("key");
    let pem = key.to_pkcs8_pem().expect("pem");
    // What cert-manager keeps for the namespace's Ingress: a kubernetes.io/tls Secret.
    let tls: Secret = serde_json::from_value(json!({
        "metadata": {"name": "ingress-tls"},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": "not checked here", "tls.key": pem},
    }))
    .expect("secret");
    Api::<Secret>::namespaced(e.client.clone(), &e.ns)
        .create(&PostParams::default(), &tls)
        .await
        .expect("create tls Secret");
    let op = Operator::start(&e.client, &e.ns, &e.fake.base_url()).await;
    e.create(
        "borrower",
        json!({"signingKeySecretRef": {"name": "ingress-tls", "privateKeyKey": "tls.key"}}),
    )
    .await;
    let st = e
        .wait_ready("borrower", "False", "SecretNotAllowed", 30)
        .await;
    let message = ready_message(&st);
    assert!(
        message.contains("tpp-operator.dev/signing-key=true"),
        "{message}"
    );
    assert!(st.signing_keys.is_empty(), "the borrowed key was published");
    // Client tokens are still refreshed: only signing is refused.
    assert!(st.token_expires_at.is_some());
    op.stop().await;
}

/// Polls a synchronous check every 20 ms.
async fn wait_for_fast<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if let Some(v) = f() {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::test]
async fn after_expiry_retries_stay_short_and_dead_tokens_are_refused() {
    let e = env("expired", 8).await;
    let op = e.operator_with_ready("acme").await;
    // An outage that outlasts the token: the backoff would reach 40 s by the end of it.
    e.fake
        .inject(Endpoint::ClientToken, Fault::Status(503), None);
    e.wait_ready("acme", "False", "ProviderUnavailable", 40)
        .await;
    tokio::time::sleep(Duration::from_secs(25)).await;
    e.fake.clear_faults();
    let ended = std::time::Instant::now();
    e.wait_ready("acme", "True", "TokenRefreshed", 30).await;
    let took = ended.elapsed();
    assert!(
        took <= Duration::from_secs(13),
        "without a valid token for {took:?} after the outage ended"
    );

    // A token already expired on arrival is a named failure, not a loop of requests.
    let calls = e.fake.calls().client_token;
    e.fake
        .inject(Endpoint::ClientToken, Fault::ExpiredToken, None);
    let st = e
        .wait_ready("acme", "True", "TokenExpiredOnArrival", 30)
        .await;
    assert!(st.consecutive_failures >= 1);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let made = e.fake.calls().client_token - calls;
    assert!(made <= 4, "{made} token calls in ~10 s for dead tokens");
    e.fake.clear_faults();
    op.stop().await;
}

// --- Fit: labels and annotations for the tools that select Secrets ---

#[tokio::test]
async fn the_secret_template_labels_every_secret_and_follows_changes() {
    let e = env("template", 300).await;
    let op = Operator::start(&e.client, &e.ns, &e.fake.base_url()).await;
    e.create(
        "acme",
        json!({"secretTemplate": {
            "labels": {"team": "payments", "backup": "daily"},
            "annotations": {"reloader.stakater.com/match": "true"},
        }}),
    )
    .await;
    e.wait_ready("acme", "True", "TokenRefreshed", 30).await;
    let secrets: Api<Secret> = Api::namespaced(e.client.clone(), &e.ns);
    let names = ["acme-credentials", "acme-token", "acme-signing-key"];
    let labelled = |label: &'static str, value: &'static str| {
        let secrets = secrets.clone();
        async move {
            for name in names {
                let s = secrets.get_opt(name).await.ok()??;
                let labels = s.metadata.labels.unwrap_or_default();
                if labels.get(label).map(String::as_str) != Some(value)
                    || labels
                        .get("app.kubernetes.io/managed-by")
                        .map(String::as_str)
                        != Some("tpp-operator")
                {
                    return None;
                }
            }
            Some(())
        }
    };
    assert!(
        wait_for(Duration::from_secs(30), || labelled("team", "payments"))
            .await
            .is_some(),
        "every Secret carries the template's labels next to the operator's"
    );
    let token = secrets.get("acme-token").await.expect("token");
    assert_eq!(
        token.metadata.annotations.unwrap_or_default()["reloader.stakater.com/match"],
        "true"
    );
    // A changed template reaches the Secrets without waiting for a refresh.
    e.api
        .patch(
            "acme",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"secretTemplate": {"labels": {"team": "treasury", "backup": null}}}})),
        )
        .await
        .expect("patch");
    assert!(
        wait_for(Duration::from_secs(30), || labelled("team", "treasury"))
            .await
            .is_some(),
        "the new label reached every Secret"
    );
    let token = secrets.get("acme-token").await.expect("token");
    assert!(!token
        .metadata
        .labels
        .unwrap_or_default()
        .contains_key("backup"));
    assert_eq!(
        e.fake.calls().client_token,
        1,
        "no token call for a label change"
    );
    // The operator's own labels cannot be set through the template.
    let err = e
        .api
        .patch(
            "acme",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"secretTemplate": {"labels": {"app.kubernetes.io/managed-by": "me"}}}})),
        )
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("operator owns them"), "{err}");
    op.stop().await;
}
