//! The fake answers as the provider documents, and its faults and records work.

use fake_provider::{Config, Endpoint, FakeProvider, Fault};
use serde_json::{json, Value};
use std::time::Duration;

fn org() -> Value {
    json!({"countryISO": "GB", "address": "1 Roada Way", "name": "Cway", "email": "c@finance.co", "certificateType": "account", "callbackUrl": "https://x.io/cb"})
}

/// The raw JSON answer of a registration.
async fn register_raw(http: &reqwest::Client, fake: &FakeProvider) -> Value {
    http.post(format!("{}/api/account/registration", fake.base_url()))
        .header("signature-certificate", "sig")
        .json(&org())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn register(http: &reqwest::Client, fake: &FakeProvider) -> (String, String) {
    let r = register_raw(http, fake).await;
    (
        r["ClientId"].as_str().unwrap().to_string(),
        r["Certificate"].as_str().unwrap().to_string(),
    )
}

async fn token(
    http: &reqwest::Client,
    fake: &FakeProvider,
    id: &str,
    password: &str,
) -> reqwest::Response {
    http.post(format!("{}/auth/token", fake.base_url()))
        .form(&[
            ("password", password),
            ("client_id", id),
            ("scope", "account"),
            ("grant_type", "client_credentials"),
        ])
        .send()
        .await
        .unwrap()
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    let bytes = base64url(payload);
    serde_json::from_slice(&bytes).unwrap()
}

fn base64url(s: &str) -> Vec<u8> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes() {
        let v = alphabet.iter().position(|a| *a == c).unwrap() as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    out
}

#[tokio::test]
async fn registration_answers_with_the_documented_casing() {
    let fake = FakeProvider::start(Config::default()).await.unwrap();
    let http = reqwest::Client::new();
    let r = register_raw(&http, &fake).await;
    let id = r["ClientId"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    assert!(id
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()));
    assert!(r["Certificate"].as_str().is_some_and(|c| !c.is_empty()));
    assert_eq!(r["Message"], "OK");
    // Not idempotent: a second call is a second registration.
    register(&http, &fake).await;
    assert_eq!(fake.registrations().len(), 2);
    assert_eq!(fake.calls().registration, 2);

    let legacy = FakeProvider::start(Config {
        legacy_status_message: true,
        ..Config::default()
    })
    .await
    .unwrap();
    let r = register_raw(&http, &legacy).await;
    assert_eq!(r["statusMessage"], "OK");
    assert!(r.get("Message").is_none());
}

#[tokio::test]
async fn registration_requires_header_and_fields() {
    let fake = FakeProvider::start(Config::default()).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/api/account/registration", fake.base_url());
    let no_header = http.post(&url).json(&org()).send().await.unwrap();
    assert_eq!(no_header.status(), 401);
    let mut bad = org();
    bad["certificateType"] = json!("payments");
    let r = http
        .post(&url)
        .header("signature-certificate", "s")
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(fake.registrations().is_empty());
}

#[tokio::test]
async fn token_endpoint_is_form_encoded_and_checks_credentials() {
    let fake = FakeProvider::start(Config {
        token_lifetime_secs: 300,
        expires_in: Some(63_919),
        ..Config::default()
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let (id, password) = register(&http, &fake).await;
    assert_eq!(token(&http, &fake, &id, "wrong").await.status(), 401);
    let json_body = http
        .post(format!("{}/auth/token", fake.base_url()))
        .json(&json!({"password": password, "client_id": id, "scope": "account", "grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_body.status(), 415);
    let ok: Value = token(&http, &fake, &id, &password)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ok["token_type"], "Bearer");
    assert_eq!(
        ok["expires_in"], 63_919,
        "expires_in disagrees with exp, as in the provider's sample"
    );
    let c = claims(ok["access_token"].as_str().unwrap());
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 300);
    assert_eq!(fake.tokens().len(), 1);
    assert_eq!(fake.calls().client_token, 3);
}

#[tokio::test]
async fn consents_need_a_live_bearer_and_use_seven_digit_timestamps() {
    let fake = FakeProvider::start(Config::default()).await.unwrap();
    let http = reqwest::Client::new();
    let (id, password) = register(&http, &fake).await;
    let tok: Value = token(&http, &fake, &id, &password)
        .await
        .json()
        .await
        .unwrap();
    let body = json!({"Data": {"Permissions": ["ReadAccountsBasic"], "ExpirationDateTime": "2030-01-01T00:00:00Z"}, "Risk": {}});
    let url = format!("{}/account-access-consents", fake.base_url());
    assert_eq!(
        http.post(&url).json(&body).send().await.unwrap().status(),
        401
    );
    let r = http
        .post(&url)
        .bearer_auth(tok["access_token"].as_str().unwrap())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["Data"]["Status"], "AwaitingAuthorisation");
    let created = v["Data"]["CreationDateTime"].as_str().unwrap();
    let frac = created.split('.').nth(1).unwrap();
    assert_eq!(frac.len(), 8, "7 digits and Z: {created}");
    assert!(v["Links"]["Self"]
        .as_str()
        .unwrap()
        .contains(v["Data"]["ConsentId"].as_str().unwrap()));

    let consent = v["Data"]["ConsentId"].as_str().unwrap().to_string();
    let one = format!("{url}/{consent}");
    let bearer = tok["access_token"].as_str().unwrap();
    assert_eq!(
        http.get(&one)
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    fake.set_consent_get_delete(false);
    assert_eq!(
        http.get(&one)
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap()
            .status(),
        405
    );
    fake.set_consent_get_delete(true);
    assert_eq!(
        http.delete(&one)
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(fake.consents()[0].status, "Revoked");
}

#[tokio::test]
async fn injected_faults_answer_instead_of_the_endpoint() {
    let fake = FakeProvider::start(Config::default()).await.unwrap();
    let http = reqwest::Client::new();
    let (id, password) = register(&http, &fake).await;
    fake.inject(Endpoint::ClientToken, Fault::Status(503), Some(1));
    fake.inject(
        Endpoint::ClientToken,
        Fault::RateLimited {
            retry_after: Some(7),
        },
        Some(1),
    );
    fake.inject(Endpoint::ClientToken, Fault::Malformed, Some(1));
    fake.inject(Endpoint::ClientToken, Fault::Html, Some(1));
    assert_eq!(token(&http, &fake, &id, &password).await.status(), 503);
    let limited = token(&http, &fake, &id, &password).await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "7");
    let malformed = token(&http, &fake, &id, &password).await;
    assert_eq!(malformed.status(), 200);
    assert!(malformed.json::<Value>().await.is_err());
    let html = token(&http, &fake, &id, &password).await;
    assert_eq!(html.status(), 502);
    assert_eq!(
        token(&http, &fake, &id, &password).await.status(),
        200,
        "faults ran out"
    );

    fake.inject(
        Endpoint::ClientToken,
        Fault::Delay(Duration::from_millis(1500)),
        None,
    );
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let timed_out = tokio::time::timeout(Duration::from_secs(5), async {
        quick
            .post(format!("{}/auth/token", fake.base_url()))
            .form(&[
                ("password", password.as_str()),
                ("client_id", id.as_str()),
                ("scope", "account"),
                ("grant_type", "client_credentials"),
            ])
            .send()
            .await
    })
    .await
    .unwrap();
    assert!(timed_out.unwrap_err().is_timeout());
    fake.clear_faults();
    assert_eq!(token(&http, &fake, &id, &password).await.status(), 200);
}

#[tokio::test]
async fn rate_limit_answers_429_and_peak_is_recorded() {
    let fake = FakeProvider::start(Config {
        rate_limit: Some(3),
        ..Config::default()
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = http
            .post(format!("{}/api/account/registration", fake.base_url()))
            .header("signature-certificate", "s")
            .json(&org())
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    let calls = fake.calls();
    assert!(calls.rate_limited >= 1);
    assert!(calls.peak_per_second >= 4);
}
