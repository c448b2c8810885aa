//! Each IdTokenFault produces its defect, and only it: in the authorisation response, in the
//! code exchange's answer and in refresh answers.

use crate::common::*;
use fake_provider::{FakeProvider, IdTokenFault, ObAuthoriseOptions, ObOptions};
use jsonwebtoken::errors::ErrorKind;
use serde_json::{json, Value};

const ALL: [IdTokenFault; 17] = [
    IdTokenFault::None,
    IdTokenFault::ForgedSignature,
    IdTokenFault::AlgNone,
    IdTokenFault::Hs256,
    IdTokenFault::WrongIssuer,
    IdTokenFault::WrongAudience,
    IdTokenFault::Expired,
    IdTokenFault::IssuedLongAgo,
    IdTokenFault::MissingExp,
    IdTokenFault::MissingNonce,
    IdTokenFault::WrongNonce,
    IdTokenFault::WrongCHash,
    IdTokenFault::WrongSHash,
    IdTokenFault::WrongIntentId,
    IdTokenFault::UnknownKid,
    IdTokenFault::AudienceArray,
    IdTokenFault::NoAtHash,
];

/// What the id_token is about.
struct Context<'a> {
    consent_id: &'a str,
    code: &'a str,
    /// The access token of a token endpoint answer (`None`: the authorisation response).
    access_token: Option<&'a str>,
}

/// Asserts that `id_token` has exactly the defect of `fault`.
async fn assert_defect(
    fake: &FakeProvider,
    tpp: &Tpp,
    fault: IdTokenFault,
    id_token: &str,
    ctx: &Context<'_>,
) {
    let verified = verify_id_token(fake, tpp, id_token).await;
    let kind = verified.as_ref().err().map(|e| e.kind().clone());
    let unverified = || claims_of(id_token);
    let authorisation = ctx.access_token.is_none();
    let current_kid = fake.jwks()["keys"][0]["kid"].clone();
    match fault {
        IdTokenFault::ForgedSignature => {
            assert_eq!(kind, Some(ErrorKind::InvalidSignature));
            assert_eq!(
                header_of(id_token)["kid"],
                current_kid,
                "claims the real key"
            );
        }
        IdTokenFault::AlgNone => {
            assert_eq!(header_of(id_token)["alg"], "none");
            assert!(id_token.ends_with('.') && id_token.split('.').count() == 3);
            assert!(verified.is_err());
        }
        IdTokenFault::Hs256 => {
            assert_eq!(kind, Some(ErrorKind::InvalidAlgorithm));
            let mut hs = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
            hs.set_audience(&["tpp-a"]);
            let key = jsonwebtoken::DecodingKey::from_secret(b"tpp-a-secret");
            jsonwebtoken::decode::<Value>(id_token, &key, &hs)
                .expect("HMAC with the client secret");
        }
        IdTokenFault::WrongIssuer => {
            assert_eq!(kind, Some(ErrorKind::InvalidIssuer));
            assert_eq!(unverified()["iss"], fake_provider::ob::WRONG_ISSUER);
        }
        IdTokenFault::WrongAudience => {
            assert_eq!(kind, Some(ErrorKind::InvalidAudience));
            assert_eq!(unverified()["aud"], fake_provider::ob::WRONG_AUDIENCE);
        }
        IdTokenFault::Expired => {
            assert_eq!(kind, Some(ErrorKind::ExpiredSignature));
            assert!(
                unverified()["exp"].as_i64().unwrap() < jiff::Timestamp::now().as_second() - 60
            );
        }
        IdTokenFault::MissingExp => {
            assert_eq!(kind, Some(ErrorKind::MissingRequiredClaim("exp".into())));
        }
        IdTokenFault::UnknownKid => {
            let kid = header_of(id_token)["kid"].as_str().unwrap().to_string();
            assert!(fake.jwks()["keys"]
                .as_array()
                .unwrap()
                .iter()
                .all(|k| k["kid"] != kid.as_str()));
            // Signed with the current key all the same.
            let mut jwks = fake.jwks();
            jwks["keys"][0]["kid"] = json!(kid);
            fake_provider::verify_request_object(&jwks, id_token)
                .expect("the current key signed it");
        }
        _ => {
            let c = verified.unwrap_or_else(|e| panic!("{fault:?} must verify: {e}"));
            let nonce = c.get("nonce").and_then(Value::as_str);
            let c_hash = c.get("c_hash").and_then(Value::as_str);
            let s_hash = c.get("s_hash").and_then(Value::as_str);
            match fault {
                IdTokenFault::IssuedLongAgo => {
                    assert!(
                        c["iat"].as_i64().unwrap() < jiff::Timestamp::now().as_second() - 2 * 86400
                    )
                }
                IdTokenFault::MissingNonce => assert_eq!(nonce, None),
                IdTokenFault::WrongNonce => assert_eq!(nonce, Some("nonce-7-wrong")),
                IdTokenFault::WrongCHash => {
                    let wrong = c_hash.expect("a c_hash");
                    assert_ne!(wrong, half_hash(ctx.code));
                    assert_eq!(wrong, half_hash(&format!("{}-wrong", ctx.code)));
                }
                IdTokenFault::WrongSHash => {
                    assert_ne!(s_hash.expect("an s_hash"), half_hash("state-42"));
                }
                IdTokenFault::WrongIntentId => {
                    let intent = c["openbanking_intent_id"].as_str().unwrap();
                    assert!(!intent.is_empty() && intent != ctx.consent_id);
                }
                IdTokenFault::AudienceArray => assert_eq!(c["aud"], json!(["tpp-a"])),
                IdTokenFault::NoAtHash => assert!(c.get("at_hash").is_none()),
                _ => {}
            }
            // Everything else is as in a correct id_token.
            if !matches!(fault, IdTokenFault::MissingNonce | IdTokenFault::WrongNonce) {
                assert_eq!(nonce, Some("nonce-7"), "{fault:?}");
            }
            if fault != IdTokenFault::WrongIntentId {
                assert_eq!(c["openbanking_intent_id"], ctx.consent_id, "{fault:?}");
            }
            if authorisation && fault != IdTokenFault::WrongCHash {
                assert_eq!(c_hash, Some(half_hash(ctx.code).as_str()), "{fault:?}");
            }
            if authorisation && fault != IdTokenFault::WrongSHash {
                assert_eq!(s_hash, Some(half_hash("state-42").as_str()), "{fault:?}");
            }
            if let Some(at) = ctx.access_token.filter(|_| fault != IdTokenFault::NoAtHash) {
                assert_eq!(c["at_hash"], half_hash(at).as_str(), "{fault:?}");
            }
        }
    }
}

