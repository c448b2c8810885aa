//! AccountConsent against a real API server and the fake provider: creation exactly once, the
//! signed authorisation URL (verified by the fake's independent verifier against the JWKS the
//! operator serves), the callback, the customer token, rejection, polling, a provider without
//! GET/DELETE, restarts, expiry, revocation on delete, and bad input refused at admission.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use fake_provider::{Config as FakeConfig, Endpoint, FakeProvider, Fault};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use tpp_operator::api::{AccountConsent, AccountConsentStatus, TppRegistration};

const SIGNATURE: &str = "sig-cert-Adaobi@";
const REDIRECT: &str = "https://tpp.example/callback";

struct Env {
    client: Client,
    ns: String,
    fake: FakeProvider,
    consents: Api<AccountConsent>,
    operator: Option<Operator>,
    http: Option<(SocketAddr, HttpServer)>,
}

async fn env(prefix: &str, config: FakeConfig) -> Env {
    let client = client().await;
    let ns = namespace(&client, prefix).await;
    let fake = FakeProvider::start(config).await.expect("fake provider");
    let consents = Api::namespaced(client.clone(), &ns);
    Env {
        client,
        ns,
        fake,
        consents,
        operator: None,
        http: None,
    }
}

fn consent_object(name: &str, extra: serde_json::Value) -> DynamicObject {
    let object = objects::consent(name, "tpp")
        .permissions(&["ReadAccountsBasic", "ReadAccountsDetail"])
        .redirect_uri(REDIRECT)
        .spec_fields(extra);
    serde_json::from_value(object.json()).expect("object")
}

impl Env {
    /// Starts the operator (controllers and HTTP server) and points the fake at its JWKS.
    async fn start_operator(&mut self) {
        let operator = Operator::start(&self.client, &self.ns, &self.fake.base_url()).await;
        let http = http_server(&operator.ctx).await;
        self.fake
            .set_jwks_url(&format!("http://{}/jwks/{}/tpp", http.0, self.ns));
        self.operator = Some(operator);
        self.http = Some(http);
    }

    async fn stop_operator(&mut self) {
        self.http = None;
        if let Some(op) = self.operator.take() {
            op.stop().await;
        }
    }

    fn http_addr(&self) -> SocketAddr {
        self.http.as_ref().expect("operator running").0
    }

    /// Creates the TppRegistration `tpp` and waits until it is Ready.
    async fn registration(&self) {
        self.registration_named("tpp").await;
    }

    /// Creates a TppRegistration and waits until it is Ready with a signing key.
    async fn registration_named(&self, name: &str) {
        create_secret(
            &self.client,
            &self.ns,
            "tpp-signature",
            &[("signature-certificate", SIGNATURE)],
        )
        .await;
        let api: Api<TppRegistration> = Api::namespaced(self.client.clone(), &self.ns);
        let obj = objects::registration(name)
            .provider(&self.fake.base_url())
            .signature_secret("tpp-signature");
        let obj: TppRegistration = serde_json::from_value(obj.json()).expect("registration");
        api.create(&PostParams::default(), &obj)
            .await
            .expect("create registration");
        let ready = wait_for(Duration::from_secs(30), || async {
            let r = api.get(name).await.ok()?;
            let st = r.status?;
            let ready = st
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            (ready && !st.signing_keys.is_empty()).then_some(())
        })
        .await;
        assert!(
            ready.is_some(),
            "registration never became Ready with a signing key"
        );
    }

