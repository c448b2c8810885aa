//! A consent's gate to its TppRegistration: open when the registration exists and is Ready;
//! then its provider, client token, credentials and signing key come from the registration's
//! inputs (`controller::inputs`, the one place that resolves them), each read when a phase
//! needs it, not on every reconcile.

use crate::api::{find, reason, TppRegistration, READY};
use crate::controller::error::Halt;
use crate::controller::inputs::RegistrationInputs;
use crate::controller::providers::Resolved;
use crate::controller::report::Outcome;
use crate::controller::time::add;
use crate::controller::Context;
use crate::provider::{ClientCredentials, Sensitive, Target};
use crate::secrets::SecretError;
use crate::signing::SigningKey;
use jiff::Timestamp;
use kube::api::Api;
use kube::ResourceExt;
use std::sync::Arc;
use std::time::Duration;

/// How often a consent whose registration is not Ready looks again (besides the watch).
pub const REGISTRATION_RETRY: Duration = Duration::from_secs(30);

/// The outcome of a consent waiting for its registration.
pub fn not_ready(why: String, now: Timestamp) -> Outcome {
    Outcome::failed(
        reason::REGISTRATION_NOT_READY,
        why,
        Some(add(now, REGISTRATION_RETRY)),
    )
    .quiet()
}

/// Whether a consent may use its registration now.
pub enum RegistrationGate {
    /// The registration is Ready and its provider allowed.
    Open(Box<RegistrationView>),
    /// It is missing or not Ready: what to report meanwhile.
    Closed(Outcome),
}

impl RegistrationGate {
    /// Reads the registration named `name` and checks it.
    pub async fn check(
        ctx: &Context,
        namespace: &str,
        name: &str,
        now: Timestamp,
    ) -> Result<Self, kube::Error> {
        let closed = |why: String| Ok(RegistrationGate::Closed(not_ready(why, now)));
        let api: Api<TppRegistration> = Api::namespaced(ctx.client.clone(), namespace);
        let Some(registration) = api.get_opt(name).await? else {
            return closed(format!("TppRegistration {name} does not exist in namespace {namespace}; create it (see examples/tpp-registration.yaml) or fix spec.registrationRef."));
        };
        let conditions = registration.status.as_ref().map(|s| &s.conditions[..]);
        match find(conditions.unwrap_or_default(), READY) {
            Some(c) if c.status == "True" => {}
            Some(c) => {
                return closed(format!(
                    "Waiting for TppRegistration {name} to be Ready (it says {}: {}).",
                    c.reason, c.message
                ))
            }
            None => return closed(format!("Waiting for TppRegistration {name} to be Ready.")),
        }
        let provider = match RegistrationInputs::of(ctx, &registration).provider().await {
            Ok(provider) => provider,
            Err(e) => return closed(format!("TppRegistration {name}: {e}.")),
        };
        Ok(RegistrationGate::Open(Box::new(RegistrationView {
            obj: registration,
            provider,
        })))
    }

    /// The registration, or the halt that reports why it cannot be used.
    pub fn view(&self) -> Result<&RegistrationView, Halt> {
        match self {
            RegistrationGate::Open(view) => Ok(view),
            RegistrationGate::Closed(outcome) => Err(Halt::Report(outcome.clone())),
        }
    }
}

/// Why a Ready registration's input cannot be used now.
pub enum Unusable {
    /// A problem a user can fix (a message for them).
    Problem(String),
    /// Reading a Secret failed.
    Failed(SecretError),
}

impl From<SecretError> for Unusable {
    fn from(e: SecretError) -> Self {
        Unusable::Failed(e)
    }
}

impl Unusable {
    /// The halt of a phase that needed the input: `what` says what could not be done.
    pub fn halt(self, what: &str, now: Timestamp) -> Halt {
        match self {
            Unusable::Problem(p) => {
                Halt::Report(not_ready(format!("{what}: {p}."), now).with_event())
            }
            Unusable::Failed(e) => Halt::Fail(e.into()),
        }
    }
}

/// A Ready registration, as a consent uses it.
pub struct RegistrationView {
    obj: TppRegistration,
    provider: Resolved,
}

impl RegistrationView {
    /// Its name.
    pub fn name(&self) -> String {
        self.obj.name_any()
    }

    /// Its provider, ready to be called.
    pub fn target(&self) -> &Target {
        &self.provider.target
    }

    /// Its provider's name and URL, for messages.
    pub fn provider_text(&self) -> String {
        format!("{} ({})", self.provider.name, self.provider.target.url)
    }

    /// When its current client token was issued.
    pub fn token_issued_at(&self) -> Option<Timestamp> {
        self.obj
            .status
            .as_ref()
            .and_then(|s| s.token_issued_at.as_ref())
            .map(|t| t.0)
    }

    fn inputs<'a>(&'a self, ctx: &'a Context) -> RegistrationInputs<'a> {
        RegistrationInputs::of(ctx, &self.obj)
    }

    /// Its current client token.
    pub async fn client_token(&self, ctx: &Context) -> Result<Option<Sensitive>, SecretError> {
        self.inputs(ctx).client_token().await
    }

    /// Its client id and certificate.
    pub async fn credentials(&self, ctx: &Context) -> Result<ClientCredentials, Unusable> {
        self.inputs(ctx)
            .credentials()
            .await?
            .map_err(|e| Unusable::Problem(e.to_string()))
    }

    /// Its current signing key, which must be the one its JWKS publishes first.
    pub async fn signing_key(&self, ctx: &Context) -> Result<Arc<SigningKey>, Unusable> {
        let inputs = self.inputs(ctx);
        let Some(secret) = inputs.signing_key_secret().await? else {
            return Err(Unusable::Problem(format!(
                "the signing key Secret {} of TppRegistration {} does not exist yet",
                inputs.signing_key_source().secret,
                self.name()
            )));
        };
        let key = inputs.signing_key_in(&secret).map_err(Unusable::Problem)?;
        let published = self
            .obj
            .status
            .as_ref()
            .and_then(|s| s.signing_keys.first())
            .map(|k| k.kid.as_str());
        if published != Some(key.kid()) {
            return Err(Unusable::Problem(format!(
                "the signing key {} of TppRegistration {} is not published in its JWKS yet",
                key.kid(),
                self.name()
            )));
        }
        Ok(key)
    }
}
