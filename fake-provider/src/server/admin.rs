//! `/__admin`: records, faults and authorisations for the binary and tests over HTTP.

use super::authorise::authorise;
use super::{error, Shared_};
use crate::faults::Endpoint;
use crate::Fault;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

pub(crate) async fn admin_calls(State(shared): State<Shared_>) -> Json<Value> {
    Json(json!(shared.state().calls))
}

pub(crate) async fn admin_registrations(State(shared): State<Shared_>) -> Json<Value> {
    Json(json!(shared.state().registrations))
}

pub(crate) async fn admin_tokens(State(shared): State<Shared_>) -> Json<Value> {
    Json(json!(shared.state().tokens))
}

pub(crate) async fn admin_consents(State(shared): State<Shared_>) -> Json<Value> {
    Json(json!(shared.state().consents))
}

#[derive(serde::Deserialize)]
pub(crate) struct FaultRequest {
    endpoint: Endpoint,
    fault: Fault,
    times: Option<u32>,
}

pub(crate) async fn admin_add_fault(
    State(shared): State<Shared_>,
    Json(req): Json<FaultRequest>,
) -> Response {
    if let Err(message) = req.fault.check(req.endpoint) {
        return error(StatusCode::BAD_REQUEST, "invalid_fault", &message);
    }
    shared
        .state()
        .faults
        .add(req.endpoint, req.fault, req.times);
    StatusCode::NO_CONTENT.into_response()
}

pub(crate) async fn admin_clear_faults(State(shared): State<Shared_>) -> StatusCode {
    shared.state().faults.clear();
    StatusCode::NO_CONTENT
}

/// Optional body of `POST /__admin/consents/{id}/authorise`.
#[derive(Default, serde::Deserialize)]
struct AuthoriseRequest {
    state: Option<String>,
    nonce: Option<String>,
}

pub(super) async fn admin_authorise(
    State(shared): State<Shared_>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let req = if body.iter().all(u8::is_ascii_whitespace) {
        AuthoriseRequest::default()
    } else {
        match serde_json::from_slice::<AuthoriseRequest>(&body) {
            Ok(r) => r,
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "body must be empty or {\"state\": .., \"nonce\": ..}",
                )
            }
        }
    };
    if !shared.state().consents.iter().any(|c| c.consent_id == id) {
        return error(StatusCode::NOT_FOUND, "not_found", "no such consent");
    }
    match authorise(&shared, &id, req.state, req.nonce) {
        Some(a) => Json(a).into_response(),
        None => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "could not authorise",
        ),
    }
}