    async fn create(&self, name: &str, extra: serde_json::Value) {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &self.ns,
            &kube::api::ApiResource::erase::<AccountConsent>(&()),
        );
        api.create(&PostParams::default(), &consent_object(name, extra))
            .await
            .expect("create AccountConsent");
    }

    async fn status(&self, name: &str) -> AccountConsentStatus {
        self.consents
            .get_status(name)
            .await
            .expect("get")
            .status
            .unwrap_or_default()
    }

    /// Waits until Ready has `ready` and `reason`; returns the status.
    async fn wait_ready(
        &self,
        name: &str,
        ready: &str,
        reason: &str,
        secs: u64,
    ) -> AccountConsentStatus {
        wait_ready(&self.consents, name, ready, reason, secs)
            .await
            .status
            .unwrap_or_default()
    }

    /// The customer's visit to the authorisation URL; returns the query of the redirect.
    async fn visit(&self, authorisation_url: &str, decision: Option<&str>) -> String {
        let mut url = url::Url::parse(authorisation_url).expect("authorisation URL");
        if let Some(d) = decision {
            url.query_pairs_mut().append_pair("decision", d);
        }
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let answer = browser.get(url).send().await.expect("visit");
        let status = answer.status();
        let location = answer
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(str::to_string);
        let Some(location) = location else {
            panic!(
                "provider refused the authorisation: {status} {}",
                answer.text().await.unwrap_or_default()
            );
        };
        assert_eq!(status.as_u16(), 303);
        assert!(location.starts_with(REDIRECT), "redirected to {location}");
        url::Url::parse(&location)
            .expect("location")
            .query()
            .unwrap_or_default()
            .to_string()
    }

    /// The browser arriving at the operator's callback (as through the ingress).
    async fn callback(&self, query: &str) -> (u16, String) {
        let r = reqwest::get(format!("http://{}/callback?{query}", self.http_addr()))
            .await
            .expect("callback");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    async fn secret(&self, name: &str) -> Option<Secret> {
        Api::<Secret>::namespaced(self.client.clone(), &self.ns)
            .get_opt(name)
            .await
            .expect("get secret")
    }

    /// Every event note in the namespace, for leak checks.
    async fn event_notes(&self) -> String {
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), &self.ns);
        events
            .list(&Default::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .map(|e| {
                format!(
                    "{} {}\n",
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default()
                )
            })
            .collect()
    }

    async fn delete(&self, name: &str) {
        self.consents
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete");
        let gone = wait_for(Duration::from_secs(20), || async {
            self.consents
                .get_opt(name)
                .await
                .ok()?
                .is_none()
                .then_some(())
        })
        .await;
        assert!(gone.is_some(), "{name} still exists 20 s after deletion");
    }
}

fn jwt_part(jwt: &str, index: usize) -> serde_json::Value {
    let part = jwt.split('.').nth(index).expect("jwt part");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("json")
}

