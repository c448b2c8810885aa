//! `POST /account-access-consents` and `GET`/`DELETE /account-access-consents/{id}`.

use super::{bearer, error, preamble, provider_time, uuid_v4, Shared_};
use crate::faults::Endpoint;
use crate::{ConsentRecord, Shared};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

fn consent_json(
    shared: &Shared,
    c: &ConsentRecord,
    body: &Value,
    created: &str,
    updated: &str,
) -> Value {
    let data = body.get("Data").cloned().unwrap_or(Value::Null);
    json!({
        "Data": {
            "Status": c.status,
            "StatusUpdateDateTime": updated,
            "CreationDateTime": created,
            "TransactionToDateTime": data.get("TransactionToDateTime"),
            "ExpirationDateTime": data.get("ExpirationDateTime"),
            "Permissions": c.permissions,
            "ConsentId": c.consent_id,
            "TransactionFromDateTime": data.get("TransactionFromDateTime"),
        },
        "Risk": {},
        "Links": {"Self": format!("{}/create-consent?consentId={}", shared.base_url, c.consent_id)},
        "Meta": {"TotalPages": 1}
    })
}

pub(super) async fn create_consent(
    State(shared): State<Shared_>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = preamble(&shared, Endpoint::ConsentCreate).await {
        return r;
    }
    let client = match bearer(&shared, &headers) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "body is not JSON",
        );
    };
    let permissions: Vec<String> = body
        .pointer("/Data/Permissions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if permissions.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Data.Permissions is required",
        );
    }
    let record = ConsentRecord {
        consent_id: uuid_v4(),
        client_id: client,
        status: "AwaitingAuthorisation".into(),
        permissions,
        customer_id: None,
    };
    let now = jiff::Timestamp::now();
    let answer = consent_json(
        &shared,
        &record,
        &body,
        &provider_time(now),
        &provider_time(now),
    );
    shared.state().consents.push(record);
    (StatusCode::CREATED, Json(answer)).into_response()
}

/// What GET and DELETE of one consent answer before looking it up: faults, the switched-off
/// routes of a provider without them, and the bearer check.
async fn consent_route_guard(
    shared: &Shared,
    headers: &HeaderMap,
    endpoint: Endpoint,
) -> Option<Response> {
    if let Err(r) = preamble(shared, endpoint).await {
        return Some(r);
    }
    let config = shared.config();
    if !config.consent_get_delete {
        let status =
            StatusCode::from_u16(config.missing_status).unwrap_or(StatusCode::METHOD_NOT_ALLOWED);
        return Some(error(status, "not_supported", "not supported"));
    }
    bearer(shared, headers).err().map(|r| *r)
}

pub(super) async fn get_consent(
    State(shared): State<Shared_>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = consent_route_guard(&shared, &headers, Endpoint::ConsentGet).await {
        return r;
    }
    let found = shared
        .state()
        .consents
        .iter()
        .find(|c| c.consent_id == id)
        .cloned();
    match found {
        Some(c) => {
            let now = provider_time(jiff::Timestamp::now());
            Json(consent_json(&shared, &c, &Value::Null, &now, &now)).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "not_found", "no such consent"),
    }
}

pub(super) async fn delete_consent(
    State(shared): State<Shared_>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = consent_route_guard(&shared, &headers, Endpoint::ConsentDelete).await {
        return r;
    }
    let mut state = shared.state();
    match state.consents.iter_mut().find(|c| c.consent_id == id) {
        Some(c) => {
            c.status = "Revoked".into();
            StatusCode::NO_CONTENT.into_response()
        }
        None => error(StatusCode::NOT_FOUND, "not_found", "no such consent"),
    }
}
