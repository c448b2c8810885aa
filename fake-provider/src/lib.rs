//! A fake of the Leatherback Open Banking API as documented (shared/provider-api.md): the same
//! paths, field casing, form-encoded token endpoint and 7-digit fractional timestamps, with
//! short configurable token lifetimes, fault injection and call records for tests.
//!
//! [`Profile::OpenBankingUk`] makes it a bank of the UK Open Banking standard profile instead
//! (discovery, JWKS, FAPI 1 Advanced request objects and id_tokens, refresh tokens); its
//! contract is in the [`ob`] module.

mod faults;
mod idtoken;
pub mod ob;
mod records;
mod server;
mod verify;

pub use faults::{Endpoint, Fault, MALFORMED_ACCESS_TOKEN, MAX_OVERSIZED_BYTES, REDIRECT_STATUSES};
pub use ob::{IdTokenFault, ObAuthoriseOptions, ObClient, ObOptions, ObRedirect, ResponseMode};
pub use records::{Authorisation, CallCounts, ConsentRecord, RegistrationRecord, TokenRecord};
pub use verify::{verify_request_object, VerifyError};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// How the fake behaves.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to listen on; 127.0.0.1 with a free port when `None`.
    pub addr: Option<SocketAddr>,
    /// Real lifetime of issued tokens (`exp - iat` of the JWT), in seconds.
    pub token_lifetime_secs: u64,
    /// What `expires_in` says; `None` says the real lifetime. The provider's own sample
    /// says 63919 for a 300 s token.
    pub expires_in: Option<u64>,
    /// Answer registrations with `statusMessage` (older docs) instead of `Message`.
    pub legacy_status_message: bool,
    /// Serve `GET`/`DELETE /account-access-consents/{id}`; when false they answer `missing_status`.
    pub consent_get_delete: bool,
    /// Status for the consent GET/DELETE routes when they are switched off (404 or 405).
    pub missing_status: u16,
    /// Delay added to every answer.
    pub latency: Duration,
    /// Requests per second above which the fake answers 429 with `Retry-After: 1`.
    pub rate_limit: Option<u32>,
    /// When set, only these signature certificates may register.
    pub accepted_signature_certificates: Option<Vec<String>>,
    /// Where the TPP's JWKS is ("the JWKs endpoint you specified during registration"); the
    /// authorisation step fetches it to verify request objects.
    pub jwks_url: Option<String>,
    /// Issue opaque `oa_stg_...` id_tokens, like the provider's documented sample, instead of
    /// PS256 JWS signed with the fake's key (published at `/.well-known/jwks.json`).
    pub opaque_id_token: bool,
    /// Which bank the fake is (default Leatherback). Leatherback-only fields above:
    /// `legacy_status_message`, `consent_get_delete`, `missing_status`,
    /// `accepted_signature_certificates`, `jwks_url`, `opaque_id_token`.
    pub profile: Profile,
}

/// Which bank the fake is.
#[derive(Clone, Debug, Default)]
pub enum Profile {
    /// The Leatherback Open Banking API as documented.
    #[default]
    Leatherback,
    /// A bank of the UK Open Banking standard profile (see [`ob`]).
    OpenBankingUk(ObOptions),
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: None,
            token_lifetime_secs: 300,
            expires_in: None,
            legacy_status_message: false,
            consent_get_delete: true,
            missing_status: 405,
            latency: Duration::ZERO,
            rate_limit: None,
            accepted_signature_certificates: None,
            jwks_url: None,
            opaque_id_token: false,
            profile: Profile::Leatherback,
        }
    }
}

/// What an authorisation code was issued for.
#[derive(Clone, Debug)]
pub(crate) struct CodeGrant {
    pub(crate) consent_id: String,
    pub(crate) client_id: String,
    pub(crate) customer_id: String,
    pub(crate) nonce: Option<String>,
}

/// `state` and `nonce` of the last verified request object for a consent.
#[derive(Clone, Debug, Default)]
pub(crate) struct AuthContext {
    pub(crate) state: Option<String>,
    pub(crate) nonce: Option<String>,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) registrations: Vec<RegistrationRecord>,
    /// client id -> certificate (the token endpoint's password).
    pub(crate) passwords: HashMap<String, String>,
    pub(crate) tokens: Vec<TokenRecord>,
    /// access token -> (client id, expiry).
    pub(crate) live_tokens: HashMap<String, (String, jiff::Timestamp)>,
    pub(crate) consents: Vec<ConsentRecord>,
    /// authorisation code -> what it was issued for.
    pub(crate) codes: HashMap<String, CodeGrant>,
    /// consent id -> state and nonce of its last verified request object.
    pub(crate) auth_contexts: HashMap<String, AuthContext>,
    pub(crate) calls: CallCounts,
    pub(crate) faults: faults::Faults,
    pub(crate) window: (i64, u64),
    pub(crate) ob: ob::ObState,
}

