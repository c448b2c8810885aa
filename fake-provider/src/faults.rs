//! Injected faults: what the next calls to an endpoint answer instead of the real thing.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// The fake's endpoints. Paths are Leatherback's; in the Open Banking UK profile the same
/// variants stand for that profile's route doing the same job (`POST /token`,
/// `{prefix}/account-access-consents`), and the last four exist only there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
pub enum Endpoint {
    /// `POST /api/account/registration`.
    Registration,
    /// `POST /auth/token` (OB: `POST /token`), client credentials.
    ClientToken,
    /// `POST /auth/token` (OB: `POST /token`), authorisation code.
    AuthCodeToken,
    /// `POST /account-access-consents` (OB: under the API prefix).
    ConsentCreate,
    /// `GET /account-access-consents/{id}` (OB: under the API prefix).
    ConsentGet,
    /// `DELETE /account-access-consents/{id}` (OB: under the API prefix).
    ConsentDelete,
    /// OB only: `POST /token`, refresh token.
    RefreshToken,
    /// OB only: `GET /.well-known/openid-configuration`.
    Discovery,
    /// OB only: `GET /jwks` (Leatherback's `/.well-known/jwks.json` takes no faults).
    Jwks,
    /// OB only: `GET /authorize` (Leatherback's takes no faults).
    Authorize,
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
    /// Answer this redirect status (301, 302, 303, 307 or 308) with `Location: location` and an
    /// empty body. A client that follows it would send the request (password, signature
    /// certificate, bearer token) to wherever `location` points.
    Redirect {
        /// 301, 302, 303, 307 or 308.
        status: u16,
        /// The `Location` header.
        location: String,
    },
    /// Answer 200 with a `bytes`-long body that starts like the endpoint's JSON answer
    /// (`{"access_token":"aaaa…`) and never ends, for clients without a size cap.
    Oversized {
        /// Length of the body (capped at [`MAX_OVERSIZED_BYTES`]).
        bytes: usize,
    },
    /// Token endpoints only: issue a genuine token that is already expired on arrival (JWT
    /// `exp` 10 s before `iat`, `expires_in` 0; OB: an opaque token the fake already considers
    /// expired, `expires_in` 0). Ignored on other endpoints.
    ExpiredToken,
    /// Token endpoints only: answer 200 with an `access_token` that is not an RFC 6750 bearer
    /// token ([`MALFORMED_ACCESS_TOKEN`], with CR LF and a space). Ignored on other endpoints.
    MalformedToken,
}

/// Largest body an [`Fault::Oversized`] answer sends (256 MiB).
pub const MAX_OVERSIZED_BYTES: usize = 256 * 1024 * 1024;

/// The `access_token` of a [`Fault::MalformedToken`] answer: a header-injection attempt.
pub const MALFORMED_ACCESS_TOKEN: &str = "abc\r\nX-Injected: 1";

/// The redirect statuses [`Fault::Redirect`] accepts.
pub const REDIRECT_STATUSES: [u16; 5] = [301, 302, 303, 307, 308];

impl Endpoint {
    /// A token endpoint, whatever the grant.
    pub fn is_token(self) -> bool {
        matches!(
            self,
            Endpoint::ClientToken | Endpoint::AuthCodeToken | Endpoint::RefreshToken
        )
    }

    /// How a JSON answer of this endpoint starts, for [`Fault::Oversized`].
    pub(crate) fn json_prefix(self) -> &'static str {
        match self {
            Endpoint::Registration => "{\"Certificate\":\"",
            Endpoint::ClientToken | Endpoint::AuthCodeToken | Endpoint::RefreshToken => {
                "{\"access_token\":\""
            }
            Endpoint::ConsentCreate | Endpoint::ConsentGet | Endpoint::ConsentDelete => {
                "{\"Data\":{\"ConsentId\":\""
            }
            Endpoint::Discovery => "{\"issuer\":\"",
            Endpoint::Jwks => "{\"keys\":[{\"kty\":\"",
            // The customer's login page.
            Endpoint::Authorize => "<!DOCTYPE html><html><body>",
        }
    }
}

impl Fault {
    /// Whether this fault makes sense on `endpoint` (the admin API refuses the others).
    pub fn check(&self, endpoint: Endpoint) -> Result<(), String> {
        match self {
            Fault::Redirect { status, location } => {
                if !REDIRECT_STATUSES.contains(status) {
                    return Err(format!(
                        "Redirect status must be one of {REDIRECT_STATUSES:?}, not {status}"
                    ));
                }
                if location.is_empty() || location.chars().any(char::is_control) {
                    return Err("Redirect location must be a non-empty header value".into());
                }
                Ok(())
            }
            Fault::Oversized { bytes } if *bytes > MAX_OVERSIZED_BYTES => Err(format!(
                "Oversized bytes must be at most {MAX_OVERSIZED_BYTES}"
            )),
            Fault::ExpiredToken | Fault::MalformedToken if !endpoint.is_token() => Err(format!(
                "{self:?} only applies to ClientToken, AuthCodeToken and RefreshToken"
            )),
            _ => Ok(()),
        }
    }
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

    #[test]
    fn hostile_faults_have_documented_json_shapes() {
        let redirect: Fault = serde_json::from_str(
            r#"{"Redirect": {"status": 307, "location": "http://127.0.0.1:1/steal"}}"#,
        )
        .unwrap();
        assert_eq!(
            redirect,
            Fault::Redirect {
                status: 307,
                location: "http://127.0.0.1:1/steal".into()
            }
        );
        let oversized: Fault =
            serde_json::from_str(r#"{"Oversized": {"bytes": 1048576}}"#).unwrap();
        assert_eq!(oversized, Fault::Oversized { bytes: 1 << 20 });
        assert_eq!(
            serde_json::from_str::<Fault>(r#""ExpiredToken""#).unwrap(),
            Fault::ExpiredToken
        );
        assert_eq!(
            serde_json::from_str::<Fault>(r#""MalformedToken""#).unwrap(),
            Fault::MalformedToken
        );
    }

    #[test]
    fn nonsensical_faults_are_refused() {
        let redirect = |status| Fault::Redirect {
            status,
            location: "http://x".into(),
        };
        assert!(redirect(307).check(Endpoint::Registration).is_ok());
        assert!(redirect(200).check(Endpoint::Registration).is_err());
        assert!(redirect(304).check(Endpoint::Registration).is_err());
        let injected = Fault::Redirect {
            status: 302,
            location: "http://x\r\nSet-Cookie: a=b".into(),
        };
        assert!(injected.check(Endpoint::ClientToken).is_err());
        assert!(Fault::ExpiredToken.check(Endpoint::ClientToken).is_ok());
        assert!(Fault::MalformedToken.check(Endpoint::AuthCodeToken).is_ok());
        assert!(Fault::ExpiredToken.check(Endpoint::ConsentCreate).is_err());
        assert!(Fault::Oversized {
            bytes: MAX_OVERSIZED_BYTES + 1
        }
        .check(Endpoint::ConsentGet)
        .is_err());
        assert!(MALFORMED_ACCESS_TOKEN.contains("\r\n") && MALFORMED_ACCESS_TOKEN.contains(' '));
    }
}
