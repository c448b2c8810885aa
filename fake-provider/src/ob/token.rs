//! `POST /token`: `client_credentials`, `authorization_code` and `refresh_token` grants, with
//! `client_secret_basic` or `client_secret_post` client authentication.

use super::consents::settle;
use super::idtoken::{self, About};
use super::{
    clients, now, oauth_error, opaque, options, AccessGrant, OAuthError, ObClient, RefreshGrant,
};
use crate::faults::{Endpoint, MALFORMED_ACCESS_TOKEN};
use crate::server::{preamble, serde_urlencoded_parse, Shared_, TokenTwist};
use crate::{Shared, TokenRecord};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::collections::HashMap;

/// The answer's claim of the refresh token's expiry (epoch seconds).
pub(crate) const REFRESH_EXPIRES_AT: &str = "http://openbanking.org.uk/refresh_token_expires_at";

/// Scopes a client-credentials token may carry.
const CLIENT_SCOPES: [&str; 4] = ["openid", "accounts", "payments", "fundsconfirmations"];

type Form = HashMap<String, String>;

fn invalid_grant(description: &str) -> OAuthError {
    OAuthError::invalid_grant(description)
}

pub(super) async fn token(
    State(shared): State<Shared_>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let form = if is_form {
        serde_urlencoded_parse(&body)
    } else {
        Form::new()
    };
    let grant = form.get("grant_type").cloned().unwrap_or_default();
    let endpoint = match grant.as_str() {
        "authorization_code" => Endpoint::AuthCodeToken,
        "refresh_token" => Endpoint::RefreshToken,
        _ => Endpoint::ClientToken,
    };
    let twist = match preamble(&shared, endpoint).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    if !is_form {
        let description = "Content-Type must be application/x-www-form-urlencoded";
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", description);
    }
    let client = match clients::authenticate(&shared, &headers, &form) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let result = match grant.as_str() {
        "client_credentials" => client_credentials(&shared, &client, &form, twist),
        "authorization_code" => authorization_code(&shared, &client, &form, twist),
        "refresh_token" => refresh(&shared, &client, &form, twist),
        "" => Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "grant_type is required",
        )),
        _ => Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be client_credentials, authorization_code or refresh_token",
        )),
    };
    match result {
        // RFC 6749 5.1: token answers must not be cached.
        Ok(answer) => (
            [
                (header::CACHE_CONTROL, "no-store"),
                (header::PRAGMA, "no-cache"),
            ],
            Json(answer),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// What one issued access token is for.
struct Issue<'a> {
    client_id: &'a str,
    grant_type: &'static str,
    scope: &'a str,
    consent_id: Option<&'a str>,
    refresh_expires_at: Option<jiff::Timestamp>,
}

/// Issues and records an access token; returns it and `expires_in`.
fn issue_access_token(shared: &Shared, i: &Issue, twist: TokenTwist) -> (String, u64) {
    let config = shared.config();
    let mut state = shared.state();
    let now = now(&state);
    let (lifetime, expires_in) = if twist == TokenTwist::Expired {
        (-10, 0)
    } else {
        let lifetime = i64::try_from(config.token_lifetime_secs).unwrap_or(300);
        (
            lifetime,
            config.expires_in.unwrap_or(config.token_lifetime_secs),
        )
    };
    let expires_at = now
        .checked_add(jiff::SignedDuration::from_secs(lifetime))
        .unwrap_or(now);
    let token = if twist == TokenTwist::Malformed {
        MALFORMED_ACCESS_TOKEN.to_string()
    } else {
        opaque(40)
    };
    state.ob.access_tokens.insert(
        token.clone(),
        AccessGrant {
            client_id: i.client_id.to_string(),
            grant_type: i.grant_type,
            scope: i.scope.to_string(),
            expires_at,
        },
    );
    state.tokens.push(TokenRecord {
        client_id: i.client_id.to_string(),
        grant_type: i.grant_type.to_string(),
        issued_at: now,
        expires_at,
        expires_in,
        consent_id: i.consent_id.map(str::to_string),
        refresh_token_expires_at: i.refresh_expires_at,
    });
    tracing::info!(
        client_id = i.client_id,
        grant = i.grant_type,
        "token issued"
    );
    (token, expires_in)
}

/// The fields every answer has.
fn base_answer(shared: &Shared, access_token: String, expires_in: u64, scope: &str) -> Value {
    let token_type = if options(shared).token_type_lowercase {
        "bearer"
    } else {
        "Bearer"
    };
    json!({
        "access_token": access_token,
        "token_type": token_type,
        "expires_in": expires_in,
        "scope": scope,
    })
}

fn client_credentials(
    shared: &Shared,
    client: &ObClient,
    form: &Form,
    twist: TokenTwist,
) -> Result<Value, OAuthError> {
    let scope = form
        .get("scope")
        .map(|s| {
            s.split(' ')
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "accounts".to_string());
    if let Some(unknown) = scope.split(' ').find(|s| !CLIENT_SCOPES.contains(s)) {
        let description = format!("unknown scope {unknown}");
        return Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            &description,
        ));
    }
    let issue = Issue {
        client_id: &client.client_id,
        grant_type: "client_credentials",
        scope: &scope,
        consent_id: None,
        refresh_expires_at: None,
    };
    let (access_token, expires_in) = issue_access_token(shared, &issue, twist);
    Ok(base_answer(shared, access_token, expires_in, &scope))
}

