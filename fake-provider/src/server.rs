//! The fake's HTTP routes: the provider API as documented, plus `/__admin` for the binary.

use crate::{faults::Endpoint, ConsentRecord, Fault, RegistrationRecord, Shared, TokenRecord};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

type Shared_ = Arc<Shared>;

pub(crate) fn router(shared: Shared_) -> Router {
    Router::new()
        .route("/api/account/registration", post(register))
        .route("/auth/token", post(token))
        .route("/account-access-consents", post(create_consent))
        .route(
            "/account-access-consents/{id}",
            get(get_consent).delete(delete_consent),
        )
        .route("/authorize", get(authorize))
        // Links.Self of a consent is its authorisation page, as at the real provider.
        .route("/create-consent", get(authorize))
        .route("/__admin/calls", get(admin_calls))
        .route("/__admin/registrations", get(admin_registrations))
        .route("/__admin/tokens", get(admin_tokens))
        .route("/__admin/consents", get(admin_consents))
        .route(
            "/__admin/faults",
            post(admin_add_fault).delete(admin_clear_faults),
        )
        .route("/__admin/consents/{id}/authorise", post(admin_authorise))
        .with_state(shared)
}

pub(crate) fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02X}", rand::random::<u8>()))
        .collect()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": code, "message": message}))).into_response()
}

/// The provider's timestamp format: 7 fractional digits and Z.
pub(crate) fn provider_time(t: jiff::Timestamp) -> String {
    let secs = t.as_second();
    let ticks = t.subsec_nanosecond() / 100;
    let whole = jiff::Timestamp::from_second(secs).unwrap_or(t);
    format!("{}.{ticks:07}Z", whole.strftime("%Y-%m-%dT%H:%M:%S"))
}

/// Counts the call, applies latency, the rate limit and any injected fault. `Some` is the
/// answer to send instead of the real one.
async fn preamble(shared: &Shared, endpoint: Endpoint) -> Option<Response> {
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
            return Some(
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, "1")],
                    Json(json!({"error": "rate_limited"})),
                )
                    .into_response(),
            );
        }
        state.faults.take(endpoint)
    };
    if !config.latency.is_zero() {
        tokio::time::sleep(config.latency).await;
    }
    match fault? {
        Fault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Some(error(status, "injected", &format!("injected fault {code}")))
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
            Some(response)
        }
        Fault::Delay(d) => {
            tokio::time::sleep(d).await;
            None
        }
        Fault::Malformed => Some(
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                "{\"Certificate\": \"tru",
            )
                .into_response(),
        ),
        Fault::Html => Some(
            (
                StatusCode::BAD_GATEWAY,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body>502 Bad Gateway</body></html>",
            )
                .into_response(),
        ),
    }
}

async fn register(State(shared): State<Shared_>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = preamble(&shared, Endpoint::Registration).await {
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

async fn token(State(shared): State<Shared_>, headers: HeaderMap, body: Bytes) -> Response {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let form: HashMap<String, String> = if is_form {
        serde_urlencoded_parse(&body)
    } else {
        HashMap::new()
    };
    let grant = form.get("grant_type").map(String::as_str).unwrap_or("");
    let endpoint = if grant == "authorization_code" {
        Endpoint::AuthCodeToken
    } else {
        Endpoint::ClientToken
    };
    if let Some(r) = preamble(&shared, endpoint).await {
        return r;
    }
    if !is_form {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Type must be application/x-www-form-urlencoded",
        );
    }
    let client_id = form.get("client_id").cloned().unwrap_or_default();
    let password = form.get("password").cloned().unwrap_or_default();
    let known = shared
        .state()
        .passwords
        .get(&client_id)
        .is_some_and(|p| *p == password);
    if !known {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong password",
        );
    }
    if form.get("scope").map(String::as_str) != Some("account") {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "scope must be account",
        );
    }
    let consent_id = match grant {
        "client_credentials" => None,
        "authorization_code" => {
            let code = form.get("code").cloned().unwrap_or_default();
            match shared.state().codes.remove(&code) {
                Some(consent) => Some(consent),
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "unknown or used authorisation code",
                    )
                }
            }
        }
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type not supported",
            )
        }
    };
    let config = shared.config();
    let now = jiff::Timestamp::now();
    let iat = now.as_second();
    let lifetime = i64::try_from(config.token_lifetime_secs).unwrap_or(300);
    let exp = iat + lifetime;
    // jti keeps two tokens issued in the same second distinct, as a real provider's would be.
    let claims =
        json!({"unique_name": client_id, "nbf": iat, "exp": exp, "iat": iat, "jti": random_hex(8)});
    let jwt = match jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&shared.jwt_secret),
    ) {
        Ok(t) => t,
        Err(_) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "could not sign token",
            )
        }
    };
    let expires_in = config.expires_in.unwrap_or(config.token_lifetime_secs);
    let expires_at = jiff::Timestamp::from_second(exp).unwrap_or(now);
    {
        let mut state = shared.state();
        state
            .live_tokens
            .insert(jwt.clone(), (client_id.clone(), expires_at));
        state.tokens.push(TokenRecord {
            client_id: client_id.clone(),
            grant_type: grant.to_string(),
            issued_at: now,
            expires_at,
            expires_in,
        });
    }
    tracing::info!(client_id, grant, "token issued");
    let mut answer = json!({"access_token": jwt, "token_type": "Bearer", "expires_in": expires_in});
    if let Some(consent) = consent_id {
        answer["id_token"] = json!(format!("fake-id-token-{}", random_hex(8)));
        answer["access_token_id"] = json!(consent);
    }
    Json(answer).into_response()
}

