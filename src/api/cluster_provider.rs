//! `ClusterProvider`: an Open Banking provider the platform team makes available to the
//! namespaces it chooses. Tenants name one in `TppRegistration.spec.providerRef`; they never
//! name a host.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// An Open Banking provider (a bank's API) that TppRegistrations of the allowed namespaces may
/// use: which dialect it speaks, where it is, how hard it may be called.
// rustfmt splits the printcolumns over lines, which clippy then reads as repeated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tpp-operator.dev",
    version = "v1alpha1",
    kind = "ClusterProvider",
    status = "ClusterProviderStatus",
    shortname = "tppprovider",
    category = "openbanking",
    doc = "An Open Banking provider (a bank's API) that TppRegistrations of the allowed namespaces may use.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = "1"
    ),
    printcolumn(name = "Profile", type_ = "string", json_path = ".spec.profile"),
    printcolumn(name = "URL", type_ = "string", json_path = ".spec.url"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(
    validation = Rule::new("self.profile == oldSelf.profile && self.url == oldSelf.url").message("profile and url cannot change: registrations hold credentials of this provider; create another ClusterProvider instead"),
    validation = Rule::new("self.profile == 'openbanking-uk' || (!has(self.endpoints) && !has(self.apiUrl) && !has(self.apiPath) && !has(self.quirks))").message("endpoints, apiUrl, apiPath and quirks apply to the openbanking-uk profile only")
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterProviderSpec {
    /// The dialect the provider speaks: leatherback (Leatherback's documented API: a password-like
    /// signature certificate, form-encoded tokens, opaque id tokens) or openbanking-uk (the UK
    /// Open Banking standard on FAPI 1 Advanced: OpenID discovery, verified id tokens, refresh
    /// tokens). Cannot change.
    pub profile: ProviderProfile,

    /// leatherback: the API's base URL, e.g. https://api-openbanking.leatherback.co.
    /// openbanking-uk: the issuer; its OpenID configuration is read from
    /// <url>/.well-known/openid-configuration. https only (http for localhost in tests). Cannot
    /// change.
    #[x_kube(validation = Rule::new("isURL(self) && (url(self).getScheme() == 'https' || (url(self).getScheme() == 'http' && url(self).getHostname() in ['localhost', '127.0.0.1', '::1']))").message("url must be an https URL (http is allowed only for localhost)"))]
    #[schemars(length(min = 8, max = 2048))]
    pub url: String,

    /// openbanking-uk: base URL of the bank's resource server, where account-access consents
    /// live. Default: url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isURL(self) && (url(self).getScheme() == 'https' || (url(self).getScheme() == 'http' && url(self).getHostname() in ['localhost', '127.0.0.1', '::1']))").message("apiUrl must be an https URL (http is allowed only for localhost)"))]
    #[schemars(length(min = 8, max = 2048))]
    pub api_url: Option<String>,

    /// openbanking-uk: path of the account-information API under apiUrl (prefix and version
    /// differ per bank). Default: /open-banking/v3.1/aisp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256), regex(pattern = r"^/[-._~a-zA-Z0-9/]*$"))]
    pub api_path: Option<String>,

    /// openbanking-uk: endpoints to use instead of the discovery document's, for banks whose
    /// document is incomplete or wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<EndpointOverrides>,

    /// openbanking-uk: how the operator authenticates at the token endpoint with a client's
    /// credentials Secret (client_id and, under `certificate`, the client secret).
    /// Default: client_secret_basic.
    #[serde(default)]
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,

    /// openbanking-uk: what differs at this bank from the standard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quirks: Option<ProviderQuirks>,

    /// Extra CA certificates (PEM) trusted for this provider, besides the system's, e.g. for a
    /// bank's sandbox behind a private CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 65536))]
    pub ca_bundle: Option<String>,

    /// How hard the operator may call this provider. Unset fields: the operator's defaults
    /// (its --provider-* flags).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ProviderLimits>,

    /// How a token's lifetime is read: earliest (the earlier of expires_in and the JWT's exp,
    /// default: Leatherback's own sample contradicts itself), expiresIn, or jwtExp.
    #[serde(default)]
    pub token_lifetime: TokenLifetimeRule,

    /// Which namespaces' TppRegistrations may use this provider: those named, and those whose
    /// labels match the selector (an empty selector matches every namespace). Neither: none.
    #[serde(default)]
    pub allowed_namespaces: AllowedNamespaces,
}

/// The dialect a provider speaks.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProviderProfile {
    /// Leatherback's documented API.
    #[serde(rename = "leatherback")]
    Leatherback,
    /// The UK Open Banking standard (Read/Write API 3.1, FAPI 1 Advanced).
    #[serde(rename = "openbanking-uk")]
    OpenBankingUk,
}

impl ProviderProfile {
    /// The name used in the spec.
    pub fn as_str(&self) -> &'static str {
        match self {
            ProviderProfile::Leatherback => "leatherback",
            ProviderProfile::OpenBankingUk => "openbanking-uk",
        }
    }
}

