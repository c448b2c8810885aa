//! Pure "what next" decisions of the TppRegistration reconciler.

use crate::api::TppRegistrationStatus;
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

/// Decides what to do when the credentials Secret does not exist.
/// `retry` is the value of the retry-registration annotation, if set.
pub fn registration_plan(
    status: &TppRegistrationStatus,
    retry: Option<&str>,
    now: Timestamp,
) -> RegistrationPlan {
    let retry_requested =
        retry.is_some_and(|r| status.handled_retry_registration.as_deref() != Some(r));
    if let Some(started) = &status.registration_attempt_started_at {
        return if retry_requested {
            RegistrationPlan::Register
        } else {
            RegistrationPlan::Unconfirmed {
                started_at: started.0,
            }
        };
    }
    if status.registration.is_some() && !retry_requested {
        return RegistrationPlan::CredentialsLost;
    }
    match status.next_refresh_at.as_ref() {
        Some(t) if status.consecutive_failures > 0 && t.0 > now && !retry_requested => {
            RegistrationPlan::WaitUntil(t.0)
        }
        _ => RegistrationPlan::Register,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RegistrationState;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

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
}
