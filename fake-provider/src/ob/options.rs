//! The public types of the Open Banking UK profile: the bank's options and quirks, clients,
//! the customer's decision and the hostile id_tokens of negative tests.

use serde::{Deserialize, Serialize};

/// Default API prefix of the consent routes.
pub const DEFAULT_API_PREFIX: &str = "/open-banking/v3.1/aisp";

/// Default refresh token lifetime: 90 days, the UK re-authentication period.
pub const DEFAULT_REFRESH_TOKEN_LIFETIME_SECS: u64 = 90 * 24 * 3600;

/// How the standard-profile bank behaves; `Default` is a well-behaved bank.
#[derive(Clone, Debug)]
pub struct ObOptions {
    /// Prefix of the consent routes (default [`DEFAULT_API_PREFIX`]).
    pub api_prefix: String,
    /// Quirk: the discovery document lacks `jwks_uri` and `token_endpoint`.
    pub incomplete_discovery: bool,
    /// Quirk: the request object's `aud` must be this instead of the issuer.
    pub request_aud: Option<String>,
    /// Quirk: answer in the query instead of the fragment, unless the request object's
    /// `response_mode` or the decision says otherwise.
    pub response_mode_query: bool,
    /// Quirk: `token_type` is `bearer` instead of `Bearer`.
    pub token_type_lowercase: bool,
    /// Quirk: the code exchange issues no refresh token.
    pub no_refresh_token: bool,
    /// Quirk: refresh answers carry no id_token.
    pub no_id_token_on_refresh: bool,
    /// Quirk: answers lack `http://openbanking.org.uk/refresh_token_expires_at`.
    pub no_refresh_token_expires_at: bool,
    /// A refresh answers a new refresh token and the old one stops working (default true);
    /// when false the answer carries none and the old one stays valid.
    pub rotate_refresh_tokens: bool,
    /// Lifetime of the refresh tokens of one authorisation, counted from the code exchange
    /// (rotation keeps the expiry). Default [`DEFAULT_REFRESH_TOKEN_LIFETIME_SECS`].
    pub refresh_token_lifetime_secs: u64,
    /// Quirk: the id_token's `sub` is the consent id instead of the customer id.
    pub intent_in_sub: bool,
    /// How long an authorisation code can be exchanged (default 300 s).
    pub code_lifetime_secs: u64,
}

impl Default for ObOptions {
    fn default() -> Self {
        ObOptions {
            api_prefix: DEFAULT_API_PREFIX.to_string(),
            incomplete_discovery: false,
            request_aud: None,
            response_mode_query: false,
            token_type_lowercase: false,
            no_refresh_token: false,
            no_id_token_on_refresh: false,
            no_refresh_token_expires_at: false,
            rotate_refresh_tokens: true,
            refresh_token_lifetime_secs: DEFAULT_REFRESH_TOKEN_LIFETIME_SECS,
            intent_in_sub: false,
            code_lifetime_secs: 300,
        }
    }
}

/// A client the test provisioned (there is no dynamic registration yet).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObClient {
    /// The client id.
    pub client_id: String,
    /// The secret of `client_secret_basic` and `client_secret_post`.
    pub client_secret: String,
    /// Where the client's JWKS is: request objects are verified against it.
    pub jwks_url: String,
    /// The redirect URIs a request object may name (exact match).
    pub redirect_uris: Vec<String>,
}

/// Where the authorisation response's parameters go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResponseMode {
    /// `redirect_uri#code=..` (the default of `code id_token`).
    Fragment,
    /// `redirect_uri?code=..`.
    Query,
}

/// A defect of an id_token the bank issues, for the relying party's negative tests. All but
/// [`IdTokenFault::AudienceArray`] and [`IdTokenFault::NoAtHash`] must be refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IdTokenFault {
    /// A correct id_token.
    #[default]
    None,
    /// Signed by a key that is not in the JWKS, with the current key's `kid`.
    ForgedSignature,
    /// Header `{"alg":"none"}` and an empty signature.
    AlgNone,
    /// HS256 with the client secret as the HMAC key (header kid: the current key's).
    Hs256,
    /// `iss` is [`WRONG_ISSUER`].
    WrongIssuer,
    /// `aud` is [`WRONG_AUDIENCE`].
    WrongAudience,
    /// `iat` 400 s ago and `exp` 100 s ago.
    Expired,
    /// `iat` (and `auth_time`) 3 days ago; `exp` still in the future.
    IssuedLongAgo,
    /// No `exp` claim.
    MissingExp,
    /// No `nonce` claim.
    MissingNonce,
    /// `nonce` is the request object's with `-wrong` appended.
    WrongNonce,
    /// `c_hash` is the hash of the code with `-wrong` appended.
    WrongCHash,
    /// `s_hash` is the hash of the state with `-wrong` appended.
    WrongSHash,
    /// `openbanking_intent_id` (and `sub` with `intent_in_sub`) is another, random, id.
    WrongIntentId,
    /// Signed with the current key but the header's `kid` is in no JWKS.
    UnknownKid,
    /// Valid: `aud` is the array `[client_id]`.
    AudienceArray,
    /// Valid: no `at_hash` (token endpoint id_tokens carry one otherwise).
    NoAtHash,
}

/// The `iss` of a [`IdTokenFault::WrongIssuer`] id_token.
pub const WRONG_ISSUER: &str = "https://wrong-issuer.example.com";

/// The `aud` of a [`IdTokenFault::WrongAudience`] id_token.
pub const WRONG_AUDIENCE: &str = "another-client";

/// How the customer's decision is delivered; `Default` is a correct one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ObAuthoriseOptions {
    /// Defect of the id_token in the redirect.
    pub id_token_fault: IdTokenFault,
    /// Defect of the id_token the code exchange answers.
    pub exchange_id_token_fault: IdTokenFault,
    /// Overrides the response mode (else the request object's `response_mode`, else the
    /// bank's: fragment unless `response_mode_query`).
    pub response_mode: Option<ResponseMode>,
    /// The customer (`sub`); the consent's earlier customer or a random UUID when `None`.
    pub customer_id: Option<String>,
}

/// Where the customer's browser is sent after the decision, and what that URL carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObRedirect {
    /// `redirect_uri` plus `#` or `?` and the parameters.
    pub url: String,
    /// The authorisation code (approval only).
    pub code: Option<String>,
    /// The id_token (approval only).
    pub id_token: Option<String>,
    /// The request object's `state`.
    pub state: Option<String>,
    /// `access_denied` on refusal.
    pub error: Option<String>,
}
