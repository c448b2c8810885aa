//! The customer-token phase of an authorised consent whose provider issued a refresh token
//! (standard profile): the token is refreshed before it expires, like a client token (at two
//! thirds of its lifetime with jitter, never later than the safety margin; the old token stays
//! in place on failure; backoff, Retry-After and the expiry-aware retry), until the refresh token
//! or the consent expires or the provider refuses it; then the customer must authorise again.

use super::exchange::CustomerToken;
use super::registration_view::RegistrationView;
use super::verification::Expected;
use super::ConsentRun;
use crate::api::contract::{refresh_token as refresh_keys, rfc3339};
use crate::api::reason;
use crate::controller::error::Step;
use crate::controller::report::Outcome;
use crate::controller::schedule::FailureKind;
use crate::controller::time::{add, earliest};
use crate::controller::token_schedule::token_retry_delay;
use crate::provider::Sensitive;
use crate::secrets::text_value;
use jiff::Timestamp;
use kube::runtime::events::EventType;
use std::time::Duration;

/// How soon a consent whose registration cannot be used looks again for its refresh.
const REGISTRATION_RETRY: Duration = Duration::from_secs(30);

impl ConsentRun<'_> {
    /// Keeps the customer token fresh with the refresh token: the reconcile's answer.
    pub(super) async fn keep_customer_token(
        &mut self,
        registration: Option<&RegistrationView>,
    ) -> Step<Outcome> {
        let token_expiry = self.status.token_expires_at.as_ref().map(|t| t.0);
        let valid = token_expiry.is_some_and(|t| t > self.now);
        let refresh_expiry = self.status.refresh_token_expires_at.as_ref().map(|t| t.0);
        if refresh_expiry.is_some_and(|t| t <= self.now) {
            let why = format!(
                "its refresh token expired at {}",
                rfc3339(refresh_expiry.unwrap_or(self.now))
            );
            return Ok(self.refresh_ended(&why, valid));
        }
        let due = self
            .status
            .next_token_refresh_at
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(self.now);
        let retry = match self.status.consecutive_failures {
            0 => None,
            _ => self.status.next_check_at.as_ref().map(|t| t.0),
        };
        let when = retry.map_or(due, |r| r.max(due));
        // The expiry is a time to look again only while it is ahead.
        let expiry_ahead = token_expiry.filter(|t| *t > self.now);
        if when > self.now {
            return Ok(self
                .awaiting_refresh(when)
                .until(earliest(Some(when), expiry_ahead)));
        }
        let Some(registration) = registration else {
            // Its registration cannot be used now (not Ready): try again shortly.
            let next = add(self.now, REGISTRATION_RETRY);
            return Ok(self
                .awaiting_refresh(next)
                .until(earliest(Some(next), expiry_ahead)));
        };
        let name = self.obj.refresh_token_secret_name();
        let refresh = match self.secrets.get(&name).await? {
            Some(s) if self.owner.owns(&s) => text_value(&s, refresh_keys::REFRESH_TOKEN).ok(),
            _ => None,
        };
        let Some(refresh) = refresh.map(Sensitive::new) else {
            let why = format!("its refresh token Secret {name} is gone");
            return Ok(self.refresh_ended(&why, valid));
        };
        let target = registration.target();
        if let Some(wait) = self.ctx.provider.throttled(target) {
            return Ok(self.deferred(wait));
        }
        let credentials = self.registration_credentials(registration).await?;
        let response = match self
            .ctx
            .provider
            .refresh_customer_token(target, &credentials, &refresh)
            .await
        {
            Ok(response) => response,
            Err(e) if e.is_throttled() => {
                return Ok(self.deferred(e.retry_after().unwrap_or_default()))
            }
            // The provider refused the refresh token itself (expired, revoked, rotated away).
            // Any other refusal (`invalid_client`: the client's credentials) leaves the refresh
            // token good once the cause is fixed: a failure, retried slowly.
            Err(e) if e.is_invalid_grant() => {
                return Ok(self.refresh_ended(
                    &format!("the provider refused its refresh token ({e})"),
                    valid,
                ));
            }
            Err(e) => {
                return Ok(self.refresh_failed(
                    &e.to_string(),
                    FailureKind::of(&e),
                    e.retry_after(),
                ))
            }
        };
        let consent_id = self.status.consent_id.clone().unwrap_or_default();
        let expected = Expected {
            client_id: &credentials.client_id,
            consent_id: &consent_id,
            nonce: None,
            redirect: None,
        };
        let id_token = response.id_token.as_ref().map(|t| t.expose());
        let token = CustomerToken::of(target, &response, self.now);
        if let Err(m) = self.check_id_token(target, id_token, &expected).await {
            // Not this consent's (or unverifiable): the access token is not written. A bank that
            // rotates refresh tokens has retired the stored one, though, so the new one is kept
            // for the next attempt.
            self.write_refresh_token(&token, &consent_id).await?;
            let why = format!("the refreshed token's {m}");
            return Ok(self.refresh_failed(&why, FailureKind::Permanent, None));
        }
        if token.expiry <= self.ctx.clock.now() {
            let why = "the provider issued a token that had already expired (check the clocks)";
            return Ok(self.refresh_failed(why, FailureKind::Transient, None));
        }
        let outcome = self.store_customer_token(&token, &consent_id, None).await?;
        self.ctx.metrics.consent.refreshed(&self.labels());
        Ok(outcome)
    }

    /// A refresh that failed: the current token stays; the next attempt backs off, but never
    /// past half the token's remaining validity.
    fn refresh_failed(
        &mut self,
        why: &str,
        kind: FailureKind,
        retry_after: Option<Duration>,
    ) -> Outcome {
        let expiry = self.status.token_expires_at.as_ref().map(|t| t.0);
        let now = self.ctx.clock.now();
        let valid_for = expiry
            .map(|t| Duration::try_from(t.duration_since(now)).unwrap_or_default())
            .unwrap_or_default();
        let reason = if valid_for.is_zero() {
            reason::PROVIDER_UNAVAILABLE
        } else {
            reason::REFRESH_FAILING
        };
        let mut outcome = self.failure_after(
            reason,
            format!("Refreshing the customer token failed: {why}."),
            |failures| {
                token_retry_delay(
                    failures,
                    kind,
                    retry_after,
                    valid_for,
                    rand::random_range(0.0..=1.0),
                )
            },
        );
        if let Some(until) = expiry.filter(|t| *t > now) {
            outcome.message.push_str(&format!(
                " The current customer token stays valid until {}.",
                rfc3339(until)
            ));
            outcome.next = earliest(outcome.next, Some(until));
            outcome.ready = true;
        }
        outcome
    }

    /// The refresh token cannot be used any more: the token lasts until its expiry, then the
    /// customer must authorise again.
    fn refresh_ended(&mut self, why: &str, token_valid: bool) -> Outcome {
        self.status.next_token_refresh_at = None;
        self.status.refresh_token_secret = None;
        self.succeeded();
        let token_name = self.obj.token_secret_name();
        let consent = self.status.consent_id.clone().unwrap_or_default();
        match (token_valid, self.status.token_expires_at.as_ref().map(|t| t.0)) {
            (true, Some(exp)) => Outcome {
                ready: true,
                reason: reason::AUTHORISED,
                message: format!(
                    "Consent {consent} is authorised; the customer token in Secret {token_name} is valid until {}, but cannot be refreshed any more ({why}): then the customer must authorise again.",
                    rfc3339(exp)
                ),
                next: Some(exp),
                event: Some(EventType::Warning),
            },
            _ => self.reauthorisation_required(why),
        }
    }

    /// While the next refresh is not due: authorised, or, when the token has expired in the
    /// meantime (a retry or a Retry-After running past the expiry), unavailable until the
    /// refresh at `at`; the refresh token still works, so the customer need not act.
    fn awaiting_refresh(&self, at: Timestamp) -> Outcome {
        match self.status.token_expires_at.as_ref().map(|t| t.0) {
            Some(exp) if exp <= self.now => Outcome::failed(
                reason::PROVIDER_UNAVAILABLE,
                format!(
                    "The customer token in Secret {} expired at {}; renewing it with the refresh token is tried again at {}.",
                    self.obj.token_secret_name(),
                    rfc3339(exp),
                    rfc3339(at)
                ),
                Some(at),
            ),
            _ => self.authorised(),
        }
    }

    /// Ready=False: the customer must authorise again.
    pub(super) fn reauthorisation_required(&self, why: &str) -> Outcome {
        let token_name = self.obj.token_secret_name();
        Outcome::failed(
            reason::REAUTHORISATION_REQUIRED,
            format!(
                "The customer token in Secret {token_name} expired and cannot be renewed ({why}): the customer must authorise again. Delete this AccountConsent and create it anew, then send the customer to its new status.authorisationUrl."
            ),
            None,
        )
    }

    /// When the customer token is refreshed next, for messages.
    pub(super) fn refresh_note(&self) -> Option<Timestamp> {
        self.status.next_token_refresh_at.as_ref().map(|t| t.0)
    }
}
