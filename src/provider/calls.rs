//! The provider calls, in each provider's dialect: Leatherback's (a password-like certificate
//! in forms and headers) or the UK Open Banking standard's (OAuth client authentication,
//! `x-fapi-interaction-id`, refresh tokens).

use super::{
    check_bearer_token, parse, ClientCredentials, ConsentRequest, ConsentResponse, Endpoint,
    ProviderClient, ProviderError, RegistrationRequest, RegistrationResponse, Sensitive, Target,
    TokenResponse,
};
use crate::api::{ProviderProfile, TokenEndpointAuthMethod};

/// The scope of a client-credentials token at a standard-profile bank (account information).
const STANDARD_CLIENT_SCOPE: &str = "accounts";

impl ProviderClient {
    /// Registers the organisation (Leatherback's `POST /api/account/registration`). Not
    /// idempotent. The standard profile registers through dynamic client registration, which
    /// is not a call of this kind.
    pub async fn register(
        &self,
        target: &Target,
        signature_certificate: &Sensitive,
        request: &RegistrationRequest,
    ) -> Result<RegistrationResponse, ProviderError> {
        let endpoint = Endpoint::Registration;
        let Some(url) = target
            .endpoints
            .registration
            .clone()
            .filter(|_| target.profile == ProviderProfile::Leatherback)
        else {
            return Err(ProviderError::Unsupported {
                endpoint,
                what: "registration with a signature certificate",
            });
        };
        let builder = target
            .http
            .post(url)
            .header("signature-certificate", signature_certificate.expose())
            .json(request);
        let parsed: RegistrationResponse = self
            .call(target, endpoint, builder, &[signature_certificate.expose()])
            .await?;
        if parsed.client_id.trim().is_empty() || parsed.certificate.is_blank() {
            return Err(ProviderError::Malformed {
                endpoint,
                detail: "ClientId or Certificate is empty".into(),
            });
        }
        Ok(parsed)
    }

    /// Obtains a client-credentials access token. `scope` is Leatherback's; a standard bank is
    /// asked for `accounts`.
    pub async fn client_token(
        &self,
        target: &Target,
        credentials: &ClientCredentials,
        scope: &str,
    ) -> Result<TokenResponse, ProviderError> {
        let grant = match target.profile {
            ProviderProfile::Leatherback => vec![
                ("scope", scope.to_string()),
                ("grant_type", "client_credentials".into()),
            ],
            ProviderProfile::OpenBankingUk => vec![
                ("grant_type", "client_credentials".into()),
                ("scope", STANDARD_CLIENT_SCOPE.into()),
            ],
        };
        self.token(target, Endpoint::ClientToken, credentials, grant, &[])
            .await
    }

