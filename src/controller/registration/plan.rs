//! Pure "what next" decisions of the TppRegistration reconciler: whether to register, whether
//! to call the token endpoint, what a failed call means, and what to do about the signing key.

use crate::api::{reason, TppRegistrationStatus};
use crate::controller::attempt::{attempt_plan, AttemptPlan, AttemptRecord};
use crate::controller::schedule::FailureKind;
use crate::provider::ProviderError;
use jiff::Timestamp;

/// What to do about registration when no credentials Secret exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistrationPlan {
    /// Call the provider's registration endpoint.
    Register,
    /// A failed attempt is backing off; try again at this time.
    WaitUntil(Timestamp),
    /// A call started earlier may have registered us but its result was not saved: a human
    /// decides (create the Secret, or set the retry annotation).
    Unconfirmed {
        /// When that call started.
        started_at: Timestamp,
    },
    /// Registered before, but the credentials Secret is gone: registering again would create
    /// a second registration, so a human decides.
    CredentialsLost,
}

/// The registration attempt as the status records it.
pub fn attempt_record(status: &TppRegistrationStatus) -> AttemptRecord<'_> {
    AttemptRecord {
        started_at: status.registration_attempt_started_at.as_ref().map(|t| t.0),
        handled_retry: status.handled_retry_registration.as_deref(),
        failures: status.consecutive_failures,
        next_at: status.next_refresh_at.as_ref().map(|t| t.0),
    }
}

/// Decides what to do when the credentials Secret does not exist.
/// `retry` is the value of the retry-registration annotation, if set.
pub fn registration_plan(
    status: &TppRegistrationStatus,
    retry: Option<&str>,
    now: Timestamp,
) -> RegistrationPlan {
    let record = attempt_record(status);
    if record.started_at.is_none()
        && status.registration.is_some()
        && !record.retry_requested(retry)
    {
        return RegistrationPlan::CredentialsLost;
    }
    match attempt_plan(&record, retry, now) {
        AttemptPlan::Attempt => RegistrationPlan::Register,
        AttemptPlan::WaitUntil(t) => RegistrationPlan::WaitUntil(t),
        AttemptPlan::Unconfirmed { started_at } => RegistrationPlan::Unconfirmed { started_at },
    }
}

/// Why a token is fetched now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshReason {
    /// No token has been obtained yet (or its Secret is gone).
    NoToken,
    /// The scheduled refresh time has come.
    Due,
    /// A user set a new value on the force-refresh annotation.
    Forced,
    /// The credentials changed (a different client id was adopted).
    CredentialsChanged,
}

/// What to do about the client token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenPlan {
    /// Call the token endpoint now.
    Refresh(RefreshReason),
    /// Nothing to do until then.
    WaitUntil(Timestamp),
}

/// Decides whether to call the token endpoint now.
pub fn token_plan(
    status: &TppRegistrationStatus,
    client_id: &str,
    token_secret_exists: bool,
    force: Option<&str>,
    now: Timestamp,
) -> TokenPlan {
    if force.is_some_and(|f| status.handled_force_refresh.as_deref() != Some(f)) {
        return TokenPlan::Refresh(RefreshReason::Forced);
    }
    let next = status.next_refresh_at.as_ref().map(|t| t.0);
    let backing_off = status.consecutive_failures > 0 && next.is_some_and(|t| t > now);
    if backing_off {
        // Holds for every reason below: after a failure nothing calls the provider before the
        // backoff ends, so a flapping watch cannot turn into a hammering loop.
        return TokenPlan::WaitUntil(next.unwrap_or(now));
    }
    if status.client_id.as_deref() != Some(client_id) && status.token_issued_at.is_some() {
        return TokenPlan::Refresh(RefreshReason::CredentialsChanged);
    }
    if !token_secret_exists || status.token_issued_at.is_none() {
        return TokenPlan::Refresh(RefreshReason::NoToken);
    }
    match next {
        Some(t) if t > now => TokenPlan::WaitUntil(t),
        _ => TokenPlan::Refresh(RefreshReason::Due),
    }
}

/// What a failed token call means for the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenFailure {
    /// Ready reason.
    pub reason: &'static str,
    /// Transient or permanent.
    pub kind: FailureKind,
    /// What the user should check.
    pub advice: TokenAdvice,
}

/// The hint attached to a token failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenAdvice {
    /// Check the credentials Secret.
    CheckCredentials,
    /// Check spec.scope.
    CheckScope,
    /// Nothing to check: the provider is failing.
    None,
}

