//! A consent's view of its TppRegistration: whether it is Ready, where its provider is, and its
//! client token, credentials and signing key. The only code that reads a registration's
//! Secrets; each is read when a phase needs it, not on every reconcile.

use crate::api::contract::{credentials, signing_key, token};
use crate::api::{find, reason, TppRegistration, READY};
use crate::controller::report::Outcome;
use crate::controller::time::add;
use crate::controller::Context;
use crate::provider::{parse_base_url, ClientCredentials, Sensitive};
use crate::secrets::{text_value, Secrets};
use crate::signing::{KeyCache, SigningKey};
use jiff::Timestamp;
use kube::api::Api;
use kube::ResourceExt;
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// How often a consent whose registration is not Ready looks again (besides the watch).
pub const REGISTRATION_RETRY: Duration = Duration::from_secs(30);

/// A Ready registration, as a consent uses it.
pub struct RegistrationView {
    /// The registration.
    pub obj: TppRegistration,
    /// Its provider's base URL, parsed.
    pub base: Url,
    /// Its provider's base URL as configured.
    pub provider_url: String,
    secrets: Secrets,
}

/// The outcome of a consent waiting for its registration.
pub fn not_ready(why: String, now: Timestamp) -> Outcome {
    Outcome::failed(
        reason::REGISTRATION_NOT_READY,
        why,
        Some(add(now, REGISTRATION_RETRY)),
    )
    .quiet()
}

impl RegistrationView {
    /// Reads the registration named `name`; `Err` is the outcome to report while it is missing
    /// or not Ready.
    pub async fn read(
        ctx: &Context,
        namespace: &str,
        name: &str,
        now: Timestamp,
    ) -> Result<Result<Self, Outcome>, kube::Error> {
        let settings = &ctx.settings;
        let api: Api<TppRegistration> = Api::namespaced(ctx.client.clone(), namespace);
        let Some(registration) = api.get_opt(name).await? else {
            return Ok(Err(not_ready(
                format!("TppRegistration {name} does not exist in namespace {namespace}; create it (see examples/tpp-registration.yaml) or fix spec.registrationRef."),
                now,
            )));
        };
        let status = registration.status.clone().unwrap_or_default();
        match find(&status.conditions, READY) {
            Some(c) if c.status == "True" => {}
            Some(c) => {
                return Ok(Err(not_ready(
                    format!(
                        "Waiting for TppRegistration {name} to be Ready (it says {}: {}).",
                        c.reason, c.message
                    ),
                    now,
                )))
            }
            None => {
                return Ok(Err(not_ready(
                    format!("Waiting for TppRegistration {name} to be Ready."),
                    now,
                )))
            }
        }
        let provider_url = status
            .provider_url
            .clone()
            .or_else(|| registration.spec.provider_url.clone())
            .unwrap_or_else(|| settings.default_provider_url.to_string());
        let base = match parse_base_url(&provider_url) {
            Ok(base) if settings.allows_provider(&base) => base,
            Ok(_) => {
                return Ok(Err(not_ready(
                    format!("TppRegistration {name} uses a provider this operator may not call."),
                    now,
                )))
            }
            Err(e) => return Ok(Err(not_ready(format!("TppRegistration {name}: {e}."), now))),
        };
        Ok(Ok(RegistrationView {
            obj: registration,
            base,
            provider_url,
            secrets: ctx.secrets(namespace),
        }))
    }

    /// Its name.
    pub fn name(&self) -> String {
        self.obj.name_any()
    }

    /// When its current client token was issued.
    pub fn token_issued_at(&self) -> Option<Timestamp> {
        self.obj
            .status
            .as_ref()
            .and_then(|s| s.token_issued_at.as_ref())
            .map(|t| t.0)
    }

    /// Its current client token.
    pub async fn client_token(&self) -> Result<Option<Sensitive>, crate::secrets::SecretError> {
        let name = self.obj.token_secret_name();
        Ok(self
            .secrets
            .get(&name)
            .await?
            .and_then(|s| text_value(&s, token::ACCESS_TOKEN).ok())
            .map(Sensitive::new))
    }

    /// Its client id and certificate; the inner error is a message for the user.
    pub async fn credentials(
        &self,
    ) -> Result<Result<ClientCredentials, String>, crate::secrets::SecretError> {
        let name = self.obj.credentials_secret_name();
        let Some(secret) = self.secrets.get(&name).await? else {
            return Ok(Err(format!(
                "Secret {name} (registration credentials) does not exist"
            )));
        };
        Ok(text_value(&secret, credentials::CLIENT_ID)
            .and_then(|id| text_value(&secret, credentials::CERTIFICATE).map(|c| (id, c)))
            .map(|(client_id, certificate)| ClientCredentials {
                client_id,
                certificate: Sensitive::new(certificate),
            })
            .map_err(|e| e.to_string()))
    }

    /// Its current signing key, which must be the one its JWKS publishes first; the inner
    /// error is a message for the user.
    pub async fn signing_key(
        &self,
        keys: &KeyCache,
    ) -> Result<Result<Arc<SigningKey>, String>, crate::secrets::SecretError> {
        let name = self.obj.signing_key_secret_name();
        let Some(secret) = self.secrets.get(&name).await? else {
            return Ok(Err(format!(
                "its signing key Secret {name} does not exist yet"
            )));
        };
        let (pem_key, kid) = match &self.obj.spec.signing_key_secret_ref {
            Some(r) => (
                r.private_key_key.as_str(),
                text_value(&secret, &r.kid_key).ok(),
            ),
            None => (signing_key::PRIVATE_KEY, None),
        };
        let key = match crate::secrets::signing_key(keys, &secret, pem_key, kid) {
            Ok(k) => k,
            Err(e) => return Ok(Err(e)),
        };
        let published = self
            .obj
            .status
            .as_ref()
            .and_then(|s| s.signing_keys.first())
            .map(|k| k.kid.clone());
        if published.as_deref() != Some(key.kid()) {
            return Ok(Err(format!(
                "its signing key {} is not published in its JWKS yet",
                key.kid()
            )));
        }
        Ok(Ok(key))
    }
}
