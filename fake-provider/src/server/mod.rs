//! The fake's HTTP routes: the provider API as documented, plus `/__admin` for the binary.
//! This module holds the router and what every route shares (counting, faults, errors,
//! bearer tokens); each endpoint lives in its own submodule.

pub(crate) mod admin;
mod authorise;
mod consents;
mod registration;
mod token;

pub(crate) use authorise::{authorise, jwks};

use crate::faults::{Endpoint, MAX_OVERSIZED_BYTES};
use crate::{Fault, Shared};
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

pub(crate) type Shared_ = Arc<Shared>;

pub(crate) fn router(shared: Shared_) -> Router {
    Router::new()
        .route("/api/account/registration", post(registration::register))
        .route("/auth/token", post(token::token))
        .route("/account-access-consents", post(consents::create_consent))
        .route(
            "/account-access-consents/{id}",
            get(consents::get_consent).delete(consents::delete_consent),
        )
        .route("/authorize", get(authorise::authorize))
        // Links.Self of a consent is its authorisation page, as at the real provider.
        .route("/create-consent", get(authorise::authorize))
        .route("/__admin/calls", get(admin::admin_calls))
        .route("/__admin/registrations", get(admin::admin_registrations))
        .route("/__admin/tokens", get(admin::admin_tokens))
        .route("/__admin/consents", get(admin::admin_consents))
        .route(
            "/__admin/faults",
            post(admin::admin_add_fault).delete(admin::admin_clear_faults),
        )
        .route(
            "/__admin/consents/{id}/authorise",
            post(admin::admin_authorise),
        )
        .route("/.well-known/jwks.json", get(authorise::serve_jwks))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            count_every_request,
        ))
        .with_state(shared)
}

/// Counts every request outside /__admin in `total`, whatever its path or answer.
pub(crate) async fn count_every_request(
    State(shared): State<Shared_>,
    req: Request,
    next: Next,
) -> Response {
    if !req.uri().path().starts_with("/__admin") {
        shared.state().calls.total += 1;
    }
    next.run(req).await
}

pub(crate) async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such route")
}

pub(crate) fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02X}", rand::random::<u8>()))
        .collect()
}

pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": code, "message": message}))).into_response()
}

/// The provider's timestamp format: 7 fractional digits and Z.
pub(crate) fn provider_time(t: jiff::Timestamp) -> String {
    let secs = t.as_second();
    let ticks = t.subsec_nanosecond() / 100;
    let whole = jiff::Timestamp::from_second(secs).unwrap_or(t);
    format!("{}.{ticks:07}Z", whole.strftime("%Y-%m-%dT%H:%M:%S"))
}

/// A fault that changes what a token endpoint issues rather than replacing its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenTwist {
    None,
    Expired,
    Malformed,
}

