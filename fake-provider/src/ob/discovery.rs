//! `GET /.well-known/openid-configuration` and `GET /jwks`, and the bank's signing keys:
//! the fake's own key first, then keys added by rotation, all published.

use super::options;
use crate::faults::Endpoint;
use crate::idtoken::IdTokenKey;
use crate::server::{preamble, Shared_};
use crate::Shared;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::Arc;

/// The OpenID Provider metadata.
pub(crate) fn document(shared: &Shared) -> Value {
    let base = &shared.base_url;
    let o = options(shared);
    let mut doc = json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "jwks_uri": format!("{base}/jwks"),
        "registration_endpoint": format!("{base}/register"),
        "scopes_supported": ["openid", "accounts"],
        "response_types_supported": ["code id_token"],
        "response_modes_supported": ["fragment", "query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "acr_values_supported": ["urn:openbanking:psd2:sca", "urn:openbanking:psd2:ca"],
        "id_token_signing_alg_values_supported": ["PS256"],
        "request_object_signing_alg_values_supported": ["PS256"],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic", "client_secret_post", "private_key_jwt", "tls_client_auth"
        ],
        "token_endpoint_auth_signing_alg_values_supported": ["PS256"],
        "claims_supported": [
            "iss", "sub", "aud", "exp", "iat", "auth_time", "acr", "nonce", "c_hash", "s_hash",
            "at_hash", "openbanking_intent_id"
        ],
        "claims_parameter_supported": true,
        "request_parameter_supported": true,
        "request_uri_parameter_supported": false,
    });
    if o.incomplete_discovery {
        if let Some(doc) = doc.as_object_mut() {
            doc.remove("jwks_uri");
            doc.remove("token_endpoint");
        }
    }
    doc
}

pub(super) async fn discovery(State(shared): State<Shared_>) -> Response {
    if let Err(r) = preamble(&shared, Endpoint::Discovery).await {
        return r;
    }
    Json(document(&shared)).into_response()
}

/// Every key ever used, oldest first.
fn keys(shared: &Shared) -> Vec<Arc<IdTokenKey>> {
    let rotated = shared.state().ob.rotated_keys.clone();
    // Outside the state lock: the first key may still be being generated.
    shared
        .id_key()
        .cloned()
        .into_iter()
        .chain(rotated)
        .collect()
}

/// The key that signs id_tokens now.
pub(crate) fn current_key(shared: &Shared) -> Option<Arc<IdTokenKey>> {
    keys(shared).pop()
}

/// `{"keys": [...]}` with every key.
pub(crate) fn jwks(shared: &Shared) -> Value {
    json!({"keys": keys(shared).iter().map(|k| k.jwk()).collect::<Vec<_>>()})
}

pub(super) async fn serve_jwks(State(shared): State<Shared_>) -> Response {
    if let Err(r) = preamble(&shared, Endpoint::Jwks).await {
        return r;
    }
    Json(jwks(&shared)).into_response()
}

/// Makes a new key the signing key, keeps publishing the old ones, returns the new kid.
pub(crate) fn rotate(shared: &Shared) -> Option<String> {
    let key = Arc::new(IdTokenKey::generate()?);
    let kid = key.kid().to_string();
    shared.state().ob.rotated_keys.push(key);
    Some(kid)
}

/// The never-published key of forged id_tokens, generated on first use.
pub(crate) fn forged_key(shared: &Shared) -> Option<Arc<IdTokenKey>> {
    if let Some(k) = shared.state().ob.forged_key.clone() {
        return Some(k);
    }
    // Generated outside the lock; a concurrent first use may generate twice, one wins.
    let key = Arc::new(IdTokenKey::generate()?);
    Some(shared.state().ob.forged_key.get_or_insert(key).clone())
}
