//! The one client for the providers' APIs: typed calls in each provider's dialect
//! (`calls.rs`), a timeout and a rate limit per provider (`Target`), error classification, and no
//! secret in any log line or error.

mod answer;
mod calls;
mod error;
mod ratelimit;
mod target;
pub mod token;
mod types;

use answer::{check_bearer_token, error_detail, oauth_error, parse, parse_retry_after, root_cause};
pub use answer::{MAX_BODY_BYTES, MAX_TOKEN_BYTES};
pub use error::{Endpoint, ProviderError};
pub use ratelimit::{RateLimiter, TokenBucket};
pub use target::{http_client, join, Endpoints, Limits, Target};
pub use types::*;

use crate::telemetry::Metrics;
use std::sync::Arc;
use std::time::{Duration, Instant};
use url::Url;

/// Settings of the provider client: the limits of providers that set none themselves.
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    /// Timeout of one whole call.
    pub timeout: Duration,
    /// Requests per second allowed per provider.
    pub rate_limit: f64,
    /// Burst allowed above the rate.
    pub burst: u32,
    /// Longest Retry-After honoured: a provider asking for more is waited for this long.
    pub max_retry_after: Duration,
    /// Calls that may wait for one provider at a time; more are refused at once
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

impl ProviderConfig {
    /// The limits of a provider that sets none.
    pub fn limits(&self) -> Limits {
        Limits {
            rate: self.rate_limit,
            burst: self.burst,
            timeout: self.timeout,
            max_retry_after: self.max_retry_after,
        }
    }
}

/// Client for the providers' APIs, shared by all reconcilers.
pub struct ProviderClient {
    limiter: RateLimiter,
    defaults: Limits,
    metrics: Arc<Metrics>,
}

impl ProviderClient {
    /// The client; `config` gives the limits of providers that set none.
    pub fn new(config: &ProviderConfig, metrics: Arc<Metrics>) -> Result<Self, ProviderError> {
        Ok(ProviderClient {
            limiter: RateLimiter::new(config.max_waiters),
            defaults: config.limits(),
            metrics,
        })
    }

    /// The limits of a provider that sets none.
    pub fn default_limits(&self) -> &Limits {
        &self.defaults
    }

    /// How long a call to `target` would be held back now, if it would be (see
    /// `RateLimiter`); asked before a non-idempotent call records its attempt.
    pub fn throttled(&self, target: &Target) -> Option<Duration> {
        self.limiter.throttled(&target.name).map(|t| t.retry_after)
    }

    /// Sends one request and parses its 2xx answer as `T`.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        target: &Target,
        endpoint: Endpoint,
        builder: reqwest::RequestBuilder,
        secrets: &[&str],
    ) -> Result<T, ProviderError> {
        let body = self.send(target, endpoint, builder, secrets).await?;
        parse(endpoint, &body)
    }

    /// Sends one request after the provider's rate limit allows it; returns the body of a 2xx
    /// answer.
    async fn send(
        &self,
        target: &Target,
        endpoint: Endpoint,
        builder: reqwest::RequestBuilder,
        secrets: &[&str],
    ) -> Result<Vec<u8>, ProviderError> {
        let limits = &target.limits;
        let acquired = self
            .limiter
            .acquire(&target.name, limits.rate, limits.burst)
            .await;
        if let Err(t) = acquired {
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
        let result = self.exchange(target, endpoint, builder, secrets).await;
        if let Err(ProviderError::Status {
            status: 429,
            retry_after,
            ..
        }) = &result
        {
            // The whole provider is throttled, for every object that calls it.
            let pause = retry_after.unwrap_or(Duration::from_secs(1));
            self.limiter.pause(&target.name, pause);
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
        target: &Target,
        endpoint: Endpoint,
        builder: reqwest::RequestBuilder,
        secrets: &[&str],
    ) -> Result<Vec<u8>, ProviderError> {
        let timeout = target.limits.timeout;
        let response = builder
            .send()
            .await
            .map_err(|e| transport_error(endpoint, timeout, e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after)
            // A provider may ask for anything; nothing waits longer than the configured cap.
            .map(|d| d.min(target.limits.max_retry_after));
        if status.is_redirection() {
            return Err(ProviderError::Redirected {
                endpoint,
                status: status.as_u16(),
            });
        }
        let body = read_capped(endpoint, timeout, response).await?;
        if status.is_success() {
            return Ok(body);
        }
        Err(ProviderError::Status {
            endpoint,
            status: status.as_u16(),
            retry_after,
            detail: error_detail(&body, secrets),
            oauth_error: oauth_error(&body),
        })
    }
}

/// Reads a body of at most `MAX_BODY_BYTES`, without buffering more than that.
async fn read_capped(
    endpoint: Endpoint,
    timeout: Duration,
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
        .map_err(|e| transport_error(endpoint, timeout, e))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn transport_error(endpoint: Endpoint, timeout: Duration, e: reqwest::Error) -> ProviderError {
    let (timed_out, connect) = (e.is_timeout(), e.is_connect());
    let detail = root_cause(&e.without_url());
    if timed_out {
        ProviderError::Timeout { endpoint, timeout }
    } else if connect {
        ProviderError::Connect { endpoint, detail }
    } else {
        ProviderError::Network { endpoint, detail }
    }
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
