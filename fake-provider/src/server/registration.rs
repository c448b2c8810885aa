//! `POST /api/account/registration`: a TPP registers and gets its client id and password.

use super::{error, preamble, random_hex, Shared_};
use crate::faults::Endpoint;
use crate::RegistrationRecord;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

pub(super) async fn register(
    State(shared): State<Shared_>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = preamble(&shared, Endpoint::Registration).await {
        return r;
    }
    let signature = headers
        .get("signature-certificate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_string();
    if signature.is_empty() {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "signature-certificate header is required",
        );
    }
    if let Some(accepted) = shared.config().accepted_signature_certificates {
        if !accepted.contains(&signature) {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "signature certificate not recognised",
            );
        }
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Type must be application/json",
        );
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "body is not JSON",
        );
    };
    let field = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let fields = [
        "countryISO",
        "address",
        "name",
        "email",
        "certificateType",
        "callbackUrl",
    ];
    if let Some(missing) = fields.iter().find(|k| field(k).is_none()) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("{missing} is required"),
        );
    }
    if field("certificateType").as_deref() != Some("account") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "certificateType must be account",
        );
    }
    let client_id = random_hex(16);
    let certificate = format!("{}@", random_hex(6));
    {
        let mut state = shared.state();
        state
            .passwords
            .insert(client_id.clone(), certificate.clone());
        state.registrations.push(RegistrationRecord {
            client_id: client_id.clone(),
            name: field("name").unwrap_or_default(),
            email: field("email").unwrap_or_default(),
            callback_url: field("callbackUrl").unwrap_or_default(),
        });
    }
    tracing::info!(client_id, "registered");
    let message_key = if shared.config().legacy_status_message {
        "statusMessage"
    } else {
        "Message"
    };
    Json(json!({"Certificate": certificate, "ClientId": client_id, message_key: "OK"}))
        .into_response()
}
