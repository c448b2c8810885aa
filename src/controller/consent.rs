//! The AccountConsent reconciler: create the consent at the provider exactly once, publish a
//! signed authorisation URL, follow the consent's status, and turn the customer's authorisation
//! code into the customer token Secret (see `exchange_code`).

use super::consent_plan::{
    consent_expired, creation_plan, is_final, needs_signing, poll_delay, resign_at, CreationPlan,
};
use super::outcome::{
    add, earliest, persist_status, publish_event, rfc3339, set_ready, unchanged, wait_until,
    Outcome,
};
use super::schedule::{backoff, FailureKind};
use super::{Context, Error};
use crate::api::{
    find, reason, AccountConsent, AccountConsentStatus, TppRegistration, ANNOTATION_FORCE_REFRESH,
    ANNOTATION_RETRY_CREATION, FINALIZER, LABEL_CONSENT, READY,
};
use crate::controller::registration::{KEY_CERTIFICATE, KEY_CLIENT_ID, KEY_PRIVATE_KEY};
use crate::provider::{
    parse_base_url, token, ClientCredentials, ConsentRequest, ConsentRequestData, ConsentResponse,
    Sensitive,
};
use crate::secrets::{text_value, Owner, Secrets};
use crate::signing::{RequestObjectClaims, SigningKey, REQUEST_OBJECT_LIFETIME_SECS};
use crate::telemetry::ObjectLabels;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// Keys of the authorisation hand-off Secret (`<name>-authorisation`).
pub const KEY_CODE: &str = "code";
/// The `state` echoed by the provider; must match `status.authorisationState`.
pub const KEY_STATE: &str = "state";
/// The id token from the redirect (kept for the record, not used).
pub const KEY_ID_TOKEN: &str = "id_token";
/// The OAuth error of a refused authorisation (e.g. `access_denied`).
pub const KEY_ERROR: &str = "error";
/// Key of the customer token Secret naming the consent.
pub const KEY_CONSENT_ID: &str = "consent_id";

/// Consent statuses as the provider names them.
const AUTHORISED: &str = "Authorised";
const EXPIRED: &str = "Expired";

/// How often a consent whose registration is not Ready looks again (besides the watch).
const REGISTRATION_RETRY: Duration = Duration::from_secs(30);
/// How long a 401 at consent creation waits for the registration's token to be refreshed.
const TOKEN_REFRESH_WAIT: Duration = Duration::from_secs(20);
/// Longest wait between two looks at a consent.
const MAX_REQUEUE: Duration = Duration::from_secs(3600);
/// Lifetime assumed for a customer token whose lifetime the provider does not state.
const FALLBACK_LIFETIME: SignedDuration = SignedDuration::from_secs(300);

/// In-memory schedule of status polls of one consent.
#[derive(Clone, Copy, Debug)]
pub struct PollState {
    /// When to poll next.
    pub next: Timestamp,
    /// Polls in a row that saw no change.
    pub unchanged: u32,
    /// Failed polls in a row.
    pub failures: u32,
}

/// The consents that use `registration` (for the registration watch).
pub fn using(
    store: &Store<AccountConsent>,
    registration: &TppRegistration,
) -> Vec<ObjectRef<AccountConsent>> {
    let namespace = registration.namespace();
    let name = registration.name_any();
    store
        .state()
        .iter()
        .filter(|c| c.namespace() == namespace && c.spec.registration_ref.name == name)
        .map(|c| ObjectRef::from_obj(&**c))
        .collect()
}

/// The consent a Secret belongs to, by its `tpp-operator.dev/consent` label.
pub fn labelled_for(
    secret: k8s_openapi::api::core::v1::Secret,
) -> Option<ObjectRef<AccountConsent>> {
    let name = secret.labels().get(LABEL_CONSENT)?.clone();
    let namespace = secret.namespace()?;
    Some(ObjectRef::new(&name).within(&namespace))
}

/// Reconciles one AccountConsent, handling its finalizer.
pub async fn reconcile(obj: Arc<AccountConsent>, ctx: &Context) -> Result<Action, Error> {
    let namespace = obj.namespace().ok_or(Error::Incomplete("namespace"))?;
    let api: Api<AccountConsent> = Api::namespaced(ctx.client.clone(), &namespace);
    let fresh = api.clone();
    finalizer(&api, FINALIZER, obj, |event| async move {
        match event {
            FinalizerEvent::Apply(cached) => {
                // As for registrations: a stale cached status could create a second consent.
                let Some(obj) = fresh.get_opt(&cached.name_any()).await? else {
                    return Ok(Action::await_change());
                };
                Run::new(&obj, ctx)?.apply().await
            }
            FinalizerEvent::Cleanup(cached) => {
                // The cache may still hold an object whose clean-up already finished (and
                // recorded the revocation); revoking twice must not happen.
                match fresh.get_opt(&cached.name_any()).await? {
                    Some(obj) => cleanup(&obj, ctx).await,
                    None => Ok(Action::await_change()),
                }
            }
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })
}

/// What a consent needs from its TppRegistration.
struct Registration {
    obj: TppRegistration,
    base: Url,
    provider_url: String,
}

/// State of one reconcile of one consent.
struct Run<'a> {
    obj: &'a AccountConsent,
    ctx: &'a Context,
    name: String,
    namespace: String,
    uid: String,
    secrets: Secrets,
    owner: Owner,
    written: AccountConsentStatus,
    status: AccountConsentStatus,
    now: Timestamp,
}

