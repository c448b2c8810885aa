//! A token bucket per provider host, so one operator never exceeds the bank's request rate.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket: `rate` requests per second, bursts up to `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate: rate.max(0.001),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token at `now`, or says how long to wait before one is there. A wait reserves
    /// the token, so callers that sleep for the returned time must not call again.
    pub fn acquire(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// One bucket per provider host.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: u32,
    buckets: Mutex<HashMap<String, TokenBucket>>,
}

impl RateLimiter {
    /// `rate` requests per second per host with bursts of `burst`.
    pub fn new(rate: f64, burst: u32) -> Self {
        RateLimiter {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Waits until a request to `host` is allowed.
    pub async fn wait(&self, host: &str) {
        let delay = {
            let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            buckets
                .entry(host.to_string())
                .or_insert_with(|| TokenBucket::new(self.rate, self.burst, now))
                .acquire(now)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3, t0);
        for _ in 0..3 {
            assert_eq!(b.acquire(t0), Duration::ZERO);
        }
        // The fourth request in the same instant waits one interval, the fifth two.
        assert_eq!(b.acquire(t0), Duration::from_millis(100));
        assert_eq!(b.acquire(t0), Duration::from_millis(200));
    }

    #[test]
    fn never_exceeds_rate_over_a_window() {
        // 1000 requests arriving at once at 50 req/s must be spread over >= (1000 - burst)/50 s.
        let t0 = Instant::now();
        let mut b = TokenBucket::new(50.0, 5, t0);
        let mut last = Duration::ZERO;
        for _ in 0..1000 {
            last = b.acquire(t0);
        }
        assert!(
            last >= Duration::from_secs_f64(995.0 / 50.0 - 0.001),
            "{last:?}"
        );
    }

    #[test]
    fn refills_after_idle() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1.0, 2, t0);
        b.acquire(t0);
        b.acquire(t0);
        assert!(b.acquire(t0) > Duration::ZERO);
        let later = t0 + Duration::from_secs(10);
        assert_eq!(b.acquire(later), Duration::ZERO);
    }
}
