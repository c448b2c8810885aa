//! The standard profile's `/__admin` routes: clients, the customer's decision, key rotation
//! and the bank's clock, for the binary and tests over HTTP.

use super::{clients, decision, discovery, ObAuthoriseOptions, ObClient};
use crate::server::{error, Shared_};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

pub(super) async fn add_client(
    State(shared): State<Shared_>,
    Json(client): Json<ObClient>,
) -> StatusCode {
    clients::add(&shared, client);
    StatusCode::NO_CONTENT
}

pub(super) async fn clients(State(shared): State<Shared_>) -> Response {
    let mut all: Vec<ObClient> = shared.state().ob.clients.values().cloned().collect();
    all.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    Json(all).into_response()
}

/// JSON body of `POST /__admin/consents/{id}/authorise` (all optional).
#[derive(serde::Deserialize)]
pub(super) struct DecisionRequest {
    #[serde(default = "approve_by_default")]
    approve: bool,
    #[serde(flatten)]
    options: ObAuthoriseOptions,
}

fn approve_by_default() -> bool {
    true
}

/// The customer's decision. A JSON (or empty) body answers the redirect as JSON; the login
/// page's form (`approve=true|false`) is answered with the redirect itself.
pub(super) async fn authorise(
    State(shared): State<Shared_>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let from_page = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let req = if from_page {
        let form = crate::server::serde_urlencoded_parse(&body);
        DecisionRequest {
            approve: form.get("approve").map(String::as_str) != Some("false"),
            options: ObAuthoriseOptions::default(),
        }
    } else if body.iter().all(u8::is_ascii_whitespace) {
        DecisionRequest {
            approve: true,
            options: ObAuthoriseOptions::default(),
        }
    } else {
        match serde_json::from_slice::<DecisionRequest>(&body) {
            Ok(r) => r,
            Err(e) => {
                let message = format!("body must be empty or a decision: {e}");
                return error(StatusCode::BAD_REQUEST, "invalid_request", &message);
            }
        }
    };
    match decision::decide(&shared, &id, req.approve, &req.options) {
        Ok(r) if from_page => (StatusCode::SEE_OTHER, [(header::LOCATION, r.url)]).into_response(),
        Ok(r) => Json(r).into_response(),
        Err((status, message)) => error(status, "invalid_request", &message),
    }
}

pub(super) async fn rotate_key(State(shared): State<Shared_>) -> Response {
    match discovery::rotate(&shared) {
        Some(kid) => Json(json!({"kid": kid})).into_response(),
        None => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "could not generate a key",
        ),
    }
}

/// Body of `POST /__admin/clock`.
#[derive(serde::Deserialize)]
pub(super) struct ClockRequest {
    advance_secs: u64,
}

pub(super) async fn advance_clock(
    State(shared): State<Shared_>,
    Json(req): Json<ClockRequest>,
) -> StatusCode {
    super::api::advance(&shared, req.advance_secs);
    StatusCode::NO_CONTENT
}
