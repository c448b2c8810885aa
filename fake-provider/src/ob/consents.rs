//! `POST {prefix}/account-access-consents` and `GET`/`DELETE
//! {prefix}/account-access-consents/{ConsentId}`, with the standard's error shape and
//! `x-fapi-interaction-id`.

use super::{normalised_prefix, now, options, ConsentExtra};
use crate::faults::Endpoint;
use crate::server::{preamble, uuid_v4, Shared_};
use crate::{ConsentRecord, Shared, State as FakeState};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// Statuses that expiry ends.
const LIVE: [&str; 2] = ["AwaitingAuthorisation", "Authorised"];

/// The standard's timestamp format, as in its examples: `2024-07-01T17:46:17+00:00`.
pub(crate) fn ob_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S+00:00").to_string()
}

/// Applies expiry to a consent and notes status changes made anywhere; returns its record.
pub(crate) fn settle(state: &mut FakeState, id: &str) -> Option<ConsentRecord> {
    let now = now(state);
    let record = state.consents.iter_mut().find(|c| c.consent_id == id)?;
    let extra = state.ob.consents.get_mut(id)?;
    if let Some(expires) = extra.expires.filter(|e| *e <= now) {
        if LIVE.contains(&record.status.as_str()) {
            record.status = "Expired".into();
            extra.status_seen = record.status.clone();
            extra.status_updated = expires;
        }
    }
    if extra.status_seen != record.status {
        extra.status_seen = record.status.clone();
        extra.status_updated = now;
    }
    Some(record.clone())
}

/// Sets a consent's status now.
pub(crate) fn set_status(state: &mut FakeState, id: &str, status: &str) {
    if let Some(c) = state.consents.iter_mut().find(|c| c.consent_id == id) {
        c.status = status.to_string();
    }
    settle(state, id);
}

/// A consent API answer, with the `x-fapi-interaction-id` of the request (or a new one).
fn answer(headers: &HeaderMap, status: StatusCode, body: Option<Value>) -> Response {
    let interaction = headers
        .get("x-fapi-interaction-id")
        .cloned()
        .or_else(|| HeaderValue::from_str(&uuid_v4()).ok());
    let mut r = match body {
        Some(body) => (status, Json(body)).into_response(),
        None => status.into_response(),
    };
    if let Some(id) = interaction {
        r.headers_mut().insert("x-fapi-interaction-id", id);
    }
    r
}

/// The standard's error answer (`Code`, `Id`, `Message`, `Errors`).
fn ob_error(
    headers: &HeaderMap,
    status: StatusCode,
    error_code: &str,
    message: &str,
    path: Option<&str>,
) -> Response {
    let mut detail = json!({"ErrorCode": error_code, "Message": message});
    if let Some(path) = path {
        detail["Path"] = json!(path);
    }
    let body = json!({
        "Code": status.to_string(),
        "Id": uuid_v4(),
        "Message": message,
        "Errors": [detail],
    });
    let mut r = answer(headers, status, Some(body));
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
    }
    r
}

/// The client of a live client-credentials token with the `accounts` scope, or the answer.
fn client_of(shared: &Shared, headers: &HeaderMap) -> Result<String, Box<Response>> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let state = shared.state();
    let unauthorised = |message| -> Result<String, Box<Response>> {
        Err(Box::new(ob_error(
            headers,
            StatusCode::UNAUTHORIZED,
            "UK.OBIE.Header.Invalid",
            message,
            Some("Authorization"),
        )))
    };
    let Some(grant) = state.ob.access_tokens.get(token) else {
        return unauthorised("missing or unknown access token");
    };
    if grant.expires_at <= now(&state) {
        return unauthorised("access token expired");
    }
    if grant.grant_type != "client_credentials" || !grant.scope.split(' ').any(|s| s == "accounts")
    {
        return Err(Box::new(ob_error(
            headers,
            StatusCode::FORBIDDEN,
            "UK.OBIE.Header.Invalid",
            "a client-credentials token with the accounts scope is required",
            Some("Authorization"),
        )));
    }
    Ok(grant.client_id.clone())
}

