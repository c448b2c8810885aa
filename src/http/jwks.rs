//! The JWKS: every published signing key, and one registration's keys (the URL the provider is
//! given). Reads come from the API server's watch cache, never a quorum read per anonymous
//! request, and the list of every registration is kept for a few seconds.

use super::HttpState;
use crate::api::names::{is_dns1123_label, is_dns1123_subdomain};
use crate::api::{PublishedKey, TppRegistration};
use crate::signing::{rsa_jwk, Jwk, Jwks};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kube::api::{Api, ListParams};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the list of every registration's keys is served before it is read again.
const ALL_KEYS_TTL: Duration = Duration::from_secs(5);

/// The last list of every key; the lock makes concurrent requests share one read.
#[derive(Default)]
pub(super) struct Cache(tokio::sync::Mutex<Option<(Instant, Arc<Jwks>)>>);

fn jwk(key: &PublishedKey) -> Jwk {
    rsa_jwk(&key.kid, &key.modulus, &key.exponent)
}

fn keys_of(registration: &TppRegistration) -> Vec<Jwk> {
    registration
        .status
        .as_ref()
        .map(|s| s.signing_keys.iter().map(jwk).collect())
        .unwrap_or_default()
}

fn unavailable(e: kube::Error) -> Response {
    tracing::warn!(error = %e, "cannot read TppRegistrations for the JWKS");
    (StatusCode::SERVICE_UNAVAILABLE, "cannot read the keys now").into_response()
}

/// Every published key of every registration, exact duplicates once. Tenants may choose their
/// kid, so two namespaces can publish different keys under one kid: both stay (a verifier tries
/// each), so that no tenant can hide another's key from this list. The per-registration URL,
/// the one registered with the provider, is authoritative.
pub(super) async fn all_keys(State(state): State<HttpState>) -> Response {
    let mut cached = state.jwks.0.lock().await;
    if let Some((at, keys)) = cached.as_ref() {
        if at.elapsed() < ALL_KEYS_TTL {
            return Json(keys.as_ref().clone()).into_response();
        }
    }
    let ctx = &state.ctx;
    let apis: Vec<Api<TppRegistration>> = if ctx.settings.namespaces.is_empty() {
        vec![Api::all(ctx.client.clone())]
    } else {
        ctx.settings
            .namespaces
            .iter()
            .map(|ns| Api::namespaced(ctx.client.clone(), ns))
            .collect()
    };
    let mut keys: Vec<Jwk> = Vec::new();
    for api in apis {
        match api.list(&ListParams::default().match_any()).await {
            Ok(list) => keys.extend(list.items.iter().flat_map(keys_of)),
            Err(e) => return unavailable(e),
        }
    }
    let keys = Arc::new(Jwks { keys: merged(keys) });
    *cached = Some((Instant::now(), keys.clone()));
    Json(keys.as_ref().clone()).into_response()
}

/// The keys of one registration. The path is checked against Kubernetes' name rules before
/// it goes near an API path (`%2F` or `%3F` must never turn into another request).
pub(super) async fn registration_keys(
    State(state): State<HttpState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "no such TppRegistration").into_response();
    if !is_dns1123_label(&namespace) || !is_dns1123_subdomain(&name) {
        return (StatusCode::BAD_REQUEST, "not a namespace and name").into_response();
    }
    if !state.serves(&namespace) {
        return not_found();
    }
    let api: Api<TppRegistration> = Api::namespaced(state.ctx.client.clone(), &namespace);
    let params = ListParams::default()
        .fields(&format!("metadata.name={name}"))
        .match_any();
    match api.list(&params).await {
        Ok(list) => match list.items.first() {
            Some(registration) => Json(Jwks {
                keys: keys_of(registration),
            })
            .into_response(),
            None => not_found(),
        },
        Err(e) => unavailable(e),
    }
}

/// Keys sorted by kid with exact duplicates (same kid and same key) removed.
fn merged(mut keys: Vec<Jwk>) -> Vec<Jwk> {
    keys.sort_by(|a, b| {
        let id = |k: &Jwk| serde_json::to_string(k).unwrap_or_default();
        a.common
            .key_id
            .cmp(&b.common.key_id)
            .then_with(|| id(a).cmp(&id(b)))
    });
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_cannot_hide_another_tenants_key_behind_its_kid() {
        let mine = rsa_jwk("shared-kid", "bW9kdWx1cy1h", "AQAB");
        let theirs = rsa_jwk("shared-kid", "bW9kdWx1cy1i", "AQAB");
        let keys = merged(vec![theirs.clone(), mine.clone(), theirs.clone()]);
        assert_eq!(
            keys.len(),
            2,
            "both keys under the kid stay, the exact copy goes"
        );
        assert!(keys.contains(&mine) && keys.contains(&theirs));
    }
}
