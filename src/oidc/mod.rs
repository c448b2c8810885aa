//! The relying-party side of OpenID Connect and FAPI 1 Advanced that standard UK banks need:
//! the bank's discovery document, its signing keys and the id tokens it signs with them.
//! Decisions are plain functions with the time passed in; the network is touched only by
//! `fetch_json`.

pub mod bank_keys;
pub mod discovery;
mod fetch;
pub mod id_token;

#[cfg(test)]
mod test_keys;

pub use bank_keys::{should_refetch, BankKeyCache, BankKeys, JwksError};
pub use discovery::{
    discovery_url, fetch_json, resolve, DiscoveryError, EndpointOverrides, Endpoints, FetchError,
    ProviderMetadata,
};
pub use id_token::{
    left_half_hash, verify_id_token, IdTokenClaims, IdTokenError, IdTokenExpectations, IntentCheck,
};
