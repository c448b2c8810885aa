//! Reading a token's real lifetime: the earlier of `expires_in` and the JWT's `exp`.

use crate::api::TokenLifetimeRule;
use base64::Engine;
use jiff::{SignedDuration, Timestamp};

/// The claims of a compact JWS, read without verifying the signature (the provider's keys are
/// not published to TPPs). `None` when the token is not a JWS with a JSON object payload.
pub fn jwt_claims(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        serde_json::Value::Object(claims) => Some(claims),
        _ => None,
    }
}

/// The `exp` claim of a JWT, read without verifying the signature (the key is the provider's).
/// `None` when the token is not a JWT or carries no numeric `exp`.
pub fn jwt_exp(token: &str) -> Option<Timestamp> {
    let claims = jwt_claims(token)?;
    let exp = claims.get("exp")?;
    let secs = exp.as_i64().or_else(|| exp.as_f64().map(|f| f as i64))?;
    Timestamp::from_second(secs).ok()
}

/// When a token obtained at `now` really expires: the earlier of `now + expires_in` and the
/// JWT's `exp`. The provider's sample says `expires_in: 63919` for a token whose `exp - iat`
/// is 300 s, so neither can be trusted alone. `None` when neither is known.
pub fn effective_expiry(now: Timestamp, expires_in: Option<u64>, token: &str) -> Option<Timestamp> {
    let by_expires_in = expires_in
        .and_then(|s| i64::try_from(s).ok())
        .and_then(|s| now.checked_add(SignedDuration::from_secs(s)).ok());
    match (by_expires_in, jwt_exp(token)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Lifetime assumed for a token whose lifetime neither `expires_in` nor a JWT `exp` states.
pub const FALLBACK_LIFETIME: SignedDuration = SignedDuration::from_secs(300);

/// When a token obtained at `now` expires under the provider's `rule` (the earlier of
/// `expires_in` and the JWT's `exp` by default; one of them when the provider says so, the
/// other when it is missing), or `FALLBACK_LIFETIME` after `now` when the provider states
/// nothing. The one rule for client and customer tokens.
pub fn expiry(
    rule: TokenLifetimeRule,
    now: Timestamp,
    expires_in: Option<u64>,
    token: &str,
) -> Timestamp {
    let by_expires_in = || {
        expires_in
            .and_then(|s| i64::try_from(s).ok())
            .and_then(|s| now.checked_add(SignedDuration::from_secs(s)).ok())
    };
    let found = match rule {
        TokenLifetimeRule::Earliest => effective_expiry(now, expires_in, token),
        TokenLifetimeRule::ExpiresIn => by_expires_in().or_else(|| jwt_exp(token)),
        TokenLifetimeRule::JwtExp => jwt_exp(token).or_else(by_expires_in),
    };
    found.unwrap_or_else(|| now.saturating_add(FALLBACK_LIFETIME).unwrap_or(now))
}

/// The access token from the provider's guide: iat 1719855619, exp 1719855919 (300 s).
#[cfg(test)]
pub(crate) const SAMPLE: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ1bmlxdWVfbmFtZSI6IjVEODhEQjBDMDMyMzRENjQ5NEM1NDI0ODEzRkFBQTkxIiwiY2VydGlmaWNhdGUiOiJBZGFvYmk5M0AiLCJuYmYiOjE3MTk4NTU2MTksImV4cCI6MTcxOTg1NTkxOSwiaWF0IjoxNzE5ODU1NjE5fQ.d6PLd8n06fLTx98vbOSSMJSo5AVFZ-lnMmjZuZsuO3c";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exp_of_the_documented_sample() {
        assert_eq!(
            jwt_exp(SAMPLE),
            Some(Timestamp::from_second(1_719_855_919).unwrap())
        );
    }

    #[test]
    fn earlier_of_expires_in_and_exp_wins() {
        let iat = Timestamp::from_second(1_719_855_619).unwrap();
        // expires_in says 63919 s but exp says 300 s: 300 s wins.
        assert_eq!(
            effective_expiry(iat, Some(63_919), SAMPLE),
            Some(Timestamp::from_second(1_719_855_919).unwrap())
        );
        // expires_in shorter than exp: expires_in wins.
        assert_eq!(
            effective_expiry(iat, Some(60), SAMPLE),
            Some(Timestamp::from_second(1_719_855_679).unwrap())
        );
    }

    #[test]
    fn opaque_tokens_fall_back_to_expires_in() {
        let now = Timestamp::from_second(1_000).unwrap();
        assert_eq!(
            effective_expiry(now, Some(10), "opaque"),
            Some(Timestamp::from_second(1_010).unwrap())
        );
        assert_eq!(effective_expiry(now, None, "opaque"), None);
        assert_eq!(
            expiry(TokenLifetimeRule::Earliest, now, None, "opaque"),
            Timestamp::from_second(1_300).unwrap()
        );
        assert_eq!(jwt_exp("a.!!!.c"), None);
    }

    #[test]
    fn the_provider_chooses_which_lifetime_counts() {
        let iat = Timestamp::from_second(1_719_855_619).unwrap();
        let at = |s: i64| Timestamp::from_second(1_719_855_619 + s).unwrap();
        let lifetime = |rule| expiry(rule, iat, Some(63_919), SAMPLE);
        assert_eq!(lifetime(TokenLifetimeRule::Earliest), at(300));
        assert_eq!(lifetime(TokenLifetimeRule::JwtExp), at(300));
        assert_eq!(lifetime(TokenLifetimeRule::ExpiresIn), at(63_919));
        // Without a JWT, jwtExp falls back to expires_in.
        assert_eq!(
            expiry(TokenLifetimeRule::JwtExp, iat, Some(60), "opaque"),
            at(60)
        );
    }
}
