//! Objects the plugin's unit tests look at.

use super::Object;

/// The builder the integration tests and the benchmark use too.
#[path = "../../tests/common/objects.rs"]
mod objects;
use tpp_operator::api::{
    AccountConsent, AccountConsentStatus, TppRegistration, TppRegistrationStatus,
};

/// TppRegistration `team-a/cway` with `status`.
pub(super) fn registration(status: Option<TppRegistrationStatus>) -> Object {
    let object = objects::registration("cway").meta("namespace", "team-a".into());
    let mut r: TppRegistration = serde_json::from_value(object.json()).expect("registration");
    r.status = status;
    Object::Registration(Box::new(r))
}

/// AccountConsent `team-a/<name>` of registration `cway`, with `status`.
pub(super) fn consent(name: &str, status: Option<AccountConsentStatus>) -> Object {
    let object = objects::consent(name, "cway").meta("namespace", "team-a".into());
    let mut c: AccountConsent = serde_json::from_value(object.json()).expect("consent");
    c.status = status;
    Object::Consent(Box::new(c))
}
