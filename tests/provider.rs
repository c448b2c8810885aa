//! The provider client against the fake provider: every documented call, error classification
//! and the rate limit. No Kubernetes involved.

use fake_provider::{Config, Endpoint, FakeProvider, Fault};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tpp_operator::provider::{
    ClientCredentials, ConsentRequest, ConsentRequestData, ProviderClient, ProviderConfig,
    ProviderError, RegistrationRequest, Sensitive, Target,
};
use tpp_operator::telemetry::Metrics;
use url::Url;

fn client(timeout_ms: u64, rate: f64, burst: u32) -> ProviderClient {
    let config = ProviderConfig {
        timeout: Duration::from_millis(timeout_ms),
        rate_limit: rate,
        burst,
        ..ProviderConfig::default()
    };
    ProviderClient::new(&config, Arc::new(Metrics::new())).expect("client")
}

fn organisation() -> RegistrationRequest {
    RegistrationRequest {
        country_iso: "GB".into(),
        address: "1 Roada Way".into(),
        name: "Cway".into(),
        email: "c@finance.co".into(),
        certificate_type: "account".into(),
        callback_url: "https://cway.example/cb".into(),
    }
}

/// The fake as a Leatherback provider with the client's default limits.
fn target(fake: &FakeProvider, c: &ProviderClient) -> Target {
    let url: Url = fake.base_url().parse().expect("url");
    Target::leatherback(
        "fake",
        url,
        c.default_limits().clone(),
        Default::default(),
        None,
    )
    .expect("target")
}

async fn registered(
    fake: &FakeProvider,
    c: &ProviderClient,
) -> (Target, ClientCredentials, Sensitive) {
    let base = target(fake, c);
    let reg = c
        .register(&base, &Sensitive::new("sig"), &organisation())
        .await
        .expect("register");
    let creds = ClientCredentials {
        client_id: reg.client_id,
        certificate: reg.certificate,
    };
    let token = c
        .client_token(&base, &creds, "account")
        .await
        .expect("token");
    (base, creds, token.access_token)
}

fn consent_request() -> ConsentRequest {
    ConsentRequest {
        data: ConsentRequestData {
            permissions: vec!["ReadAccountsBasic".into(), "ReadAccountsDetail".into()],
            expiration_date_time: Some("2030-01-01T00:00:00Z".into()),
            transaction_from_date_time: None,
            transaction_to_date_time: None,
        },
        risk: serde_json::json!({}),
    }
}

#[tokio::test]
async fn consent_lifecycle_and_code_exchange() {
    let fake = FakeProvider::start(Config::default()).await.expect("fake");
    let c = client(2_000, 100.0, 100);
    let (base, creds, token) = registered(&fake, &c).await;
    let created = c
        .create_consent(&base, &token, &consent_request())
        .await
        .expect("create");
    assert_eq!(created.data.status, "AwaitingAuthorisation");
    let frac = created
        .data
        .creation_date_time
        .as_deref()
        .and_then(|t| t.split('.').nth(1))
        .unwrap_or_default();
    assert_eq!(frac.len(), 8, "7 fractional digits kept as sent");
    assert!(created
        .links
        .self_
        .as_deref()
        .is_some_and(|l| l.contains(&created.data.consent_id)));
    let id = created.data.consent_id.clone();
    assert_eq!(
        c.get_consent(&base, &token, &id)
            .await
            .expect("get")
            .data
            .status,
        "AwaitingAuthorisation"
    );

    let code = Sensitive::new(fake.issue_authorization_code(&id).expect("code"));
    let customer = c
        .exchange_code(&base, &creds, &code, "https://cway.example/cb")
        .await
        .expect("exchange");
    assert!(customer.id_token.is_some());
    let replay = c
        .exchange_code(&base, &creds, &code, "https://cway.example/cb")
        .await
        .expect_err("a code works once");
    assert_eq!(replay.status(), Some(400));
    assert!(!replay.is_transient());

    c.delete_consent(&base, &token, &id).await.expect("revoke");
    assert_eq!(
        c.get_consent(&base, &token, &id)
            .await
            .expect("get")
            .data
            .status,
        "Revoked"
    );

    // A provider without GET/DELETE: 405, permanent, so the caller can say "unknown".
    fake.set_consent_get_delete(false);
    let missing = c.get_consent(&base, &token, &id).await.expect_err("405");
    assert_eq!(missing.status(), Some(405));
    assert!(!missing.is_transient());
}

