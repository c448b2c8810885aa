use super::*;
use crate::oidc::test_keys::{bank_ec, bank_jwks, bank_rsa};
use serde_json::json;

const SEC: Duration = Duration::from_secs(1);

fn with_kid(jwk: &Jwk, kid: &str) -> Jwk {
    let mut jwk = jwk.clone();
    jwk.common.key_id = Some(kid.to_string());
    jwk
}

#[test]
fn refetch_when_nothing_is_cached() {
    let now = Instant::now() + 7200 * SEC;
    assert!(should_refetch(None, false, None, now));
    assert!(should_refetch(None, true, Some(now - 31 * SEC), now));
}

#[test]
fn refetch_when_the_keys_are_older_than_an_hour() {
    let now = Instant::now() + 7200 * SEC;
    assert!(!should_refetch(Some(now - 3599 * SEC), true, None, now));
    assert!(should_refetch(Some(now - 3600 * SEC), true, None, now));
}

#[test]
fn refetch_when_a_token_names_an_unknown_kid() {
    let now = Instant::now() + 7200 * SEC;
    let fresh = Some(now - 60 * SEC);
    assert!(!should_refetch(fresh, true, fresh, now));
    assert!(should_refetch(fresh, false, fresh, now));
}

#[test]
fn never_more_than_once_per_30_seconds() {
    let now = Instant::now() + 7200 * SEC;
    let recent = Some(now - 29 * SEC);
    assert!(!should_refetch(None, false, recent, now), "a failing bank");
    assert!(!should_refetch(Some(now - 5000 * SEC), false, recent, now));
    assert!(should_refetch(None, false, Some(now - 30 * SEC), now));
    // A clock that went backwards is no licence to fetch.
    assert!(!should_refetch(None, false, Some(now + SEC), now));
}

#[test]
fn the_cache_keeps_keys_per_issuer() {
    let cache = BankKeyCache::default();
    let t0 = Instant::now();
    assert!(cache.needs_refetch("https://a", Some("bank-rsa"), t0));
    cache.record_attempt("https://a", t0);
    assert!(!cache.needs_refetch("https://a", None, t0 + SEC));
    cache.put("https://a", BankKeys::new(bank_jwks(), t0));
    let keys = cache.get("https://a").unwrap();
    assert_eq!(keys.keys.len(), 2);
    assert!(cache.get("https://b").is_none());
    let later = t0 + 60 * SEC;
    assert!(!cache.needs_refetch("https://a", Some("bank-rsa"), later));
    assert!(cache.needs_refetch("https://a", Some("rotated"), later));
    assert!(cache.needs_refetch("https://a", None, t0 + 3600 * SEC));
}

#[test]
fn the_cache_holds_at_most_64_issuers() {
    let cache = BankKeyCache::default();
    let t0 = Instant::now();
    for i in 0..(MAX_ISSUERS as u64 + 10) {
        let at = t0 + Duration::from_secs(i);
        cache.put(&format!("https://bank{i}"), BankKeys::new(bank_jwks(), at));
    }
    assert_eq!(cache.len(), MAX_ISSUERS);
    assert!(
        cache.get("https://bank0").is_none(),
        "the oldest went first"
    );
    assert!(cache.get("https://bank73").is_some());
    cache.record_attempt("https://new", t0 + 1000 * SEC);
    assert_eq!(cache.len(), MAX_ISSUERS);
}

#[test]
fn at_most_32_keys_are_kept() {
    let keys = (0..50)
        .map(|i| with_kid(&bank_rsa().jwk, &format!("k{i}")))
        .collect();
    let kept = BankKeys::new(JwkSet { keys }, Instant::now());
    assert_eq!(kept.keys().keys.len(), MAX_KEYS);
    assert!(kept.keys().find("k31").is_some());
    assert!(kept.keys().find("k32").is_none());
}

#[test]
fn only_rsa_and_p256_signing_keys_with_a_kid_are_kept() {
    let rsa = serde_json::to_value(&bank_rsa().jwk).unwrap();
    let ec = serde_json::to_value(&bank_ec().jwk).unwrap();
    let variant = |base: &serde_json::Value, kid: &str, change: serde_json::Value| {
        let mut v = base.clone();
        v["kid"] = json!(kid);
        for (k, val) in change.as_object().unwrap() {
            v[k] = val.clone();
        }
        v
    };
    let mut no_use = variant(&rsa, "no-use", json!({}));
    no_use.as_object_mut().unwrap().remove("use");
    let doc = json!({"keys": [
        rsa,
        ec,
        no_use,
        variant(&rsa, "enc", json!({"use": "enc"})),
        variant(&rsa, "rs256", json!({"alg": "RS256"})),
        variant(&rsa, "sign-only", json!({"key_ops": ["sign"]})),
        variant(&rsa, "short", json!({"n": URL_SAFE_NO_PAD.encode([0xffu8; 128])})),
        variant(&ec, "p384", json!({"crv": "P-384"})),
        variant(&ec, "bad-x", json!({"x": "AAAA"})),
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
        {"kid": "garbage"},
        "not a key",
        variant(&rsa, "", json!({})),
    ]});
    let kept = BankKeys::from_json(doc, Instant::now()).unwrap();
    let kids: Vec<_> = kept
        .keys()
        .keys
        .iter()
        .map(|k| k.common.key_id.clone().unwrap_or_default())
        .collect();
    assert_eq!(kids, ["bank-rsa", "bank-ec", "no-use"]);
}

#[test]
fn a_set_without_usable_keys_is_refused() {
    let now = Instant::now();
    assert_eq!(
        BankKeys::from_json(json!({"keys": []}), now).unwrap_err(),
        JwksError::NoUsableKey
    );
    assert_eq!(
        BankKeys::from_json(json!({"keys": {}}), now).unwrap_err(),
        JwksError::NotAKeySet
    );
    assert_eq!(
        BankKeys::from_json(json!([]), now).unwrap_err(),
        JwksError::NotAKeySet
    );
}
