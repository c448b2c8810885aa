//! The UK Open Banking standard profile (FAPI 1 Advanced, relying-party view): a second fake
//! bank in the same crate, selected by [`crate::Profile::OpenBankingUk`]. It shares the
//! Leatherback fake's call counting, latency, rate limit, injected faults, signing key and
//! request-object verification. The contract (routes, shapes, quirks) is in `CONTRACT.md`
//! next to this file and is included below.
#![doc = include_str!("CONTRACT.md")]

mod admin;
mod api;
mod authorize;
mod clients;
mod consents;
mod decision;
mod discovery;
mod idtoken;
mod options;
mod token;

pub use options::{
    IdTokenFault, ObAuthoriseOptions, ObClient, ObOptions, ObRedirect, ResponseMode,
    DEFAULT_API_PREFIX, DEFAULT_REFRESH_TOKEN_LIFETIME_SECS, WRONG_AUDIENCE, WRONG_ISSUER,
};

pub(crate) use discovery::jwks;

use crate::server::admin::{
    admin_add_fault, admin_calls, admin_clear_faults, admin_consents, admin_tokens,
};
use crate::server::{count_every_request, not_found, Shared_};
use crate::{idtoken::IdTokenKey, Profile, Shared, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;

/// What an access token grants.
#[derive(Clone, Debug)]
pub(crate) struct AccessGrant {
    pub(crate) client_id: String,
    pub(crate) grant_type: &'static str,
    pub(crate) scope: String,
    pub(crate) expires_at: jiff::Timestamp,
}

/// What a refresh token is bound to.
#[derive(Clone, Debug)]
pub(crate) struct RefreshGrant {
    pub(crate) client_id: String,
    pub(crate) consent_id: String,
    pub(crate) customer_id: String,
    pub(crate) scope: String,
    pub(crate) auth_time: i64,
    pub(crate) expires_at: jiff::Timestamp,
    /// Rotated away or its consent revoked: kept to say so.
    pub(crate) revoked: bool,
}

/// What an authorisation code was issued for.
#[derive(Clone, Debug)]
pub(crate) struct CodeGrant {
    pub(crate) client_id: String,
    pub(crate) consent_id: String,
    pub(crate) customer_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) scope: String,
    pub(crate) nonce: String,
    pub(crate) state: String,
    pub(crate) auth_time: i64,
    pub(crate) expires_at: jiff::Timestamp,
    pub(crate) id_token_fault: IdTokenFault,
}

/// A verified request object waiting for the customer's decision.
#[derive(Clone, Debug)]
pub(crate) struct Pending {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) scope: String,
    pub(crate) state: String,
    pub(crate) nonce: String,
    pub(crate) response_mode: Option<ResponseMode>,
}

/// What the standard's consent answer needs beyond [`crate::ConsentRecord`].
#[derive(Clone, Debug)]
pub(crate) struct ConsentExtra {
    pub(crate) created: jiff::Timestamp,
    /// The status last seen and when it changed: `StatusUpdateDateTime` follows changes made
    /// anywhere (`set_consent_status` included).
    pub(crate) status_seen: String,
    pub(crate) status_updated: jiff::Timestamp,
    /// The request's `Data` fields echoed back (ExpirationDateTime, Transaction*DateTime).
    pub(crate) data: Value,
    pub(crate) expires: Option<jiff::Timestamp>,
}

/// The standard profile's part of the fake's state.
#[derive(Default)]
pub(crate) struct ObState {
    pub(crate) clients: HashMap<String, ObClient>,
    pub(crate) access_tokens: HashMap<String, AccessGrant>,
    pub(crate) refresh_tokens: HashMap<String, RefreshGrant>,
    pub(crate) codes: HashMap<String, CodeGrant>,
    /// consent id -> the last verified request object for it.
    pub(crate) pending: HashMap<String, Pending>,
    pub(crate) consents: HashMap<String, ConsentExtra>,
    /// Keys added by rotation, oldest first; the last one signs. The first key is the
    /// fake's own (`Shared::id_key`).
    pub(crate) rotated_keys: Vec<Arc<IdTokenKey>>,
    /// Signs [`IdTokenFault::ForgedSignature`] id_tokens; never published.
    pub(crate) forged_key: Option<Arc<IdTokenKey>>,
    /// Added to the real clock: tests reach expiries without sleeping.
    pub(crate) clock_offset_secs: i64,
    pub(crate) refresh_id_token_fault: IdTokenFault,
}

