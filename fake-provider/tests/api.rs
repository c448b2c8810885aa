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

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A registered client with a live client token and a consent awaiting authorisation:
/// (client id, password, consent id).
async fn client_with_consent(
    http: &reqwest::Client,
    fake: &FakeProvider,
) -> (String, String, String) {
    let (id, password) = register(http, fake).await;
    let tok: Value = token(http, fake, &id, &password)
        .await
        .json()
        .await
        .unwrap();
    let consent: Value = http
        .post(format!("{}/account-access-consents", fake.base_url()))
        .bearer_auth(tok["access_token"].as_str().unwrap())
        .json(&json!({"Data": {"Permissions": ["ReadAccountsBasic"]}, "Risk": {}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let consent_id = consent["Data"]["ConsentId"].as_str().unwrap().to_string();
    (id, password, consent_id)
}

async fn exchange(
    http: &reqwest::Client,
    fake: &FakeProvider,
    code: &str,
    id: &str,
    password: &str,
) -> reqwest::Response {
    http.post(format!("{}/auth/token", fake.base_url()))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", id),
            ("password", password),
            ("scope", "account"),
        ])
        .send()
        .await
        .unwrap()
}

async fn admin_fault(http: &reqwest::Client, fake: &FakeProvider, body: Value) -> u16 {
    http.post(format!("{}/__admin/faults", fake.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn redirect_fault_answers_location_without_body_and_a_follower_would_reach_the_target() {
    let fake = FakeProvider::start(Config::default()).await.unwrap();
    let elsewhere = FakeProvider::start(Config::default()).await.unwrap();
    let http = no_redirects();
    let (id, password) = register(&http, &fake).await;
    let target = format!("{}/auth/token", elsewhere.base_url());
    for status in [301, 302, 303, 307, 308] {
        fake.inject(
            Endpoint::ClientToken,
            Fault::Redirect {
                status,
                location: target.clone(),
            },
            Some(1),
        );
        let r = token(&http, &fake, &id, &password).await;
        assert_eq!(r.status().as_u16(), status);
        assert_eq!(r.headers()["location"], target.as_str());
        assert!(r.bytes().await.unwrap().is_empty());
    }
    assert_eq!(fake.calls().client_token, 5, "redirected calls are counted");
    assert_eq!(elsewhere.calls().total, 0);

    // Through the admin API; a client that follows redirects re-sends the form to the target.
    let fault = json!({"endpoint": "ClientToken", "fault": {"Redirect": {"status": 307, "location": target}}, "times": 1});
    assert_eq!(admin_fault(&http, &fake, fault).await, 204);
    let follower = reqwest::Client::new();
    let followed = token(&follower, &fake, &id, &password).await;
    assert_eq!(
        followed.status(),
        401,
        "the target does not know the client"
    );
    assert_eq!(elsewhere.calls().client_token, 1);
    assert_eq!(elsewhere.calls().total, 1);

    let bad = json!({"endpoint": "ClientToken", "fault": {"Redirect": {"status": 200, "location": "http://x"}}});
    assert_eq!(admin_fault(&http, &fake, bad).await, 400);
}

#[tokio::test]
async fn oversized_fault_sends_a_long_body_that_starts_like_the_answer() {
    let fake = FakeProvider::start(Config::default()).await.unwrap();
    let http = reqwest::Client::new();
    let (id, password) = register(&http, &fake).await;
    let ten_mb = 10 * 1024 * 1024;
    fake.inject(
        Endpoint::ClientToken,
        Fault::Oversized { bytes: ten_mb },
        Some(1),
    );
    let started = std::time::Instant::now();
    let r = token(&http, &fake, &id, &password).await;
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(body.len(), ten_mb);
    assert!(body.starts_with(b"{\"access_token\":\"aaaa"));
    assert!(serde_json::from_slice::<Value>(&body).is_err());

    let fault =
        json!({"endpoint": "Registration", "fault": {"Oversized": {"bytes": 100}}, "times": 1});
    assert_eq!(admin_fault(&http, &fake, fault).await, 204);
    let r = register_raw_response(&http, &fake).await;
    let body = r.bytes().await.unwrap();
    assert_eq!(body.len(), 100);
    assert!(body.starts_with(b"{\"Certificate\":\"a"));
    assert_eq!(fake.calls().registration, 2);
}

async fn register_raw_response(http: &reqwest::Client, fake: &FakeProvider) -> reqwest::Response {
    http.post(format!("{}/api/account/registration", fake.base_url()))
        .header("signature-certificate", "sig")
        .json(&org())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn expired_token_fault_issues_a_token_expired_on_arrival() {
    let fake = FakeProvider::start(Config::default()).await.unwrap();
    let http = reqwest::Client::new();
    let (id, password) = register(&http, &fake).await;
    fake.inject(Endpoint::ClientToken, Fault::ExpiredToken, Some(1));
    let r = token(&http, &fake, &id, &password).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["expires_in"], 0);
    let c = claims(v["access_token"].as_str().unwrap());
    assert_eq!(c["iat"].as_i64().unwrap() - c["exp"].as_i64().unwrap(), 10);
    let consent = http
        .post(format!("{}/account-access-consents", fake.base_url()))
        .bearer_auth(v["access_token"].as_str().unwrap())
        .json(&json!({"Data": {"Permissions": ["ReadAccountsBasic"]}, "Risk": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(consent.status(), 401, "the fake refuses it too");

    let (id, password, consent_id) = client_with_consent(&http, &fake).await;
    let fault = json!({"endpoint": "AuthCodeToken", "fault": "ExpiredToken", "times": 1});
    assert_eq!(admin_fault(&http, &fake, fault).await, 204);
    let code = fake.issue_authorization_code(&consent_id).unwrap();
    let v: Value = exchange(&http, &fake, &code, &id, &password)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["expires_in"], 0);
    let c = claims(v["access_token"].as_str().unwrap());
    assert!(c["exp"].as_i64().unwrap() < c["iat"].as_i64().unwrap());
    assert_eq!(c["consentId"], consent_id.as_str());

    let elsewhere = json!({"endpoint": "ConsentCreate", "fault": "ExpiredToken"});
    assert_eq!(admin_fault(&http, &fake, elsewhere).await, 400);
}

#[tokio::test]
async fn malformed_token_fault_issues_a_token_that_is_no_bearer_token() {
    let fake = FakeProvider::start(Config::default()).await.unwrap();
    let http = reqwest::Client::new();
    let (id, password) = register(&http, &fake).await;
    let fault = json!({"endpoint": "ClientToken", "fault": "MalformedToken", "times": 1});
    assert_eq!(admin_fault(&http, &fake, fault).await, 204);
    let r = token(&http, &fake, &id, &password).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let access = v["access_token"].as_str().unwrap();
    assert_eq!(access, fake_provider::MALFORMED_ACCESS_TOKEN);
    assert!(access.contains("\r\n") && access.contains(' '));
    assert_eq!(v["token_type"], "Bearer");
    let next: Value = token(&http, &fake, &id, &password)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(next["access_token"].as_str().unwrap().split('.').count(), 3);
}

#[tokio::test]
async fn customer_tokens_are_bound_to_the_consent_and_codes_to_their_client() {
    let fake = FakeProvider::start(Config {
        expires_in: Some(39_361),
        ..Config::default()
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let (a_id, a_password, consent_a) = client_with_consent(&http, &fake).await;
    let (b_id, b_password, _consent_b) = client_with_consent(&http, &fake).await;
    let authorised = admin_authorise(&http, &fake, &consent_a, None).await;
    let code = authorised["code"].as_str().unwrap();
    assert!(
        authorised["state"].is_null(),
        "unknown without a request object"
    );
    assert!(authorised["id_token"].is_string());

    let stolen = exchange(&http, &fake, code, &b_id, &b_password).await;
    assert_eq!(stolen.status(), 400);
    assert_eq!(
        stolen.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );

    let r = exchange(&http, &fake, code, &a_id, &a_password).await;
    assert_eq!(r.status(), 200, "another client's attempt does not burn it");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 39_361);
    assert_eq!(v["access_token_id"], consent_a.as_str());
    let access = v["access_token"].as_str().unwrap();
    let header: Value =
        serde_json::from_slice(&base64url(access.split('.').next().unwrap())).unwrap();
    assert_eq!(header["alg"], "HS256");
    let c = claims(access);
    assert_eq!(c["unique_name"], a_id.as_str());
    assert_eq!(c["consentId"], consent_a.as_str());
    assert_eq!(c["customerId"], authorised["customer_id"]);
    assert!(c["customerId"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(c["nbf"], c["iat"]);
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 300);
    assert_eq!(
        fake.tokens().last().unwrap().consent_id.as_deref(),
        Some(consent_a.as_str())
    );

    let replay = exchange(&http, &fake, code, &a_id, &a_password).await;
    assert_eq!(replay.status(), 400);
    assert_eq!(
        replay.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );

    // A code of a consent revoked before the exchange buys nothing.
    let code = fake.issue_authorization_code(&consent_a).unwrap();
    fake.set_consent_status(&consent_a, "Revoked");
    assert_eq!(
        exchange(&http, &fake, &code, &a_id, &a_password)
            .await
            .status(),
        400
    );
}

/// Verifies an id_token against the fake's JWKS (with the crate's independent RSA verifier)
/// and returns (header, claims).
/// The admin API's authorisation of `consent` (with `body`: the state and nonce to use).
async fn admin_authorise(
    http: &reqwest::Client,
    fake: &FakeProvider,
    consent: &str,
    body: Option<Value>,
) -> Value {
    let mut request = http.post(format!(
        "{}/__admin/consents/{consent}/authorise",
        fake.base_url()
    ));
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap().json().await.unwrap()
}

async fn verified_id_token(fake: &FakeProvider, id_token: &str) -> (Value, Value) {
    let jwks: Value = reqwest::get(format!("{}/.well-known/jwks.json", fake.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks, fake.jwks());
    let header: Value =
        serde_json::from_slice(&base64url(id_token.split('.').next().unwrap())).unwrap();
    assert_eq!(header["alg"], "PS256");
    assert_eq!(header["kid"], jwks["keys"][0]["kid"]);
    let claims = fake_provider::verify_request_object(&jwks, id_token).expect("id_token verifies");
    (header, claims)
}

#[tokio::test]
async fn id_tokens_are_ps256_jws_about_the_consent_verifiable_with_the_fakes_jwks() {
    let fake = FakeProvider::start(Config::default()).await.unwrap();
    let http = reqwest::Client::new();
    let (id, password, consent) = client_with_consent(&http, &fake).await;
    let a = admin_authorise(
        &http,
        &fake,
        &consent,
        Some(json!({"state": "s-1", "nonce": "n-1"})),
    )
    .await;
    assert_eq!(a["state"], "s-1");
    let (_, c) = verified_id_token(&fake, a["id_token"].as_str().unwrap()).await;
    assert_eq!(c["iss"], fake.base_url().as_str());
    assert_eq!(c["sub"], a["customer_id"]);
    assert_eq!(c["aud"], id.as_str());
    assert_eq!(c["nonce"], "n-1");
    assert_eq!(c["openbanking_intent_id"], consent.as_str());
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 600);
    assert!(c["c_hash"].is_string() && c["s_hash"].is_string());

    let v: Value = exchange(&http, &fake, a["code"].as_str().unwrap(), &id, &password)
        .await
        .json()
        .await
        .unwrap();
    let (_, c) = verified_id_token(&fake, v["id_token"].as_str().unwrap()).await;
    assert_eq!(c["openbanking_intent_id"], consent.as_str());
    assert_eq!(c["nonce"], "n-1");

    let other = FakeProvider::start(Config::default()).await.unwrap();
    assert!(
        fake_provider::verify_request_object(&other.jwks(), a["id_token"].as_str().unwrap())
            .is_err(),
        "each fake has its own key"
    );
}

#[tokio::test]
async fn opaque_id_token_mode_issues_oa_stg_tokens() {
    let fake = FakeProvider::start(Config {
        opaque_id_token: true,
        ..Config::default()
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let (id, password, consent) = client_with_consent(&http, &fake).await;
    let a = fake.authorise(&consent, Some("s"), None).unwrap();
    assert!(a.id_token.starts_with("oa_stg_") && a.id_token.len() > 20);
    assert!(!a.id_token.contains('.'));
    let v: Value = exchange(&http, &fake, &a.code, &id, &password)
        .await
        .json()
        .await
        .unwrap();
    assert!(v["id_token"].as_str().unwrap().starts_with("oa_stg_"));
    fake.set_opaque_id_token(false);
    let (_, _, consent) = client_with_consent(&http, &fake).await;
    let a = fake.authorise(&consent, None, None).unwrap();
    assert_eq!(a.id_token.split('.').count(), 3);
}

/// A TPP's PS256 signing key and the URL of its JWKS, served locally.
async fn tpp_key() -> (aws_lc_rs::rsa::KeyPair, String) {
    use aws_lc_rs::signature::KeyPair as _;
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let public = pair.public_key();
    let jwks = json!({"keys": [{
        "kty": "RSA", "kid": "tpp-1", "use": "sig", "alg": "PS256",
        "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
        "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
    }]});
    let app = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let jwks = jwks.clone();
            async move { axum::Json(jwks) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (pair, format!("http://{addr}/jwks"))
}

fn request_object(key: &aws_lc_rs::rsa::KeyPair, client_id: &str, consent_id: &str) -> String {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    let now = jiff::Timestamp::now().as_second();
    let header = json!({"alg": "PS256", "kid": "tpp-1", "typ": "JWT"});
    let claims = json!({
        "iss": client_id, "client_id": client_id, "aud": "https://bank",
        "response_type": "code id_token", "scope": "openid accounts",
        "redirect_uri": "https://tpp.example/callback", "state": "state-42", "nonce": "nonce-7",
        "claims": {"id_token": {"openbanking_intent_id": {"value": consent_id, "essential": true}}},
        "iat": now, "exp": now + 600,
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signature = vec![0; key.public_modulus_len()];
    key.sign(
        &aws_lc_rs::signature::RSA_PSS_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut signature,
    )
    .unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

#[tokio::test]
async fn authorisation_redirect_read_without_following_carries_code_id_token_and_state() {
    let fake = FakeProvider::start(Config::default()).await.unwrap();
    let (key, jwks_url) = tpp_key().await;
    fake.set_jwks_url(&jwks_url);
    let http = no_redirects();
    let (id, password, consent) = client_with_consent(&http, &fake).await;
    // The consent's Links.Self is its authorisation page; the TPP adds its request object.
    let page = format!("{}/create-consent?consentId={consent}", fake.base_url());
    let request =
        serde_urlencoded::to_string([("request", request_object(&key, &id, &consent))]).unwrap();
    let r = http.get(format!("{page}&{request}")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let (target, query) = location.split_once('?').unwrap();
    assert_eq!(target, "https://tpp.example/callback");
    let params: std::collections::HashMap<String, String> =
        serde_urlencoded::from_str(query).unwrap();
    assert_eq!(params["state"], "state-42");
    let (_, c) = verified_id_token(&fake, &params["id_token"]).await;
    assert_eq!(c["nonce"], "nonce-7", "the verified request object's nonce");
    assert_eq!(c["openbanking_intent_id"], consent.as_str());
    assert_eq!(c["aud"], id.as_str());
    assert_eq!(fake.calls().authorize, 1);

    let v: Value = exchange(&http, &fake, &params["code"], &id, &password)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        claims(v["access_token"].as_str().unwrap())["consentId"],
        consent.as_str()
    );

    // The admin API re-authorises with the remembered state and nonce.
    let again = admin_authorise(&http, &fake, &consent, None).await;
    assert_eq!(again["state"], "state-42");
    let (_, c) = verified_id_token(&fake, again["id_token"].as_str().unwrap()).await;
    assert_eq!(c["nonce"], "nonce-7");
}

#[tokio::test]
async fn calls_count_every_request_including_faulted_ones() {
    let fake = FakeProvider::start(Config::default()).await.unwrap();
    let http = no_redirects();
    let (id, password) = register(&http, &fake).await;
    let faults = [
        json!({"Status": 503}),
        json!({"RateLimited": {"retry_after": 1}}),
        json!("Malformed"),
        json!("Html"),
        json!({"Redirect": {"status": 302, "location": "http://127.0.0.1:9/"}}),
        json!({"Oversized": {"bytes": 4096}}),
        json!("ExpiredToken"),
        json!("MalformedToken"),
    ];
    for fault in &faults {
        let f = json!({"endpoint": "ClientToken", "fault": fault, "times": 1});
        assert_eq!(admin_fault(&http, &fake, f).await, 204);
    }
    for _ in &faults {
        token(&http, &fake, &id, &password).await;
    }
    let _ = http
        .get(format!("{}/no/such/path", fake.base_url()))
        .send()
        .await
        .unwrap();
    let calls: Value = http
        .get(format!("{}/__admin/calls", fake.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(calls["client_token"], faults.len());
    assert_eq!(calls["registration"], 1);
    assert_eq!(
        calls["total"],
        1 + faults.len() + 1,
        "admin calls are not counted, unknown paths are"
    );
}
