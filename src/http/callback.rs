//! The authorisation callback: the customer's browser comes back here from the provider, with
//! the answer in the query (`GET`) or posted by the fragment page (`POST`, see `fragment.rs`).
//! The state names exactly one consent awaiting authorisation; the code is handed to the leader
//! through an owned Secret (this replica may be a standby, and only the leader talks to the
//! provider). Creating that Secret is atomic, so a replayed redirect is refused rather than
//! exchanged twice. Responses never echo what the request carried; a consent with an allowed
//! `spec.returnUrl` gets its customer sent back there with the outcome, and nothing secret.

use super::{fragment, HttpState};
use crate::api::contract::{
    accepts_state, allows_return_url, outcome_url, state_owner, Handoff, ReturnOutcome,
};
use crate::api::names::{is_dns1123_label, is_dns1123_subdomain};
use crate::api::AccountConsent;
use crate::secrets::handoff_secret;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, PostParams};
use url::Url;

/// What the provider's redirect carries: its query (response_mode=query), or its fragment as
/// the fragment page posts it.
#[derive(serde::Deserialize)]
pub(super) struct CallbackQuery {
    state: Option<String>,
    code: Option<String>,
    id_token: Option<String>,
    error: Option<String>,
}

impl CallbackQuery {
    /// None of the redirect's parameters: the answer, if any, is in the fragment.
    fn is_empty(&self) -> bool {
        self.state.is_none()
            && self.code.is_none()
            && self.id_token.is_none()
            && self.error.is_none()
    }
}

/// Largest form body `POST /callback` accepts: a code, an id token and a state, with room.
pub(super) const MAX_FORM_BYTES: usize = 8 * 1024;

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

/// `GET /callback`: a redirect with its answer in the query, or, without any redirect
/// parameter, the fragment page.
pub(super) async fn callback(
    State(state): State<HttpState>,
    Query(q): Query<CallbackQuery>,
) -> Response {
    if q.is_empty() {
        return fragment::page(&state);
    }
    receive(&state, q).await
}

/// `POST /callback`: the fragment page posting the answer it read from the fragment.
pub(super) async fn posted(
    State(state): State<HttpState>,
    form: Result<Form<CallbackQuery>, FormRejection>,
) -> Response {
    match form {
        Ok(Form(q)) => receive(&state, q).await,
        // The rejection's own text can describe the body; only its status is passed on.
        Err(rejection) => Refusal(
            rejection.status(),
            "The authorisation answer could not be read.",
        )
        .into_response(),
    }
}

/// Admits a redirect, hands it over, and answers the customer.
async fn receive(state: &HttpState, q: CallbackQuery) -> Response {
    let (namespace, name, handoff) = match admit(q) {
        Ok(admitted) => admitted,
        Err(refused) => return refused.into_response(),
    };
    let consent = match pending_consent(state, &namespace, &name, &handoff).await {
        Ok(consent) => consent,
        Err(refused) => return refused.into_response(),
    };
    let recorded = hand_over(state, &consent, &namespace, &name, &handoff).await;
    let outcome = match (&recorded, &handoff) {
        (Ok(()), Handoff::Code { .. }) => ReturnOutcome::Authorised,
        (Ok(()), Handoff::Refused { .. }) => ReturnOutcome::Refused,
        (Err(_), _) => ReturnOutcome::Failed,
    };
    if let Some(back) = return_url(state, &consent).map(|u| outcome_url(&u, &name, outcome)) {
        if let Ok(location) = HeaderValue::from_str(back.as_str()) {
            tracing::info!(%namespace, consent = %name, outcome = outcome.as_str(), "customer sent back to the consent's return URL");
            return see_other(location);
        }
    }
    match recorded {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "Authorisation received. You can close this window.",
        )
            .into_response(),
        Err(refused) => refused.into_response(),
    }
}

/// The consent's return URL, if the platform team allows it (checked again here: the list may
/// have changed since the consent was created, and the callback must never be an open
/// redirect).
fn return_url(state: &HttpState, consent: &AccountConsent) -> Option<Url> {
    let raw = consent.spec.return_url.as_deref()?;
    let url = Url::parse(raw).ok();
    let allowed = &state.ctx.settings.allowed_return_urls;
    let allowed = url.filter(|u| allows_return_url(allowed, u));
    if allowed.is_none() {
        tracing::info!(consent = ?consent.metadata.name, "the consent's return URL is not allowed; the callback answers with its own page");
    }
    allowed
}

/// 303 to the app: the browser follows with a GET, sends no referrer (the callback's URL may
/// carry the code) and caches nothing.
fn see_other(location: HeaderValue) -> Response {
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
    )
        .into_response()
}

/// Creates the hand-off Secret for the leader; a refusal says why it could not be recorded.
async fn hand_over(
    state: &HttpState,
    consent: &AccountConsent,
    namespace: &str,
    name: &str,
    handoff: &Handoff,
) -> Result<(), Refusal> {
    let policy = &state.ctx.settings.template_policy;
    let Some(secret) = handoff_secret(consent, handoff, policy) else {
        return Err(refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The consent is incomplete.",
        ));
    };
    // Created, not applied: a second redirect with the same state finds it and gets 409.
    let api: Api<Secret> = Api::namespaced(state.ctx.client.clone(), namespace);
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => {
            tracing::info!(%namespace, consent = %name, "authorisation callback received; handed to the controller");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            tracing::info!(%namespace, consent = %name, "replayed authorisation callback refused");
            Err(refuse(
                StatusCode::CONFLICT,
                "This authorisation was already received.",
            ))
        }
        Err(e) => {
            tracing::warn!(%namespace, consent = %name, error = %e, "could not hand the authorisation over");
            Err(refuse(StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE))
        }
    }
}
