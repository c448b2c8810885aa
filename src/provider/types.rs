//! Wire types of the provider API, with the casing the provider actually uses.

use serde::{Deserialize, Serialize};

/// A secret string: never printed, never serialized by accident into logs.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Sensitive(String);

impl Sensitive {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Sensitive(value.into())
    }

    /// The secret itself; call only where it is sent or stored.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True for an empty or whitespace-only value.
    pub fn is_blank(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl std::fmt::Debug for Sensitive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Sensitive {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Sensitive)
    }
}

/// Body of `POST /api/account/registration`.
#[derive(Debug, Clone, Serialize)]
pub struct RegistrationRequest {
    /// ISO country code.
    #[serde(rename = "countryISO")]
    pub country_iso: String,
    /// Postal address.
    pub address: String,
    /// Organisation name.
    pub name: String,
    /// Contact e-mail.
    pub email: String,
    /// Certificate type (`account`).
    #[serde(rename = "certificateType")]
    pub certificate_type: String,
    /// Callback URL.
    #[serde(rename = "callbackUrl")]
    pub callback_url: String,
}

/// Answer of a successful registration.
#[derive(Debug, Clone, Deserialize)]
pub struct RegistrationResponse {
    /// Password for the token endpoint.
    #[serde(rename = "Certificate", alias = "certificate")]
    pub certificate: Sensitive,
    /// Issued client id.
    #[serde(rename = "ClientId", alias = "clientId")]
    pub client_id: String,
    /// `Message` in current docs, `statusMessage` in older ones.
    #[serde(
        default,
        rename = "Message",
        alias = "statusMessage",
        alias = "message"
    )]
    pub message: Option<String>,
}

/// Answer of the token endpoint.
#[derive(Debug, Clone, Deserialize)]
pub struct TokenResponse {
    /// The access token (a JWT).
    pub access_token: Sensitive,
    /// Token type, `Bearer`.
    #[serde(default = "bearer")]
    pub token_type: String,
    /// Lifetime in seconds, as the provider states it.
    #[serde(default)]
    pub expires_in: Option<u64>,
    /// OpenID id token (authorisation-code grant only).
    #[serde(default)]
    pub id_token: Option<Sensitive>,
    /// Id of the access token (authorisation-code grant only).
    #[serde(default)]
    pub access_token_id: Option<String>,
}

fn bearer() -> String {
    "Bearer".to_string()
}

/// Credentials issued at registration, as stored in the credentials Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    /// Client id.
    pub client_id: String,
    /// The password for the token endpoint (`Certificate` in the registration answer).
    pub certificate: Sensitive,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_response_accepts_both_documented_casings() {
        let current: RegistrationResponse =
            serde_json::from_str(r#"{"Certificate":"Adaobi@","ClientId":"74EB610C710938923806817AD4631EB3","Message":"OK"}"#).unwrap();
        assert_eq!(current.client_id, "74EB610C710938923806817AD4631EB3");
        assert_eq!(current.certificate.expose(), "Adaobi@");
        assert_eq!(current.message.as_deref(), Some("OK"));
        let legacy: RegistrationResponse =
            serde_json::from_str(r#"{"Certificate":"x","ClientId":"y","statusMessage":"OK"}"#)
                .unwrap();
        assert_eq!(legacy.message.as_deref(), Some("OK"));
    }

    #[test]
    fn sensitive_never_prints_its_value() {
        let s = Sensitive::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        let creds = ClientCredentials {
            client_id: "abc".into(),
            certificate: s,
        };
        assert!(!format!("{creds:?}").contains("hunter2"));
    }
}
