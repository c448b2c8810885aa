//! The TppRegistration reconciler: register once, adopt existing credentials, and keep the
//! client token fresh (see `refresh_token`).

use super::keygen::KeyRequest;
use super::outcome::{
    add, earliest, persist_status, publish_event, rfc3339, set_ready, unchanged, wait_until,
    Outcome,
};
use super::plan::{registration_plan, token_plan, RefreshReason, RegistrationPlan, TokenPlan};
use super::schedule::{backoff, refresh_at, FailureKind};
use super::{Context, Error};
use crate::api::{
    reason, PublishedKey, RegistrationState, TppRegistration, TppRegistrationStatus,
    ANNOTATION_FORCE_REFRESH, ANNOTATION_RETRY_REGISTRATION, ANNOTATION_ROTATE_SIGNING_KEY,
    FINALIZER, LABEL_REGISTRATION,
};
use crate::provider::{
    parse_base_url, token, ClientCredentials, ProviderError, RegistrationRequest, Sensitive,
};
use crate::secrets::{text_value, Owner, SecretError, Secrets};
use crate::signing::{Jwk, SigningKey};
use crate::telemetry::ObjectLabels;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// Keys of the credentials Secret.
pub const KEY_CLIENT_ID: &str = "client_id";
/// Keys of the credentials Secret.
pub const KEY_CERTIFICATE: &str = "certificate";

/// Key of the PEM private key in signing-key Secrets.
pub const KEY_PRIVATE_KEY: &str = "private_key";
/// How long a replaced public key stays in the JWKS: the life of a request object plus slack for
/// clock skew, so every request object signed with it can still be verified.
const KEY_RETENTION: Duration =
    Duration::from_secs(crate::signing::REQUEST_OBJECT_LIFETIME_SECS as u64 + 300);
/// How soon a broken user-supplied signing key is looked at again (its Secret is not watched).
const SIGNING_KEY_RETRY: Duration = Duration::from_secs(60);

/// Longest wait between two looks at an object that has nothing scheduled.
const MAX_REQUEUE: Duration = Duration::from_secs(3600);
/// Lifetime assumed when the provider states none and the token is not a JWT.
const FALLBACK_LIFETIME: SignedDuration = SignedDuration::from_secs(300);

/// Reconciles one TppRegistration, handling its finalizer.
pub async fn reconcile(obj: Arc<TppRegistration>, ctx: &Context) -> Result<Action, Error> {
    let namespace = obj.namespace().ok_or(Error::Incomplete("namespace"))?;
    let api: Api<TppRegistration> = Api::namespaced(ctx.client.clone(), &namespace);
    let fresh = api.clone();
    finalizer(&api, FINALIZER, obj, |event| async move {
        match event {
            FinalizerEvent::Apply(cached) => {
                // The watch cache can lag behind this operator's own status writes; acting on a
                // stale status would call the provider twice (a second registration or token).
                // A fresh read sees every write made so far.
                let Some(obj) = fresh.get_opt(&cached.name_any()).await? else {
                    return Ok(Action::await_change());
                };
                Run::new(&obj, ctx)?.apply().await
            }
            FinalizerEvent::Cleanup(obj) => cleanup(&obj, ctx).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(other.to_string()),
    })
}

/// State of one reconcile of one object.
struct Run<'a> {
    obj: &'a TppRegistration,
    ctx: &'a Context,
    name: String,
    namespace: String,
    secrets: Secrets,
    owner: Owner,
    /// Status as last written (or as read).
    written: TppRegistrationStatus,
    /// Status being built.
    status: TppRegistrationStatus,
    now: Timestamp,
}

impl<'a> Run<'a> {
    fn new(obj: &'a TppRegistration, ctx: &'a Context) -> Result<Self, Error> {
        let namespace = obj.namespace().ok_or(Error::Incomplete("namespace"))?;
        let name = obj.name_any();
        let reference = obj
            .controller_owner_ref(&())
            .ok_or(Error::Incomplete("uid"))?;
        let written = obj.status.clone().unwrap_or_default();
        Ok(Run {
            obj,
            ctx,
            secrets: Secrets::new(ctx.client.clone(), &namespace),
            owner: Owner {
                label: LABEL_REGISTRATION,
                name: name.clone(),
                reference,
            },
            status: written.clone(),
            written,
            name,
            namespace,
            now: ctx.clock.now(),
        })
    }

