//! tpp-bench: how far one tpp-operator instance scales and what it costs.
//!
//! Each scenario starts a fresh test control plane, the fake provider (with latency and a rate
//! limit) and the operator's release binary, and prints a Markdown table of what it measured.
//!
//! - A **shape** (`--registrations R --consents C`, or `--sizes N` for R = C = N) creates R
//!   TppRegistrations and C AccountConsents spread over them, plays the C customers authorising,
//!   and reports time to Ready, signing keys, authorisation URLs and customer tokens, memory, CPU,
//!   provider calls per object, duplicate token calls, peak provider rate, the spread of
//!   scheduled refreshes, and what happens in a quiet window (API-server writes, status polls).
//! - The **short-token** scenario (`--lifetime-registrations`) runs registrations whose tokens live
//!   30 s for a while and counts tokens refreshed too late; the **steady** scenario
//!   (`--steady-registrations`) does the same with realistic lifetimes and reports what one
//!   token refresh costs: operator CPU, reconciles, API-server reads and writes.
//!
//! It prints figures; it does not pass or fail on them.

mod metrics;
#[path = "../../tests/common/objects.rs"]
mod objects;
mod procs;
mod refresh;
mod shape;
mod writes;

use clap::Parser;
use fake_provider::{Config as FakeConfig, FakeProvider};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Config};
use procs::{Cluster, Operator, OperatorArgs};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tpp_operator::api::TppRegistration;

const NAMESPACE: &str = "bench";
/// The signing-key Secret all registrations share with `--shared-signing-key`.
const SHARED_KEY_SECRET: &str = "bench-signing-key";

/// Command line.
#[derive(Parser, Debug)]
#[command(
    about = "Measures one tpp-operator instance at scale against the fake provider",
    long_about = "Measures one tpp-operator instance at scale against the fake provider.\n\n\
        Scenarios: shapes (--sizes, --registrations/--consents), short-lived tokens \
        (--lifetime-registrations) and steady refresh cost (--steady-registrations). Without any \
        of these flags it runs --sizes 100,1000,10000 --lifetime-registrations 1000; with any of \
        them, only the scenarios named run (e.g. --steady-registrations 1000 alone runs only \
        that one). It prints a Markdown report on stdout and progress on stderr."
)]
pub struct Args {
    /// Shapes with as many TppRegistrations as AccountConsents (one consent each), comma-separated
    /// ("" for none).
    #[arg(long, value_parser = parse_sizes)]
    sizes: Option<Sizes>,
    /// One shape: this many TppRegistrations ...
    #[arg(long)]
    registrations: Option<usize>,
    /// ... and this many AccountConsents, spread round-robin over them (default: as many as
    /// registrations; 0 measures registrations only).
    #[arg(long, requires = "registrations")]
    consents: Option<usize>,
    /// Registrations use one signing key the bench supplies (spec.signingKeySecretRef) instead of
    /// each having its own generated (~100 ms of CPU per key, one at a time).
    #[arg(long)]
    shared_signing_key: bool,
    /// Provider latency per answer, in milliseconds.
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    /// Requests per second the provider allows (it answers 429 above).
    #[arg(long, default_value_t = 100)]
    provider_rate: u32,
    /// Length of a shape's quiet window (after everything is authorised), in seconds.
    #[arg(long, default_value_t = 60)]
    steady_seconds: u64,
    /// Registrations in the short-token scenario (0: skip it).
    #[arg(long)]
    lifetime_registrations: Option<usize>,
    /// Token lifetime in the short-token scenario, in seconds.
    #[arg(long, default_value_t = 30)]
    lifetime_token_seconds: u64,
    /// How long the short-token scenario measures after all registrations are Ready and have
    /// their signing keys, in seconds.
    #[arg(long, default_value_t = 600)]
    lifetime_seconds: u64,
    /// Registrations in the steady refresh-cost scenario (0: skip it).
    #[arg(long)]
    steady_registrations: Option<usize>,
    /// Token lifetime in the steady scenario, in seconds.
    #[arg(long, default_value_t = 300)]
    steady_token_seconds: u64,
    /// How long the steady scenario measures after all registrations are Ready and have their
    /// signing keys, in seconds.
    #[arg(long, default_value_t = 600)]
    steady_window_seconds: u64,
    /// The operator's release binary.
    #[arg(long, env = "TPP_OPERATOR_BIN")]
    operator_bin: PathBuf,
    /// The test control plane binary (scripts/build-testcluster.sh).
    #[arg(long, env = "TPP_TESTCLUSTER")]
    testcluster_bin: PathBuf,
    /// Give up any one wait (for Ready, keys, URLs, authorisations) after this many seconds.
    #[arg(long, default_value_t = 1800)]
    timeout_seconds: u64,
}