pub(crate) struct Shared {
    pub(crate) config: Mutex<Config>,
    pub(crate) state: Mutex<State>,
    pub(crate) jwt_secret: Vec<u8>,
    pub(crate) base_url: String,
    /// Fetches TPPs' JWKS; one client, since building one costs tens of milliseconds.
    pub(crate) http: reqwest::Client,
    /// The id_token signing key: generated in the background at start, waited for when needed.
    pub(crate) id_key: OnceLock<Option<Arc<idtoken::IdTokenKey>>>,
}

impl Shared {
    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub(crate) fn id_key(&self) -> Option<&Arc<idtoken::IdTokenKey>> {
        self.id_key
            .get_or_init(|| idtoken::IdTokenKey::generate().map(Arc::new))
            .as_ref()
    }
    pub(crate) fn config(&self) -> Config {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A running fake provider.
pub struct FakeProvider {
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl FakeProvider {
    /// Starts serving; returns once the socket is bound.
    pub async fn start(config: Config) -> std::io::Result<FakeProvider> {
        let addr = config
            .addr
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let standard = matches!(config.profile, Profile::OpenBankingUk(_));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let shared = Arc::new(Shared {
            config: Mutex::new(config),
            state: Mutex::new(State::default()),
            jwt_secret: rand::random::<[u8; 32]>().to_vec(),
            base_url: format!("http://{local}"),
            http: reqwest::Client::new(),
            id_key: OnceLock::new(),
        });
        // RSA key generation takes a moment: do it off the request path.
        let keygen = shared.clone();
        std::thread::spawn(move || {
            keygen.id_key();
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = if standard {
            ob::router(shared.clone())
        } else {
            server::router(shared.clone())
        };
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(FakeProvider {
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Base URL to configure as the provider URL, e.g. `http://127.0.0.1:41234`.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// Calls received so far.
    pub fn calls(&self) -> CallCounts {
        self.shared.state().calls
    }

    /// Makes the next `times` calls to `endpoint` fail with `fault` (`None`: until cleared).
    pub fn inject(&self, endpoint: Endpoint, fault: Fault, times: Option<u32>) {
        self.shared.state().faults.add(endpoint, fault, times);
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        self.shared.state().faults.clear();
    }

    /// Changes the lifetime of tokens issued from now on.
    pub fn set_token_lifetime(&self, secs: u64) {
        self.shared
            .config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .token_lifetime_secs = secs;
    }

    /// Changes what `expires_in` says (`None`: the real lifetime).
    pub fn set_expires_in(&self, expires_in: Option<u64>) {
        self.shared
            .config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .expires_in = expires_in;
    }

    /// Sets the JWKS URL the authorisation step verifies request objects against.
    pub fn set_jwks_url(&self, url: &str) {
        self.shared
            .config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .jwks_url = Some(url.to_string());
    }

    /// Switches the consent GET/DELETE routes on or off.
    pub fn set_consent_get_delete(&self, on: bool) {
        self.shared
            .config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .consent_get_delete = on;
    }

    /// Registrations accepted, in order.
    pub fn registrations(&self) -> Vec<RegistrationRecord> {
        self.shared.state().registrations.clone()
    }

    /// Tokens issued, in order.
    pub fn tokens(&self) -> Vec<TokenRecord> {
        self.shared.state().tokens.clone()
    }

    /// Consents created, in order.
    pub fn consents(&self) -> Vec<ConsentRecord> {
        self.shared.state().consents.clone()
    }

    /// Marks a consent Authorised, as the customer would, and returns a single-use code.
    pub fn issue_authorization_code(&self, consent_id: &str) -> Option<String> {
        self.authorise(consent_id, None, None).map(|a| a.code)
    }

    /// Marks a consent Authorised, as the customer would, and returns what the redirect to the
    /// TPP would carry: code, id_token and state. `state`/`nonce` default to those of the last
    /// verified request object for this consent, if any.
    pub fn authorise(
        &self,
        consent_id: &str,
        state: Option<&str>,
        nonce: Option<&str>,
    ) -> Option<Authorisation> {
        server::authorise(
            &self.shared,
            consent_id,
            state.map(str::to_string),
            nonce.map(str::to_string),
        )
    }

    /// The fake's id_token signing keys, as served at `/.well-known/jwks.json` (OB profile:
    /// at `/jwks`, every key since start).
    pub fn jwks(&self) -> serde_json::Value {
        match self.shared.config().profile {
            Profile::Leatherback => server::jwks(&self.shared),
            Profile::OpenBankingUk(_) => ob::jwks(&self.shared),
        }
    }

    /// Switches opaque id_tokens on or off.
    pub fn set_opaque_id_token(&self, on: bool) {
        self.shared
            .config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .opaque_id_token = on;
    }

    /// Sets a consent's status (Rejected, Revoked, ...).
    pub fn set_consent_status(&self, consent_id: &str, status: &str) -> bool {
        let mut state = self.shared.state();
        match state
            .consents
            .iter_mut()
            .find(|c| c.consent_id == consent_id)
        {
            Some(c) => {
                c.status = status.to_string();
                true
            }
            None => false,
        }
    }

    /// Stops serving and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
