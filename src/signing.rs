//! Signing keys of a TPP: RSA keys (generated or supplied), their public JWK and key id, the
//! JWKS the provider verifies against, and PS256-signed authorisation request objects.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

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

/// A public key as a JSON Web Key, as published in the JWKS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type, `RSA`.
    pub kty: String,
    /// Key id.
    pub kid: String,
    /// Use, `sig`.
    #[serde(rename = "use")]
    pub use_: String,
    /// Algorithm, `PS256`.
    pub alg: String,
    /// Modulus, base64url without padding.
    pub n: String,
    /// Public exponent, base64url without padding.
    pub e: String,
}

/// A JSON Web Key Set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

/// An RSA signing key with its key id.
pub struct SigningKey {
    pair: KeyPair,
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
        Ok(Self::with_thumbprint(pair))
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
        let mut key = Self::with_thumbprint(pair);
        if let Some(kid) = kid.map(str::trim).filter(|k| !k.is_empty()) {
            key.kid = kid.to_string();
        }
        Ok(key)
    }

    fn with_thumbprint(pair: KeyPair) -> Self {
        let (n, e) = components(&pair);
        // RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace.
        let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
        let kid = URL_SAFE_NO_PAD.encode(digest.as_ref());
        SigningKey { pair, kid }
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK for PS256 signatures.
    pub fn jwk(&self) -> Jwk {
        let (n, e) = components(&self.pair);
        Jwk {
            kty: "RSA".into(),
            kid: self.kid.clone(),
            use_: "sig".into(),
            alg: "PS256".into(),
            n,
            e,
        }
    }

    /// The private key as PKCS#8 PEM, for the signing-key Secret.
    pub fn to_pkcs8_pem(&self) -> Result<String, SigningError> {
        let der = self
            .pair
            .as_der()
            .map_err(|e| SigningError::Crypto(e.to_string()))?;
        Ok(pem_encode("PRIVATE KEY", der.as_ref()))
    }

    /// Signs `claims` as a compact JWT with header `{"alg":"PS256","kid":..,"typ":"JWT"}`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, SigningError> {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::PS256);
        header.kid = Some(self.kid.clone());
        let pem = self.to_pkcs8_pem()?;
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|e| SigningError::Crypto(e.to_string()))?;
        jsonwebtoken::encode(&header, claims, &key).map_err(|e| SigningError::Crypto(e.to_string()))
    }
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

/// The `claims.id_token.openbanking_intent_id` member of a request object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentClaim {
    /// The ConsentId.
    pub value: String,
    /// Always true: the provider must bind the id token to this consent.
    pub essential: bool,
}

/// Claims of an authorisation request object (UK Open Banking, PS256).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestObjectClaims {
    /// Issuer: the client id.
    pub iss: String,
    /// Audience: the provider's base URL.
    pub aud: String,
    /// `code id_token`.
    pub response_type: String,
    /// The client id.
    pub client_id: String,
    /// Where the provider sends the customer back.
    pub redirect_uri: String,
    /// `accounts`.
    pub scope: String,
    /// Opaque value echoed back on the redirect; binds it to one AccountConsent.
    pub state: String,
    /// Replay protection for the id token.
    pub nonce: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expiry (Unix seconds).
    pub exp: i64,
    /// `{"id_token": {"openbanking_intent_id": {"value": ConsentId, "essential": true}}}`.
    pub claims: serde_json::Value,
}

impl RequestObjectClaims {
    /// The claims for `consent_id`, valid from `iat` for `lifetime_secs`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client_id: &str,
        audience: &str,
        redirect_uri: &str,
        consent_id: &str,
        state: &str,
        nonce: &str,
        iat: i64,
        lifetime_secs: i64,
    ) -> Self {
        let intent = IntentClaim {
            value: consent_id.to_string(),
            essential: true,
        };
        RequestObjectClaims {
            iss: client_id.to_string(),
            aud: audience.to_string(),
            response_type: "code id_token".into(),
            client_id: client_id.to_string(),
            redirect_uri: redirect_uri.to_string(),
            scope: "accounts".into(),
            state: state.to_string(),
            nonce: nonce.to_string(),
            iat,
            exp: iat + lifetime_secs,
            claims: serde_json::json!({"id_token": {"openbanking_intent_id": intent}}),
        }
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
        let jwk = key().jwk();
        assert_eq!(
            (jwk.kty.as_str(), jwk.use_.as_str(), jwk.alg.as_str()),
            ("RSA", "sig", "PS256")
        );
        assert_eq!(jwk.e, "AQAB");
        assert_eq!(
            URL_SAFE_NO_PAD.decode(&jwk.n).unwrap().len(),
            256,
            "2048-bit modulus"
        );
        let json = serde_json::to_value(&jwk).unwrap();
        assert_eq!(json["use"], "sig");
        assert_eq!(jwk.kid, key().kid());
        assert_eq!(jwk.kid.len(), 43, "base64url SHA-256 thumbprint");
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
