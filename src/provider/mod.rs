//! The one HTTP client for the provider's API: typed calls, a timeout, a per-host rate limit,
//! error classification, and no secret in any log line or error.

mod answer;
mod error;
mod ratelimit;
pub mod token;
mod types;

use answer::{check_bearer_token, error_detail, parse, parse_retry_after, root_cause};
pub use answer::{MAX_BODY_BYTES, MAX_TOKEN_BYTES};
pub use error::{Endpoint, ProviderError};
pub use ratelimit::{RateLimiter, TokenBucket};
pub use types::*;

use crate::telemetry::Metrics;
use std::sync::Arc;
use std::time::{Duration, Instant};
use url::Url;

/// Settings of the provider client.
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    /// Timeout of one whole call.
    pub timeout: Duration,
    /// Requests per second allowed per provider host.
    pub rate_limit: f64,
    /// Burst allowed above the rate.
    pub burst: u32,
    /// Longest Retry-After honoured: a provider asking for more is waited for this long.
    pub max_retry_after: Duration,
    /// Calls that may wait for one provider host at a time; more are refused at once
    /// (`Throttled`) so that they do not hold reconcile slots other providers' objects need.
    pub max_waiters: usize,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            timeout: Duration::from_secs(30),
            rate_limit: 10.0,
            burst: 10,
            max_retry_after: Duration::from_secs(3600),
            max_waiters: 16,
        }
    }
}

/// Client for the provider API, shared by all reconcilers.
pub struct ProviderClient {
    http: reqwest::Client,
    limiter: RateLimiter,
    timeout: Duration,
    max_retry_after: Duration,
    metrics: Arc<Metrics>,
}

impl ProviderClient {
    /// Builds the client; the TLS roots are the operating system's.
    pub fn new(config: &ProviderConfig, metrics: Arc<Metrics>) -> Result<Self, ProviderError> {
        let http = reqwest::Client::builder()
            // Never follow a redirect: it would re-send credentials to another host.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("tpp-operator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::InvalidUrl(format!("cannot build HTTP client: {e}")))?;
        Ok(ProviderClient {
            http,
            limiter: RateLimiter::new(config.rate_limit, config.burst, config.max_waiters),
            timeout: config.timeout,
            max_retry_after: config.max_retry_after,
            metrics,
        })
    }

    /// How long a call to the provider at `base` would be held back now, if it would be (see
    /// `RateLimiter`); asked before a non-idempotent call records its attempt.
    pub fn throttled(&self, base: &Url) -> Option<Duration> {
        self.limiter
            .throttled(&authority(base))
            .map(|t| t.retry_after)
    }

    /// Registers the organisation (`POST /api/account/registration`). Not idempotent.
    pub async fn register(
        &self,
        base: &Url,
        signature_certificate: &Sensitive,
        request: &RegistrationRequest,
    ) -> Result<RegistrationResponse, ProviderError> {
        let endpoint = Endpoint::Registration;
        let url = join(base, "api/account/registration")?;
        let builder = self
            .http
            .post(url.clone())
            .header("signature-certificate", signature_certificate.expose())
            .json(request);
        let parsed: RegistrationResponse = self
            .call(endpoint, &url, builder, &[signature_certificate.expose()])
            .await?;
        if parsed.client_id.trim().is_empty() || parsed.certificate.is_blank() {
            return Err(ProviderError::Malformed {
                endpoint,
                detail: "ClientId or Certificate is empty".into(),
            });
        }
        Ok(parsed)
    }

    /// Obtains a client-credentials access token (`POST /auth/token`, form-encoded).
    pub async fn client_token(
        &self,
        base: &Url,
        credentials: &ClientCredentials,
        scope: &str,
    ) -> Result<TokenResponse, ProviderError> {
        let endpoint = Endpoint::ClientToken;
        let url = join(base, "auth/token")?;
        let form = [
            ("password", credentials.certificate.expose()),
            ("client_id", credentials.client_id.as_str()),
            ("scope", scope),
            ("grant_type", "client_credentials"),
        ];
        let builder = self.http.post(url.clone()).form(&form);
        let parsed: TokenResponse = self
            .call(endpoint, &url, builder, &[credentials.certificate.expose()])
            .await?;
        check_bearer_token(endpoint, &parsed.access_token)?;
        Ok(parsed)
    }

