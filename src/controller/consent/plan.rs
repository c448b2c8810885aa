//! Pure "what next / when" decisions of the AccountConsent reconciler: which stage a consent is
//! in, whether to create it, and when its authorisation URL is re-signed.

use crate::api::{AccountConsentStatus, ConsentStatus};
use crate::controller::attempt::{attempt_plan, AttemptPlan, AttemptRecord};
use crate::controller::time::to_signed;
use jiff::{SignedDuration, Timestamp};
use std::time::Duration;

/// A request object is re-signed this long before it expires, so a customer who opens the
/// authorisation URL just before never gets an expired one.
pub const RESIGN_BEFORE_EXPIRY: Duration = Duration::from_secs(120);
/// How long a consent waits for its registration to refresh a client token the provider
/// refused, before reporting the refusal.
pub const CLIENT_TOKEN_REFRESH_WAIT: Duration = Duration::from_secs(20);

/// Where a consent is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Nothing will change any more.
    Final(ConsentStatus),
    /// Not created at the provider yet.
    Create,
    /// Created: hand-offs, polling, the authorisation URL or the customer token.
    Track,
}

/// The stage of a consent; a consent past its ExpirationDateTime is `Final(Expired)` whatever
/// the provider last said.
pub fn stage(
    status: &AccountConsentStatus,
    expiration: Option<Timestamp>,
    now: Timestamp,
) -> Stage {
    match &status.consent_status {
        Some(s) if s.is_final() => Stage::Final(s.clone()),
        _ if consent_expired(expiration, now) => Stage::Final(ConsentStatus::Expired),
        _ if status.consent_id.is_none() => Stage::Create,
        _ => Stage::Track,
    }
}

/// What to do about a consent that has no ConsentId yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreationPlan {
    /// Call the provider's consent endpoint.
    Create,
    /// A failed attempt is backing off, or a refused client token is being refreshed; look
    /// again at this time.
    WaitUntil(Timestamp),
    /// A creation call started earlier may have created a consent whose id was not saved; a
    /// human decides (set the retry annotation).
    Unconfirmed {
        /// When that call started.
        started_at: Timestamp,
    },
    /// The registration did not bring a fresh client token in time after a refusal.
    ClientTokenNotRefreshed,
}

/// Decides about creation. `retry` is the value of the retry-creation annotation, if set;
/// `client_token_issued_at` is when the registration's current client token was issued.
pub fn creation_plan(
    status: &AccountConsentStatus,
    retry: Option<&str>,
    client_token_issued_at: Option<Timestamp>,
    now: Timestamp,
) -> CreationPlan {
    let record = AttemptRecord {
        started_at: status.creation_attempt_started_at.as_ref().map(|t| t.0),
        handled_retry: status.handled_retry_creation.as_deref(),
        failures: status.consecutive_failures,
        next_at: status.next_check_at.as_ref().map(|t| t.0),
    };
    match attempt_plan(&record, retry, now) {
        AttemptPlan::WaitUntil(t) => return CreationPlan::WaitUntil(t),
        AttemptPlan::Unconfirmed { started_at } => return CreationPlan::Unconfirmed { started_at },
        AttemptPlan::Attempt => {}
    }
    match status
        .client_token_refresh_requested_at
        .as_ref()
        .map(|t| t.0)
    {
        // Times in status have whole seconds: a token issued in the second of the request
        // counts as the fresh one.
        Some(asked)
            if client_token_issued_at.is_some_and(|t| t.as_second() >= asked.as_second()) =>
        {
            CreationPlan::Create
        }
        Some(asked) => {
            let deadline = asked
                .checked_add(to_signed(CLIENT_TOKEN_REFRESH_WAIT).unwrap_or(SignedDuration::ZERO))
                .unwrap_or(asked);
            if now < deadline {
                CreationPlan::WaitUntil(deadline)
            } else {
                CreationPlan::ClientTokenNotRefreshed
            }
        }
        None => CreationPlan::Create,
    }
}

