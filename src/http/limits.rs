//! Who a public request comes from, and how much each client may ask: a token bucket per client
//! and path, so that a flood from one client, or on one path, leaves the others served.
//!
//! Hand-written rather than taken from tower_governor: its `SmartIpKeyExtractor` trusts the
//! left-most `X-Forwarded-For` entry (which any client can forge), and governor's per-key map
//! grows with every new address until swept; here the client is the first hop the platform's
//! own proxies did not write, and memory is capped however many addresses a flood uses.

use crate::provider::TokenBucket;
use axum::http::HeaderMap;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// An address range (`10.0.0.0/8`, `fd00::/8`, or one address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: u128,
    mask: u128,
    v4: bool,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an address or a CIDR range (e.g. 10.0.0.0/8)");
        let (address, length) = match s.trim().split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u32>().map_err(|_| bad())?)),
            None => (s.trim(), None),
        };
        let address: IpAddr = address.parse().map_err(|_| bad())?;
        let (bits, v4, max) = match canonical(address) {
            IpAddr::V4(a) => (u128::from(u32::from(a)), true, 32),
            IpAddr::V6(a) => (u128::from(a), false, 128),
        };
        let length = length.unwrap_or(max);
        if length > max {
            return Err(bad());
        }
        let mask = match length {
            0 => 0,
            l => (u128::MAX << (max - l)) & (u128::MAX >> (128 - max)),
        };
        Ok(Cidr {
            network: bits & mask,
            mask,
            v4,
        })
    }
}

impl Cidr {
    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (canonical(ip), self.v4) {
            (IpAddr::V4(a), true) => u128::from(u32::from(a)) & self.mask == self.network,
            (IpAddr::V6(a), false) => u128::from(a) & self.mask == self.network,
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The client a request comes from: the direct peer, unless it is one of the platform's
/// proxies; then the right-most `X-Forwarded-For` hop that is not a trusted proxy (hops left of
/// it were written by the client and prove nothing).
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    let mut client = canonical(peer);
    if !is_trusted(client) {
        return client;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    for hop in hops.iter().rev() {
        match hop.trim().parse::<IpAddr>().ok().map(canonical) {
            Some(ip) if is_trusted(ip) => client = ip,
            Some(ip) => return ip,
            // Garbage: nothing further left can be trusted either.
            None => return client,
        }
    }
    client
}

/// The budget key of an address: an IPv4 address, or the /64 of an IPv6 one (one host usually
/// holds a whole /64).
fn budget_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => IpAddr::V6((u128::from(a) & (u128::MAX << 64)).into()),
        v4 => v4,
    }
}

/// A token bucket per client with a cap on the clients tracked. When the table is full, idle
/// clients (whose bucket has refilled) are swept, at most once a second; if it is still full,
/// new clients share one overflow bucket, so a flood from countless addresses costs bounded
/// memory and gets one client's budget, while clients already known keep theirs.
pub struct PerClientLimit {
    rate: f64,
    burst: u32,
    max_clients: usize,
    state: Mutex<Clients>,
}

struct Clients {
    buckets: HashMap<IpAddr, (TokenBucket, Instant)>,
    overflow: TokenBucket,
    swept: Instant,
}

impl PerClientLimit {
    /// `rate` requests per second per client, bursts of `burst`, at most `max_clients` tracked.
    pub fn new(rate: f64, burst: u32, max_clients: usize) -> Self {
        let now = Instant::now();
        PerClientLimit {
            rate,
            burst,
            max_clients: max_clients.max(1),
            state: Mutex::new(Clients {
                buckets: HashMap::new(),
                overflow: TokenBucket::new(rate, burst, now),
                swept: now,
            }),
        }
    }

