//! Request objects signed by the operator verify against its JWK with an independent RSA
//! implementation (the fake provider's verifier), and tampering is detected.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use fake_provider::{verify_request_object, VerifyError};
use serde_json::json;
use tpp_operator::signing::{Jwks, RequestObjectClaims, SigningKey};

fn signed() -> (SigningKey, String, serde_json::Value) {
    let key = SigningKey::generate().expect("key");
    let claims = RequestObjectClaims::new(
        "CID",
        "https://bank.example",
        "https://tpp.example/cb",
        "c-1",
        "state-1",
        "nonce-1",
        1_700_000_000,
        600,
    );
    let jwt = key.sign(&claims).expect("sign");
    let jwks = serde_json::to_value(Jwks {
        keys: vec![key.jwk()],
    })
    .expect("jwks");
    (key, jwt, jwks)
}

#[test]
fn request_object_verifies_against_the_published_jwk() {
    let (_, jwt, jwks) = signed();
    let claims = verify_request_object(&jwks, &jwt).expect("verifies");
    assert_eq!(
        claims["claims"]["id_token"]["openbanking_intent_id"],
        json!({"value": "c-1", "essential": true})
    );
    assert_eq!(claims["client_id"], "CID");
    assert_eq!(claims["redirect_uri"], "https://tpp.example/cb");
}

#[test]
fn tampered_claims_or_signature_fail() {
    let (_, jwt, jwks) = signed();
    let parts: Vec<&str> = jwt.split('.').collect();
    let mut body: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    body["claims"]["id_token"]["openbanking_intent_id"]["value"] = json!("someone-elses-consent");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(body.to_string()),
        parts[2]
    );
    assert_eq!(
        verify_request_object(&jwks, &forged),
        Err(VerifyError::BadSignature)
    );
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    sig[10] ^= 0x01;
    let flipped = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
    assert_eq!(
        verify_request_object(&jwks, &flipped),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn another_key_with_the_same_kid_does_not_verify() {
    let (key, jwt, _) = signed();
    let other = SigningKey::generate().expect("key");
    let mut jwk = other.jwk();
    jwk.kid = key.kid().to_string();
    let jwks = serde_json::to_value(Jwks { keys: vec![jwk] }).unwrap();
    assert_eq!(
        verify_request_object(&jwks, &jwt),
        Err(VerifyError::BadSignature)
    );
    let empty = json!({"keys": []});
    assert!(matches!(
        verify_request_object(&empty, &jwt),
        Err(VerifyError::UnknownKid(_))
    ));
}
