//! Small time arithmetic shared by the reconcilers' decisions.

use jiff::{SignedDuration, Timestamp};
use std::time::Duration;

/// A time already due is looked at again after this, never at once: a decision that keeps
/// answering a past time must cost one reconcile a second, not spin.
const MIN_REQUEUE: Duration = Duration::from_secs(1);

/// The requeue delay until `next` (at most `max`; `max` when there is nothing scheduled; at
/// least `MIN_REQUEUE`).
pub(crate) fn wait_until(next: Option<Timestamp>, now: Timestamp, max: Duration) -> Duration {
    next.map(|t| Duration::try_from(t.duration_since(now)).unwrap_or(Duration::ZERO))
        .unwrap_or(max)
        .min(max)
        .max(MIN_REQUEUE)
}

/// The earlier of two optional times.
pub(crate) fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `t + d`, saturating at `t` when out of range.
pub(crate) fn add(t: Timestamp, d: Duration) -> Timestamp {
    to_signed(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(t)
}

/// A std duration as a signed one (saturating).
pub(crate) fn to_signed(d: Duration) -> Result<SignedDuration, jiff::Error> {
    SignedDuration::try_from(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_is_capped_and_never_negative() {
        let now = Timestamp::from_second(100).unwrap();
        let max = Duration::from_secs(60);
        assert_eq!(wait_until(None, now, max), max);
        assert_eq!(
            wait_until(Some(add(now, Duration::from_secs(5))), now, max),
            Duration::from_secs(5)
        );
        assert_eq!(
            wait_until(Some(Timestamp::from_second(1).unwrap()), now, max),
            MIN_REQUEUE
        );
        assert_eq!(
            wait_until(Some(add(now, Duration::from_secs(500))), now, max),
            max
        );
    }

    #[test]
    fn earliest_of_optional_times() {
        let a = Timestamp::from_second(1).unwrap();
        let b = Timestamp::from_second(2).unwrap();
        assert_eq!(earliest(Some(a), Some(b)), Some(a));
        assert_eq!(earliest(None, Some(b)), Some(b));
        assert_eq!(earliest(None, None), None);
    }
}