impl<'a> Run<'a> {
    fn new(obj: &'a AccountConsent, ctx: &'a Context) -> Result<Self, Error> {
        let namespace = obj.namespace().ok_or(Error::Incomplete("namespace"))?;
        let name = obj.name_any();
        let uid = obj.uid().ok_or(Error::Incomplete("uid"))?;
        let reference = obj
            .controller_owner_ref(&())
            .ok_or(Error::Incomplete("uid"))?;
        let written = obj.status.clone().unwrap_or_default();
        Ok(Run {
            obj,
            ctx,
            secrets: Secrets::new(ctx.client.clone(), &namespace),
            owner: Owner {
                label: LABEL_CONSENT,
                name: name.clone(),
                reference,
            },
            status: written.clone(),
            written,
            name,
            namespace,
            uid,
            now: ctx.clock.now(),
        })
    }

    async fn apply(mut self) -> Result<Action, Error> {
        let outcome = self.step().await?;
        self.finish(outcome).await
    }

    async fn step(&mut self) -> Result<Outcome, Error> {
        self.status.token_secret = Some(self.obj.token_secret_name());
        let expiration = self.obj.spec.expiration_date_time.as_ref().map(|t| t.0);
        let current = self.status.consent_status.clone().unwrap_or_default();
        // Past its ExpirationDateTime a consent grants nothing, whatever else is going on.
        if consent_expired(expiration, self.now) && !is_final(&current) {
            self.status.consent_status = Some(EXPIRED.into());
            self.end_authorisation();
        }
        if let Some(status) = self.status.consent_status.clone().filter(|s| is_final(s)) {
            self.forget_polls();
            return Ok(self.final_outcome(&status));
        }

        // Read once: creation, the code exchange, polling and signing all need it.
        let registration = self.registration().await?;
        if self.status.consent_id.is_none() {
            let ready = match &registration {
                Ok(r) => r,
                Err(outcome) => return Ok(outcome.clone()),
            };
            if let Err(outcome) = self.create(ready).await? {
                return Ok(outcome);
            }
        }
        if let Some(outcome) = self.authorisation_handoff(&registration).await? {
            return Ok(outcome);
        }
        if let Some(outcome) = self.adopt_written_token().await? {
            return Ok(outcome);
        }

        let registration = match registration {
            Ok(r) => Some(r),
            // An authorised consent's token does not depend on the registration any more.
            Err(_) if self.status.consent_status.as_deref() == Some(AUTHORISED) => None,
            Err(outcome) => return Ok(outcome),
        };
        let poll_next = match &registration {
            Some(r) => self.poll(r).await?,
            None => None,
        };
        if let Some(status) = self.status.consent_status.clone().filter(|s| is_final(s)) {
            self.end_authorisation();
            self.forget_polls();
            return Ok(self.final_outcome(&status));
        }
        let outcome = match (self.status.consent_status.as_deref(), &registration) {
            (Some(AUTHORISED), _) => self.authorised(),
            (_, Some(registration)) => self.awaiting(registration).await?,
            (_, None) => return Ok(self.unchanged_ready(None)),
        };
        Ok(Outcome {
            next: earliest(outcome.next, poll_next),
            ..outcome
        })
    }

    /// The consent's TppRegistration when it is Ready; otherwise the outcome to report.
    async fn registration(&mut self) -> Result<Result<Registration, Outcome>, Error> {
        let name = &self.obj.spec.registration_ref.name;
        let api: Api<TppRegistration> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let not_ready = |why: String| {
            Err(Outcome {
                next: Some(add(self.now, REGISTRATION_RETRY)),
                event: None,
                ..Outcome::failed(reason::REGISTRATION_NOT_READY, why, None)
            })
        };
        let Some(registration) = api.get_opt(name).await? else {
            return Ok(not_ready(format!(
                "TppRegistration {name} does not exist in namespace {}; create it (see examples/tpp-registration.yaml) or fix spec.registrationRef.",
                self.namespace
            )));
        };
        let status = registration.status.clone().unwrap_or_default();
        match find(&status.conditions, READY) {
            Some(c) if c.status == "True" => {}
            Some(c) => {
                return Ok(not_ready(format!(
                    "Waiting for TppRegistration {name} to be Ready (it says {}: {}).",
                    c.reason, c.message
                )))
            }
            None => {
                return Ok(not_ready(format!(
                    "Waiting for TppRegistration {name} to be Ready."
                )))
            }
        }
        let provider_url = status
            .provider_url
            .clone()
            .or_else(|| registration.spec.provider_url.clone())
            .unwrap_or_else(|| self.ctx.settings.default_provider_url.to_string());
        let base = match parse_base_url(&provider_url) {
            Ok(base) => base,
            Err(e) => return Ok(not_ready(format!("TppRegistration {name}: {e}."))),
        };
        Ok(Ok(Registration {
            obj: registration,
            base,
            provider_url,
        }))
    }

    /// The registration's current client token.
    async fn client_token(&self, registration: &Registration) -> Result<Option<Sensitive>, Error> {
        let name = registration.obj.token_secret_name();
        Ok(self
            .secrets
            .get(&name)
            .await?
            .and_then(|s| text_value(&s, "access_token").ok())
            .map(Sensitive::new))
    }

