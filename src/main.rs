//! The `tpp-operator` binary: `run` the controller, or print the `crds`.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tpp_operator::api::contract::parse_return_url_prefixes;
use tpp_operator::controller::{self, Context, Settings};
use tpp_operator::http::{self, ConnectionLimits, HttpState, PublicLimits};
use tpp_operator::leader::LeaseConfig;
use tpp_operator::provider::{parse_base_url, ProviderClient, ProviderConfig};
use tpp_operator::secrets::TemplatePolicy;
use tpp_operator::telemetry::{self, LogFormat, Metrics};

mod check;
mod plugin;

#[derive(Parser)]
#[command(
    name = "tpp-operator",
    version,
    about = "Keeps Open Banking TPP credentials and tokens fresh in Kubernetes Secrets"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller and its HTTP servers (public: JWKS and callback; internal: health,
    /// readiness, metrics).
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions as YAML (what crds/ holds).
    Crds,
    /// Check an installation (the chart's `helm test`): the operator answers its readiness URL
    /// and, with --crds, both CRDs are established.
    Check(CheckArgs),
}

#[derive(clap::Args)]
struct CheckArgs {
    /// URL that must answer 200, e.g. http://tpp-operator.tpp-system.svc:9090/readyz.
    #[arg(long)]
    url: String,
    /// Also check that the CRDs are installed and established (needs Kubernetes access).
    #[arg(long)]
    crds: bool,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The ClusterProvider of TppRegistrations that name none (spec.providerRef).
    #[arg(long, env = "TPP_DEFAULT_PROVIDER", default_value = tpp_operator::api::DEFAULT_PROVIDER)]
    default_provider: String,
    /// A JSON list of ClusterProviders to apply at start (each a name and a ClusterProvider
    /// spec): the chart's `providers` value.
    #[arg(long, env = "TPP_PROVIDERS_FILE")]
    providers_file: Option<String>,
    /// Removed: providers are ClusterProviders now (see README, "Migrating from
    /// --allowed-provider-url"). Refused with that message when set.
    #[arg(
        long = "allowed-provider-url",
        env = "TPP_ALLOWED_PROVIDER_URLS",
        hide = true
    )]
    removed_allowed_provider_urls: Option<String>,
    /// Removed, like --allowed-provider-url.
    #[arg(
        long = "default-provider-url",
        env = "TPP_DEFAULT_PROVIDER_URL",
        hide = true
    )]
    removed_default_provider_url: Option<String>,
    /// Label and annotation keys spec.secretTemplate may set, comma-separated (`*` matches any
    /// characters); default: any key not denied.
    #[arg(
        long = "secret-template-allowed-key",
        env = "TPP_SECRET_TEMPLATE_ALLOWED_KEYS",
        value_delimiter = ','
    )]
    secret_template_allowed_keys: Vec<String>,
    /// Label and annotation keys spec.secretTemplate may never set, comma-separated (`*`
    /// matches any characters); default: the well-known replicators' keys (Reflector, kubed,
    /// kubernetes-replicator, Kyverno) and anything under kubernetes.io/ and k8s.io/. The
    /// operator's own tpp-operator.dev/ keys are always refused.
    #[arg(
        long = "secret-template-denied-key",
        env = "TPP_SECRET_TEMPLATE_DENIED_KEYS",
        value_delimiter = ','
    )]
    secret_template_denied_keys: Option<Vec<String>>,
    /// Watch only these namespaces, comma-separated (default: all namespaces).
    #[arg(
        long = "namespace",
        env = "TPP_WATCH_NAMESPACES",
        value_delimiter = ','
    )]
    namespaces: Vec<String>,
    /// External base URL of this operator's HTTP server (as the provider reaches it, e.g. through
    /// the chart's Ingress); used for the JWKS URL shown in status.
    #[arg(long, env = "TPP_PUBLIC_URL")]
    public_url: Option<String>,
    /// Address of the public HTTP server: /callback and /jwks (expose it through an Ingress).
    #[arg(long, env = "TPP_PUBLIC_ADDR", default_value = "0.0.0.0:8080")]
    public_addr: SocketAddr,
    /// Address of the cluster-internal HTTP server: /healthz, /readyz and /metrics.
    #[arg(long, env = "TPP_METRICS_ADDR", default_value = "0.0.0.0:9090")]
    metrics_addr: SocketAddr,
    /// Requests per second one client may send to /callback (then 429); bursts of twice that.
    #[arg(long, env = "TPP_PUBLIC_CALLBACK_RATE", default_value_t = 5.0)]
    public_callback_rate: f64,
    /// Requests per second one client may send to /jwks (then 429); bursts of twice that.
    #[arg(long, env = "TPP_PUBLIC_JWKS_RATE", default_value_t = 10.0)]
    public_jwks_rate: f64,
    /// The platform's proxies in front of the public listener (Ingress controller, load
    /// balancer), as addresses or CIDR ranges, comma-separated: behind them a client is known
    /// by the first X-Forwarded-For hop they did not write. Default: none (the direct peer).
    #[arg(
        long = "public-trusted-proxy",
        env = "TPP_PUBLIC_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    public_trusted_proxies: Vec<String>,
    /// Requests the public server handles at once (more get 503 at once).
    #[arg(long, env = "TPP_PUBLIC_CONCURRENCY", default_value_t = 32)]
    public_concurrency: usize,
    /// Connections the public server keeps open at once (more are closed at accept).
    #[arg(long, env = "TPP_PUBLIC_MAX_CONNECTIONS", default_value_t = 1024)]
    public_max_connections: usize,
    /// Timeout of one provider call, in seconds.
    #[arg(long, env = "TPP_PROVIDER_TIMEOUT_SECONDS", default_value_t = 30)]
    provider_timeout_seconds: u64,
    /// Requests per second allowed to each provider host.
    #[arg(long, env = "TPP_PROVIDER_RATE_LIMIT", default_value_t = 10.0)]
    provider_rate_limit: f64,
    /// Longest Retry-After honoured, in seconds: a provider asking for longer is waited for
    /// this long, so a hostile or broken answer cannot pause its objects for good.
    #[arg(
        long,
        env = "TPP_PROVIDER_MAX_RETRY_AFTER_SECONDS",
        default_value_t = 3600
    )]
    provider_max_retry_after_seconds: u64,
    /// Requests allowed in a burst above the rate.
    #[arg(long, env = "TPP_PROVIDER_BURST", default_value_t = 10)]
    provider_burst: u32,
    /// First interval, in seconds, between two status polls of a consent awaiting
    /// authorisation; it doubles while nothing changes, up to five minutes.
    #[arg(long, env = "TPP_CONSENT_POLL_SECONDS", default_value_t = 10)]
    consent_poll_seconds: u64,
    /// Log format.
    #[arg(long, env = "TPP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Elect a leader with a Lease so that several replicas can run; only the holder reconciles.
    #[arg(long, env = "TPP_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Namespace of the Lease (default: the pod's namespace, else "default").
    #[arg(long, env = "TPP_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(long, env = "TPP_LEASE_NAME", default_value = "tpp-operator")]
    lease_name: String,
    /// Seconds a Lease stays valid without renewal; a standby takes over after that.
    #[arg(long, env = "TPP_LEASE_DURATION_SECONDS", default_value_t = 15)]
    lease_duration_seconds: u64,
    /// URL prefixes an AccountConsent's spec.returnUrl may start with, comma-separated
    /// (https; same scheme, host and port, path below the prefix's). Default: none, so no
    /// consent may send its customers back to an app.
    #[arg(
        long = "allowed-return-url",
        env = "TPP_ALLOWED_RETURN_URLS",
        value_delimiter = ','
    )]
    allowed_return_urls: Vec<String>,
}

