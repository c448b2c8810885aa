//! One provider as the client calls it: its dialect, its endpoints, its HTTP client (with its
//! CA bundle and timeout) and its limits. Built from a ClusterProvider, after discovery for the
//! standard profile; the client's calls take it instead of a bare URL.

use super::ProviderError;
use crate::api::{ProviderProfile, ProviderQuirks, TokenEndpointAuthMethod, TokenLifetimeRule};
use std::time::Duration;
use url::Url;

/// How hard a provider may be called.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Requests per second.
    pub rate: f64,
    /// Requests in a burst above the rate.
    pub burst: u32,
    /// Timeout of one call.
    pub timeout: Duration,
    /// Longest Retry-After honoured.
    pub max_retry_after: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            rate: 10.0,
            burst: 10,
            timeout: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(3600),
        }
    }
}

/// Where a provider's calls go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// The issuer its id tokens name (standard profile).
    pub issuer: Option<String>,
    /// Where customers authorise (standard profile; Leatherback sends them to the consent's
    /// `Links.Self`).
    pub authorization: Option<Url>,
    /// The token endpoint.
    pub token: Url,
    /// The bank's keys (standard profile).
    pub jwks: Option<Url>,
    /// Client registration (Leatherback's registration call; the standard's DCR endpoint).
    pub registration: Option<Url>,
    /// The collection of account-access consents.
    pub consents: Url,
}

/// One provider, ready to be called.
#[derive(Clone, Debug)]
pub struct Target {
    /// The ClusterProvider's name: the key of its rate limit.
    pub name: String,
    /// Its dialect.
    pub profile: ProviderProfile,
    /// Its URL as configured: Leatherback's base URL, or the issuer.
    pub url: Url,
    /// Where its calls go.
    pub endpoints: Endpoints,
    /// Client authentication at the token endpoint (standard profile).
    pub auth_method: TokenEndpointAuthMethod,
    /// Where it departs from the standard.
    pub quirks: ProviderQuirks,
    /// How a token's lifetime is read.
    pub lifetime: TokenLifetimeRule,
    /// How hard it may be called.
    pub limits: Limits,
    pub(super) http: reqwest::Client,
}

impl Target {
    /// Leatherback's API at `url`: every endpoint is a fixed path under it.
    pub fn leatherback(
        name: &str,
        url: Url,
        limits: Limits,
        lifetime: TokenLifetimeRule,
        ca_bundle: Option<&str>,
    ) -> Result<Target, ProviderError> {
        let endpoints = Endpoints {
            issuer: None,
            authorization: None,
            token: join(&url, "auth/token")?,
            jwks: None,
            registration: Some(join(&url, "api/account/registration")?),
            consents: join(&url, "account-access-consents")?,
        };
        Ok(Target {
            name: name.to_string(),
            profile: ProviderProfile::Leatherback,
            http: http_client(&limits, ca_bundle)?,
            url,
            endpoints,
            auth_method: TokenEndpointAuthMethod::default(),
            quirks: ProviderQuirks::default(),
            lifetime,
            limits,
        })
    }

    /// A standard-profile bank whose issuer is `url`, at `endpoints` (discovered and
    /// overridden), called with `http` (see `http_client`).
    #[allow(clippy::too_many_arguments)]
    pub fn openbanking(
        name: &str,
        url: Url,
        endpoints: Endpoints,
        auth_method: TokenEndpointAuthMethod,
        quirks: ProviderQuirks,
        limits: Limits,
        lifetime: TokenLifetimeRule,
        http: reqwest::Client,
    ) -> Target {
        Target {
            name: name.to_string(),
            profile: ProviderProfile::OpenBankingUk,
            url,
            endpoints,
            auth_method,
            quirks,
            lifetime,
            limits,
            http,
        }
    }

    /// The provider's HTTP client, e.g. to read its discovery document and keys.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The URL of one consent.
    pub fn consent_url(&self, consent_id: &str) -> Result<Url, ProviderError> {
        // The id comes from the provider: keep it to one path segment whatever it holds.
        let mut url = self.endpoints.consents.clone();
        url.path_segments_mut()
            .map_err(|_| ProviderError::InvalidUrl("base URL cannot have paths".into()))?
            .pop_if_empty()
            .push(consent_id);
        Ok(url)
    }
}

/// The HTTP client of one provider: never follows a redirect (it would re-send credentials to
/// another host), trusts `ca_bundle` besides the system's roots.
pub fn http_client(
    limits: &Limits,
    ca_bundle: Option<&str>,
) -> Result<reqwest::Client, ProviderError> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(limits.timeout)
        .connect_timeout(limits.timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("tpp-operator/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = ca_bundle {
        let certificates = reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|e| {
            ProviderError::InvalidUrl(format!("the CA bundle is not PEM certificates: {e}"))
        })?;
        if certificates.is_empty() {
            return Err(ProviderError::InvalidUrl(
                "the CA bundle holds no certificate".into(),
            ));
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder
        .build()
        .map_err(|e| ProviderError::InvalidUrl(format!("cannot build HTTP client: {e}")))
}

/// Appends a path to the base URL, keeping any path prefix the base has.
pub fn join(base: &Url, path: &str) -> Result<Url, ProviderError> {
    let mut base = base.clone();
    if !base.path().ends_with('/') {
        let with_slash = format!("{}/", base.path());
        base.set_path(&with_slash);
    }
    base.join(path.trim_start_matches('/'))
        .map_err(|e| ProviderError::InvalidUrl(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leatherback_endpoints_keep_the_base_path() {
        let url: Url = "https://bank.example/api/".parse().unwrap();
        let t = Target::leatherback(
            "lb",
            url,
            Limits::default(),
            TokenLifetimeRule::default(),
            None,
        )
        .unwrap();
        assert_eq!(
            t.endpoints.token.as_str(),
            "https://bank.example/api/auth/token"
        );
        assert_eq!(
            t.consent_url("a/b?c").unwrap().as_str(),
            "https://bank.example/api/account-access-consents/a%2Fb%3Fc"
        );
    }

    #[test]
    fn a_ca_bundle_must_hold_certificates() {
        assert!(http_client(&Limits::default(), Some("not a pem")).is_err());
        assert!(http_client(&Limits::default(), None).is_ok());
    }
}
