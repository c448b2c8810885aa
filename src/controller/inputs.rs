//! A TppRegistration's inputs, resolved in one place for both reconcilers: which provider it
//! talks to (checked against what the platform team allows), which credentials it holds, which
//! client token, and which key signs for it. The registration's phases and a consent's view of
//! its registration gather through here; what to do with the inputs (register or adopt,
//! refresh or wait, sign or not) is decided after, by each phase.

use super::providers::{resolve, ProviderRefusal, Resolved};
use super::Context;
use crate::api::contract::{ClientCredentials, Sensitive};
use crate::api::{contract, SigningKeySource, TppRegistration, LABEL_SIGNING_KEY};
use crate::secrets::{signing_key, text_value, SecretError, Secrets};
use crate::signing::SigningKey;
use k8s_openapi::api::core::v1::Secret;
use std::sync::Arc;

/// Why a registration's credentials cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CredentialsProblem {
    /// The credentials Secret does not exist.
    #[error("Secret {0} (registration credentials) does not exist")]
    Missing(String),
    /// It exists but lacks a key or holds something that is not text.
    #[error(transparent)]
    Invalid(SecretError),
}

/// Gathers the inputs of one TppRegistration.
pub(crate) struct RegistrationInputs<'a> {
    ctx: &'a Context,
    obj: &'a TppRegistration,
    secrets: Secrets,
}

impl<'a> RegistrationInputs<'a> {
    /// The inputs of `obj`, read from its namespace's Secrets.
    pub fn of(ctx: &'a Context, obj: &'a TppRegistration) -> Self {
        let namespace = obj.metadata.namespace.as_deref().unwrap_or_default();
        RegistrationInputs {
            ctx,
            obj,
            secrets: ctx.secrets(namespace),
        }
    }

    /// The provider it talks to, refused unless its ClusterProvider allows the namespace (see
    /// `providers::resolve`). Checked before any Secret is read or sent: a tenant must not
    /// point the operator at a host of their choosing and receive the namespace's secrets there.
    pub async fn provider(&self) -> Result<Resolved, ProviderRefusal> {
        resolve(self.ctx, self.obj).await
    }

    /// Its credentials Secret as it is, if it exists.
    pub async fn credentials_secret(&self) -> Result<Option<Secret>, SecretError> {
        self.secrets.get(&self.obj.credentials_secret_name()).await
    }

    /// Its credentials.
    pub async fn credentials(
        &self,
    ) -> Result<Result<ClientCredentials, CredentialsProblem>, SecretError> {
        Ok(match self.credentials_secret().await? {
            Some(secret) => credentials_in(&secret).map_err(CredentialsProblem::Invalid),
            None => Err(CredentialsProblem::Missing(
                self.obj.credentials_secret_name(),
            )),
        })
    }

    /// Its current client token, if it has one.
    pub async fn client_token(&self) -> Result<Option<Sensitive>, SecretError> {
        let name = self.obj.token_secret_name();
        Ok(self
            .secrets
            .get(&name)
            .await?
            .and_then(|s| text_value(&s, contract::token::ACCESS_TOKEN).ok())
            .map(Sensitive::new))
    }

    /// Where its signing key is.
    pub fn signing_key_source(&self) -> SigningKeySource<'a> {
        self.obj.signing_key_source()
    }

    /// Its signing key's Secret as it is, if it exists.
    pub async fn signing_key_secret(&self) -> Result<Option<Secret>, SecretError> {
        self.secrets.get(&self.signing_key_source().secret).await
    }

    /// Whether the operator may sign with the key in `secret`: a generated key, or a Secret of
    /// the TPP's marked for the purpose; the error is a message for the user.
    pub fn may_sign_with(&self, secret: &Secret) -> Result<(), String> {
        let source = self.signing_key_source();
        let marked = secret
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_SIGNING_KEY))
            .is_some_and(|v| v == "true");
        if source.generated || marked {
            return Ok(());
        }
        Err(format!(
            "Secret {} is not marked as a signing key: spec.signingKeySecretRef may name only a Secret labelled {LABEL_SIGNING_KEY}=true, so that a key made for something else (an Ingress's tls.key, say) never signs request objects. If this Secret holds the key you registered with the provider, label it: kubectl label secret {} {LABEL_SIGNING_KEY}=true",
            source.secret, source.secret
        ))
    }

    /// The signing key in `secret` (its Secret), parsed once per version of the Secret, if
    /// the operator may sign with it; the error is a message for the user, never key material.
    pub fn signing_key_in(&self, secret: &Secret) -> Result<Arc<SigningKey>, String> {
        self.may_sign_with(secret)?;
        let source = self.signing_key_source();
        let kid = source.kid.and_then(|k| text_value(secret, k).ok());
        signing_key(&self.ctx.keys, secret, source.private_key, kid)
    }
}

/// The credentials a credentials Secret holds.
pub(crate) fn credentials_in(secret: &Secret) -> Result<ClientCredentials, SecretError> {
    ClientCredentials::from_values(|key| text_value(secret, key))
}
