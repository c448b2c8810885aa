//! The fake's own signing key for id_tokens (PS256), generated once per fake, and its JWKS.

use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PSS_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

/// How long an id_token is valid (`exp - iat`).
pub(crate) const ID_TOKEN_LIFETIME_SECS: i64 = 600;

/// An RSA key with its key id (the RFC 7638 thumbprint).
pub(crate) struct IdTokenKey {
    pair: KeyPair,
    kid: String,
    n: String,
    e: String,
}

impl IdTokenKey {
    pub(crate) fn generate() -> Option<IdTokenKey> {
        let pair = KeyPair::generate(KeySize::Rsa2048).ok()?;
        let public = pair.public_key();
        let n = URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
        let e = URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
        let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
        let kid = URL_SAFE_NO_PAD.encode(digest.as_ref());
        Some(IdTokenKey { pair, kid, n, e })
    }

    /// `{"keys": [the public key]}`.
    pub(crate) fn jwks(&self) -> Value {
        json!({"keys": [self.jwk()]})
    }

    /// The public key as a JWK.
    pub(crate) fn jwk(&self) -> Value {
        json!({
            "kty": "RSA",
            "kid": self.kid,
            "use": "sig",
            "alg": "PS256",
            "n": self.n,
            "e": self.e,
        })
    }

    /// The key id.
    pub(crate) fn kid(&self) -> &str {
        &self.kid
    }

    /// A compact JWS of `claims` with header `{"alg":"PS256","kid":..,"typ":"JWT"}`.
    pub(crate) fn sign(&self, claims: &Value) -> Option<String> {
        self.sign_with_kid(claims, &self.kid)
    }

    /// As [`IdTokenKey::sign`] with another `kid` in the header: hostile id_tokens claim a
    /// key they were not signed with.
    pub(crate) fn sign_with_kid(&self, claims: &Value, kid: &str) -> Option<String> {
        let header = json!({"alg": "PS256", "kid": kid, "typ": "JWT"});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.pair.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.pair
            .sign(
                &RSA_PSS_SHA256,
                &rng,
                signing_input.as_bytes(),
                &mut signature,
            )
            .ok()?;
        Some(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

/// OpenID Connect's `c_hash`/`s_hash`: base64url of the left half of the SHA-256 of `value`.
pub(crate) fn half_hash(value: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16])
}

/// An opaque id_token like the provider's documented sample (`oa_stg_...`).
pub(crate) fn opaque() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    format!(
        "oa_stg_{}",
        Alphanumeric.sample_string(&mut rand::rng(), 32)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_tokens_verify_against_the_jwks_with_an_independent_implementation() {
        let key = IdTokenKey::generate().unwrap();
        let jwt = key.sign(&json!({"sub": "customer"})).unwrap();
        let claims = crate::verify_request_object(&key.jwks(), &jwt).unwrap();
        assert_eq!(claims["sub"], "customer");
        let mut tampered = jwt.clone();
        tampered.insert(jwt.find('.').unwrap() + 2, 'x');
        assert!(crate::verify_request_object(&key.jwks(), &tampered).is_err());
    }

    #[test]
    fn half_hash_matches_the_openid_example() {
        // OpenID Connect Core, A.4: code "Qcb0Orv1zh30vL1MPRsbm-diHiMwcLyZvn1arpZv-Jxf_11jnpEX3Tgfvk"
        // has c_hash "LDktKdoQak3Pk0cnXxCltA".
        assert_eq!(
            half_hash("Qcb0Orv1zh30vL1MPRsbm-diHiMwcLyZvn1arpZv-Jxf_11jnpEX3Tgfvk"),
            "LDktKdoQak3Pk0cnXxCltA"
        );
    }
}
