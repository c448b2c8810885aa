//! `GET /authorize`: the customer's arrival with the TPP's request object. The request object
//! is verified as FAPI 1 Advanced asks (PS256 against the client's JWKS, fetched over HTTP;
//! `aud`, `nbf`, `exp`, `nonce`, the intent id); a valid one waits for the customer's decision
//! (`FakeProvider::ob_authorise` or the page's buttons).

use super::consents::settle;
use super::{now, oauth_error, options, Pending, ResponseMode};
use crate::faults::Endpoint;
use crate::server::{preamble, Shared_};
use crate::verify::{fetch_jwks, verify_request_object};
use crate::Shared;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// How far in the future `nbf` may be (clock skew between TPP and bank).
const NBF_SKEW_SECS: i64 = 10;

/// FAPI 1 Advanced: `exp` at most 60 minutes after `nbf`.
const MAX_LIFETIME_SECS: i64 = 3600;

/// The query; only the request object's values count, except the three OIDC requires here.
#[derive(serde::Deserialize)]
pub(super) struct AuthorizeQuery {
    client_id: Option<String>,
    response_type: Option<String>,
    scope: Option<String>,
    request: Option<String>,
    request_uri: Option<String>,
}

fn refused(description: &str) -> Response {
    oauth_error(
        StatusCode::BAD_REQUEST,
        "invalid_request_object",
        description,
    )
}

pub(super) async fn authorize(
    State(shared): State<Shared_>,
    Query(q): Query<AuthorizeQuery>,
) -> Response {
    if let Err(r) = preamble(&shared, Endpoint::Authorize).await {
        return r;
    }
    let invalid =
        |code: &str, description: &str| oauth_error(StatusCode::BAD_REQUEST, code, description);
    if q.request_uri.is_some() {
        return invalid("request_uri_not_supported", "request_uri is not supported");
    }
    let Some(jwt) = q.request.filter(|r| !r.is_empty()) else {
        return invalid(
            "invalid_request",
            "request (the signed request object) is required",
        );
    };
    let Some(client_id) = q.client_id.filter(|c| !c.is_empty()) else {
        return invalid("invalid_request", "client_id is required");
    };
    let Some(client) = shared.state().ob.clients.get(&client_id).cloned() else {
        return invalid("invalid_request", "unknown client_id");
    };
    if q.response_type.as_deref() != Some("code id_token") {
        return invalid(
            "unsupported_response_type",
            "response_type must be code id_token",
        );
    }
    if !q
        .scope
        .as_deref()
        .unwrap_or_default()
        .split(' ')
        .any(|s| s == "openid")
    {
        return invalid("invalid_scope", "scope must contain openid");
    }
    let jwks = match fetch_jwks(&shared.http, &client.jwks_url).await {
        Ok(jwks) => jwks,
        Err(message) => return refused(message),
    };
    let claims = match verify_request_object(&jwks, &jwt) {
        Ok(c) => c,
        Err(e) => return refused(&format!("request object: {e}")),
    };
    let pending = match check_claims(&shared, &claims, &client) {
        Ok(p) => p,
        Err(description) => return refused(&description),
    };
    let consent_id = intent_id(&claims).unwrap_or_default().to_string();
    {
        let mut state = shared.state();
        match settle(&mut state, &consent_id) {
            Some(c) if c.client_id != client_id => {
                return refused("unknown openbanking_intent_id for this client")
            }
            Some(c) if c.status != "AwaitingAuthorisation" => {
                return refused(&format!(
                    "consent is {}, not AwaitingAuthorisation",
                    c.status
                ))
            }
            Some(_) => {}
            None => return refused("unknown openbanking_intent_id for this client"),
        }
        state.ob.pending.insert(consent_id.clone(), pending);
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page(&consent_id, &client_id),
    )
        .into_response()
}

fn intent_id(claims: &Value) -> Option<&str> {
    claims
        .pointer("/claims/id_token/openbanking_intent_id/value")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The request object's claims against FAPI 1 Advanced and the client; the intent id is
/// checked by the caller.
fn check_claims(
    shared: &Shared,
    claims: &Value,
    client: &super::ObClient,
) -> Result<Pending, String> {
    let text = |k: &str| claims[k].as_str().filter(|s| !s.is_empty());
    let client_id = client.client_id.as_str();
    if text("iss") != Some(client_id) {
        return Err("iss must be the client_id".into());
    }
    if text("client_id") != Some(client_id) {
        return Err("client_id claim must equal the query's client_id".into());
    }
    let expected_aud = options(shared)
        .request_aud
        .unwrap_or_else(|| shared.base_url.clone());
    let aud_ok = match &claims["aud"] {
        Value::String(a) => *a == expected_aud,
        Value::Array(a) => a.iter().any(|v| v.as_str() == Some(&expected_aud)),
        _ => false,
    };
    if !aud_ok {
        return Err(format!("aud must be {expected_aud}"));
    }
    if claims.get("response_type").is_some() && text("response_type") != Some("code id_token") {
        return Err("response_type must be code id_token".into());
    }
    let scope = text("scope").unwrap_or_default();
    if !scope.split(' ').any(|s| s == "openid") {
        return Err("scope must contain openid".into());
    }
    let redirect_uri = text("redirect_uri").ok_or("redirect_uri is required")?;
    if !client.redirect_uris.iter().any(|r| r == redirect_uri) {
        return Err("redirect_uri is not registered for this client".into());
    }
    let now = now(&shared.state()).as_second();
    let nbf = claims["nbf"].as_i64().ok_or("nbf is required")?;
    if nbf > now + NBF_SKEW_SECS {
        return Err("nbf is in the future".into());
    }
    let exp = claims["exp"].as_i64().ok_or("exp is required")?;
    if exp <= now {
        return Err("the request object has expired".into());
    }
    if exp - nbf > MAX_LIFETIME_SECS {
        return Err("exp must be at most 60 minutes after nbf".into());
    }
    let state = text("state").ok_or("state is required")?;
    let nonce = text("nonce").ok_or("nonce is required")?;
    let response_mode = match claims.get("response_mode") {
        None => None,
        Some(m) => Some(
            serde_json::from_value::<ResponseMode>(m.clone())
                .map_err(|_| "response_mode must be fragment or query")?,
        ),
    };
    if intent_id(claims).is_none() {
        return Err("claims.id_token.openbanking_intent_id.value is required".into());
    }
    Ok(Pending {
        client_id: client_id.to_string(),
        redirect_uri: redirect_uri.to_string(),
        scope: scope.to_string(),
        state: state.to_string(),
        nonce: nonce.to_string(),
        response_mode,
    })
}

/// The bank's login page: two buttons post the decision to the admin route, which redirects
/// the browser to the TPP (for people running the binary).
fn page(consent_id: &str, client_id: &str) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let (consent, client) = (esc(consent_id), esc(client_id));
    let action = format!("/__admin/consents/{consent}/authorise");
    format!(
        "<!DOCTYPE html><html><body><h1>Fake bank</h1>\
         <p>{client} asks for access to your accounts (consent {consent}).</p>\
         <form method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"approve\" \
         value=\"true\"><button>Approve</button></form>\
         <form method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"approve\" \
         value=\"false\"><button>Refuse</button></form></body></html>"
    )
}
