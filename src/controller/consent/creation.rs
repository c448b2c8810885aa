//! The creation phase: create the consent at the provider exactly once with the registration's
//! client token, and record what the provider says about it.

use super::plan::{creation_plan, CreationPlan};
use super::registration_view::{not_ready, RegistrationView};
use super::ConsentRun;
use crate::api::contract::rfc3339;
use crate::api::{
    reason, AccountConsentSpec, ConsentStatus, ANNOTATION_FORCE_REFRESH, ANNOTATION_RETRY_CREATION,
};
use crate::controller::error::{Halt, Step};
use crate::controller::report::Outcome;
use crate::controller::schedule::FailureKind;
use crate::provider::{ConsentRequest, ConsentRequestData, ConsentResponse, ProviderError};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;

impl ConsentRun<'_> {
    /// Creates the consent, persisting the attempt before the call and the ConsentId before
    /// anything else, so a crash never creates a second consent. Returns once it exists.
    pub(super) async fn create(&mut self, registration: &RegistrationView) -> Step<()> {
        let retry = self.annotation(ANNOTATION_RETRY_CREATION);
        self.may_create(registration, retry)?;
        let Some(token) = registration.client_token(self.ctx).await? else {
            return Err(not_ready(
                format!(
                    "TppRegistration {} has no client token yet.",
                    registration.name()
                ),
                self.now,
            )
            .into());
        };
        let request = consent_request(&self.obj.spec);
        if let Some(wait) = self.ctx.provider.throttled(registration.target()) {
            // Held back before the attempt is recorded: nothing is sent, nothing to confirm.
            return Err(self.deferred(wait).into());
        }

        // Persist the attempt first: if the process dies during the call, the next run knows
        // a consent may exist and does not create a second one on its own.
        self.status.creation_attempt_started_at = Some(Time(self.now));
        self.status.handled_retry_creation = retry
            .map(str::to_string)
            .or(self.status.handled_retry_creation.take());
        self.persist().await?;

        let result = self
            .ctx
            .provider
            .create_consent(registration.target(), &token, &request)
            .await;
        // A refresh was asked for before this call: this was the one retry.
        let retried = self
            .status
            .client_token_refresh_requested_at
            .take()
            .is_some();
        match result {
            Ok(response) => self.created(&response, registration).await,
            Err(e) => Err(self.creation_failed(e, retried, registration).await),
        }
    }

    /// Stops the reconcile unless the plan says to create now.
    fn may_create(&mut self, registration: &RegistrationView, retry: Option<&str>) -> Step<()> {
        match creation_plan(
            &self.status,
            retry,
            registration.token_issued_at(),
            self.now,
        ) {
            CreationPlan::Create => Ok(()),
            CreationPlan::WaitUntil(t) => Err(self.unchanged(Some(t)).into()),
            CreationPlan::Unconfirmed { started_at } => Err(Outcome::failed(
                reason::CONSENT_CREATION_UNCONFIRMED,
                self.unconfirmed_message(started_at),
                None,
            )
            .quiet()
            .into()),
            CreationPlan::ClientTokenNotRefreshed => {
                self.status.client_token_refresh_requested_at = None;
                Err(self
                    .client_token_rejected("the registration brought no fresh client token in time")
                    .into())
            }
        }
    }

    /// Records the consent the provider created.
    async fn created(
        &mut self,
        response: &ConsentResponse,
        registration: &RegistrationView,
    ) -> Step<()> {
        self.status.creation_attempt_started_at = None;
        self.record_consent(response);
        self.succeeded();
        self.status.next_check_at = None;
        self.persist().await?;
        self.schedule_poll(0, 0);
        self.event(
            EventType::Normal,
            "Created",
            "CreateConsent",
            format!(
                "Created consent {} at {} (status {}).",
                response.data.consent_id,
                registration.provider_text(),
                response.data.status
            ),
        )
        .await;
        Ok(())
    }

    /// What a failed creation call leads to.
    async fn creation_failed(
        &mut self,
        e: ProviderError,
        retried: bool,
        registration: &RegistrationView,
    ) -> Halt {
        if let (true, Some(wait)) = (e.is_throttled(), e.retry_after()) {
            // Not sent: the attempt never happened, and a refreshed client token is still to
            // be tried.
            self.status.creation_attempt_started_at = None;
            self.status.client_token_refresh_requested_at =
                self.written.client_token_refresh_requested_at.clone();
            return self.deferred(wait).into();
        }
        if e.outcome_unknown() {
            self.status.last_failure = Some(e.to_string());
            let started = self.now;
            return Outcome::failed(
                reason::CONSENT_CREATION_UNCONFIRMED,
                self.unconfirmed_message(started),
                None,
            )
            .into();
        }
        self.status.creation_attempt_started_at = None;
        if e.status() == Some(401) && !retried {
            // The client token may have been revoked early: one refresh, one retry. The
            // registration's watch brings this consent back once its token changed.
            self.status.client_token_refresh_requested_at = Some(Time(self.now));
            if let Err(e) = self.persist().await {
                return e.into();
            }
            if let Err(e) = self.request_client_token_refresh(registration).await {
                return e.into();
            }
            return not_ready(
                format!(
                    "The provider refused the client token of TppRegistration {}; waiting for it to fetch a fresh one.",
                    registration.name()
                ),
                self.now,
            )
            .into();
        }
        self.creation_failure(&e).into()
    }

    fn creation_failure(&mut self, e: &ProviderError) -> Outcome {
        let (reason, advice) = match e.status() {
            Some(401 | 403) => (
                reason::CLIENT_TOKEN_REJECTED,
                "The provider refused the registration's client token even after a refresh; check the TppRegistration.",
            ),
            _ if e.is_transient() => (reason::PROVIDER_UNAVAILABLE, ""),
            _ => (
                reason::CONSENT_REJECTED_BY_PROVIDER,
                "Check spec.permissions and the dates; as they cannot change, create a corrected AccountConsent.",
            ),
        };
        self.failure(
            reason,
            format!("Creating the consent failed: {e}. {advice}"),
            FailureKind::of(e),
            e.retry_after(),
        )
    }

    fn client_token_rejected(&mut self, why: &str) -> Outcome {
        self.failure(
            reason::CLIENT_TOKEN_REJECTED,
            format!("Creating the consent failed: the provider refused the registration's client token and {why}. Check the TppRegistration."),
            FailureKind::Permanent,
            None,
        )
    }

    /// Asks the registration's reconciler for a new client token (its force-refresh
    /// annotation); the registration's watch brings this consent back when it has one.
    async fn request_client_token_refresh(
        &self,
        registration: &RegistrationView,
    ) -> Result<(), kube::Error> {
        let api: Api<crate::api::TppRegistration> =
            Api::namespaced(self.ctx.client.clone(), &self.namespace);
        let value = format!("consent/{}/{}", self.name, self.now.as_millisecond());
        let patch =
            serde_json::json!({"metadata": {"annotations": {ANNOTATION_FORCE_REFRESH: value}}});
        api.patch(
            &registration.name(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
        .map(|_| ())
    }

    /// Copies what the provider says about the consent into status; true when its status
    /// changed.
    pub(super) fn record_consent(&mut self, response: &ConsentResponse) -> bool {
        let data = &response.data;
        let status = ConsentStatus::parse(&data.status);
        let changed = self.status.consent_status.as_ref() != Some(&status);
        self.status.consent_id = Some(data.consent_id.clone());
        if changed {
            self.status.consent_status = Some(status);
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
}

/// The provider's consent request for a spec.
fn consent_request(spec: &AccountConsentSpec) -> ConsentRequest {
    let time = |t: &Option<Time>| t.as_ref().map(|t| rfc3339(t.0));
    ConsentRequest {
        data: ConsentRequestData {
            permissions: spec.permissions.iter().map(|p| format!("{p:?}")).collect(),
            expiration_date_time: time(&spec.expiration_date_time),
            transaction_from_date_time: time(&spec.transaction_from_date_time),
            transaction_to_date_time: time(&spec.transaction_to_date_time),
        },
        risk: serde_json::json!({}),
    }
}