    async fn apply(mut self) -> Result<Action, Error> {
        let outcome = match self.step().await? {
            ControlFlow::Break(outcome) | ControlFlow::Continue(outcome) => outcome,
        };
        self.finish(outcome).await
    }

    /// Registration (or adoption), then the token.
    async fn step(&mut self) -> Result<ControlFlow<Outcome, Outcome>, Error> {
        let provider_url = self
            .status
            .provider_url
            .clone()
            .or_else(|| self.obj.spec.provider_url.clone())
            .unwrap_or_else(|| self.ctx.settings.default_provider_url.to_string());
        let base = match parse_base_url(&provider_url) {
            Ok(url) => url,
            Err(e) => {
                return Ok(ControlFlow::Break(Outcome::failed(
                    reason::INVALID_PROVIDER_URL,
                    format!("{e}. Set spec.providerUrl to the provider's https base URL."),
                    None,
                )))
            }
        };
        self.status.credentials_secret = Some(self.obj.credentials_secret_name());
        self.status.token_secret = Some(self.obj.token_secret_name());

        let credentials = match self.credentials(&base, &provider_url).await? {
            ControlFlow::Continue(c) => c,
            ControlFlow::Break(outcome) => return Ok(ControlFlow::Break(outcome)),
        };
        let token = self.token(&base, &credentials).await?;
        // A bad signing key must not stop client tokens from being refreshed: it is reported
        // on top of the token's outcome.
        Ok(ControlFlow::Continue(match self.signing_key().await? {
            // A token problem matters more to the apps; it stays the reported one.
            Some(problem) if token.ready => Outcome {
                next: earliest(token.next, problem.next),
                ..problem
            },
            Some(problem) => Outcome {
                next: earliest(token.next, problem.next),
                ..token
            },
            None => Outcome {
                next: earliest(token.next, self.next_key_retirement()),
                ..token
            },
        }))
    }

    /// Loads (or generates) the signing key and publishes its public half in status; `Some` is
    /// a problem to report.
    async fn signing_key(&mut self) -> Result<Option<Outcome>, Error> {
        let secret_name = self.obj.signing_key_secret_name();
        self.status.signing_key_secret = Some(secret_name.clone());
        let existing = self.secrets.get(&secret_name).await?;
        let key = match (&self.obj.spec.signing_key_secret_ref, existing) {
            (Some(reference), Some(secret)) => {
                let pem = text_value(&secret, &reference.private_key_key);
                let kid = text_value(&secret, &reference.kid_key).ok();
                match pem.map_err(|e| e.to_string()).and_then(|pem| {
                    SigningKey::from_pem(&pem, kid.as_deref()).map_err(|e| {
                        format!(
                            "key {:?} of Secret {secret_name}: {e}",
                            reference.private_key_key
                        )
                    })
                }) {
                    Ok(key) => key,
                    Err(e) => return Ok(Some(self.signing_key_problem(e))),
                }
            }
            (Some(_), None) => {
                return Ok(Some(self.signing_key_problem(format!(
                    "Secret {secret_name} (signing key) does not exist"
                ))))
            }
            (None, Some(secret)) if !self.owner.owns(&secret) => {
                let e = SecretError::NotOwned { name: secret_name };
                return Ok(Some(self.signing_key_problem(e.to_string())));
            }
            (None, existing) => {
                let rotate = self
                    .obj
                    .annotations()
                    .get(ANNOTATION_ROTATE_SIGNING_KEY)
                    .cloned();
                let rotate_now =
                    rotate.is_some() && rotate != self.status.handled_rotate_signing_key;
                let stored = existing
                    .as_ref()
                    .and_then(|s| text_value(s, KEY_PRIVATE_KEY).ok())
                    .and_then(|pem| SigningKey::from_pem(&pem, None).ok());
                let published = self.status.signing_keys.first().map(|k| k.kid.clone());
                match stored {
                    Some(key) if !rotate_now || published.as_deref() != Some(key.kid()) => {
                        if published.as_deref() != Some(key.kid()) {
                            // A key the generator made: a first one, or the rotation asked for.
                            if rotate_now {
                                self.status.handled_rotate_signing_key = rotate;
                            }
                            let verb = if published.is_some() {
                                "Rotated the signing key"
                            } else {
                                "Generated a signing key"
                            };
                            self.event(
                                EventType::Normal,
                                "SigningKeyGenerated",
                                format!(
                                    "{verb}: kid {}, stored in Secret {secret_name}.",
                                    key.kid()
                                ),
                            )
                            .await;
                        }
                        key
                    }
                    stored => {
                        // Keys are made by the generator, one at a time; its write of the
                        // Secret brings this registration back. Ready does not wait for it,
                        // and the current key (if any) stays published meanwhile.
                        self.ctx.keygen.request(KeyRequest {
                            uid: self.owner.reference.uid.clone(),
                            secrets: self.secrets.clone(),
                            secret_name: secret_name.clone(),
                            owner: self.owner.clone(),
                        });
                        match stored {
                            Some(key) => key,
                            None => return Ok(None),
                        }
                    }
                }
            }
        };
        self.status.signing_keys = published_keys(
            &key.jwk(),
            &self.status.signing_keys,
            self.now,
            KEY_RETENTION,
        );
        self.status.jwks_url = self.ctx.settings.public_url.as_ref().map(|u| {
            format!(
                "{}/jwks/{}/{}",
                u.as_str().trim_end_matches('/'),
                self.namespace,
                self.name
            )
        });
        Ok(None)
    }