/// Whether the published authorisation URL must be (re-)signed now.
pub fn needs_signing(url_expires_at: Option<Timestamp>, now: Timestamp) -> bool {
    match url_expires_at {
        None => true,
        Some(exp) => {
            exp.duration_since(now)
                <= to_signed(RESIGN_BEFORE_EXPIRY).unwrap_or(SignedDuration::MAX)
        }
    }
}

/// When the published authorisation URL must be re-signed.
pub fn resign_at(url_expires_at: Timestamp) -> Timestamp {
    to_signed(RESIGN_BEFORE_EXPIRY)
        .ok()
        .and_then(|d| url_expires_at.checked_sub(d).ok())
        .unwrap_or(url_expires_at)
}

/// Whether the consent has passed its ExpirationDateTime.
pub fn consent_expired(expiration: Option<Timestamp>, now: Timestamp) -> bool {
    expiration.is_some_and(|e| e <= now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::ts;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    #[test]
    fn an_unconfirmed_creation_waits_for_a_human() {
        let mut status = AccountConsentStatus::default();
        assert_eq!(
            creation_plan(&status, None, None, ts(0)),
            CreationPlan::Create
        );
        status.creation_attempt_started_at = Some(Time(ts(5)));
        assert_eq!(
            creation_plan(&status, None, None, ts(100)),
            CreationPlan::Unconfirmed { started_at: ts(5) }
        );
        assert_eq!(
            creation_plan(&status, Some("1"), None, ts(100)),
            CreationPlan::Create
        );
        status.handled_retry_creation = Some("1".into());
        assert!(matches!(
            creation_plan(&status, Some("1"), None, ts(100)),
            CreationPlan::Unconfirmed { .. }
        ));
    }

    #[test]
    fn failed_creation_backs_off_until_its_time() {
        let status = AccountConsentStatus {
            consecutive_failures: 2,
            next_check_at: Some(Time(ts(50))),
            ..Default::default()
        };
        assert_eq!(
            creation_plan(&status, None, None, ts(10)),
            CreationPlan::WaitUntil(ts(50))
        );
        assert_eq!(
            creation_plan(&status, None, None, ts(50)),
            CreationPlan::Create
        );
    }

    #[test]
    fn a_refused_client_token_waits_for_a_fresh_one_then_gives_up() {
        let status = AccountConsentStatus {
            client_token_refresh_requested_at: Some(Time(ts(100))),
            ..Default::default()
        };
        // The registration still has the old token: wait, up to 20 s.
        assert_eq!(
            creation_plan(&status, None, Some(ts(90)), ts(105)),
            CreationPlan::WaitUntil(ts(120))
        );
        assert_eq!(
            creation_plan(&status, None, Some(ts(90)), ts(120)),
            CreationPlan::ClientTokenNotRefreshed
        );
        // A token issued since: create again (once; the reconciler clears the request).
        assert_eq!(
            creation_plan(&status, None, Some(ts(100)), ts(105)),
            CreationPlan::Create
        );
    }

    #[test]
    fn stages() {
        let mut status = AccountConsentStatus::default();
        assert_eq!(stage(&status, None, ts(0)), Stage::Create);
        assert_eq!(
            stage(&status, Some(ts(0)), ts(0)),
            Stage::Final(ConsentStatus::Expired)
        );
        status.consent_id = Some("c".into());
        status.consent_status = Some(ConsentStatus::AwaitingAuthorisation);
        assert_eq!(stage(&status, Some(ts(10)), ts(0)), Stage::Track);
        status.consent_status = Some(ConsentStatus::Revoked);
        assert_eq!(
            stage(&status, Some(ts(0)), ts(5)),
            Stage::Final(ConsentStatus::Revoked)
        );
    }

    #[test]
    fn request_objects_are_resigned_two_minutes_before_expiry() {
        assert!(needs_signing(None, ts(0)));
        assert!(!needs_signing(Some(ts(600)), ts(479)));
        assert!(needs_signing(Some(ts(600)), ts(480)));
        assert_eq!(resign_at(ts(600)), ts(480));
    }

    #[test]
    fn expiry() {
        assert!(consent_expired(Some(ts(10)), ts(10)));
        assert!(!consent_expired(Some(ts(10)), ts(9)));
        assert!(!consent_expired(None, ts(9)));
    }
}