    /// The registration's client id and certificate.
    async fn credentials(
        &self,
        registration: &Registration,
    ) -> Result<Result<ClientCredentials, String>, Error> {
        let name = registration.obj.credentials_secret_name();
        let Some(secret) = self.secrets.get(&name).await? else {
            return Ok(Err(format!(
                "Secret {name} (registration credentials) does not exist"
            )));
        };
        Ok(text_value(&secret, KEY_CLIENT_ID)
            .and_then(|id| text_value(&secret, KEY_CERTIFICATE).map(|c| (id, c)))
            .map(|(client_id, certificate)| ClientCredentials {
                client_id,
                certificate: Sensitive::new(certificate),
            })
            .map_err(|e| e.to_string()))
    }

    /// Creates the consent, persisting the attempt before the call and the ConsentId before
    /// anything else, so a crash never creates a second consent.
    async fn create(&mut self, registration: &Registration) -> Result<Result<(), Outcome>, Error> {
        let retry = self
            .obj
            .annotations()
            .get(ANNOTATION_RETRY_CREATION)
            .map(String::as_str);
        match creation_plan(&self.status, retry, self.now) {
            CreationPlan::Create => {}
            CreationPlan::WaitUntil(t) => {
                return Ok(Err(Outcome {
                    next: Some(t),
                    ..self.unchanged_ready(None)
                }))
            }
            CreationPlan::Unconfirmed { started_at } => {
                return Ok(Err(Outcome {
                    event: None,
                    ..Outcome::failed(
                        reason::CONSENT_CREATION_UNCONFIRMED,
                        self.unconfirmed_message(started_at),
                        None,
                    )
                }))
            }
        }
        let Some(token) = self.client_token(registration).await? else {
            return Ok(Err(Outcome {
                next: Some(add(self.now, REGISTRATION_RETRY)),
                event: None,
                ..Outcome::failed(
                    reason::REGISTRATION_NOT_READY,
                    format!(
                        "TppRegistration {} has no client token yet.",
                        registration.obj.name_any()
                    ),
                    None,
                )
            }));
        };
        let spec = &self.obj.spec;
        let request = ConsentRequest {
            data: ConsentRequestData {
                permissions: spec.permissions.iter().map(|p| format!("{p:?}")).collect(),
                expiration_date_time: spec.expiration_date_time.as_ref().map(|t| rfc3339(t.0)),
                transaction_from_date_time: spec
                    .transaction_from_date_time
                    .as_ref()
                    .map(|t| rfc3339(t.0)),
                transaction_to_date_time: spec
                    .transaction_to_date_time
                    .as_ref()
                    .map(|t| rfc3339(t.0)),
            },
            risk: serde_json::json!({}),
        };

        // Persist the attempt first: if the process dies during the call, the next run knows
        // a consent may exist and does not create a second one on its own.
        self.status.creation_attempt_started_at = Some(Time(self.now));
        self.status.handled_retry_creation = retry
            .map(str::to_string)
            .or(self.status.handled_retry_creation.take());
        self.persist().await?;

        let provider = &self.ctx.provider;
        let mut result = provider
            .create_consent(&registration.base, &token, &request)
            .await;
        if matches!(&result, Err(e) if e.status() == Some(401)) {
            // The client token may have been revoked early: one refresh, one retry.
            if let Some(fresh) = self.refreshed_client_token(registration, &token).await? {
                result = provider
                    .create_consent(&registration.base, &fresh, &request)
                    .await;
            }
        }
        let response = match result {
            Ok(r) => r,
            Err(e) if e.outcome_unknown() => {
                self.status.last_failure = Some(e.to_string());
                let started = self.now;
                return Ok(Err(Outcome::failed(
                    reason::CONSENT_CREATION_UNCONFIRMED,
                    self.unconfirmed_message(started),
                    None,
                )));
            }
            Err(e) => {
                self.status.creation_attempt_started_at = None;
                let (reason, kind, advice) = match e.status() {
                    Some(401 | 403) => (
                        reason::CLIENT_TOKEN_REJECTED,
                        FailureKind::Permanent,
                        "The provider refused the registration's client token even after a refresh; check the TppRegistration.".to_string(),
                    ),
                    _ if e.is_transient() => {
                        (reason::PROVIDER_UNAVAILABLE, FailureKind::Transient, String::new())
                    }
                    _ => (
                        reason::CONSENT_REJECTED_BY_PROVIDER,
                        FailureKind::Permanent,
                        "Check spec.permissions and the dates; as they cannot change, create a corrected AccountConsent.".to_string(),
                    ),
                };
                return Ok(Err(self.failure(
                    reason,
                    format!("Creating the consent failed: {e}. {advice}"),
                    kind,
                    e.retry_after(),
                )));
            }
        };
        self.status.creation_attempt_started_at = None;
        self.record_consent(&response);
        self.status.consecutive_failures = 0;
        self.status.last_failure = None;
        self.status.next_check_at = None;
        self.persist().await?;
        self.schedule_poll(0, 0);
        self.event(
            EventType::Normal,
            "Created",
            format!(
                "Created consent {} at {} (status {}).",
                response.data.consent_id, registration.provider_url, response.data.status
            ),
        )
        .await;
        Ok(Ok(()))
    }

    /// Asks the registration's reconciler for a new client token and waits for it; `None` when
    /// none arrives in time.
    async fn refreshed_client_token(
        &self,
        registration: &Registration,
        rejected: &Sensitive,
    ) -> Result<Option<Sensitive>, Error> {
        let api: Api<TppRegistration> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let value = format!("consent/{}/{}", self.name, self.now.as_millisecond());
        let patch =
            serde_json::json!({"metadata": {"annotations": {ANNOTATION_FORCE_REFRESH: value}}});
        api.patch(
            &registration.obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await?;
        let deadline = tokio::time::Instant::now() + TOKEN_REFRESH_WAIT;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if let Some(token) = self.client_token(registration).await? {
                if token.expose() != rejected.expose() {
                    return Ok(Some(token));
                }
            }
        }
        Ok(None)
    }