    fn signing_key_problem(&self, problem: String) -> Outcome {
        Outcome {
            next: Some(add(self.now, SIGNING_KEY_RETRY)),
            ..Outcome::failed(
                reason::INVALID_SIGNING_KEY,
                format!(
                    "{problem}. The signing key must be an RSA private key of 2048 bits or more in PEM; fix the Secret, or remove spec.signingKeySecretRef to let the operator generate one. Client tokens are still refreshed."
                ),
                None,
            )
        }
    }

    /// When the next replaced key leaves the JWKS.
    fn next_key_retirement(&self) -> Option<Timestamp> {
        self.status
            .signing_keys
            .iter()
            .filter_map(|k| k.retire_at.as_ref().map(|t| t.0))
            .min()
    }

    /// Reads the credentials Secret, adopting it if new to this object, or registers.
    async fn credentials(
        &mut self,
        base: &Url,
        provider_url: &str,
    ) -> Result<ControlFlow<Outcome, ClientCredentials>, Error> {
        let secret_name = self.obj.credentials_secret_name();
        let Some(secret) = self.secrets.get(&secret_name).await? else {
            return self.register(base, provider_url).await;
        };
        let parsed = text_value(&secret, KEY_CLIENT_ID)
            .and_then(|id| text_value(&secret, KEY_CERTIFICATE).map(|c| (id, c)));
        let (client_id, certificate) = match parsed {
            Ok(pair) => pair,
            Err(e) => {
                return Ok(ControlFlow::Break(Outcome::failed(
                    reason::INVALID_CREDENTIALS_SECRET,
                    format!(
                        "{e}. The credentials Secret needs the keys {KEY_CLIENT_ID} and {KEY_CERTIFICATE}; fix it, or delete it to let the operator register."
                    ),
                    None,
                )))
            }
        };
        if self.status.registration.is_none()
            || self.status.registration_attempt_started_at.is_some()
        {
            // A Secret we did not write (or whose registration status was lost) is adopted as is.
            let state = if self.owner.owns(&secret) {
                RegistrationState::Registered
            } else {
                RegistrationState::Adopted
            };
            self.status.registration = Some(state);
            self.status.registration_attempt_started_at = None;
            self.status.registered_at.get_or_insert(Time(self.now));
            self.status.provider_url = Some(provider_url.to_string());
            self.status.consecutive_failures = 0;
            self.status.last_failure = None;
            if state == RegistrationState::Adopted {
                self.event(
                    EventType::Normal,
                    "Adopted",
                    format!("Adopted existing credentials from Secret {secret_name} (client {client_id}); no registration call made."),
                )
                .await;
            }
        }
        Ok(ControlFlow::Continue(ClientCredentials {
            client_id,
            certificate: Sensitive::new(certificate),
        }))
    }