/// The profile's options, or the defaults when the fake is not in this profile.
pub(crate) fn options(shared: &Shared) -> ObOptions {
    match shared.config().profile {
        Profile::OpenBankingUk(o) => o,
        Profile::Leatherback => ObOptions::default(),
    }
}

/// The bank's clock: the real one plus the offset tests advanced it by.
pub(crate) fn now(state: &State) -> jiff::Timestamp {
    let now = jiff::Timestamp::now();
    now.checked_add(jiff::SignedDuration::from_secs(state.ob.clock_offset_secs))
        .unwrap_or(now)
}

/// An OAuth 2 error answer (RFC 6749 section 5.2).
pub(crate) fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    OAuthError::new(status, code, description).into_response()
}

/// An OAuth 2 error (RFC 6749 section 5.2), answered as
/// `{"error": .., "error_description": ..}`.
#[derive(Debug)]
pub(crate) struct OAuthError {
    status: StatusCode,
    code: String,
    description: String,
    /// Answer `WWW-Authenticate: Basic`: the client tried the Authorization header.
    basic_challenge: bool,
}

impl OAuthError {
    pub(crate) fn new(status: StatusCode, code: &str, description: &str) -> OAuthError {
        OAuthError {
            status,
            code: code.to_string(),
            description: description.to_string(),
            basic_challenge: false,
        }
    }

    /// 400 `invalid_grant`.
    pub(crate) fn invalid_grant(description: &str) -> OAuthError {
        OAuthError::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    /// 401 `invalid_client`, with a Basic challenge when the client used Basic.
    pub(crate) fn invalid_client(basic: bool, description: &str) -> OAuthError {
        OAuthError {
            basic_challenge: basic,
            ..OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.code, "error_description": self.description});
        let mut r = (self.status, Json(body)).into_response();
        if self.basic_challenge {
            r.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"token\""),
            );
        }
        r
    }
}

/// Random URL-safe text for codes and tokens.
pub(crate) fn opaque(len: usize) -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), len)
}

/// `/open-banking/v3.1/aisp/` -> `/open-banking/v3.1/aisp`; `` and `/` -> ``.
pub(crate) fn normalised_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim().trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}

/// The standard profile's routes.
pub(crate) fn router(shared: Shared_) -> Router {
    let consents = format!(
        "{}/account-access-consents",
        normalised_prefix(&options(&shared).api_prefix)
    );
    Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(discovery::discovery),
        )
        .route("/jwks", get(discovery::serve_jwks))
        .route("/token", post(token::token))
        .route("/authorize", get(authorize::authorize))
        .route(&consents, post(consents::create))
        .route(
            &format!("{consents}/{{id}}"),
            get(consents::get).delete(consents::delete),
        )
        .route("/__admin/calls", get(admin_calls))
        .route("/__admin/tokens", get(admin_tokens))
        .route("/__admin/consents", get(admin_consents))
        .route(
            "/__admin/faults",
            post(admin_add_fault).delete(admin_clear_faults),
        )
        .route(
            "/__admin/clients",
            post(admin::add_client).get(admin::clients),
        )
        .route("/__admin/consents/{id}/authorise", post(admin::authorise))
        .route("/__admin/rotate-key", post(admin::rotate_key))
        .route("/__admin/clock", post(admin::advance_clock))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            count_every_request,
        ))
        .with_state(shared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_normalised() {
        assert_eq!(
            normalised_prefix("/open-banking/v3.1/aisp/"),
            "/open-banking/v3.1/aisp"
        );
        assert_eq!(
            normalised_prefix("open-banking/v4.0/aisp"),
            "/open-banking/v4.0/aisp"
        );
        assert_eq!(normalised_prefix("/"), "");
        assert_eq!(normalised_prefix(""), "");
    }
}
