//! The authorisation callback: the customer's browser comes back here from the provider. The
//! state names exactly one consent awaiting authorisation; the code is handed to the leader
//! through an owned Secret (this replica may be a standby, and only the leader talks to the
//! provider). Creating that Secret is atomic, so a replayed redirect is refused rather than
//! exchanged twice. Responses never echo what the request carried.

use super::HttpState;
use crate::api::contract::{accepts_state, state_owner, Handoff};
use crate::api::names::{is_dns1123_label, is_dns1123_subdomain};
use crate::api::AccountConsent;
use crate::secrets::handoff_secret;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
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

/// A refused redirect: a status and a text that never echoes what the request carried.
struct Refusal(StatusCode, &'static str);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

fn refuse(status: StatusCode, text: &'static str) -> Refusal {
    Refusal(status, text)
}

/// The state names its consent; it is accepted only if it is that consent's pending state.
fn unknown() -> Refusal {
    tracing::info!("authorisation callback with an unknown or already used state refused");
    refuse(StatusCode::BAD_REQUEST, "Unknown or already used authorisation state. Start the authorisation again from the consent's authorisation URL.")
}

const UNAVAILABLE: &str = "The authorisation could not be recorded; reload this page to try again.";

/// What a redirect must carry before anything is asked of the API server: a state that names a
/// namespace and a consent as Kubernetes could have named them, bounded values, and either a
/// code or an error. Returns the namespace, the consent's name and the hand-off.
fn admit(q: CallbackQuery) -> Result<(String, String, Handoff), Refusal> {
    let Some(state) = q.state.filter(|s| !s.is_empty() && s.len() <= 512) else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "Missing state: this is not an authorisation redirect.",
        ));
    };
    // Only names Kubernetes could have given go near an API path.
    let (namespace, name) = state_owner(&state)
        .filter(|(ns, name)| is_dns1123_label(ns) && is_dns1123_subdomain(name))
        .ok_or_else(unknown)?;
    let too_long = |v: &Option<String>| v.as_ref().is_some_and(|v| v.len() > MAX_VALUE_BYTES);
    if too_long(&q.code) || too_long(&q.id_token) || too_long(&q.error) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "The redirect carries oversized values.",
        ));
    }
    let handoff = match (
        q.code.filter(|c| !c.is_empty()),
        q.error.filter(|e| !e.is_empty()),
    ) {
        (_, Some(error)) => Handoff::Refused { state, error },
        (Some(code), None) => Handoff::Code {
            state,
            code,
            id_token: q.id_token,
        },
        (None, None) => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "The redirect carries neither a code nor an error.",
            ))
        }
    };
    Ok((namespace, name, handoff))
}

/// The consent the redirect names, from the API server's watch cache: its pending state was
/// written long before the customer came back.
async fn pending_consent(
    state: &HttpState,
    namespace: &str,
    name: &str,
    handoff: &Handoff,
) -> Result<AccountConsent, Refusal> {
    if !state.serves(namespace) {
        return Err(unknown());
    }
    let consents: Api<AccountConsent> = Api::namespaced(state.ctx.client.clone(), namespace);
    let params = ListParams::default()
        .fields(&format!("metadata.name={name}"))
        .match_any();
    let consent = match consents.list(&params).await {
        Ok(list) => list.items.into_iter().next().ok_or_else(unknown)?,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the consent of an authorisation callback");
            return Err(refuse(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE));
        }
    };
    if !accepts_state(&consent, handoff.state()) {
        return Err(unknown());
    }
    Ok(consent)
}

pub(super) async fn callback(
    State(state): State<HttpState>,
    axum::extract::Query(q): axum::extract::Query<CallbackQuery>,
) -> Response {
    let (namespace, name, handoff) = match admit(q) {
        Ok(admitted) => admitted,
        Err(refused) => return refused.into_response(),
    };
    let consent = match pending_consent(&state, &namespace, &name, &handoff).await {
        Ok(consent) => consent,
        Err(refused) => return refused.into_response(),
    };
    let policy = &state.ctx.settings.template_policy;
    let Some(secret) = handoff_secret(&consent, &handoff, policy) else {
        return refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The consent is incomplete.",
        )
        .into_response();
    };
    // Created, not applied: a second redirect with the same state finds it and gets 409.
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
            .into_response()
        }
        Err(e) => {
            tracing::warn!(%namespace, consent = %name, error = %e, "could not hand the authorisation over");
            refuse(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE).into_response()
        }
    }
}
