//! The registration phase: adopt an existing credentials Secret, or register with the provider
//! exactly once and store what it issued before anything else.

use super::plan::{
    registration_failure_message, registration_failure_reason, registration_plan, RegistrationPlan,
};
use super::RegistrationRun;
use crate::api::contract::{credentials, rfc3339};
use crate::api::{
    reason, ProviderProfile, RegistrationState, TppRegistration, ANNOTATION_RETRY_REGISTRATION,
};
use crate::controller::error::{Halt, Step};
use crate::controller::inputs::{credentials_in, RegistrationInputs};
use crate::controller::providers::Resolved;
use crate::controller::report::Outcome;
use crate::controller::schedule::FailureKind;
use crate::provider::{ClientCredentials, ProviderError, RegistrationRequest, Sensitive};
use crate::secrets::{managed_by_operator, text_value, SecretError};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::EventType;
use std::collections::BTreeMap;

impl RegistrationRun<'_> {
    /// Reads the credentials Secret, adopting it if new to this object, or registers.
    pub(super) async fn credentials(&mut self, provider: &Resolved) -> Step<ClientCredentials> {
        let secret_name = self.obj.credentials_secret_name();
        let inputs = RegistrationInputs::of(self.ctx, self.obj);
        let Some(secret) = inputs.credentials_secret().await? else {
            return self.register(provider).await;
        };
        if self.owner.owned_by_another(&secret) {
            return Err(Outcome::failed(
                reason::SECRET_NOT_ALLOWED,
                format!(
                    "Secret {secret_name} holds the credentials of another object of tpp-operator; a TppRegistration adopts only credentials Secrets you created or its own. Set spec.credentialsSecretName to another name."
                ),
                None,
            )
            .into());
        }
        let issued = credentials_in(&secret).map_err(|e| {
                Outcome::failed(
                    reason::INVALID_CREDENTIALS_SECRET,
                    format!(
                        "{e}. The credentials Secret needs the keys {} and {}; fix it, or delete it to let the operator register.",
                        credentials::CLIENT_ID,
                        credentials::CERTIFICATE
                    ),
                None,
            )
        })?;
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
            self.status.provider_url = Some(provider.target.url.to_string());
            self.succeeded();
            if state == RegistrationState::Adopted {
                self.event(
                    EventType::Normal,
                    "Adopted",
                    "Adopt",
                    format!("Adopted existing credentials from Secret {secret_name} (client {}); no registration call made.", issued.client_id),
                )
                .await;
            }
        }
        Ok(issued)
    }

    /// Registers with the provider, persisting the attempt before the call and the result
    /// before anything else, so a crash never causes a second registration.
    async fn register(&mut self, provider: &Resolved) -> Step<ClientCredentials> {
        if provider.target.profile != ProviderProfile::Leatherback {
            // A standard bank registers a client through dynamic client registration with a
            // software statement, which this operator does not make yet.
            return Err(Outcome::failed(
                reason::REGISTRATION_NOT_SUPPORTED,
                format!(
                    "ClusterProvider {} speaks the {} profile, whose clients are registered through dynamic client registration with a software statement. Register the client with the bank, then create Secret {} with keys {} (the client id) and {} (the client secret) for this TppRegistration to adopt.",
                    provider.name,
                    provider.target.profile.as_str(),
                    self.obj.credentials_secret_name(),
                    credentials::CLIENT_ID,
                    credentials::CERTIFICATE
                ),
                None,
            )
            .into());
        }
        let retry = self.annotation(ANNOTATION_RETRY_REGISTRATION);
        self.may_register(retry)?;
        let signature = self.signature_certificate().await?;
        if let Some(wait) = self.ctx.provider.throttled(&provider.target) {
            // Held back before the attempt is recorded: nothing is sent, nothing to confirm.
            return Err(self.deferred(wait).into());
        }

        // Persist the attempt first: if the process dies during the call, the next run knows
        // the outcome is unknown and will not register a second time on its own.
        self.status.registration_attempt_started_at = Some(Time(self.now));
        self.status.handled_retry_registration = retry
            .map(str::to_string)
            .or(self.status.handled_retry_registration.take());
        self.status.provider_url = Some(provider.target.url.to_string());
        self.persist().await?;

        let request = registration_request(self.obj);
        let response = match self
            .ctx
            .provider
            .register(&provider.target, &signature, &request)
            .await
        {
            Ok(r) => r,
            Err(e) => return Err(self.registration_failed(e).into()),
        };
        let credentials = ClientCredentials {
            client_id: response.client_id.clone(),
            certificate: response.certificate.clone(),
        };
        let credentials_name = self.obj.credentials_secret_name();
        self.write_credentials(&credentials_name, &credentials)
            .await?;
        self.status.registration = Some(RegistrationState::Registered);
        self.status.registration_attempt_started_at = None;
        self.status.registered_at = Some(Time(self.now));
        self.status.client_id = Some(credentials.client_id.clone());
        self.succeeded();
        self.status.next_refresh_at = None;
        self.persist().await?;
        self.event(
            EventType::Normal,
            reason::REGISTERED,
            "Register",
            format!(
                "Registered with {} ({}) as client {}; credentials stored in Secret {credentials_name}.",
                provider.name, provider.target.url, credentials.client_id
            ),
        )
        .await;
        Ok(credentials)
    }

    /// Stops the reconcile unless the plan says to register now.
    fn may_register(&self, retry: Option<&str>) -> Step<()> {
        match registration_plan(&self.status, retry, self.now) {
            RegistrationPlan::Register => Ok(()),
            RegistrationPlan::WaitUntil(t) => Err(self.unchanged(Some(t)).into()),
            RegistrationPlan::Unconfirmed { started_at } => Err(Outcome::failed(
                reason::REGISTRATION_UNCONFIRMED,
                self.unconfirmed_message(started_at),
                None,
            )
            .quiet()
            .into()),
            RegistrationPlan::CredentialsLost => Err(Outcome::failed(
                reason::CREDENTIALS_LOST,
                format!(
                    "Secret {} with the credentials of client {} is gone. Restore it (keys {} and {}); registering again would create a second registration at the provider, so the operator does that only after: kubectl annotate tpp {} {ANNOTATION_RETRY_REGISTRATION}=$(date +%s) --overwrite",
                    self.obj.credentials_secret_name(),
                    self.status.client_id.as_deref().unwrap_or("?"),
                    credentials::CLIENT_ID,
                    credentials::CERTIFICATE,
                    self.name
                ),
                None,
            )
            .into()),
        }
    }

    /// What a failed registration call leads to.
    fn registration_failed(&mut self, e: ProviderError) -> Outcome {
        if let (true, Some(wait)) = (e.is_throttled(), e.retry_after()) {
            // Not sent: the attempt never happened.
            self.status.registration_attempt_started_at = None;
            return self.deferred(wait);
        }
        if e.outcome_unknown() {
            self.status.last_failure = Some(e.to_string());
            let started = self.now;
            return Outcome::failed(
                reason::REGISTRATION_UNCONFIRMED,
                self.unconfirmed_message(started),
                None,
            );
        }
        self.status.registration_attempt_started_at = None;
        let certificate_secret = self
            .obj
            .spec
            .signature_certificate_secret_ref
            .as_ref()
            .map(|r| r.name.as_str())
            .unwrap_or_default();
        let message = registration_failure_message(&e, certificate_secret);
        self.failure(
            registration_failure_reason(&e),
            message,
            FailureKind::of(&e),
            e.retry_after(),
        )
    }

    /// Stores fresh credentials; retried a few times (0.4 s doubling) because they exist
    /// nowhere else. A Secret of that name owned by someone else is not retried.
    async fn write_credentials(
        &self,
        name: &str,
        issued: &ClientCredentials,
    ) -> Result<(), SecretError> {
        let data = BTreeMap::from([
            (credentials::CLIENT_ID.to_string(), issued.client_id.clone()),
            (
                credentials::CERTIFICATE.to_string(),
                issued.certificate.expose().to_string(),
            ),
        ]);
        let version = self
            .secrets
            .apply_issued(name, &self.owner, data)
            .await
            .inspect_err(|e| {
                tracing::error!(error = %e, "could not store the credentials issued at registration")
            })?;
        self.wrote_secret(name, version);
        Ok(())
    }

    /// Reads the signature certificate; a missing or unusable one stops the reconcile with a
    /// failure that says how to provide it.
    async fn signature_certificate(&mut self) -> Step<Sensitive> {
        let Some(reference) = self.obj.spec.signature_certificate_secret_ref.as_ref() else {
            let message = format!(
                "spec.signatureCertificateSecretRef is needed to register: name the Secret key holding your signature certificate, or create Secret {} with keys {} and {} for this TppRegistration to adopt.",
                self.obj.credentials_secret_name(),
                credentials::CLIENT_ID,
                credentials::CERTIFICATE
            );
            return Err(Halt::Report(self.failure(
                reason::INVALID_SIGNATURE_CERTIFICATE,
                message,
                FailureKind::Permanent,
                None,
            )));
        };
        let hint = format!(
            "Create it with: kubectl -n {} create secret generic {} --from-literal={}=<your signature certificate>",
            self.namespace, reference.name, reference.key
        );
        let problem = match self.secrets.get(&reference.name).await? {
            None => (
                reason::INVALID_SIGNATURE_CERTIFICATE,
                format!(
                    "Secret {} (signature certificate) does not exist. {hint}",
                    reference.name
                ),
            ),
            // A Secret the operator wrote holds another object's credentials, token or key:
            // none of them may leave as this registration's signature certificate.
            Some(secret) if managed_by_operator(&secret) => (
                reason::SECRET_NOT_ALLOWED,
                format!(
                    "Secret {} was written by tpp-operator for another object; the signature certificate must be a Secret of your own. {hint}",
                    reference.name
                ),
            ),
            Some(secret) => match text_value(&secret, &reference.key) {
                Ok(value) => return Ok(Sensitive::new(value)),
                Err(e) => (
                    reason::INVALID_SIGNATURE_CERTIFICATE,
                    format!("{e}; it must hold the signature certificate. {hint}"),
                ),
            },
        };
        let (reason, message) = problem;
        Err(Halt::Report(self.failure(
            reason,
            message,
            FailureKind::Transient,
            None,
        )))
    }

    pub(super) fn unconfirmed_message(&self, started: Timestamp) -> String {
        format!(
            "A registration call started at {} got no usable answer{}, so the provider may have registered this organisation. If it did, create Secret {} with keys {} and {}; otherwise allow one more attempt with: kubectl annotate tpp {} {ANNOTATION_RETRY_REGISTRATION}=$(date +%s) --overwrite",
            rfc3339(started),
            self.status.last_failure.as_deref().map(|f| format!(" ({f})")).unwrap_or_default(),
            self.obj.credentials_secret_name(),
            credentials::CLIENT_ID,
            credentials::CERTIFICATE,
            self.name
        )
    }
}

/// The provider's registration request for a TppRegistration.
fn registration_request(obj: &TppRegistration) -> RegistrationRequest {
    let organisation = &obj.spec.organisation;
    RegistrationRequest {
        country_iso: organisation.country_iso.clone(),
        address: organisation.address.clone(),
        name: organisation.name.clone(),
        email: organisation.email.clone(),
        certificate_type: obj.spec.certificate_type.as_str().to_string(),
        callback_url: obj.spec.callback_url.clone(),
    }
}
