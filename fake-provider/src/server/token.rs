//! `POST /auth/token`: client credentials and authorisation code grants.

use super::authorise::{id_token_claims, issue_id_token};
use super::{error, preamble, random_hex, serde_urlencoded_parse, Shared_, TokenTwist};
use crate::faults::{Endpoint, MALFORMED_ACCESS_TOKEN};
use crate::{CodeGrant, Shared, TokenRecord};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::collections::HashMap;

pub(super) async fn token(
    State(shared): State<Shared_>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
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
            refresh_token_expires_at: None,
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
