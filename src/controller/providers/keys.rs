//! A standard bank's signing keys, as its id tokens are verified against them: read from its
//! `jwks_uri` through its own HTTP client, kept per ClusterProvider and issuer (two providers of
//! one issuer may name different key URLs), read again when a token names an
//! unknown key (a rotation) but never more often than `oidc::bank_keys::MIN_REFETCH_INTERVAL`.

use crate::controller::Context;
use crate::oidc::{self, bank_keys::MAX_JWKS_BYTES, BankKeys};
use crate::provider::Target;
use jsonwebtoken::jwk::JwkSet;
use std::sync::Arc;
use std::time::Instant;

/// The keys of `target`'s bank for a token that names `kid`; the error is a message for the
/// consent's status.
pub(crate) async fn bank_keys(
    ctx: &Context,
    target: &Target,
    kid: Option<&str>,
) -> Result<Arc<JwkSet>, String> {
    let (Some(issuer), Some(jwks)) = (&target.endpoints.issuer, &target.endpoints.jwks) else {
        return Err(format!(
            "ClusterProvider {} has no issuer and jwks endpoint to verify id tokens against",
            target.name
        ));
    };
    let cache = &ctx.bank_keys;
    let key = format!("{} {issuer}", target.name);
    let now = Instant::now();
    if cache.needs_refetch(&key, kid, now) {
        cache.record_attempt(&key, now);
        match oidc::fetch_json(target.http(), jwks, MAX_JWKS_BYTES).await {
            Ok(json) => match BankKeys::from_json(json, Instant::now()) {
                Ok(keys) => cache.put(&key, keys),
                Err(e) => {
                    tracing::warn!(provider = %target.name, error = %e, "the bank's keys cannot be used")
                }
            },
            Err(e) => {
                tracing::warn!(provider = %target.name, error = %e, "reading the bank's keys failed")
            }
        }
    }
    cache
        .get(&key)
        .ok_or_else(|| format!("the keys of {issuer} could not be read from {jwks}"))
}