fn query_value(url: &str, key: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn consent_goes_from_yaml_to_customer_token_and_is_revoked_on_delete() {
    let mut env = env("consent-flow", FakeConfig::default()).await;
    env.start_operator().await;
    env.registration().await;
    env.create(
        "acme",
        json!({"expirationDateTime": "2099-01-01T00:00:00Z"}),
    )
    .await;

    let st = env
        .wait_ready("acme", "False", "AwaitingAuthorisation", 30)
        .await;
    let consent_id = st.consent_id.clone().expect("consent id");
    assert_eq!(st.consent_status.as_deref(), Some("AwaitingAuthorisation"));
    assert!(st.creation_date_time.is_some() && st.status_update_date_time.is_some());
    assert!(st
        .self_link
        .as_deref()
        .unwrap_or_default()
        .contains(&consent_id));
    assert_eq!(env.fake.calls().consent_create, 1);
    let record = &env.fake.consents()[0];
    assert_eq!(
        record.permissions,
        ["ReadAccountsBasic", "ReadAccountsDetail"]
    );

    // The request object: header, claims, and a signature the provider can check.
    let url = st.authorisation_url.clone().expect("authorisation URL");
    assert!(url.starts_with(&env.fake.base_url()), "{url}");
    let jwt = query_value(&url, "request").expect("request parameter");
    let header = jwt_part(&jwt, 0);
    let claims = jwt_part(&jwt, 1);
    let registration: TppRegistration = Api::namespaced(env.client.clone(), &env.ns)
        .get("tpp")
        .await
        .expect("registration");
    let reg_status = registration.status.expect("registration status");
    assert_eq!(header["alg"], "PS256");
    assert_eq!(header["kid"], reg_status.signing_keys[0].kid.as_str());
    assert_eq!(claims["response_type"], "code id_token");
    assert_eq!(claims["scope"], "accounts");
    assert_eq!(claims["redirect_uri"], REDIRECT);
    assert_eq!(
        claims["client_id"],
        reg_status.client_id.clone().expect("client id").as_str()
    );
    assert_eq!(claims["iss"], claims["client_id"]);
    assert_eq!(
        claims["claims"]["id_token"]["openbanking_intent_id"]["value"],
        consent_id.as_str()
    );
    assert_eq!(
        claims["claims"]["id_token"]["openbanking_intent_id"]["essential"],
        true
    );
    assert_eq!(
        claims["state"],
        st.authorisation_state.clone().expect("state").as_str()
    );
    assert!(claims["nonce"].as_str().is_some_and(|n| n.len() >= 32));
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        600
    );

    let jwks: serde_json::Value = reqwest::get(format!("http://{}/jwks", env.http_addr()))
        .await
        .expect("jwks")
        .json()
        .await
        .expect("jwks json");
    fake_provider::verify_request_object(&jwks, &jwt).expect("request object verifies");
    let mut tampered_claims = claims.clone();
    tampered_claims["redirect_uri"] = json!("https://attacker.example/cb");
    let parts: Vec<&str> = jwt.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&tampered_claims).unwrap()),
        parts[2]
    );
    assert!(fake_provider::verify_request_object(&jwks, &tampered).is_err());

    // Wrong state is refused and changes nothing.
    let (code, _) = env.callback("code=abc&state=not-the-state").await;
    assert_eq!(code, 400);
    // A state naming this very consent but with a guessed secret part is refused too.
    let real = st.authorisation_state.clone().expect("state");
    let forged = format!(
        "{}.{}",
        real.rsplit_once('.').expect("parts").0,
        "A".repeat(43)
    );
    let (code, _) = env.callback(&format!("code=abc&state={forged}")).await;
    assert_eq!(code, 400);
    assert!(env.secret("acme-authorisation").await.is_none());

    // The customer authorises; the provider redirects to the callback.
    let query = env.visit(&url, None).await;
    let (code, body) = env.callback(&query).await;
    assert_eq!(code, 200, "{body}");
    // The same redirect again is refused, before and after the code is used.
    let (code, _) = env.callback(&query).await;
    assert!(code == 409 || code == 400, "replay answered {code}");

    let st = env.wait_ready("acme", "True", "Authorised", 30).await;
    assert_eq!(st.consent_status.as_deref(), Some("Authorised"));
    assert!(st.authorisation_state.is_none() && st.authorisation_url.is_none());
    let (code, _) = env.callback(&query).await;
    assert_eq!(code, 400, "a used state must be unknown");
    assert_eq!(env.fake.calls().auth_code_token, 1);

    let token = env
        .secret("acme-token")
        .await
        .expect("customer token Secret");
    let data = token.data.clone().unwrap_or_default();
    let text =
        |k: &str| String::from_utf8(data.get(k).map(|b| b.0.clone()).unwrap_or_default()).unwrap();
    assert!(!text("access_token").is_empty());
    assert_eq!(
        text("authorization"),
        format!("Bearer {}", text("access_token"))
    );
    assert_eq!(text("token_type"), "Bearer");
    assert_eq!(text("consent_id"), consent_id);
    assert!(text("expires_at").parse::<jiff::Timestamp>().is_ok());
    let labels = token.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("tpp-operator")
    );
    assert_eq!(
        labels.get("tpp-operator.dev/consent").map(String::as_str),
        Some("acme")
    );
    assert!(
        env.secret("acme-authorisation").await.is_none(),
        "hand-off Secret consumed"
    );

    let notes = env.event_notes().await;
    assert!(notes.contains("Authorised"), "{notes}");
    let code_value = query_value(&format!("https://x/?{query}"), "code").expect("code");
    for secret in [text("access_token"), code_value] {
        assert!(
            !notes.contains(&secret),
            "a secret value leaked into an event"
        );
    }
    let status_json = serde_json::to_string(&st).unwrap();
    assert!(!status_json.contains(&text("access_token")));

    // Deletion revokes at the provider, then deletes the token Secret.
    env.delete("acme").await;
    assert_eq!(env.fake.calls().consent_delete, 1);
    assert_eq!(env.fake.consents()[0].status, "Revoked");
    assert!(env.secret("acme-token").await.is_none());
    assert_eq!(env.fake.calls().consent_create, 1, "never a second consent");
    env.stop_operator().await;
}

