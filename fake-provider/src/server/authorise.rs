//! The customer's authorisation: `GET /authorize` (and `/create-consent`) with a request
//! object, the id_tokens it issues and the JWKS they verify against.

use super::{error, random_hex, uuid_v4, Shared_};
use crate::{idtoken, AuthContext, Authorisation, CodeGrant, Shared};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// The claims of an id_token about a customer's authorisation of a consent.
pub(super) fn id_token_claims(
    shared: &Shared,
    client_id: &str,
    customer_id: &str,
    consent_id: &str,
    nonce: Option<String>,
) -> Value {
    let iat = jiff::Timestamp::now().as_second();
    let mut claims = json!({
        "iss": shared.base_url,
        "sub": customer_id,
        "aud": client_id,
        "openbanking_intent_id": consent_id,
        "iat": iat,
        "exp": iat + idtoken::ID_TOKEN_LIFETIME_SECS,
    });
    if let Some(nonce) = nonce {
        claims["nonce"] = json!(nonce);
    }
    claims
}

/// A signed id_token with `claims`, or an opaque one.
pub(super) fn issue_id_token(shared: &Shared, opaque: bool, claims: Value) -> Option<String> {
    if opaque {
        return Some(idtoken::opaque());
    }
    shared.id_key()?.sign(&claims)
}

/// The fake's public keys for id_tokens.
pub(crate) fn jwks(shared: &Shared) -> Value {
    shared
        .id_key()
        .map(|k| k.jwks())
        .unwrap_or_else(|| json!({"keys": []}))
}

pub(super) async fn serve_jwks(State(shared): State<Shared_>) -> Response {
    shared.state().calls.jwks += 1;
    Json(jwks(&shared)).into_response()
}

/// Marks a consent Authorised, as its customer would, and issues a single-use code bound to
/// the consent and its client, with the id_token the redirect carries. `state`/`nonce` default
/// to those of the last verified request object for the consent.
pub(crate) fn authorise(
    shared: &Shared,
    consent_id: &str,
    state_param: Option<String>,
    nonce: Option<String>,
) -> Option<Authorisation> {
    let code = random_hex(16);
    let (client_id, customer_id, state_param, nonce) = {
        let mut state = shared.state();
        let remembered = state
            .auth_contexts
            .get(consent_id)
            .cloned()
            .unwrap_or_default();
        let state_param = state_param.or(remembered.state);
        let nonce = nonce.or(remembered.nonce);
        let consent = state
            .consents
            .iter_mut()
            .find(|c| c.consent_id == consent_id)?;
        consent.status = "Authorised".into();
        let customer_id = consent.customer_id.get_or_insert_with(uuid_v4).clone();
        let client_id = consent.client_id.clone();
        state.codes.insert(
            code.clone(),
            CodeGrant {
                consent_id: consent_id.to_string(),
                client_id: client_id.clone(),
                customer_id: customer_id.clone(),
                nonce: nonce.clone(),
            },
        );
        (client_id, customer_id, state_param, nonce)
    };
    let mut claims = id_token_claims(shared, &client_id, &customer_id, consent_id, nonce);
    // The hybrid flow's id_token is a detached signature over code and state.
    claims["c_hash"] = json!(idtoken::half_hash(&code));
    if let Some(s) = &state_param {
        claims["s_hash"] = json!(idtoken::half_hash(s));
    }
    let id_token = issue_id_token(shared, shared.config().opaque_id_token, claims)?;
    Some(Authorisation {
        consent_id: consent_id.to_string(),
        code,
        id_token,
        state: state_param,
        customer_id,
    })
}

#[derive(serde::Deserialize)]
pub(super) struct AuthorizeQuery {
    request: Option<String>,
    client_id: Option<String>,
    /// `reject` simulates a customer who refuses; anything else approves.
    decision: Option<String>,
}

/// The customer's visit to the provider: the request object is verified against the TPP's JWKS
/// (fetched over HTTP, checked with an RSA implementation independent of the operator's), the
/// consent is authorised (or rejected) and the browser is redirected to the request object's
/// redirect_uri with code, id_token and state as query parameters (response_mode=query, so a
/// server-side callback receives them).
pub(super) async fn authorize(
    State(shared): State<Shared_>,
    axum::extract::Query(q): axum::extract::Query<AuthorizeQuery>,
) -> Response {
    shared.state().calls.authorize += 1;
    let Some(jwt) = q.request.filter(|r| !r.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "request (the signed request object) is required",
        );
    };
    let Some(jwks_url) = shared.config().jwks_url else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "no JWKS endpoint registered for this TPP",
        );
    };
    let jwks = match crate::verify::fetch_jwks(&shared.http, &jwks_url).await {
        Ok(jwks) => jwks,
        Err(message) => return error(StatusCode::BAD_REQUEST, "invalid_client", message),
    };
    let claims = match crate::verify_request_object(&jwks, &jwt) {
        Ok(c) => c,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_object",
                &format!("{e:?}"),
            )
        }
    };
    let now = jiff::Timestamp::now().as_second();
    let str_claim = |k: &str| claims[k].as_str().unwrap_or_default().to_string();
    if claims["exp"].as_i64().is_none_or(|exp| exp <= now) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_object",
            "request object expired",
        );
    }
    if str_claim("response_type") != "code id_token"
        || !str_claim("scope").split(' ').any(|s| s == "accounts")
    {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_object",
            "response_type must be code id_token and scope accounts",
        );
    }
    let client_id = str_claim("client_id");
    if q.client_id.as_deref().is_some_and(|c| c != client_id) || str_claim("iss") != client_id {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_object",
            "client_id, iss and the query's client_id differ",
        );
    }
    let consent_id = claims["claims"]["id_token"]["openbanking_intent_id"]["value"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let redirect_uri = str_claim("redirect_uri");
    let state_param = str_claim("state");
    let nonce = claims["nonce"].as_str().map(str::to_string);
    let encode = |pairs: &[(&str, &str)]| serde_urlencoded::to_string(pairs).unwrap_or_default();
    let reject = q.decision.as_deref() == Some("reject");
    {
        let mut state = shared.state();
        let Some(consent) = state
            .consents
            .iter_mut()
            .find(|c| c.consent_id == consent_id && c.client_id == client_id)
        else {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_object",
                "unknown openbanking_intent_id for this client",
            );
        };
        if consent.status != "AwaitingAuthorisation" {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "consent is not awaiting authorisation",
            );
        }
        if reject {
            consent.status = "Rejected".into();
        }
        state.auth_contexts.insert(
            consent_id.clone(),
            AuthContext {
                state: Some(state_param.clone()).filter(|s| !s.is_empty()),
                nonce: nonce.clone(),
            },
        );
    }
    let location = if reject {
        format!(
            "{redirect_uri}?{}",
            encode(&[("error", "access_denied"), ("state", &state_param)])
        )
    } else {
        let Some(a) = authorise(&shared, &consent_id, Some(state_param.clone()), nonce) else {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "could not authorise",
            );
        };
        format!(
            "{redirect_uri}?{}",
            encode(&[
                ("code", &a.code),
                ("id_token", &a.id_token),
                ("state", &state_param)
            ])
        )
    };
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}
