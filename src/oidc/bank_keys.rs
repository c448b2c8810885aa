//! A bank's signing keys (the JWKS at its `jwks_uri`), kept per issuer. Bounded everywhere,
//! and refetched on a schedule a hostile or broken bank cannot turn into a fetch per request.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::Algorithm;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most issuers whose keys are kept.
pub const MAX_ISSUERS: usize = 64;
/// Most keys kept from one JWKS; further keys are dropped.
pub const MAX_KEYS: usize = 32;
/// Largest JWKS accepted, for `fetch_json`'s cap.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;
/// Keys older than this are fetched again, so a key the bank withdrew stops being trusted.
pub const MAX_KEY_AGE: Duration = Duration::from_secs(3600);
/// Fewest seconds between two fetches for one issuer, whatever tokens arrive.
pub const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// Why a fetched JWKS cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// The document is not `{"keys": [...]}`.
    #[error("the bank's JWKS is not a JSON object with a keys array")]
    NotAKeySet,
    /// Nothing in the set can verify an id token.
    #[error("the bank's JWKS has no RSA (PS256) or P-256 (ES256) signing key with a kid")]
    NoUsableKey,
}

/// The keys of one bank that can verify its id tokens, and when they were fetched.
#[derive(Clone, Debug)]
pub struct BankKeys {
    keys: Arc<JwkSet>,
    fetched_at: Instant,
}

impl BankKeys {
    /// Keeps the keys of `set` that can verify an id token, at most `MAX_KEYS`.
    pub fn new(set: JwkSet, fetched_at: Instant) -> Self {
        let keys = set
            .keys
            .into_iter()
            .filter(|k| {
                k.common
                    .key_id
                    .as_deref()
                    .is_some_and(|kid| !kid.is_empty())
            })
            .filter(|k| fits(k, Algorithm::PS256) || fits(k, Algorithm::ES256))
            .take(MAX_KEYS)
            .collect();
        BankKeys {
            keys: Arc::new(JwkSet { keys }),
            fetched_at,
        }
    }

    /// Reads a fetched JWKS; entries that are not JWKs are skipped, as are unusable keys.
    pub fn from_json(value: serde_json::Value, fetched_at: Instant) -> Result<Self, JwksError> {
        let serde_json::Value::Object(mut doc) = value else {
            return Err(JwksError::NotAKeySet);
        };
        let Some(serde_json::Value::Array(entries)) = doc.remove("keys") else {
            return Err(JwksError::NotAKeySet);
        };
        let keys = entries
            .into_iter()
            .filter_map(|entry| serde_json::from_value::<Jwk>(entry).ok())
            .collect();
        let kept = Self::new(JwkSet { keys }, fetched_at);
        if kept.keys.keys.is_empty() {
            return Err(JwksError::NoUsableKey);
        }
        Ok(kept)
    }

    /// The kept keys.
    pub fn keys(&self) -> &Arc<JwkSet> {
        &self.keys
    }

    /// When they were fetched.
    pub fn fetched_at(&self) -> Instant {
        self.fetched_at
    }
}

/// Whether `jwk` may verify a signature made with `alg`: an RSA key of 2048 to 8192 bits for
/// PS256 or a P-256 key for ES256, meant for signatures, and not labelled for another alg.
pub(crate) fn fits(jwk: &Jwk, alg: Algorithm) -> bool {
    let common = &jwk.common;
    let for_signing = matches!(common.public_key_use, None | Some(PublicKeyUse::Signature))
        && common
            .key_operations
            .as_ref()
            .is_none_or(|ops| ops.contains(&KeyOperations::Verify));
    let labelled = matches!(
        (common.key_algorithm, alg),
        (None, _)
            | (Some(KeyAlgorithm::PS256), Algorithm::PS256)
            | (Some(KeyAlgorithm::ES256), Algorithm::ES256)
    );
    let shaped = match (&jwk.algorithm, alg) {
        (AlgorithmParameters::RSA(rsa), Algorithm::PS256) => {
            let modulus = decoded_len(&rsa.n, true);
            (256..=1024).contains(&modulus) && decoded_len(&rsa.e, true) > 0
        }
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => {
            ec.curve == EllipticCurve::P256
                && decoded_len(&ec.x, false) == 32
                && decoded_len(&ec.y, false) == 32
        }
        _ => false,
    };
    for_signing && labelled && shaped
}