fn serde_urlencoded_parse(body: &[u8]) -> HashMap<String, String> {
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

fn uuid_v4() -> String {
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

async fn create_consent(
    State(shared): State<Shared_>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(r) = preamble(&shared, Endpoint::ConsentCreate).await {
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
    if let Some(r) = preamble(shared, endpoint).await {
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

async fn get_consent(
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

async fn delete_consent(
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

async fn admin_calls(State(shared): State<Shared_>) -> Json<Value> {
    Json(json!(shared.state().calls))
}

async fn admin_registrations(State(shared): State<Shared_>) -> Json<Value> {
    Json(json!(shared.state().registrations))
}

async fn admin_tokens(State(shared): State<Shared_>) -> Json<Value> {
    Json(json!(shared.state().tokens))
}

async fn admin_consents(State(shared): State<Shared_>) -> Json<Value> {
    Json(json!(shared.state().consents))
}

#[derive(serde::Deserialize)]
struct FaultRequest {
    endpoint: Endpoint,
    fault: Fault,
    times: Option<u32>,
}

async fn admin_add_fault(
    State(shared): State<Shared_>,
    Json(req): Json<FaultRequest>,
) -> StatusCode {
    shared
        .state()
        .faults
        .add(req.endpoint, req.fault, req.times);
    StatusCode::NO_CONTENT
}

async fn admin_clear_faults(State(shared): State<Shared_>) -> StatusCode {
    shared.state().faults.clear();
    StatusCode::NO_CONTENT
}

async fn admin_authorise(State(shared): State<Shared_>, Path(id): Path<String>) -> Response {
    let mut state = shared.state();
    let Some(consent) = state.consents.iter_mut().find(|c| c.consent_id == id) else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such consent");
    };
    consent.status = "Authorised".into();
    let code = random_hex(16);
    state.codes.insert(code.clone(), id);
    Json(json!({"code": code})).into_response()
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

#[derive(serde::Deserialize)]
struct AuthorizeQuery {
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
async fn authorize(
    State(shared): State<Shared_>,
    axum::extract::Query(q): axum::extract::Query<AuthorizeQuery>,
) -> Response {
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
    let jwks: Value = match reqwest::get(&jwks_url).await {
        Ok(r) if r.status().is_success() => match r.json().await {
            Ok(v) => v,
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_client",
                    "the TPP's JWKS is not JSON",
                )
            }
        },
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_client",
                "the TPP's JWKS could not be fetched",
            )
        }
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
    let encode = |pairs: &[(&str, &str)]| serde_urlencoded::to_string(pairs).unwrap_or_default();
    let location = if q.decision.as_deref() == Some("reject") {
        consent.status = "Rejected".into();
        format!(
            "{redirect_uri}?{}",
            encode(&[("error", "access_denied"), ("state", &state_param)])
        )
    } else {
        consent.status = "Authorised".into();
        let code = random_hex(16);
        state.codes.insert(code.clone(), consent_id);
        let id_token = format!("fake-id-token-{}", random_hex(8));
        format!(
            "{redirect_uri}?{}",
            encode(&[
                ("code", &code),
                ("id_token", &id_token),
                ("state", &state_param)
            ])
        )
    };
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}
