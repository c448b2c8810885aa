//! Pure timing decisions: when to refresh a token and how long to back off after a failure.

use crate::api::RefreshPolicy;
use jiff::{SignedDuration, Timestamp};
use std::time::Duration;

/// Share of the lifetime before which a token is never refreshed, whatever the margin says,
/// so that a margin larger than the lifetime cannot turn into a refresh loop.
const EARLIEST_FRACTION: f64 = 0.1;

/// When a token issued at `issued` and expiring at `expiry` is refreshed.
///
/// The point is `at_percent` of the lifetime (two thirds when unset), moved by up to
/// `jitter_percent` of the lifetime either way (`jitter` is a sample in [-1, 1]), never later
/// than `safety_margin_seconds` before expiry and never earlier than 10% of the lifetime.
pub fn refresh_at(
    issued: Timestamp,
    expiry: Timestamp,
    policy: &RefreshPolicy,
    jitter: f64,
) -> Timestamp {
    let lifetime = expiry.duration_since(issued).as_secs_f64();
    if lifetime <= 0.0 {
        return issued;
    }
    let fraction = policy
        .at_percent
        .map(|p| f64::from(p) / 100.0)
        .unwrap_or(2.0 / 3.0);
    let spread = lifetime * f64::from(policy.jitter_percent) / 100.0 * jitter.clamp(-1.0, 1.0);
    let latest = lifetime - f64::from(policy.safety_margin_seconds);
    let offset = (lifetime * fraction + spread)
        .min(latest)
        .max(lifetime * EARLIEST_FRACTION);
    issued
        .saturating_add(SignedDuration::from_secs_f64(offset))
        .unwrap_or(expiry)
}

/// Whether a failure may go away by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Provider outage, rate limit, timeout: retry soon.
    Transient,
    /// The provider refused the request as it is: retry rarely, a human must act.
    Permanent,
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
    let asked = retry_after
        .map(|d| d.min(Duration::from_secs(3600)))
        .unwrap_or_default();
    delay.max(asked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn policy(at: Option<u8>, jitter: u8, margin: u32) -> RefreshPolicy {
        RefreshPolicy {
            at_percent: at,
            jitter_percent: jitter,
            safety_margin_seconds: margin,
        }
    }

    #[test]
    fn default_is_two_thirds_of_the_lifetime() {
        assert_eq!(
            refresh_at(ts(0), ts(300), &policy(None, 0, 30), 0.0),
            ts(200)
        );
        assert_eq!(
            refresh_at(ts(1000), ts(1900), &RefreshPolicy::default(), 0.0),
            ts(1600)
        );
    }

    #[test]
    fn configurable_point() {
        assert_eq!(
            refresh_at(ts(0), ts(1000), &policy(Some(50), 0, 0), 0.0),
            ts(500)
        );
    }

    #[test]
    fn jitter_spreads_within_bounds() {
        let p = policy(None, 10, 0);
        let low = refresh_at(ts(0), ts(3000), &p, -1.0);
        let high = refresh_at(ts(0), ts(3000), &p, 1.0);
        assert_eq!(low, ts(1700));
        assert_eq!(high, ts(2300));
        for i in 0..=20 {
            let t = refresh_at(ts(0), ts(3000), &p, -1.0 + f64::from(i) / 10.0);
            assert!(t >= low && t <= high);
        }
    }

    #[test]
    fn never_later_than_the_safety_margin() {
        // 95% of 300 s would be 285 s, but the margin of 60 s caps it at 240 s.
        assert_eq!(
            refresh_at(ts(0), ts(300), &policy(Some(95), 25, 60), 1.0),
            ts(240)
        );
    }

    #[test]
    fn margin_larger_than_lifetime_does_not_loop() {
        // A 20 s token with a 30 s margin: refresh at 10% of the lifetime, not immediately.
        assert_eq!(refresh_at(ts(0), ts(20), &policy(None, 0, 30), 0.0), ts(2));
    }

    #[test]
    fn expired_on_arrival_refreshes_now() {
        assert_eq!(
            refresh_at(ts(100), ts(50), &RefreshPolicy::default(), 0.0),
            ts(100)
        );
    }

    #[test]
    fn the_documented_sample_refreshes_at_200s_not_after_hours() {
        // expires_in 63919 s but exp - iat 300 s: the expiry is iat + 300 s.
        let issued = ts(1_719_855_619);
        let expiry = crate::provider::token::effective_expiry(
            issued,
            Some(63_919),
            crate::provider::token::SAMPLE,
        )
        .unwrap();
        assert_eq!(
            refresh_at(issued, expiry, &RefreshPolicy::default(), 0.0),
            ts(1_719_855_819)
        );
    }

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