/// Classifies a failed token call; `token_still_valid` says whether apps still have a token.
pub fn classify_token_failure(e: &ProviderError, token_still_valid: bool) -> TokenFailure {
    let kind = FailureKind::of(e);
    if matches!(e, ProviderError::Redirected { .. }) {
        return TokenFailure {
            reason: reason::PROVIDER_REDIRECTED,
            kind,
            advice: TokenAdvice::None,
        };
    }
    let (reason, advice) = match (kind, e.status()) {
        (FailureKind::Permanent, Some(401 | 403)) => (
            reason::INVALID_CLIENT_CREDENTIALS,
            TokenAdvice::CheckCredentials,
        ),
        (FailureKind::Permanent, _) => (reason::TOKEN_REQUEST_REJECTED, TokenAdvice::CheckScope),
        (FailureKind::Transient, _) if token_still_valid => {
            (reason::REFRESH_FAILING, TokenAdvice::None)
        }
        (FailureKind::Transient, _) => (reason::PROVIDER_UNAVAILABLE, TokenAdvice::None),
    };
    TokenFailure {
        reason,
        kind,
        advice,
    }
}

/// The Ready reason of a registration call that failed with a known outcome.
pub fn registration_failure_reason(e: &ProviderError) -> &'static str {
    if matches!(e, ProviderError::Redirected { .. }) {
        return reason::PROVIDER_REDIRECTED;
    }
    match e.status() {
        Some(401 | 403) => reason::INVALID_SIGNATURE_CERTIFICATE,
        _ if e.is_transient() => reason::PROVIDER_UNAVAILABLE,
        _ => reason::REGISTRATION_REJECTED,
    }
}

/// The message of a registration call that failed with a known outcome.
pub fn registration_failure_message(e: &ProviderError, signature_secret: &str) -> String {
    match e.status() {
        Some(401 | 403) => format!("Registration refused: {e}. Check the signature certificate in Secret {signature_secret}."),
        _ if e.is_transient() => format!("Registration failed: {e}."),
        _ => format!(
            "Registration refused: {e}. Check spec.organisation and spec.callbackUrl; as they cannot change, create a corrected TppRegistration."
        ),
    }
}

/// What to do about a generated signing key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyPlan {
    /// Use the stored key; it is the published one.
    Keep,
    /// Use the stored key and publish it: it is new (a first key, or the rotation asked for).
    Publish {
        /// True when it replaces a published key.
        rotated: bool,
    },
    /// Ask the generator for a key; meanwhile keep the stored one (if any) in use.
    Generate,
}

