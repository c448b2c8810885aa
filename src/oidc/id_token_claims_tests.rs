//! The claim checks: every refusal of OpenID Connect Core 3.3.2.11 and FAPI 1 Advanced, and
//! the claim shapes a client must accept.

use super::*;

#[test]
fn aud_as_an_array_with_the_client_is_accepted() {
    assert!(verify(&ps256(&with(json!({"aud": [CLIENT]})))).is_ok());
}

#[test]
fn two_audiences_with_the_client_as_azp_are_accepted() {
    let token = ps256(&with(json!({"aud": ["other", CLIENT], "azp": CLIENT})));
    assert!(verify(&token).is_ok());
}

#[test]
fn two_audiences_without_the_client_as_azp_are_refused() {
    refused(
        with(json!({"aud": ["other", CLIENT], "azp": "other"})),
        IdTokenError::WrongAuthorizedParty,
    );
    refused(
        with(json!({"aud": ["other", CLIENT]})),
        IdTokenError::MissingClaim("azp"),
    );
    refused(
        with(json!({"azp": "other"})),
        IdTokenError::WrongAuthorizedParty,
    );
}

#[test]
fn wrong_iss_is_refused() {
    refused(
        with(json!({"iss": "https://evil.example"})),
        IdTokenError::WrongIssuer,
    );
    refused(
        with(json!({"iss": format!("{ISS}/")})),
        IdTokenError::WrongIssuer,
    );
    refused(
        with(json!({"iss": null})),
        IdTokenError::MissingClaim("iss"),
    );
    refused(with(json!({"iss": 7})), IdTokenError::WrongType("iss"));
}

#[test]
fn wrong_aud_is_refused() {
    refused(
        with(json!({"aud": "client-2"})),
        IdTokenError::WrongAudience,
    );
    refused(
        with(json!({"aud": ["client-2"]})),
        IdTokenError::WrongAudience,
    );
    refused(with(json!({"aud": []})), IdTokenError::WrongAudience);
    refused(
        with(json!({"aud": null})),
        IdTokenError::MissingClaim("aud"),
    );
    refused(
        with(json!({"aud": {"id": CLIENT}})),
        IdTokenError::WrongType("aud"),
    );
}

#[test]
fn an_expired_token_is_refused() {
    refused(with(json!({"exp": NOW - 61})), IdTokenError::Expired);
    refused(with(json!({"exp": NOW - 60})), IdTokenError::Expired);
    // Within the leeway: the bank's clock may be behind.
    assert!(verify(&ps256(&with(json!({"exp": NOW - 59})))).is_ok());
}

#[test]
fn a_missing_exp_is_refused() {
    refused(
        with(json!({"exp": null})),
        IdTokenError::MissingClaim("exp"),
    );
    refused(
        with(json!({"exp": "tomorrow"})),
        IdTokenError::WrongType("exp"),
    );
}

#[test]
fn iat_long_ago_is_refused() {
    refused(
        with(json!({"iat": NOW - 3601, "exp": NOW + 300})),
        IdTokenError::TooOld,
    );
    assert!(verify(&ps256(&with(json!({"iat": NOW - 3600})))).is_ok());
    refused(
        with(json!({"iat": null})),
        IdTokenError::MissingClaim("iat"),
    );
}

#[test]
fn iat_in_the_future_is_refused() {
    refused(
        with(json!({"iat": NOW + 61})),
        IdTokenError::IssuedInTheFuture,
    );
    assert!(verify(&ps256(&with(json!({"iat": NOW + 60})))).is_ok());
}

#[test]
fn nbf_in_the_future_is_refused() {
    refused(with(json!({"nbf": NOW + 120})), IdTokenError::NotYetValid);
    assert!(verify(&ps256(&with(json!({"nbf": NOW - 10})))).is_ok());
}

#[test]
fn a_missing_or_wrong_nonce_is_refused() {
    refused(
        with(json!({"nonce": null})),
        IdTokenError::MissingClaim("nonce"),
    );
    refused(with(json!({"nonce": "n-other"})), IdTokenError::WrongNonce);
    refused(with(json!({"nonce": ""})), IdTokenError::WrongNonce);
}

#[test]
fn a_wrong_c_hash_is_refused() {
    refused(
        with(json!({"c_hash": left_half_hash("another-code")})),
        IdTokenError::WrongCHash,
    );
}

#[test]
fn a_missing_c_hash_is_refused_when_a_code_is_given() {
    refused(
        with(json!({"c_hash": null})),
        IdTokenError::MissingClaim("c_hash"),
    );
    let no_code = IdTokenExpectations {
        code: None,
        ..expect()
    };
    let token = ps256(&with(json!({"c_hash": null})));
    assert!(verify_id_token(&token, &bank_jwks(), &no_code, now()).is_ok());
}

#[test]
fn a_wrong_s_hash_is_refused() {
    refused(
        with(json!({"s_hash": left_half_hash("another-state")})),
        IdTokenError::WrongSHash,
    );
}

#[test]
fn a_missing_s_hash_is_refused_only_when_required() {
    let token = ps256(&with(json!({"s_hash": null})));
    assert!(verify(&token).is_ok());
    let strict = IdTokenExpectations {
        require_s_hash: true,
        ..expect()
    };
    assert_eq!(
        verify_id_token(&token, &bank_jwks(), &strict, now()),
        Err(IdTokenError::MissingClaim("s_hash"))
    );
}

#[test]
fn a_wrong_intent_claim_is_refused() {
    refused(
        with(json!({"openbanking_intent_id": "aac-other"})),
        IdTokenError::WrongIntent,
    );
    refused(
        with(json!({"openbanking_intent_id": null})),
        IdTokenError::MissingClaim("openbanking_intent_id"),
    );
}

#[test]
fn a_wrong_intent_in_sub_is_refused() {
    let by_sub = |consent: &str| IdTokenExpectations {
        intent: IntentCheck::Sub(consent.into()),
        ..expect()
    };
    let token = ps256(&with(json!({"openbanking_intent_id": null})));
    let got = verify_id_token(&token, &bank_jwks(), &by_sub(CONSENT), now()).unwrap();
    assert_eq!(got.intent_id.as_deref(), Some(CONSENT));
    assert_eq!(
        verify_id_token(&token, &bank_jwks(), &by_sub("aac-other"), now()),
        Err(IdTokenError::WrongIntent)
    );
}

#[test]
fn without_an_intent_check_the_claim_is_reported_unchecked() {
    let lax = IdTokenExpectations {
        intent: IntentCheck::None,
        ..expect()
    };
    let token = ps256(&with(json!({"openbanking_intent_id": "aac-other"})));
    let got = verify_id_token(&token, &bank_jwks(), &lax, now()).unwrap();
    assert_eq!(got.intent_id.as_deref(), Some("aac-other"));
}
