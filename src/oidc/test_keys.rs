//! Keys a test bank signs id tokens with: RSA for PS256, P-256 for ES256, and their JWKs.

use crate::signing::SigningKey;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::sync::OnceLock;

/// A private key, its public JWK and the kid the bank gave it.
pub(crate) struct TestKey {
    /// The private key, for jsonwebtoken's `encode`.
    pub encoding: EncodingKey,
    /// The public key as the bank publishes it.
    pub jwk: Jwk,
    /// The key id in the bank's JWKS.
    pub kid: String,
}

impl TestKey {
    /// A compact JWS of `claims` with header `alg` and this key's kid.
    pub fn sign(&self, alg: Algorithm, claims: &serde_json::Value) -> String {
        self.sign_as(alg, Some(&self.kid), claims)
    }

    /// A compact JWS of `claims` with header `alg` and `kid` (None: no kid).
    pub fn sign_as(&self, alg: Algorithm, kid: Option<&str>, claims: &serde_json::Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

fn rsa(kid: &str) -> TestKey {
    let key = SigningKey::generate().unwrap();
    let pem = key.to_pkcs8_pem().unwrap();
    let (n, e) = key.public_components();
    TestKey {
        encoding: EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        jwk: crate::signing::rsa_jwk(kid, &n, &e),
        kid: kid.to_string(),
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
    TestKey {
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk,
        kid: kid.to_string(),
    }
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

/// An attacker's RSA key that claims the bank's kid.
pub(crate) fn forger_rsa() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| rsa("bank-rsa"))
}

/// The bank's published set: both its keys.
pub(crate) fn bank_jwks() -> JwkSet {
    JwkSet {
        keys: vec![bank_rsa().jwk.clone(), bank_ec().jwk.clone()],
    }
}