/// A list of sizes; "" is none.
#[derive(Clone, Debug)]
struct Sizes(Vec<usize>);

fn parse_sizes(s: &str) -> Result<Sizes, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.parse::<usize>() {
            Ok(0) => Err("a size must be at least 1".to_string()),
            Ok(n) => Ok(n),
            Err(e) => Err(format!("{p}: {e}")),
        })
        .collect::<Result<_, _>>()
        .map(Sizes)
}

/// Registrations and consents of one shape.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub registrations: usize,
    pub consents: usize,
}

/// What one run does.
struct Plan {
    shapes: Vec<Shape>,
    lifetime: usize,
    steady: usize,
}

fn plan(args: &Args) -> Res<Plan> {
    let chosen = args.sizes.is_some()
        || args.registrations.is_some()
        || args.lifetime_registrations.is_some()
        || args.steady_registrations.is_some();
    if !chosen {
        return Ok(Plan {
            shapes: [100, 1000, 10_000]
                .map(|n| Shape {
                    registrations: n,
                    consents: n,
                })
                .to_vec(),
            lifetime: 1000,
            steady: 0,
        });
    }
    let mut shapes: Vec<Shape> = args
        .sizes
        .as_ref()
        .map(|s| s.0.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|n| Shape {
            registrations: n,
            consents: n,
        })
        .collect();
    if let Some(r) = args.registrations {
        if r == 0 {
            return Err("--registrations must be at least 1".into());
        }
        shapes.push(Shape {
            registrations: r,
            consents: args.consents.unwrap_or(r),
        });
    }
    Ok(Plan {
        shapes,
        lifetime: args.lifetime_registrations.unwrap_or(0),
        steady: args.steady_registrations.unwrap_or(0),
    })
}

type Res<T> = Result<T, String>;

