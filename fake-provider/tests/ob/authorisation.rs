//! The customer's authorisation: request object at `/authorize`, the decision, the redirect
//! in the fragment or the query, the id_token verified as a relying party does, the code.

use crate::common::*;
use fake_provider::{ObAuthoriseOptions, ObOptions, ResponseMode};
use serde_json::{json, Value};

#[tokio::test]
async fn authorisation_redirects_in_the_fragment_with_a_verifiable_id_token() {
    let fake = bank(ObOptions::default()).await;
    let tpp = Tpp::at(&fake, "tpp-a").await;
    let consent_id = consent(&fake, &tpp).await;
    let jwt = tpp.sign("PS256", &tpp.request_claims(&fake, &consent_id));
    let page = authorize(&fake, &tpp, &jwt).await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains(&consent_id));
    assert_eq!(fake.calls().authorize, 1);
    let options = ObAuthoriseOptions {
        customer_id: Some("cust-1".into()),
        ..ObAuthoriseOptions::default()
    };
    let r = fake.ob_authorise(&consent_id, true, options).unwrap();
    let (target, sep, params) = split_redirect(&r.url);
    assert_eq!((target.as_str(), sep), (REDIRECT, '#'));
    assert_eq!(params["state"], "state-42");
    assert_eq!(Some(&params["code"]), r.code.as_ref());
    assert_eq!(Some(&params["id_token"]), r.id_token.as_ref());
    assert_eq!(params.len(), 3);

    let id_token = &params["id_token"];
    assert_eq!(header_of(id_token)["alg"], "PS256");
    let c = verify_id_token(&fake, &tpp, id_token)
        .await
        .expect("a correct id_token verifies");
    assert_eq!(c["iss"], fake.issuer().as_str());
    assert_eq!(c["aud"], "tpp-a");
    assert_eq!(c["sub"], "cust-1");
    assert_eq!(c["openbanking_intent_id"], consent_id.as_str());
    assert_eq!(c["nonce"], "nonce-7");
    assert_eq!(c["acr"], "urn:openbanking:psd2:sca");
    assert_eq!(c["c_hash"], half_hash(&params["code"]).as_str());
    assert_eq!(c["s_hash"], half_hash("state-42").as_str());
    assert!(
        c.get("at_hash").is_none(),
        "no access token in the authorisation response"
    );
    let (iat, exp) = (c["iat"].as_i64().unwrap(), c["exp"].as_i64().unwrap());
    assert_eq!(exp - iat, 300);
    assert!((iat - jiff::Timestamp::now().as_second()).abs() < 30);
    assert!(c["auth_time"].as_i64().unwrap() <= iat);
    assert_eq!(fake.consents()[0].status, "Authorised");
    assert_eq!(fake.consents()[0].customer_id.as_deref(), Some("cust-1"));

    let again = fake.ob_authorise(&consent_id, true, ObAuthoriseOptions::default());
    assert!(
        again.unwrap_err().contains("Authorised"),
        "the decision is taken once"
    );
}

#[tokio::test]
async fn response_mode_query_by_bank_option_request_object_or_decision() {
    let query_bank = bank(ObOptions {
        response_mode_query: true,
        ..ObOptions::default()
    })
    .await;
    let tpp = Tpp::at(&query_bank, "tpp-a").await;
    let (_, r) = decided(&query_bank, &tpp, true, ObAuthoriseOptions::default()).await;
    let (target, sep, params) = split_redirect(&r.url);
    assert_eq!((target.as_str(), sep), (REDIRECT, '?'));
    assert_eq!(params["state"], "state-42");
    let c = verify_id_token(&query_bank, &tpp, &params["id_token"])
        .await
        .unwrap();
    assert_eq!(c["c_hash"], half_hash(&params["code"]).as_str());

    let fragment = ObAuthoriseOptions {
        response_mode: Some(ResponseMode::Fragment),
        ..ObAuthoriseOptions::default()
    };
    let (_, r) = decided(&query_bank, &tpp, true, fragment).await;
    assert_eq!(
        split_redirect(&r.url).1,
        '#',
        "the decision overrides the bank"
    );

    let fake = bank(ObOptions::default()).await;
    let tpp = Tpp::at(&fake, "tpp-a").await;
    let consent_id = consent(&fake, &tpp).await;
    let mut claims = tpp.request_claims(&fake, &consent_id);
    claims["response_mode"] = json!("query");
    assert_eq!(
        authorize(&fake, &tpp, &tpp.sign("PS256", &claims))
            .await
            .status(),
        200
    );
    let r = fake
        .ob_authorise(&consent_id, true, ObAuthoriseOptions::default())
        .unwrap();
    assert_eq!(
        split_redirect(&r.url).1,
        '?',
        "the request object's response_mode"
    );
}

