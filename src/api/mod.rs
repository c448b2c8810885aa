//! Custom resource types (`tpp-operator.dev/v1alpha1`) and the names shared with users.

mod account_consent;
mod cluster_provider;
mod conditions;
mod consent_status;
pub mod contract;
pub mod names;
mod tpp_registration;

pub use account_consent::*;
pub use cluster_provider::*;
pub use conditions::*;
pub use consent_status::ConsentStatus;
pub use tpp_registration::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// API group of every custom resource of this operator.
pub const GROUP: &str = "tpp-operator.dev";
/// Value of `app.kubernetes.io/managed-by` on every object the operator writes.
pub const MANAGED_BY: &str = "tpp-operator";
/// Standard label naming the manager of an object.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label naming the TppRegistration that owns a Secret (its name; the namespace is the Secret's).
pub const LABEL_REGISTRATION: &str = "tpp-operator.dev/registration";
/// Label naming the AccountConsent that owns a Secret.
pub const LABEL_CONSENT: &str = "tpp-operator.dev/consent";
/// Annotation with the full name of the object that owns a Secret (its owner label holds a
/// bounded form of long names, see `names::owner_label_value`).
pub const ANNOTATION_OWNER: &str = "tpp-operator.dev/owner";
/// Label that marks a Secret of yours as a signing key the operator may sign with (value
/// `"true"`): `spec.signingKeySecretRef` may name no other Secret, so that no key made for
/// something else (an Ingress's `tls.key`, say) signs what a tenant shapes.
pub const LABEL_SIGNING_KEY: &str = "tpp-operator.dev/signing-key";
/// Finalizer that lets the operator clean up before an object goes away.
pub const FINALIZER: &str = "tpp-operator.dev/cleanup";
/// Annotation: set it to a new value (a timestamp, say) to refresh the client token now.
pub const ANNOTATION_FORCE_REFRESH: &str = "tpp-operator.dev/force-refresh";
/// Annotation: set it to a new value to replace the generated signing key (the old public key
/// stays published while request objects signed with it may be in use).
pub const ANNOTATION_ROTATE_SIGNING_KEY: &str = "tpp-operator.dev/rotate-signing-key";
/// Annotation: set it to a new value to allow one more registration attempt after an
/// unconfirmed one (see the `RegistrationUnconfirmed` reason).
pub const ANNOTATION_RETRY_REGISTRATION: &str = "tpp-operator.dev/retry-registration";
/// Annotation: set it to a new value to allow one more consent-creation attempt after an
/// unconfirmed one (see the `ConsentCreationUnconfirmed` reason).
pub const ANNOTATION_RETRY_CREATION: &str = "tpp-operator.dev/retry-creation";
/// Production base URL of the Leatherback Open Banking API.
pub const DEFAULT_PROVIDER_URL: &str = "https://api-openbanking.leatherback.co";
/// Name of the ClusterProvider a TppRegistration uses when it names none (the chart creates it
/// for the Leatherback production API).
pub const DEFAULT_PROVIDER: &str = "leatherback";

/// What happens to the Secrets the operator wrote when their owner is deleted.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the Secrets together with the object.
    #[default]
    Delete,
    /// Keep the Secrets (their owner references are removed so nothing collects them).
    Retain,
}

/// A reference to one key of a Secret in the object's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret, in the same namespace as this object.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Key inside the Secret's data.
    #[serde(default = "default_signature_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// Labels and annotations added to every Secret the operator writes for an object, for the
/// tools that select Secrets by them (Reloader, Argo CD, Velero, Kyverno). They never replace
/// the operator's own labels (`app.kubernetes.io/managed-by`, `tpp-operator.dev/*`), and a
/// change is applied to the Secrets at once.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[x_kube(
    validation = Rule::new("!has(self.labels) || !self.labels.exists(k, k == 'app.kubernetes.io/managed-by' || k.startsWith('tpp-operator.dev/'))").message("secretTemplate.labels cannot set app.kubernetes.io/managed-by or tpp-operator.dev/ labels: the operator owns them"),
    validation = Rule::new("!has(self.annotations) || !self.annotations.exists(k, k.startsWith('tpp-operator.dev/'))").message("secretTemplate.annotations cannot set tpp-operator.dev/ annotations: the operator owns them")
)]
pub struct SecretTemplate {
    /// Labels for the Secrets (keys must be valid label keys).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend(
        "maxProperties" = 32,
        "additionalProperties" = {"type": "string", "maxLength": 63, "pattern": "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"}
    ))]
    pub labels: BTreeMap<String, String>,
    /// Annotations for the Secrets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend(
        "maxProperties" = 32,
        "additionalProperties" = {"type": "string", "maxLength": 4096}
    ))]
    pub annotations: BTreeMap<String, String>,
}

fn default_signature_key() -> String {
    "signature-certificate".to_string()
}

/// Every CRD of this operator, in the order `crds/` holds them.
pub fn crds() -> [CustomResourceDefinition; 3] {
    [
        ClusterProvider::crd(),
        TppRegistration::crd(),
        AccountConsent::crd(),
    ]
}

/// The CRDs of this operator as a multi-document YAML stream, exactly as `crds/` holds them.
pub fn crds_yaml() -> Result<String, yaml_serde::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&yaml_serde::to_string(&crd)?);
    }
    Ok(out)
}
