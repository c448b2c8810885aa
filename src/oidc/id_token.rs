//! Verifying a bank's id token as a FAPI 1 Advanced relying party (OpenID Connect Core
//! 3.3.2.11, the hybrid flow's `code id_token`). The id token is what binds the code on the
//! redirect to this client, this authorisation request and this consent, so every check that
//! fails refuses the whole redirect.

use super::bank_keys::fits;
use aws_lc_rs::digest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jiff::Timestamp;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

/// Largest id token read; a bank's are a few KiB.
pub const MAX_ID_TOKEN_BYTES: usize = 16 * 1024;

/// How the id token must name the consent (the Open Banking intent) it was issued for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IntentCheck {
    /// `openbanking_intent_id` must equal this consent id.
    Claim(String),
    /// `sub` must equal this consent id (banks that put the consent there).
    Sub(String),
    /// No intent check (the caller binds the consent another way).
    None,
}

/// What the id token of one authorisation must say.
#[derive(Clone)]
pub struct IdTokenExpectations {
    /// The bank's issuer, exactly as its discovery document writes it.
    pub issuer: String,
    /// This client's id at the bank.
    pub client_id: String,
    /// The request object's nonce; when set, the token must carry it.
    pub nonce: Option<String>,
    /// How the consent must be named.
    pub intent: IntentCheck,
    /// The code on the redirect; when set, `c_hash` is required and checked.
    pub code: Option<String>,
    /// The state on the redirect; when set, `s_hash` is checked when present.
    pub state: Option<String>,
    /// With a state, `s_hash` must be present (FAPI 1 Advanced 5.2.2.1).
    pub require_s_hash: bool,
    /// Oldest `iat` accepted, in seconds before now.
    pub max_age_secs: i64,
    /// Clock skew tolerated against the bank, in seconds.
    pub leeway_secs: i64,
}

// The code is a credential until it is exchanged: Debug says only whether it is there.
impl std::fmt::Debug for IdTokenExpectations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdTokenExpectations")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("nonce", &self.nonce.is_some())
            .field("intent", &self.intent)
            .field("code", &self.code.is_some())
            .field("state", &self.state.is_some())
            .field("require_s_hash", &self.require_s_hash)
            .field("max_age_secs", &self.max_age_secs)
            .field("leeway_secs", &self.leeway_secs)
            .finish()
    }
}

/// What a verified id token says.
#[derive(Clone, Debug, PartialEq)]
pub struct IdTokenClaims {
    /// The subject.
    pub sub: String,
    /// The consent it was issued for: the checked one, or `openbanking_intent_id` unchecked.
    pub intent_id: Option<String>,
    /// When it was issued.
    pub iat: Timestamp,
    /// When it expires.
    pub exp: Timestamp,
    /// Every claim, as signed.
    pub claims: Map<String, Value>,
}