    /// Copies what the provider says about the consent into status; true when its status
    /// changed.
    fn record_consent(&mut self, response: &ConsentResponse) -> bool {
        let data = &response.data;
        let changed = self.status.consent_status.as_deref() != Some(data.status.as_str());
        self.status.consent_id = Some(data.consent_id.clone());
        if changed {
            self.status.consent_status = Some(data.status.clone());
            self.status.status_update_date_time = data.status_update_date_time.clone();
        }
        if self.status.creation_date_time.is_none() {
            self.status.creation_date_time = data.creation_date_time.clone();
        }
        if let Some(link) = &response.links.self_ {
            self.status.self_link = Some(link.clone());
        }
        changed
    }

    /// Takes the code (or the refusal) the customer's redirect brought, through the hand-off
    /// Secret. `Some` is the outcome to report.
    async fn authorisation_handoff(
        &mut self,
        registration: &Result<Registration, Outcome>,
    ) -> Result<Option<Outcome>, Error> {
        let secret_name = self.obj.authorisation_secret_name();
        let Some(secret) = self.secrets.get(&secret_name).await? else {
            return Ok(None);
        };
        let state = text_value(&secret, KEY_STATE).ok();
        let expected = self.status.authorisation_state.clone();
        if state.is_none() || state != expected {
            // An old, replayed or forged redirect: its code is of no use to this consent.
            self.secrets.delete_any(&secret_name).await?;
            self.event(
                EventType::Warning,
                "StateMismatch",
                format!("Ignored the authorisation in Secret {secret_name}: its state does not match the pending authorisation of this consent (replayed, outdated or foreign)."),
            )
            .await;
            return Ok(None);
        }
        if let Ok(error) = text_value(&secret, KEY_ERROR) {
            let error = sanitize(&error);
            if error == "access_denied" {
                self.status.consent_status = Some("Rejected".into());
            }
            self.end_authorisation();
            self.persist().await?;
            self.secrets.delete_any(&secret_name).await?;
            if error == "access_denied" {
                self.forget_polls();
                return Ok(Some(self.final_outcome("Rejected")));
            }
            return Ok(Some(Outcome::failed(
                reason::AUTHORISATION_CODE_REJECTED,
                format!("The provider redirected the customer back with error {error:?}. Create a new AccountConsent to ask the customer again."),
                None,
            )));
        }
        let Ok(code) = text_value(&secret, KEY_CODE) else {
            self.secrets.delete_any(&secret_name).await?;
            return Ok(None);
        };
        let registration = match registration {
            Ok(r) => r,
            Err(outcome) => return Ok(Some(outcome.clone())),
        };
        self.exchange_code(registration, Sensitive::new(code), &secret_name)
            .await
            .map(Some)
    }

    /// Exchanges the authorisation code for the customer token and stores it.
    async fn exchange_code(
        &mut self,
        registration: &Registration,
        code: Sensitive,
        handoff: &str,
    ) -> Result<Outcome, Error> {
        let credentials = match self.credentials(registration).await? {
            Ok(c) => c,
            Err(e) => {
                return Ok(Outcome {
                    next: Some(add(self.now, REGISTRATION_RETRY)),
                    ..Outcome::failed(
                        reason::REGISTRATION_NOT_READY,
                        format!("{e}; the authorisation code waits in Secret {handoff}."),
                        None,
                    )
                })
            }
        };
        let response = match self
            .ctx
            .provider
            .exchange_code(&registration.base, &credentials, &code)
            .await
        {
            Ok(r) => r,
            Err(e) if e.is_transient() && !e.outcome_unknown() => {
                return Ok(self.failure(
                    reason::PROVIDER_UNAVAILABLE,
                    format!("Exchanging the authorisation code failed: {e}."),
                    FailureKind::Transient,
                    e.retry_after(),
                ))
            }
            Err(e) => {
                // Codes are single-use: a refused (or possibly consumed) code cannot be tried
                // again, so the customer has to authorise anew.
                self.end_authorisation();
                self.persist().await?;
                self.secrets.delete_any(handoff).await?;
                return Ok(Outcome::failed(
                    reason::AUTHORISATION_CODE_REJECTED,
                    format!("Exchanging the authorisation code failed: {e}. Authorisation codes work once; create a new AccountConsent to ask the customer again."),
                    None,
                ));
            }
        };
        let token_value = response.access_token.expose().to_string();
        let expiry = token::effective_expiry(self.now, response.expires_in, &token_value)
            .unwrap_or_else(|| {
                self.now
                    .saturating_add(FALLBACK_LIFETIME)
                    .unwrap_or(self.now)
            });
        let token_type = match response.token_type.trim() {
            "" => "Bearer".to_string(),
            t => t.to_string(),
        };
        let consent_id = self.status.consent_id.clone().unwrap_or_default();
        let data = BTreeMap::from([
            (
                "authorization".to_string(),
                format!("{token_type} {token_value}"),
            ),
            ("access_token".to_string(), token_value),
            ("token_type".to_string(), token_type),
            ("expires_at".to_string(), rfc3339(expiry)),
            (KEY_CONSENT_ID.to_string(), consent_id.clone()),
        ]);
        let token_name = self.obj.token_secret_name();
        if let Err(e) = self.secrets.apply(&token_name, &self.owner, data).await {
            if let crate::secrets::SecretError::NotOwned { .. } = e {
                // The code is spent either way; say where the token could not go.
                self.end_authorisation();
                self.persist().await?;
                self.secrets.delete_any(handoff).await?;
                return Ok(Outcome::failed(
                    reason::SECRET_CONFLICT,
                    format!("{e}. The customer token could not be stored; set spec.tokenSecretName to a free name on a new AccountConsent."),
                    None,
                ));
            }
            return Err(e.into());
        }
        self.status.consent_status = Some(AUTHORISED.into());
        self.status.token_expires_at = Some(Time(expiry));
        self.status.authorised_at = Some(Time(self.now));
        self.status.consecutive_failures = 0;
        self.status.last_failure = None;
        self.status.next_check_at = None;
        self.end_authorisation();
        self.persist().await?;
        self.secrets.delete_any(handoff).await?;
        self.ctx
            .metrics
            .customer_tokens
            .get_or_create(&self.labels())
            .inc();
        self.event(
            EventType::Normal,
            reason::AUTHORISED,
            format!(
                "The customer authorised consent {consent_id}; customer token stored in Secret {token_name}, valid until {}.",
                rfc3339(expiry)
            ),
        )
        .await;
        Ok(self.authorised())
    }

