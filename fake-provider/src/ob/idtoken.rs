//! The bank's id_tokens (PS256, signed with the current key) and their hostile variants.

use super::discovery::{current_key, forged_key};
use super::{now, options, IdTokenFault, WRONG_AUDIENCE, WRONG_ISSUER};
use crate::idtoken::half_hash;
use crate::server::uuid_v4;
use crate::Shared;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

/// `exp - iat` of the bank's id_tokens.
pub(crate) const LIFETIME_SECS: i64 = 300;

/// The `acr` of a strong customer authentication.
pub(crate) const ACR: &str = "urn:openbanking:psd2:sca";

/// What an id_token is about.
pub(crate) struct About<'a> {
    pub(crate) client_id: &'a str,
    pub(crate) customer_id: &'a str,
    pub(crate) consent_id: &'a str,
    pub(crate) auth_time: i64,
    /// `nonce` of the request object; the refresh answer's id_token has none.
    pub(crate) nonce: Option<&'a str>,
    /// The code and state: the authorisation response's id_token carries their `c_hash` and
    /// `s_hash` (`hashes`); elsewhere only the Wrong*Hash faults use them.
    pub(crate) code: &'a str,
    pub(crate) state: &'a str,
    pub(crate) hashes: bool,
    /// The access token issued with it (token endpoint): its `at_hash`.
    pub(crate) access_token: Option<&'a str>,
}

/// The claims of a correct id_token, then twisted by `fault`.
fn claims(shared: &Shared, about: &About, fault: IdTokenFault) -> Value {
    let iat = now(&shared.state()).as_second();
    let o = options(shared);
    let sub = if o.intent_in_sub {
        about.consent_id
    } else {
        about.customer_id
    };
    let mut c = json!({
        "iss": shared.base_url,
        "sub": sub,
        "aud": about.client_id,
        "openbanking_intent_id": about.consent_id,
        "iat": iat,
        "exp": iat + LIFETIME_SECS,
        "auth_time": about.auth_time,
        "acr": ACR,
    });
    if let Some(nonce) = about.nonce {
        c["nonce"] = json!(nonce);
    }
    if about.hashes {
        c["c_hash"] = json!(half_hash(about.code));
        c["s_hash"] = json!(half_hash(about.state));
    }
    if let Some(at) = about.access_token {
        if fault != IdTokenFault::NoAtHash {
            c["at_hash"] = json!(half_hash(at));
        }
    }
    let Some(map) = c.as_object_mut() else {
        return c;
    };
    match fault {
        IdTokenFault::WrongIssuer => {
            map.insert("iss".into(), json!(WRONG_ISSUER));
        }
        IdTokenFault::WrongAudience => {
            map.insert("aud".into(), json!(WRONG_AUDIENCE));
        }
        IdTokenFault::AudienceArray => {
            map.insert("aud".into(), json!([about.client_id]));
        }
        IdTokenFault::Expired => {
            map.insert("iat".into(), json!(iat - 400));
            map.insert("exp".into(), json!(iat - 100));
            map.insert("auth_time".into(), json!(about.auth_time.min(iat - 400)));
        }
        IdTokenFault::IssuedLongAgo => {
            let long_ago = iat - 3 * 24 * 3600;
            map.insert("iat".into(), json!(long_ago));
            map.insert("auth_time".into(), json!(long_ago));
        }
        IdTokenFault::MissingExp => {
            map.remove("exp");
        }
        IdTokenFault::MissingNonce => {
            map.remove("nonce");
        }
        IdTokenFault::WrongNonce => {
            let nonce = about.nonce.unwrap_or_default();
            map.insert("nonce".into(), json!(format!("{nonce}-wrong")));
        }
        IdTokenFault::WrongCHash => {
            let hash = half_hash(&format!("{}-wrong", about.code));
            map.insert("c_hash".into(), json!(hash));
        }
        IdTokenFault::WrongSHash => {
            let hash = half_hash(&format!("{}-wrong", about.state));
            map.insert("s_hash".into(), json!(hash));
        }
        IdTokenFault::WrongIntentId => {
            let other = uuid_v4();
            if o.intent_in_sub {
                map.insert("sub".into(), json!(other));
            }
            map.insert("openbanking_intent_id".into(), json!(other));
        }
        IdTokenFault::None
        | IdTokenFault::ForgedSignature
        | IdTokenFault::AlgNone
        | IdTokenFault::Hs256
        | IdTokenFault::UnknownKid
        | IdTokenFault::NoAtHash => {}
    }
    c
}

/// `base64url(header).base64url(claims)`.
fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// An id_token about `about`, with `fault`; `None` when no key is available.
pub(crate) fn issue(shared: &Shared, about: &About, fault: IdTokenFault) -> Option<String> {
    let claims = claims(shared, about, fault);
    let key = current_key(shared)?;
    match fault {
        IdTokenFault::ForgedSignature => forged_key(shared)?.sign_with_kid(&claims, key.kid()),
        IdTokenFault::UnknownKid => {
            key.sign_with_kid(&claims, &format!("unknown-{}", super::opaque(12)))
        }
        IdTokenFault::AlgNone => {
            let header = json!({"alg": "none", "typ": "JWT"});
            Some(format!("{}.", signing_input(&header, &claims)))
        }
        IdTokenFault::Hs256 => {
            let secret = shared
                .state()
                .ob
                .clients
                .get(about.client_id)
                .map(|c| c.client_secret.clone())?;
            let header = json!({"alg": "HS256", "kid": key.kid(), "typ": "JWT"});
            let input = signing_input(&header, &claims);
            let hmac = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
            let tag = aws_lc_rs::hmac::sign(&hmac, input.as_bytes());
            Some(format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref())))
        }
        _ => key.sign(&claims),
    }
}
