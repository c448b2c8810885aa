//! The operator's two HTTP listeners. The public one (`/callback`, `/jwks`) faces the internet
//! through the chart's Ingress: every input is validated before any API call, and requests are
//! bounded in rate, concurrency, time and size. The operations one (`/healthz`, `/readyz`,
//! `/metrics`) stays inside the cluster. Every replica serves both, not only the leader, so the
//! provider and the customer's browser can reach any of them.

mod callback;
mod fragment;
mod jwks;
mod limits;
mod ops;
mod serve;

pub use limits::{client_address, Cidr, PerClientLimit};
pub use serve::ConnectionLimits;

use crate::controller::Context;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Limits of the public listener.
#[derive(Clone, Debug)]
pub struct PublicLimits {
    /// Requests per second one client may send to `/callback` (customers come back once or
    /// twice each).
    pub callback_rate: f64,
    /// Requests per second one client may send to `/jwks` (the provider fetches keys).
    pub jwks_rate: f64,
    /// Clients whose budgets are tracked at once; beyond, new clients share one budget.
    pub max_clients: usize,
    /// The platform's proxies (Ingress controllers, load balancers): behind them a client is
    /// known by the first `X-Forwarded-For` hop they did not write.
    pub trusted_proxies: Vec<Cidr>,
    /// Requests handled at once; more are refused with 503 at once, not queued.
    pub concurrency: usize,
    /// Longest time one request may take.
    pub timeout: Duration,
    /// What one connection may do.
    pub connections: ConnectionLimits,
}

impl Default for PublicLimits {
    fn default() -> Self {
        PublicLimits {
            callback_rate: 5.0,
            jwks_rate: 10.0,
            max_clients: 10_000,
            trusted_proxies: Vec::new(),
            concurrency: 32,
            timeout: Duration::from_secs(10),
            connections: ConnectionLimits::default(),
        }
    }
}

/// Longest request line accepted on the public listener (a redirect carries a code, an id
/// token and a state: a few KiB at most).
const MAX_URI_BYTES: usize = 8 * 1024;

/// The per-client budgets of the public paths.
struct Budgets {
    callback: PerClientLimit,
    jwks: PerClientLimit,
    trusted: Vec<Cidr>,
}

/// What the handlers read.
#[derive(Clone)]
pub struct HttpState {
    /// The shared context (client, readiness, metrics, watched namespaces).
    pub ctx: Arc<Context>,
    jwks: Arc<jwks::Cache>,
    budgets: Arc<Budgets>,
}

impl HttpState {
    /// State for both listeners.
    pub fn new(ctx: Arc<Context>, limits: &PublicLimits) -> Self {
        let budget = |rate: f64| {
            let burst = (rate * 2.0).clamp(1.0, 10_000.0) as u32;
            PerClientLimit::new(rate.max(0.01), burst, limits.max_clients)
        };
        HttpState {
            ctx,
            jwks: Arc::default(),
            budgets: Arc::new(Budgets {
                callback: budget(limits.callback_rate),
                jwks: budget(limits.jwks_rate),
                trusted: limits.trusted_proxies.clone(),
            }),
        }
    }

    /// Whether `namespace` is one this operator serves.
    fn serves(&self, namespace: &str) -> bool {
        let watched = &self.ctx.settings.namespaces;
        watched.is_empty() || watched.iter().any(|n| n == namespace)
    }
}

/// Largest request body on the public listener, but for the fragment page's post.
const MAX_BODY_BYTES: usize = 1024;

/// The internet-facing routes with their limits.
pub fn public_router(state: HttpState, limits: &PublicLimits) -> Router {
    use tower::ServiceBuilder;
    use tower_http::limit::RequestBodyLimitLayer;
    // Only the fragment page's post carries a body worth reading (a code, an id token and a
    // state): it alone may send up to 8 KiB (the bound of the whole listener, below); every
    // other route 1 KiB.
    let small_body = RequestBodyLimitLayer::new(MAX_BODY_BYTES);
    Router::new()
        .route("/jwks", get(jwks::all_keys))
        .route("/jwks/{namespace}/{name}", get(jwks::registration_keys))
        .route("/callback.js", get(fragment::script))
        .route_layer(small_body)
        .route(
            "/callback",
            get(callback::callback)
                .route_layer(small_body)
                .post(callback::posted),
        )
        .layer(
            ServiceBuilder::new()
                // A panic in a handler answers 500 instead of dropping the connection.
                .layer(tower_http::catch_panic::CatchPanicLayer::new())
                .layer(axum::error_handling::HandleErrorLayer::new(overloaded))
                .load_shed()
                .concurrency_limit(limits.concurrency)
                .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                    StatusCode::SERVICE_UNAVAILABLE,
                    limits.timeout,
                ))
                // The most any request may send: the fragment page's post.
                .layer(RequestBodyLimitLayer::new(callback::MAX_FORM_BYTES)),
        )
        .layer(middleware::from_fn_with_state(state.clone(), admit))
        .with_state(state)
}

/// The routes for the cluster: probes and metrics.
pub fn ops_router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .with_state(state)
}

async fn overloaded(_: tower::BoxError) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "busy; try again shortly").into_response()
}

/// The request-line bound and the client's budget for the path, before anything else runs.
async fn admit(State(state): State<HttpState>, request: Request, next: Next) -> Response {
    if request.uri().to_string().len() > MAX_URI_BYTES {
        return (StatusCode::URI_TOO_LONG, "request too long").into_response();
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let budgets = &state.budgets;
    let client = client_address(peer, request.headers(), &budgets.trusted);
    // Every path but the JWKS (unknown ones too) spends the callback budget.
    let budget = if request.uri().path().starts_with("/jwks") {
        &budgets.jwks
    } else {
        &budgets.callback
    };
    let wait = budget.try_take(client, Instant::now());
    if !wait.is_zero() {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", wait.as_secs().max(1).to_string())],
            "too many requests",
        )
            .into_response();
    }
    next.run(request).await
}

/// Serves `router` on an already bound listener until `shutdown` resolves, with the
/// connection limits of `limits` (see `serve.rs`).
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: &PublicLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve::serve_on(
        listener,
        router,
        limits.connections.clone(),
        limits.trusted_proxies.clone().into(),
        shutdown,
    )
    .await
}
