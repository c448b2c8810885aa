//! The FAPI 1 Advanced relying-party negative tests of the header and the signature (the bank
//! misbehaves, the client must refuse), the fixtures of the claim tests, and the hash vector.

use super::*;
use crate::oidc::test_keys::{bank_ec, bank_jwks, bank_rsa, forger_rsa};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

const ISS: &str = "https://auth.bank.example";
const CLIENT: &str = "client-1";
const NONCE: &str = "n-0S6_WzA2Mj";
const CODE: &str = "SplxlOBeZQQYbYS6WxSbIA";
const STATE: &str = "af0ifjsldkj";
const CONSENT: &str = "aac-1234";
const NOW: i64 = 1_750_000_000;

fn now() -> Timestamp {
    Timestamp::from_second(NOW).unwrap()
}

fn claims() -> Value {
    json!({
        "iss": ISS,
        "sub": CONSENT,
        "aud": CLIENT,
        "exp": NOW + 300,
        "iat": NOW - 10,
        "nonce": NONCE,
        "c_hash": left_half_hash(CODE),
        "s_hash": left_half_hash(STATE),
        "openbanking_intent_id": CONSENT,
        "acr": "urn:openbanking:psd2:sca"
    })
}

/// The good claims with `change` applied; a null removes the claim.
fn with(change: Value) -> Value {
    let mut c = claims();
    for (k, v) in change.as_object().unwrap() {
        match v {
            Value::Null => c.as_object_mut().unwrap().remove(k),
            v => c.as_object_mut().unwrap().insert(k.clone(), v.clone()),
        };
    }
    c
}

fn expect() -> IdTokenExpectations {
    IdTokenExpectations {
        issuer: ISS.into(),
        client_id: CLIENT.into(),
        nonce: Some(NONCE.into()),
        intent: IntentCheck::Claim(CONSENT.into()),
        code: Some(CODE.into()),
        state: Some(STATE.into()),
        require_s_hash: false,
        max_age_secs: 3600,
        leeway_secs: 60,
    }
}

fn ps256(claims: &Value) -> String {
    bank_rsa().sign(Algorithm::PS256, claims)
}

fn verify(token: &str) -> Result<IdTokenClaims, IdTokenError> {
    verify_id_token(token, &bank_jwks(), &expect(), now())
}

fn refused(claims: Value, why: IdTokenError) {
    assert_eq!(verify(&ps256(&claims)), Err(why), "{claims}");
}

