//! The authorisation callback: the customer's browser comes back here from the provider. The
//! state names exactly one consent awaiting authorisation; the code is handed to the leader
//! through an owned Secret (this replica may be a standby, and only the leader talks to the
//! provider). Creating that Secret is atomic, so a replayed redirect is refused rather than
//! exchanged twice. Responses never echo what the request carried.

use super::HttpState;
use crate::api::contract::Handoff;
use crate::api::names::{is_dns1123_label, is_dns1123_subdomain};
use crate::api::AccountConsent;
use crate::controller::consent::authorisation::{accepts_state, state_owner};
use crate::controller::consent::handoff::handoff_secret;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, PostParams};

/// What the provider's redirect carries (response_mode=query).
#[derive(serde::Deserialize)]
pub(super) struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    id_token: Option<String>,
    error: Option<String>,
}

/// Longest code or id token accepted from a redirect.
const MAX_VALUE_BYTES: usize = 4096;

pub(super) async fn callback(
    State(state): State<HttpState>,
    axum::extract::Query(q): axum::extract::Query<CallbackQuery>,
) -> axum::response::Response {
    let refuse = |status: StatusCode, text: &'static str| (status, text).into_response();
    let Some(value) = q.state.filter(|s| !s.is_empty() && s.len() <= 512) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Missing state: this is not an authorisation redirect.",
        );
    };
    // The state names its consent; it is accepted only if it is that consent's pending state.
    let unknown = || {
        tracing::info!("authorisation callback with an unknown or already used state refused");
        refuse(StatusCode::BAD_REQUEST, "Unknown or already used authorisation state. Start the authorisation again from the consent's authorisation URL.")
    };
    // Only names Kubernetes could have given go near an API path.
    let Some((namespace, name)) =
        state_owner(&value).filter(|(ns, name)| is_dns1123_label(ns) && is_dns1123_subdomain(name))
    else {
        return unknown();
    };
    if !state.serves(&namespace) {
        return unknown();
    }
    let too_long = |v: &Option<String>| v.as_ref().is_some_and(|v| v.len() > MAX_VALUE_BYTES);
    if too_long(&q.code) || too_long(&q.id_token) || too_long(&q.error) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "The redirect carries oversized values.",
        );
    }
    // Served from the API server's watch cache: the pending state was written long before the
    // customer came back.
    let consents: Api<AccountConsent> = Api::namespaced(state.ctx.client.clone(), &namespace);
    let params = ListParams::default()
        .fields(&format!("metadata.name={name}"))
        .match_any();
    let consent = match consents.list(&params).await {
        Ok(list) => match list.items.into_iter().next() {
            Some(c) => c,
            None => return unknown(),
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the consent of an authorisation callback");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "The authorisation could not be recorded; reload this page to try again.",
            );
        }
    };
    if !accepts_state(&consent, &value) {
        return unknown();
    }
    let handoff = match (
        q.code.filter(|c| !c.is_empty()),
        q.error.filter(|e| !e.is_empty()),
    ) {
        (_, Some(error)) => Handoff::Refused {
            state: value,
            error,
        },
        (Some(code), None) => Handoff::Code {
            state: value,
            code,
            id_token: q.id_token,
        },
        (None, None) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "The redirect carries neither a code nor an error.",
            )
        }
    };
    let Some(secret) = handoff_secret(&consent, &handoff) else {
        return refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The consent is incomplete.",
        );
    };
    let api: Api<Secret> = Api::namespaced(state.ctx.client.clone(), &namespace);
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => {
            tracing::info!(%namespace, consent = %name, "authorisation callback received; handed to the controller");
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "Authorisation received. You can close this window.",
            )
                .into_response()
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            tracing::info!(%namespace, consent = %name, "replayed authorisation callback refused");
            refuse(
                StatusCode::CONFLICT,
                "This authorisation was already received.",
            )
        }
        Err(e) => {
            tracing::warn!(%namespace, consent = %name, error = %e, "could not hand the authorisation over");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "The authorisation could not be recorded; reload this page to try again.",
            )
        }
    }
}
