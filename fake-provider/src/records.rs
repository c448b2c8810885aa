//! What the fake records: calls per endpoint, registrations, issued tokens, consents and
//! authorisations, for tests to assert on.

/// Calls received per endpoint (including failed ones).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CallCounts {
    /// `POST /api/account/registration`.
    pub registration: u64,
    /// `POST /auth/token` (OB: `/token`) with `grant_type=client_credentials`.
    pub client_token: u64,
    /// `POST /auth/token` (OB: `/token`) with `grant_type=authorization_code`.
    pub auth_code_token: u64,
    /// `POST /account-access-consents` (OB: under the API prefix).
    pub consent_create: u64,
    /// `GET /account-access-consents/{id}` (OB: under the API prefix).
    pub consent_get: u64,
    /// `DELETE /account-access-consents/{id}` (OB: under the API prefix).
    pub consent_delete: u64,
    /// Answers 429 because of the configured rate limit.
    pub rate_limited: u64,
    /// Most requests seen within one second.
    pub peak_per_second: u64,
    /// `GET /authorize` and `GET /create-consent` (the customer's visit).
    pub authorize: u64,
    /// `GET /.well-known/jwks.json` (OB: `GET /jwks`).
    pub jwks: u64,
    /// OB only: `POST /token` with `grant_type=refresh_token`.
    pub refresh_token: u64,
    /// OB only: `GET /.well-known/openid-configuration`.
    pub discovery: u64,
    /// Every request outside `/__admin`, whatever the path (unknown ones too), method or
    /// answer (faults, 429s, 404s included): zero means nothing reached this fake.
    pub total: u64,
}

/// A registration the fake accepted.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RegistrationRecord {
    /// Issued client id.
    pub client_id: String,
    /// Organisation name.
    pub name: String,
    /// Contact e-mail.
    pub email: String,
    /// Callback URL.
    pub callback_url: String,
}

/// A token the fake issued.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TokenRecord {
    /// Client the token was issued to.
    pub client_id: String,
    /// `client_credentials`, `authorization_code` or (OB) `refresh_token`.
    pub grant_type: String,
    /// When it was issued (sub-second precision).
    pub issued_at: jiff::Timestamp,
    /// The JWT's `exp` (OB: when the fake stops accepting the opaque token).
    pub expires_at: jiff::Timestamp,
    /// What `expires_in` said.
    pub expires_in: u64,
    /// The consent a customer token (`authorization_code`, OB `refresh_token`) is bound to
    /// (Leatherback: its `consentId` claim).
    pub consent_id: Option<String>,
    /// OB: expiry of the refresh token that is live for this grant after this answer (the one
    /// issued with it, or the one kept); `None` without one (and always in Leatherback mode,
    /// whose JSON then lacks the field).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token_expires_at: Option<jiff::Timestamp>,
}

/// A consent at the fake.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ConsentRecord {
    /// ConsentId.
    pub consent_id: String,
    /// Client that created it.
    pub client_id: String,
    /// Current status.
    pub status: String,
    /// Permissions asked for.
    pub permissions: Vec<String>,
    /// The customer who authorised it (the `customerId`/`sub` claims), once authorised.
    pub customer_id: Option<String>,
}

/// The outcome of a customer's authorisation, as the redirect to the TPP carries it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Authorisation {
    /// The consent authorised.
    pub consent_id: String,
    /// The single-use authorisation code, bound to the consent and its client.
    pub code: String,
    /// PS256 JWS (or opaque `oa_stg_...` with `opaque_id_token`).
    pub id_token: String,
    /// The request object's `state`, when known.
    pub state: Option<String>,
    /// The customer (the id_token's `sub`, the customer token's `customerId`).
    pub customer_id: String,
}
