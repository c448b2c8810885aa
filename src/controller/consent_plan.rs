//! Pure "what next / when" decisions of the AccountConsent reconciler.

use crate::api::AccountConsentStatus;
use jiff::{SignedDuration, Timestamp};
use std::time::Duration;

/// Provider statuses after which nothing changes any more.
pub const FINAL_STATUSES: &[&str] = &["Rejected", "Revoked", "Expired"];
/// Longest wait between two status polls.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(300);
/// A request object is re-signed this long before it expires, so a customer who opens the
/// authorisation URL just before never gets an expired one.
pub const RESIGN_BEFORE_EXPIRY: Duration = Duration::from_secs(120);

/// What to do about a consent that has no ConsentId yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CreationPlan {
    /// Call the provider's consent endpoint.
    Create,
    /// A failed attempt is backing off; try again at this time.
    WaitUntil(Timestamp),
    /// A creation call started earlier may have created a consent whose id was not saved; a
    /// human decides (set the retry annotation).
    Unconfirmed {
        /// When that call started.
        started_at: Timestamp,
    },
}

/// Decides about creation; `retry` is the value of the retry-creation annotation, if set.
pub fn creation_plan(
    status: &AccountConsentStatus,
    retry: Option<&str>,
    now: Timestamp,
) -> CreationPlan {
    let retry_requested =
        retry.is_some_and(|r| status.handled_retry_creation.as_deref() != Some(r));
    if let Some(started) = &status.creation_attempt_started_at {
        return if retry_requested {
            CreationPlan::Create
        } else {
            CreationPlan::Unconfirmed {
                started_at: started.0,
            }
        };
    }
    match status.next_check_at.as_ref() {
        Some(t) if status.consecutive_failures > 0 && t.0 > now && !retry_requested => {
            CreationPlan::WaitUntil(t.0)
        }
        _ => CreationPlan::Create,
    }
}

/// True for statuses after which the consent never changes.
pub fn is_final(consent_status: &str) -> bool {
    FINAL_STATUSES.contains(&consent_status)
}

/// Delay before the next status poll after `unchanged_polls` polls that saw no change:
/// `base` doubling up to five minutes, spread by up to ±10% (`jitter` in [-1, 1]) so that
/// consents created together do not poll together forever.
pub fn poll_delay(base: Duration, unchanged_polls: u32, jitter: f64) -> Duration {
    let doubled = base.as_secs_f64() * 2f64.powi(unchanged_polls.min(16) as i32);
    let capped = doubled.min(MAX_POLL_INTERVAL.as_secs_f64().max(base.as_secs_f64()));
    Duration::from_secs_f64((capped * (1.0 + 0.1 * jitter.clamp(-1.0, 1.0))).max(0.0))
}

/// Whether the published authorisation URL must be (re-)signed now.
pub fn needs_signing(url_expires_at: Option<Timestamp>, now: Timestamp) -> bool {
    match url_expires_at {
        None => true,
        Some(exp) => exp.duration_since(now) <= to_signed(RESIGN_BEFORE_EXPIRY),
    }
}

/// When the published authorisation URL must be re-signed.
pub fn resign_at(url_expires_at: Timestamp) -> Timestamp {
    url_expires_at
        .checked_sub(to_signed(RESIGN_BEFORE_EXPIRY))
        .unwrap_or(url_expires_at)
}

/// Whether the consent has passed its ExpirationDateTime.
pub fn consent_expired(expiration: Option<Timestamp>, now: Timestamp) -> bool {
    expiration.is_some_and(|e| e <= now)
}

fn to_signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn an_unconfirmed_creation_waits_for_a_human() {
        let mut status = AccountConsentStatus::default();
        assert_eq!(creation_plan(&status, None, ts(0)), CreationPlan::Create);
        status.creation_attempt_started_at = Some(Time(ts(5)));
        assert_eq!(
            creation_plan(&status, None, ts(100)),
            CreationPlan::Unconfirmed { started_at: ts(5) }
        );
        assert_eq!(
            creation_plan(&status, Some("1"), ts(100)),
            CreationPlan::Create
        );
        status.handled_retry_creation = Some("1".into());
        assert!(matches!(
            creation_plan(&status, Some("1"), ts(100)),
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
            creation_plan(&status, None, ts(10)),
            CreationPlan::WaitUntil(ts(50))
        );
        assert_eq!(creation_plan(&status, None, ts(50)), CreationPlan::Create);
    }

    #[test]
    fn polling_backs_off_to_five_minutes_with_bounded_jitter() {
        let base = Duration::from_secs(5);
        assert_eq!(poll_delay(base, 0, 0.0), Duration::from_secs(5));
        assert_eq!(poll_delay(base, 3, 0.0), Duration::from_secs(40));
        assert_eq!(poll_delay(base, 30, 0.0), MAX_POLL_INTERVAL);
        assert_eq!(poll_delay(base, 30, 1.0), Duration::from_secs(330));
        assert_eq!(poll_delay(base, 0, -1.0), Duration::from_secs_f64(4.5));
        // A base above the cap is honoured rather than silently shortened.
        assert_eq!(
            poll_delay(Duration::from_secs(600), 2, 0.0),
            Duration::from_secs(600)
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
    fn finality_and_expiry() {
        assert!(is_final("Rejected") && is_final("Revoked") && is_final("Expired"));
        assert!(!is_final("AwaitingAuthorisation") && !is_final("Authorised"));
        assert!(consent_expired(Some(ts(10)), ts(10)));
        assert!(!consent_expired(Some(ts(10)), ts(9)));
        assert!(!consent_expired(None, ts(9)));
    }
}
