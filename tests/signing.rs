//! Request objects signed by the operator verify against its JWK with an independent RSA
//! implementation (the fake provider's verifier), tampering is detected, and the fake
//! provider's authorisation step accepts only verified request objects.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use fake_provider::{verify_request_object, VerifyError};
use serde_json::json;
use tpp_operator::signing::{Jwks, RequestObjectClaims, SigningKey};

fn signed() -> (SigningKey, String, serde_json::Value) {
    let key = SigningKey::generate().expect("key");
    let claims = RequestObjectClaims::new(
        "CID",
        "https://bank.example",
        "https://tpp.example/cb",
        "c-1",
        "state-1",
        "nonce-1",
        1_700_000_000,
        600,
    );
    let jwt = key.sign(&claims).expect("sign");
    let jwks = serde_json::to_value(Jwks {
        keys: vec![key.jwk()],
    })
    .expect("jwks");
    (key, jwt, jwks)
}

#[test]
fn request_object_verifies_against_the_published_jwk() {
    let (_, jwt, jwks) = signed();
    let claims = verify_request_object(&jwks, &jwt).expect("verifies");
    assert_eq!(
        claims["claims"]["id_token"]["openbanking_intent_id"],
        json!({"value": "c-1", "essential": true})
    );
    assert_eq!(claims["client_id"], "CID");
    assert_eq!(claims["redirect_uri"], "https://tpp.example/cb");
}

