//! tpp-bench: how far one tpp-operator instance scales and what it costs.
//!
//! For each size N it starts a fresh test control plane, the fake provider (with latency and a
//! rate limit) and the operator's release binary, creates N TppRegistrations and N
//! AccountConsents (and plays N customers authorising them), and prints what it measured: time
//! to Ready, memory, CPU, provider calls per object, duplicate token calls, peak provider rate,
//! the spread of scheduled refreshes, and API-server writes in a quiet window. A second scenario
//! runs registrations with short-lived tokens for a while and counts tokens refreshed too late.
//! It prints figures; it does not pass or fail on them.

mod procs;
mod writes;

use clap::Parser;
use fake_provider::{Config as FakeConfig, FakeProvider};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::core::CustomResourceExt;
use kube::{Client, Config};
use procs::{Cluster, Operator, OperatorArgs};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tpp_operator::api::{AccountConsent, TppRegistration};

const NAMESPACE: &str = "bench";

/// Command line.
#[derive(Parser, Debug)]
#[command(about = "Measures one tpp-operator instance at scale against the fake provider")]
struct Args {
    /// Numbers of TppRegistrations (and as many AccountConsents) to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
    sizes: Vec<usize>,
    /// Provider latency per answer, in milliseconds.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// Requests per second the provider allows (it answers 429 above).
    #[arg(long, default_value_t = 100)]
    provider_rate: u32,
    /// Length of the quiet window in which API-server writes are counted, in seconds.
    #[arg(long, default_value_t = 60)]
    steady_seconds: u64,
    /// Registrations in the short-token scenario (0 skips it).
    #[arg(long, default_value_t = 1000)]
    lifetime_registrations: usize,
    /// Token lifetime in the short-token scenario, in seconds.
    #[arg(long, default_value_t = 30)]
    lifetime_token_seconds: u64,
    /// How long the short-token scenario runs after all registrations are Ready, in seconds.
    #[arg(long, default_value_t = 600)]
    lifetime_seconds: u64,
    /// The operator's release binary.
    #[arg(long, env = "TPP_OPERATOR_BIN")]
    operator_bin: PathBuf,
    /// The test control plane binary (scripts/build-testcluster.sh).
    #[arg(long, env = "TPP_TESTCLUSTER")]
    testcluster_bin: PathBuf,
    /// Give up waiting for Ready after this many seconds per phase.
    #[arg(long, default_value_t = 1800)]
    timeout_seconds: u64,
}

type Res<T> = Result<T, String>;