    /// Registers with the provider, persisting the attempt before the call and the result
    /// before anything else, so a crash never causes a second registration.
    async fn register(
        &mut self,
        base: &Url,
        provider_url: &str,
    ) -> Result<ControlFlow<Outcome, ClientCredentials>, Error> {
        let retry = self
            .obj
            .annotations()
            .get(ANNOTATION_RETRY_REGISTRATION)
            .map(String::as_str);
        let credentials_name = self.obj.credentials_secret_name();
        match registration_plan(&self.status, retry, self.now) {
            RegistrationPlan::Register => {}
            RegistrationPlan::WaitUntil(t) => {
                return Ok(ControlFlow::Break(Outcome { next: Some(t), event: None, ..self.unchanged_ready() }));
            }
            RegistrationPlan::Unconfirmed { started_at } => {
                return Ok(ControlFlow::Break(Outcome {
                    event: None,
                    ..Outcome::failed(reason::REGISTRATION_UNCONFIRMED, self.unconfirmed_message(started_at), None)
                }))
            }
            RegistrationPlan::CredentialsLost => {
                return Ok(ControlFlow::Break(Outcome::failed(
                    reason::CREDENTIALS_LOST,
                    format!(
                        "Secret {credentials_name} with the credentials of client {} is gone. Restore it (keys {KEY_CLIENT_ID} and {KEY_CERTIFICATE}); registering again would create a second registration at the provider, so the operator does that only after: kubectl annotate tpp {} {ANNOTATION_RETRY_REGISTRATION}=$(date +%s) --overwrite",
                        self.status.client_id.as_deref().unwrap_or("?"),
                        self.name
                    ),
                    None,
                )))
            }
        }

        let signature = match self.signature_certificate().await? {
            Ok(s) => s,
            Err(e) => {
                return Ok(ControlFlow::Break(self.failure(
                    reason::INVALID_SIGNATURE_CERTIFICATE,
                    e,
                    FailureKind::Transient,
                    None,
                )))
            }
        };

        // Persist the attempt first: if the process dies during the call, the next run knows
        // the outcome is unknown and will not register a second time on its own.
        self.status.registration_attempt_started_at = Some(Time(self.now));
        self.status.handled_retry_registration = retry
            .map(str::to_string)
            .or(self.status.handled_retry_registration.take());
        self.status.provider_url = Some(provider_url.to_string());
        self.persist().await?;

        let spec = &self.obj.spec;
        let request = RegistrationRequest {
            country_iso: spec.organisation.country_iso.clone(),
            address: spec.organisation.address.clone(),
            name: spec.organisation.name.clone(),
            email: spec.organisation.email.clone(),
            certificate_type: spec.certificate_type.as_str().to_string(),
            callback_url: spec.callback_url.clone(),
        };
        let response = match self.ctx.provider.register(base, &signature, &request).await {
            Ok(r) => r,
            Err(e) if e.outcome_unknown() => {
                self.status.last_failure = Some(e.to_string());
                let started = self.now;
                return Ok(ControlFlow::Break(Outcome::failed(
                    reason::REGISTRATION_UNCONFIRMED,
                    self.unconfirmed_message(started),
                    None,
                )));
            }
            Err(e) => {
                self.status.registration_attempt_started_at = None;
                let reason = match e.status() {
                    Some(401 | 403) => reason::INVALID_SIGNATURE_CERTIFICATE,
                    _ if e.is_transient() => reason::PROVIDER_UNAVAILABLE,
                    _ => reason::REGISTRATION_REJECTED,
                };
                let kind = if e.is_transient() {
                    FailureKind::Transient
                } else {
                    FailureKind::Permanent
                };
                let retry_after = e.retry_after();
                let message = registration_error_message(
                    &e,
                    &self.obj.spec.signature_certificate_secret_ref.name,
                );
                return Ok(ControlFlow::Break(self.failure(
                    reason,
                    message,
                    kind,
                    retry_after,
                )));
            }
        };

        let credentials = ClientCredentials {
            client_id: response.client_id.clone(),
            certificate: response.certificate.clone(),
        };
        self.write_credentials(&credentials_name, &credentials)
            .await?;
        self.status.registration = Some(RegistrationState::Registered);
        self.status.registration_attempt_started_at = None;
        self.status.registered_at = Some(Time(self.now));
        self.status.client_id = Some(credentials.client_id.clone());
        self.status.consecutive_failures = 0;
        self.status.next_refresh_at = None;
        self.status.last_failure = None;
        self.persist().await?;
        self.event(
            EventType::Normal,
            reason::REGISTERED,
            format!("Registered with {provider_url} as client {}; credentials stored in Secret {credentials_name}.", credentials.client_id),
        )
        .await;
        Ok(ControlFlow::Continue(credentials))
    }

