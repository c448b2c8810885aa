//! The operator's HTTP server: liveness, readiness, Prometheus metrics and the JWKS of the
//! signing keys. Every replica serves the JWKS (from its own watch of TppRegistrations), not only
//! the leader, so the provider can fetch it through any of them.

use crate::api::TppRegistration;
use crate::controller::Context;
use crate::signing::{Jwk, Jwks};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use kube::runtime::reflector::{ObjectRef, Store};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What the handlers read.
#[derive(Clone)]
pub struct HttpState {
    /// The shared context (readiness, metrics).
    pub ctx: Arc<Context>,
    /// TppRegistrations as this replica sees them, one store per watched scope.
    pub registrations: Vec<Store<TppRegistration>>,
}

/// Builds the router.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/jwks", get(all_keys))
        .route("/jwks/{namespace}/{name}", get(registration_keys))
        .with_state(state)
}

fn jwk(key: &crate::api::PublishedKey) -> Jwk {
    Jwk {
        kty: "RSA".into(),
        kid: key.kid.clone(),
        use_: "sig".into(),
        alg: "PS256".into(),
        n: key.modulus.clone(),
        e: key.exponent.clone(),
    }
}

fn keys_of(registration: &TppRegistration) -> Vec<Jwk> {
    registration
        .status
        .as_ref()
        .map(|s| s.signing_keys.iter().map(jwk).collect())
        .unwrap_or_default()
}

/// Every published key of every registration (kids are unique: they are thumbprints or chosen
/// by the TPP).
async fn all_keys(State(state): State<HttpState>) -> Json<Jwks> {
    let mut keys: Vec<Jwk> = state
        .registrations
        .iter()
        .flat_map(|s| s.state())
        .flat_map(|r| keys_of(&r))
        .collect();
    keys.sort_by(|a, b| a.kid.cmp(&b.kid));
    keys.dedup_by(|a, b| a.kid == b.kid);
    Json(Jwks { keys })
}

async fn registration_keys(
    State(state): State<HttpState>,
    Path((namespace, name)): Path<(String, String)>,
) -> axum::response::Response {
    let reference = ObjectRef::<TppRegistration>::new(&name).within(&namespace);
    match state.registrations.iter().find_map(|s| s.get(&reference)) {
        Some(registration) => Json(Jwks {
            keys: keys_of(&registration),
        })
        .into_response(),
        None => (StatusCode::NOT_FOUND, "no such TppRegistration").into_response(),
    }
}

async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    if state.ctx.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.ctx.metrics.encode(),
    )
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "HTTP server listening");
    let registrations = watch_registrations(&ctx);
    axum::serve(listener, router(HttpState { ctx, registrations }))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Starts one reflector per watched scope; they run for the life of the process.
pub fn watch_registrations(ctx: &Context) -> Vec<Store<TppRegistration>> {
    use futures::StreamExt;
    use kube::runtime::{reflector, watcher, WatchStreamExt};
    let scopes: Vec<kube::Api<TppRegistration>> = if ctx.settings.namespaces.is_empty() {
        vec![kube::Api::all(ctx.client.clone())]
    } else {
        ctx.settings
            .namespaces
            .iter()
            .map(|ns| kube::Api::namespaced(ctx.client.clone(), ns))
            .collect()
    };
    scopes
        .into_iter()
        .map(|api| {
            let (reader, writer) = reflector::store();
            let stream = reflector(
                writer,
                watcher(api, watcher::Config::default().any_semantic()),
            )
            .default_backoff();
            tokio::spawn(stream.for_each(|_| futures::future::ready(())));
            reader
        })
        .collect()
}
