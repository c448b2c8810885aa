//! The `tpp-operator` binary: `run` the controller, or print the `crds`.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tpp_operator::controller::{self, Context, Settings};
use tpp_operator::leader::LeaseConfig;
use tpp_operator::provider::{parse_base_url, ProviderClient, ProviderConfig};
use tpp_operator::telemetry::{self, LogFormat, Metrics};

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
    /// Run the controller and its HTTP server (health, readiness, metrics).
    Run(RunArgs),
    /// Print the CustomResourceDefinitions as YAML (what crds/ holds).
    Crds,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Provider base URL for TppRegistrations that set no spec.providerUrl.
    #[arg(long, env = "TPP_DEFAULT_PROVIDER_URL", default_value = tpp_operator::api::DEFAULT_PROVIDER_URL)]
    default_provider_url: String,
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
    /// Address of the HTTP server for /healthz, /readyz, /metrics and /jwks.
    #[arg(long, env = "TPP_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: SocketAddr,
    /// Timeout of one provider call, in seconds.
    #[arg(long, env = "TPP_PROVIDER_TIMEOUT_SECONDS", default_value_t = 30)]
    provider_timeout_seconds: u64,
    /// Requests per second allowed to each provider host.
    #[arg(long, env = "TPP_PROVIDER_RATE_LIMIT", default_value_t = 10.0)]
    provider_rate_limit: f64,
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
        Command::Run(args) => {
            telemetry::init_logging(args.log_format);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "tpp-operator stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run(args: RunArgs) -> Result<(), String> {
    let default_provider_url = parse_base_url(&args.default_provider_url)
        .map_err(|e| format!("--default-provider-url: {e}"))?;
    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("cannot reach Kubernetes (KUBECONFIG or in-cluster config): {e}"))?;
    controller::check_crds(&client, &args.namespaces).await.map_err(|e| {
        format!("cannot list TppRegistrations; are the CRDs installed (kubectl apply -f crds/) and RBAC granted? {e}")
    })?;
    let metrics = Arc::new(Metrics::new());
    let provider = ProviderClient::new(
        &ProviderConfig {
            timeout: Duration::from_secs(args.provider_timeout_seconds.max(1)),
            rate_limit: args.provider_rate_limit,
            burst: args.provider_burst,
        },
        metrics.clone(),
    )
    .map_err(|e| e.to_string())?;
    let public_url = match &args.public_url {
        Some(raw) => Some(parse_base_url(raw).map_err(|e| format!("--public-url: {e}"))?),
        None => None,
    };
    let settings = Settings {
        public_url,
        default_provider_url,
        namespaces: args
            .namespaces
            .into_iter()
            .filter(|n| !n.trim().is_empty())
            .collect(),
        consent_poll_interval: Duration::from_secs(args.consent_poll_seconds.max(1)),
        // A quarter of the provider budget: registrations, tokens and consents come first.
        consent_poll_rate: (args.provider_rate_limit / 4.0).max(0.1),
    };
    let ctx = Arc::new(Context::new(client, provider, metrics, settings));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait_stop = move |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stopped| *stopped).await;
    };
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
    let http = tokio::spawn(tpp_operator::http::serve(
        args.http_addr,
        ctx.clone(),
        wait_stop(stop_rx.clone()),
    ));
    let mut controller = tokio::spawn(controller::run_elected(
        ctx.clone(),
        lease,
        wait_stop(stop_rx),
    ));
    tracing::info!(
        provider = %ctx.settings.default_provider_url,
        namespaces = ?ctx.settings.namespaces,
        leader_elect = args.leader_elect,
        "tpp-operator started"
    );

    let outcome = tokio::select! {
        _ = shutdown_signal() => {
            tracing::info!("shutting down: finishing in-flight reconciles");
            let _ = stop_tx.send(true);
            match controller.await {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(e) => Err(format!("controller task: {e}")),
            }
        }
        ended = &mut controller => {
            let _ = stop_tx.send(true);
            match ended {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("{e}; exiting so that this replica restarts as a standby")),
                Err(e) => Err(format!("controller task: {e}")),
            }
        }
    };
    let served = match http.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("HTTP server on {}: {e}", args.http_addr)),
        Err(e) => Err(format!("HTTP server task: {e}")),
    };
    outcome.and(served)
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