#[tokio::test]
async fn errors_are_classified() {
    let fake = FakeProvider::start(Config::default()).await.expect("fake");
    let c = client(500, 100.0, 100);
    let (base, creds, _) = registered(&fake, &c).await;

    fake.inject(Endpoint::ClientToken, Fault::Html, Some(1));
    let e = c
        .client_token(&base, &creds, "account")
        .await
        .expect_err("502");
    assert!(e.is_transient() && e.status() == Some(502));

    fake.inject(
        Endpoint::ClientToken,
        Fault::Delay(Duration::from_secs(2)),
        Some(1),
    );
    let e = c
        .client_token(&base, &creds, "account")
        .await
        .expect_err("timeout");
    assert!(matches!(e, ProviderError::Timeout { .. }), "{e:?}");
    assert!(e.outcome_unknown());

    fake.inject(Endpoint::Registration, Fault::Malformed, Some(1));
    let e = c
        .register(&base, &Sensitive::new("sig"), &organisation())
        .await
        .expect_err("malformed");
    assert!(
        matches!(e, ProviderError::Malformed { .. }) && e.outcome_unknown(),
        "{e:?}"
    );

    let wrong = ClientCredentials {
        client_id: creds.client_id.clone(),
        certificate: Sensitive::new("wrong-password"),
    };
    let e = c
        .client_token(&base, &wrong, "account")
        .await
        .expect_err("401");
    assert_eq!(e.status(), Some(401));
    assert!(!e.is_transient());
    assert!(!e.to_string().contains("wrong-password"));

    let closed = Target::leatherback(
        "closed",
        "http://127.0.0.1:9".parse().expect("url"),
        c.default_limits().clone(),
        Default::default(),
        None,
    )
    .expect("target");
    let e = c
        .client_token(&closed, &creds, "account")
        .await
        .expect_err("refused");
    assert!(
        matches!(e, ProviderError::Connect { .. }) && !e.outcome_unknown(),
        "{e:?}"
    );
    // A 429 pauses the host: the next call is held back at once, not sent and not waited for.
    fake.inject(
        Endpoint::ClientToken,
        Fault::RateLimited {
            retry_after: Some(9),
        },
        Some(1),
    );
    let e = c
        .client_token(&base, &creds, "account")
        .await
        .expect_err("429");
    assert!(e.is_transient());
    assert_eq!(e.retry_after(), Some(Duration::from_secs(9)));
    let calls = fake.calls().client_token;
    let started = std::time::Instant::now();
    let held = c
        .client_token(&base, &creds, "account")
        .await
        .expect_err("held back");
    assert!(held.is_throttled(), "{held:?}");
    assert!(started.elapsed() < Duration::from_secs(1), "not waited for");
    let wait = held.retry_after().expect("when");
    assert!(
        wait > Duration::from_secs(7) && wait <= Duration::from_secs(9),
        "{wait:?}"
    );
    assert_eq!(fake.calls().client_token, calls, "not sent");
}

#[tokio::test]
async fn the_rate_limit_spreads_a_burst() {
    let fake = FakeProvider::start(Config::default()).await.expect("fake");
    let c = client(2_000, 10.0, 2);
    let (base, creds, _) = registered(&fake, &c).await;
    // 2 calls used the burst; 5 more at 10/s take at least 0.4 s.
    let started = Instant::now();
    for _ in 0..5 {
        c.client_token(&base, &creds, "account")
            .await
            .expect("token");
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400),
        "5 calls in {elapsed:?} at 10/s"
    );
    assert!(fake.calls().peak_per_second <= 12);
}
