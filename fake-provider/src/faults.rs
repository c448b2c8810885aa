//! Injected faults: what the next calls to an endpoint answer instead of the real thing.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// The fake's endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
pub enum Endpoint {
    /// `POST /api/account/registration`.
    Registration,
    /// `POST /auth/token`, client credentials.
    ClientToken,
    /// `POST /auth/token`, authorisation code.
    AuthCodeToken,
    /// `POST /account-access-consents`.
    ConsentCreate,
    /// `GET /account-access-consents/{id}`.
    ConsentGet,
    /// `DELETE /account-access-consents/{id}`.
    ConsentDelete,
}

/// What a faulty call does.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub enum Fault {
    /// Answer this status with a JSON error body.
    Status(u16),
    /// Answer 429, with `Retry-After: n` when given.
    RateLimited {
        /// Seconds for the Retry-After header.
        retry_after: Option<u64>,
    },
    /// Wait this long, then answer normally (a client with a shorter timeout sees a timeout
    /// while the provider still acts on the request, as a real slow provider would).
    Delay(Duration),
    /// Answer 200 with a truncated JSON body.
    Malformed,
    /// Answer 502 with an HTML page, as a proxy in front of the provider might.
    Html,
}

#[derive(Default)]
pub(crate) struct Faults {
    queues: HashMap<Endpoint, VecDeque<(Fault, Option<u32>)>>,
}

impl Faults {
    pub(crate) fn add(&mut self, endpoint: Endpoint, fault: Fault, times: Option<u32>) {
        self.queues
            .entry(endpoint)
            .or_default()
            .push_back((fault, times));
    }

    pub(crate) fn clear(&mut self) {
        self.queues.clear();
    }

    /// The fault for the next call, consuming one use of it.
    pub(crate) fn take(&mut self, endpoint: Endpoint) -> Option<Fault> {
        let queue = self.queues.get_mut(&endpoint)?;
        let (fault, remaining) = queue.front_mut()?;
        let fault = fault.clone();
        match remaining {
            Some(n) if *n <= 1 => {
                queue.pop_front();
            }
            Some(n) => *n -= 1,
            None => {}
        }
        Some(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_faults_run_out_and_persistent_ones_stay() {
        let mut f = Faults::default();
        f.add(Endpoint::ClientToken, Fault::Status(503), Some(2));
        f.add(Endpoint::ClientToken, Fault::Malformed, None);
        assert_eq!(f.take(Endpoint::ClientToken), Some(Fault::Status(503)));
        assert_eq!(f.take(Endpoint::ClientToken), Some(Fault::Status(503)));
        assert_eq!(f.take(Endpoint::ClientToken), Some(Fault::Malformed));
        assert_eq!(f.take(Endpoint::ClientToken), Some(Fault::Malformed));
        assert_eq!(f.take(Endpoint::Registration), None);
        f.clear();
        assert_eq!(f.take(Endpoint::ClientToken), None);
    }
}
