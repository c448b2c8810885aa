//! Signing keys of a TPP: RSA keys (generated or supplied), their public JWK and key id, the
//! JWKS the provider verifies against, and PS256-signed authorisation request objects.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;

mod request_object;
pub use request_object::{IntentClaim, RequestObjectClaims};

/// How long an authorisation request object is valid.
pub const REQUEST_OBJECT_LIFETIME_SECS: i64 = 600;

/// Errors about signing keys; messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// The PEM text is not an RSA private key in PKCS#8 or PKCS#1 form.
    #[error(
        "not an RSA private key in PEM (PKCS#8 \"PRIVATE KEY\" or PKCS#1 \"RSA PRIVATE KEY\")"
    )]
    InvalidPem,
    /// The key is shorter than the 2048 bits Open Banking requires.
    #[error("RSA key of {0} bits is too short; 2048 bits or more are required")]
    TooShort(usize),
    /// Key generation or signing failed inside the crypto library.
    #[error("cryptographic operation failed: {0}")]
    Crypto(String),
}

/// A public key as a JSON Web Key, as published in the JWKS (jsonwebtoken's type).
pub type Jwk = jsonwebtoken::jwk::Jwk;
/// A JSON Web Key Set.
pub type Jwks = jsonwebtoken::jwk::JwkSet;

/// The JWK of an RSA public key for PS256 signatures: `kty`, `kid`, `use: sig`, `alg: PS256`,
/// `n`, `e` (base64url without padding).
pub fn rsa_jwk(kid: &str, n: &str, e: &str) -> Jwk {
    use jsonwebtoken::jwk::{
        AlgorithmParameters, CommonParameters, KeyAlgorithm, PublicKeyUse, RSAKeyParameters,
        RSAKeyType,
    };
    Jwk {
        common: CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(KeyAlgorithm::PS256),
            key_id: Some(kid.to_string()),
            ..Default::default()
        },
        algorithm: AlgorithmParameters::RSA(RSAKeyParameters {
            key_type: RSAKeyType::RSA,
            n: n.to_string(),
            e: e.to_string(),
        }),
    }
}

/// An RSA signing key with its key id, parsed once: signing needs no further parsing.
pub struct SigningKey {
    pair: KeyPair,
    encoding: jsonwebtoken::EncodingKey,
    kid: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a new 2048-bit key; its kid is the RFC 7638 thumbprint.
    pub fn generate() -> Result<Self, SigningError> {
        let pair =
            KeyPair::generate(KeySize::Rsa2048).map_err(|e| SigningError::Crypto(e.to_string()))?;
        Self::with_thumbprint(pair)
    }

    /// Reads a PEM private key; `kid` overrides the thumbprint (use the one registered with the
    /// provider).
    pub fn from_pem(pem: &str, kid: Option<&str>) -> Result<Self, SigningError> {
        let block = pem::parse(pem.trim()).map_err(|_| SigningError::InvalidPem)?;
        let der = block.contents();
        let pair = match block.tag() {
            "PRIVATE KEY" => KeyPair::from_pkcs8(der),
            "RSA PRIVATE KEY" => KeyPair::from_der(der),
            _ => return Err(SigningError::InvalidPem),
        }
        .map_err(|_| SigningError::InvalidPem)?;
        let bits = pair.public_modulus_len() * 8;
        if bits < 2048 {
            return Err(SigningError::TooShort(bits));
        }
        let mut key = Self::with_thumbprint(pair)?;
        if let Some(kid) = kid.map(str::trim).filter(|k| !k.is_empty()) {
            key.kid = kid.to_string();
        }
        Ok(key)
    }

    fn with_thumbprint(pair: KeyPair) -> Result<Self, SigningError> {
        let (n, e) = components(&pair);
        let crypto = |e: jsonwebtoken::errors::Error| SigningError::Crypto(e.to_string());
        let kid = rsa_jwk("", &n, &e)
            .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
            .map_err(crypto)?;
        let pem = pem_encode("PRIVATE KEY", &pkcs8_der(&pair)?);
        let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(crypto)?;
        Ok(SigningKey {
            pair,
            encoding,
            kid,
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public modulus and exponent, base64url without padding.
    pub fn public_components(&self) -> (String, String) {
        components(&self.pair)
    }

    /// The public key as a JWK for PS256 signatures.
    pub fn jwk(&self) -> Jwk {
        let (n, e) = components(&self.pair);
        rsa_jwk(&self.kid, &n, &e)
    }

    /// The private key as PKCS#8 PEM, for the signing-key Secret.
    pub fn to_pkcs8_pem(&self) -> Result<String, SigningError> {
        Ok(pem_encode("PRIVATE KEY", &pkcs8_der(&self.pair)?))
    }

    /// Signs `claims` as a compact JWT with header `{"alg":"PS256","kid":..,"typ":"JWT"}`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, SigningError> {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::PS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| SigningError::Crypto(e.to_string()))
    }
}

fn pkcs8_der(pair: &KeyPair) -> Result<Vec<u8>, SigningError> {
    AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(pair)
        .map(|der| der.as_ref().to_vec())
        .map_err(|e| SigningError::Crypto(e.to_string()))
}

fn components(pair: &KeyPair) -> (String, String) {
    let public = pair.public_key();
    let n = URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
    let e = URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
    (n, e)
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(label, der), config)
}

/// Most keys kept parsed at once (a parsed 2048-bit key with its encoding is a few KiB).
const MAX_CACHED_KEYS: usize = 1024;

/// Parsed signing keys by the Secret they came from, so that a key is parsed once per version
/// of its Secret, not at every reconcile (parsing an RSA key and deriving its thumbprint costs
/// more than the rest of a routine refresh).
#[derive(Default)]
pub struct KeyCache(
    std::sync::Mutex<std::collections::HashMap<KeySource, std::sync::Arc<SigningKey>>>,
);

/// Where a key was read: the Secret's namespace, name and resourceVersion, and the key inside.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeySource {
    /// Namespace of the Secret.
    pub namespace: String,
    /// Name of the Secret.
    pub name: String,
    /// Its resourceVersion when read: a new version is parsed anew.
    pub version: String,
    /// The key holding the PEM and the kid override, if any.
    pub key: String,
    /// The kid override, if any.
    pub kid: Option<String>,
}

