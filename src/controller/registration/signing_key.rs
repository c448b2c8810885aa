//! The signing-key phase: load the TPP's own key or the generated one, ask the generator for a
//! first or rotated key, and publish the public keys (replaced ones until they retire).

use super::keygen::KeyRequest;
use super::plan::{key_plan, KeyPlan};
use super::RegistrationRun;
use crate::api::contract::signing_key as keys;
use crate::api::{reason, PublishedKey, ANNOTATION_ROTATE_SIGNING_KEY};
use crate::controller::error::{Halt, Step};
use crate::controller::inputs::RegistrationInputs;
use crate::controller::report::Outcome;
use crate::controller::time::add;
use crate::secrets::{text_value, SecretError};
use crate::signing::SigningKey;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::EventType;
use std::time::Duration;

/// How long a replaced public key stays in the JWKS: the life of a request object plus slack for
/// clock skew, so every request object signed with it can still be verified.
const KEY_RETENTION: Duration =
    Duration::from_secs(crate::signing::REQUEST_OBJECT_LIFETIME_SECS as u64 + 300);
/// How soon a broken user-supplied signing key is looked at again (its Secret is not watched).
const SIGNING_KEY_RETRY: Duration = Duration::from_secs(60);

impl RegistrationRun<'_> {
    /// Loads (or has generated) the signing key and publishes its public half in status; a
    /// key that cannot be used is reported (`Halt::Report`), never an error.
    pub(super) async fn signing_key(&mut self) -> Step<()> {
        let inputs = RegistrationInputs::of(self.ctx, self.obj);
        let source = inputs.signing_key_source();
        let secret_name = source.secret.clone();
        self.status.signing_key_secret = Some(secret_name.clone());
        let existing = inputs.signing_key_secret().await?;
        let key = match (source.generated, existing) {
            (false, Some(secret)) if self.owner.owned_by_another(&secret) => {
                // Another registration's generated key: signing with it would make request
                // objects that the provider accepts for that registration's client.
                return Err(self.signing_key_problem(format!(
                    "Secret {secret_name} holds a key tpp-operator generated for another object; spec.signingKeySecretRef must name a Secret of your own"
                )));
            }
            (false, Some(secret)) => {
                if let Err(problem) = inputs.may_sign_with(&secret) {
                    return Err(Halt::Report(Outcome::failed(
                        reason::SECRET_NOT_ALLOWED,
                        format!("{problem}. Client tokens are still refreshed."),
                        Some(add(self.now, SIGNING_KEY_RETRY)),
                    )));
                }
                match inputs.signing_key_in(&secret) {
                    Ok(key) => public_key(&key),
                    Err(e) => return Err(self.signing_key_problem(e)),
                }
            }
            (false, None) => {
                return Err(self.signing_key_problem(format!(
                    "Secret {secret_name} (signing key) does not exist"
                )))
            }
            (true, Some(secret)) if !self.owner.owns(&secret) => {
                let e = SecretError::NotOwned { name: secret_name };
                return Err(self.signing_key_problem(e.to_string()));
            }
            (true, existing) => match self.generated_key(&secret_name, existing).await {
                Some(key) => key,
                None => return Ok(()),
            },
        };
        self.status.signing_keys =
            published_keys(&key, &self.status.signing_keys, self.now, KEY_RETENTION);
        self.status.jwks_url = self.ctx.settings.public_url.as_ref().map(|u| {
            format!(
                "{}/jwks/{}/{}",
                u.as_str().trim_end_matches('/'),
                self.namespace,
                self.name
            )
        });
        Ok(())
    }

    /// The generated key to use now, asking the generator for a new one when needed; `None`
    /// while there is none yet.
    async fn generated_key(
        &mut self,
        secret_name: &str,
        existing: Option<Secret>,
    ) -> Option<PublishedKey> {
        let rotate = self.annotation(ANNOTATION_ROTATE_SIGNING_KEY);
        let rotate_requested =
            rotate.is_some() && rotate != self.status.handled_rotate_signing_key.as_deref();
        let stored = existing.as_ref().and_then(|s| self.stored_public_key(s));
        let published = self.status.signing_keys.first().map(|k| k.kid.clone());
        match key_plan(
            stored.as_ref().map(|k| k.kid.as_str()),
            published.as_deref(),
            rotate_requested,
        ) {
            KeyPlan::Keep => stored,
            KeyPlan::Publish { rotated } => {
                if rotate_requested {
                    self.status.handled_rotate_signing_key = rotate.map(str::to_string);
                }
                let verb = if rotated {
                    "Rotated the signing key"
                } else {
                    "Generated a signing key"
                };
                let kid = stored.as_ref().map(|k| k.kid.clone()).unwrap_or_default();
                self.event(
                    EventType::Normal,
                    "SigningKeyGenerated",
                    "GenerateSigningKey",
                    format!("{verb}: kid {kid}, stored in Secret {secret_name}."),
                )
                .await;
                stored
            }
            KeyPlan::Generate => {
                // Keys are made by the generator, one at a time; its write of the Secret brings
                // this registration back. Ready does not wait for it, and the current key (if
                // any) stays published meanwhile.
                self.ctx.keygen.request(KeyRequest {
                    uid: self.uid.clone(),
                    secrets: self.secrets.clone(),
                    secret_name: secret_name.to_string(),
                    owner: self.owner.clone(),
                });
                stored
            }
        }
    }

    /// The public half of a generated key from the `kid` and `jwk` the generator stored beside
    /// it, so that a routine reconcile parses no private key; a Secret without them (written by
    /// an older version) has its private key parsed once.
    fn stored_public_key(&self, secret: &Secret) -> Option<PublishedKey> {
        let kid = text_value(secret, keys::KID).ok();
        let jwk = text_value(secret, keys::JWK)
            .ok()
            .and_then(|j| serde_json::from_str::<crate::signing::Jwk>(&j).ok());
        if let (Some(kid), Some(jwk)) = (kid, jwk) {
            if let jsonwebtoken::jwk::AlgorithmParameters::RSA(rsa) = jwk.algorithm {
                if jwk.common.key_id.as_deref() == Some(kid.as_str()) {
                    return Some(PublishedKey {
                        kid,
                        modulus: rsa.n,
                        exponent: rsa.e,
                        retire_at: None,
                    });
                }
            }
        }
        RegistrationInputs::of(self.ctx, self.obj)
            .signing_key_in(secret)
            .ok()
            .map(|k| public_key(&k))
    }

    fn signing_key_problem(&self, problem: String) -> Halt {
        Halt::Report(Outcome::failed(
            reason::INVALID_SIGNING_KEY,
            format!(
                "{problem}. The signing key must be an RSA private key of 2048 bits or more in PEM; fix the Secret, or remove spec.signingKeySecretRef to let the operator generate one. Client tokens are still refreshed."
            ),
            Some(add(self.now, SIGNING_KEY_RETRY)),
        ))
    }

    /// When the next replaced key leaves the JWKS.
    pub(super) fn next_key_retirement(&self) -> Option<Timestamp> {
        self.status
            .signing_keys
            .iter()
            .filter_map(|k| k.retire_at.as_ref().map(|t| t.0))
            .min()
    }
}