/// Length of a base64url value in bytes, leading zero bytes excluded when `strip` (an RSA
/// integer's size); 0 when it is not base64url.
fn decoded_len(value: &str, strip: bool) -> usize {
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(value) else {
        return 0;
    };
    if strip {
        bytes.iter().skip_while(|b| **b == 0).count()
    } else {
        bytes.len()
    }
}

/// Whether to fetch an issuer's JWKS now: when none is cached, when it is older than
/// `MAX_KEY_AGE`, or when a token names a kid it lacks (the bank rotated its keys); never
/// within `MIN_REFETCH_INTERVAL` of the last attempt, failed or not.
pub fn should_refetch(
    cached_at: Option<Instant>,
    kid_found: bool,
    last_fetch_attempt: Option<Instant>,
    now: Instant,
) -> bool {
    if last_fetch_attempt.is_some_and(|at| now.saturating_duration_since(at) < MIN_REFETCH_INTERVAL)
    {
        return false;
    }
    match cached_at {
        None => true,
        Some(at) => now.saturating_duration_since(at) >= MAX_KEY_AGE || !kid_found,
    }
}

#[derive(Default)]
struct Entry {
    keys: Option<BankKeys>,
    last_attempt: Option<Instant>,
}

impl Entry {
    fn touched(&self) -> Option<Instant> {
        let fetched = self.keys.as_ref().map(BankKeys::fetched_at);
        fetched.max(self.last_attempt)
    }
}

/// Banks' keys by issuer, at most `MAX_ISSUERS` of them.
#[derive(Default)]
pub struct BankKeyCache(Mutex<HashMap<String, Entry>>);

impl BankKeyCache {
    /// The keys cached for `issuer`.
    pub fn get(&self, issuer: &str) -> Option<Arc<JwkSet>> {
        let cache = self.lock();
        cache.get(issuer)?.keys.as_ref().map(|k| k.keys.clone())
    }

    /// Keeps `keys` for `issuer`, replacing older ones.
    pub fn put(&self, issuer: &str, keys: BankKeys) {
        self.with_entry(issuer, |entry| entry.keys = Some(keys));
    }

    /// Notes that a fetch for `issuer` starts at `at`, so a failing bank is not asked again
    /// before `MIN_REFETCH_INTERVAL`.
    pub fn record_attempt(&self, issuer: &str, at: Instant) {
        self.with_entry(issuer, |entry| entry.last_attempt = Some(at));
    }

    /// `should_refetch` for `issuer`, given the kid a token names (None: no token in hand).
    pub fn needs_refetch(&self, issuer: &str, kid: Option<&str>, now: Instant) -> bool {
        let cache = self.lock();
        let entry = cache.get(issuer);
        let keys = entry.and_then(|e| e.keys.as_ref());
        let kid_found = match (kid, keys) {
            (Some(kid), Some(keys)) => keys.keys.find(kid).is_some(),
            _ => true,
        };
        should_refetch(
            keys.map(BankKeys::fetched_at),
            kid_found,
            entry.and_then(|e| e.last_attempt),
            now,
        )
    }

    /// How many issuers are kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no issuer is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn with_entry(&self, issuer: &str, update: impl FnOnce(&mut Entry)) {
        let mut cache = self.lock();
        if !cache.contains_key(issuer) && cache.len() >= MAX_ISSUERS {
            // The issuer least recently fetched goes: it is the likeliest to be gone.
            let victim = cache
                .iter()
                .min_by_key(|(_, e)| e.touched())
                .map(|(k, _)| k.clone());
            if let Some(victim) = victim {
                cache.remove(&victim);
            }
        }
        update(cache.entry(issuer.to_string()).or_default());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
#[path = "bank_keys_tests.rs"]
mod tests;
