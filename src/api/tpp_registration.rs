//! `TppRegistration`: one registration of the organisation with an Open Banking provider.

use super::{DeletionPolicy, SecretKeyRef, SecretTemplate};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Registers your organisation as a Third Party Provider (TPP) with an Open Banking provider and
/// keeps a client-credentials access token fresh in a Secret your apps can mount.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tpp-operator.dev",
    version = "v1alpha1",
    kind = "TppRegistration",
    namespaced,
    status = "TppRegistrationStatus",
    shortname = "tpp",
    category = "openbanking",
    validation = Rule::new("size(self.metadata.name) <= 241").message("metadata.name must be at most 241 characters, so that <name>-credentials and <name>-signing-key stay valid Secret names"),
    doc = "Registers your organisation as a Third Party Provider (TPP) with an Open Banking provider and keeps a client token fresh in a Secret.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason", priority = "1"),
    printcolumn(name = "Client ID", type_ = "string", json_path = ".status.clientId"),
    printcolumn(name = "Token Expires", type_ = "string", json_path = ".status.tokenExpiresAt"),
    printcolumn(name = "Next Refresh", type_ = "string", json_path = ".status.nextRefreshAt", priority = "1"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(
    validation = Rule::new("has(self.providerUrl) == has(oldSelf.providerUrl) && (!has(self.providerUrl) || self.providerUrl == oldSelf.providerUrl)").message("providerUrl cannot change after creation: a registration belongs to one provider; create a new TppRegistration instead"),
    validation = Rule::new("has(self.providerRef) == has(oldSelf.providerRef) && (!has(self.providerRef) || self.providerRef == oldSelf.providerRef)").message("providerRef cannot change after creation: a registration belongs to one provider; create a new TppRegistration instead"),
    validation = Rule::new("!has(self.providerRef) || !has(self.providerUrl)").message("set providerRef (the ClusterProvider to use); providerUrl is deprecated and cannot be combined with it"),
    validation = Rule::new("!has(self.credentialsSecretName) || !has(self.tokenSecretName) || self.credentialsSecretName != self.tokenSecretName").message("credentialsSecretName and tokenSecretName must differ"),
    validation = Rule::new("!has(self.signatureCertificateSecretRef) || ((!has(self.credentialsSecretName) || self.credentialsSecretName != self.signatureCertificateSecretRef.name) && (!has(self.tokenSecretName) || self.tokenSecretName != self.signatureCertificateSecretRef.name))").message("the signature certificate Secret must not be one of the Secrets the operator writes")
)]
#[serde(rename_all = "camelCase")]
pub struct TppRegistrationSpec {
    /// The ClusterProvider (the platform team's list of banks) this registration is made with.
    /// Default: the operator's default provider (the chart creates `leatherback`, the
    /// Leatherback production API). Cannot change after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_ref: Option<ProviderRef>,

    /// Deprecated: name the provider with providerRef. A base URL here is used only if a
    /// ClusterProvider with exactly this url allows the namespace; it then is that provider.
    /// Cannot change after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isURL(self) && (url(self).getScheme() == 'https' || (url(self).getScheme() == 'http' && url(self).getHostname() in ['localhost', '127.0.0.1', '::1']))").message("providerUrl must be an https URL (http is allowed only for localhost)"))]
    #[schemars(length(max = 2048))]
    pub provider_url: Option<String>,

    /// The organisation to register, as the provider shows it. Cannot change after creation.
    #[x_kube(validation = Rule::new("self == oldSelf").message("organisation cannot change after creation: the provider has no update call; create a new TppRegistration instead"))]
    pub organisation: Organisation,

    /// Certificate type sent at registration. The provider documents only "account".
    #[serde(default)]
    pub certificate_type: CertificateType,