fn err<E: std::fmt::Display>(context: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{context}: {e}")
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // Dropping the run on Ctrl-C or SIGTERM kills the control plane and the operator it started
    // (their handles kill on drop), so an interrupted benchmark leaves nothing running.
    tokio::select! {
        code = run_all(&args) => code,
        _ = interrupted() => {
            eprintln!("interrupted; stopping the control plane and the operator");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn interrupted() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}

async fn run_all(args: &Args) -> std::process::ExitCode {
    let mut failed = false;
    println!(
        "# tpp-bench {} — provider latency {} ms, provider limit {}/s\n",
        jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"),
        args.latency_ms,
        args.provider_rate
    );
    for &n in &args.sizes {
        match scale(args, n).await {
            Ok(report) => println!("{report}"),
            Err(e) => {
                failed = true;
                println!("## N = {n}: the run could not finish: {e}\n");
            }
        }
    }
    if args.lifetime_registrations > 0 {
        match lifetime(args).await {
            Ok(report) => println!("{report}"),
            Err(e) => {
                failed = true;
                println!("## Short-lived tokens: the run could not finish: {e}\n");
            }
        }
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}

/// One fresh control plane, fake provider and operator.
struct Setup {
    client: Client,
    fake: FakeProvider,
    operator: Operator,
    idle_mib: f64,
    // Dropped in this order: the control plane stops before its directory goes.
    _cluster: Cluster,
    _dir: TempDir,
}

async fn setup(args: &Args, token_lifetime: u64) -> Res<Setup> {
    let dir = TempDir::new()?;
    let cluster = Cluster::start(&args.testcluster_bin, &dir.0.join("cluster")).await?;
    let kubeconfig =
        kube::config::Kubeconfig::read_from(&cluster.kubeconfig).map_err(err("kubeconfig"))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(err("kubeconfig"))?;
    let client = Client::try_from(config).map_err(err("client"))?;
    install_crds(&client).await?;
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))
        .map_err(err("namespace"))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .map_err(err("create namespace"))?;
    let fake = FakeProvider::start(FakeConfig {
        token_lifetime_secs: token_lifetime,
        latency: Duration::from_millis(args.latency_ms),
        rate_limit: Some(args.provider_rate),
        ..FakeConfig::default()
    })
    .await
    .map_err(err("fake provider"))?;
    // A little under the provider's limit: the fake counts per calendar second.
    let rate = f64::from(args.provider_rate) * 0.95;
    let operator = Operator::start(OperatorArgs {
        binary: &args.operator_bin,
        kubeconfig: &cluster.kubeconfig,
        namespace: NAMESPACE,
        provider: &fake.base_url(),
        rate,
        log: &dir.0.join("operator.log"),
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_mib = operator.memory().0;
    Ok(Setup {
        _dir: dir,
        _cluster: cluster,
        client,
        fake,
        operator,
        idle_mib,
    })
}

async fn install_crds(client: &Client) -> Res<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [TppRegistration::crd(), AccountConsent::crd()] {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply("tpp-bench").force(),
            &Patch::Apply(&crd),
        )
        .await
        .map_err(err("apply CRD"))?;
        let established = wait(Duration::from_secs(30), || async {
            let c = api.get(&name).await.ok()?;
            c.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        })
        .await;
        established.ok_or_else(|| format!("CRD {name} not established"))?;
    }
    Ok(())
}

/// Creates `n` registrations named r0..r{n-1}, all using one signature Secret.
async fn create_registrations(setup: &Setup, n: usize, refresh: serde_json::Value) -> Res<()> {
    let secrets: Api<Secret> = Api::namespaced(setup.client.clone(), NAMESPACE);
    let signature: Secret = serde_json::from_value(json!({
        "metadata": {"name": "signature"},
        "stringData": {"signature-certificate": "bench-signature"}
    }))
    .map_err(err("secret"))?;
    secrets
        .create(&PostParams::default(), &signature)
        .await
        .map_err(err("create signature Secret"))?;
    let api: Api<TppRegistration> = Api::namespaced(setup.client.clone(), NAMESPACE);
    let provider = setup.fake.base_url();
    futures::stream::iter(0..n)
        .map(|i| {
            let api = api.clone();
            let provider = provider.clone();
            let refresh = refresh.clone();
            async move {
                let obj: TppRegistration = serde_json::from_value(json!({
                    "apiVersion": "tpp-operator.dev/v1alpha1",
                    "kind": "TppRegistration",
                    "metadata": {"name": format!("r{i}")},
                    "spec": {
                        "providerUrl": provider,
                        "organisation": {"name": format!("Org {i}"), "email": format!("org{i}@bench.example"), "address": "1 Bench Way", "countryISO": "GB"},
                        "callbackUrl": "https://bench.example/callback",
                        "signatureCertificateSecretRef": {"name": "signature"},
                        "refresh": refresh,
                    }
                }))
                .map_err(err("registration"))?;
                api.create(&PostParams::default(), &obj)
                    .await
                    .map(|_| ())
                    .map_err(err("create registration"))
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await
        .map(|_| ())
}

fn ready(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Waits until `count` of the listed objects satisfy `done`; samples the operator's memory.
async fn wait_all<K, F>(
    setup: &Setup,
    n: usize,
    timeout: Duration,
    what: &str,
    done: F,
) -> Res<Duration>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
    F: Fn(&K) -> bool,
{
    let api: Api<K> = Api::namespaced(setup.client.clone(), NAMESPACE);
    let started = Instant::now();
    loop {
        // From the API server's watch cache, and rarely at large sizes: the benchmark must not
        // be what loads the API server.
        let list = api
            .list(&ListParams::default().match_any())
            .await
            .map_err(err("list"))?;
        let count = list.items.iter().filter(|o| done(o)).count();
        if count >= n {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            return Err(format!("only {count} of {n} {what} after {timeout:?}"));
        }
        tokio::time::sleep(Duration::from_secs((n as u64 / 1000).clamp(2, 10))).await;
    }
}

/// Figures of one size.
struct ScaleReport {
    n: usize,
    create_registrations: Duration,
    registrations_ready: Duration,
    consents_created: Duration,
    consents_authorised: Duration,
    idle_mib: f64,
    at_n_mib: f64,
    peak_mib: f64,
    cpu_seconds: f64,
    calls: fake_provider::CallCounts,
    duplicate_tokens: usize,
    refresh_spread: Spread,
    steady: writes::Counts,
    steady_seconds: u64,
    steady_provider_calls: u64,
    rate_limit: u32,
}

/// How scheduled refreshes spread over time.
struct Spread {
    first_to_last_seconds: i64,
    busiest_second: usize,
}

fn spread(times: &[jiff::Timestamp]) -> Spread {
    let mut buckets: BTreeMap<i64, usize> = BTreeMap::new();
    for t in times {
        *buckets.entry(t.as_second()).or_default() += 1;
    }
    let first = buckets.keys().next().copied().unwrap_or(0);
    let last = buckets.keys().last().copied().unwrap_or(0);
    Spread {
        first_to_last_seconds: last - first,
        busiest_second: buckets.values().copied().max().unwrap_or(0),
    }
}

/// Token calls beyond one per client (for runs shorter than a token lifetime).
fn duplicate_token_calls(fake: &FakeProvider) -> usize {
    let mut per_client: HashMap<String, usize> = HashMap::new();
    for t in fake
        .tokens()
        .iter()
        .filter(|t| t.grant_type == "client_credentials")
    {
        *per_client.entry(t.client_id.clone()).or_default() += 1;
    }
    per_client.values().map(|c| c.saturating_sub(1)).sum()
}

async fn scale(args: &Args, n: usize) -> Res<ScaleReport> {
    eprintln!("[N={n}] starting control plane, fake provider and operator");
    // Tokens outlive the run, so every token call after the first per client is a duplicate.
    let setup = setup(args, 3600).await?;
    let timeout = Duration::from_secs(args.timeout_seconds);

    eprintln!("[N={n}] creating {n} TppRegistrations");
    let started = Instant::now();
    create_registrations(&setup, n, json!({})).await?;
    let create_registrations = started.elapsed();
    wait_all::<TppRegistration, _>(&setup, n, timeout, "registrations Ready", |r| {
        r.status.as_ref().is_some_and(|s| ready(&s.conditions))
    })
    .await?;
    let registrations_ready = started.elapsed();
    eprintln!("[N={n}] registrations Ready after {registrations_ready:?}");

    eprintln!("[N={n}] creating {n} AccountConsents");
    let started = Instant::now();
    let consents: Api<AccountConsent> = Api::namespaced(setup.client.clone(), NAMESPACE);
    futures::stream::iter(0..n)
        .map(|i| {
            let api = consents.clone();
            async move {
                let obj: AccountConsent = serde_json::from_value(json!({
                    "apiVersion": "tpp-operator.dev/v1alpha1",
                    "kind": "AccountConsent",
                    "metadata": {"name": format!("c{i}")},
                    "spec": {
                        "registrationRef": {"name": format!("r{i}")},
                        "permissions": ["ReadAccountsBasic", "ReadAccountsDetail"],
                        "redirectUri": "https://bench.example/callback",
                    }
                }))
                .map_err(err("consent"))?;
                api.create(&PostParams::default(), &obj)
                    .await
                    .map(|_| ())
                    .map_err(err("create consent"))
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await?;
    wait_all::<AccountConsent, _>(&setup, n, timeout, "consents awaiting authorisation", |c| {
        c.status
            .as_ref()
            .is_some_and(|s| s.authorisation_url.is_some() && s.authorisation_state.is_some())
    })
    .await?;
    let consents_created = started.elapsed();
    eprintln!("[N={n}] consents created after {consents_created:?}; playing {n} customers");

    // Every customer authorises; their codes reach the operator through the hand-off Secret.
    let listed = consents
        .list(&ListParams::default())
        .await
        .map_err(err("list consents"))?;
    let secrets: Api<Secret> = Api::namespaced(setup.client.clone(), NAMESPACE);
    let fake = &setup.fake;
    futures::stream::iter(listed.items)
        .map(|c| {
            let secrets = secrets.clone();
            async move {
                let name = c.metadata.name.clone().unwrap_or_default();
                let status = c.status.clone().unwrap_or_default();
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
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await?;
    wait_all::<AccountConsent, _>(&setup, n, timeout, "consents authorised", |c| {
        c.status.as_ref().is_some_and(|s| ready(&s.conditions))
    })
    .await?;
    let consents_authorised = started.elapsed();
    eprintln!("[N={n}] consents authorised after {consents_authorised:?}; quiet window");

    // Quiet window: nothing changes, so nothing should be written.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let counter = writes::Counter::start(&setup.client, NAMESPACE).await?;
    let calls_before = setup.fake.calls();
    tokio::time::sleep(Duration::from_secs(args.steady_seconds)).await;
    let steady = counter.stop();
    let calls = setup.fake.calls();
    let steady_provider_calls = total(&calls) - total(&calls_before);

    let (at_n_mib, peak_mib) = setup.operator.memory();
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
    let report = ScaleReport {
        n,
        create_registrations,
        registrations_ready,
        consents_created,
        consents_authorised,
        idle_mib: setup.idle_mib,
        at_n_mib,
        peak_mib,
        cpu_seconds,
        calls,
        duplicate_tokens: duplicate_token_calls(&setup.fake),
        refresh_spread: spread(&next),
        steady,
        steady_seconds: args.steady_seconds,
        steady_provider_calls,
        rate_limit: args.provider_rate,
    };
    setup.operator.stop().await;
    setup.fake.shutdown().await;
    Ok(report)
}

fn total(c: &fake_provider::CallCounts) -> u64 {
    c.registration
        + c.client_token
        + c.auth_code_token
        + c.consent_create
        + c.consent_get
        + c.consent_delete
}

impl std::fmt::Display for ScaleReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.n as f64;
        let c = &self.calls;
        let s = |d: Duration| format!("{:.1} s", d.as_secs_f64());
        writeln!(f, "## N = {}\n", self.n)?;
        writeln!(f, "| Measure | Value |")?;
        writeln!(f, "|---|---|")?;
        writeln!(
            f,
            "| TppRegistrations created (API) | {} |",
            s(self.create_registrations)
        )?;
        writeln!(
            f,
            "| All TppRegistrations Ready (from first create) | {} |",
            s(self.registrations_ready)
        )?;
        writeln!(
            f,
            "| All AccountConsents created at the provider, URL published | {} |",
            s(self.consents_created)
        )?;
        writeln!(
            f,
            "| All AccountConsents authorised, customer tokens written | {} |",
            s(self.consents_authorised)
        )?;
        writeln!(
            f,
            "| Operator RSS idle / at N / peak | {:.1} / {:.1} / {:.1} MiB |",
            self.idle_mib, self.at_n_mib, self.peak_mib
        )?;
        writeln!(f, "| Operator CPU, whole run | {:.1} s |", self.cpu_seconds)?;
        writeln!(
            f,
            "| Registration calls per registration | {:.2} ({} calls) |",
            c.registration as f64 / n,
            c.registration
        )?;
        writeln!(
            f,
            "| Client-token calls per registration | {:.2} ({} calls; {} duplicates) |",
            c.client_token as f64 / n,
            c.client_token,
            self.duplicate_tokens
        )?;
        writeln!(
            f,
            "| Consent creations per consent | {:.2} |",
            c.consent_create as f64 / n
        )?;
        writeln!(
            f,
            "| Code exchanges per consent | {:.2} |",
            c.auth_code_token as f64 / n
        )?;
        writeln!(
            f,
            "| Consent status polls (GET), whole run | {} |",
            c.consent_get
        )?;
        writeln!(
            f,
            "| Peak provider requests in one second (limit {}) | {} ({} answered 429) |",
            self.rate_limit, c.peak_per_second, c.rate_limited
        )?;
        writeln!(
            f,
            "| Next refreshes spread over / busiest second | {} s / {} |",
            self.refresh_spread.first_to_last_seconds, self.refresh_spread.busiest_second
        )?;
        writeln!(
            f,
            "| API-server writes in {} quiet seconds (registrations, consents, Secrets, events) | {} ({}, {}, {}, {}) |",
            self.steady_seconds,
            self.steady.total(),
            self.steady.registrations,
            self.steady.consents,
            self.steady.secrets,
            self.steady.events
        )?;
        writeln!(
            f,
            "| Provider calls in those seconds | {} ({:.2}/s) |",
            self.steady_provider_calls,
            self.steady_provider_calls as f64 / self.steady_seconds as f64
        )?;
        Ok(())
    }
}

/// Figures of the short-token scenario.
struct LifetimeReport {
    n: usize,
    token_seconds: u64,
    window_seconds: u64,
    ready: Duration,
    late_refreshes: usize,
    token_calls: usize,
    expected_calls: f64,
    min_per_client: usize,
    max_per_client: usize,
    early_duplicates: usize,
    writes: writes::Counts,
    peak_per_second: u64,
    rate_limited: u64,
    rss_mib: f64,
    cpu_seconds: f64,
}

async fn lifetime(args: &Args) -> Res<LifetimeReport> {
    let n = args.lifetime_registrations;
    let lifetime = args.lifetime_token_seconds;
    eprintln!("[lifetime] {n} registrations with {lifetime} s tokens");
    let setup = setup(args, lifetime).await?;
    let started = Instant::now();
    // A 30 s token cannot keep the default 30 s safety margin; this is what a user would set.
    let margin = (lifetime / 6).max(1);
    create_registrations(&setup, n, json!({"safetyMarginSeconds": margin})).await?;
    wait_all::<TppRegistration, _>(
        &setup,
        n,
        Duration::from_secs(args.timeout_seconds),
        "registrations Ready",
        |r| r.status.as_ref().is_some_and(|s| ready(&s.conditions)),
    )
    .await?;
    let ready_after = started.elapsed();
    let cpu_before = setup.operator.cpu_seconds();
    let counter = writes::Counter::start(&setup.client, NAMESPACE).await?;
    let window_start = jiff::Timestamp::now();
    tokio::time::sleep(Duration::from_secs(args.lifetime_seconds)).await;
    let window_end = jiff::Timestamp::now();
    let writes = counter.stop();
    let cpu_seconds = setup.operator.cpu_seconds() - cpu_before;

    let mut per_client: HashMap<String, Vec<fake_provider::TokenRecord>> = HashMap::new();
    for t in setup
        .fake
        .tokens()
        .into_iter()
        .filter(|t| t.grant_type == "client_credentials")
    {
        per_client.entry(t.client_id.clone()).or_default().push(t);
    }
    let mut late = 0;
    let mut early_duplicates = 0;
    let mut in_window = Vec::new();
    for tokens in per_client.values_mut() {
        tokens.sort_by_key(|t| t.issued_at);
        in_window.push(
            tokens
                .iter()
                .filter(|t| t.issued_at >= window_start && t.issued_at < window_end)
                .count(),
        );
        for pair in tokens.windows(2) {
            // Within the window, a token that expired before the next was issued is a miss.
            if pair[0].expires_at < pair[1].issued_at.min(window_end)
                && pair[0].expires_at >= window_start
            {
                late += 1;
            }
            // A new token while the previous had most of its life left is a duplicate.
            let age = pair[1].issued_at.duration_since(pair[0].issued_at);
            if age.as_secs_f64() < lifetime as f64 / 3.0 {
                early_duplicates += 1;
            }
        }
        if let Some(last) = tokens.last() {
            if last.expires_at < window_end {
                late += 1;
            }
        }
    }
    let calls = setup.fake.calls();
    let (rss_mib, _) = setup.operator.memory();
    // Refreshes happen at two thirds of the lifetime.
    let expected_calls = n as f64 * args.lifetime_seconds as f64 / (lifetime as f64 * 2.0 / 3.0);
    let report = LifetimeReport {
        n,
        token_seconds: lifetime,
        window_seconds: args.lifetime_seconds,
        ready: ready_after,
        late_refreshes: late,
        token_calls: in_window.iter().sum(),
        expected_calls,
        min_per_client: in_window.iter().copied().min().unwrap_or(0),
        max_per_client: in_window.iter().copied().max().unwrap_or(0),
        early_duplicates,
        writes,
        peak_per_second: calls.peak_per_second,
        rate_limited: calls.rate_limited,
        rss_mib,
        cpu_seconds,
    };
    setup.operator.stop().await;
    setup.fake.shutdown().await;
    Ok(report)
}

impl std::fmt::Display for LifetimeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "## Short-lived tokens: {} registrations, {} s tokens, {} s window\n",
            self.n, self.token_seconds, self.window_seconds
        )?;
        writeln!(f, "| Measure | Value |")?;
        writeln!(f, "|---|---|")?;
        writeln!(f, "| All Ready | {:.1} s |", self.ready.as_secs_f64())?;
        writeln!(
            f,
            "| Tokens that expired before their successor was issued (misses) | {} |",
            self.late_refreshes
        )?;
        writeln!(
            f,
            "| Client-token calls in the window / expected at 2/3 of the lifetime | {} / {:.0} |",
            self.token_calls, self.expected_calls
        )?;
        writeln!(
            f,
            "| Calls per registration, min / max | {} / {} |",
            self.min_per_client, self.max_per_client
        )?;
        writeln!(
            f,
            "| Duplicate calls (a new token within a third of the lifetime) | {} |",
            self.early_duplicates
        )?;
        writeln!(
            f,
            "| Peak provider requests in one second | {} ({} answered 429) |",
            self.peak_per_second, self.rate_limited
        )?;
        writeln!(
            f,
            "| API-server writes in the window (registrations, consents, Secrets, events) | {} ({}, {}, {}, {}); {:.2} per token call |",
            self.writes.total(),
            self.writes.registrations,
            self.writes.consents,
            self.writes.secrets,
            self.writes.events,
            self.writes.total() as f64 / self.token_calls.max(1) as f64
        )?;
        writeln!(
            f,
            "| Operator RSS at the end / CPU in the window | {:.1} MiB / {:.1} s |",
            self.rss_mib, self.cpu_seconds
        )?;
        Ok(())
    }
}

/// Polls `f` every 200 ms until it returns `Some` or `timeout` passes.
async fn wait<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(v) = f().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Res<TempDir> {
        let path = std::env::temp_dir().join(format!(
            "tpp-bench-{}-{}",
            std::process::id(),
            jiff::Timestamp::now().as_millisecond()
        ));
        std::fs::create_dir_all(&path).map_err(err("temp dir"))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(Path::new(&self.0));
    }
}