/// The pod's namespace when running in a cluster.
fn own_namespace() -> Option<String> {
    std::env::var("POD_NAMESPACE").ok().or_else(|| {
        std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
            .ok()
            .map(|s| s.trim().to_string())
    })
}

/// This replica's identity in the Lease: the pod name, else host name and process id.
fn identity() -> String {
    std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    })
}

fn main() -> ExitCode {
    // `kubectl tpp ...` (as kubectl-tpp, or `tpp-operator kubectl ...`): see src/plugin/.
    if let Some(args) = plugin::invocation(&std::env::args_os().collect::<Vec<_>>()) {
        return plugin::main(args);
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Crds => match tpp_operator::api::crds_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot render CRDs: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Check(args) => {
            match runtime().map(|rt| rt.block_on(check::installation(&args.url, args.crds))) {
                Ok(Ok(())) => {
                    println!("ok");
                    ExitCode::SUCCESS
                }
                Ok(Err(e)) | Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run(args) => {
            telemetry::init_logging(args.log_format);
            telemetry::install_panic_hook();
            let runtime = match runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "tpp-operator stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// The operator-wide settings from the flags.
fn settings(args: &RunArgs) -> Result<Settings, String> {
    let removed = [
        &args.removed_allowed_provider_urls,
        &args.removed_default_provider_url,
    ];
    if removed
        .iter()
        .any(|v| v.as_deref().is_some_and(|v| !v.trim().is_empty()))
    {
        // Silently ignoring them could send a registration's credentials to another host.
        return Err("--allowed-provider-url and --default-provider-url (TPP_ALLOWED_PROVIDER_URLS, TPP_DEFAULT_PROVIDER_URL) were removed: providers are ClusterProviders now. Create one ClusterProvider per provider URL, allowing the namespaces that use it, and name the default one with --default-provider (the chart does both from its `providers` value); see README, \"Migrating from --allowed-provider-url\".".into());
    }
    let public_url = match &args.public_url {
        Some(raw) => Some(parse_base_url(raw).map_err(|e| format!("--public-url: {e}"))?),
        None => None,
    };
    Ok(Settings {
        public_url,
        default_provider: args.default_provider.clone(),
        namespaces: args
            .namespaces
            .iter()
            .filter(|n| !n.trim().is_empty())
            .cloned()
            .collect(),
        consent_poll_interval: Duration::from_secs(args.consent_poll_seconds.max(1)),
        // A quarter of the provider budget: registrations, tokens and consents come first.
        consent_poll_rate: (args.provider_rate_limit / 4.0).max(0.1),
        template_policy: template_policy(args),
        allowed_return_urls: parse_return_url_prefixes(&args.allowed_return_urls)
            .map_err(|e| format!("--allowed-return-url: {e}"))?,
    })
}

/// The rule for `spec.secretTemplate` keys: the flags' lists (empty entries ignored), the
/// default denied keys when none are given.
fn template_policy(args: &RunArgs) -> TemplatePolicy {
    let list = |keys: &[String]| -> Vec<String> {
        keys.iter()
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .collect()
    };
    let mut policy = TemplatePolicy {
        allowed: list(&args.secret_template_allowed_keys),
        ..TemplatePolicy::default()
    };
    if let Some(denied) = &args.secret_template_denied_keys {
        policy.denied = list(denied);
    }
    policy
}

async fn run(args: RunArgs) -> Result<(), String> {
    let settings = settings(&args)?;
    let limits = args_limits(&args)?;
    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("cannot reach Kubernetes (KUBECONFIG or in-cluster config): {e}"))?;
    check::crds_readable(&client, &settings.namespaces).await.map_err(|e| {
        format!("cannot list TppRegistrations; are the CRDs installed (kubectl apply -f crds/) and RBAC granted? {e}")
    })?;
    if let Some(path) = args.providers_file.as_deref().filter(|p| !p.is_empty()) {
        let applied = controller::providers::apply_declared(&client, path).await?;
        tracing::info!(providers = ?applied, "declared ClusterProviders applied");
    }
    let metrics = Arc::new(Metrics::new());
    let provider = ProviderClient::new(
        &ProviderConfig {
            timeout: Duration::from_secs(args.provider_timeout_seconds.max(1)),
            rate_limit: args.provider_rate_limit,
            burst: args.provider_burst,
            max_retry_after: Duration::from_secs(args.provider_max_retry_after_seconds.max(1)),
            ..ProviderConfig::default()
        },
        metrics.clone(),
    )
    .map_err(|e| e.to_string())?;
    let ctx = Arc::new(Context::new(client, provider, metrics, settings));
    let lease = args.leader_elect.then(|| {
        LeaseConfig::new(
            args.lease_namespace
                .clone()
                .or_else(own_namespace)
                .unwrap_or_else(|| "default".into()),
            args.lease_name.clone(),
            identity(),
            Duration::from_secs(args.lease_duration_seconds.max(3)),
        )
    });

    // One cancellation tree: a signal stops the servers and, after its in-flight reconciles,
    // the controller; a controller that ends by itself (lost lease) stops the servers too.
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let servers = tokio::spawn(serve_http(
        limits,
        args.public_addr,
        args.metrics_addr,
        ctx.clone(),
        shutdown.clone(),
    ));
    tracing::info!(
        default_provider = %ctx.settings.default_provider,
        namespaces = ?ctx.settings.namespaces,
        leader_elect = args.leader_elect,
        "tpp-operator started"
    );
    let controlled = controller::run_elected(ctx.clone(), lease, shutdown.child_token()).await;
    shutdown.cancel();
    let served = servers
        .await
        .map_err(|e| format!("HTTP server task: {e}"))
        .and_then(|r| r);
    controlled
        .map_err(|e| format!("{e}; exiting so that this replica restarts as a standby"))
        .and(served)
}

fn args_limits(args: &RunArgs) -> Result<PublicLimits, String> {
    let trusted_proxies = args
        .public_trusted_proxies
        .iter()
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.parse()
                .map_err(|e| format!("--public-trusted-proxy: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PublicLimits {
        callback_rate: args.public_callback_rate.max(0.1),
        jwks_rate: args.public_jwks_rate.max(0.1),
        trusted_proxies,
        concurrency: args.public_concurrency.max(1),
        connections: ConnectionLimits {
            max_connections: args.public_max_connections.max(1),
            ..ConnectionLimits::default()
        },
        ..PublicLimits::default()
    })
}

/// Serves the public and the operations listeners until the stop signal.
async fn serve_http(
    limits: PublicLimits,
    public_addr: SocketAddr,
    metrics_addr: SocketAddr,
    ctx: Arc<Context>,
    stop: CancellationToken,
) -> Result<(), String> {
    let bind = |addr: SocketAddr| async move {
        tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr}: {e}"))
    };
    let (public, ops) = (bind(public_addr).await?, bind(metrics_addr).await?);
    let state = HttpState::new(ctx, &limits);
    let (a, b) = tokio::join!(
        http::serve_on(
            public,
            http::public_router(state.clone(), &limits),
            &limits,
            stop.clone().cancelled_owned()
        ),
        http::serve_on(
            ops,
            http::ops_router(state),
            &limits,
            stop.cancelled_owned()
        ),
    );
    a.and(b).map_err(|e| format!("HTTP server: {e}"))
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C.
async fn cancel_on_signal(shutdown: CancellationToken) {
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight reconciles");
    shutdown.cancel();
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