/// The check an id token failed; messages never quote the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    /// Not a compact JWS of JSON, or too large.
    #[error("the id token is malformed: {0}")]
    Malformed(&'static str),
    /// Signed with anything but PS256 or ES256 (`none`, HMAC and RS256 included).
    #[error("the id token is signed with {0:?}; only PS256 and ES256 are accepted")]
    AlgorithmNotAllowed(String),
    /// The header lists critical extensions, none of which are understood here.
    #[error("the id token has critical header parameters (crit), which are not supported")]
    CriticalHeader,
    /// The header names no key.
    #[error("the id token's header names no kid")]
    MissingKid,
    /// The kid is not in the bank's JWKS: refetch the JWKS once and retry.
    #[error("the id token's kid names no key in the bank's JWKS")]
    UnknownKid,
    /// The key the kid names cannot verify the header's alg.
    #[error("the key named by the id token's kid cannot verify its alg")]
    KeyNotForAlgorithm,
    /// The signature does not verify.
    #[error("the id token's signature does not verify with the bank's key")]
    BadSignature,
    /// `iss` is not the bank's issuer.
    #[error("the id token was issued by another issuer")]
    WrongIssuer,
    /// `aud` does not name this client.
    #[error("the id token is not addressed to this client")]
    WrongAudience,
    /// `azp` names another client.
    #[error("the id token's azp is not this client")]
    WrongAuthorizedParty,
    /// `exp` has passed.
    #[error("the id token has expired")]
    Expired,
    /// `nbf` is still to come.
    #[error("the id token is not valid yet (nbf)")]
    NotYetValid,
    /// `iat` is in the future.
    #[error("the id token's iat is in the future")]
    IssuedInTheFuture,
    /// `iat` is older than allowed.
    #[error("the id token was issued too long ago")]
    TooOld,
    /// A required claim is absent.
    #[error("the id token has no {0} claim")]
    MissingClaim(&'static str),
    /// A claim has the wrong JSON type or is out of range.
    #[error("the id token's {0} claim has the wrong type")]
    WrongType(&'static str),
    /// `nonce` is not the request's.
    #[error("the id token's nonce is not this authorisation's")]
    WrongNonce,
    /// `c_hash` does not match the code.
    #[error("the id token's c_hash does not match the authorisation code")]
    WrongCHash,
    /// `s_hash` does not match the state.
    #[error("the id token's s_hash does not match the state")]
    WrongSHash,
    /// The token names another consent.
    #[error("the id token was issued for another consent")]
    WrongIntent,
}

/// `c_hash`/`s_hash`/`at_hash` of `value` for PS256 and ES256: base64url of the left-most half
/// of SHA-256 of its ASCII bytes.
pub fn left_half_hash(value: &str) -> String {
    let hash = digest::digest(&digest::SHA256, value.as_bytes());
    URL_SAFE_NO_PAD.encode(&hash.as_ref()[..16])
}

/// Verifies `token` against the bank's `keys` and `expect`, at `now`. The algorithm is
/// checked before any key is looked up; `UnknownKid` asks the caller to refetch the JWKS.
pub fn verify_id_token(
    token: &str,
    keys: &JwkSet,
    expect: &IdTokenExpectations,
    now: Timestamp,
) -> Result<IdTokenClaims, IdTokenError> {
    let (alg, kid) = header(token)?;
    let jwk = key_for(keys, &kid, alg)?;
    let claims = verified_claims(token, jwk, alg)?;
    check_claims(claims, expect, now)
}

fn header(token: &str) -> Result<(Algorithm, String), IdTokenError> {
    use IdTokenError::Malformed;
    if token.len() > MAX_ID_TOKEN_BYTES {
        return Err(Malformed("it is longer than 16 KiB"));
    }
    if token.split('.').count() != 3 {
        return Err(Malformed(
            "it is not a compact JWS (encrypted id tokens are not supported)",
        ));
    }
    let encoded = token.split('.').next().unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| Malformed("its header is not base64url"))?;
    let Ok(Value::Object(header)) = serde_json::from_slice(&bytes) else {
        return Err(Malformed("its header is not a JSON object"));
    };
    let alg = match header.get("alg") {
        Some(Value::String(alg)) if alg == "PS256" => Algorithm::PS256,
        Some(Value::String(alg)) if alg == "ES256" => Algorithm::ES256,
        Some(Value::String(other)) => {
            return Err(IdTokenError::AlgorithmNotAllowed(printable(other)))
        }
        _ => return Err(Malformed("its header names no alg")),
    };
    if header.contains_key("crit") {
        return Err(IdTokenError::CriticalHeader);
    }
    match header.get("kid") {
        Some(Value::String(kid)) if !kid.is_empty() => Ok((alg, kid.clone())),
        _ => Err(IdTokenError::MissingKid),
    }
}

fn key_for<'k>(keys: &'k JwkSet, kid: &str, alg: Algorithm) -> Result<&'k Jwk, IdTokenError> {
    let mut named = keys
        .keys
        .iter()
        .filter(|k| k.common.key_id.as_deref() == Some(kid))
        .peekable();
    if named.peek().is_none() {
        return Err(IdTokenError::UnknownKid);
    }
    named
        .find(|k| fits(k, alg))
        .ok_or(IdTokenError::KeyNotForAlgorithm)
}

fn verified_claims(
    token: &str,
    jwk: &Jwk,
    alg: Algorithm,
) -> Result<Map<String, Value>, IdTokenError> {
    let key = DecodingKey::from_jwk(jwk).map_err(|_| IdTokenError::KeyNotForAlgorithm)?;
    let mut validation = Validation::new(alg);
    // Only the signature is jsonwebtoken's to check: its claim checks read the system clock,
    // and every claim is checked below against the injected one.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    match jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation) {
        Ok(data) => Ok(data.claims),
        Err(e) => Err(match e.kind() {
            ErrorKind::InvalidSignature => IdTokenError::BadSignature,
            ErrorKind::InvalidKeyFormat
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidRsaKey(_) => IdTokenError::KeyNotForAlgorithm,
            ErrorKind::Base64(_) | ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
                IdTokenError::Malformed("its signature or claims are not base64url JSON")
            }
            // Whatever else jsonwebtoken refuses is refused, as unverified.
            _ => IdTokenError::BadSignature,
        }),
    }
}