/// Decides about a generated signing key from the kid stored in its Secret (if the Secret holds
/// a usable key), the kid published first in status, and whether a rotation is asked for.
pub fn key_plan(stored: Option<&str>, published: Option<&str>, rotate_requested: bool) -> KeyPlan {
    match stored {
        Some(kid) if published != Some(kid) => KeyPlan::Publish {
            rotated: published.is_some(),
        },
        Some(_) if !rotate_requested => KeyPlan::Keep,
        _ => KeyPlan::Generate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RegistrationState;
    use crate::controller::fixtures::ts;
    use crate::provider::Endpoint;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use std::time::Duration;

    fn token_status(issued: i64, next: i64) -> TppRegistrationStatus {
        TppRegistrationStatus {
            client_id: Some("C1".into()),
            registration: Some(RegistrationState::Registered),
            token_issued_at: Some(Time(ts(issued))),
            token_expires_at: Some(Time(ts(issued + 300))),
            next_refresh_at: Some(Time(ts(next))),
            ..Default::default()
        }
    }

    #[test]
    fn first_reconcile_registers() {
        assert_eq!(
            registration_plan(&TppRegistrationStatus::default(), None, ts(0)),
            RegistrationPlan::Register
        );
    }

    #[test]
    fn an_attempt_with_unknown_outcome_is_not_repeated_without_a_human() {
        let status = TppRegistrationStatus {
            registration_attempt_started_at: Some(Time(ts(10))),
            ..Default::default()
        };
        assert_eq!(
            registration_plan(&status, None, ts(100)),
            RegistrationPlan::Unconfirmed { started_at: ts(10) }
        );
        assert_eq!(
            registration_plan(&status, Some("1"), ts(100)),
            RegistrationPlan::Register
        );
        // The same annotation value, once handled, does not allow another attempt.
        let handled = TppRegistrationStatus {
            handled_retry_registration: Some("1".into()),
            ..status
        };
        assert_eq!(
            registration_plan(&handled, Some("1"), ts(100)),
            RegistrationPlan::Unconfirmed { started_at: ts(10) }
        );
    }

    #[test]
    fn lost_credentials_are_not_silently_re_registered() {
        let status = token_status(0, 200);
        assert_eq!(
            registration_plan(&status, None, ts(100)),
            RegistrationPlan::CredentialsLost
        );
        assert_eq!(
            registration_plan(&status, Some("x"), ts(100)),
            RegistrationPlan::Register
        );
    }

    #[test]
    fn failed_registration_backs_off() {
        let status = TppRegistrationStatus {
            consecutive_failures: 2,
            next_refresh_at: Some(Time(ts(50))),
            ..Default::default()
        };
        assert_eq!(
            registration_plan(&status, None, ts(10)),
            RegistrationPlan::WaitUntil(ts(50))
        );
        assert_eq!(
            registration_plan(&status, None, ts(50)),
            RegistrationPlan::Register
        );
    }

    #[test]
    fn token_waits_until_due_then_refreshes() {
        let status = token_status(0, 200);
        assert_eq!(
            token_plan(&status, "C1", true, None, ts(199)),
            TokenPlan::WaitUntil(ts(200))
        );
        assert_eq!(
            token_plan(&status, "C1", true, None, ts(200)),
            TokenPlan::Refresh(RefreshReason::Due)
        );
    }

    #[test]
    fn missing_token_or_new_credentials_refresh_now() {
        let status = token_status(0, 200);
        assert_eq!(
            token_plan(&status, "C1", false, None, ts(10)),
            TokenPlan::Refresh(RefreshReason::NoToken)
        );
        assert_eq!(
            token_plan(&status, "C2", true, None, ts(10)),
            TokenPlan::Refresh(RefreshReason::CredentialsChanged)
        );
        let fresh = TppRegistrationStatus {
            client_id: Some("C1".into()),
            ..Default::default()
        };
        assert_eq!(
            token_plan(&fresh, "C1", false, None, ts(10)),
            TokenPlan::Refresh(RefreshReason::NoToken)
        );
    }

    #[test]
    fn force_refresh_is_one_shot_per_value() {
        let status = token_status(0, 200);
        assert_eq!(
            token_plan(&status, "C1", true, Some("a"), ts(10)),
            TokenPlan::Refresh(RefreshReason::Forced)
        );
        let handled = TppRegistrationStatus {
            handled_force_refresh: Some("a".into()),
            ..status
        };
        assert_eq!(
            token_plan(&handled, "C1", true, Some("a"), ts(10)),
            TokenPlan::WaitUntil(ts(200))
        );
    }

    #[test]
    fn backoff_holds_even_without_a_token() {
        let status = TppRegistrationStatus {
            client_id: Some("C1".into()),
            consecutive_failures: 3,
            next_refresh_at: Some(Time(ts(40))),
            ..Default::default()
        };
        assert_eq!(
            token_plan(&status, "C1", false, None, ts(10)),
            TokenPlan::WaitUntil(ts(40))
        );
        assert_eq!(
            token_plan(&status, "C1", false, None, ts(40)),
            TokenPlan::Refresh(RefreshReason::NoToken)
        );
    }

    fn status_error(status: u16) -> ProviderError {
        ProviderError::Status {
            endpoint: Endpoint::ClientToken,
            status,
            retry_after: None,
            detail: None,
            oauth_error: None,
        }
    }

    #[test]
    fn token_failures_say_what_to_check() {
        let f = classify_token_failure(&status_error(401), true);
        assert_eq!(
            (f.reason, f.kind, f.advice),
            (
                reason::INVALID_CLIENT_CREDENTIALS,
                FailureKind::Permanent,
                TokenAdvice::CheckCredentials
            )
        );
        let f = classify_token_failure(&status_error(400), true);
        assert_eq!(
            (f.reason, f.advice),
            (reason::TOKEN_REQUEST_REJECTED, TokenAdvice::CheckScope)
        );
        let f = classify_token_failure(&status_error(503), true);
        assert_eq!(
            (f.reason, f.kind),
            (reason::REFRESH_FAILING, FailureKind::Transient)
        );
        let timeout = ProviderError::Timeout {
            endpoint: Endpoint::ClientToken,
            timeout: Duration::from_secs(1),
        };
        assert_eq!(
            classify_token_failure(&timeout, false).reason,
            reason::PROVIDER_UNAVAILABLE
        );
    }

    #[test]
    fn registration_failures_name_the_likely_cause() {
        assert_eq!(
            registration_failure_reason(&status_error(403)),
            reason::INVALID_SIGNATURE_CERTIFICATE
        );
        assert_eq!(
            registration_failure_reason(&status_error(502)),
            reason::PROVIDER_UNAVAILABLE
        );
        assert_eq!(
            registration_failure_reason(&status_error(422)),
            reason::REGISTRATION_REJECTED
        );
        assert!(registration_failure_message(&status_error(401), "sig").contains("Secret sig"));
        let redirected = ProviderError::Redirected {
            endpoint: Endpoint::Registration,
            status: 307,
        };
        assert_eq!(
            registration_failure_reason(&redirected),
            reason::PROVIDER_REDIRECTED
        );
        let f = classify_token_failure(&redirected, true);
        assert_eq!(
            (f.reason, f.kind),
            (reason::PROVIDER_REDIRECTED, FailureKind::Permanent)
        );
    }

    #[test]
    fn signing_keys_rotate_only_when_asked_and_publish_new_ones() {
        assert_eq!(key_plan(None, None, false), KeyPlan::Generate);
        assert_eq!(
            key_plan(Some("a"), None, false),
            KeyPlan::Publish { rotated: false }
        );
        assert_eq!(key_plan(Some("a"), Some("a"), false), KeyPlan::Keep);
        assert_eq!(key_plan(Some("a"), Some("a"), true), KeyPlan::Generate);
        // The generator wrote the rotated key: publish it, the old one is retired.
        assert_eq!(
            key_plan(Some("b"), Some("a"), true),
            KeyPlan::Publish { rotated: true }
        );
        assert_eq!(key_plan(None, Some("a"), false), KeyPlan::Generate);
    }
}