    /// Recovers from a crash between writing the customer token and recording it in status:
    /// a token Secret of this consent that status does not know about is taken as is.
    async fn adopt_written_token(&mut self) -> Result<Option<Outcome>, Error> {
        if self.status.token_expires_at.is_some() || self.status.consent_id.is_none() {
            return Ok(None);
        }
        let Some(secret) = self.secrets.get(&self.obj.token_secret_name()).await? else {
            return Ok(None);
        };
        let matches = self.owner.owns(&secret)
            && text_value(&secret, KEY_CONSENT_ID).ok() == self.status.consent_id;
        let expiry = text_value(&secret, "expires_at")
            .ok()
            .and_then(|t| t.parse::<Timestamp>().ok());
        let (true, Some(expiry)) = (matches, expiry) else {
            return Ok(None);
        };
        self.status.consent_status = Some(AUTHORISED.into());
        self.status.token_expires_at = Some(Time(expiry));
        self.status.authorised_at.get_or_insert(Time(self.now));
        self.end_authorisation();
        self.persist().await?;
        Ok(Some(self.authorised()))
    }

    /// Polls the provider for the consent's status when due; returns when to poll next.
    async fn poll(&mut self, registration: &Registration) -> Result<Option<Timestamp>, Error> {
        if self.status.status_polling_supported == Some(false) {
            return Ok(None);
        }
        let Some(consent_id) = self.status.consent_id.clone() else {
            return Ok(None);
        };
        let base = self.ctx.settings.consent_poll_interval;
        let state = self.poll_state();
        let state = match state {
            Some(s) if s.next > self.now => return Ok(Some(s.next)),
            Some(s) => s,
            None => {
                // First look after a start: spread polls over one interval instead of polling
                // every consent at once.
                let spread = base.max(self.budget_interval());
                let first = add(self.now, spread.mul_f64(rand::random_range(0.0..=1.0)));
                self.set_poll_state(PollState {
                    next: first,
                    unchanged: 0,
                    failures: 0,
                });
                return Ok(Some(first));
            }
        };
        let Some(token) = self.client_token(registration).await? else {
            return Ok(Some(
                self.schedule_poll(state.unchanged, state.failures + 1),
            ));
        };
        match self
            .ctx
            .provider
            .get_consent(&registration.base, &token, &consent_id)
            .await
        {
            Ok(response) => {
                let changed = self.record_consent(&response);
                let unchanged = if changed { 0 } else { state.unchanged + 1 };
                Ok(Some(self.schedule_poll(unchanged, 0)))
            }
            Err(e) if matches!(e.status(), Some(404 | 405)) => {
                // A provider without GET: the status is known from the callback only.
                self.status.status_polling_supported = Some(false);
                self.forget_polls();
                self.event(
                    EventType::Normal,
                    "StatusPollingUnsupported",
                    format!("The provider does not offer GET on consents ({e}); the consent's status is taken from the authorisation callback only."),
                )
                .await;
                Ok(None)
            }
            Err(e) => {
                tracing::warn!(namespace = %self.namespace, name = %self.name, error = %e, "polling the consent's status failed");
                Ok(Some(
                    self.schedule_poll(state.unchanged, state.failures + 1),
                ))
            }
        }
    }