fn check_claims(
    claims: Map<String, Value>,
    expect: &IdTokenExpectations,
    now: Timestamp,
) -> Result<IdTokenClaims, IdTokenError> {
    use IdTokenError as E;
    if required_str(&claims, "iss")? != expect.issuer {
        return Err(E::WrongIssuer);
    }
    let sub = required_str(&claims, "sub")?.to_string();
    check_audience(&claims, &expect.client_id)?;

    let now = now.as_second();
    let leeway = expect.leeway_secs.max(0);
    let exp = time(&claims, "exp")?.ok_or(E::MissingClaim("exp"))?;
    if exp.as_second() <= now.saturating_sub(leeway) {
        return Err(E::Expired);
    }
    if time(&claims, "nbf")?.is_some_and(|nbf| nbf.as_second() > now.saturating_add(leeway)) {
        return Err(E::NotYetValid);
    }
    let iat = time(&claims, "iat")?.ok_or(E::MissingClaim("iat"))?;
    if iat.as_second() > now.saturating_add(leeway) {
        return Err(E::IssuedInTheFuture);
    }
    if now.saturating_sub(iat.as_second()) > expect.max_age_secs {
        return Err(E::TooOld);
    }

    if let Some(nonce) = &expect.nonce {
        if !same(required_str(&claims, "nonce")?, nonce) {
            return Err(E::WrongNonce);
        }
    }
    if let Some(code) = &expect.code {
        if !same(required_str(&claims, "c_hash")?, &left_half_hash(code)) {
            return Err(E::WrongCHash);
        }
    }
    if let Some(state) = &expect.state {
        match optional_str(&claims, "s_hash")? {
            Some(got) if !same(got, &left_half_hash(state)) => return Err(E::WrongSHash),
            None if expect.require_s_hash => return Err(E::MissingClaim("s_hash")),
            _ => {}
        }
    }

    let intent_id = match &expect.intent {
        IntentCheck::Claim(id) => {
            if required_str(&claims, "openbanking_intent_id")? != id {
                return Err(E::WrongIntent);
            }
            Some(id.clone())
        }
        IntentCheck::Sub(id) => {
            if sub != *id {
                return Err(E::WrongIntent);
            }
            Some(id.clone())
        }
        IntentCheck::None => optional_str(&claims, "openbanking_intent_id")
            .ok()
            .flatten()
            .map(str::to_string),
    };
    Ok(IdTokenClaims {
        sub,
        intent_id,
        iat,
        exp,
        claims,
    })
}

/// `aud` is the client or a list holding it; a list of several needs `azp`, and any `azp`
/// must be the client (OpenID Connect Core 3.1.3.7, items 3 to 5).
fn check_audience(claims: &Map<String, Value>, client_id: &str) -> Result<(), IdTokenError> {
    let azp = optional_str(claims, "azp")?;
    match claims.get("aud") {
        None => return Err(IdTokenError::MissingClaim("aud")),
        Some(Value::String(aud)) if aud == client_id => {}
        Some(Value::Array(auds)) if auds.iter().any(|a| a.as_str() == Some(client_id)) => {
            if auds.len() > 1 && azp.is_none() {
                return Err(IdTokenError::MissingClaim("azp"));
            }
        }
        Some(Value::String(_) | Value::Array(_)) => return Err(IdTokenError::WrongAudience),
        Some(_) => return Err(IdTokenError::WrongType("aud")),
    }
    match azp {
        Some(azp) if azp != client_id => Err(IdTokenError::WrongAuthorizedParty),
        _ => Ok(()),
    }
}

fn optional_str<'c>(
    claims: &'c Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'c str>, IdTokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(IdTokenError::WrongType(name)),
    }
}

fn required_str<'c>(
    claims: &'c Map<String, Value>,
    name: &'static str,
) -> Result<&'c str, IdTokenError> {
    optional_str(claims, name)?.ok_or(IdTokenError::MissingClaim(name))
}

/// A NumericDate claim (seconds, fractions dropped).
fn time(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<Timestamp>, IdTokenError> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let secs = value
        .as_i64()
        .or_else(|| {
            value
                .as_f64()
                .filter(|f| f.is_finite())
                .map(|f| f.floor() as i64)
        })
        .ok_or(IdTokenError::WrongType(name))?;
    Timestamp::from_second(secs)
        .map(Some)
        .map_err(|_| IdTokenError::WrongType(name))
}

/// Compares a claim with what it must be without a timing side channel on how much matched.
fn same(got: &str, want: &str) -> bool {
    got.as_bytes().ct_eq(want.as_bytes()).into()
}

/// Bank-sent text going into an error: a short token of safe characters.
fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(16)
        .collect()
}

#[cfg(test)]
#[path = "id_token_tests.rs"]
mod tests;