#[tokio::test]
async fn provider_without_get_is_unknown_not_failed_and_an_unconfirmed_refusal_is_not_final() {
    let mut env = env(
        "consent-noget",
        FakeConfig {
            consent_get_delete: false,
            missing_status: 405,
            ..FakeConfig::default()
        },
    )
    .await;
    env.start_operator().await;
    env.registration().await;
    env.create("shy", json!({})).await;
    let st = env
        .wait_ready("shy", "False", "AwaitingAuthorisation", 30)
        .await;
    let polled = wait_for(Duration::from_secs(10), || async {
        (env.status("shy").await.status_polling_supported == Some(false)).then_some(())
    })
    .await;
    assert!(polled.is_some(), "a 405 on GET must switch polling off");
    let gets = env.fake.calls().consent_get;
    assert_eq!(gets, 1, "one GET, then no more");
    let now = env
        .wait_ready("shy", "False", "AwaitingAuthorisation", 5)
        .await;
    assert_eq!(now.consent_status.as_deref(), Some("AwaitingAuthorisation"));

    // The customer refuses; without GET the provider cannot confirm it, and anyone holding
    // the URL could have sent the refusal: not final, the pending authorisation stays.
    let first_state = st.authorisation_state.clone();
    let query = env
        .visit(&st.authorisation_url.clone().expect("url"), Some("reject"))
        .await;
    assert!(query.contains("error=access_denied"), "{query}");
    let (code, _) = env.callback(&query).await;
    assert_eq!(code, 200);
    let st = env
        .wait_ready("shy", "False", "AuthorisationRefused", 20)
        .await;
    assert_eq!(st.consent_status.as_deref(), Some("AwaitingAuthorisation"));
    assert!(env.secret("shy-token").await.is_none());
    let st = env
        .wait_ready("shy", "False", "AwaitingAuthorisation", 20)
        .await;
    assert_eq!(
        st.authorisation_state, first_state,
        "the pending authorisation stays usable"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(env.fake.calls().consent_get, gets, "no polling without GET");

    // Deletion with a provider without DELETE goes on (and says so).
    env.create("other", json!({})).await;
    env.wait_ready("other", "False", "AwaitingAuthorisation", 30)
        .await;
    env.delete("other").await;
    assert!(env.event_notes().await.contains("RevocationUnsupported"));
    env.stop_operator().await;
}

#[tokio::test]
async fn a_refusal_is_final_only_when_the_provider_confirms_it() {
    let mut env = env("consent-refusal", FakeConfig::default()).await;
    env.start_operator().await;
    env.registration().await;
    // Someone who read the state (it is in the URL and in status) forges a refusal: the
    // provider still holds the consent as awaiting authorisation, so nothing is final.
    env.create("forged", json!({})).await;
    let st = env
        .wait_ready("forged", "False", "AwaitingAuthorisation", 30)
        .await;
    let state = st.authorisation_state.clone().expect("state");
    let (code, _) = env
        .callback(&format!("state={state}&error=access_denied"))
        .await;
    assert_eq!(code, 200);
    let st = env
        .wait_ready("forged", "False", "AuthorisationRefused", 20)
        .await;
    assert_eq!(st.consent_status.as_deref(), Some("AwaitingAuthorisation"));
    // The forged refusal did not use up the customer's authorisation: the same URL still works.
    assert_eq!(st.authorisation_state.as_deref(), Some(state.as_str()));
    let query = env
        .visit(&st.authorisation_url.clone().expect("url"), None)
        .await;
    assert_eq!(env.callback(&query).await.0, 200);
    env.wait_ready("forged", "True", "Authorised", 30).await;
    // The customer really refuses at the provider: confirmed, final.
    env.create("real", json!({})).await;
    let st = env
        .wait_ready("real", "False", "AwaitingAuthorisation", 30)
        .await;
    let query = env
        .visit(&st.authorisation_url.clone().expect("url"), Some("reject"))
        .await;
    assert_eq!(env.callback(&query).await.0, 200);
    let st = env.wait_ready("real", "False", "Rejected", 20).await;
    assert_eq!(st.consent_status.as_deref(), Some("Rejected"));
    env.stop_operator().await;
}

#[tokio::test]
async fn polling_follows_the_provider_until_final_and_expiry_is_reported() {
    let mut env = env("consent-poll", FakeConfig::default()).await;
    env.start_operator().await;
    env.registration().await;
    env.create("watched", json!({})).await;
    let st = env
        .wait_ready("watched", "False", "AwaitingAuthorisation", 30)
        .await;
    let id = st.consent_id.expect("id");
    assert!(env.fake.set_consent_status(&id, "Revoked"));
    let st = env.wait_ready("watched", "False", "Revoked", 30).await;
    assert_eq!(st.consent_status.as_deref(), Some("Revoked"));
    assert!(st.authorisation_url.is_none());
    let gets = env.fake.calls().consent_get;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        env.fake.calls().consent_get,
        gets,
        "no polling after a final status"
    );

    // A consent whose ExpirationDateTime passes is reported Expired.
    let soon = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(6);
    env.create(
        "brief",
        json!({"expirationDateTime": soon.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()}),
    )
    .await;
    env.wait_ready("brief", "False", "AwaitingAuthorisation", 30)
        .await;
    let st = env.wait_ready("brief", "False", "Expired", 20).await;
    assert_eq!(st.consent_status.as_deref(), Some("Expired"));
    env.stop_operator().await;
}

