//! The reconcilers. Shared here: the context, the error type, the reconcile frame both kinds
//! run in, the at-most-once attempt rule and the timing decisions. Each kind has its own folder
//! with one module per lifecycle phase:
//! `registration/` (credentials, token refresh, signing key, clean-up) and
//! `consent/` (its registration, creation, authorisation, hand-off, polling, revocation).

pub(crate) mod attempt;
pub(crate) mod consent;
mod context;
mod error;
#[cfg(test)]
mod fixtures;
mod frame;
mod inputs;
pub mod providers;
mod readiness;
pub(crate) mod registration;
mod report;
pub(crate) mod schedule;
mod time;
pub(crate) mod token_schedule;
mod wiring;

pub use context::{Clock, Context, ManualClock, Settings, SystemClock};
pub use error::{Error, Result};
pub use readiness::Readiness;
pub use wiring::{run, run_elected};
