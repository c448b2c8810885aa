//! The operator's two HTTP listeners. The public one (`/callback`, `/jwks`) faces the internet
//! through the chart's Ingress: every input is validated before any API call, and requests are
//! bounded in rate, concurrency, time and size. The operations one (`/healthz`, `/readyz`,
//! `/metrics`) stays inside the cluster. Every replica serves both, not only the leader, so the
//! provider and the customer's browser can reach any of them.

mod callback;
mod jwks;
mod ops;

use crate::controller::Context;
use crate::provider::TokenBucket;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Limits of the public listener.
#[derive(Clone, Copy, Debug)]
pub struct PublicLimits {
    /// Requests per second over all clients (behind an Ingress every client has the same
    /// address, so a per-client limit would mean nothing).
    pub rate: f64,
    /// Burst above the rate.
    pub burst: u32,
    /// Requests handled at once; more are refused with 503 at once, not queued.
    pub concurrency: usize,
    /// Longest time one request may take.
    pub timeout: Duration,
}

impl Default for PublicLimits {
    fn default() -> Self {
        PublicLimits {
            rate: 50.0,
            burst: 100,
            concurrency: 32,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Longest request line accepted on the public listener (a redirect carries a code, an id
/// token and a state: a few KiB at most).
const MAX_URI_BYTES: usize = 8 * 1024;

/// What the handlers read.
#[derive(Clone)]
pub struct HttpState {
    /// The shared context (client, readiness, metrics, watched namespaces).
    pub ctx: Arc<Context>,
    jwks: Arc<jwks::Cache>,
    bucket: Arc<Mutex<TokenBucket>>,
}

impl HttpState {
    /// State for both listeners.
    pub fn new(ctx: Arc<Context>, limits: &PublicLimits) -> Self {
        HttpState {
            ctx,
            jwks: Arc::default(),
            bucket: Arc::new(Mutex::new(TokenBucket::new(
                limits.rate,
                limits.burst,
                Instant::now(),
            ))),
        }
    }

    /// Whether `namespace` is one this operator serves.
    fn serves(&self, namespace: &str) -> bool {
        let watched = &self.ctx.settings.namespaces;
        watched.is_empty() || watched.iter().any(|n| n == namespace)
    }
}

/// The internet-facing routes with their limits.
pub fn public_router(state: HttpState, limits: &PublicLimits) -> Router {
    use tower::ServiceBuilder;
    Router::new()
        .route("/jwks", get(jwks::all_keys))
        .route("/jwks/{namespace}/{name}", get(jwks::registration_keys))
        .route("/callback", get(callback::callback))
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
                .layer(tower_http::limit::RequestBodyLimitLayer::new(1024)),
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

/// The rate limit and the request-line bound, before anything else runs. Written here rather
/// than taken from a crate: behind an Ingress a per-address limiter (what the crates offer)
/// would see one address, and the operator's own token bucket already does the job.
async fn admit(State(state): State<HttpState>, request: Request, next: Next) -> Response {
    if request.uri().to_string().len() > MAX_URI_BYTES {
        return (StatusCode::URI_TOO_LONG, "request too long").into_response();
    }
    let wait = state
        .bucket
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .try_take(Instant::now());
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

/// Serves `router` on an already bound listener until `shutdown` resolves.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "HTTP server listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