fn err<E: std::fmt::Display>(context: &'static str) -> impl Fn(E) -> String {
    move |e| format!("{context}: {e}")
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let plan = match plan(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("tpp-bench: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    // Dropping the run on Ctrl-C or SIGTERM kills the control plane and the operator it started
    // (their handles kill on drop), so an interrupted benchmark leaves nothing running.
    tokio::select! {
        code = run_all(&args, &plan) => code,
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

async fn run_all(args: &Args, plan: &Plan) -> std::process::ExitCode {
    let mut failed = false;
    println!(
        "# tpp-bench {} — provider latency {} ms, provider limit {}/s{}\n",
        jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC"),
        args.latency_ms,
        args.provider_rate,
        if args.shared_signing_key {
            ", one signing key shared by all registrations"
        } else {
            ""
        }
    );
    for &s in &plan.shapes {
        match shape::run(args, s).await {
            Ok(report) => println!("{report}"),
            Err(e) => {
                failed = true;
                println!(
                    "## {}: the run could not finish: {e}\n",
                    shape::title(s, args.shared_signing_key)
                );
            }
        }
    }
    let windows = [
        (refresh::Kind::ShortLived, plan.lifetime),
        (refresh::Kind::Steady, plan.steady),
    ];
    for (kind, n) in windows.into_iter().filter(|(_, n)| *n > 0) {
        let scenario = refresh::Scenario::new(args, kind, n);
        match refresh::run(args, &scenario).await {
            Ok(report) => println!("{report}"),
            Err(e) => {
                failed = true;
                println!("## {}: the run could not finish: {e}\n", scenario.title());
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
pub struct Setup {
    pub client: Client,
    pub fake: FakeProvider,
    pub operator: Operator,
    pub idle_mib: f64,
    // Dropped in this order: the control plane stops before its directory goes.
    _cluster: Cluster,
    _dir: TempDir,
}

impl Setup {
    /// Stops the operator and the fake provider (the control plane stops on drop).
    pub async fn stop(self) {
        self.operator.stop().await;
        self.fake.shutdown().await;
    }
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
    let operator = Operator::start(OperatorArgs {
        binary: &args.operator_bin,
        kubeconfig: &cluster.kubeconfig,
        namespace: NAMESPACE,
        provider: &fake.base_url(),
        rate: client_rate(args),
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

/// The operator's `--provider-rate-limit`: a little under the provider's limit, as the fake
/// counts per calendar second.
pub fn client_rate(args: &Args) -> f64 {
    f64::from(args.provider_rate) * 0.95
}

async fn install_crds(client: &Client) -> Res<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    // All of them: the operator applies its declared ClusterProvider at start.
    for crd in tpp_operator::api::crds() {
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

/// Creates the Secrets registrations refer to: the signature certificate and, with
/// `--shared-signing-key`, one signing key (made here, before any clock runs).
pub async fn prepare_secrets(setup: &Setup, shared_signing_key: bool) -> Res<()> {
    let secrets: Api<Secret> = Api::namespaced(setup.client.clone(), NAMESPACE);
    let mut wanted = vec![json!({
        "metadata": {"name": "signature"},
        "stringData": {"signature-certificate": "bench-signature"}
    })];
    if shared_signing_key {
        let key = tpp_operator::signing::SigningKey::generate().map_err(err("signing key"))?;
        let pem = key.to_pkcs8_pem().map_err(err("signing key"))?;
        wanted.push(json!({
            "metadata": {"name": SHARED_KEY_SECRET, "labels": {tpp_operator::api::LABEL_SIGNING_KEY: "true"}},
            "stringData": {"private_key": pem, "kid": key.kid()}
        }));
    }
    for value in wanted {
        let secret: Secret = serde_json::from_value(value).map_err(err("secret"))?;
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .map_err(err("create Secret"))?;
    }
    Ok(())
}

/// Creates `n` registrations named r0..r{n-1}, all using one signature Secret (and, with
/// `shared_signing_key`, one signing key); returns when the last create has returned.
pub async fn create_registrations(
    setup: &Setup,
    n: usize,
    refresh: serde_json::Value,
    shared_signing_key: bool,
) -> Res<()> {
    let api: Api<TppRegistration> = Api::namespaced(setup.client.clone(), NAMESPACE);
    let provider = setup.fake.base_url();
    let key_ref = shared_signing_key.then(|| json!({"name": SHARED_KEY_SECRET}));
    create_all(n, |i| {
        let api = api.clone();
        let mut object = objects::registration(&format!("r{i}"))
            .provider(&provider)
            .spec("organisation", json!({"name": format!("Org {i}"), "email": format!("org{i}@bench.example"), "address": "1 Bench Way", "countryISO": "GB"}))
            .spec("callbackUrl", json!("https://bench.example/callback"))
            .signature_secret("signature")
            .spec("refresh", refresh.clone());
        if let Some(key_ref) = &key_ref {
            object = object.spec("signingKeySecretRef", key_ref.clone());
        }
        async move {
            let obj: TppRegistration =
                serde_json::from_value(object.json()).map_err(err("registration"))?;
            api.create(&PostParams::default(), &obj)
                .await
                .map(|_| ())
                .map_err(err("create registration"))
        }
    })
    .await
}

/// Runs `make(i)` for i in 0..n, 32 at a time.
pub async fn create_all<F, Fut>(n: usize, make: F) -> Res<()>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Res<()>>,
{
    futures::stream::iter(0..n)
        .map(make)
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await
        .map(|_| ())
}

pub fn ready(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Ready, with its signing key published.
pub fn registration_keyed(r: &TppRegistration) -> bool {
    r.status
        .as_ref()
        .is_some_and(|s| ready(&s.conditions) && !s.signing_keys.is_empty())
}

/// Waits until `n` of the listed objects satisfy `done`, or fails after `timeout`.
pub async fn wait_all<K, F>(
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
    let mut told = Instant::now();
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
        if told.elapsed() > Duration::from_secs(60) {
            eprintln!(
                "  {count} of {n} {what} after {:.0} s",
                started.elapsed().as_secs_f64()
            );
            told = Instant::now();
        }
        // Every second at first, then a twentieth of the time so far (so a figure is at most
        // ~5 % late), at most every 2–10 s depending on the size.
        let longest = Duration::from_secs((n as u64 / 1000).clamp(2, 10));
        let interval = (started.elapsed() / 20).clamp(Duration::from_secs(1), longest);
        tokio::time::sleep(interval).await;
    }
}

/// How scheduled refreshes spread over time.
pub struct Spread {
    pub first_to_last_seconds: i64,
    pub busiest_second: usize,
}

pub fn spread(times: &[jiff::Timestamp]) -> Spread {
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
pub fn duplicate_token_calls(fake: &FakeProvider) -> usize {
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

/// Every provider call of the operator's endpoints.
pub fn total(c: &fake_provider::CallCounts) -> u64 {
    c.registration
        + c.client_token
        + c.auth_code_token
        + c.consent_create
        + c.consent_get
        + c.consent_delete
}

/// `12.3 s`.
pub fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec![
            "tpp-bench",
            "--operator-bin",
            "op",
            "--testcluster-bin",
            "tc",
        ];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).expect("arguments")
    }

    fn shapes(p: &Plan) -> Vec<(usize, usize)> {
        p.shapes
            .iter()
            .map(|s| (s.registrations, s.consents))
            .collect()
    }

    #[test]
    fn no_scenario_flag_runs_the_default_suite() {
        let p = plan(&args(&[])).expect("plan");
        assert_eq!(shapes(&p), [(100, 100), (1000, 1000), (10_000, 10_000)]);
        assert_eq!((p.lifetime, p.steady), (1000, 0));
    }

    #[test]
    fn any_scenario_flag_runs_only_the_named_ones() {
        let p = plan(&args(&["--registrations", "5", "--consents", "50"])).expect("plan");
        assert_eq!(shapes(&p), [(5, 50)]);
        assert_eq!((p.lifetime, p.steady), (0, 0));
        let p = plan(&args(&["--steady-registrations", "20"])).expect("plan");
        assert!(p.shapes.is_empty());
        assert_eq!((p.lifetime, p.steady), (0, 20));
        let p = plan(&args(&["--sizes", "", "--registrations", "7"])).expect("plan");
        assert_eq!(shapes(&p), [(7, 7)]);
        let p = plan(&args(&[
            "--sizes",
            "100",
            "--lifetime-registrations",
            "50",
            "--registrations",
            "10",
            "--consents",
            "0",
        ]))
        .expect("plan");
        assert_eq!(shapes(&p), [(100, 100), (10, 0)]);
        assert_eq!(p.lifetime, 50);
    }

    #[test]
    fn bad_shapes_are_refused() {
        assert!(parse_sizes("100,0").is_err());
        assert!(parse_sizes("x").is_err());
        assert!(plan(&args(&["--registrations", "0"])).is_err());
        let argv = [
            "tpp-bench",
            "--operator-bin",
            "op",
            "--testcluster-bin",
            "tc",
            "--consents",
            "5",
        ];
        assert!(Args::try_parse_from(argv).is_err());
    }
}
