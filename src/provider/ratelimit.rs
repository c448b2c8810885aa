//! A token bucket per provider host, so one operator never exceeds the bank's request rate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// One bucket per provider (its rate and burst are the provider's). A call waits for its token
/// in order behind the bucket's fair
/// lock, but never long: a host that answered 429 is paused as a whole until its Retry-After
/// has passed, and a call to a paused host, or to a host with `max_waiters` calls already
/// waiting, is refused at once (`Throttled`: not sent, try again then) instead of waiting.
/// So the lock is held only for the next token, never across a pause, and waiters for one
/// provider never fill the reconcile slots that objects of another provider need.
#[derive(Debug)]
pub struct RateLimiter {
    max_waiters: usize,
    hosts: Mutex<HashMap<String, Arc<Host>>>,
    paused: Mutex<HashMap<String, Instant>>,
}

/// One provider's bucket and how many calls wait for it.
#[derive(Debug)]
struct Host {
    rate: f64,
    burst: u32,
    bucket: tokio::sync::Mutex<TokenBucket>,
    waiting: AtomicUsize,
}

/// A call that was not sent: try again after this long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttled {
    /// How long until the call may go.
    pub retry_after: Duration,
    /// Why: the host is paused (it answered 429), or its queue is full.
    pub paused: bool,
}

/// Counts a waiter for as long as it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl RateLimiter {
    /// A limiter where at most `max_waiters` calls wait for one provider at a time.
    pub fn new(max_waiters: usize) -> Self {
        RateLimiter {
            max_waiters: max_waiters.max(1),
            hosts: Mutex::new(HashMap::new()),
            paused: Mutex::new(HashMap::new()),
        }
    }

    /// Sends nothing to `host` for `pause` (a provider's Retry-After, already capped).
    pub fn pause(&self, host: &str, pause: Duration) {
        let now = Instant::now();
        // A far future is as good as forever, and `Instant` arithmetic must not overflow.
        let until = now
            .checked_add(pause)
            .unwrap_or(now + Duration::from_secs(86_400));
        let mut paused = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        let entry = paused.entry(host.to_string()).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// How long `host` stays paused, if it is.
    fn paused_for(&self, host: &str) -> Option<Duration> {
        let mut paused = self.paused.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match paused.get(host) {
            Some(t) if *t > now => Some(*t - now),
            Some(_) => {
                paused.remove(host);
                None
            }
            None => None,
        }
    }

    /// The bucket of `host` at `rate` and `burst`; a provider whose limits changed gets a new
    /// one.
    fn host(&self, host: &str, rate: f64, burst: u32) -> Arc<Host> {
        let rate = rate.max(0.001);
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        match hosts.get(host) {
            Some(h) if h.rate == rate && h.burst == burst => h.clone(),
            _ => {
                let fresh = Arc::new(Host {
                    rate,
                    burst,
                    bucket: tokio::sync::Mutex::new(TokenBucket::new(rate, burst, Instant::now())),
                    waiting: AtomicUsize::new(0),
                });
                hosts.insert(host.to_string(), fresh.clone());
                fresh
            }
        }
    }

    /// Whether a call to `host` would be refused now, without taking anything.
    pub fn throttled(&self, host: &str) -> Option<Throttled> {
        if let Some(retry_after) = self.paused_for(host) {
            return Some(Throttled {
                retry_after,
                paused: true,
            });
        }
        let hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        let entry = hosts.get(host)?;
        let waiting = entry.waiting.load(Ordering::SeqCst);
        (waiting >= self.max_waiters).then(|| queue_full(waiting, entry.rate))
    }

    /// Waits for a token to call `host` (at `rate` per second, bursts of `burst`), or refuses
    /// at once when the host is paused or too many calls already wait for it.
    pub async fn acquire(&self, host: &str, rate: f64, burst: u32) -> Result<(), Throttled> {
        let throttled = |retry_after| Throttled {
            retry_after,
            paused: true,
        };
        if let Some(pause) = self.paused_for(host) {
            return Err(throttled(pause));
        }
        let entry = self.host(host, rate, burst);
        let waiting = entry.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&entry.waiting);
        if waiting >= self.max_waiters {
            return Err(queue_full(waiting, entry.rate));
        }
        let mut bucket = entry.bucket.lock().await;
        loop {
            // A 429 may have come while this call waited.
            if let Some(pause) = self.paused_for(host) {
                return Err(throttled(pause));
            }
            let delay = bucket.try_take(Instant::now());
            if delay.is_zero() {
                return Ok(());
            }
            tokio::time::sleep(delay).await;
        }
    }
}

/// How long a full queue of `waiting` calls takes to drain at `rate`.
fn queue_full(waiting: usize, rate: f64) -> Throttled {
    let drain = (waiting as f64 + 1.0) / rate;
    Throttled {
        retry_after: Duration::from_secs_f64(drain.clamp(1.0, 3600.0)),
        paused: false,
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
    async fn a_paused_host_refuses_every_call_until_its_retry_after() {
        let limiter = RateLimiter::new(16);
        limiter.pause("bank", Duration::from_millis(300));
        // A shorter pause does not shorten the longer one.
        limiter.pause("bank", Duration::from_millis(10));
        assert_eq!(limiter.acquire("other", 1000.0, 100).await, Ok(()));
        let refused = limiter
            .acquire("bank", 1000.0, 100)
            .await
            .expect_err("paused");
        assert!(refused.paused);
        assert!(refused.retry_after > Duration::from_millis(200));
        assert!(limiter.throttled("bank").is_some());
        tokio::time::sleep(Duration::from_millis(310)).await;
        assert_eq!(limiter.acquire("bank", 1000.0, 100).await, Ok(()));
    }

    #[tokio::test]
    async fn an_endless_retry_after_neither_overflows_nor_blocks_other_hosts() {
        let limiter = RateLimiter::new(16);
        limiter.pause("bank", Duration::from_secs(u64::MAX));
        assert!(limiter.acquire("bank", 1000.0, 100).await.is_err());
        assert_eq!(limiter.acquire("other", 1000.0, 100).await, Ok(()));
    }

    #[tokio::test]
    async fn a_full_queue_refuses_instead_of_holding_another_caller() {
        // 1 request per second, no burst beyond one: the first call goes, two wait, the
        // fourth is refused at once with the time the queue needs to drain.
        let limiter = Arc::new(RateLimiter::new(2));
        assert_eq!(limiter.acquire("bank", 1.0, 1).await, Ok(()));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let l = limiter.clone();
                tokio::spawn(async move { l.acquire("bank", 1.0, 1).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        let refused = limiter
            .acquire("bank", 1.0, 1)
            .await
            .expect_err("queue full");
        assert!(
            started.elapsed() < Duration::from_millis(50),
            "refused at once"
        );
        assert!(!refused.paused);
        assert!(refused.retry_after >= Duration::from_secs(1));
        for w in waiters {
            assert_eq!(w.await.expect("task"), Ok(()));
        }
    }

    #[tokio::test]
    async fn waiters_are_spaced_by_the_rate() {
        let limiter = Arc::new(RateLimiter::new(16));
        let start = tokio::time::Instant::now();
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let l = limiter.clone();
                tokio::spawn(async move {
                    l.acquire("bank", 20.0, 1).await.expect("token");
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