#[tokio::test]
async fn restart_and_unconfirmed_creation_never_create_a_second_consent() {
    let mut env = env("consent-restart", FakeConfig::default()).await;
    env.start_operator().await;
    env.registration().await;
    env.create("steady", json!({})).await;
    let before = env
        .wait_ready("steady", "False", "AwaitingAuthorisation", 30)
        .await;
    env.stop_operator().await;
    env.start_operator().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = env
        .wait_ready("steady", "False", "AwaitingAuthorisation", 10)
        .await;
    assert_eq!(env.fake.calls().consent_create, 1);
    assert_eq!(before.consent_id, after.consent_id);
    assert_eq!(before.authorisation_state, after.authorisation_state);

    // The platform's own redirect page hands the code over through the Secret.
    let id = after.consent_id.clone().expect("id");
    let code = env.fake.issue_authorization_code(&id).expect("code");
    create_secret(
        &env.client,
        &env.ns,
        "steady-authorisation",
        &[
            ("code", &code),
            (
                "state",
                after.authorisation_state.as_deref().expect("state"),
            ),
        ],
    )
    .await;
    env.wait_ready("steady", "True", "Authorised", 30).await;
    assert!(env.secret("steady-token").await.is_some());

    // A creation call that times out may have created a consent: no retry on its own.
    env.fake.inject(
        Endpoint::ConsentCreate,
        Fault::Delay(Duration::from_secs(4)),
        Some(1),
    );
    env.create("slow", json!({})).await;
    let st = env
        .wait_ready("slow", "False", "ConsentCreationUnconfirmed", 30)
        .await;
    assert!(st.consent_id.is_none());
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        env.fake.calls().consent_create,
        2,
        "one call for steady, one for slow"
    );
    let msg = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(msg.contains("tpp-operator.dev/retry-creation"), "{msg}");
    env.consents
        .patch(
            "slow",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"tpp-operator.dev/retry-creation": "1"}}}),
            ),
        )
        .await
        .expect("annotate");
    env.wait_ready("slow", "False", "AwaitingAuthorisation", 30)
        .await;
    assert_eq!(env.fake.calls().consent_create, 3);
    env.stop_operator().await;
}

