//! A bank's OpenID Provider configuration (OpenID Connect Discovery 1.0). Read leniently,
//! because some banks publish incomplete or sloppy documents; resolved strictly, because the
//! endpoints it names receive the operator's credentials.

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use url::{Host, Url};

pub use super::fetch::{fetch_json, FetchError};

/// Most characters of bank-sent text repeated in an error.
const MAX_ECHO_CHARS: usize = 200;

/// The discovery document as the bank published it; every field optional, wrong types ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ProviderMetadata {
    /// The issuer the bank claims to be.
    #[serde(deserialize_with = "lenient_string")]
    pub issuer: Option<String>,
    /// Where the customer is sent to authorise.
    #[serde(deserialize_with = "lenient_string")]
    pub authorization_endpoint: Option<String>,
    /// Where codes and client credentials are exchanged for tokens.
    #[serde(deserialize_with = "lenient_string")]
    pub token_endpoint: Option<String>,
    /// The bank's signing keys.
    #[serde(deserialize_with = "lenient_string")]
    pub jwks_uri: Option<String>,
    /// Dynamic client registration (RFC 7591), when the bank offers it.
    #[serde(deserialize_with = "lenient_string")]
    pub registration_endpoint: Option<String>,
    /// `private_key_jwt`, `tls_client_auth`, ...
    #[serde(deserialize_with = "lenient_strings")]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// Algorithms the bank signs id tokens with.
    #[serde(deserialize_with = "lenient_strings")]
    pub id_token_signing_alg_values_supported: Vec<String>,
    /// Algorithms the bank accepts on request objects.
    #[serde(deserialize_with = "lenient_strings")]
    pub request_object_signing_alg_values_supported: Vec<String>,
    /// `fragment`, `query`, `jwt`, ...
    #[serde(deserialize_with = "lenient_strings")]
    pub response_modes_supported: Vec<String>,
    /// RFC 8705 endpoint names to their mutual-TLS aliases.
    #[serde(deserialize_with = "lenient_map")]
    pub mtls_endpoint_aliases: Option<BTreeMap<String, String>>,
}

impl ProviderMetadata {
    /// Reads a fetched discovery document; only a non-object is refused.
    pub fn from_json(value: serde_json::Value) -> Result<Self, DiscoveryError> {
        if !value.is_object() {
            return Err(DiscoveryError::NotAnObject);
        }
        serde_json::from_value(value).map_err(|_| DiscoveryError::NotAnObject)
    }
}

/// Endpoints a platform team sets for a bank whose document is incomplete or wrong.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EndpointOverrides {
    /// Replaces `authorization_endpoint`.
    pub authorization: Option<String>,
    /// Replaces `token_endpoint`.
    pub token: Option<String>,
    /// Replaces `jwks_uri`.
    pub jwks: Option<String>,
    /// Replaces `registration_endpoint`.
    pub registration: Option<String>,
}

/// The checked endpoints of one bank.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// The issuer exactly as the bank writes it (the document's), to compare id tokens' `iss`.
    pub issuer: String,
    /// Where the customer is sent to authorise.
    pub authorization: Url,
    /// Where tokens are obtained.
    pub token: Url,
    /// The bank's signing keys.
    pub jwks: Url,
    /// Dynamic client registration, when known.
    pub registration: Option<Url>,
}