    /// Creates an account-access consent with a client token.
    pub async fn create_consent(
        &self,
        base: &Url,
        client_token: &Sensitive,
        request: &ConsentRequest,
    ) -> Result<ConsentResponse, ProviderError> {
        let endpoint = Endpoint::ConsentCreate;
        let url = join(base, "account-access-consents")?;
        let builder = self
            .http
            .post(url.clone())
            .bearer_auth(client_token.expose())
            .json(request);
        self.call(endpoint, &url, builder, &[client_token.expose()])
            .await
    }

    /// Reads a consent. Providers without this call answer 404 or 405 (see
    /// `ProviderError::status`); that means "unknown", not "failed".
    pub async fn get_consent(
        &self,
        base: &Url,
        client_token: &Sensitive,
        consent_id: &str,
    ) -> Result<ConsentResponse, ProviderError> {
        let endpoint = Endpoint::ConsentGet;
        let url = consent_url(base, consent_id)?;
        let builder = self
            .http
            .get(url.clone())
            .bearer_auth(client_token.expose());
        self.call(endpoint, &url, builder, &[client_token.expose()])
            .await
    }

    /// Revokes a consent (`DELETE`); optional at the provider like `get_consent`.
    pub async fn delete_consent(
        &self,
        base: &Url,
        client_token: &Sensitive,
        consent_id: &str,
    ) -> Result<(), ProviderError> {
        let url = consent_url(base, consent_id)?;
        let builder = self
            .http
            .delete(url.clone())
            .bearer_auth(client_token.expose());
        self.send(
            Endpoint::ConsentDelete,
            &url,
            builder,
            &[client_token.expose()],
        )
        .await
        .map(|_| ())
    }