    /// Takes one request of `client`'s budget at `now`; otherwise says how long until there is
    /// one.
    pub fn try_take(&self, client: IpAddr, now: Instant) -> Duration {
        let key = budget_key(client);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let state = &mut *state;
        if let Some((bucket, used)) = state.buckets.get_mut(&key) {
            *used = now;
            return bucket.try_take(now);
        }
        if state.buckets.len() >= self.max_clients
            && now.saturating_duration_since(state.swept) >= Duration::from_secs(1)
        {
            state.swept = now;
            let refilled = Duration::from_secs_f64(f64::from(self.burst) / self.rate.max(0.001));
            state
                .buckets
                .retain(|_, (_, used)| now.saturating_duration_since(*used) < refilled);
        }
        if state.buckets.len() < self.max_clients {
            let mut bucket = TokenBucket::new(self.rate, self.burst, now);
            let wait = bucket.try_take(now);
            state.buckets.insert(key, (bucket, now));
            wait
        } else {
            state.overflow.try_take(now)
        }
    }

    /// Clients tracked now.
    pub fn tracked(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .buckets
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_parse_and_match() {
        let private: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(private.contains(ip("10.1.2.3")));
        assert!(private.contains(ip("::ffff:10.1.2.3")));
        assert!(!private.contains(ip("11.0.0.1")));
        let one: Cidr = "fd00::1".parse().unwrap();
        assert!(one.contains(ip("fd00::1")) && !one.contains(ip("fd00::2")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
    }

    #[test]
    fn the_client_is_the_first_hop_no_trusted_proxy_wrote() {
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", "6.6.6.6, 203.0.113.7".parse().unwrap());
        headers.append("x-forwarded-for", "10.1.2.3".parse().unwrap());
        // Through the platform's proxies: the hop before them, never the forged left-most one.
        assert_eq!(
            client_address(ip("10.9.9.9"), &headers, &trusted),
            ip("203.0.113.7")
        );
        // From anywhere else the header proves nothing.
        assert_eq!(
            client_address(ip("198.51.100.1"), &headers, &trusted),
            ip("198.51.100.1")
        );
        let mut garbage = HeaderMap::new();
        garbage.append("x-forwarded-for", "not-an-ip".parse().unwrap());
        assert_eq!(
            client_address(ip("10.9.9.9"), &garbage, &trusted),
            ip("10.9.9.9")
        );
    }

    #[test]
    fn each_client_has_its_own_budget() {
        let limit = PerClientLimit::new(1.0, 2, 100);
        let now = Instant::now();
        let (a, b) = (ip("192.0.2.1"), ip("192.0.2.2"));
        assert!(limit.try_take(a, now).is_zero());
        assert!(limit.try_take(a, now).is_zero());
        assert!(!limit.try_take(a, now).is_zero(), "a's burst is spent");
        assert!(limit.try_take(b, now).is_zero(), "b is not affected");
        // One IPv6 host is one client whatever address of its /64 it uses.
        assert!(limit.try_take(ip("2001:db8::1"), now).is_zero());
        assert!(limit.try_take(ip("2001:db8::2"), now).is_zero());
        assert!(!limit.try_take(ip("2001:db8::3"), now).is_zero());
    }

    #[test]
    fn a_flood_of_addresses_costs_bounded_memory() {
        let limit = PerClientLimit::new(1.0, 2, 100);
        let start = Instant::now();
        let known = ip("192.0.2.1");
        assert!(limit.try_take(known, start).is_zero());
        let mut granted = 0;
        // 10 000 addresses within one second.
        for i in 0..10_000u32 {
            let at = start + Duration::from_micros(u64::from(i) * 100);
            if limit
                .try_take(IpAddr::V4((0x0a00_0000 + i).into()), at)
                .is_zero()
            {
                granted += 1;
            }
        }
        assert!(limit.tracked() <= 100);
        // 99 new clients got their burst; the rest shared one overflow bucket (its burst of 2
        // and one second of refill).
        assert!(granted <= 99 * 2 + 3, "{granted} granted");
        assert!(limit
            .try_take(known, start + Duration::from_millis(500))
            .is_zero());
    }
}
