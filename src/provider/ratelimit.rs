//! A token bucket per provider host, so one operator never exceeds the bank's request rate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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

    /// Takes one token at `now` if there is one; otherwise takes nothing and says how long
    /// until there will be. Nothing is reserved for the future, so callers that wake up late
    /// (a busy executor) still cannot send more than the rate allows.
    pub fn try_take(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }
}

/// One bucket per provider host; waiters queue in order behind the bucket's lock. A host that
/// answered 429 is paused as a whole until its Retry-After has passed: every object calling it
/// waits, not only the one that was told.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: u32,
    buckets: Mutex<HashMap<String, Arc<tokio::sync::Mutex<TokenBucket>>>>,
    paused: Mutex<HashMap<String, Instant>>,
}

impl RateLimiter {
    /// `rate` requests per second per host with bursts of `burst`.
    pub fn new(rate: f64, burst: u32) -> Self {
        RateLimiter {
            rate,
            burst,
            buckets: Mutex::new(HashMap::new()),
            paused: Mutex::new(HashMap::new()),
        }
    }

    /// Sends nothing to `host` before `until`.
    pub fn pause(&self, host: &str, until: Instant) {
        let mut paused = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        let entry = paused.entry(host.to_string()).or_insert(until);
        *entry = (*entry).max(until);
    }

    fn paused_until(&self, host: &str) -> Option<Instant> {
        let mut paused = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        match paused.get(host) {
            Some(t) if *t > Instant::now() => Some(*t),
            Some(_) => {
                paused.remove(host);
                None
            }
            None => None,
        }
    }

    /// Waits until a request to `host` is allowed. The bucket's lock is fair (first come, first
    /// served) and is held while waiting, so one waiter at a time takes the next token.
    pub async fn wait(&self, host: &str) {
        let bucket = {
            let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
            buckets
                .entry(host.to_string())
                .or_insert_with(|| {
                    Arc::new(tokio::sync::Mutex::new(TokenBucket::new(
                        self.rate,
                        self.burst,
                        Instant::now(),
                    )))
                })
                .clone()
        };
        let mut bucket = bucket.lock().await;
        while let Some(until) = self.paused_until(host) {
            tokio::time::sleep_until(until.into()).await;
        }
        loop {
            let delay = bucket.try_take(Instant::now());
            if delay.is_zero() {
                return;
            }
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
            assert_eq!(b.try_take(t0), Duration::ZERO);
        }
        // The fourth request in the same instant must wait one interval, and asking again does
        // not push it further back (nothing is reserved).
        assert_eq!(b.try_take(t0), Duration::from_millis(100));
        assert_eq!(b.try_take(t0), Duration::from_millis(100));
        assert_eq!(b.try_take(t0 + Duration::from_millis(100)), Duration::ZERO);
    }

    #[test]
    fn never_exceeds_rate_over_a_window() {
        // Callers hammering the bucket every millisecond for 10 s at 50 req/s with a burst of
        // 5 get at most 5 + 50 * 10 tokens, however late they look.
        let t0 = Instant::now();
        let mut b = TokenBucket::new(50.0, 5, t0);
        let mut granted = 0;
        for ms in 0..10_000u64 {
            let now = t0 + Duration::from_millis(ms);
            while b.try_take(now).is_zero() {
                granted += 1;
            }
        }
        assert!((500..=505).contains(&granted), "{granted}");
    }

    #[test]
    fn a_late_waker_gets_no_backlog() {
        // An executor stalled for 10 s must not release the requests of those 10 s at once.
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 2, t0);
        let late = t0 + Duration::from_secs(10);
        let mut burst = 0;
        while b.try_take(late).is_zero() {
            burst += 1;
        }
        assert_eq!(burst, 2, "only the burst is available at once");
    }

    #[tokio::test]
    async fn a_paused_host_waits_for_everyone() {
        let limiter = RateLimiter::new(1000.0, 100);
        let start = tokio::time::Instant::now();
        limiter.pause("bank", Instant::now() + Duration::from_millis(300));
        // A shorter pause does not shorten the longer one.
        limiter.pause("bank", Instant::now() + Duration::from_millis(10));
        limiter.wait("other").await;
        assert!(start.elapsed() < Duration::from_millis(100));
        limiter.wait("bank").await;
        assert!(
            start.elapsed() >= Duration::from_millis(300),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn waiters_are_spaced_by_the_rate() {
        let limiter = Arc::new(RateLimiter::new(20.0, 1));
        let start = tokio::time::Instant::now();
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let l = limiter.clone();
                tokio::spawn(async move {
                    l.wait("bank").await;
                    tokio::time::Instant::now()
                })
            })
            .collect();
        let mut times = Vec::new();
        for t in tasks {
            times.push(t.await.expect("task"));
        }
        times.sort();
        // 10 grants at 20/s with a burst of 1 span at least 9 intervals of 50 ms.
        assert!(
            times[9] - start >= Duration::from_millis(440),
            "{:?}",
            times[9] - start
        );
    }
}
