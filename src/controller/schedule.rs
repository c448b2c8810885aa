//! Pure timing decisions shared by both kinds: how long to back off after a failure, how a
//! provider's Retry-After bounds it, and how stored times are rounded.

use jiff::Timestamp;
use std::time::Duration;

/// Whether a failure may go away by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Provider outage, rate limit, timeout: retry soon.
    Transient,
    /// The provider refused the request as it is: retry rarely, a human must act.
    Permanent,
}

impl FailureKind {
    /// The kind of a failed provider call.
    pub fn of(e: &crate::provider::ProviderError) -> Self {
        if e.is_transient() {
            FailureKind::Transient
        } else {
            FailureKind::Permanent
        }
    }
}

/// A provider's Retry-After as a delay, capped at one hour.
pub(crate) fn bounded_retry_after(retry_after: Option<Duration>) -> Duration {
    retry_after
        .map(|d| d.min(Duration::from_secs(3600)))
        .unwrap_or_default()
}

/// The first whole second at or after `t`: times in status have whole seconds, and a stored
/// retry time must never come before the one decided.
pub fn ceil_second(t: Timestamp) -> Timestamp {
    if t.subsec_nanosecond() == 0 {
        t
    } else {
        Timestamp::from_second(t.as_second() + 1).unwrap_or(t)
    }
}

/// Delay before the next attempt after `failures` consecutive failures (1 for the first).
///
/// Exponential (5 s doubling to 5 min for transient failures, 1 min doubling to 30 min for
/// permanent ones) with "equal jitter" (`jitter` in [0, 1] picks a point in the upper half), and
/// never shorter than the provider's Retry-After (itself capped at one hour).
pub fn backoff(
    failures: u32,
    kind: FailureKind,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    let (base, cap) = match kind {
        FailureKind::Transient => (5.0, 300.0),
        FailureKind::Permanent => (60.0, 1800.0),
    };
    let exp = failures.saturating_sub(1).min(20);
    let full = (base * 2f64.powi(exp as i32)).min(cap);
    let delay = Duration::from_secs_f64(full / 2.0 + full / 2.0 * jitter.clamp(0.0, 1.0));
    delay.max(bounded_retry_after(retry_after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::ts;

    #[test]
    fn backoff_grows_exponentially_and_is_capped() {
        let d = |n| backoff(n, FailureKind::Transient, None, 1.0);
        assert_eq!(d(1), Duration::from_secs(5));
        assert_eq!(d(2), Duration::from_secs(10));
        assert_eq!(d(3), Duration::from_secs(20));
        assert_eq!(d(10), Duration::from_secs(300));
        assert_eq!(d(u32::MAX), Duration::from_secs(300));
        assert_eq!(
            backoff(1, FailureKind::Transient, None, 0.0),
            Duration::from_millis(2500)
        );
        assert_eq!(
            backoff(1, FailureKind::Permanent, None, 1.0),
            Duration::from_secs(60)
        );
        assert_eq!(
            backoff(9, FailureKind::Permanent, None, 1.0),
            Duration::from_secs(1800)
        );
    }

    #[test]
    fn stored_times_round_up_to_whole_seconds() {
        let t = Timestamp::from_millisecond(10_300).unwrap();
        assert_eq!(ceil_second(t), ts(11));
        assert_eq!(ceil_second(ts(11)), ts(11));
    }

    #[test]
    fn retry_after_is_honoured_but_bounded() {
        assert_eq!(
            backoff(
                1,
                FailureKind::Transient,
                Some(Duration::from_secs(42)),
                1.0
            ),
            Duration::from_secs(42)
        );
        assert_eq!(
            backoff(1, FailureKind::Transient, Some(Duration::from_secs(1)), 1.0),
            Duration::from_secs(5)
        );
        assert_eq!(
            backoff(
                1,
                FailureKind::Transient,
                Some(Duration::from_secs(86_400)),
                1.0
            ),
            Duration::from_secs(3600)
        );
    }
}
