//! The one builder of test objects: a TppRegistration or an AccountConsent as the JSON a user
//! would apply, with defaults that pass admission and setters for what a test varies. Plain
//! `serde_json` only, so that the integration tests, the benchmark and the crate's own unit
//! tests (which include this file by path) all build their objects here.
#![allow(dead_code)]

use serde_json::{json, Value};

/// A TppRegistration under construction.
#[derive(Clone, Debug)]
pub struct RegistrationJson(Value);

/// A TppRegistration `name` registering "Cway Bottle Company" with the signature certificate
/// in Secret `<name>-signature`, and the operator's default provider.
pub fn registration(name: &str) -> RegistrationJson {
    RegistrationJson(json!({
        "apiVersion": "tpp-operator.dev/v1alpha1",
        "kind": "TppRegistration",
        "metadata": {"name": name},
        "spec": {
            "organisation": {
                "name": "Cway Bottle Company",
                "email": "cway-bottle@finance.co",
                "address": "1 Roada Way",
                "countryISO": "GB",
            },
            "callbackUrl": "https://cway.example/callback",
            "signatureCertificateSecretRef": {"name": format!("{name}-signature")},
        },
    }))
}

impl RegistrationJson {
    /// Its provider (`spec.providerUrl`).
    pub fn provider(self, url: &str) -> Self {
        self.spec("providerUrl", json!(url))
    }

    /// The Secret holding its signature certificate.
    pub fn signature_secret(self, secret: &str) -> Self {
        self.spec("signatureCertificateSecretRef", json!({"name": secret}))
    }

    /// No signature certificate (a registration that can only adopt its credentials).
    pub fn without_signature_certificate(mut self) -> Self {
        if let Some(spec) = self.0["spec"].as_object_mut() {
            spec.remove("signatureCertificateSecretRef");
        }
        self
    }

    /// Refreshes without jitter and with a margin of `margin` seconds, so that short test
    /// tokens are refreshed at a predictable point.
    pub fn predictable_refresh(self, margin: u32) -> Self {
        self.spec(
            "refresh",
            json!({"jitterPercent": 0, "safetyMarginSeconds": margin}),
        )
    }

    /// Any spec field.
    pub fn spec(mut self, field: &str, value: Value) -> Self {
        self.0["spec"][field] = value;
        self
    }

    /// Several spec fields at once (a JSON object), e.g. a test's variations.
    pub fn spec_fields(mut self, fields: Value) -> Self {
        if let Some(fields) = fields.as_object() {
            for (k, v) in fields {
                self.0["spec"][k] = v.clone();
            }
        }
        self
    }

    /// Any metadata field (namespace, annotations, uid...).
    pub fn meta(mut self, field: &str, value: Value) -> Self {
        self.0["metadata"][field] = value;
        self
    }

    /// The object as JSON.
    pub fn json(self) -> Value {
        self.0
    }
}

/// An AccountConsent under construction.
#[derive(Clone, Debug)]
pub struct ConsentJson(Value);

/// An AccountConsent `name` of registration `registration` asking for ReadAccountsBasic,
/// redirecting to https://cway.example/back.
pub fn consent(name: &str, registration: &str) -> ConsentJson {
    ConsentJson(json!({
        "apiVersion": "tpp-operator.dev/v1alpha1",
        "kind": "AccountConsent",
        "metadata": {"name": name},
        "spec": {
            "registrationRef": {"name": registration},
            "permissions": ["ReadAccountsBasic"],
            "redirectUri": "https://cway.example/back",
        },
    }))
}

impl ConsentJson {
    /// The permissions asked for.
    pub fn permissions(self, permissions: &[&str]) -> Self {
        self.spec("permissions", json!(permissions))
    }

    /// Several spec fields at once (a JSON object), e.g. a test's variations.
    pub fn spec_fields(mut self, fields: Value) -> Self {
        if let Some(fields) = fields.as_object() {
            for (k, v) in fields {
                self.0["spec"][k] = v.clone();
            }
        }
        self
    }

    /// Where the provider sends the customer back.
    pub fn redirect_uri(self, uri: &str) -> Self {
        self.spec("redirectUri", json!(uri))
    }

    /// Any spec field.
    pub fn spec(mut self, field: &str, value: Value) -> Self {
        self.0["spec"][field] = value;
        self
    }

    /// Any metadata field (namespace, annotations, uid...).
    pub fn meta(mut self, field: &str, value: Value) -> Self {
        self.0["metadata"][field] = value;
        self
    }

    /// The object as JSON.
    pub fn json(self) -> Value {
        self.0
    }
}