#[tokio::test]
async fn waits_for_its_registration_and_refreshes_a_refused_client_token_once() {
    let mut env = env("consent-wait", FakeConfig::default()).await;
    env.start_operator().await;
    env.create("early", json!({})).await;
    let st = env
        .wait_ready("early", "False", "RegistrationNotReady", 30)
        .await;
    let msg = st.conditions[0].message.clone();
    assert!(msg.contains("TppRegistration tpp does not exist"), "{msg}");
    assert_eq!(env.fake.calls().consent_create, 0);

    // The provider refuses the first client token it sees at consent creation.
    env.fake
        .inject(Endpoint::ConsentCreate, Fault::Status(401), Some(1));
    env.registration().await;
    env.wait_ready("early", "False", "AwaitingAuthorisation", 45)
        .await;
    let calls = env.fake.calls();
    assert_eq!(calls.consent_create, 2, "one refused call, one retry");
    assert_eq!(
        calls.client_token, 2,
        "the registration's first token, then exactly one refresh for the refused one"
    );
    env.stop_operator().await;
}

#[tokio::test]
async fn invalid_consents_are_refused_at_admission() {
    let client = client().await;
    let ns = namespace(&client, "consent-invalid").await;
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &kube::api::ApiResource::erase::<AccountConsent>(&()),
    );
    let cases = [
        (
            json!({"permissions": ["ReadAccountBasic"]}),
            "ReadAccountBasic",
        ),
        (json!({"permissions": []}), "permissions"),
        (
            json!({"permissions": ["ReadAccountsBasic", "ReadAccountsBasic"]}),
            "must not repeat",
        ),
        (json!({"redirectUri": "http://tpp.example/cb"}), "https"),
        (
            json!({"transactionFromDateTime": "2025-02-01T00:00:00Z", "transactionToDateTime": "2025-01-01T00:00:00Z"}),
            "transactionFromDateTime must not be after",
        ),
        (json!({"deletionPolicy": "Keep"}), "deletionPolicy"),
        (
            json!({"returnUrl": "http://app.example/done"}),
            "returnUrl must be an https URL",
        ),
    ];
    for (i, (extra, expected)) in cases.into_iter().enumerate() {
        let err = api
            .create(
                &PostParams::default(),
                &consent_object(&format!("bad-{i}"), extra.clone()),
            )
            .await
            .expect_err(&format!("{extra} must be refused"));
        assert!(err.to_string().contains(expected), "{extra}: {err}");
    }
    api.create(&PostParams::default(), &consent_object("good", json!({})))
        .await
        .expect("valid consent");
    let err = api
        .patch(
            "good",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"permissions": ["ReadBalances"]}})),
        )
        .await
        .expect_err("content is immutable");
    assert!(
        err.to_string().contains("cannot change after creation"),
        "{err}"
    );
    let err = api
        .patch(
            "good",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"returnUrl": "https://app.example/openbanking"}})),
        )
        .await
        .expect_err("the return URL is immutable");
    assert!(
        err.to_string()
            .contains("returnUrl cannot change after creation"),
        "{err}"
    );
}

