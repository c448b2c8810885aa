//! The operator's HTTP server: liveness, readiness, Prometheus metrics, the JWKS of the signing
//! keys and the authorisation callback. Every replica serves them (from its own watches), not
//! only the leader, so the provider and the customer's browser can reach any of them.

use crate::api::{AccountConsent, TppRegistration, LABEL_CONSENT, LABEL_MANAGED_BY, MANAGED_BY};
use crate::controller::Context;
use crate::signing::{Jwk, Jwks};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
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
    /// AccountConsents as this replica sees them, one store per watched scope.
    pub consents: Vec<Store<AccountConsent>>,
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
    let pending: Vec<Arc<AccountConsent>> = state
        .consents
        .iter()
        .flat_map(|s| s.state())
        .filter(|c| {
            c.status
                .as_ref()
                .and_then(|s| s.authorisation_state.as_deref())
                == Some(value.as_str())
        })
        .collect();
    let [consent] = pending.as_slice() else {
        tracing::info!(
            matches = pending.len(),
            "authorisation callback with an unknown or already used state refused"
        );
        return refuse(StatusCode::BAD_REQUEST, "Unknown or already used authorisation state. Start the authorisation again from the consent's authorisation URL.");
    };
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
    let (Some(namespace), Some(reference)) =
        (consent.namespace(), consent.controller_owner_ref(&()))
    else {
        return refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The consent is incomplete.",
        );
    };
    let name = consent.name_any();
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
    let registrations = watch_all(&ctx);
    let consents = watch_all(&ctx);
    axum::serve(
        listener,
        router(HttpState {
            ctx,
            registrations,
            consents,
        }),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Starts one reflector per watched scope; they run for the life of the process.
pub fn watch_all<K>(ctx: &Context) -> Vec<Store<K>>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    use futures::StreamExt;
    use kube::runtime::{reflector, watcher, WatchStreamExt};
    let scopes: Vec<kube::Api<K>> = if ctx.settings.namespaces.is_empty() {
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