    /// HTTPS URL the provider calls back after events (sent as callbackUrl at registration).
    /// Cannot change after creation.
    #[x_kube(
        validation = Rule::new("isURL(self) && url(self).getScheme() == 'https'").message("callbackUrl must be an https URL"),
        validation = Rule::new("self == oldSelf").message("callbackUrl cannot change after creation")
    )]
    #[schemars(length(min = 8, max = 2048))]
    pub callback_url: String,

    /// The Secret key holding your signature certificate (a password-like text sent in the
    /// signature-certificate header at registration with a leatherback provider). Default key:
    /// signature-certificate. Not needed when the credentials Secret exists beforehand (an
    /// adopted registration, as with every openbanking-uk provider).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_certificate_secret_ref: Option<SecretKeyRef>,

    /// Name of the Secret that receives the issued client_id and certificate. Default:
    /// <name>-credentials. If it already exists with both keys, it is adopted and no registration
    /// call is made ("bring your own registration").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub credentials_secret_name: Option<String>,

    /// Name of the Secret that receives the client access token (keys access_token, token_type,
    /// expires_at, authorization). Default: <name>-token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub token_secret_name: Option<String>,

    /// OAuth scope requested with client credentials. Default: account.
    #[serde(default = "default_scope")]
    #[schemars(
        length(min = 1, max = 256),
        regex(pattern = r"^[\x21\x23-\x5B\x5D-\x7E]+( [\x21\x23-\x5B\x5D-\x7E]+)*$")
    )]
    pub scope: String,

    /// When to refresh the client token.
    #[serde(default)]
    pub refresh: RefreshPolicy,

    /// What happens to the credentials and token Secrets when this object is deleted: Delete
    /// (default) or Retain.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Labels and annotations to add to the credentials, token and signing-key Secrets the operator writes (for Reloader,
    /// Argo CD, Velero, policy engines...). Changing it updates those Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_template: Option<SecretTemplate>,

    /// The Secret holding the RSA private key that signs authorisation request objects (PEM,
    /// PKCS#8 or PKCS#1, 2048 bits or more) and, optionally, its key id. Unset: the operator
    /// generates a key and keeps it in Secret <name>-signing-key (keys private_key, jwk, kid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_secret_ref: Option<SigningKeySecretRef>,
}

/// A reference to a ClusterProvider.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ProviderRef {
    /// Name of the ClusterProvider.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
}

/// Where a TPP-supplied signing key is.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SigningKeySecretRef {
    /// Name of the Secret, in the same namespace.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Key holding the PEM private key. Default: private_key.
    #[serde(default = "default_private_key_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub private_key_key: String,
    /// Key holding the key id registered with the provider; when absent from the Secret the
    /// RFC 7638 thumbprint of the key is used. Default: kid.
    #[serde(default = "default_kid_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub kid_key: String,
}

fn default_private_key_key() -> String {
    "private_key".to_string()
}

fn default_kid_key() -> String {
    "kid".to_string()
}

/// A public key published in the registration's JWKS.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PublishedKey {
    /// Key id.
    pub kid: String,
    /// RSA modulus, base64url (the JWK's `n`; not named so here because YAML 1.1 parsers, as
    /// kubectl and Helm use, read a bare `n` as false).
    pub modulus: String,
    /// RSA public exponent, base64url (the JWK's `e`).
    pub exponent: String,
    /// Set once the key was replaced: it stays published until then, so that request objects
    /// signed with it can still be verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire_at: Option<Time>,
}

fn default_scope() -> String {
    "account".to_string()
}

/// The organisation as registered with the provider.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Organisation {
    /// Legal or trading name of the organisation.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// Contact e-mail address.
    #[schemars(
        length(min = 3, max = 254),
        regex(pattern = r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    )]
    pub email: String,
    /// Postal address.
    #[schemars(length(min = 1, max = 512))]
    pub address: String,
    /// ISO 3166-1 alpha-2 country code, e.g. GB.
    #[serde(rename = "countryISO")]
    #[schemars(regex(pattern = r"^[A-Z]{2}$"))]
    pub country_iso: String,
}

/// Certificate type requested at registration.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq,
)]
pub enum CertificateType {
    /// Account information access (the only documented type).
    #[default]
    #[serde(rename = "account")]
    Account,
}

impl CertificateType {
    /// The value sent to the provider.
    pub fn as_str(&self) -> &'static str {
        match self {
            CertificateType::Account => "account",
        }
    }
}

/// When the client token is refreshed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RefreshPolicy {
    /// Point of the token's lifetime at which it is refreshed, in percent (10-95). Unset means
    /// two thirds of the lifetime. The lifetime is the earlier of expires_in and the JWT's exp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 95), extend("format" = "int32"))]
    pub at_percent: Option<u8>,
    /// Random spread applied to the refresh time, in percent of the lifetime (0-25), so that
    /// many registrations do not hit the provider at the same moment. Default 5.
    #[serde(default = "default_jitter")]
    #[schemars(range(min = 0, max = 25), extend("format" = "int32"))]
    pub jitter_percent: u8,
    /// The refresh never happens later than this many seconds before expiry (0-3600).
    /// Default 90: the kubelet updates a mounted Secret up to about a minute after it changes,
    /// so a token refreshed later than that could reach pods after the old one expired.
    #[serde(default = "default_margin")]
    #[schemars(range(min = 0, max = 3600), extend("format" = "int32"))]
    pub safety_margin_seconds: u32,
}

