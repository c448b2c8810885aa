//! When a token is refreshed (a registration's client token, a consent's customer token when
//! the provider issues refresh tokens), and how a failed refresh is retried: pure timing
//! decisions, the time passed in.

use crate::api::RefreshPolicy;
use crate::controller::schedule::{backoff, bounded_retry_after, FailureKind};
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

/// Longest wait between two token requests while apps have no valid token: every app mounting
/// the Secret is failing now, so the retry stays short (the provider's rate limit and
/// Retry-After still apply).
pub const EXPIRED_RETRY_CAP: Duration = Duration::from_secs(10);

/// Delay before the next token request after a failure, aware of the token at stake:
/// `valid_for` is how long the current token stays valid (zero once expired or when there is
/// none). Before expiry the usual backoff applies but never past half the remaining validity
/// (so several attempts come well before it); after expiry transient failures are retried at
/// least every `EXPIRED_RETRY_CAP`. Retry-After always wins.
pub fn token_retry_delay(
    failures: u32,
    kind: FailureKind,
    retry_after: Option<Duration>,
    valid_for: Duration,
    jitter: f64,
) -> Duration {
    let mut delay = backoff(failures, kind, None, jitter);
    if kind == FailureKind::Transient {
        let cap = if valid_for.is_zero() {
            EXPIRED_RETRY_CAP
        } else {
            (valid_for / 2).max(EXPIRED_RETRY_CAP)
        };
        delay = delay.min(cap);
    }
    delay.max(bounded_retry_after(retry_after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::ts;

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
    fn token_retries_come_before_expiry_and_stay_short_after_it() {
        let t = |n, valid: u64, after: Option<u64>| {
            token_retry_delay(
                n,
                FailureKind::Transient,
                after.map(Duration::from_secs),
                Duration::from_secs(valid),
                1.0,
            )
        };
        // Plenty of validity left: the plain backoff.
        assert_eq!(t(3, 3600, None), Duration::from_secs(20));
        // 60 s left: never more than 30 s, however many failures.
        assert_eq!(t(10, 60, None), Duration::from_secs(30));
        // Expired (or no token): at most 10 s.
        assert_eq!(t(10, 0, None), EXPIRED_RETRY_CAP);
        assert_eq!(t(1, 0, None), Duration::from_secs(5));
        // Retry-After always wins.
        assert_eq!(t(10, 0, Some(42)), Duration::from_secs(42));
        // Permanent failures keep their slow backoff.
        assert_eq!(
            token_retry_delay(3, FailureKind::Permanent, None, Duration::ZERO, 1.0),
            Duration::from_secs(240)
        );
    }
}