// --- Trust boundaries: the internet-facing callback, and Secrets that are not ours ---

/// The value of one parameter of a query string.
fn query_param(query: &str, key: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// A query string.
fn query(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

#[tokio::test]
async fn a_code_for_one_consent_is_refused_for_another() {
    let mut env = env("inject", FakeConfig::default()).await;
    env.start_operator().await;
    env.registration().await;
    env.create("alice", json!({})).await;
    env.create("bob", json!({})).await;
    let alice = env
        .wait_ready("alice", "False", "AwaitingAuthorisation", 30)
        .await;
    let bob = env
        .wait_ready("bob", "False", "AwaitingAuthorisation", 30)
        .await;

    // Alice authorises; an attacker catches her redirect and replays it with Bob's state.
    let redirect = env
        .visit(alice.authorisation_url.as_deref().expect("url"), None)
        .await;
    let code = query_param(&redirect, "code").expect("code");
    let id_token = query_param(&redirect, "id_token").expect("id_token");
    let bob_state = bob.authorisation_state.clone().expect("state");
    let (status, _) = env
        .callback(&query(&[
            ("code", &code),
            ("id_token", &id_token),
            ("state", &bob_state),
        ]))
        .await;
    assert_eq!(status, 200, "the state is Bob's, so the callback takes it");
    // The id token carries Alice's nonce and consent: refused before the code is spent.
    let st = env
        .wait_ready("bob", "False", "AuthorisationMismatch", 30)
        .await;
    assert!(st.token_expires_at.is_none());
    assert!(env.secret("bob-token").await.is_none(), "Bob got no token");
    assert_eq!(
        env.fake.calls().auth_code_token,
        0,
        "the code was not spent"
    );

    // Without the id token, the code is exchanged, but the customer token names Alice's
    // consent: refused, nothing stored.
    let bob = env
        .wait_ready("bob", "False", "AwaitingAuthorisation", 30)
        .await;
    let bob_state = bob.authorisation_state.clone().expect("new state");
    let (status, _) = env
        .callback(&query(&[("code", &code), ("state", &bob_state)]))
        .await;
    assert_eq!(status, 200);
    let st = env
        .wait_ready("bob", "False", "AuthorisationMismatch", 30)
        .await;
    assert!(st.token_expires_at.is_none());
    assert!(env.secret("bob-token").await.is_none(), "Bob got no token");
    assert_eq!(env.fake.calls().auth_code_token, 1);
    let notes = env.event_notes().await;
    assert!(notes.contains("AuthorisationMismatch"), "{notes}");
    assert!(!notes.contains(&code), "the code reached an event");
    env.stop_operator().await;
}

#[tokio::test]
async fn an_unrelated_secret_with_the_hand_off_name_is_left_untouched() {
    let mut env = env("handoff-name", FakeConfig::default()).await;
    create_secret(
        &env.client,
        &env.ns,
        "acme-authorisation",
        &[("tls.crt", "not a hand-off"), ("state", "x")],
    )
    .await;
    env.start_operator().await;
    env.registration().await;
    env.create("acme", json!({})).await;
    env.wait_ready("acme", "False", "AwaitingAuthorisation", 30)
        .await;
    // Several reconciles later (polls every second), it is still there, unchanged.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let secret = env
        .secret("acme-authorisation")
        .await
        .expect("the unrelated Secret still exists");
    let data = secret.data.unwrap_or_default();
    assert_eq!(
        data.get("tls.crt").map(|v| v.0.as_slice()),
        Some(b"not a hand-off".as_slice())
    );
    env.stop_operator().await;
}

#[tokio::test]
async fn the_longest_names_work_end_to_end_or_are_refused() {
    let mut env = env("long-names", FakeConfig::default()).await;
    env.start_operator().await;
    // The longest names the API server allows for both kinds, given the Secrets they derive.
    let registration = "r".repeat(241);
    let consent = "c".repeat(239);
    env.fake.set_jwks_url(&format!(
        "http://{}/jwks/{}/{registration}",
        env.http_addr(),
        env.ns
    ));
    env.registration_named(&registration).await;
    let api: Api<DynamicObject> = Api::namespaced_with(
        env.client.clone(),
        &env.ns,
        &kube::api::ApiResource::erase::<AccountConsent>(&()),
    );
    let mut object = consent_object(&consent, json!({}));
    object.data["spec"]["registrationRef"]["name"] = json!(registration);
    api.create(&PostParams::default(), &object)
        .await
        .expect("create the longest consent");
    let st = env
        .wait_ready(&consent, "False", "AwaitingAuthorisation", 30)
        .await;
    let redirect = env
        .visit(st.authorisation_url.as_deref().expect("url"), None)
        .await;
    let (status, body) = env.callback(&redirect).await;
    assert_eq!(status, 200, "{body}");
    env.wait_ready(&consent, "True", "Authorised", 30).await;
    let token = env
        .secret(&format!("{consent}-token"))
        .await
        .expect("customer token");
    let labels = token.metadata.labels.unwrap_or_default();
    assert!(labels.values().all(|v| v.len() <= 63), "{labels:?}");
    assert!(env
        .secret(&format!("{registration}-credentials"))
        .await
        .is_some());

    // One character more is refused by the API server, before any provider call.
    let calls = env.fake.calls();
    let mut too_long = consent_object(&"c".repeat(240), json!({}));
    too_long.data["spec"]["registrationRef"]["name"] = json!(registration);
    let err = api
        .create(&PostParams::default(), &too_long)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("at most 239"), "{err}");
    let registrations: Api<TppRegistration> = Api::namespaced(env.client.clone(), &env.ns);
    let mut reg = registrations
        .get(&registration)
        .await
        .expect("registration");
    reg.metadata = kube::api::ObjectMeta {
        name: Some("r".repeat(242)),
        ..Default::default()
    };
    reg.status = None;
    let err = registrations
        .create(&PostParams::default(), &reg)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("at most 241"), "{err}");
    assert_eq!(
        env.fake.calls(),
        calls,
        "no provider call for refused names"
    );
    env.stop_operator().await;
}

