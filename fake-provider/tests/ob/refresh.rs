//! The code exchange's refresh token and the refresh grant: rotation, expiry, revocation,
//! quirks and the token records.

use crate::common::*;
use fake_provider::{FakeProvider, ObAuthoriseOptions, ObOptions};
use serde_json::Value;

const EXPIRES_AT: &str = "http://openbanking.org.uk/refresh_token_expires_at";

/// An authorised consent and the code exchange's answer.
async fn exchanged(fake: &FakeProvider, tpp: &Tpp) -> (String, Value) {
    let (consent_id, r) = decided(fake, tpp, true, ObAuthoriseOptions::default()).await;
    let answer = exchange(fake, tpp, r.code.as_deref().unwrap()).await;
    assert_eq!(answer.status(), 200);
    (consent_id, answer.json().await.unwrap())
}

async fn refreshed(fake: &FakeProvider, tpp: &Tpp, refresh_token: &Value) -> reqwest::Response {
    refresh(fake, tpp, refresh_token.as_str().unwrap()).await
}

#[tokio::test]
async fn the_code_exchange_answers_a_refresh_token_its_expiry_and_an_id_token() {
    let fake = bank(ObOptions::default()).await;
    let tpp = Tpp::at(&fake, "tpp-a").await;
    let (consent_id, v) = exchanged(&fake, &tpp).await;
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 300);
    assert_eq!(v["scope"], "openid accounts");
    assert!(v["refresh_token"].as_str().is_some_and(|t| t.len() >= 32));
    let expires_at = v[EXPIRES_AT].as_i64().unwrap();
    let ninety_days = 90 * 24 * 3600;
    assert!((expires_at - jiff::Timestamp::now().as_second() - ninety_days).abs() < 30);
    let c = verify_id_token(&fake, &tpp, v["id_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(c["openbanking_intent_id"], consent_id.as_str());
    assert_eq!(c["nonce"], "nonce-7");
    assert_eq!(
        c["at_hash"],
        half_hash(v["access_token"].as_str().unwrap()).as_str()
    );
    assert!(c.get("c_hash").is_none());
    let t = fake.tokens().pop().unwrap();
    assert_eq!(t.grant_type, "authorization_code");
    assert_eq!(
        t.refresh_token_expires_at.map(|t| t.as_second()),
        Some(expires_at)
    );
}

#[tokio::test]
async fn refresh_rotates_and_the_old_refresh_token_is_refused() {
    let fake = bank(ObOptions::default()).await;
    let tpp = Tpp::at(&fake, "tpp-a").await;
    let other = Tpp::at(&fake, "tpp-b").await;
    let (consent_id, first) = exchanged(&fake, &tpp).await;
    let stolen = refreshed(&fake, &other, &first["refresh_token"]).await;
    assert_eq!(
        stolen.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );

    // Past the first access token's expiry, on the bank's clock.
    fake.advance_clock(301);
    let r = refreshed(&fake, &tpp, &first["refresh_token"]).await;
    assert_eq!(r.status(), 200);
    let second: Value = r.json().await.unwrap();
    assert_ne!(second["access_token"], first["access_token"]);
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_eq!(
        second[EXPIRES_AT], first[EXPIRES_AT],
        "rotation keeps the expiry"
    );
    let c = verify_id_token(&fake, &tpp, second["id_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(c["openbanking_intent_id"], consent_id.as_str());
    assert!(c.get("nonce").is_none(), "no nonce on refresh");
    assert_eq!(
        c["at_hash"],
        half_hash(second["access_token"].as_str().unwrap()).as_str()
    );

    let old = refreshed(&fake, &tpp, &first["refresh_token"]).await;
    assert_eq!(old.status(), 400);
    assert_eq!(old.json::<Value>().await.unwrap()["error"], "invalid_grant");
    assert_eq!(
        refreshed(&fake, &tpp, &second["refresh_token"])
            .await
            .status(),
        200
    );

    let tokens = fake.tokens();
    let grants: Vec<&str> = tokens.iter().map(|t| t.grant_type.as_str()).collect();
    assert_eq!(
        grants,
        vec![
            "client_credentials",
            "authorization_code",
            "refresh_token",
            "refresh_token"
        ]
    );
    assert!(
        tokens[2].issued_at > tokens[1].expires_at,
        "refreshed past the first expiry"
    );
    assert_eq!(tokens[2].consent_id.as_deref(), Some(consent_id.as_str()));
    assert_eq!(
        tokens[2].refresh_token_expires_at,
        tokens[1].refresh_token_expires_at
    );
    assert_eq!(fake.calls().refresh_token, 4);
}

#[tokio::test]
async fn without_rotation_the_refresh_token_stays_valid() {
    let fake = bank(ObOptions {
        rotate_refresh_tokens: false,
        ..ObOptions::default()
    })
    .await;
    let tpp = Tpp::at(&fake, "tpp-a").await;
    let (_, first) = exchanged(&fake, &tpp).await;
    for _ in 0..2 {
        let v: Value = refreshed(&fake, &tpp, &first["refresh_token"])
            .await
            .json()
            .await
            .unwrap();
        assert!(v["access_token"].is_string());
        assert!(
            v.get("refresh_token").is_none(),
            "none new: keep the old one"
        );
        assert_eq!(v[EXPIRES_AT], first[EXPIRES_AT]);
    }
}

#[tokio::test]
async fn revoked_or_expired_consents_and_expired_refresh_tokens_end_refresh() {
    let fake = bank(ObOptions {
        refresh_token_lifetime_secs: 1000,
        ..ObOptions::default()
    })
    .await;
    let tpp = Tpp::at(&fake, "tpp-a").await;
    let (consent_id, v) = exchanged(&fake, &tpp).await;
    let deleted = tpp
        .http
        .delete(format!("{}/{consent_id}", consents_url(&fake)))
        .bearer_auth(client_token(&fake, &tpp).await)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let r = refreshed(&fake, &tpp, &v["refresh_token"]).await;
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"], "invalid_grant");
    assert!(e["error_description"].as_str().unwrap().contains("Revoked"));

    let (_, v) = exchanged(&fake, &tpp).await;
    let left = v[EXPIRES_AT].as_i64().unwrap() - jiff::Timestamp::now().as_second();
    assert!((999..=1000).contains(&left), "{left}");
    fake.advance_clock(1001);
    let e: Value = refreshed(&fake, &tpp, &v["refresh_token"])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(e["error"], "invalid_grant");
    assert!(e["error_description"].as_str().unwrap().contains("expired"));
    let unknown: Value = refresh(&fake, &tpp, "nope").await.json().await.unwrap();
    assert_eq!(unknown["error"], "invalid_grant");
}

#[tokio::test]
async fn quirks_omit_the_refresh_token_its_expiry_or_the_refresh_id_token() {
    let none = bank(ObOptions {
        no_refresh_token: true,
        ..ObOptions::default()
    })
    .await;
    let tpp = Tpp::at(&none, "tpp-a").await;
    let (_, v) = exchanged(&none, &tpp).await;
    assert!(v.get("refresh_token").is_none() && v.get(EXPIRES_AT).is_none());
    assert!(v["id_token"].is_string());
    assert!(none
        .tokens()
        .pop()
        .unwrap()
        .refresh_token_expires_at
        .is_none());

    let quiet = bank(ObOptions {
        no_refresh_token_expires_at: true,
        no_id_token_on_refresh: true,
        token_type_lowercase: true,
        ..ObOptions::default()
    })
    .await;
    let tpp = Tpp::at(&quiet, "tpp-a").await;
    let (_, v) = exchanged(&quiet, &tpp).await;
    assert!(v["refresh_token"].is_string() && v.get(EXPIRES_AT).is_none());
    assert_eq!(v["token_type"], "bearer");
    let r: Value = refreshed(&quiet, &tpp, &v["refresh_token"])
        .await
        .json()
        .await
        .unwrap();
    assert!(
        r["access_token"].is_string() && r.get("id_token").is_none() && r.get(EXPIRES_AT).is_none()
    );
}
