//! Discovery, JWKS and key rotation; faults, the rate limit and call counts on the new routes.

use crate::common::*;
use fake_provider::{Config, Endpoint, Fault, ObAuthoriseOptions, ObOptions};
use serde_json::Value;

async fn document(base: &str) -> Value {
    reqwest::get(format!("{base}/.well-known/openid-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn discovery_document_lists_endpoints_algorithms_and_auth_methods() {
    let fake = bank(ObOptions::default()).await;
    let base = fake.base_url();
    let d = document(&base).await;
    assert!(!base.ends_with('/'));
    assert_eq!(d["issuer"], base.as_str());
    assert_eq!(fake.issuer(), base);
    assert_eq!(d["authorization_endpoint"], format!("{base}/authorize"));
    assert_eq!(d["token_endpoint"], format!("{base}/token"));
    assert_eq!(d["jwks_uri"], format!("{base}/jwks"));
    assert_eq!(d["registration_endpoint"], format!("{base}/register"));
    assert_eq!(
        d["response_types_supported"],
        serde_json::json!(["code id_token"])
    );
    assert_eq!(
        d["response_modes_supported"],
        serde_json::json!(["fragment", "query"])
    );
    assert_eq!(
        d["id_token_signing_alg_values_supported"],
        serde_json::json!(["PS256"])
    );
    assert_eq!(
        d["request_object_signing_alg_values_supported"],
        serde_json::json!(["PS256"])
    );
    assert_eq!(
        d["token_endpoint_auth_methods_supported"],
        serde_json::json!([
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
            "tls_client_auth"
        ])
    );
    assert_eq!(
        d["scopes_supported"],
        serde_json::json!(["openid", "accounts"])
    );
    let grants = d["grant_types_supported"].as_array().unwrap();
    for g in ["authorization_code", "refresh_token", "client_credentials"] {
        assert!(grants.iter().any(|v| v == g), "{g}");
    }
    let claims = d["claims_supported"].as_array().unwrap();
    assert!(claims.iter().any(|c| c == "openbanking_intent_id"));
    assert_eq!(fake.calls().discovery, 1);
}

#[tokio::test]
async fn incomplete_discovery_lacks_jwks_uri_and_token_endpoint() {
    let fake = bank(ObOptions {
        incomplete_discovery: true,
        ..ObOptions::default()
    })
    .await;
    let d = document(&fake.base_url()).await;
    assert!(d.get("jwks_uri").is_none());
    assert!(d.get("token_endpoint").is_none());
    assert_eq!(d["issuer"], fake.issuer().as_str());
    assert!(d["authorization_endpoint"].is_string());
    // The routes themselves are still served.
    let jwks: Value = reqwest::get(format!("{}/jwks", fake.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn rotation_publishes_both_keys_and_signs_with_the_new_one() {
    let fake = bank(ObOptions::default()).await;
    let tpp = Tpp::at(&fake, "tpp-a").await;
    let before: Value = reqwest::get(format!("{}/jwks", fake.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let old_kid = before["keys"][0]["kid"].as_str().unwrap().to_string();
    assert_eq!(before["keys"][0]["kty"], "RSA");
    assert_eq!(before["keys"][0]["alg"], "PS256");
    let (_, r) = decided(&fake, &tpp, true, ObAuthoriseOptions::default()).await;
    assert_eq!(
        header_of(r.id_token.as_deref().unwrap())["kid"],
        old_kid.as_str()
    );

    let new_kid = fake.rotate_bank_key().unwrap();
    assert_ne!(new_kid, old_kid);
    let after = fake.jwks();
    let kids: Vec<&str> = after["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, vec![old_kid.as_str(), new_kid.as_str()]);
    let (_, r) = decided(&fake, &tpp, true, ObAuthoriseOptions::default()).await;
    let id_token = r.id_token.unwrap();
    assert_eq!(header_of(&id_token)["kid"], new_kid.as_str());
    verify_id_token(&fake, &tpp, &id_token).await.unwrap();

    // The admin route rotates too.
    let v: Value = reqwest::Client::new()
        .post(format!("{}/__admin/rotate-key", fake.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fake.jwks()["keys"][2]["kid"], v["kid"]);
}

#[tokio::test]
async fn faults_rate_limit_and_counts_apply_to_the_new_routes() {
    let fake = bank(ObOptions::default()).await;
    let tpp = Tpp::at(&fake, "tpp-a").await;
    let base = fake.base_url();
    fake.inject(Endpoint::Discovery, Fault::Status(503), Some(1));
    fake.inject(Endpoint::Jwks, Fault::Oversized { bytes: 100 }, Some(1));
    fake.inject(Endpoint::Authorize, Fault::Html, Some(1));
    fake.inject(
        Endpoint::RefreshToken,
        Fault::RateLimited {
            retry_after: Some(3),
        },
        Some(1),
    );
    fake.inject(Endpoint::ClientToken, Fault::ExpiredToken, Some(1));
    let discovery = reqwest::get(format!("{base}/.well-known/openid-configuration"))
        .await
        .unwrap();
    assert_eq!(discovery.status(), 503);
    let jwks = reqwest::get(format!("{base}/jwks"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(jwks.len() == 100 && jwks.starts_with(b"{\"keys\":[{\"kty\":\""));
    assert_eq!(authorize(&fake, &tpp, "x.y.z").await.status(), 502);
    let limited = refresh(&fake, &tpp, "whatever").await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "3");
    let expired: Value = token(&fake, &tpp, &[("grant_type", "client_credentials")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(expired["expires_in"], 0);
    let refused = reqwest::Client::new()
        .post(consents_url(&fake))
        .bearer_auth(expired["access_token"].as_str().unwrap())
        .json(&serde_json::json!({"Data": {"Permissions": ["ReadAccountsBasic"]}, "Risk": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "the fake considers it expired too");
    let calls = fake.calls();
    assert_eq!(
        (
            calls.discovery,
            calls.jwks,
            calls.authorize,
            calls.refresh_token,
            calls.client_token,
            calls.consent_create
        ),
        (1, 1, 1, 1, 1, 1)
    );
    assert_eq!(calls.total, 6);

    let limited = bank_with(
        Config {
            rate_limit: Some(2),
            ..Config::default()
        },
        ObOptions::default(),
    )
    .await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = reqwest::get(format!(
            "{}/.well-known/openid-configuration",
            limited.base_url()
        ))
        .await
        .unwrap();
        if r.status() == 429 {
            assert_eq!(r.headers()["retry-after"], "1");
        }
        statuses.push(r.status().as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(limited.calls().rate_limited >= 1);
}
