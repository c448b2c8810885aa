//! `AccountConsent`: an account-access consent at the provider and the customer token it yields.

use super::{ConsentStatus, DeletionPolicy, SecretTemplate};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Asks a customer, through the provider, for access to their account data, and keeps the
/// resulting customer token in a Secret.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "tpp-operator.dev",
    version = "v1alpha1",
    kind = "AccountConsent",
    namespaced,
    status = "AccountConsentStatus",
    shortname = "consent",
    category = "openbanking",
    validation = Rule::new("size(self.metadata.name) <= 239").message("metadata.name must be at most 239 characters, so that <name>-authorisation stays a valid Secret name"),
    doc = "An account-access consent at an Open Banking provider, its authorisation URL, and the customer token it yields.",
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason", priority = "1"),
    printcolumn(name = "Consent Status", type_ = "string", json_path = ".status.consentStatus"),
    printcolumn(name = "Consent ID", type_ = "string", json_path = ".status.consentId"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".spec.expirationDateTime"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(
    validation = Rule::new("has(self.returnUrl) == has(oldSelf.returnUrl) && (!has(self.returnUrl) || self.returnUrl == oldSelf.returnUrl)").message("returnUrl cannot change after creation; create a new AccountConsent instead"),
    validation = Rule::new("self.registrationRef == oldSelf.registrationRef && self.permissions == oldSelf.permissions && self.redirectUri == oldSelf.redirectUri && has(self.expirationDateTime) == has(oldSelf.expirationDateTime) && (!has(self.expirationDateTime) || self.expirationDateTime == oldSelf.expirationDateTime) && has(self.transactionFromDateTime) == has(oldSelf.transactionFromDateTime) && (!has(self.transactionFromDateTime) || self.transactionFromDateTime == oldSelf.transactionFromDateTime) && has(self.transactionToDateTime) == has(oldSelf.transactionToDateTime) && (!has(self.transactionToDateTime) || self.transactionToDateTime == oldSelf.transactionToDateTime)").message("the consent's content (registrationRef, permissions, redirectUri and dates) cannot change after creation; create a new AccountConsent instead"),
    validation = Rule::new("!has(self.transactionFromDateTime) || !has(self.transactionToDateTime) || self.transactionFromDateTime <= self.transactionToDateTime").message("transactionFromDateTime must not be after transactionToDateTime")
)]
#[serde(rename_all = "camelCase")]
pub struct AccountConsentSpec {
    /// The TppRegistration (same namespace) whose client token and signing key are used.
    pub registration_ref: LocalObjectRef,

    /// Account-access permissions to ask for (UK Open Banking names, e.g. ReadAccountsBasic).
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = Rule::new("self.all(p, self.exists_one(q, q == p))").message("permissions must not repeat"))]
    pub permissions: Vec<Permission>,

    /// When the consent stops granting access (RFC 3339). Unset: the provider's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_date_time: Option<Time>,

    /// Start of the transaction history the consent grants (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_from_date_time: Option<Time>,

    /// End of the transaction history the consent grants (RFC 3339); not before the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_to_date_time: Option<Time>,

    /// HTTPS page of your platform where the provider sends the customer back after
    /// authorisation (with code, id_token and state).
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getScheme() == 'https'").message("redirectUri must be an https URL"))]
    #[schemars(length(min = 8, max = 2048))]
    pub redirect_uri: String,

    /// Name of the Secret that receives the customer token. Default: <name>-token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub token_secret_name: Option<String>,

    /// On deletion: Delete (default) revokes the consent at the provider and deletes the token
    /// Secret; Retain revokes nothing and keeps the Secret.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Labels and annotations to add to the customer token and hand-off Secrets the operator writes (for Reloader,
    /// Argo CD, Velero, policy engines...). Changing it updates those Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_template: Option<SecretTemplate>,

    /// HTTPS page of your app where the operator's /callback sends the customer's browser once
    /// the authorisation is received, with consent=<this consent's name> and
    /// outcome=authorised, refused or failed added to its query (never a code, state or token).
    /// It must start with one of the return URLs the platform team allows (Helm value
    /// returnUrls); otherwise the consent is not created (reason ReturnUrlNotAllowed). Unset:
    /// the callback shows a plain page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getScheme() == 'https'").message("returnUrl must be an https URL"))]
    #[schemars(length(min = 8, max = 2048))]
    pub return_url: Option<String>,
}