fn consent_json(shared: &Shared, c: &ConsentRecord, extra: &ConsentExtra) -> Value {
    let prefix = normalised_prefix(&options(shared).api_prefix);
    let mut data = json!({
        "ConsentId": c.consent_id,
        "Status": c.status,
        "CreationDateTime": ob_time(extra.created),
        "StatusUpdateDateTime": ob_time(extra.status_updated),
        "Permissions": c.permissions,
    });
    for field in [
        "ExpirationDateTime",
        "TransactionFromDateTime",
        "TransactionToDateTime",
    ] {
        if let Some(v) = extra.data.get(field).filter(|v| !v.is_null()) {
            data[field] = v.clone();
        }
    }
    json!({
        "Data": data,
        "Risk": {},
        "Links": {"Self": format!(
            "{}{prefix}/account-access-consents/{}", shared.base_url, c.consent_id
        )},
        "Meta": {"TotalPages": 1},
    })
}

pub(super) async fn create(
    State(shared): State<Shared_>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = preamble(&shared, Endpoint::ConsentCreate).await {
        return r;
    }
    let client_id = match client_of(&shared, &headers) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let bad = |code: &str, message: &str, path: &str| {
        ob_error(&headers, StatusCode::BAD_REQUEST, code, message, Some(path))
    };
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        let (status, code) = (StatusCode::BAD_REQUEST, "UK.OBIE.Resource.InvalidFormat");
        return ob_error(&headers, status, code, "body is not JSON", None);
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
        let message = "Data.Permissions is required";
        return bad("UK.OBIE.Field.Missing", message, "Data.Permissions");
    }
    if !body.get("Risk").is_some_and(Value::is_object) {
        return bad("UK.OBIE.Field.Missing", "Risk is required", "Risk");
    }
    let mut state = shared.state();
    let now = now(&state);
    let expires = match body.pointer("/Data/ExpirationDateTime") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok()) {
            Some(t) if t > now => Some(t),
            Some(_) => {
                let message = "ExpirationDateTime must be in the future";
                return bad(
                    "UK.OBIE.Field.InvalidDate",
                    message,
                    "Data.ExpirationDateTime",
                );
            }
            None => {
                let message = "ExpirationDateTime is not an RFC 3339 date-time";
                return bad(
                    "UK.OBIE.Field.InvalidDate",
                    message,
                    "Data.ExpirationDateTime",
                );
            }
        },
    };
    let record = ConsentRecord {
        consent_id: uuid_v4(),
        client_id,
        status: "AwaitingAuthorisation".into(),
        permissions,
        customer_id: None,
    };
    let extra = ConsentExtra {
        created: now,
        status_seen: record.status.clone(),
        status_updated: now,
        data: body.get("Data").cloned().unwrap_or(Value::Null),
        expires,
    };
    let json = consent_json(&shared, &record, &extra);
    state.ob.consents.insert(record.consent_id.clone(), extra);
    state.consents.push(record);
    drop(state);
    answer(&headers, StatusCode::CREATED, Some(json))
}

/// The consent `id` of the token's client after faults and checks, or the answer.
async fn guard(
    shared: &Shared,
    headers: &HeaderMap,
    endpoint: Endpoint,
    id: &str,
) -> Result<ConsentRecord, Response> {
    preamble(shared, endpoint).await?;
    let client_id = client_of(shared, headers).map_err(|r| *r)?;
    let Some(record) = settle(&mut shared.state(), id) else {
        let message = "no such consent";
        return Err(ob_error(
            headers,
            StatusCode::NOT_FOUND,
            "UK.OBIE.Resource.NotFound",
            message,
            None,
        ));
    };
    if record.client_id != client_id {
        let message = "the consent belongs to another client";
        return Err(ob_error(
            headers,
            StatusCode::FORBIDDEN,
            "UK.OBIE.Resource.ConsentMismatch",
            message,
            None,
        ));
    }
    Ok(record)
}

pub(super) async fn get(
    State(shared): State<Shared_>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let record = match guard(&shared, &headers, Endpoint::ConsentGet, &id).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let extra = shared.state().ob.consents.get(&id).cloned();
    match extra {
        Some(extra) => answer(
            &headers,
            StatusCode::OK,
            Some(consent_json(&shared, &record, &extra)),
        ),
        None => ob_error(
            &headers,
            StatusCode::NOT_FOUND,
            "UK.OBIE.Resource.NotFound",
            "no such consent",
            None,
        ),
    }
}

/// Revokes a live consent; terminal statuses (Rejected, Revoked, Expired) stay.
pub(super) async fn delete(
    State(shared): State<Shared_>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let record = match guard(&shared, &headers, Endpoint::ConsentDelete, &id).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if LIVE.contains(&record.status.as_str()) {
        // Its refresh tokens die with it: the refresh grant checks the consent.
        set_status(&mut shared.state(), &id, "Revoked");
    }
    answer(&headers, StatusCode::NO_CONTENT, None)
}
