//! The `tpp-operator` binary: `run` the controller, or print the `crds`.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tpp_operator::controller::{self, Context};
use tpp_operator::http::{self, HttpState, PublicLimits};
use tpp_operator::leader::LeaseConfig;
use tpp_operator::provider::{ProviderClient, ProviderConfig};
use tpp_operator::telemetry::{self, Metrics};

mod check;
mod plugin;
mod run_args;

use run_args::RunArgs;

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

async fn run(args: RunArgs) -> Result<(), String> {
    let settings = args.settings()?;
    let limits = args.public_limits()?;
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
