//! Request objects that FAPI 1 Advanced forbids are refused at `/authorize` with 400 and a
//! clear error; the consent stays AwaitingAuthorisation and nothing waits for a decision.

use crate::common::*;
use fake_provider::{ObAuthoriseOptions, ObOptions};
use serde_json::{json, Value};

/// Asserts `/authorize` refuses `jwt` with `error` and a description containing `needle`.
async fn refused(
    fake: &fake_provider::FakeProvider,
    tpp: &Tpp,
    jwt: &str,
    error: &str,
    needle: &str,
) {
    let r = authorize(fake, tpp, jwt).await;
    assert_eq!(r.status(), 400, "{needle}");
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"], error, "{e}");
    let description = e["error_description"].as_str().unwrap();
    assert!(
        description.contains(needle),
        "{description:?} lacks {needle:?}"
    );
}

#[tokio::test]
async fn request_objects_breaking_fapi_rules_are_refused() {
    let fake = bank(ObOptions::default()).await;
    let tpp = Tpp::at(&fake, "tpp-a").await;
    let other = Tpp::at(&fake, "tpp-b").await;
    let consent_id = consent(&fake, &tpp).await;
    let theirs = consent(&fake, &other).await;
    let now = jiff::Timestamp::now().as_second();
    type Tweak = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Tweak, &str)> = vec![
        (
            "wrong aud",
            Box::new(|c| c["aud"] = json!("https://another-bank.example")),
            "aud must be",
        ),
        (
            "exp 61 minutes after nbf",
            Box::new(move |c| c["exp"] = json!(now + 3660)),
            "at most 60 minutes",
        ),
        (
            "no nbf",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("nbf");
            }),
            "nbf is required",
        ),
        (
            "nbf in the future",
            Box::new(move |c| c["nbf"] = json!(now + 120)),
            "nbf is in the future",
        ),
        (
            "no exp",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            "exp is required",
        ),
        (
            "expired",
            Box::new(move |c| {
                c["nbf"] = json!(now - 700);
                c["exp"] = json!(now - 100);
            }),
            "expired",
        ),
        (
            "iss not the client",
            Box::new(|c| c["iss"] = json!("someone")),
            "iss",
        ),
        (
            "client_id claim differs",
            Box::new(|c| c["client_id"] = json!("tpp-b")),
            "client_id",
        ),
        (
            "no openid",
            Box::new(|c| c["scope"] = json!("accounts")),
            "openid",
        ),
        (
            "unregistered redirect_uri",
            Box::new(|c| c["redirect_uri"] = json!("https://evil.example/cb")),
            "redirect_uri",
        ),
        (
            "no state",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("state");
            }),
            "state is required",
        ),
        (
            "no nonce",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("nonce");
            }),
            "nonce is required",
        ),
        (
            "no intent",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("claims");
            }),
            "openbanking_intent_id",
        ),
        (
            "unknown intent",
            Box::new(|c| c["claims"]["id_token"]["openbanking_intent_id"]["value"] = json!("nope")),
            "openbanking_intent_id",
        ),
        (
            "bad response_mode",
            Box::new(|c| c["response_mode"] = json!("form_post")),
            "response_mode",
        ),
    ];
    for (name, tweak, needle) in &cases {
        let mut claims = tpp.request_claims(&fake, &consent_id);
        tweak(&mut claims);
        refused(
            &fake,
            &tpp,
            &tpp.sign("PS256", &claims),
            "invalid_request_object",
            needle,
        )
        .await;
        let _ = name;
    }
    let theirs_claims = tpp.request_claims(&fake, &theirs);
    refused(
        &fake,
        &tpp,
        &tpp.sign("PS256", &theirs_claims),
        "invalid_request_object",
        "openbanking_intent_id",
    )
    .await;

    let claims = tpp.request_claims(&fake, &consent_id);
    refused(
        &fake,
        &tpp,
        &tpp.sign("RS256", &claims),
        "invalid_request_object",
        "PS256 only",
    )
    .await;
    let signed_by_other = other.sign("PS256", &claims);
    refused(
        &fake,
        &tpp,
        &signed_by_other,
        "invalid_request_object",
        "signature",
    )
    .await;
    let err = fake
        .ob_authorise(&consent_id, true, ObAuthoriseOptions::default())
        .unwrap_err();
    assert!(err.contains("pending"), "nothing was stored: {err}");
    assert!(fake
        .consents()
        .iter()
        .all(|c| c.status == "AwaitingAuthorisation"));

    // The query must carry client_id, response_type and scope (with openid), as OIDC asks.
    let jwt = tpp.sign("PS256", &claims);
    let base = format!("{}/authorize", fake.base_url());
    for (query, error) in [
        (
            vec![
                ("client_id", "tpp-a"),
                ("scope", "openid accounts"),
                ("request", &jwt),
            ],
            "unsupported_response_type",
        ),
        (
            vec![
                ("client_id", "tpp-a"),
                ("response_type", "code id_token"),
                ("scope", "accounts"),
                ("request", &jwt),
            ],
            "invalid_scope",
        ),
        (
            vec![
                ("response_type", "code id_token"),
                ("scope", "openid"),
                ("request", &jwt),
            ],
            "invalid_request",
        ),
        (
            vec![
                ("client_id", "nobody"),
                ("response_type", "code id_token"),
                ("scope", "openid"),
                ("request", &jwt),
            ],
            "invalid_request",
        ),
        (
            vec![
                ("client_id", "tpp-a"),
                ("response_type", "code id_token"),
                ("scope", "openid"),
            ],
            "invalid_request",
        ),
    ] {
        let url = format!("{base}?{}", serde_urlencoded::to_string(&query).unwrap());
        let r = tpp.http.get(url).send().await.unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"],
            error,
            "{query:?}"
        );
    }
    assert_eq!(
        authorize(&fake, &tpp, &jwt).await.status(),
        200,
        "the correct one passes"
    );
}

#[tokio::test]
async fn request_aud_quirk_expects_another_audience() {
    let fake = bank(ObOptions {
        request_aud: Some("urn:bank:org-1".into()),
        ..ObOptions::default()
    })
    .await;
    let tpp = Tpp::at(&fake, "tpp-a").await;
    let consent_id = consent(&fake, &tpp).await;
    let mut claims = tpp.request_claims(&fake, &consent_id);
    refused(
        &fake,
        &tpp,
        &tpp.sign("PS256", &claims),
        "invalid_request_object",
        "aud must be urn:bank:org-1",
    )
    .await;
    claims["aud"] = json!(["urn:bank:org-1"]);
    assert_eq!(
        authorize(&fake, &tpp, &tpp.sign("PS256", &claims))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn an_unreachable_client_jwks_refuses_the_request_object() {
    let fake = bank(ObOptions::default()).await;
    let tpp = Tpp::at(&fake, "tpp-a").await;
    let consent_id = consent(&fake, &tpp).await;
    fake.add_client(
        "tpp-a",
        "tpp-a-secret",
        "http://127.0.0.1:9/jwks",
        &[REDIRECT],
    );
    let jwt = tpp.sign("PS256", &tpp.request_claims(&fake, &consent_id));
    refused(&fake, &tpp, &jwt, "invalid_request_object", "JWKS").await;
}