#[tokio::test]
async fn a_return_url_the_platform_does_not_allow_creates_nothing_at_the_provider() {
    let mut env = env("consent-return", FakeConfig::default()).await;
    env.start_operator().await;
    env.registration().await;
    // The allowed prefix's host, but not below its path.
    let stray = format!("{APP_RETURN_URL}-evil/done");
    env.create("stray", json!({ "returnUrl": stray })).await;
    let st = env
        .wait_ready("stray", "False", "ReturnUrlNotAllowed", 20)
        .await;
    let message = &st.conditions[0].message;
    assert!(message.contains("Helm value returnUrls"), "{message}");
    assert!(st.consent_id.is_none() && st.authorisation_url.is_none());
    assert_eq!(env.fake.calls().consent_create, 0);

    // An allowed one: the bank's answer, posted as the fragment page posts it, is handed over
    // and the customer's browser sent back to the app with the outcome.
    let back = format!("{APP_RETURN_URL}/done?tab=2");
    env.create("app", json!({ "returnUrl": back })).await;
    let st = env
        .wait_ready("app", "False", "AwaitingAuthorisation", 30)
        .await;
    let query = env.visit(&st.authorisation_url.expect("url"), None).await;
    let answer: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = browser
        .post(format!("http://{}/callback", env.http_addr()))
        .form(&answer)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 303);
    let location = r
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or_default();
    assert_eq!(location, format!("{back}&consent=app&outcome=authorised"));
    env.wait_ready("app", "True", "Authorised", 30).await;
    assert_eq!(env.fake.calls().consent_create, 1, "never the stray one");
    env.stop_operator().await;
}