/// The JWKS of a registration after a reconcile: the current key first, replaced keys kept until
/// their retirement time (set when they are first seen replaced), expired ones dropped.
pub fn published_keys(
    current: &PublishedKey,
    previous: &[PublishedKey],
    now: Timestamp,
    retention: Duration,
) -> Vec<PublishedKey> {
    let mut keys = vec![PublishedKey {
        retire_at: None,
        ..current.clone()
    }];
    for key in previous.iter().filter(|k| k.kid != current.kid) {
        let retire_at = key.retire_at.clone().unwrap_or(Time(add(now, retention)));
        if retire_at.0 > now {
            keys.push(PublishedKey {
                retire_at: Some(retire_at),
                ..key.clone()
            });
        }
    }
    keys
}

/// The published form of a key's public half.
fn public_key(key: &SigningKey) -> PublishedKey {
    let (modulus, exponent) = key.public_components();
    PublishedKey {
        kid: key.kid().to_string(),
        modulus,
        exponent,
        retire_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::ts;

    fn jwk(kid: &str) -> PublishedKey {
        PublishedKey {
            kid: kid.into(),
            modulus: "n".into(),
            exponent: "AQAB".into(),
            retire_at: None,
        }
    }

    #[test]
    fn replaced_keys_stay_published_until_request_objects_expire() {
        let retention = Duration::from_secs(900);
        let first = published_keys(&jwk("a"), &[], ts(0), retention);
        assert_eq!(
            first.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
            ["a"]
        );
        assert_eq!(first[0].retire_at, None);
        // Rotation at t=100: "a" stays until 100 + 900.
        let rotated = published_keys(&jwk("b"), &first, ts(100), retention);
        assert_eq!(
            rotated.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
            ["b", "a"]
        );
        assert_eq!(rotated[1].retire_at, Some(Time(ts(1000))));
        // Later reconciles keep the first retirement time, then drop the key.
        let later = published_keys(&jwk("b"), &rotated, ts(500), retention);
        assert_eq!(later[1].retire_at, Some(Time(ts(1000))));
        let after = published_keys(&jwk("b"), &later, ts(1000), retention);
        assert_eq!(
            after.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
    }
}