fn unsigned(header: Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

#[test]
fn c_hash_matches_the_openid_connect_example() {
    // OpenID Connect Core 1.0, appendix A.4 (SHA-256, as for PS256 and ES256).
    assert_eq!(
        left_half_hash("Qcb0Orv1zh30vL1MPRsbm-diHiMwcLyZvn1arpZv-Jxf_11jnpEX3Tgfvk"),
        "LDktKdoQak3Pk0cnXxCltA"
    );
}

#[test]
fn a_good_ps256_token_is_accepted() {
    let got = verify(&ps256(&claims())).unwrap();
    assert_eq!(got.sub, CONSENT);
    assert_eq!(got.intent_id.as_deref(), Some(CONSENT));
    assert_eq!(got.iat.as_second(), NOW - 10);
    assert_eq!(got.exp.as_second(), NOW + 300);
    assert_eq!(got.claims["acr"], "urn:openbanking:psd2:sca");
}

#[test]
fn no_at_hash_is_needed() {
    assert!(claims().get("at_hash").is_none());
    assert!(verify(&ps256(&claims())).is_ok());
}

#[test]
fn es256_with_a_p256_key_is_accepted() {
    let token = bank_ec().sign(Algorithm::ES256, &claims());
    assert!(verify(&token).is_ok());
}

#[test]
fn a_forged_signature_is_refused() {
    // Another key, the bank's kid.
    assert_eq!(forger_rsa().kid, bank_rsa().kid);
    let forged = forger_rsa().sign(Algorithm::PS256, &claims());
    assert_eq!(verify(&forged), Err(IdTokenError::BadSignature));
}

#[test]
fn a_changed_payload_is_refused() {
    let good = ps256(&claims());
    let parts: Vec<&str> = good.split('.').collect();
    let other = URL_SAFE_NO_PAD.encode(with(json!({"sub": "someone"})).to_string());
    let spliced = format!("{}.{other}.{}", parts[0], parts[2]);
    assert_eq!(verify(&spliced), Err(IdTokenError::BadSignature));
}

#[test]
fn alg_none_is_refused() {
    let token = unsigned(json!({"alg": "none"}), &claims());
    assert_eq!(
        verify(&token),
        Err(IdTokenError::AlgorithmNotAllowed("none".into()))
    );
}

#[test]
fn an_hmac_alg_is_refused() {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(bank_rsa().kid.clone());
    let secret =
        EncodingKey::from_secret(bank_rsa().jwk.common.key_id.as_deref().unwrap().as_bytes());
    let token = jsonwebtoken::encode(&header, &claims(), &secret).unwrap();
    assert_eq!(
        verify(&token),
        Err(IdTokenError::AlgorithmNotAllowed("HS256".into()))
    );
}

#[test]
fn rs256_is_refused() {
    let token = bank_rsa().sign(Algorithm::RS256, &claims());
    assert_eq!(
        verify(&token),
        Err(IdTokenError::AlgorithmNotAllowed("RS256".into()))
    );
}

#[test]
fn the_alg_is_refused_before_any_key_lookup() {
    let token = unsigned(json!({"alg": "none", "kid": "nobody"}), &claims());
    let no_keys = JwkSet { keys: vec![] };
    assert_eq!(
        verify_id_token(&token, &no_keys, &expect(), now()),
        Err(IdTokenError::AlgorithmNotAllowed("none".into()))
    );
}

#[test]
fn an_unknown_kid_asks_for_a_refetch() {
    let token = bank_rsa().sign_as(Algorithm::PS256, Some("rotated"), &claims());
    assert_eq!(verify(&token), Err(IdTokenError::UnknownKid));
}

#[test]
fn a_missing_kid_is_refused() {
    let token = bank_rsa().sign_as(Algorithm::PS256, None, &claims());
    assert_eq!(verify(&token), Err(IdTokenError::MissingKid));
}

#[test]
fn a_key_of_another_type_is_refused() {
    // PS256 in the header, the bank's P-256 key named: the key cannot verify that alg.
    let token = bank_rsa().sign_as(Algorithm::PS256, Some(&bank_ec().kid), &claims());
    assert_eq!(verify(&token), Err(IdTokenError::KeyNotForAlgorithm));
}

#[test]
fn critical_headers_are_refused() {
    let header = json!({"alg": "PS256", "kid": bank_rsa().kid, "crit": ["b64"], "b64": false});
    let token = unsigned(header, &claims());
    assert_eq!(verify(&token), Err(IdTokenError::CriticalHeader));
}

#[test]
fn malformed_tokens_are_refused() {
    for token in [
        "",
        "abc",
        "a.b.c.d.e",
        "!!!.e30.",
        "bnVsbA.e30.",
        &format!("{}.e30.", URL_SAFE_NO_PAD.encode(r#"{"kid":"bank-rsa"}"#)),
        &"a".repeat(MAX_ID_TOKEN_BYTES + 1),
    ] {
        assert!(
            matches!(verify(token), Err(IdTokenError::Malformed(_))),
            "{token:.40}"
        );
    }
}

#[test]
fn messages_never_quote_the_token_or_the_code() {
    let token = ps256(&with(json!({"nonce": "n-other"})));
    let err = verify(&token).unwrap_err();
    let text = format!("{err} {err:?}");
    for part in token.split('.') {
        assert!(!text.contains(part), "{text}");
    }
    let debug = format!("{:?}", expect());
    assert!(!debug.contains(CODE) && !debug.contains(NONCE), "{debug}");
    let hostile = unsigned(json!({"alg": "x\"; secret=1 <script>"}), &claims());
    let err = verify(&hostile).unwrap_err();
    assert_eq!(
        err,
        IdTokenError::AlgorithmNotAllowed("xsecret1script".into())
    );
}

#[path = "id_token_claims_tests.rs"]
mod claims;
