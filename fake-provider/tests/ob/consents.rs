//! Account-access consents: create, get, delete, statuses, expiry, the standard's errors.

use crate::common::*;
use fake_provider::{ObAuthoriseOptions, ObOptions};
use serde_json::{json, Value};

fn body() -> Value {
    json!({"Data": {
        "Permissions": ["ReadAccountsBasic", "ReadBalances"],
        "ExpirationDateTime": "2099-01-01T00:00:00+00:00",
        "TransactionFromDateTime": "2024-01-01T00:00:00+00:00",
    }, "Risk": {}})
}

#[tokio::test]
async fn consents_are_created_read_and_revoked_with_the_standard_shapes() {
    let fake = bank(ObOptions::default()).await;
    let tpp = Tpp::at(&fake, "tpp-a").await;
    let http = tpp.http.clone();
    let bearer = client_token(&fake, &tpp).await;
    let created = http
        .post(consents_url(&fake))
        .bearer_auth(&bearer)
        .header(
            "x-fapi-interaction-id",
            "93bac548-d2de-4546-b106-880a5018460d",
        )
        .json(&body())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(
        created.headers()["x-fapi-interaction-id"],
        "93bac548-d2de-4546-b106-880a5018460d"
    );
    let v: Value = created.json().await.unwrap();
    let id = v["Data"]["ConsentId"].as_str().unwrap().to_string();
    assert_eq!(v["Data"]["Status"], "AwaitingAuthorisation");
    assert_eq!(
        v["Data"]["Permissions"],
        json!(["ReadAccountsBasic", "ReadBalances"])
    );
    assert_eq!(v["Data"]["ExpirationDateTime"], "2099-01-01T00:00:00+00:00");
    assert_eq!(
        v["Data"]["TransactionFromDateTime"],
        "2024-01-01T00:00:00+00:00"
    );
    assert!(v["Data"].get("TransactionToDateTime").is_none());
    for field in ["CreationDateTime", "StatusUpdateDateTime"] {
        let t = v["Data"][field].as_str().unwrap();
        assert!(t.ends_with("+00:00"), "{t}");
        t.parse::<jiff::Timestamp>().unwrap();
    }
    assert_eq!(v["Risk"], json!({}));
    assert_eq!(v["Meta"]["TotalPages"], 1);
    let one = format!("{}/{id}", consents_url(&fake));
    assert_eq!(v["Links"]["Self"], one.as_str());

    let got = http.get(&one).bearer_auth(&bearer).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert!(
        !got.headers()["x-fapi-interaction-id"].is_empty(),
        "generated when not sent"
    );
    let g: Value = got.json().await.unwrap();
    assert_eq!(g["Data"]["ConsentId"], id.as_str());
    assert_eq!(g["Data"]["CreationDateTime"], v["Data"]["CreationDateTime"]);

    let deleted = http.delete(&one).bearer_auth(&bearer).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    assert!(deleted.bytes().await.unwrap().is_empty());
    let g: Value = http
        .get(&one)
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(g["Data"]["Status"], "Revoked");
    assert_eq!(fake.consents()[0].status, "Revoked");
    assert_eq!(
        http.delete(&one)
            .bearer_auth(&bearer)
            .send()
            .await
            .unwrap()
            .status(),
        204,
        "idempotent"
    );
    let calls = fake.calls();
    assert_eq!(
        (
            calls.consent_create,
            calls.consent_get,
            calls.consent_delete
        ),
        (1, 2, 2)
    );
}

/// The consent's `Data` as GET answers it.
async fn data(fake: &fake_provider::FakeProvider, bearer: &str, id: &str) -> Value {
    let v: Value = reqwest::Client::new()
        .get(format!("{}/{id}", consents_url(fake)))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["Data"].clone()
}

