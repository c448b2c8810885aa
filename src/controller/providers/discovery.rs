//! A standard-profile provider's target: its discovery document read (over its own HTTP
//! client, with its CA bundle), checked against its issuer, completed by the spec's endpoint
//! overrides.

use super::limits;
use crate::api::ClusterProvider;
use crate::controller::Context;
use crate::oidc::{self, EndpointOverrides, ProviderMetadata};
use crate::provider::{http_client, join, Endpoints, Target};
use kube::ResourceExt;
use url::Url;

/// Largest discovery document read (real ones are a few KiB).
const MAX_DISCOVERY_BYTES: usize = 64 * 1024;
/// Where the account-information API lives under apiUrl when the spec does not say.
const DEFAULT_API_PATH: &str = "/open-banking/v3.1/aisp";

/// The target of a standard-profile ClusterProvider; the error is a message for its status.
pub(super) async fn target(obj: &ClusterProvider, ctx: &Context) -> Result<Target, String> {
    let spec = &obj.spec;
    let issuer = Url::parse(&spec.url).map_err(|e| format!("spec.url: {e}"))?;
    let limits = limits(obj, ctx.provider.default_limits());
    let http = http_client(&limits, spec.ca_bundle.as_deref()).map_err(|e| e.to_string())?;
    let own = spec.endpoints.clone().unwrap_or_default();
    let overrides = EndpointOverrides {
        authorization: own.authorization,
        token: own.token,
        jwks: own.jwks,
        registration: own.registration,
    };
    let location = oidc::discovery_url(&issuer);
    let document = match oidc::fetch_json(&http, &location, MAX_DISCOVERY_BYTES).await {
        Ok(json) => Some(
            ProviderMetadata::from_json(json)
                .map_err(|e| format!("the discovery document at {location} cannot be used: {e}"))?,
        ),
        // A bank without a usable document can still be used when the spec names every
        // endpoint; `resolve` says which one is missing otherwise.
        Err(e) if complete(&overrides) => {
            tracing::info!(provider = %obj.name_any(), error = %e, "discovery document unavailable; using the spec's endpoints");
            None
        }
        Err(e) => {
            return Err(format!(
                "reading the discovery document at {location} failed: {e}"
            ))
        }
    };
    let found = oidc::resolve(document.as_ref(), &issuer, &overrides).map_err(|e| e.to_string())?;
    let api = match &spec.api_url {
        Some(u) => Url::parse(u).map_err(|e| format!("spec.apiUrl: {e}"))?,
        None => issuer.clone(),
    };
    let path = spec.api_path.as_deref().unwrap_or(DEFAULT_API_PATH);
    let consents = join(&api, path)
        .and_then(|base| join(&base, "account-access-consents"))
        .map_err(|e| e.to_string())?;
    let endpoints = Endpoints {
        issuer: Some(found.issuer),
        authorization: Some(found.authorization),
        token: found.token,
        jwks: Some(found.jwks),
        registration: found.registration,
        consents,
    };
    Ok(Target::openbanking(
        &obj.name_any(),
        issuer,
        endpoints,
        spec.token_endpoint_auth_method,
        spec.quirks.clone().unwrap_or_default(),
        limits,
        spec.token_lifetime,
        http,
    ))
}

/// Whether the overrides name every endpoint a bank must have.
fn complete(o: &EndpointOverrides) -> bool {
    o.authorization.is_some() && o.token.is_some() && o.jwks.is_some()
}