fn default_jitter() -> u8 {
    5
}

fn default_margin() -> u32 {
    90
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        RefreshPolicy {
            at_percent: None,
            jitter_percent: default_jitter(),
            safety_margin_seconds: default_margin(),
        }
    }
}

/// Observed state of a TppRegistration. Never contains secret values.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TppRegistrationStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready tells whether apps can use the token Secret; its reason and message say why not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The ClusterProvider this object uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The provider URL this object registered with (or adopted credentials for): it never
    /// changes silently, even if a ClusterProvider does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_url: Option<String>,
    /// Client id issued by the provider (not a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Registered (the operator registered) or Adopted (the credentials Secret existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<RegistrationState>,
    /// When the registration call succeeded or the credentials were adopted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_at: Option<Time>,
    /// Set just before a registration call and cleared when its outcome is known; if found set
    /// after a restart, the call's outcome is unknown and no second call is made on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_attempt_started_at: Option<Time>,
    /// The last value of the retry-registration annotation that was acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_retry_registration: Option<String>,
    /// Name of the Secret holding client_id and certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// Name of the Secret holding the client token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret: Option<String>,
    /// When the current token was obtained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_issued_at: Option<Time>,
    /// When the current token expires (the earlier of expires_in and the JWT's exp).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_expires_at: Option<Time>,
    /// When the operator will next call the token endpoint (scheduled refresh or retry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_refresh_at: Option<Time>,
    /// What went wrong last, when the last provider call or check failed (no secret values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
    /// Provider failures since the last success; drives the exponential backoff.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(extend("format" = "int32"))]
    pub consecutive_failures: u32,
    /// The last value of the force-refresh annotation that was acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_force_refresh: Option<String>,
    /// Name of the Secret holding the signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key_secret: Option<String>,
    /// Public keys published in the JWKS, the current one first (public data, not secrets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signing_keys: Vec<PublishedKey>,
    /// Where the provider fetches this registration's JWKS (set when the operator knows its
    /// public URL, --public-url).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// The last value of the rotate-signing-key annotation that was acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_rotate_signing_key: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Where a registration's signing key is, and which keys of its Secret hold what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigningKeySource<'a> {
    /// Name of the Secret.
    pub secret: String,
    /// Key holding the PEM private key.
    pub private_key: &'a str,
    /// Key holding the key id of a TPP-supplied key (a generated key's id is its RFC 7638
    /// thumbprint, also stored under `kid`).
    pub kid: Option<&'a str>,
    /// True when the operator generates the key and owns its Secret.
    pub generated: bool,
}

/// How the credentials of a registration came to be.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegistrationState {
    /// The operator registered with the provider.
    Registered,
    /// An existing credentials Secret was adopted; no registration call was made.
    Adopted,
}

impl TppRegistration {
    /// Name of the credentials Secret.
    pub fn credentials_secret_name(&self) -> String {
        self.spec
            .credentials_secret_name
            .clone()
            .unwrap_or_else(|| {
                format!(
                    "{}-credentials",
                    self.metadata.name.as_deref().unwrap_or_default()
                )
            })
    }

    /// Name of the Secret with the signing key (the user's, or the generated one).
    pub fn signing_key_secret_name(&self) -> String {
        self.signing_key_source().secret
    }

    /// Where the signing key is: the TPP's own Secret (`spec.signingKeySecretRef`), or the
    /// Secret the operator generates (`<name>-signing-key`).
    pub fn signing_key_source(&self) -> SigningKeySource<'_> {
        match &self.spec.signing_key_secret_ref {
            Some(r) => SigningKeySource {
                secret: r.name.clone(),
                private_key: &r.private_key_key,
                kid: Some(&r.kid_key),
                generated: false,
            },
            None => SigningKeySource {
                secret: format!(
                    "{}-signing-key",
                    self.metadata.name.as_deref().unwrap_or_default()
                ),
                private_key: super::contract::signing_key::PRIVATE_KEY,
                kid: None,
                generated: true,
            },
        }
    }

    /// The provider URL this registration uses: the one it registered with (kept in status, so
    /// that a changed default never moves it), else the spec's. `None`: the operator's default.
    pub fn provider_url(&self) -> Option<&str> {
        self.status
            .as_ref()
            .and_then(|s| s.provider_url.as_deref())
            .or(self.spec.provider_url.as_deref())
    }

    /// Name of the client token Secret.
    pub fn token_secret_name(&self) -> String {
        self.spec.token_secret_name.clone().unwrap_or_else(|| {
            format!(
                "{}-token",
                self.metadata.name.as_deref().unwrap_or_default()
            )
        })
    }
}