#[tokio::test]
async fn refusal_redirects_access_denied_and_rejects_the_consent() {
    let fake = bank(ObOptions::default()).await;
    let tpp = Tpp::at(&fake, "tpp-a").await;
    let (consent_id, r) = decided(&fake, &tpp, false, ObAuthoriseOptions::default()).await;
    let (target, sep, params) = split_redirect(&r.url);
    assert_eq!((target.as_str(), sep), (REDIRECT, '#'));
    assert_eq!(params.len(), 2);
    assert_eq!(
        (params["error"].as_str(), params["state"].as_str()),
        ("access_denied", "state-42")
    );
    assert!(r.code.is_none() && r.id_token.is_none());
    assert_eq!(r.error.as_deref(), Some("access_denied"));
    assert_eq!(fake.consents()[0].status, "Rejected");
    let jwt = tpp.sign("PS256", &tpp.request_claims(&fake, &consent_id));
    assert_eq!(
        authorize(&fake, &tpp, &jwt).await.status(),
        400,
        "no second chance"
    );

    let query = ObAuthoriseOptions {
        response_mode: Some(ResponseMode::Query),
        ..ObAuthoriseOptions::default()
    };
    let (_, r) = decided(&fake, &tpp, false, query).await;
    assert!(
        r.url
            .starts_with(&format!("{REDIRECT}?error=access_denied&state=state-42")),
        "{}",
        r.url
    );
}

#[tokio::test]
async fn decisions_need_a_pending_authorisation() {
    let fake = bank(ObOptions::default()).await;
    let tpp = Tpp::at(&fake, "tpp-a").await;
    let consent_id = consent(&fake, &tpp).await;
    let err = fake
        .ob_authorise(&consent_id, true, ObAuthoriseOptions::default())
        .unwrap_err();
    assert!(err.contains("pending"), "{err}");
    assert!(fake
        .ob_authorise("nope", true, ObAuthoriseOptions::default())
        .is_err());
    assert_eq!(fake.consents()[0].status, "AwaitingAuthorisation");
}

#[tokio::test]
async fn codes_are_single_use_and_bound_to_client_and_redirect_uri() {
    let fake = bank(ObOptions::default()).await;
    let tpp = Tpp::at(&fake, "tpp-a").await;
    let other = Tpp::at(&fake, "tpp-b").await;
    let (consent_id, r) = decided(&fake, &tpp, true, ObAuthoriseOptions::default()).await;
    let code = r.code.unwrap();
    let stolen = exchange(&fake, &other, &code).await;
    assert_eq!(stolen.status(), 400);
    assert_eq!(
        stolen.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    let elsewhere = token(
        &fake,
        &tpp,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "https://tpp.example/other"),
        ],
    )
    .await;
    assert_eq!(
        elsewhere.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    let ok = exchange(&fake, &tpp, &code).await;
    assert_eq!(ok.status(), 200, "failed attempts do not burn the code");
    let v: Value = ok.json().await.unwrap();
    assert_eq!(v["scope"], "openid accounts");
    let reused = exchange(&fake, &tpp, &code).await;
    assert_eq!(reused.status(), 400);
    assert_eq!(
        reused.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    let t = fake
        .tokens()
        .into_iter()
        .find(|t| t.grant_type == "authorization_code")
        .unwrap();
    assert_eq!(t.consent_id.as_deref(), Some(consent_id.as_str()));
    assert_eq!(fake.calls().auth_code_token, 4);

    // Codes expire (300 s by default).
    let (_, r) = decided(&fake, &tpp, true, ObAuthoriseOptions::default()).await;
    fake.advance_clock(301);
    assert_eq!(
        exchange(&fake, &tpp, r.code.as_deref().unwrap())
            .await
            .status(),
        400
    );
}

#[tokio::test]
async fn intent_in_sub_quirk_puts_the_consent_id_in_sub() {
    let fake = bank(ObOptions {
        intent_in_sub: true,
        ..ObOptions::default()
    })
    .await;
    let tpp = Tpp::at(&fake, "tpp-a").await;
    let (consent_id, r) = decided(&fake, &tpp, true, ObAuthoriseOptions::default()).await;
    let c = verify_id_token(&fake, &tpp, r.id_token.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(c["sub"], consent_id.as_str());
    assert_eq!(c["openbanking_intent_id"], consent_id.as_str());
}

#[tokio::test]
async fn the_login_page_buttons_send_the_browser_to_the_tpp() {
    let fake = bank(ObOptions::default()).await;
    let tpp = Tpp::at(&fake, "tpp-a").await;
    let consent_id = consent(&fake, &tpp).await;
    let jwt = tpp.sign("PS256", &tpp.request_claims(&fake, &consent_id));
    let html = authorize(&fake, &tpp, &jwt).await.text().await.unwrap();
    let action = format!("/__admin/consents/{consent_id}/authorise");
    assert!(html.contains(&action), "{html}");
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = browser
        .post(format!("{}{action}", fake.base_url()))
        .form(&[("approve", "true")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap();
    let (target, _, params) = split_redirect(location);
    assert_eq!(target, REDIRECT);
    assert!(params.contains_key("code") && params.contains_key("id_token"));

    // The admin route with a JSON decision answers the redirect as JSON.
    let consent_id = consent(&fake, &tpp).await;
    let jwt = tpp.sign("PS256", &tpp.request_claims(&fake, &consent_id));
    authorize(&fake, &tpp, &jwt).await;
    let v: Value = browser
        .post(format!(
            "{}/__admin/consents/{consent_id}/authorise",
            fake.base_url()
        ))
        .json(&json!({"approve": true, "id_token_fault": "WrongNonce", "response_mode": "query"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["url"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{REDIRECT}?code=")));
    assert_eq!(
        claims_of(v["id_token"].as_str().unwrap())["nonce"],
        "nonce-7-wrong"
    );
}