/// Counts the call, applies latency, the rate limit and any injected fault. `Err` is the
/// answer to send instead of the real one; `Ok` says how to twist a token endpoint's answer.
pub(crate) async fn preamble(shared: &Shared, endpoint: Endpoint) -> Result<TokenTwist, Response> {
    let config = shared.config();
    let fault = {
        let mut state = shared.state();
        let c = &mut state.calls;
        match endpoint {
            Endpoint::Registration => c.registration += 1,
            Endpoint::ClientToken => c.client_token += 1,
            Endpoint::AuthCodeToken => c.auth_code_token += 1,
            Endpoint::ConsentCreate => c.consent_create += 1,
            Endpoint::ConsentGet => c.consent_get += 1,
            Endpoint::ConsentDelete => c.consent_delete += 1,
            Endpoint::RefreshToken => c.refresh_token += 1,
            Endpoint::Discovery => c.discovery += 1,
            Endpoint::Jwks => c.jwks += 1,
            Endpoint::Authorize => c.authorize += 1,
        }
        let second = jiff::Timestamp::now().as_second();
        if state.window.0 == second {
            state.window.1 += 1;
        } else {
            state.window = (second, 1);
        }
        let in_window = state.window.1;
        state.calls.peak_per_second = state.calls.peak_per_second.max(in_window);
        if config
            .rate_limit
            .is_some_and(|limit| in_window > u64::from(limit))
        {
            state.calls.rate_limited += 1;
            return Err((
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "1")],
                Json(json!({"error": "rate_limited"})),
            )
                .into_response());
        }
        state.faults.take(endpoint)
    };
    if !config.latency.is_zero() {
        tokio::time::sleep(config.latency).await;
    }
    let Some(fault) = fault else {
        return Ok(TokenTwist::None);
    };
    Err(match fault {
        Fault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error(status, "injected", &format!("injected fault {code}"))
        }
        Fault::RateLimited { retry_after } => {
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests",
            );
            if let Some(secs) = retry_after {
                if let Ok(v) = secs.to_string().parse() {
                    response.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            response
        }
        Fault::Delay(d) => {
            tokio::time::sleep(d).await;
            return Ok(TokenTwist::None);
        }
        Fault::Malformed => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{\"Certificate\": \"tru",
        )
            .into_response(),
        Fault::Html => (
            StatusCode::BAD_GATEWAY,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body>502 Bad Gateway</body></html>",
        )
            .into_response(),
        Fault::Redirect { status, location } => {
            let status = StatusCode::from_u16(status)
                .ok()
                .filter(StatusCode::is_redirection)
                .unwrap_or(StatusCode::FOUND);
            match HeaderValue::from_str(&location) {
                Ok(location) => (status, [(header::LOCATION, location)]).into_response(),
                Err(_) => error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "injected redirect location is not a header value",
                ),
            }
        }
        Fault::Oversized { bytes } => oversized(endpoint, bytes),
        // Only token endpoints issue tokens; elsewhere these do nothing.
        Fault::ExpiredToken if endpoint.is_token() => return Ok(TokenTwist::Expired),
        Fault::MalformedToken if endpoint.is_token() => return Ok(TokenTwist::Malformed),
        Fault::ExpiredToken | Fault::MalformedToken => return Ok(TokenTwist::None),
    })
}

/// A 200 whose `bytes`-long JSON body starts like the endpoint's answer and never closes.
fn oversized(endpoint: Endpoint, bytes: usize) -> Response {
    let bytes = bytes.min(MAX_OVERSIZED_BYTES);
    let prefix = endpoint.json_prefix().as_bytes();
    // vec! of a byte is a memset: megabytes take microseconds.
    let mut body = vec![b'a'; bytes];
    let head = prefix.len().min(bytes);
    body[..head].copy_from_slice(&prefix[..head]);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Bytes::from(body),
    )
        .into_response()
}

pub(crate) fn serde_urlencoded_parse(body: &[u8]) -> HashMap<String, String> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

/// The client id of a valid bearer token, or the 401 to answer.
fn bearer(shared: &Shared, headers: &HeaderMap) -> Result<String, Box<Response>> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    match shared.state().live_tokens.get(token) {
        Some((client, exp)) if *exp > jiff::Timestamp::now() => Ok(client.clone()),
        Some(_) => Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "token expired",
        ))),
        None => Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "missing or unknown bearer token",
        ))),
    }
}

pub(crate) fn uuid_v4() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-{:x}{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        8 | (b[8] & 3),
        &h[17..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_time_has_seven_fractional_digits() {
        let t: jiff::Timestamp = "2024-07-01T17:46:17.695048412Z".parse().unwrap();
        assert_eq!(provider_time(t), "2024-07-01T17:46:17.6950484Z");
        let whole: jiff::Timestamp = "2024-07-01T17:46:17Z".parse().unwrap();
        assert_eq!(provider_time(whole), "2024-07-01T17:46:17.0000000Z");
    }

    #[test]
    fn consent_ids_are_uuid_v4() {
        let id = uuid_v4();
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![8, 4, 4, 4, 12]
        );
        assert!(parts[2].starts_with('4'));
        assert!(matches!(
            parts[3].chars().next(),
            Some('8' | '9' | 'a' | 'b')
        ));
    }
}
