//! The claims of a PS256 authorisation request object (UK Open Banking; FAPI 1 Advanced for a
//! standard bank), which `SigningKey::sign` turns into the `request` parameter.

use serde::{Deserialize, Serialize};

/// The `claims.id_token.openbanking_intent_id` member of a request object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentClaim {
    /// The ConsentId.
    pub value: String,
    /// Always true: the provider must bind the id token to this consent.
    pub essential: bool,
}

/// Claims of an authorisation request object (UK Open Banking, PS256).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestObjectClaims {
    /// Issuer: the client id.
    pub iss: String,
    /// Audience: the provider's base URL.
    pub aud: String,
    /// `code id_token`.
    pub response_type: String,
    /// The client id.
    pub client_id: String,
    /// Where the provider sends the customer back.
    pub redirect_uri: String,
    /// `accounts`.
    pub scope: String,
    /// Opaque value echoed back on the redirect; binds it to one AccountConsent.
    pub state: String,
    /// Replay protection for the id token.
    pub nonce: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Not before (Unix seconds): FAPI 1 Advanced requires it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Expiry (Unix seconds).
    pub exp: i64,
    /// Where the provider puts its answer, when not its default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_mode: Option<String>,
    /// `{"id_token": {"openbanking_intent_id": {"value": ConsentId, "essential": true}}}`.
    pub claims: serde_json::Value,
}

impl RequestObjectClaims {
    /// The claims for `consent_id`, valid from `iat` for `lifetime_secs`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client_id: &str,
        audience: &str,
        redirect_uri: &str,
        consent_id: &str,
        state: &str,
        nonce: &str,
        iat: i64,
        lifetime_secs: i64,
    ) -> Self {
        let intent = IntentClaim {
            value: consent_id.to_string(),
            essential: true,
        };
        RequestObjectClaims {
            iss: client_id.to_string(),
            aud: audience.to_string(),
            response_type: "code id_token".into(),
            client_id: client_id.to_string(),
            redirect_uri: redirect_uri.to_string(),
            scope: "accounts".into(),
            state: state.to_string(),
            nonce: nonce.to_string(),
            iat,
            nbf: None,
            exp: iat + lifetime_secs,
            response_mode: None,
            claims: serde_json::json!({"id_token": {"openbanking_intent_id": intent}}),
        }
    }

    /// The same as FAPI 1 Advanced wants it at a standard bank: `nbf`, the `openid` scope, and
    /// `response_mode` when the bank answers elsewhere than its default.
    pub fn fapi(self, response_mode: Option<&str>) -> Self {
        RequestObjectClaims {
            nbf: Some(self.iat),
            scope: "openid accounts".into(),
            response_mode: response_mode.map(str::to_string),
            ..self
        }
    }
}