    /// Stores fresh credentials; retried a few times because they exist nowhere else.
    async fn write_credentials(
        &self,
        name: &str,
        credentials: &ClientCredentials,
    ) -> Result<(), Error> {
        let data = BTreeMap::from([
            (KEY_CLIENT_ID.to_string(), credentials.client_id.clone()),
            (
                KEY_CERTIFICATE.to_string(),
                credentials.certificate.expose().to_string(),
            ),
        ]);
        let mut attempt = 0;
        loop {
            match self.secrets.apply(name, &self.owner, data.clone()).await {
                Ok(()) => return Ok(()),
                Err(e @ SecretError::NotOwned { .. }) => return Err(e.into()),
                Err(e) if attempt >= 4 => {
                    tracing::error!(namespace = %self.namespace, name = %self.name, error = %e, "could not store the credentials issued at registration");
                    return Err(e.into());
                }
                Err(e) => {
                    tracing::warn!(namespace = %self.namespace, name = %self.name, error = %e, "storing credentials failed; retrying");
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
            }
        }
    }

    /// Reads the signature certificate; the inner error is a message for the user.
    async fn signature_certificate(&self) -> Result<Result<Sensitive, String>, Error> {
        let reference = &self.obj.spec.signature_certificate_secret_ref;
        let hint = format!(
            "Create it with: kubectl -n {} create secret generic {} --from-literal={}=<your signature certificate>",
            self.namespace, reference.name, reference.key
        );
        let Some(secret) = self.secrets.get(&reference.name).await? else {
            return Ok(Err(format!(
                "Secret {} (signature certificate) does not exist. {hint}",
                reference.name
            )));
        };
        Ok(text_value(&secret, &reference.key)
            .map(Sensitive::new)
            .map_err(|e| format!("{e}; it must hold the signature certificate. {hint}")))
    }

    /// Decides about the token and refreshes it when due.
    async fn token(
        &mut self,
        base: &Url,
        credentials: &ClientCredentials,
    ) -> Result<Outcome, Error> {
        let token_name = self.obj.token_secret_name();
        let existing = self.secrets.get(&token_name).await?;
        if let Some(secret) = &existing {
            if !self.owner.owns(secret) {
                let e = SecretError::NotOwned { name: token_name };
                return Ok(self.failure(
                    reason::SECRET_CONFLICT,
                    e.to_string(),
                    FailureKind::Permanent,
                    None,
                ));
            }
        }
        let force = self
            .obj
            .annotations()
            .get(ANNOTATION_FORCE_REFRESH)
            .cloned();
        let plan = token_plan(
            &self.status,
            &credentials.client_id,
            existing.is_some(),
            force.as_deref(),
            self.now,
        );
        self.status.client_id = Some(credentials.client_id.clone());
        match plan {
            TokenPlan::WaitUntil(t) => Ok(self.waiting(t, existing.is_some())),
            TokenPlan::Refresh(why) => {
                if why == RefreshReason::Forced {
                    self.status.handled_force_refresh = force;
                }
                self.refresh_token(base, credentials, &token_name, why, existing.is_some())
                    .await
            }
        }
    }

    /// Gets a new client token and writes it to the token Secret; on failure the old token
    /// stays in place and the next attempt backs off.
    async fn refresh_token(
        &mut self,
        base: &Url,
        credentials: &ClientCredentials,
        token_name: &str,
        why: RefreshReason,
        had_token: bool,
    ) -> Result<Outcome, Error> {
        tracing::info!(namespace = %self.namespace, name = %self.name, reason = ?why, "refreshing client token");
        let response = match self
            .ctx
            .provider
            .client_token(base, credentials, &self.obj.spec.scope)
            .await
        {
            Ok(r) => r,
            Err(e) => return Ok(self.token_failure(e, credentials, had_token)),
        };
        let issued = self.now;
        let expiry =
            token::effective_expiry(issued, response.expires_in, response.access_token.expose())
                .unwrap_or_else(|| issued.saturating_add(FALLBACK_LIFETIME).unwrap_or(issued));
        let next = refresh_at(
            issued,
            expiry,
            &self.obj.spec.refresh,
            rand::random_range(-1.0..=1.0),
        );
        let data = BTreeMap::from([
            (
                "access_token".to_string(),
                response.access_token.expose().to_string(),
            ),
            ("token_type".to_string(), response.token_type.clone()),
            ("expires_at".to_string(), rfc3339(expiry)),
            (
                "authorization".to_string(),
                format!("Bearer {}", response.access_token.expose()),
            ),
        ]);
        match self.secrets.apply(token_name, &self.owner, data).await {
            Ok(()) => {}
            Err(e @ SecretError::NotOwned { .. }) => {
                return Ok(self.failure(
                    reason::SECRET_CONFLICT,
                    e.to_string(),
                    FailureKind::Permanent,
                    None,
                ))
            }
            Err(e) => return Err(e.into()),
        }
        self.status.token_issued_at = Some(Time(issued));
        self.status.token_expires_at = Some(Time(expiry));
        self.status.next_refresh_at = Some(Time(next));
        self.status.consecutive_failures = 0;
        self.status.last_failure = None;
        self.ctx
            .metrics
            .token_refreshes
            .get_or_create(&self.labels())
            .inc();
        Ok(Outcome {
            ready: true,
            reason: reason::TOKEN_REFRESHED,
            message: format!(
                "Client token in Secret {token_name} is valid until {}; next refresh at {}.",
                rfc3339(expiry),
                rfc3339(next)
            ),
            next: Some(next),
            event: Some(EventType::Normal),
        })
    }

    fn token_failure(
        &mut self,
        e: ProviderError,
        credentials: &ClientCredentials,
        had_token: bool,
    ) -> Outcome {
        let valid_until = self
            .status
            .token_expires_at
            .as_ref()
            .map(|t| t.0)
            .filter(|t| had_token && *t > self.now);
        let kind = if e.is_transient() {
            FailureKind::Transient
        } else {
            FailureKind::Permanent
        };
        let (reason, advice) = match (kind, e.status()) {
            (FailureKind::Permanent, Some(401 | 403)) => (
                reason::INVALID_CLIENT_CREDENTIALS,
                format!(
                    "The provider rejected client {} at the token endpoint; check Secret {}.",
                    credentials.client_id,
                    self.obj.credentials_secret_name()
                ),
            ),
            (FailureKind::Permanent, _) => (
                reason::TOKEN_REQUEST_REJECTED,
                format!(
                    "The provider refused the token request; check spec.scope ({:?}).",
                    self.obj.spec.scope
                ),
            ),
            (FailureKind::Transient, _) if valid_until.is_some() => {
                (reason::REFRESH_FAILING, String::new())
            }
            (FailureKind::Transient, _) => (reason::PROVIDER_UNAVAILABLE, String::new()),
        };
        let mut outcome = self.failure(
            reason,
            format!("Token request failed: {e}. {advice}"),
            kind,
            e.retry_after(),
        );
        if let Some(until) = valid_until {
            outcome.message.push_str(&format!(
                " The current token stays valid until {}.",
                rfc3339(until)
            ));
            // Wake up at expiry to report the token as expired if the retry has not fixed it.
            outcome.next = outcome.next.map(|n| n.min(until));
            outcome.ready = reason == reason::REFRESH_FAILING;
        }
        outcome
    }

    /// Records a failure: backoff, status, and a Ready=False (or RefreshFailing) outcome.
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
        self.status.next_refresh_at = Some(Time(next));
        self.status.last_failure = Some(message.clone());
        let message = format!(
            "{message} Attempt {} failed; next attempt at {}.",
            self.status.consecutive_failures,
            rfc3339(next)
        );
        Outcome::failed(reason, message, Some(next))
    }

