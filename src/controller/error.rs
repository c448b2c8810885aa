//! Why a reconcile stopped early: a typed error that keeps its cause, and `Halt`, the one
//! early-return type of the reconcile phases.

use super::report::Outcome;
use crate::provider::ProviderError;
use crate::secrets::SecretError;
use crate::signing::SigningError;

/// Errors that abort a reconcile and are retried by the controller. Provider failures that
/// belong to the object's own schedule are not among them: those are reported in status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API failed.
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    /// A Secret operation failed.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The object has no namespace or uid (never true for objects read from the API).
    #[error("object is missing {0}")]
    Incomplete(&'static str),
    /// Adding or removing the finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// Signing a request object failed inside the crypto library.
    #[error("signing: {0}")]
    Signing(#[from] SigningError),
    /// Revoking a consent failed transiently; the clean-up (and the finalizer) waits for it.
    #[error("revoking consent {consent_id}: {source}")]
    Revocation {
        /// The consent at the provider.
        consent_id: String,
        /// What the provider did.
        #[source]
        source: ProviderError,
    },
    /// The reconcile panicked; the panic hook logged where (never the message, which may
    /// quote a secret).
    #[error("the reconcile panicked (an operator bug; its location is in the log)")]
    Panicked,
}

impl Error {
    /// Short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube_error",
            Error::Secret(_) => "secret_error",
            Error::Incomplete(_) => "incomplete_object",
            Error::Finalizer(_) => "finalizer_error",
            Error::Signing(_) => "signing_error",
            Error::Revocation { .. } => "provider_error",
            Error::Panicked => "panic",
        }
    }
}

/// `Result` with the controller's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a phase stops the reconcile before its end: an outcome to report (written to status as
/// usual), or an error (retried by the controller). Phases return `Result<T, Halt>` so `?`
/// works for both.
pub(crate) enum Halt {
    /// Stop here and report this.
    Report(Outcome),
    /// Stop here with an error.
    Fail(Error),
}

/// The result of one phase.
pub(crate) type Step<T> = std::result::Result<T, Halt>;

impl From<Error> for Halt {
    fn from(e: Error) -> Self {
        Halt::Fail(e)
    }
}

impl From<kube::Error> for Halt {
    fn from(e: kube::Error) -> Self {
        Halt::Fail(e.into())
    }
}

impl From<SecretError> for Halt {
    fn from(e: SecretError) -> Self {
        Halt::Fail(e.into())
    }
}

impl From<SigningError> for Halt {
    fn from(e: SigningError) -> Self {
        Halt::Fail(e.into())
    }
}

impl From<Outcome> for Halt {
    fn from(o: Outcome) -> Self {
        Halt::Report(o)
    }
}
