//! The token phase: decide whether the client token is due, refresh it (`refresh_token`), and
//! keep the old token in place when the provider fails.

use super::plan::{classify_token_failure, token_plan, RefreshReason, TokenAdvice, TokenPlan};
use super::schedule::conflict_retry_delay;
use super::RegistrationRun;
use crate::api::contract::{rfc3339, TokenSecret};
use crate::api::{reason, ANNOTATION_FORCE_REFRESH};
use crate::controller::error::Step;
use crate::controller::report::Outcome;
use crate::controller::schedule::FailureKind;
use crate::controller::token_schedule::{refresh_at, token_retry_delay};
use crate::provider::{token, ClientCredentials, ProviderError, Target};
use crate::secrets::SecretError;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::EventType;
use std::time::Duration;

impl RegistrationRun<'_> {
    /// Decides about the token and refreshes it when due.
    pub(super) async fn token(
        &mut self,
        target: &Target,
        credentials: &ClientCredentials,
    ) -> Step<Outcome> {
        let token_name = self.obj.token_secret_name();
        let existing = self.secrets.get(&token_name).await?;
        let conflict = existing.as_ref().is_some_and(|s| !self.owner.owns(s));
        let force = self.annotation(ANNOTATION_FORCE_REFRESH);
        let owned = existing.is_some() && !conflict;
        let plan = token_plan(&self.status, &credentials.client_id, owned, force, self.now);
        self.status.client_id = Some(credentials.client_id.clone());
        match plan {
            // Also holds after a conflict: it is looked at again when its backoff ends, so a
            // status write (which wakes this object) never counts as another failure.
            TokenPlan::WaitUntil(t) => Ok(self.waiting(t, owned)),
            TokenPlan::Refresh(_) if conflict => Ok(self.conflict(&token_name)),
            TokenPlan::Refresh(why) => {
                if let Some(wait) = self.ctx.provider.throttled(target) {
                    // Held back, not sent: a forced refresh stays asked for.
                    return Ok(self.deferred(wait));
                }
                if why == RefreshReason::Forced {
                    self.status.handled_force_refresh = force.map(str::to_string);
                }
                self.refresh_token(target, credentials, existing.as_ref(), why)
                    .await
            }
        }
    }

    /// The token Secret's name is taken by a Secret this registration does not own: nothing
    /// is overwritten, and it is looked at again soon (the user may rename or delete it; that
    /// Secret is not watched, as the operator watches only its own).
    fn conflict(&mut self, token_name: &str) -> Outcome {
        let e = SecretError::NotOwned {
            name: token_name.to_string(),
        };
        self.failure_after(reason::SECRET_CONFLICT, e.to_string(), conflict_retry_delay)
    }

    /// Gets a new client token and writes it to the token Secret; on failure the old token
    /// stays in place and the next attempt backs off.
    async fn refresh_token(
        &mut self,
        target: &Target,
        credentials: &ClientCredentials,
        existing: Option<&Secret>,
        why: RefreshReason,
    ) -> Step<Outcome> {
        let token_name = &self.obj.token_secret_name();
        let had_token = existing.is_some();
        tracing::info!(reason = ?why, "refreshing client token");
        let response = match self
            .ctx
            .provider
            .client_token(target, credentials, &self.obj.spec.scope)
            .await
        {
            Ok(r) => r,
            Err(e) => return Ok(self.token_failure(e, credentials, had_token)),
        };
        let issued = self.now;
        let expiry = token::expiry(
            target.lifetime,
            issued,
            response.expires_in,
            response.access_token.expose(),
        );
        if expiry <= self.ctx.clock.now() {
            // Writing it would hand apps a dead token and schedule an immediate refresh: a
            // loop. The old token stays; the request is retried with backoff.
            let had = self.status.token_expires_at.clone();
            let mut outcome = self.failure(
                reason::TOKEN_EXPIRED_ON_ARRIVAL,
                format!(
                    "The provider issued a token that had already expired (expires_in {:?}, expiry {}); check the clocks of this cluster and of the provider.",
                    response.expires_in,
                    rfc3339(expiry)
                ),
                FailureKind::Transient,
                None,
            );
            outcome.ready = had_token && had.is_some_and(|t| t.0 > self.now);
            return Ok(outcome);
        }
        let next = refresh_at(
            issued,
            expiry,
            &self.obj.spec.refresh,
            rand::random_range(-1.0..=1.0),
        );
        let data = TokenSecret {
            access_token: response.access_token.expose(),
            expires_at: expiry,
            consent_id: None,
        }
        .data();
        match self
            .secrets
            .apply_over(existing, token_name, &self.owner, data)
            .await
        {
            Ok(version) => self.wrote_secret(token_name, version),
            Err(SecretError::NotOwned { .. }) => return Ok(self.conflict(token_name)),
            Err(e) => return Err(e.into()),
        }
        self.status.token_issued_at = Some(Time(issued));
        self.status.token_expires_at = Some(Time(expiry));
        self.status.next_refresh_at = Some(Time(next));
        self.succeeded();
        self.ctx.metrics.registration.refreshed(&self.labels());
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
        if let (true, Some(wait)) = (e.is_throttled(), e.retry_after()) {
            // Not sent: a forced refresh stays asked for.
            self.status.handled_force_refresh = self.written.handled_force_refresh.clone();
            return self.deferred(wait);
        }
        let valid_until = self
            .status
            .token_expires_at
            .as_ref()
            .map(|t| t.0)
            .filter(|t| had_token && *t > self.now);
        let failure = classify_token_failure(&e, valid_until.is_some());
        let advice = match failure.advice {
            TokenAdvice::CheckCredentials => format!(
                "The provider rejected client {} at the token endpoint; check Secret {}.",
                credentials.client_id,
                self.obj.credentials_secret_name()
            ),
            TokenAdvice::CheckScope => format!(
                "The provider refused the token request; check spec.scope ({:?}).",
                self.obj.spec.scope
            ),
            TokenAdvice::None => String::new(),
        };
        let valid_for = valid_until
            .map(|t| Duration::try_from(t.duration_since(self.ctx.clock.now())).unwrap_or_default())
            .unwrap_or_default();
        let retry_after = e.retry_after();
        let mut outcome = self.failure_after(
            failure.reason,
            format!("Token request failed: {e}. {advice}"),
            |failures| {
                token_retry_delay(
                    failures,
                    failure.kind,
                    retry_after,
                    valid_for,
                    rand::random_range(0.0..=1.0),
                )
            },
        );
        if let Some(until) = valid_until {
            outcome.message.push_str(&format!(
                " The current token stays valid until {}.",
                rfc3339(until)
            ));
            // Wake up at expiry to report the token as expired if the retry has not fixed it.
            outcome.next = outcome.next.map(|n| n.min(until));
            outcome.ready = failure.reason == reason::REFRESH_FAILING;
        }
        outcome
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
            Some(exp) if token_exists => self.unchanged(Some(until.min(exp.max(self.now)))),
            _ => self.unchanged(Some(until)),
        }
    }
}