    fn poll_state(&self) -> Option<PollState> {
        self.ctx
            .consent_polls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&self.uid)
            .copied()
    }

    fn set_poll_state(&self, state: PollState) {
        self.ctx
            .consent_polls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(self.uid.clone(), state);
    }

    fn forget_polls(&self) {
        self.ctx
            .consent_polls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.uid);
    }

    /// The shortest interval at which every tracked consent can be polled within the poll
    /// budget, so that many consents never crowd out registrations and token refreshes.
    fn budget_interval(&self) -> Duration {
        let tracked = self
            .ctx
            .consent_polls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len();
        Duration::from_secs_f64(tracked as f64 / self.ctx.settings.consent_poll_rate.max(0.01))
    }

    /// Schedules the next poll (backing off after failures) and returns its time.
    fn schedule_poll(&self, unchanged: u32, failures: u32) -> Timestamp {
        let delay = if failures > 0 {
            backoff(
                failures,
                FailureKind::Transient,
                None,
                rand::random_range(0.0..=1.0),
            )
        } else {
            poll_delay(
                self.ctx.settings.consent_poll_interval,
                unchanged,
                rand::random_range(-1.0..=1.0),
            )
            .max(
                self.budget_interval()
                    .mul_f64(rand::random_range(0.9..=1.1)),
            )
        };
        let next = add(self.now, delay);
        self.set_poll_state(PollState {
            next,
            unchanged,
            failures,
        });
        next
    }

    /// A consent awaiting the customer: keep a valid authorisation URL published.
    async fn awaiting(&mut self, registration: &Registration) -> Result<Outcome, Error> {
        if self.status.authorisation_state.is_none() {
            self.status.authorisation_state = Some(new_state(&self.namespace, &self.name));
            self.status.authorisation_url = None;
            self.status.authorisation_url_expires_at = None;
        }
        let expires = self
            .status
            .authorisation_url_expires_at
            .as_ref()
            .map(|t| t.0);
        if needs_signing(expires, self.now) {
            if let Err(problem) = self.sign_authorisation_url(registration).await? {
                return Ok(Outcome {
                    next: Some(add(self.now, REGISTRATION_RETRY)),
                    ..Outcome::failed(reason::REGISTRATION_NOT_READY, problem, None)
                });
            }
        }
        let url_expires = self
            .status
            .authorisation_url_expires_at
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(self.now);
        let callback_hint = match &self.ctx.settings.public_url {
            Some(u) => format!(
                " If spec.redirectUri is {}/callback the operator receives the code itself; otherwise",
                u.as_str().trim_end_matches('/')
            ),
            None => " Your".to_string(),
        };
        Ok(Outcome {
            ready: false,
            reason: reason::AWAITING_AUTHORISATION,
            message: format!(
                "Consent {} awaits the customer: send them to status.authorisationUrl (renewed before it expires).{callback_hint} the page at spec.redirectUri hands the code over in Secret {} (keys {KEY_CODE}, {KEY_STATE}).",
                self.status.consent_id.as_deref().unwrap_or("?"),
                self.obj.authorisation_secret_name()
            ),
            next: Some(resign_at(url_expires)),
            event: None,
        })
    }

    /// Signs a fresh request object and publishes the authorisation URL; the inner error is a
    /// message for the user.
    async fn sign_authorisation_url(
        &mut self,
        registration: &Registration,
    ) -> Result<Result<(), String>, Error> {
        let reg_name = registration.obj.name_any();
        let key = match self.signing_key(registration).await? {
            Ok(k) => k,
            Err(e) => {
                return Ok(Err(format!(
                    "Cannot sign the authorisation request of TppRegistration {reg_name}: {e}."
                )))
            }
        };
        let credentials = match self.credentials(registration).await? {
            Ok(c) => c,
            Err(e) => return Ok(Err(format!("Cannot build the authorisation request: {e}."))),
        };
        let Some(self_link) = self.status.self_link.clone() else {
            return Ok(Err("The provider returned no Links.Self for the consent, so there is no authorisation page to send the customer to.".into()));
        };
        let Ok(mut url) = Url::parse(&self_link) else {
            return Ok(Err(format!(
                "The provider's Links.Self ({self_link:?}) is not a URL."
            )));
        };
        let consent_id = self.status.consent_id.clone().unwrap_or_default();
        let state = self.status.authorisation_state.clone().unwrap_or_default();
        let nonce = random_token();
        let iat = self.now.as_second();
        let claims = RequestObjectClaims::new(
            &credentials.client_id,
            registration.provider_url.trim_end_matches('/'),
            &self.obj.spec.redirect_uri,
            &consent_id,
            &state,
            &nonce,
            iat,
            REQUEST_OBJECT_LIFETIME_SECS,
        );
        let jwt = key
            .sign(&claims)
            .map_err(|e| Error::Signing(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("client_id", &credentials.client_id)
            .append_pair("response_type", "code id_token")
            .append_pair("scope", "openid accounts")
            .append_pair("redirect_uri", &self.obj.spec.redirect_uri)
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("request", &jwt);
        self.status.authorisation_url = Some(url.to_string());
        self.status.authorisation_url_expires_at =
            Timestamp::from_second(claims.exp).ok().map(Time);
        Ok(Ok(()))
    }

    /// The registration's current signing key, which must be the one its JWKS publishes first.
    async fn signing_key(
        &self,
        registration: &Registration,
    ) -> Result<Result<SigningKey, String>, Error> {
        let name = registration.obj.signing_key_secret_name();
        let Some(secret) = self.secrets.get(&name).await? else {
            return Ok(Err(format!(
                "its signing key Secret {name} does not exist yet"
            )));
        };
        let (pem_key, kid) = match &registration.obj.spec.signing_key_secret_ref {
            Some(r) => (
                r.private_key_key.as_str(),
                text_value(&secret, &r.kid_key).ok(),
            ),
            None => (KEY_PRIVATE_KEY, None),
        };
        let key = match text_value(&secret, pem_key)
            .map_err(|e| e.to_string())
            .and_then(|pem| SigningKey::from_pem(&pem, kid.as_deref()).map_err(|e| e.to_string()))
        {
            Ok(k) => k,
            Err(e) => return Ok(Err(e)),
        };
        let published = registration
            .obj
            .status
            .as_ref()
            .and_then(|s| s.signing_keys.first())
            .map(|k| k.kid.clone());
        if published.as_deref() != Some(key.kid()) {
            return Ok(Err(format!(
                "its signing key {} is not published in its JWKS yet",
                key.kid()
            )));
        }
        Ok(Ok(key))
    }

    /// An authorised consent: Ready while the customer token lasts.
    fn authorised(&self) -> Outcome {
        let token_name = self.obj.token_secret_name();
        match self.status.token_expires_at.as_ref().map(|t| t.0) {
            Some(exp) if exp <= self.now => Outcome {
                ready: false,
                reason: reason::REAUTHORISATION_REQUIRED,
                message: format!(
                    "The customer token in Secret {token_name} expired at {} and the provider issues no refresh token: the customer must authorise again. Delete this AccountConsent and create it anew, then send the customer to its new status.authorisationUrl.",
                    rfc3339(exp)
                ),
                next: None,
                event: Some(EventType::Warning),
            },
            Some(exp) => Outcome {
                ready: true,
                reason: reason::AUTHORISED,
                message: format!(
                    "Consent {} is authorised; the customer token in Secret {token_name} is valid until {}.",
                    self.status.consent_id.as_deref().unwrap_or("?"),
                    rfc3339(exp)
                ),
                next: Some(exp),
                event: None,
            },
            None => Outcome {
                ready: false,
                reason: reason::AWAITING_AUTHORISATION_CODE,
                message: format!(
                    "The provider says the customer authorised consent {}, but no authorisation code has reached the operator. Have the page at spec.redirectUri hand it over in Secret {} (keys {KEY_CODE}, {KEY_STATE}), or use the operator's /callback as redirect URI.",
                    self.status.consent_id.as_deref().unwrap_or("?"),
                    self.obj.authorisation_secret_name()
                ),
                next: None,
                event: Some(EventType::Warning),
            },
        }
    }

    /// Ready=False for a consent that will not change any more.
    fn final_outcome(&self, status: &str) -> Outcome {
        let (reason, what) = match status {
            "Rejected" => (
                reason::REJECTED,
                "was rejected (by the customer or the provider)",
            ),
            "Revoked" => (reason::REVOKED, "was revoked at the provider"),
            _ => (reason::EXPIRED, "has expired"),
        };
        Outcome {
            event: Some(EventType::Warning),
            ..Outcome::failed(
                reason,
                format!(
                    "Consent {} {what}; it grants no access any more. Create a new AccountConsent to ask the customer again.",
                    self.status.consent_id.as_deref().unwrap_or("(never created)")
                ),
                None,
            )
        }
    }

    /// The pending authorisation is over (used, refused, or moot): its state and URL go.
    fn end_authorisation(&mut self) {
        self.status.authorisation_state = None;
        self.status.authorisation_url = None;
        self.status.authorisation_url_expires_at = None;
    }

    /// Records a failure with backoff.
    fn failure(
        &mut self,
        reason: &'static str,
        message: String,
        kind: FailureKind,
        retry_after: Option<Duration>,
    ) -> Outcome {
        self.status.consecutive_failures = self.status.consecutive_failures.saturating_add(1);
        let delay = backoff(
            self.status.consecutive_failures,
            kind,
            retry_after,
            rand::random_range(0.0..=1.0),
        );
        let next = add(self.now, delay);
        self.status.next_check_at = Some(Time(next));
        self.status.last_failure = Some(message.clone());
        Outcome::failed(
            reason,
            format!(
                "{message} Attempt {} failed; next attempt at {}.",
                self.status.consecutive_failures,
                rfc3339(next)
            ),
            Some(next),
        )
    }

    fn unconfirmed_message(&self, started: Timestamp) -> String {
        format!(
            "A consent-creation call started at {} got no usable answer{}, so the provider may hold a consent this object does not know. Creating another would leave that one dangling; allow one more attempt with: kubectl annotate consent {} {ANNOTATION_RETRY_CREATION}=$(date +%s) --overwrite",
            rfc3339(started),
            self.status
                .last_failure
                .as_deref()
                .map(|f| format!(" ({f})"))
                .unwrap_or_default(),
            self.name
        )
    }

    /// The current Ready condition as an outcome (used when nothing changes).
    fn unchanged_ready(&self, next: Option<Timestamp>) -> Outcome {
        unchanged(&self.written.conditions, next)
    }

    /// Writes the Ready condition and the status (if changed), emits the event, sets metrics.
    async fn finish(mut self, outcome: Outcome) -> Result<Action, Error> {
        let changed = set_ready(
            &mut self.status.conditions,
            &self.written.conditions,
            &outcome,
            self.obj.metadata.generation,
            self.now,
        );
        self.status.observed_generation = self.obj.metadata.generation;
        self.persist().await?;
        // Consent outcomes are states, not routine work: an event only when the state changes.
        if let (Some(kind), true) = (outcome.event, changed) {
            self.event(kind, outcome.reason, outcome.message.clone())
                .await;
        }
        let labels = self.labels();
        self.ctx
            .metrics
            .consent_ready
            .get_or_create(&labels)
            .set(i64::from(outcome.ready));
        if let Some(t) = &self.status.token_expires_at {
            self.ctx
                .metrics
                .customer_token_expiry
                .get_or_create(&labels)
                .set(t.0.as_millisecond() as f64 / 1000.0);
        }
        Ok(Action::requeue(wait_until(
            outcome.next,
            self.ctx.clock.now(),
            MAX_REQUEUE,
        )))
    }

    /// Writes the status with server-side apply, only when it differs from what is stored.
    async fn persist(&mut self) -> Result<(), Error> {
        let api: Api<AccountConsent> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
        persist_status(&api, &self.name, &self.status, &mut self.written).await
    }

    async fn event(&self, type_: EventType, reason: &str, note: String) {
        publish_event(self.ctx, self.obj, type_, reason, note).await;
    }

    fn labels(&self) -> ObjectLabels {
        ObjectLabels {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

/// On deletion: revokes the consent at the provider (policy Delete), then deletes or releases
/// the Secrets the operator wrote for it.
async fn cleanup(obj: &AccountConsent, ctx: &Context) -> Result<Action, Error> {
    let mut run = Run::new(obj, ctx)?;
    run.forget_polls();
    let delete = obj.spec.deletion_policy == crate::api::DeletionPolicy::Delete;
    let live = run
        .status
        .consent_status
        .as_deref()
        .is_some_and(|s| !is_final(s));
    if let (true, true, Some(consent_id)) = (delete, live, run.status.consent_id.clone()) {
        revoke(&mut run, &consent_id).await?;
    }
    let handoff = obj.authorisation_secret_name();
    run.secrets.delete_owned(&handoff, &run.owner).await?;
    let token = obj.token_secret_name();
    let done = if delete {
        run.secrets.delete_owned(&token, &run.owner).await?
    } else {
        run.secrets.release(&token, &run.owner).await?
    };
    ctx.metrics.forget_consent(&run.labels());
    if done {
        let verb = if delete { "Deleted" } else { "Retained" };
        run.event(
            EventType::Normal,
            verb,
            format!("{verb} Secret {token} on deletion."),
        )
        .await;
    }
    Ok(Action::await_change())
}

/// Revokes a live consent. Transient failures fail the clean-up so it is retried (the consent
/// must not outlive its object at the provider); a provider without DELETE, or without a
/// usable registration, is reported and the deletion goes on.
async fn revoke(run: &mut Run<'_>, consent_id: &str) -> Result<(), Error> {
    let registration = match run.registration().await? {
        Ok(r) => r,
        Err(outcome) => {
            run.event(
                EventType::Warning,
                "RevocationSkipped",
                format!("Consent {consent_id} was not revoked at the provider: {} Revoke it in the provider's portal if it matters.", outcome.message),
            )
            .await;
            return Ok(());
        }
    };
    let Some(token) = run.client_token(&registration).await? else {
        run.event(
            EventType::Warning,
            "RevocationSkipped",
            format!("Consent {consent_id} was not revoked: the registration has no client token."),
        )
        .await;
        return Ok(());
    };
    match run
        .ctx
        .provider
        .delete_consent(&registration.base, &token, consent_id)
        .await
    {
        Ok(()) => {
            // Recorded at once, so a clean-up that has to run again does not revoke twice.
            run.status.consent_status = Some("Revoked".into());
            run.end_authorisation();
            run.persist().await?;
            run.event(
                EventType::Normal,
                reason::REVOKED,
                format!("Revoked consent {consent_id} at the provider."),
            )
            .await;
            Ok(())
        }
        Err(e) if matches!(e.status(), Some(404 | 405)) => {
            run.event(
                EventType::Warning,
                "RevocationUnsupported",
                format!("The provider does not offer DELETE on consents ({e}); consent {consent_id} stays until it expires or the customer revokes it."),
            )
            .await;
            Ok(())
        }
        Err(e) if e.is_transient() => Err(Error::Provider(format!(
            "revoking consent {consent_id}: {e}"
        ))),
        Err(e) => {
            run.event(
                EventType::Warning,
                "RevocationFailed",
                format!("The provider refused to revoke consent {consent_id}: {e}."),
            )
            .await;
            Ok(())
        }
    }
}

/// A new authorisation state: the consent's namespace and name (so any replica's callback can
/// find it with one read) and 32 random bytes, each part base64url.
fn new_state(namespace: &str, name: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.{}",
        b64.encode(namespace),
        b64.encode(name),
        random_token()
    )
}

/// The namespace and name of the consent a state was made for (see `new_state`); `None` for
/// anything else.
pub fn state_owner(state: &str) -> Option<(String, String)> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = state.splitn(3, '.');
    let decode = |p: Option<&str>| {
        b64.decode(p?)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|s| !s.is_empty() && s.len() <= 253)
    };
    let namespace = decode(parts.next())?;
    let name = decode(parts.next())?;
    parts.next().filter(|r| r.len() >= 32)?;
    Some((namespace, name))
}

/// 32 random bytes, base64url: state and nonce values.
fn random_token() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Keeps an OAuth error code printable and short before it goes into status and events.
fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_unguessable_and_url_safe() {
        let a = random_token();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token());
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    #[test]
    fn a_state_names_its_consent_and_nothing_else_does() {
        let state = new_state("team-a", "acme");
        assert_eq!(state_owner(&state), Some(("team-a".into(), "acme".into())));
        assert_ne!(state, new_state("team-a", "acme"));
        assert_eq!(state_owner("not-a-state"), None);
        assert_eq!(state_owner("dGVhbQ.YWNtZQ.short"), None);
        assert_eq!(state_owner("..x"), None);
    }

    #[test]
    fn oauth_errors_are_sanitised() {
        assert_eq!(sanitize("access_denied"), "access_denied");
        assert_eq!(sanitize("<script>x</script>"), "scriptxscript");
        assert_eq!(sanitize(&"a".repeat(100)).len(), 64);
    }
}