    /// Nothing to call now: keep the Ready condition unless the token has expired meanwhile.
    fn waiting(&self, until: Timestamp, token_exists: bool) -> Outcome {
        let expiry = self.status.token_expires_at.as_ref().map(|t| t.0);
        match expiry {
            Some(exp) if token_exists && exp <= self.now => Outcome {
                ready: false,
                reason: reason::TOKEN_EXPIRED,
                message: format!(
                    "The client token expired at {} and could not be refreshed yet{}; next attempt at {}.",
                    rfc3339(exp),
                    self.status.last_failure.as_deref().map(|f| format!(" (last failure: {f})")).unwrap_or_default(),
                    rfc3339(until)
                ),
                next: Some(until),
                event: Some(EventType::Warning),
            },
            Some(exp) if token_exists => Outcome { next: Some(until.min(exp.max(self.now))), event: None, ..self.unchanged_ready() },
            _ => Outcome { next: Some(until), event: None, ..self.unchanged_ready() },
        }
    }

    /// The current Ready condition as an outcome (used when nothing changes).
    fn unchanged_ready(&self) -> Outcome {
        unchanged(&self.written.conditions, None)
    }

    fn unconfirmed_message(&self, started: Timestamp) -> String {
        format!(
            "A registration call started at {} got no usable answer{}, so the provider may have registered this organisation. If it did, create Secret {} with keys {KEY_CLIENT_ID} and {KEY_CERTIFICATE}; otherwise allow one more attempt with: kubectl annotate tpp {} {ANNOTATION_RETRY_REGISTRATION}=$(date +%s) --overwrite",
            rfc3339(started),
            self.status.last_failure.as_deref().map(|f| format!(" ({f})")).unwrap_or_default(),
            self.obj.credentials_secret_name(),
            self.name
        )
    }