    /// Exchanges the customer's authorisation code for a customer token.
    pub async fn exchange_code(
        &self,
        target: &Target,
        credentials: &ClientCredentials,
        code: &Sensitive,
        redirect_uri: &str,
    ) -> Result<TokenResponse, ProviderError> {
        let mut grant = vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.expose().to_string()),
        ];
        match target.profile {
            ProviderProfile::Leatherback => grant.push(("scope", "account".into())),
            ProviderProfile::OpenBankingUk => grant.push(("redirect_uri", redirect_uri.into())),
        }
        let endpoint = Endpoint::AuthorizationCodeToken;
        self.token(target, endpoint, credentials, grant, &[code.expose()])
            .await
    }

    /// Refreshes a customer token with its refresh token (standard profile only: Leatherback
    /// issues none).
    pub async fn refresh_customer_token(
        &self,
        target: &Target,
        credentials: &ClientCredentials,
        refresh_token: &Sensitive,
    ) -> Result<TokenResponse, ProviderError> {
        let endpoint = Endpoint::RefreshToken;
        if target.profile != ProviderProfile::OpenBankingUk {
            return Err(ProviderError::Unsupported {
                endpoint,
                what: "refresh tokens",
            });
        }
        let grant = vec![
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", refresh_token.expose().to_string()),
        ];
        self.token(
            target,
            endpoint,
            credentials,
            grant,
            &[refresh_token.expose()],
        )
        .await
    }

    /// One call of the token endpoint with the client authenticated as the profile wants.
    async fn token(
        &self,
        target: &Target,
        endpoint: Endpoint,
        credentials: &ClientCredentials,
        mut form: Vec<(&str, String)>,
        more_secrets: &[&str],
    ) -> Result<TokenResponse, ProviderError> {
        let secret = credentials.certificate.expose();
        let mut builder = target.http.post(target.endpoints.token.clone());
        match (target.profile, target.auth_method) {
            (ProviderProfile::Leatherback, _) => {
                form.push(("password", secret.to_string()));
                form.push(("client_id", credentials.client_id.clone()));
            }
            (ProviderProfile::OpenBankingUk, TokenEndpointAuthMethod::ClientSecretBasic) => {
                // RFC 6749 2.3.1: both parts form-encoded before Basic.
                let encode = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                builder = builder.basic_auth(encode(&credentials.client_id), Some(encode(secret)));
            }
            (ProviderProfile::OpenBankingUk, TokenEndpointAuthMethod::ClientSecretPost) => {
                form.push(("client_id", credentials.client_id.clone()));
                form.push(("client_secret", secret.to_string()));
            }
        }
        let builder = builder.form(&form);
        let mut secrets = vec![secret];
        secrets.extend_from_slice(more_secrets);
        let body = self.send(target, endpoint, builder, &secrets).await?;
        let parsed: TokenResponse = parse(endpoint, &body)?;
        check_bearer_token(endpoint, &parsed.access_token)?;
        if let Some(refresh) = &parsed.refresh_token {
            check_bearer_token(endpoint, refresh)?;
        }
        Ok(parsed)
    }

    /// Creates an account-access consent with a client token.
    pub async fn create_consent(
        &self,
        target: &Target,
        client_token: &Sensitive,
        request: &ConsentRequest,
    ) -> Result<ConsentResponse, ProviderError> {
        let builder = target
            .http
            .post(target.endpoints.consents.clone())
            .bearer_auth(client_token.expose())
            .json(request);
        let builder = interaction_id(target, builder);
        self.call(
            target,
            Endpoint::ConsentCreate,
            builder,
            &[client_token.expose()],
        )
        .await
    }

    /// Reads a consent. Providers without this call answer 404 or 405 (see
    /// `ProviderError::status`); that means "unknown", not "failed".
    pub async fn get_consent(
        &self,
        target: &Target,
        client_token: &Sensitive,
        consent_id: &str,
    ) -> Result<ConsentResponse, ProviderError> {
        let builder = target
            .http
            .get(target.consent_url(consent_id)?)
            .bearer_auth(client_token.expose());
        let builder = interaction_id(target, builder);
        self.call(
            target,
            Endpoint::ConsentGet,
            builder,
            &[client_token.expose()],
        )
        .await
    }

    /// Revokes a consent (`DELETE`); optional at a Leatherback provider like `get_consent`.
    pub async fn delete_consent(
        &self,
        target: &Target,
        client_token: &Sensitive,
        consent_id: &str,
    ) -> Result<(), ProviderError> {
        let builder = target
            .http
            .delete(target.consent_url(consent_id)?)
            .bearer_auth(client_token.expose());
        let builder = interaction_id(target, builder);
        self.send(
            target,
            Endpoint::ConsentDelete,
            builder,
            &[client_token.expose()],
        )
        .await
        .map(|_| ())
    }
}

/// A standard bank correlates a call by its `x-fapi-interaction-id` (a random UUID per call).
fn interaction_id(target: &Target, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    if target.profile != ProviderProfile::OpenBankingUk {
        return builder;
    }
    let b: [u8; 16] = rand::random();
    let id = format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
        (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]])
    );
    builder.header("x-fapi-interaction-id", id)
}
