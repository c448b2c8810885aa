//! The library API of the standard profile: methods of [`crate::FakeProvider`] that tests
//! call instead of the admin routes.

use super::{clients, decision, discovery, IdTokenFault, ObAuthoriseOptions, ObClient, ObRedirect};
use crate::{FakeProvider, Shared};

/// Moves the bank's clock forward.
pub(crate) fn advance(shared: &Shared, secs: u64) {
    let secs = i64::try_from(secs).unwrap_or(i64::MAX);
    let mut state = shared.state();
    state.ob.clock_offset_secs = state.ob.clock_offset_secs.saturating_add(secs);
}

impl FakeProvider {
    /// OB profile: provisions a client (replacing one with the same id). Its request objects
    /// are verified against the JWKS at `jwks_url`; `redirect_uris` must match exactly.
    pub fn add_client(
        &self,
        client_id: &str,
        client_secret: &str,
        jwks_url: &str,
        redirect_uris: &[&str],
    ) {
        let client = ObClient {
            client_id: client_id.to_string(),
            client_secret: client_secret.to_string(),
            jwks_url: jwks_url.to_string(),
            redirect_uris: redirect_uris.iter().map(|r| r.to_string()).collect(),
        };
        clients::add(&self.shared, client);
    }

    /// OB profile: makes a new key the id_token signing key, keeps publishing every older
    /// one at `/jwks`, and returns the new `kid` (`None` if no key could be generated).
    pub fn rotate_bank_key(&self) -> Option<String> {
        discovery::rotate(&self.shared)
    }

    /// OB profile: the customer's decision on the consent's pending authorisation (the last
    /// valid request object brought to `/authorize`, consumed here). Returns where the
    /// browser is sent; `Err` says why there is nothing to decide (unknown consent, not
    /// AwaitingAuthorisation, no pending authorisation).
    pub fn ob_authorise(
        &self,
        consent_id: &str,
        approve: bool,
        options: ObAuthoriseOptions,
    ) -> Result<ObRedirect, String> {
        decision::decide(&self.shared, consent_id, approve, &options).map_err(|(_, m)| m)
    }

    /// OB profile: moves the bank's clock `secs` forward (tokens, codes, consents and
    /// request-object checks all use it), so tests reach expiries without sleeping.
    pub fn advance_clock(&self, secs: u64) {
        advance(&self.shared, secs);
    }

    /// OB profile: the defect of the id_tokens refresh answers carry from now on.
    pub fn set_refresh_id_token_fault(&self, fault: IdTokenFault) {
        self.shared.state().ob.refresh_id_token_fault = fault;
    }

    /// The issuer (OB profile): the base URL, without a trailing slash.
    pub fn issuer(&self) -> String {
        self.shared.base_url.clone()
    }
}
