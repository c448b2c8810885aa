//! The fake's HTTP routes: the provider API as documented, plus `/__admin` for the binary.

use crate::faults::{Endpoint, MALFORMED_ACCESS_TOKEN, MAX_OVERSIZED_BYTES};
use crate::{
    idtoken, AuthContext, Authorisation, CodeGrant, ConsentRecord, Fault, RegistrationRecord,
    Shared, TokenRecord,
};
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
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
        .route("/.well-known/jwks.json", get(serve_jwks))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            count_every_request,
        ))
        .with_state(shared)
}

/// Counts every request outside /__admin in `total`, whatever its path or answer.
async fn count_every_request(State(shared): State<Shared_>, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/__admin") {
        shared.state().calls.total += 1;
    }
    next.run(req).await
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such route")
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

/// A fault that changes what a token endpoint issues rather than replacing its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TokenTwist {
    None,
    Expired,
    Malformed,
}

/// Counts the call, applies latency, the rate limit and any injected fault. `Err` is the
/// answer to send instead of the real one; `Ok` says how to twist a token endpoint's answer.
async fn preamble(shared: &Shared, endpoint: Endpoint) -> Result<TokenTwist, Response> {
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

async fn register(State(shared): State<Shared_>, headers: HeaderMap, body: Bytes) -> Response {
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
    let twist = match preamble(&shared, endpoint).await {
        Ok(twist) => twist,
        Err(r) => return r,
    };
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
    let grant_of_code = match grant {
        "client_credentials" => None,
        "authorization_code" => {
            let code = form.get("code").map(String::as_str).unwrap_or_default();
            match redeem_code(&shared, code, &client_id) {
                Ok(g) => Some(g),
                Err(message) => return error(StatusCode::BAD_REQUEST, "invalid_grant", message),
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
    let (exp, expires_in) = if twist == TokenTwist::Expired {
        // Already expired on arrival.
        (iat - 10, 0)
    } else {
        let lifetime = i64::try_from(config.token_lifetime_secs).unwrap_or(300);
        (
            iat + lifetime,
            config.expires_in.unwrap_or(config.token_lifetime_secs),
        )
    };
    // jti keeps two tokens issued in the same second distinct, as a real provider's would be.
    let mut claims =
        json!({"unique_name": client_id, "nbf": iat, "exp": exp, "iat": iat, "jti": random_hex(8)});
    if let Some(g) = &grant_of_code {
        // As the provider's sample customer token: bound to the customer and the consent.
        claims["customerId"] = json!(g.customer_id);
        claims["consentId"] = json!(g.consent_id);
    }
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
    let expires_at = jiff::Timestamp::from_second(exp).unwrap_or(now);
    let access_token = if twist == TokenTwist::Malformed {
        MALFORMED_ACCESS_TOKEN.to_string()
    } else {
        jwt
    };
    {
        let mut state = shared.state();
        state
            .live_tokens
            .insert(access_token.clone(), (client_id.clone(), expires_at));
        state.tokens.push(TokenRecord {
            client_id: client_id.clone(),
            grant_type: grant.to_string(),
            issued_at: now,
            expires_at,
            expires_in,
            consent_id: grant_of_code.as_ref().map(|g| g.consent_id.clone()),
        });
    }
    tracing::info!(client_id, grant, "token issued");
    let mut answer =
        json!({"access_token": access_token, "token_type": "Bearer", "expires_in": expires_in});
    if let Some(g) = grant_of_code {
        let claims = id_token_claims(
            &shared,
            &g.client_id,
            &g.customer_id,
            &g.consent_id,
            g.nonce,
        );
        let Some(id_token) = issue_id_token(&shared, config.opaque_id_token, claims) else {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "could not sign id_token",
            );
        };
        answer["id_token"] = json!(id_token);
        answer["access_token_id"] = json!(g.consent_id);
    }
    Json(answer).into_response()
}

/// Consumes an authorisation code presented by `client_id`: unknown or used codes, codes of
/// another client (left unused) and codes of consents no longer Authorised are refused.
fn redeem_code(shared: &Shared, code: &str, client_id: &str) -> Result<CodeGrant, &'static str> {
    let mut state = shared.state();
    match state.codes.get(code) {
        None => return Err("unknown or used authorisation code"),
        Some(g) if g.client_id != client_id => {
            return Err("authorisation code was issued to another client")
        }
        Some(_) => {}
    }
    let grant = state
        .codes
        .remove(code)
        .ok_or("unknown or used authorisation code")?;
    let authorised = state
        .consents
        .iter()
        .any(|c| c.consent_id == grant.consent_id && c.status == "Authorised");
    if !authorised {
        return Err("the consent is no longer authorised");
    }
    Ok(grant)
}

/// The claims of an id_token about a customer's authorisation of a consent.
fn id_token_claims(
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
fn issue_id_token(shared: &Shared, opaque: bool, claims: Value) -> Option<String> {
    if opaque {
        return Some(idtoken::opaque());
    }
    shared.id_key()?.sign(&claims)
}

/// The fake's public keys for id_tokens.
pub(crate) fn jwks(shared: &Shared) -> Value {
    shared
        .id_key()
        .map(idtoken::IdTokenKey::jwks)
        .unwrap_or_else(|| json!({"keys": []}))
}

async fn serve_jwks(State(shared): State<Shared_>) -> Response {
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

async fn admin_add_fault(State(shared): State<Shared_>, Json(req): Json<FaultRequest>) -> Response {
    if let Err(message) = req.fault.check(req.endpoint) {
        return error(StatusCode::BAD_REQUEST, "invalid_fault", &message);
    }
    shared
        .state()
        .faults
        .add(req.endpoint, req.fault, req.times);
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_clear_faults(State(shared): State<Shared_>) -> StatusCode {
    shared.state().faults.clear();
    StatusCode::NO_CONTENT
}

/// Optional body of `POST /__admin/consents/{id}/authorise`.
#[derive(Default, serde::Deserialize)]
struct AuthoriseRequest {
    state: Option<String>,
    nonce: Option<String>,
}

async fn admin_authorise(
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