/// Why a bank's endpoints cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// The document is not a JSON object.
    #[error("the bank's discovery document is not a JSON object")]
    NotAnObject,
    /// The document names no issuer, so it cannot be told apart from another bank's.
    #[error("the bank's discovery document names no issuer")]
    MissingIssuer,
    /// The document belongs to another issuer than the one configured.
    #[error(
        "the discovery document names issuer {found:?}, not the configured {expected:?}; it \
         is refused, since accepting it would let one bank stand in for another"
    )]
    IssuerMismatch {
        /// The configured issuer.
        expected: String,
        /// What the document says, shortened.
        found: String,
    },
    /// A required endpoint is neither in the document nor overridden.
    #[error(
        "the bank's discovery document has no {0}; set the endpoint override for it if the \
         bank publishes it elsewhere"
    )]
    Missing(&'static str),
    /// An endpoint is not a usable URL.
    #[error("{field} is not a usable URL: {reason}")]
    InvalidUrl {
        /// The document field or override.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An endpoint is not https (http is allowed for loopback test hosts only).
    #[error("{0} must be an https URL (plain http only for localhost, 127.0.0.1 or ::1)")]
    NotHttps(&'static str),
}

/// Where an issuer publishes its configuration: the issuer with any trailing slash dropped,
/// then `/.well-known/openid-configuration`, keeping a path prefix.
pub fn discovery_url(issuer: &Url) -> Url {
    let mut url = issuer.clone();
    let path = format!(
        "{}/.well-known/openid-configuration",
        issuer.path().trim_end_matches('/')
    );
    url.set_path(&path);
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// The endpoints to use for `expected_issuer`: overrides win over the document, every
/// endpoint must be https, and a document must name exactly the expected issuer (a trailing
/// slash aside). Without a document, every required endpoint must be overridden.
pub fn resolve(
    raw: Option<&ProviderMetadata>,
    expected_issuer: &Url,
    overrides: &EndpointOverrides,
) -> Result<Endpoints, DiscoveryError> {
    check_url("issuer", expected_issuer)?;
    let issuer = match raw {
        Some(doc) => checked_issuer(doc, expected_issuer)?,
        None => configured_issuer(expected_issuer),
    };
    let empty = ProviderMetadata::default();
    let doc = raw.unwrap_or(&empty);
    Ok(Endpoints {
        issuer,
        authorization: required(
            "authorization_endpoint",
            &overrides.authorization,
            &doc.authorization_endpoint,
        )?,
        token: required("token_endpoint", &overrides.token, &doc.token_endpoint)?,
        jwks: required("jwks_uri", &overrides.jwks, &doc.jwks_uri)?,
        registration: endpoint(
            "registration_endpoint",
            &overrides.registration,
            &doc.registration_endpoint,
        )?,
    })
}

fn required(
    field: &'static str,
    over: &Option<String>,
    doc: &Option<String>,
) -> Result<Url, DiscoveryError> {
    endpoint(field, over, doc)?.ok_or(DiscoveryError::Missing(field))
}

/// The override when set, else the document's value; blank counts as absent.
fn endpoint(
    field: &'static str,
    over: &Option<String>,
    doc: &Option<String>,
) -> Result<Option<Url>, DiscoveryError> {
    let present = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    let Some(value) = present(over).or_else(|| present(doc)) else {
        return Ok(None);
    };
    let url = Url::parse(&value).map_err(|e| DiscoveryError::InvalidUrl {
        field,
        reason: e.to_string(),
    })?;
    check_url(field, &url)?;
    Ok(Some(url))
}

fn checked_issuer(doc: &ProviderMetadata, expected: &Url) -> Result<String, DiscoveryError> {
    let found = doc.issuer.as_deref().ok_or(DiscoveryError::MissingIssuer)?;
    if trim_slash(found) != trim_slash(expected.as_str()) {
        return Err(DiscoveryError::IssuerMismatch {
            expected: expected.as_str().to_string(),
            found: echo(found),
        });
    }
    Ok(found.to_string())
}

/// The issuer as configured. `Url` writes a bare host as `https://host/`; banks write it
/// without the slash, so a root-only slash is dropped (a path's own slash is the user's).
fn configured_issuer(expected: &Url) -> String {
    if expected.path() == "/" {
        trim_slash(expected.as_str()).to_string()
    } else {
        expected.as_str().to_string()
    }
}

fn trim_slash(s: &str) -> &str {
    s.strip_suffix('/').unwrap_or(s)
}

fn check_url(field: &'static str, url: &Url) -> Result<(), DiscoveryError> {
    let invalid = |reason: &str| DiscoveryError::InvalidUrl {
        field,
        reason: reason.to_string(),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("it carries credentials"));
    }
    if url.fragment().is_some() {
        return Err(invalid("it has a fragment"));
    }
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "https" => Err(invalid("it has no host")),
        "http" if is_loopback(url) => Ok(()),
        _ => Err(DiscoveryError::NotHttps(field)),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
        Some(Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
        None => false,
    }
}

/// Bank-sent text going into an error: printable and short.
fn echo(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(MAX_ECHO_CHARS)
        .collect()
}

fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Some(s),
        _ => None,
    })
}

/// A list of strings; a lone string counts as a list of one, other entries are skipped.
fn lenient_strings<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => vec![s],
        serde_json::Value::Array(items) => items
            .into_iter()
            .filter_map(|v| match v {
                serde_json::Value::String(s) => Some(s),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    })
}

fn lenient_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Object(map) => Some(
            map.into_iter()
                .filter_map(|(k, v)| match v {
                    serde_json::Value::String(s) => Some((k, s)),
                    _ => None,
                })
                .collect(),
        ),
        _ => None,
    })
}

#[cfg(test)]
#[path = "discovery_tests.rs"]
mod tests;
