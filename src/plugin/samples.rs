//! Objects the plugin's unit tests look at.

use super::Object;
use tpp_operator::api::{
    AccountConsent, AccountConsentStatus, TppRegistration, TppRegistrationStatus,
};

/// TppRegistration `team-a/cway` with `status`.
pub(super) fn registration(status: Option<TppRegistrationStatus>) -> Object {
    let mut r: TppRegistration = serde_json::from_value(serde_json::json!({
        "apiVersion": "tpp-operator.dev/v1alpha1",
        "kind": "TppRegistration",
        "metadata": {"name": "cway", "namespace": "team-a"},
        "spec": {
            "organisation": {"name": "C", "email": "a@b.co", "address": "x", "countryISO": "GB"},
            "callbackUrl": "https://cb.example/x",
            "signatureCertificateSecretRef": {"name": "sig"}
        }
    }))
    .expect("registration");
    r.status = status;
    Object::Registration(Box::new(r))
}

/// AccountConsent `team-a/<name>` of registration `cway`, with `status`.
pub(super) fn consent(name: &str, status: Option<AccountConsentStatus>) -> Object {
    let mut c: AccountConsent = serde_json::from_value(serde_json::json!({
        "apiVersion": "tpp-operator.dev/v1alpha1",
        "kind": "AccountConsent",
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": {
            "registrationRef": {"name": "cway"},
            "permissions": ["ReadAccountsBasic"],
            "redirectUri": "https://cb.example/x"
        }
    }))
    .expect("consent");
    c.status = status;
    Object::Consent(Box::new(c))
}
