//! Verifies PS256 request objects the way a provider does, against a JWKS, with an RSA
//! implementation (the `rsa` crate) independent of the operator's signing code.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rsa::pss::{Signature, VerifyingKey};
use rsa::sha2::Sha256;
use rsa::signature::Verifier;
use rsa::{BigUint, RsaPublicKey};
use serde_json::Value;

/// Why a request object was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum VerifyError {
    /// Not three base64url parts, or not JSON inside.
    Malformed(&'static str),
    /// The header's alg is not PS256.
    WrongAlgorithm(String),
    /// No key with the header's kid in the JWKS.
    UnknownKid(String),
    /// The JWK cannot be used (not RSA, bad n or e).
    BadKey,
    /// The signature does not verify.
    BadSignature,
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifyError::Malformed(what) => write!(f, "malformed JWS ({what})"),
            VerifyError::WrongAlgorithm(alg) => {
                write!(f, "alg {alg:?} is not allowed (PS256 only)")
            }
            VerifyError::UnknownKid(kid) => write!(f, "no key with kid {kid:?} in the JWKS"),
            VerifyError::BadKey => write!(f, "the JWK is not a usable RSA key"),
            VerifyError::BadSignature => write!(f, "the signature does not verify"),
        }
    }
}

impl std::error::Error for VerifyError {}

fn part(s: &str) -> Result<Vec<u8>, VerifyError> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| VerifyError::Malformed("base64url"))
}

/// Fetches a TPP's JWKS over HTTP, as the provider does at the authorisation step; `Err` says
/// why it could not.
pub(crate) async fn fetch_jwks(http: &reqwest::Client, url: &str) -> Result<Value, &'static str> {
    match http.get(url).send().await {
        Ok(r) if r.status().is_success() => {
            r.json().await.map_err(|_| "the TPP's JWKS is not JSON")
        }
        _ => Err("the TPP's JWKS could not be fetched"),
    }
}

/// Verifies `jwt` against `jwks` (`{"keys": [...]}`) and returns its claims.
pub fn verify_request_object(jwks: &Value, jwt: &str) -> Result<Value, VerifyError> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header_b64, claims_b64, signature_b64] = parts[..] else {
        return Err(VerifyError::Malformed("three parts"));
    };
    let header: Value = serde_json::from_slice(&part(header_b64)?)
        .map_err(|_| VerifyError::Malformed("header JSON"))?;
    let alg = header["alg"].as_str().unwrap_or_default();
    if alg != "PS256" {
        return Err(VerifyError::WrongAlgorithm(alg.to_string()));
    }
    let kid = header["kid"].as_str().unwrap_or_default();
    let jwk = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"].as_str() == Some(kid)))
        .ok_or_else(|| VerifyError::UnknownKid(kid.to_string()))?;
    if jwk["kty"].as_str() != Some("RSA") {
        return Err(VerifyError::BadKey);
    }
    let n = part(jwk["n"].as_str().unwrap_or_default()).map_err(|_| VerifyError::BadKey)?;
    let e = part(jwk["e"].as_str().unwrap_or_default()).map_err(|_| VerifyError::BadKey)?;
    let key = RsaPublicKey::new(BigUint::from_bytes_be(&n), BigUint::from_bytes_be(&e))
        .map_err(|_| VerifyError::BadKey)?;
    let signature = Signature::try_from(part(signature_b64)?.as_slice())
        .map_err(|_| VerifyError::BadSignature)?;
    let signed = format!("{header_b64}.{claims_b64}");
    VerifyingKey::<Sha256>::new(key)
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| VerifyError::BadSignature)?;
    serde_json::from_slice(&part(claims_b64)?).map_err(|_| VerifyError::Malformed("claims JSON"))
}
