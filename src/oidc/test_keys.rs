//! Keys of a test bank: RSA for PS256, P-256 for ES256, as the JWKs it publishes.

use crate::signing::SigningKey;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use std::sync::OnceLock;

/// The public half of a test bank's key.
pub(crate) struct TestKey {
    /// The public key as the bank publishes it.
    pub jwk: Jwk,
}

fn rsa(kid: &str) -> TestKey {
    let key = SigningKey::generate().unwrap();
    let (n, e) = key.public_components();
    TestKey {
        jwk: crate::signing::rsa_jwk(kid, &n, &e),
    }
}

fn ec(kid: &str) -> TestKey {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    // Uncompressed point: 0x04, then x and y of 32 bytes each.
    let point = pair.public_key().as_ref();
    let jwk = Jwk {
        common: CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(KeyAlgorithm::ES256),
            key_id: Some(kid.to_string()),
            ..Default::default()
        },
        algorithm: AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
            key_type: EllipticCurveKeyType::EC,
            curve: EllipticCurve::P256,
            x: URL_SAFE_NO_PAD.encode(&point[1..33]),
            y: URL_SAFE_NO_PAD.encode(&point[33..65]),
        }),
    };
    TestKey { jwk }
}

/// The bank's RSA key, kid `bank-rsa`.
pub(crate) fn bank_rsa() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| rsa("bank-rsa"))
}

/// The bank's P-256 key, kid `bank-ec`.
pub(crate) fn bank_ec() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| ec("bank-ec"))
}

/// The bank's published set: both its keys.
pub(crate) fn bank_jwks() -> JwkSet {
    JwkSet {
        keys: vec![bank_rsa().jwk.clone(), bank_ec().jwk.clone()],
    }
}