impl KeyCache {
    /// The key from `source`, parsed from `pem` only if this version was not parsed before.
    pub fn get_or_parse(
        &self,
        source: KeySource,
        pem: &str,
    ) -> Result<std::sync::Arc<SigningKey>, SigningError> {
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = cache.get(&source) {
            return Ok(key.clone());
        }
        let key = std::sync::Arc::new(SigningKey::from_pem(pem, source.kid.as_deref())?);
        // One entry per Secret: older versions go. Bounded: with more signing registrations
        // than that, a key is parsed again when it comes back (CPU for memory).
        cache.retain(|s, _| s.namespace != source.namespace || s.name != source.name);
        if cache.len() >= MAX_CACHED_KEYS {
            if let Some(victim) = cache.keys().next().cloned() {
                cache.remove(&victim);
            }
        }
        cache.insert(source, key.clone());
        Ok(key)
    }

    /// Forgets the keys of a Secret (its owner was deleted).
    pub fn forget(&self, namespace: &str, name: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|s, _| s.namespace != namespace || s.name != name);
    }

    /// How many keys are kept.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True when no key is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    fn key() -> &'static SigningKey {
        static KEY: OnceLock<SigningKey> = OnceLock::new();
        KEY.get_or_init(|| SigningKey::generate().expect("generate"))
    }

    #[test]
    fn jwk_has_the_fields_the_provider_needs() {
        let json = serde_json::to_value(key().jwk()).unwrap();
        assert_eq!(
            (&json["kty"], &json["use"], &json["alg"]),
            (&"RSA".into(), &"sig".into(), &"PS256".into())
        );
        assert_eq!(json["e"], "AQAB");
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(json["n"].as_str().unwrap())
                .unwrap()
                .len(),
            256,
            "2048-bit modulus"
        );
        assert_eq!(json["kid"], key().kid());
        assert_eq!(key().kid().len(), 43, "base64url SHA-256 thumbprint");
    }

    #[test]
    fn keys_are_parsed_once_per_secret_version() {
        let cache = KeyCache::default();
        let pem = key().to_pkcs8_pem().unwrap();
        let source = |version: &str| KeySource {
            namespace: "ns".into(),
            name: "k".into(),
            version: version.into(),
            key: "private_key".into(),
            kid: None,
        };
        let a = cache.get_or_parse(source("1"), &pem).unwrap();
        // The same version is not parsed again (garbage would fail to parse).
        let b = cache.get_or_parse(source("1"), "garbage").unwrap();
        assert!(std::sync::Arc::ptr_eq(&a, &b));
        assert!(cache.get_or_parse(source("2"), "garbage").is_err());
        cache.get_or_parse(source("3"), &pem).unwrap();
        assert_eq!(cache.len(), 1, "one entry per Secret");
        cache.forget("ns", "k");
        assert!(cache.is_empty());
    }

    #[test]
    fn thumbprint_matches_rfc_7638() {
        // The example of RFC 7638, section 3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let thumbprint = rsa_jwk("2011-04-29", n, "AQAB")
            .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
            .unwrap();
        assert_eq!(thumbprint, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn pem_round_trip_keeps_the_key_and_kid() {
        let pem = key().to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let again = SigningKey::from_pem(&pem, None).unwrap();
        assert_eq!(again.jwk(), key().jwk());
        let named = SigningKey::from_pem(&pem, Some("registered-kid")).unwrap();
        assert_eq!(named.kid(), "registered-kid");
        assert!(!format!("{named:?}").contains("PRIVATE"));
    }

    #[test]
    fn hostile_pem_is_refused_not_a_panic() {
        for text in [
            "-----BEGIN X-----END X-----",
            "-----BEGIN PRIVATE KEY----------END PRIVATE KEY-----",
            "-----BEGIN -----",
            "-----BEGIN PRIVATE KEY-----\n\u{e9}\u{e9}\n-----END PRIVATE KEY-----",
            "-----END PRIVATE KEY-----\n-----BEGIN PRIVATE KEY-----",
            "",
        ] {
            assert!(
                matches!(
                    SigningKey::from_pem(text, None),
                    Err(SigningError::InvalidPem)
                ),
                "{text:?}"
            );
        }
    }

    #[test]
    fn bad_pem_is_refused_without_echoing_it() {
        let err = SigningKey::from_pem(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            None,
        )
        .unwrap_err();
        assert!(matches!(err, SigningError::InvalidPem));
        assert!(SigningKey::from_pem("not pem", None).is_err());
    }

    #[test]
    fn request_object_header_and_claims() {
        let claims = RequestObjectClaims::new(
            "CID",
            "https://bank",
            "https://tpp/cb",
            "consent-1",
            "st",
            "nn",
            1_000,
            600,
        );
        let jwt = key().sign(&claims).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "PS256");
        assert_eq!(header["kid"], key().kid());
        let body: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(body["response_type"], "code id_token");
        assert_eq!(body["scope"], "accounts");
        assert_eq!(
            body["claims"]["id_token"]["openbanking_intent_id"]["value"],
            "consent-1"
        );
        assert_eq!(
            body["claims"]["id_token"]["openbanking_intent_id"]["essential"],
            true
        );
        assert_eq!(body["exp"], 1_600);
    }
}