/// Endpoints that replace the discovery document's.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EndpointOverrides {
    /// The authorisation endpoint the customer is sent to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 8, max = 2048))]
    pub authorization: Option<String>,
    /// The token endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 8, max = 2048))]
    pub token: Option<String>,
    /// Where the bank publishes the keys its id tokens are signed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 8, max = 2048))]
    pub jwks: Option<String>,
    /// The dynamic client registration endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 8, max = 2048))]
    pub registration: Option<String>,
}

/// Client authentication at an openbanking-uk token endpoint.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum TokenEndpointAuthMethod {
    /// HTTP Basic with the client id and secret.
    #[default]
    #[serde(rename = "client_secret_basic")]
    ClientSecretBasic,
    /// The client id and secret in the form body.
    #[serde(rename = "client_secret_post")]
    ClientSecretPost,
}

/// Where a bank departs from the standard.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ProviderQuirks {
    /// Where the id token names the consent: openbanking_intent_id (the standard, default) or
    /// sub.
    #[serde(default)]
    pub intent_claim: IntentClaim,
    /// Where the bank puts the authorisation answer: fragment (the default for
    /// `code id_token`) or query.
    #[serde(default)]
    pub response_mode: ResponseMode,
    /// The `aud` the bank expects in request objects instead of its issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub request_object_audience: Option<String>,
}

/// The id token claim that carries the consent id.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum IntentClaim {
    /// `openbanking_intent_id`.
    #[default]
    #[serde(rename = "openbanking_intent_id")]
    OpenbankingIntentId,
    /// `sub`.
    #[serde(rename = "sub")]
    Sub,
}

/// How the authorisation answer reaches the redirect URI.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum ResponseMode {
    /// In the URL fragment (the operator's /callback serves a page that posts it back).
    #[default]
    #[serde(rename = "fragment")]
    Fragment,
    /// In the query string.
    #[serde(rename = "query")]
    Query,
}

/// How hard the operator may call a provider.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProviderLimits {
    /// Requests per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.01, max = 10000.0))]
    pub requests_per_second: Option<f64>,
    /// Requests allowed in a burst above the rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000), extend("format" = "int32"))]
    pub burst: Option<u32>,
    /// Timeout of one call, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 300), extend("format" = "int32"))]
    pub timeout_seconds: Option<u32>,
    /// Longest Retry-After honoured, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400), extend("format" = "int32"))]
    pub max_retry_after_seconds: Option<u32>,
}

/// How the lifetime of an issued token is read.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum TokenLifetimeRule {
    /// The earlier of `expires_in` and the JWT's `exp`.
    #[default]
    #[serde(rename = "earliest")]
    Earliest,
    /// `expires_in` only.
    #[serde(rename = "expiresIn")]
    ExpiresIn,
    /// The JWT's `exp` only (`expires_in` when the token is not a JWT).
    #[serde(rename = "jwtExp")]
    JwtExp,
}

/// Namespaces allowed to use a provider.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AllowedNamespaces {
    /// Namespaces allowed by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub names: Vec<String>,
    /// Namespaces allowed by their labels; `{}` allows every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// What the operator found out about a provider.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterProviderStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready says whether registrations can use the provider; its reason and message say why
    /// not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The endpoints in use (discovered, or from the spec's overrides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<ResolvedEndpoints>,
    /// When the discovery document was last read successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovered_at: Option<Time>,
    /// What went wrong last (no secret values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
}

/// The endpoints of a provider, as the operator uses them.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedEndpoints {
    /// The issuer its id tokens must name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Where customers authorise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<String>,
    /// The token endpoint.
    pub token: String,
    /// The bank's keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// Client registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<String>,
    /// The collection of account-access consents.
    pub consents: String,
}