    /// Writes the Ready condition and the status (if changed), emits the event, sets metrics.
    async fn finish(&mut self, outcome: Outcome) -> Result<Action, Error> {
        let changed = set_ready(
            &mut self.status.conditions,
            &self.written.conditions,
            &outcome,
            self.obj.metadata.generation,
            self.now,
        );
        self.status.observed_generation = self.obj.metadata.generation;
        self.persist().await?;

        if let Some(kind) = outcome.event {
            // A routine refresh is not news (metrics count them; at scale an event per refresh
            // would be most of the operator's API-server writes), nor is a repeated failure.
            let routine = kind == EventType::Normal && outcome.reason == reason::TOKEN_REFRESHED;
            if changed || !(routine || outcome.reason == reason::REFRESH_FAILING) {
                self.event(kind, outcome.reason, outcome.message.clone())
                    .await;
            }
        }
        self.update_metrics(outcome.ready);
        Ok(Action::requeue(wait_until(
            outcome.next,
            self.ctx.clock.now(),
            MAX_REQUEUE,
        )))
    }

    /// Writes the status with server-side apply, only when it differs from what is stored.
    async fn persist(&mut self) -> Result<(), Error> {
        let api: Api<TppRegistration> = Api::namespaced(self.ctx.client.clone(), &self.namespace);
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

    fn update_metrics(&self, ready: bool) {
        let labels = self.labels();
        let m = &self.ctx.metrics;
        m.registration_ready
            .get_or_create(&labels)
            .set(i64::from(ready));
        m.token_refresh_failures
            .get_or_create(&labels)
            .set(i64::from(self.status.consecutive_failures));
        if let Some(t) = &self.status.token_expires_at {
            m.token_expiry
                .get_or_create(&labels)
                .set(t.0.as_millisecond() as f64 / 1000.0);
        }
        if let Some(t) = &self.status.next_refresh_at {
            m.token_next_refresh
                .get_or_create(&labels)
                .set(t.0.as_millisecond() as f64 / 1000.0);
        }
    }
}

/// Cleans up on deletion: deletes or releases the Secrets the operator wrote.
async fn cleanup(obj: &TppRegistration, ctx: &Context) -> Result<Action, Error> {
    let run = Run::new(obj, ctx)?;
    let names = [
        obj.credentials_secret_name(),
        obj.token_secret_name(),
        obj.signing_key_secret_name(),
    ];
    let mut touched = Vec::new();
    for name in names {
        let done = match obj.spec.deletion_policy {
            crate::api::DeletionPolicy::Delete => {
                run.secrets.delete_owned(&name, &run.owner).await?
            }
            crate::api::DeletionPolicy::Retain => run.secrets.release(&name, &run.owner).await?,
        };
        if done {
            touched.push(name);
        }
    }
    ctx.metrics.forget_registration(&run.labels());
    if !touched.is_empty() {
        let verb = match obj.spec.deletion_policy {
            crate::api::DeletionPolicy::Delete => "Deleted",
            crate::api::DeletionPolicy::Retain => "Retained",
        };
        run.event(
            EventType::Normal,
            verb,
            format!("{verb} Secrets {} on deletion.", touched.join(", ")),
        )
        .await;
    }
    Ok(Action::await_change())
}

fn registration_error_message(e: &ProviderError, signature_secret: &str) -> String {
    match e.status() {
        Some(401 | 403) => format!("Registration refused: {e}. Check the signature certificate in Secret {signature_secret}."),
        _ if e.is_transient() => format!("Registration failed: {e}."),
        _ => format!(
            "Registration refused: {e}. Check spec.organisation and spec.callbackUrl; as they cannot change, create a corrected TppRegistration."
        ),
    }
}

/// The JWKS of a registration after a reconcile: the current key first, replaced keys kept until
/// their retirement time (set when they are first seen replaced), expired ones dropped.
pub fn published_keys(
    current: &Jwk,
    previous: &[PublishedKey],
    now: Timestamp,
    retention: Duration,
) -> Vec<PublishedKey> {
    let mut keys = vec![PublishedKey {
        kid: current.kid.clone(),
        modulus: current.n.clone(),
        exponent: current.e.clone(),
        retire_at: None,
    }];
    for key in previous.iter().filter(|k| k.kid != current.kid) {
        let retire_at = key.retire_at.clone().unwrap_or(Time(add(now, retention)));
        if retire_at.0 > now {
            keys.push(PublishedKey {
                retire_at: Some(retire_at),
                ..key.clone()
            });
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwk(kid: &str) -> Jwk {
        Jwk {
            kty: "RSA".into(),
            kid: kid.into(),
            use_: "sig".into(),
            alg: "PS256".into(),
            n: "n".into(),
            e: "AQAB".into(),
        }
    }

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn replaced_keys_stay_published_until_request_objects_expire() {
        let retention = Duration::from_secs(900);
        let first = published_keys(&jwk("a"), &[], ts(0), retention);
        assert_eq!(
            first.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
            ["a"]
        );
        assert_eq!(first[0].retire_at, None);
        // Rotation at t=100: "a" stays until 100 + 900.
        let rotated = published_keys(&jwk("b"), &first, ts(100), retention);
        assert_eq!(
            rotated.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
            ["b", "a"]
        );
        assert_eq!(rotated[1].retire_at, Some(Time(ts(1000))));
        // Later reconciles keep the first retirement time, then drop the key.
        let later = published_keys(&jwk("b"), &rotated, ts(500), retention);
        assert_eq!(later[1].retire_at, Some(Time(ts(1000))));
        let after = published_keys(&jwk("b"), &later, ts(1000), retention);
        assert_eq!(
            after.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
    }
}
