//! Wire types of the provider API, with the casing the provider actually uses.

use serde::{Deserialize, Serialize};

pub use crate::api::contract::{ClientCredentials, Sensitive};

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
    /// A refresh token (standard profile, customer tokens).
    #[serde(default)]
    pub refresh_token: Option<Sensitive>,
    /// When the refresh token expires, in seconds since the epoch (the UK standard's claim).
    #[serde(
        default,
        rename = "http://openbanking.org.uk/refresh_token_expires_at",
        deserialize_with = "lenient_epoch"
    )]
    pub refresh_token_expires_at: Option<i64>,
}

/// An epoch time as a number or a numeric string; anything else is treated as absent (the
/// refresh token then lives until the consent ends).
fn lenient_epoch<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(d)?;
    Ok(match value {
        Some(serde_json::Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

fn bearer() -> String {
    "Bearer".to_string()
}

/// Body of `POST /account-access-consents`.
#[derive(Debug, Clone, Serialize)]
pub struct ConsentRequest {
    /// The consent's content.
    #[serde(rename = "Data")]
    pub data: ConsentRequestData,
    /// Risk block (empty for account access).
    #[serde(rename = "Risk")]
    pub risk: serde_json::Value,
}

/// `Data` of a consent request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConsentRequestData {
    /// Permissions asked for.
    pub permissions: Vec<String>,
    /// When the consent stops granting access.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_date_time: Option<String>,
    /// Start of the transaction history.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_from_date_time: Option<String>,
    /// End of the transaction history.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_to_date_time: Option<String>,
}

/// A consent as the provider returns it (create and get).
#[derive(Debug, Clone, Deserialize)]
pub struct ConsentResponse {
    /// The consent.
    #[serde(rename = "Data")]
    pub data: ConsentData,
    /// Links; `Self` is the provider's page for the consent.
    #[serde(rename = "Links", default)]
    pub links: ConsentLinks,
}

/// `Data` of a consent response. Timestamps stay strings: the provider sends 7 fractional
/// digits, which are shown to users as they came.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConsentData {
    /// ConsentId.
    pub consent_id: String,
    /// AwaitingAuthorisation, Authorised, Rejected, Revoked...
    pub status: String,
    /// When the status last changed.
    #[serde(default)]
    pub status_update_date_time: Option<String>,
    /// When the consent was created.
    #[serde(default)]
    pub creation_date_time: Option<String>,
    /// When the consent expires.
    #[serde(default)]
    pub expiration_date_time: Option<String>,
}

/// `Links` of a consent response.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConsentLinks {
    /// The consent's page at the provider.
    #[serde(rename = "Self", default)]
    pub self_: Option<String>,
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
    fn consent_response_as_documented_parses() {
        let body = r#"{"Data":{"Status":"AwaitingAuthorisation","StatusUpdateDateTime":"2024-07-01T17:46:17.6950484Z","CreationDateTime":"2024-07-01T17:46:17.6950483Z","TransactionToDateTime":"2024-06-30T08:38:43.527Z","ExpirationDateTime":"2024-06-30T08:38:43.527Z","Permissions":["ReadAccountsBasic","ReadBeneficiariesBasic","ReadBeneficiariesDetail"],"ConsentId":"9584b369-44dc-450e-8403-d04945e623bd","TransactionFromDateTime":"2024-06-29T08:38:43.527Z"},"Risk":{},"Links":{"Self":"https://app-leatherbackwebsite-stg.azurewebsites.net/create-consent?consentId=b23b4a2f"},"Meta":{"TotalPages":1}}"#;
        let c: ConsentResponse = serde_json::from_str(body).unwrap();
        assert_eq!(c.data.consent_id, "9584b369-44dc-450e-8403-d04945e623bd");
        assert_eq!(c.data.status, "AwaitingAuthorisation");
        assert_eq!(
            c.data.status_update_date_time.as_deref(),
            Some("2024-07-01T17:46:17.6950484Z")
        );
        assert!(c.links.self_.unwrap().contains("create-consent"));
    }

    #[test]
    fn consent_request_uses_the_documented_casing() {
        let r = ConsentRequest {
            data: ConsentRequestData {
                permissions: vec!["ReadAccountsBasic".into()],
                expiration_date_time: Some("2030-01-01T00:00:00Z".into()),
                transaction_from_date_time: None,
                transaction_to_date_time: None,
            },
            risk: serde_json::json!({}),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"Data": {"Permissions": ["ReadAccountsBasic"], "ExpirationDateTime": "2030-01-01T00:00:00Z"}, "Risk": {}})
        );
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