    /// Exchanges the customer's authorisation code for a customer token.
    pub async fn exchange_code(
        &self,
        base: &Url,
        credentials: &ClientCredentials,
        code: &Sensitive,
    ) -> Result<TokenResponse, ProviderError> {
        let endpoint = Endpoint::AuthorizationCodeToken;
        let url = join(base, "auth/token")?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.expose()),
            ("client_id", credentials.client_id.as_str()),
            ("password", credentials.certificate.expose()),
            ("scope", "account"),
        ];
        let builder = self.http.post(url.clone()).form(&form);
        let body = self
            .send(
                endpoint,
                &url,
                builder,
                &[credentials.certificate.expose(), code.expose()],
            )
            .await?;
        let parsed: TokenResponse = parse(endpoint, &body)?;
        check_bearer_token(endpoint, &parsed.access_token)?;
        Ok(parsed)
    }

    /// Sends one request and parses its 2xx answer as `T`.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        url: &Url,
        builder: reqwest::RequestBuilder,
        secrets: &[&str],
    ) -> Result<T, ProviderError> {
        let body = self.send(endpoint, url, builder, secrets).await?;
        parse(endpoint, &body)
    }

    /// Sends one request after the rate limiter allows it; returns the body of a 2xx answer.
    async fn send(
        &self,
        endpoint: Endpoint,
        url: &Url,
        builder: reqwest::RequestBuilder,
        secrets: &[&str],
    ) -> Result<Vec<u8>, ProviderError> {
        let host = &authority(url);
        if let Err(t) = self.limiter.acquire(host).await {
            self.metrics
                .provider
                .observe(endpoint.as_str(), "throttled", Duration::ZERO);
            return Err(ProviderError::Throttled {
                endpoint,
                retry_after: t.retry_after,
                paused: t.paused,
            });
        }
        let started = Instant::now();
        let result = self.exchange(endpoint, builder, secrets).await;
        if let Err(ProviderError::Status {
            status: 429,
            retry_after,
            ..
        }) = &result
        {
            // The whole host is throttled, for every object that calls it.
            let pause = retry_after.unwrap_or(Duration::from_secs(1));
            self.limiter.pause(host, pause);
        }
        let elapsed = started.elapsed();
        let outcome = match &result {
            Ok(_) => "success",
            Err(e) if e.is_transient() => "transient_error",
            Err(_) => "permanent_error",
        };
        self.metrics
            .provider
            .observe(endpoint.as_str(), outcome, elapsed);
        match &result {
            Ok(_) => {
                tracing::debug!(%endpoint, ms = elapsed.as_millis() as u64, "provider call succeeded")
            }
            Err(e) => {
                tracing::info!(%endpoint, ms = elapsed.as_millis() as u64, error = %e, "provider call failed")
            }
        }
        result
    }

    async fn exchange(
        &self,
        endpoint: Endpoint,
        builder: reqwest::RequestBuilder,
        secrets: &[&str],
    ) -> Result<Vec<u8>, ProviderError> {
        let response = builder
            .send()
            .await
            .map_err(|e| self.transport_error(endpoint, e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after)
            // A provider may ask for anything; nothing waits longer than the configured cap.
            .map(|d| d.min(self.max_retry_after));
        if status.is_redirection() {
            return Err(ProviderError::Redirected {
                endpoint,
                status: status.as_u16(),
            });
        }
        let body = self.read_capped(endpoint, response).await?;
        if status.is_success() {
            return Ok(body);
        }
        Err(ProviderError::Status {
            endpoint,
            status: status.as_u16(),
            retry_after,
            detail: error_detail(&body, secrets),
        })
    }

    /// Reads a body of at most `MAX_BODY_BYTES`, without buffering more than that.
    async fn read_capped(
        &self,
        endpoint: Endpoint,
        mut response: reqwest::Response,
    ) -> Result<Vec<u8>, ProviderError> {
        let too_large = ProviderError::TooLarge {
            endpoint,
            limit: MAX_BODY_BYTES,
        };
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Err(too_large);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(endpoint, e))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(too_large);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    fn transport_error(&self, endpoint: Endpoint, e: reqwest::Error) -> ProviderError {
        let (timeout, connect) = (e.is_timeout(), e.is_connect());
        let detail = root_cause(&e.without_url());
        if timeout {
            ProviderError::Timeout {
                endpoint,
                timeout: self.timeout,
            }
        } else if connect {
            ProviderError::Connect { endpoint, detail }
        } else {
            ProviderError::Network { endpoint, detail }
        }
    }
}

/// Appends a path to the base URL, keeping any path prefix the base has.
fn join(base: &Url, path: &str) -> Result<Url, ProviderError> {
    let mut base = base.clone();
    if !base.path().ends_with('/') {
        let with_slash = format!("{}/", base.path());
        base.set_path(&with_slash);
    }
    base.join(path)
        .map_err(|e| ProviderError::InvalidUrl(e.to_string()))
}

fn consent_url(base: &Url, consent_id: &str) -> Result<Url, ProviderError> {
    // The id comes from the provider: keep it to one path segment whatever it holds.
    let mut url = join(base, "account-access-consents/")?;
    url.path_segments_mut()
        .map_err(|_| ProviderError::InvalidUrl("base URL cannot have paths".into()))?
        .pop_if_empty()
        .push(consent_id);
    Ok(url)
}

/// Parses and checks a provider base URL.
pub fn parse_base_url(raw: &str) -> Result<Url, ProviderError> {
    let url = Url::parse(raw).map_err(|e| ProviderError::InvalidUrl(format!("{raw:?}: {e}")))?;
    match url.scheme() {
        "https" | "http" => Ok(url),
        other => Err(ProviderError::InvalidUrl(format!(
            "{raw:?}: scheme {other} is not http(s)"
        ))),
    }
}
/// The rate limit's key of a provider: its host and port (two providers may share a host).
fn authority(url: &Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_keeps_path_prefix() {
        let base = Url::parse("https://bank.example/sandbox").unwrap();
        assert_eq!(
            join(&base, "auth/token").unwrap().as_str(),
            "https://bank.example/sandbox/auth/token"
        );
        let root = Url::parse("https://bank.example").unwrap();
        assert_eq!(
            join(&root, "auth/token").unwrap().as_str(),
            "https://bank.example/auth/token"
        );
    }
}