#[tokio::test]
async fn statuses_follow_authorisation_refusal_and_expiry() {
    let fake = bank(ObOptions::default()).await;
    let tpp = Tpp::at(&fake, "tpp-a").await;
    let http = tpp.http.clone();
    let bearer = client_token(&fake, &tpp).await;
    let (approved, _) = decided(&fake, &tpp, true, ObAuthoriseOptions::default()).await;
    assert_eq!(
        data(&fake, &bearer, &approved).await["Status"],
        "Authorised"
    );
    let (refused, _) = decided(&fake, &tpp, false, ObAuthoriseOptions::default()).await;
    assert_eq!(data(&fake, &bearer, &refused).await["Status"], "Rejected");

    // Expiry by ExpirationDateTime, reached by advancing the bank's clock.
    let soon = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600)).to_string();
    let mut b = body();
    b["Data"]["ExpirationDateTime"] = json!(soon);
    let v: Value = http
        .post(consents_url(&fake))
        .bearer_auth(&bearer)
        .json(&b)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let expiring = v["Data"]["ConsentId"].as_str().unwrap().to_string();
    fake.advance_clock(7200);
    let bearer = client_token(&fake, &tpp).await;
    let v = data(&fake, &bearer, &expiring).await;
    assert_eq!(v["Status"], "Expired");
    let updated: jiff::Timestamp = v["StatusUpdateDateTime"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        updated.as_second(),
        soon.parse::<jiff::Timestamp>().unwrap().as_second()
    );
    assert_eq!(
        data(&fake, &bearer, &approved).await["Status"],
        "Authorised",
        "2099 is far away"
    );
}

#[tokio::test]
async fn consent_routes_refuse_bad_tokens_bodies_and_other_clients() {
    let fake = bank(ObOptions {
        api_prefix: "/open-banking/v4.0/aisp/".into(),
        ..ObOptions::default()
    })
    .await;
    let tpp = Tpp::at(&fake, "tpp-a").await;
    let other = Tpp::at(&fake, "tpp-b").await;
    let http = tpp.http.clone();
    let url = format!(
        "{}/open-banking/v4.0/aisp/account-access-consents",
        fake.base_url()
    );
    assert_eq!(
        http.post(consents_url(&fake))
            .json(&body())
            .send()
            .await
            .unwrap()
            .status(),
        404,
        "the prefix is configurable"
    );
    let no_token = http.post(&url).json(&body()).send().await.unwrap();
    assert_eq!(no_token.status(), 401);
    let e: Value = no_token.json().await.unwrap();
    assert_eq!(e["Code"], "401 Unauthorized");
    assert_eq!(e["Errors"][0]["ErrorCode"], "UK.OBIE.Header.Invalid");
    let bearer = client_token(&fake, &tpp).await;
    let mut no_permissions = body();
    no_permissions["Data"]["Permissions"] = json!([]);
    let r = http
        .post(&url)
        .bearer_auth(&bearer)
        .json(&no_permissions)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["Errors"][0]["ErrorCode"], "UK.OBIE.Field.Missing");
    assert_eq!(e["Errors"][0]["Path"], "Data.Permissions");
    let mut past = body();
    past["Data"]["ExpirationDateTime"] = json!("2001-01-01T00:00:00+00:00");
    let r = http
        .post(&url)
        .bearer_auth(&bearer)
        .json(&past)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["Errors"][0]["ErrorCode"],
        "UK.OBIE.Field.InvalidDate"
    );

    let v: Value = http
        .post(&url)
        .bearer_auth(&bearer)
        .json(&body())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let one = format!("{url}/{}", v["Data"]["ConsentId"].as_str().unwrap());
    assert_eq!(v["Links"]["Self"], one.as_str());
    let theirs = client_token(&fake, &other).await;
    assert_eq!(
        http.get(&one)
            .bearer_auth(&theirs)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        http.delete(&one)
            .bearer_auth(&theirs)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        http.get(format!("{url}/nope"))
            .bearer_auth(&bearer)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(fake.consents()[0].status, "AwaitingAuthorisation");
}