#[tokio::test]
async fn each_fault_defaces_the_authorisation_id_token() {
    let fake = bank(ObOptions::default()).await;
    let tpp = Tpp::at(&fake, "tpp-a").await;
    for fault in ALL {
        let options = ObAuthoriseOptions {
            id_token_fault: fault,
            ..ObAuthoriseOptions::default()
        };
        let (consent_id, r) = decided(&fake, &tpp, true, options).await;
        let (_, _, params) = split_redirect(&r.url);
        assert_eq!(Some(&params["id_token"]), r.id_token.as_ref());
        let ctx = Context {
            consent_id: &consent_id,
            code: &params["code"],
            access_token: None,
        };
        assert_defect(&fake, &tpp, fault, &params["id_token"], &ctx).await;
        // The code still works: the fault is the id_token's alone.
        assert_eq!(
            exchange(&fake, &tpp, &params["code"]).await.status(),
            200,
            "{fault:?}"
        );
    }
}

#[tokio::test]
async fn each_fault_defaces_the_code_exchange_id_token() {
    let fake = bank(ObOptions::default()).await;
    let tpp = Tpp::at(&fake, "tpp-a").await;
    for fault in ALL {
        let options = ObAuthoriseOptions {
            exchange_id_token_fault: fault,
            ..ObAuthoriseOptions::default()
        };
        let (consent_id, r) = decided(&fake, &tpp, true, options).await;
        let code = r.code.unwrap();
        let ctx = Context {
            consent_id: &consent_id,
            code: &code,
            access_token: None,
        };
        assert_defect(
            &fake,
            &tpp,
            IdTokenFault::None,
            r.id_token.as_deref().unwrap(),
            &ctx,
        )
        .await;
        let v: Value = exchange(&fake, &tpp, &code).await.json().await.unwrap();
        let access_token = v["access_token"].as_str().unwrap();
        let ctx = Context {
            access_token: Some(access_token),
            ..ctx
        };
        assert_defect(&fake, &tpp, fault, v["id_token"].as_str().unwrap(), &ctx).await;
        if fault == IdTokenFault::None {
            let c = claims_of(v["id_token"].as_str().unwrap());
            assert!(c.get("c_hash").is_none() && c.get("s_hash").is_none());
        }
    }
}

#[tokio::test]
async fn refresh_id_tokens_take_their_own_fault() {
    let fake = bank(ObOptions::default()).await;
    let tpp = Tpp::at(&fake, "tpp-a").await;
    let (_, r) = decided(&fake, &tpp, true, ObAuthoriseOptions::default()).await;
    let v: Value = exchange(&fake, &tpp, r.code.as_deref().unwrap())
        .await
        .json()
        .await
        .unwrap();
    fake.set_refresh_id_token_fault(IdTokenFault::WrongAudience);
    let r: Value = refresh(&fake, &tpp, v["refresh_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    let e = verify_id_token(&fake, &tpp, r["id_token"].as_str().unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::InvalidAudience);
    fake.set_refresh_id_token_fault(IdTokenFault::None);
    let r: Value = refresh(&fake, &tpp, r["refresh_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    verify_id_token(&fake, &tpp, r["id_token"].as_str().unwrap())
        .await
        .unwrap();
}
