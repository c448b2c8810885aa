//! The operator's HTTP server: liveness, readiness, Prometheus metrics, the JWKS of the signing
//! keys and the authorisation callback. Every replica serves them, not only the leader, so the
//! provider and the customer's browser can reach any of them; they read what they need from the
//! API server per request rather than keeping a copy of every object.

use crate::api::{AccountConsent, TppRegistration, LABEL_CONSENT, LABEL_MANAGED_BY, MANAGED_BY};
use crate::controller::Context;
use crate::signing::{Jwk, Jwks};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::Resource;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What the handlers read.
#[derive(Clone)]
pub struct HttpState {
    /// The shared context (client, readiness, metrics, watched namespaces).
    pub ctx: Arc<Context>,
}

impl HttpState {
    /// Whether `namespace` is one this operator serves.
    fn serves(&self, namespace: &str) -> bool {
        let watched = &self.ctx.settings.namespaces;
        watched.is_empty() || watched.iter().any(|n| n == namespace)
    }
}

/// Builds the router.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/jwks", get(all_keys))
        .route("/jwks/{namespace}/{name}", get(registration_keys))
        .route("/callback", get(callback))
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
/// by the TPP). Read from the API server's watch cache: this replica keeps no copy of every
/// registration, and the provider fetches the per-registration URL instead.
async fn all_keys(State(state): State<HttpState>) -> axum::response::Response {
    let apis: Vec<kube::Api<TppRegistration>> = if state.ctx.settings.namespaces.is_empty() {
        vec![kube::Api::all(state.ctx.client.clone())]
    } else {
        state
            .ctx
            .settings
            .namespaces
            .iter()
            .map(|ns| kube::Api::namespaced(state.ctx.client.clone(), ns))
            .collect()
    };
    let mut keys: Vec<Jwk> = Vec::new();
    for api in apis {
        match api.list(&ListParams::default().match_any()).await {
            Ok(list) => keys.extend(list.items.iter().flat_map(keys_of)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list TppRegistrations for /jwks");
                return (StatusCode::SERVICE_UNAVAILABLE, "cannot read the keys now")
                    .into_response();
            }
        }
    }
    keys.sort_by(|a, b| a.kid.cmp(&b.kid));
    keys.dedup_by(|a, b| a.kid == b.kid);
    Json(Jwks { keys }).into_response()
}

async fn registration_keys(
    State(state): State<HttpState>,
    Path((namespace, name)): Path<(String, String)>,
) -> axum::response::Response {
    let not_found = || (StatusCode::NOT_FOUND, "no such TppRegistration").into_response();
    if !state.serves(&namespace) {
        return not_found();
    }
    let api: kube::Api<TppRegistration> =
        kube::Api::namespaced(state.ctx.client.clone(), &namespace);
    match api.get_opt(&name).await {
        Ok(Some(registration)) => Json(Jwks {
            keys: keys_of(&registration),
        })
        .into_response(),
        Ok(None) => not_found(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read a TppRegistration for its JWKS");
            (StatusCode::SERVICE_UNAVAILABLE, "cannot read the keys now").into_response()
        }
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

/// What the provider's redirect carries (response_mode=query).
#[derive(serde::Deserialize)]
struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    id_token: Option<String>,
    error: Option<String>,
}

/// The customer's browser comes back here from the provider. The state names exactly one
/// consent awaiting authorisation; the code is handed to the leader through an owned Secret
/// (this replica may be a standby, and only the leader talks to the provider). Creating that
/// Secret is atomic, so a replayed redirect is refused rather than exchanged twice. Responses
/// never echo what the request carried.
async fn callback(
    State(state): State<HttpState>,
    axum::extract::Query(q): axum::extract::Query<CallbackQuery>,
) -> axum::response::Response {
    use crate::controller::consent::{KEY_CODE, KEY_ERROR, KEY_ID_TOKEN, KEY_STATE};
    let refuse = |status: StatusCode, text: &'static str| (status, text).into_response();
    let Some(value) = q.state.filter(|s| !s.is_empty() && s.len() <= 512) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Missing state: this is not an authorisation redirect.",
        );
    };
    // The state names its consent; it is accepted only if it is that consent's pending state.
    let unknown = || {
        tracing::info!("authorisation callback with an unknown or already used state refused");
        refuse(StatusCode::BAD_REQUEST, "Unknown or already used authorisation state. Start the authorisation again from the consent's authorisation URL.")
    };
    let Some((namespace, name)) = crate::controller::consent::state_owner(&value) else {
        return unknown();
    };
    if !state.serves(&namespace) {
        return unknown();
    }
    let consents: kube::Api<AccountConsent> =
        kube::Api::namespaced(state.ctx.client.clone(), &namespace);
    let consent = match consents.get_opt(&name).await {
        Ok(Some(c)) => c,
        Ok(None) => return unknown(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the consent of an authorisation callback");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "The authorisation could not be recorded; reload this page to try again.",
            );
        }
    };
    let pending = consent
        .status
        .as_ref()
        .and_then(|s| s.authorisation_state.as_deref());
    if !pending.is_some_and(|p| constant_time_eq(p.as_bytes(), value.as_bytes())) {
        return unknown();
    }
    let mut data = std::collections::BTreeMap::from([(KEY_STATE.to_string(), value)]);
    match (
        q.code.filter(|c| !c.is_empty()),
        q.error.filter(|e| !e.is_empty()),
    ) {
        (_, Some(error)) => {
            data.insert(KEY_ERROR.to_string(), error.chars().take(64).collect());
        }
        (Some(code), None) => {
            data.insert(KEY_CODE.to_string(), code);
            if let Some(id_token) = q.id_token {
                data.insert(KEY_ID_TOKEN.to_string(), id_token);
            }
        }
        (None, None) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "The redirect carries neither a code nor an error.",
            )
        }
    }
    let Some(reference) = consent.controller_owner_ref(&()) else {
        return refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The consent is incomplete.",
        );
    };
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(consent.authorisation_secret_name()),
            labels: Some(std::collections::BTreeMap::from([
                (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
                (LABEL_CONSENT.to_string(), name.clone()),
            ])),
            owner_references: Some(vec![reference]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        string_data: Some(data),
        ..Default::default()
    };
    let api: kube::Api<Secret> = kube::Api::namespaced(state.ctx.client.clone(), &namespace);
    match api.create(&kube::api::PostParams::default(), &secret).await {
        Ok(_) => {
            tracing::info!(%namespace, consent = %name, "authorisation callback received; handed to the controller");
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "Authorisation received. You can close this window.",
            )
                .into_response()
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            tracing::info!(%namespace, consent = %name, "replayed authorisation callback refused");
            refuse(
                StatusCode::CONFLICT,
                "This authorisation was already received.",
            )
        }
        Err(e) => {
            tracing::warn!(%namespace, consent = %name, error = %e, "could not hand the authorisation over");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "The authorisation could not be recorded; reload this page to try again.",
            )
        }
    }
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    serve_on(listener, ctx, shutdown).await
}

/// Serves on an already bound listener until `shutdown` resolves.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "HTTP server listening");
    axum::serve(listener, router(HttpState { ctx }))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Compares without an early exit, so the time taken says nothing about a guessed state.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