/// Whether the consent is Authorised now (expiry applied).
fn authorised(state: &mut crate::State, consent_id: &str) -> Result<(), OAuthError> {
    match settle(state, consent_id) {
        Some(c) if c.status == "Authorised" => Ok(()),
        Some(c) => Err(invalid_grant(&format!("the consent is {}", c.status))),
        None => Err(invalid_grant("the consent is gone")),
    }
}

fn authorization_code(
    shared: &Shared,
    client: &ObClient,
    form: &Form,
    twist: TokenTwist,
) -> Result<Value, OAuthError> {
    let code = form.get("code").map(String::as_str).unwrap_or_default();
    let redirect_uri = form
        .get("redirect_uri")
        .map(String::as_str)
        .unwrap_or_default();
    let bank = options(shared);
    let grant = {
        let mut state = shared.state();
        let now = now(&state);
        match state.ob.codes.get(code) {
            None => return Err(invalid_grant("unknown or used authorisation code")),
            // Another client's attempt leaves the code to its owner.
            Some(g) if g.client_id != client.client_id => {
                return Err(invalid_grant("the code was issued to another client"))
            }
            Some(g) if g.redirect_uri != redirect_uri => {
                return Err(invalid_grant(
                    "redirect_uri differs from the authorised one",
                ))
            }
            Some(_) => {}
        }
        let grant = state
            .ob
            .codes
            .remove(code)
            .ok_or_else(|| invalid_grant("unknown code"))?;
        if grant.expires_at <= now {
            return Err(invalid_grant("the authorisation code has expired"));
        }
        authorised(&mut state, &grant.consent_id)?;
        grant
    };
    let now = now(&shared.state());
    let refresh = (!bank.no_refresh_token).then(|| {
        let lifetime = i64::try_from(bank.refresh_token_lifetime_secs).unwrap_or(i64::MAX);
        let expires_at = now
            .checked_add(jiff::SignedDuration::from_secs(lifetime))
            .unwrap_or(jiff::Timestamp::MAX);
        let token = opaque(48);
        let refresh_grant = RefreshGrant {
            client_id: client.client_id.clone(),
            consent_id: grant.consent_id.clone(),
            customer_id: grant.customer_id.clone(),
            scope: grant.scope.clone(),
            auth_time: grant.auth_time,
            expires_at,
            revoked: false,
        };
        shared
            .state()
            .ob
            .refresh_tokens
            .insert(token.clone(), refresh_grant);
        (token, expires_at)
    });
    let issue = Issue {
        client_id: &client.client_id,
        grant_type: "authorization_code",
        scope: &grant.scope,
        consent_id: Some(&grant.consent_id),
        refresh_expires_at: refresh.as_ref().map(|r| r.1),
    };
    let (access_token, expires_in) = issue_access_token(shared, &issue, twist);
    let about = About {
        client_id: &client.client_id,
        customer_id: &grant.customer_id,
        consent_id: &grant.consent_id,
        auth_time: grant.auth_time,
        nonce: Some(&grant.nonce),
        code,
        state: &grant.state,
        hashes: false,
        access_token: Some(&access_token),
    };
    let id_token = idtoken::issue(shared, &about, grant.id_token_fault).ok_or_else(no_key)?;
    let mut answer = base_answer(shared, access_token, expires_in, &grant.scope);
    answer["id_token"] = json!(id_token);
    if let Some((token, expires_at)) = refresh {
        answer["refresh_token"] = json!(token);
        if !bank.no_refresh_token_expires_at {
            answer[REFRESH_EXPIRES_AT] = json!(expires_at.as_second());
        }
    }
    Ok(answer)
}

