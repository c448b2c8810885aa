//! One shape: R TppRegistrations and C AccountConsents spread round-robin over them (consent
//! `c<i>` uses registration `r<i mod R>`, so each registration's signing key signs for about
//! C/R consents), with the bench playing the C customers who authorise.

use crate::metrics::ApiRequests;
use crate::{
    client_rate, create_all, create_registrations, duplicate_token_calls, err, prepare_secrets,
    ready, registration_keyed, secs, setup, spread, total, wait_all, writes, Args, Res, Shape,
    Spread, NAMESPACE,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use std::time::{Duration, Instant};
use tpp_operator::api::{AccountConsent, TppRegistration};

/// The heading of a shape's table.
pub fn title(s: Shape, shared_signing_key: bool) -> String {
    let key = if shared_signing_key {
        ", one shared signing key"
    } else {
        ""
    };
    if s.registrations == s.consents {
        format!("N = {}{key}", s.registrations)
    } else {
        format!(
            "{} registrations, {} consents{key}",
            s.registrations, s.consents
        )
    }
}

/// Figures of the consent phases (none when the shape has no consents).
struct ConsentTimes {
    created_api: Duration,
    urls: Duration,
    handed_over: Duration,
    authorised: Duration,
    authorised_after_hand_off: Duration,
}

/// Figures of one shape.
pub struct ShapeReport {
    title: String,
    shape: Shape,
    create_registrations: Duration,
    ready_from_first: Duration,
    ready_from_last: Duration,
    keys_from_first: Duration,
    keys_from_last: Duration,
    consents: Option<ConsentTimes>,
    idle_mib: f64,
    end_mib: f64,
    peak_mib: f64,
    cpu_seconds: f64,
    calls: fake_provider::CallCounts,
    duplicate_tokens: usize,
    refresh_spread: Spread,
    quiet_writes: writes::Counts,
    quiet_api: ApiRequests,
    quiet_seconds: u64,
    quiet_provider_calls: u64,
    quiet_polls: u64,
    rate_limit: u32,
    client_rate: f64,
}

pub async fn run(args: &Args, shape: Shape) -> Res<ShapeReport> {
    let (r, c) = (shape.registrations, shape.consents);
    let tag = format!("[R={r} C={c}]");
    eprintln!("{tag} starting control plane, fake provider and operator");
    // Tokens outlive the run, so every token call after the first per client is a duplicate.
    let setup = setup(args, 3600).await?;
    let timeout = Duration::from_secs(args.timeout_seconds);
    prepare_secrets(&setup, args.shared_signing_key).await?;

    eprintln!("{tag} creating {r} TppRegistrations");
    let started = Instant::now();
    create_registrations(&setup, r, json!({}), args.shared_signing_key).await?;
    let create_registrations = started.elapsed();
    let last_create = Instant::now();
    wait_all::<TppRegistration, _>(&setup, r, timeout, "registrations Ready", |o| {
        o.status.as_ref().is_some_and(|s| ready(&s.conditions))
    })
    .await?;
    let (ready_from_first, ready_from_last) = (started.elapsed(), last_create.elapsed());
    eprintln!("{tag} registrations Ready after {ready_from_first:?}; waiting for signing keys");
    // Consents need their registration's key; waiting for all keys first keeps the consent
    // figures below about consents alone.
    wait_all::<TppRegistration, _>(
        &setup,
        r,
        timeout,
        "registrations with a signing key",
        registration_keyed,
    )
    .await?;
    let (keys_from_first, keys_from_last) = (started.elapsed(), last_create.elapsed());
    eprintln!("{tag} signing keys published after {keys_from_first:?}");

    let consents = if c > 0 {
        Some(consent_phases(&setup, shape, timeout, &tag).await?)
    } else {
        None
    };

    // Quiet window: nothing changes, so nothing should be written. No bench writes in it, so
    // the API server's request counts are the operator's (see ApiRequests).
    eprintln!("{tag} quiet window of {} s", args.steady_seconds);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let counter = writes::Counter::start(&setup.client, NAMESPACE).await?;
    let api_before = ApiRequests::scrape(&setup.client).await?;
    let calls_before = setup.fake.calls();
    tokio::time::sleep(Duration::from_secs(args.steady_seconds)).await;
    let calls = setup.fake.calls();
    let api_after = ApiRequests::scrape(&setup.client).await?;
    let quiet_writes = counter.stop();

    let (end_mib, peak_mib) = setup.operator.memory();
    let cpu_seconds = setup.operator.cpu_seconds();
    let registrations = Api::<TppRegistration>::namespaced(setup.client.clone(), NAMESPACE)
        .list(&ListParams::default())
        .await
        .map_err(err("list"))?;
    let next: Vec<jiff::Timestamp> = registrations
        .items
        .iter()
        .filter_map(|r| r.status.as_ref()?.next_refresh_at.as_ref().map(|t| t.0))
        .collect();
    let report = ShapeReport {
        title: title(shape, args.shared_signing_key),
        shape,
        create_registrations,
        ready_from_first,
        ready_from_last,
        keys_from_first,
        keys_from_last,
        consents,
        idle_mib: setup.idle_mib,
        end_mib,
        peak_mib,
        cpu_seconds,
        calls,
        duplicate_tokens: duplicate_token_calls(&setup.fake),
        refresh_spread: spread(&next),
        quiet_writes,
        quiet_api: api_after.since(&api_before),
        quiet_seconds: args.steady_seconds,
        quiet_provider_calls: total(&calls) - total(&calls_before),
        quiet_polls: calls.consent_get - calls_before.consent_get,
        rate_limit: args.provider_rate,
        client_rate: client_rate(args),
    };
    setup.stop().await;
    Ok(report)
}

/// Creates the consents, waits for their authorisation URLs, authorises every one as its
/// customer would and waits until all are Ready.
async fn consent_phases(
    setup: &crate::Setup,
    shape: Shape,
    timeout: Duration,
    tag: &str,
) -> Res<ConsentTimes> {
    let (r, c) = (shape.registrations, shape.consents);
    eprintln!("{tag} creating {c} AccountConsents over {r} registrations");
    let started = Instant::now();
    let consents: Api<AccountConsent> = Api::namespaced(setup.client.clone(), NAMESPACE);
    create_all(c, |i| {
        let api = consents.clone();
        async move {
            let object = crate::objects::consent(&format!("c{i}"), &format!("r{}", i % r))
                .permissions(&["ReadAccountsBasic", "ReadAccountsDetail"])
                .redirect_uri("https://bench.example/callback");
            let obj: AccountConsent =
                serde_json::from_value(object.json()).map_err(err("consent"))?;
            api.create(&PostParams::default(), &obj)
                .await
                .map(|_| ())
                .map_err(err("create consent"))
        }
    })
    .await?;
    let created_api = started.elapsed();
    wait_all::<AccountConsent, _>(setup, c, timeout, "consents awaiting authorisation", |o| {
        o.status
            .as_ref()
            .is_some_and(|s| s.authorisation_url.is_some() && s.authorisation_state.is_some())
    })
    .await?;
    let urls = started.elapsed();
    eprintln!("{tag} authorisation URLs after {urls:?}; playing {c} customers");

    // Every customer authorises; their codes reach the operator through the hand-off Secret.
    let listed = consents
        .list(&ListParams::default())
        .await
        .map_err(err("list consents"))?
        .items;
    let secrets: Api<Secret> = Api::namespaced(setup.client.clone(), NAMESPACE);
    let fake = &setup.fake;
    create_all(listed.len(), |i| {
        let secrets = secrets.clone();
        let consent = &listed[i];
        async move {
            let name = consent.metadata.name.clone().unwrap_or_default();
            let status = consent.status.clone().unwrap_or_default();
            let id = status.consent_id.unwrap_or_default();
            let code = fake
                .issue_authorization_code(&id)
                .ok_or_else(|| format!("fake has no consent {id}"))?;
            let secret: Secret = serde_json::from_value(json!({
                "metadata": {
                    "name": format!("{name}-authorisation"),
                    "labels": {"app.kubernetes.io/managed-by": "tpp-operator", "tpp-operator.dev/consent": name},
                },
                "stringData": {"code": code, "state": status.authorisation_state.unwrap_or_default()},
            }))
            .map_err(err("hand-off"))?;
            secrets
                .create(&PostParams::default(), &secret)
                .await
                .map(|_| ())
                .map_err(err("create hand-off Secret"))
        }
    })
    .await?;
    let handed_over = started.elapsed();
    let last_hand_off = Instant::now();
    wait_all::<AccountConsent, _>(setup, c, timeout, "consents authorised", |o| {
        o.status.as_ref().is_some_and(|s| ready(&s.conditions))
    })
    .await?;
    let authorised = started.elapsed();
    eprintln!("{tag} consents authorised after {authorised:?}");
    Ok(ConsentTimes {
        created_api,
        urls,
        handed_over,
        authorised,
        authorised_after_hand_off: last_hand_off.elapsed(),
    })
}

impl std::fmt::Display for ShapeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (r, c) = (
            self.shape.registrations as f64,
            self.shape.consents.max(1) as f64,
        );
        let calls = &self.calls;
        writeln!(f, "## {}\n", self.title)?;
        writeln!(f, "| Measure | Value |")?;
        writeln!(f, "|---|---|")?;
        let mut row = |k: &str, v: String| writeln!(f, "| {k} | {v} |");
        row(
            "TppRegistrations created (API)",
            secs(self.create_registrations),
        )?;
        row(
            "All TppRegistrations Ready, from first / last create",
            format!(
                "{} / {}",
                secs(self.ready_from_first),
                secs(self.ready_from_last)
            ),
        )?;
        row(
            "All signing keys published (status.signingKeys), from first / last create",
            format!(
                "{} / {}",
                secs(self.keys_from_first),
                secs(self.keys_from_last)
            ),
        )?;
        match &self.consents {
            Some(t) => {
                row(
                    "AccountConsents created (API; clock starts at the first create)",
                    secs(t.created_api),
                )?;
                row(
                    "All AccountConsents created at the provider, URL published",
                    secs(t.urls),
                )?;
                row(
                    "All customers' authorisations handed over (hand-off Secrets created)",
                    secs(t.handed_over),
                )?;
                row(
                    "All AccountConsents authorised, customer tokens written; after the last hand-off",
                    format!(
                        "{}; {}",
                        secs(t.authorised),
                        secs(t.authorised_after_hand_off)
                    ),
                )?;
            }
            None => row("AccountConsents", "none in this shape".into())?,
        }
        row(
            "Operator RSS idle / at the end / peak",
            format!(
                "{:.1} / {:.1} / {:.1} MiB",
                self.idle_mib, self.end_mib, self.peak_mib
            ),
        )?;
        row(
            "Operator CPU, whole run",
            format!("{:.1} s", self.cpu_seconds),
        )?;
        row(
            "Registration calls per registration",
            format!(
                "{:.2} ({} calls)",
                calls.registration as f64 / r,
                calls.registration
            ),
        )?;
        row(
            "Client-token calls per registration",
            format!(
                "{:.2} ({} calls; {} duplicates)",
                calls.client_token as f64 / r,
                calls.client_token,
                self.duplicate_tokens
            ),
        )?;
        if self.consents.is_some() {
            row(
                "Per consent: creations / code exchanges / status polls (whole run)",
                format!(
                    "{:.2} / {:.2} / {:.2} ({} / {} / {} calls)",
                    calls.consent_create as f64 / c,
                    calls.auth_code_token as f64 / c,
                    calls.consent_get as f64 / c,
                    calls.consent_create,
                    calls.auth_code_token,
                    calls.consent_get
                ),
            )?;
        }
        row(
            &format!(
                "Peak provider requests in one second (limit {})",
                self.rate_limit
            ),
            format!(
                "{} ({} answered 429)",
                calls.peak_per_second, calls.rate_limited
            ),
        )?;
        row(
            "Next refreshes spread over / busiest second",
            format!(
                "{} s / {}",
                self.refresh_spread.first_to_last_seconds, self.refresh_spread.busiest_second
            ),
        )?;
        let w = &self.quiet_writes;
        row(
            &format!(
                "API-server writes in {} quiet seconds, seen by watches (registrations, consents, Secrets, events)",
                self.quiet_seconds
            ),
            format!(
                "{} ({}, {}, {}, {})",
                w.total(),
                w.registrations,
                w.consents,
                w.secrets,
                w.events
            ),
        )?;
        row(
            "API-server requests in those seconds (apiserver_request_total): reads; writes",
            format!(
                "{}; {}",
                self.quiet_api.reads_text(),
                self.quiet_api.writes_text()
            ),
        )?;
        let seconds = self.quiet_seconds.max(1) as f64;
        row(
            "Consent status polls in those seconds",
            format!(
                "{} = {:.2}/s (provider limit {}/s, the operator's {:.0}/s)",
                self.quiet_polls,
                self.quiet_polls as f64 / seconds,
                self.rate_limit,
                self.client_rate
            ),
        )?;
        row(
            "Provider calls in those seconds",
            format!(
                "{} ({:.2}/s)",
                self.quiet_provider_calls,
                self.quiet_provider_calls as f64 / seconds
            ),
        )?;
        Ok(())
    }
}