/// A reference to an object in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct LocalObjectRef {
    /// Name of the object.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
}

/// UK Open Banking account-access permissions.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Permission {
    ReadAccountsBasic,
    ReadAccountsDetail,
    ReadBalances,
    ReadBeneficiariesBasic,
    ReadBeneficiariesDetail,
    ReadDirectDebits,
    ReadOffers,
    ReadPAN,
    ReadParty,
    ReadPartyPSU,
    ReadProducts,
    ReadScheduledPaymentsBasic,
    ReadScheduledPaymentsDetail,
    ReadStandingOrdersBasic,
    ReadStandingOrdersDetail,
    ReadStatementsBasic,
    ReadStatementsDetail,
    ReadTransactionsBasic,
    ReadTransactionsCredits,
    ReadTransactionsDebits,
    ReadTransactionsDetail,
}

/// Observed state of an AccountConsent. Never contains secret values.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AccountConsentStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready tells whether the customer token Secret is usable; its reason and message say why not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// ConsentId issued by the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_id: Option<String>,
    /// Status at the provider: AwaitingAuthorisation, Authorised, Rejected, Revoked, or Expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_status: Option<ConsentStatus>,
    /// When the provider last changed the consent's status (as the provider reports it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_update_date_time: Option<String>,
    /// When the provider created the consent (as the provider reports it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_date_time: Option<String>,
    /// The provider's page for this consent (Links.Self).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_link: Option<String>,
    /// URL to send the customer to for authorisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorisation_url: Option<String>,
    /// Name of the Secret holding the customer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret: Option<String>,
    /// When the customer token expires; after that the customer must authorise again, unless
    /// the provider issued a refresh token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_expires_at: Option<Time>,
    /// When the customer token is next refreshed (providers that issue refresh tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token_refresh_at: Option<Time>,
    /// Name of the Secret holding the refresh token (apps never need it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_secret: Option<String>,
    /// When the refresh token expires, if the provider says; after that (or after the consent's
    /// expiry) the customer must authorise again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_expires_at: Option<Time>,
    /// When the authorisation URL's request object expires (it is re-signed before that).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorisation_url_expires_at: Option<Time>,
    /// The `state` of the pending authorisation; the callback must echo it. Cleared once used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorisation_state: Option<String>,
    /// The `nonce` of the pending authorisation's request object; an id token coming back must
    /// carry it. Cleared with the state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorisation_nonce: Option<String>,
    /// When the customer's authorisation was turned into a customer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorised_at: Option<Time>,
    /// Set while a consent-creation call is in flight or its outcome is unknown; the operator
    /// never creates a second consent on its own while this is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_attempt_started_at: Option<Time>,
    /// Set when the provider refused the registration's client token at consent creation and
    /// the registration was asked for a fresh one; creation is tried once more with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_token_refresh_requested_at: Option<Time>,
    /// Last value of the retry-creation annotation acted upon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_retry_creation: Option<String>,
    /// False when the provider does not offer GET on consents (404/405): the status is then
    /// known only from the authorisation callback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_polling_supported: Option<bool>,
    /// When a failed creation or code exchange is tried again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_check_at: Option<Time>,
    /// Failed attempts since the last success.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(extend("format" = "int32"))]
    pub consecutive_failures: u32,
    /// The last failure, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl AccountConsent {
    /// Name of the customer token Secret.
    pub fn token_secret_name(&self) -> String {
        self.spec.token_secret_name.clone().unwrap_or_else(|| {
            format!(
                "{}-token",
                self.metadata.name.as_deref().unwrap_or_default()
            )
        })
    }

    /// Name of the Secret holding the customer's refresh token (standard-profile providers):
    /// the operator's alone, apps mount the token Secret.
    pub fn refresh_token_secret_name(&self) -> String {
        format!(
            "{}-refresh-token",
            self.metadata.name.as_deref().unwrap_or_default()
        )
    }

    /// Name of the Secret through which the authorisation code reaches the operator (written
    /// by the callback endpoint, or by the platform's own redirect page).
    pub fn authorisation_secret_name(&self) -> String {
        format!(
            "{}-authorisation",
            self.metadata.name.as_deref().unwrap_or_default()
        )
    }
}