fn no_key() -> OAuthError {
    OAuthError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "could not sign the id_token",
    )
}

fn refresh(
    shared: &Shared,
    client: &ObClient,
    form: &Form,
    twist: TokenTwist,
) -> Result<Value, OAuthError> {
    let presented = form
        .get("refresh_token")
        .map(String::as_str)
        .unwrap_or_default();
    let bank = options(shared);
    // One lock from the lookup to the rotation: a refresh token is used once, even by
    // concurrent requests.
    let (grant, rotated) = {
        let mut state = shared.state();
        let grant = match state.ob.refresh_tokens.get(presented) {
            None => return Err(invalid_grant("unknown refresh token")),
            Some(g) if g.client_id != client.client_id => {
                return Err(invalid_grant(
                    "the refresh token was issued to another client",
                ))
            }
            Some(g) if g.revoked => return Err(invalid_grant("the refresh token was revoked")),
            Some(g) if g.expires_at <= now(&state) => {
                return Err(invalid_grant("the refresh token has expired"))
            }
            Some(g) => g.clone(),
        };
        authorised(&mut state, &grant.consent_id)?;
        let rotated = bank.rotate_refresh_tokens.then(|| {
            let token = opaque(48);
            if let Some(old) = state.ob.refresh_tokens.get_mut(presented) {
                old.revoked = true;
            }
            state.ob.refresh_tokens.insert(token.clone(), grant.clone());
            token
        });
        (grant, rotated)
    };
    let issue = Issue {
        client_id: &client.client_id,
        grant_type: "refresh_token",
        scope: &grant.scope,
        consent_id: Some(&grant.consent_id),
        refresh_expires_at: Some(grant.expires_at),
    };
    let (access_token, expires_in) = issue_access_token(shared, &issue, twist);
    let mut answer = base_answer(shared, access_token.clone(), expires_in, &grant.scope);
    if let Some(token) = rotated {
        answer["refresh_token"] = json!(token);
    }
    if !bank.no_refresh_token_expires_at {
        answer[REFRESH_EXPIRES_AT] = json!(grant.expires_at.as_second());
    }
    if !bank.no_id_token_on_refresh {
        let about = About {
            client_id: &client.client_id,
            customer_id: &grant.customer_id,
            consent_id: &grant.consent_id,
            auth_time: grant.auth_time,
            nonce: None,
            code: "",
            state: "",
            hashes: false,
            access_token: Some(&access_token),
        };
        let fault = shared.state().ob.refresh_id_token_fault;
        let id_token = idtoken::issue(shared, &about, fault).ok_or_else(no_key)?;
        answer["id_token"] = json!(id_token);
    }
    Ok(answer)
}
