//! Two replicas with leader election against a real API server: only the Lease holder calls the
//! provider, and a standby takes over within the lease duration after the leader dies.

mod common;

use common::*;
use fake_provider::{Config as FakeConfig, FakeProvider};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::{Duration, Instant};
use tpp_operator::api::TppRegistration;
use tpp_operator::controller::Context;
use tpp_operator::leader::LeaseConfig;

const LEASE: &str = "tpp-operator";
const LEASE_DURATION: Duration = Duration::from_secs(4);

fn provider_calls(ctx: &Context) -> u64 {
    let text = ctx.metrics.encode();
    text.lines()
        .filter(|l| l.starts_with("tpp_operator_provider_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt(LEASE)
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}

#[tokio::test]
async fn only_the_leader_calls_the_provider_and_a_standby_takes_over() {
    let client = client().await;
    let ns = namespace(&client, "leader").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let fake = FakeProvider::start(FakeConfig {
        token_lifetime_secs: 3,
        ..FakeConfig::default()
    })
    .await
    .expect("fake");
    let lease = |id: &str| LeaseConfig::new(ns.clone(), LEASE.into(), id.into(), LEASE_DURATION);

    let (a, _stop_a, task_a) =
        Operator::start_elected(&client, &ns, &fake.base_url(), lease("replica-a")).await;
    let led = wait_for(Duration::from_secs(10), || async {
        (holder(&leases).await.as_deref() == Some("replica-a")).then_some(())
    })
    .await;
    assert!(led.is_some(), "replica-a never took the lease");
    let (b, stop_b, task_b) =
        Operator::start_elected(&client, &ns, &fake.base_url(), lease("replica-b")).await;

    create_secret(
        &client,
        &ns,
        "acme-signature",
        &[("signature-certificate", "sig")],
    )
    .await;
    let registrations: Api<TppRegistration> = Api::namespaced(client.clone(), &ns);
    let tpp = objects::registration("acme")
        .provider(&fake.base_url())
        .predictable_refresh(1);
    let tpp: TppRegistration = serde_json::from_value(tpp.json()).expect("TppRegistration");
    registrations
        .create(&PostParams::default(), &tpp)
        .await
        .expect("create");

    // 3 s tokens refreshed every 2 s: over 7 s both replicas see the object, only the leader acts.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let tokens = fake.tokens().len();
    assert!(tokens >= 3, "the leader refreshed {tokens} times in 7 s");
    assert!(
        provider_calls(&a) >= 4,
        "replica-a made {} calls",
        provider_calls(&a)
    );
    assert_eq!(provider_calls(&b), 0, "the standby called the provider");
    let issued: Vec<_> = fake.tokens().iter().map(|t| t.issued_at).collect();
    for pair in issued.windows(2) {
        let gap = pair[1].duration_since(pair[0]).as_secs_f64();
        assert!(
            gap > 1.0,
            "two token calls {gap:.2} s apart: a duplicate refresh"
        );
    }

    // The leader dies without releasing the lease; the standby takes over within the duration.
    task_a.abort();
    let died = Instant::now();
    let took_over = wait_for(Duration::from_secs(15), || async {
        (holder(&leases).await.as_deref() == Some("replica-b")).then_some(())
    })
    .await;
    let takeover = died.elapsed();
    eprintln!(
        "takeover after {takeover:?}; tokens so far {}",
        fake.tokens().len()
    );
    assert!(took_over.is_some(), "replica-b never took over");
    assert!(
        takeover <= LEASE_DURATION + LEASE_DURATION / 5 + Duration::from_secs(1),
        "takeover took {takeover:?} for a {LEASE_DURATION:?} lease"
    );
    let resumed = wait_for(Duration::from_secs(10), || async {
        (provider_calls(&b) > 0).then_some(())
    })
    .await;
    assert!(resumed.is_some(), "replica-b leads but does not refresh");
    let force =
        json!({"metadata": {"annotations": {"tpp-operator.dev/force-refresh": "takeover"}}});
    registrations
        .patch("acme", &PatchParams::default(), &Patch::Merge(force))
        .await
        .expect("annotate");
    let before = fake.tokens().len();
    let refreshed = wait_for(Duration::from_secs(10), || async {
        (fake.tokens().len() > before).then_some(())
    })
    .await;
    assert!(
        refreshed.is_some(),
        "the new leader does not act on changes"
    );

    // A graceful stop releases the lease at once.
    stop_b.cancel();
    let result = tokio::time::timeout(Duration::from_secs(10), task_b)
        .await
        .expect("replica-b stops")
        .expect("join");
    assert!(result.is_ok(), "a requested shutdown is not a lost lease");
    assert_eq!(
        holder(&leases).await,
        None,
        "the lease was not released on shutdown"
    );
}