#[test]
fn tampered_claims_or_signature_fail() {
    let (_, jwt, jwks) = signed();
    let parts: Vec<&str> = jwt.split('.').collect();
    let mut body: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    body["claims"]["id_token"]["openbanking_intent_id"]["value"] = json!("someone-elses-consent");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(body.to_string()),
        parts[2]
    );
    assert_eq!(
        verify_request_object(&jwks, &forged),
        Err(VerifyError::BadSignature)
    );
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    sig[10] ^= 0x01;
    let flipped = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
    assert_eq!(
        verify_request_object(&jwks, &flipped),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn another_key_with_the_same_kid_does_not_verify() {
    let (key, jwt, _) = signed();
    let other = SigningKey::generate().expect("key");
    let mut jwk = other.jwk();
    jwk.common.key_id = Some(key.kid().to_string());
    let jwks = serde_json::to_value(Jwks { keys: vec![jwk] }).unwrap();
    assert_eq!(
        verify_request_object(&jwks, &jwt),
        Err(VerifyError::BadSignature)
    );
    let empty = json!({"keys": []});
    assert!(matches!(
        verify_request_object(&empty, &jwt),
        Err(VerifyError::UnknownKid(_))
    ));
}

/// Serves `jwks` on 127.0.0.1 as the operator would; returns its URL.
async fn serve_jwks(jwks: serde_json::Value) -> String {
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || async move { axum::Json(jwks) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/jwks")
}

/// A fake provider that knows the JWKS URL of a TPP holding the returned key.
async fn fake_with_tpp_jwks() -> (fake_provider::FakeProvider, SigningKey) {
    let fake = fake_provider::FakeProvider::start(fake_provider::Config::default())
        .await
        .expect("fake");
    let key = SigningKey::generate().expect("key");
    let jwks = serde_json::to_value(Jwks {
        keys: vec![key.jwk()],
    })
    .expect("jwks");
    fake.set_jwks_url(&serve_jwks(jwks).await);
    (fake, key)
}

/// A registered client with a consent awaiting authorisation at the fake.
async fn consent_at(fake: &fake_provider::FakeProvider) -> (String, String, String) {
    let http = reqwest::Client::new();
    let reg: serde_json::Value = http
        .post(format!("{}/api/account/registration", fake.base_url()))
        .header("signature-certificate", "sig")
        .json(&json!({"countryISO": "GB", "address": "a", "name": "n", "email": "e@x.io", "certificateType": "account", "callbackUrl": "https://x.io/cb"}))
        .send().await.expect("register").json().await.expect("json");
    let (client_id, password) = (
        reg["ClientId"].as_str().expect("id").to_string(),
        reg["Certificate"].as_str().expect("cert").to_string(),
    );
    let token: serde_json::Value = http
        .post(format!("{}/auth/token", fake.base_url()))
        .form(&[
            ("password", password.as_str()),
            ("client_id", client_id.as_str()),
            ("scope", "account"),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let consent: serde_json::Value = http
        .post(format!("{}/account-access-consents", fake.base_url()))
        .bearer_auth(token["access_token"].as_str().expect("token"))
        .json(&json!({"Data": {"Permissions": ["ReadAccountsBasic"]}, "Risk": {}}))
        .send()
        .await
        .expect("consent")
        .json()
        .await
        .expect("json");
    (
        client_id,
        password,
        consent["Data"]["ConsentId"]
            .as_str()
            .expect("ConsentId")
            .to_string(),
    )
}

fn request_object(key: &SigningKey, client_id: &str, consent_id: &str) -> String {
    let now = jiff::Timestamp::now().as_second();
    let claims = RequestObjectClaims::new(
        client_id,
        "https://bank",
        "https://tpp.example/callback",
        consent_id,
        "state-42",
        "nonce-1",
        now,
        600,
    );
    key.sign(&claims).expect("sign")
}

#[tokio::test]
async fn provider_authorises_a_verified_request_object_and_the_code_buys_a_customer_token() {
    let (fake, key) = fake_with_tpp_jwks().await;
    let (client_id, password, consent_id) = consent_at(&fake).await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let authorize = |jwt: String| {
        let browser = browser.clone();
        let url = format!("{}/authorize", fake.base_url());
        async move {
            browser
                .get(url::Url::parse_with_params(&url, &[("request", jwt)]).expect("url"))
                .send()
                .await
                .expect("authorize")
        }
    };

    // Tampered: refused, consent untouched.
    let good = request_object(&key, &client_id, &consent_id);
    let parts: Vec<&str> = good.split('.').collect();
    let mut body: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    body["redirect_uri"] = json!("https://attacker.example/steal");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(body.to_string()),
        parts[2]
    );
    assert_eq!(authorize(tampered).await.status(), 400);
    assert_eq!(fake.consents()[0].status, "AwaitingAuthorisation");

    // Genuine: redirected back with code, id_token and state.
    let answer = authorize(good).await;
    assert_eq!(answer.status(), 303);
    let location =
        url::Url::parse(answer.headers()["location"].to_str().expect("location")).expect("url");
    assert_eq!(
        format!(
            "{}{}",
            location.origin().ascii_serialization(),
            location.path()
        ),
        "https://tpp.example/callback"
    );
    let params: std::collections::HashMap<String, String> =
        location.query_pairs().into_owned().collect();
    assert_eq!(params["state"], "state-42");
    assert!(params.contains_key("id_token"));
    assert_eq!(fake.consents()[0].status, "Authorised");
    let http = reqwest::Client::new();
    let exchange = || {
        http.post(format!("{}/auth/token", fake.base_url()))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", params["code"].as_str()),
                ("client_id", client_id.as_str()),
                ("password", password.as_str()),
                ("scope", "account"),
            ])
            .send()
    };
    let token: serde_json::Value = exchange()
        .await
        .expect("exchange")
        .json()
        .await
        .expect("json");
    assert!(
        token["access_token"].is_string() && token["id_token"].is_string(),
        "{token}"
    );
    assert_eq!(
        exchange().await.expect("replay").status(),
        400,
        "a code works once"
    );
}

#[tokio::test]
async fn a_customer_who_refuses_is_sent_back_with_access_denied() {
    let (fake, key) = fake_with_tpp_jwks().await;
    let (client_id, _, consent_id) = consent_at(&fake).await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let answer = browser
        .get(
            url::Url::parse_with_params(
                &format!("{}/authorize", fake.base_url()),
                &[
                    (
                        "request",
                        request_object(&key, &client_id, &consent_id).as_str(),
                    ),
                    ("decision", "reject"),
                ],
            )
            .expect("url"),
        )
        .send()
        .await
        .expect("authorize");
    assert_eq!(answer.status(), 303);
    let location = answer.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    assert!(
        location.contains("error=access_denied") && location.contains("state=state-42"),
        "{location}"
    );
    assert_eq!(fake.consents()[0].status, "Rejected");
    // A request object for a consent that is no longer awaiting authorisation is refused.
    let again = browser
        .get(
            url::Url::parse_with_params(
                &format!("{}/authorize", fake.base_url()),
                &[(
                    "request",
                    request_object(&key, &client_id, &consent_id).as_str(),
                )],
            )
            .expect("url"),
        )
        .send()
        .await
        .expect("authorize");
    assert_eq!(again.status(), 400);
}
