//! Client credentials at `POST /token` with `client_secret_basic` and `client_secret_post`.

use crate::common::*;
use fake_provider::{Config, ObOptions};
use serde_json::Value;

async fn post_form(fake: &fake_provider::FakeProvider, form: &[(&str, &str)]) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/token", fake.base_url()))
        .form(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn client_credentials_with_basic_and_post_authentication() {
    let fake = bank_with(
        Config {
            token_lifetime_secs: 120,
            expires_in: Some(3600),
            ..Config::default()
        },
        ObOptions::default(),
    )
    .await;
    let tpp = Tpp::at(&fake, "tpp-a").await;
    let basic = token(
        &fake,
        &tpp,
        &[("grant_type", "client_credentials"), ("scope", "accounts")],
    )
    .await;
    assert_eq!(basic.status(), 200);
    assert_eq!(basic.headers()["cache-control"], "no-store");
    let v: Value = basic.json().await.unwrap();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["scope"], "accounts");
    assert_eq!(
        v["expires_in"], 3600,
        "what expires_in says is configurable, as in Leatherback mode"
    );
    let access = v["access_token"].as_str().unwrap();
    assert!(
        access.len() >= 32 && !access.contains('.'),
        "opaque: {access}"
    );

    let post = post_form(
        &fake,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "accounts"),
            ("client_id", "tpp-a"),
            ("client_secret", "tpp-a-secret"),
        ],
    )
    .await;
    assert_eq!(post.status(), 200);
    let v: Value = post.json().await.unwrap();
    assert_ne!(v["access_token"].as_str().unwrap(), access);

    let tokens = fake.tokens();
    assert_eq!(tokens.len(), 2);
    let t = &tokens[0];
    assert_eq!(
        (t.client_id.as_str(), t.grant_type.as_str()),
        ("tpp-a", "client_credentials")
    );
    assert_eq!(t.expires_at.as_second() - t.issued_at.as_second(), 120);
    assert!(t.consent_id.is_none() && t.refresh_token_expires_at.is_none());
    assert_eq!(fake.calls().client_token, 2);
}

#[tokio::test]
async fn wrong_or_missing_client_credentials_are_invalid_client() {
    let fake = bank(ObOptions::default()).await;
    let tpp = Tpp::at(&fake, "tpp-a").await;
    let wrong_basic = reqwest::Client::new()
        .post(format!("{}/token", fake.base_url()))
        .basic_auth("tpp-a", Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_basic.status(), 401);
    assert!(wrong_basic.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    assert_eq!(
        wrong_basic.json::<Value>().await.unwrap()["error"],
        "invalid_client"
    );
    for form in [
        vec![
            ("grant_type", "client_credentials"),
            ("client_id", "tpp-a"),
            ("client_secret", "wrong"),
        ],
        vec![("grant_type", "client_credentials"), ("client_id", "tpp-a")],
        vec![
            ("grant_type", "client_credentials"),
            ("client_id", "nobody"),
            ("client_secret", "tpp-a-secret"),
        ],
        vec![("grant_type", "client_credentials")],
    ] {
        let r = post_form(&fake, &form).await;
        assert_eq!(r.status(), 401, "{form:?}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    }
    let assertion = post_form(
        &fake,
        &[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", "a.b.c"),
        ],
    )
    .await;
    assert_eq!(assertion.status(), 401, "private_key_jwt is not served yet");
    let both = reqwest::Client::new()
        .post(format!("{}/token", fake.base_url()))
        .basic_auth("tpp-a", Some("tpp-a-secret"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_secret", "tpp-a-secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(both.status(), 400);
    let json_body = reqwest::Client::new()
        .post(format!("{}/token", fake.base_url()))
        .basic_auth("tpp-a", Some("tpp-a-secret"))
        .json(&serde_json::json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_body.status(), 400);
    let bad_scope = token(
        &fake,
        &tpp,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "accounts admin"),
        ],
    )
    .await;
    assert_eq!(
        bad_scope.json::<Value>().await.unwrap()["error"],
        "invalid_scope"
    );
    let bad_grant = token(&fake, &tpp, &[("grant_type", "password")]).await;
    assert_eq!(
        bad_grant.json::<Value>().await.unwrap()["error"],
        "unsupported_grant_type"
    );
    assert!(fake.tokens().is_empty());
}

#[tokio::test]
async fn token_type_lowercase_quirk_answers_bearer() {
    let fake = bank(ObOptions {
        token_type_lowercase: true,
        ..ObOptions::default()
    })
    .await;
    let tpp = Tpp::at(&fake, "tpp-a").await;
    let v: Value = token(&fake, &tpp, &[("grant_type", "client_credentials")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["token_type"], "bearer");
    assert_eq!(v["scope"], "accounts", "the default scope");
}
