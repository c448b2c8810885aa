//! What `refresh`, `retry`, `rotate-key` and `url` do to an object: which annotation is set and
//! what the operator will do about it, or why the action would do nothing (or harm) here.

use super::{Kind, Object};
use std::time::SystemTime;
use tpp_operator::api::{
    find, reason, AccountConsent, TppRegistration, ANNOTATION_FORCE_REFRESH,
    ANNOTATION_RETRY_CREATION, ANNOTATION_RETRY_REGISTRATION, ANNOTATION_ROTATE_SIGNING_KEY, READY,
};

/// An action that sets an annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `tpp-operator.dev/force-refresh` on a registration.
    Refresh,
    /// `retry-registration` on a registration, `retry-creation` on a consent.
    Retry,
    /// `tpp-operator.dev/rotate-signing-key` on a registration.
    RotateKey,
}

impl Action {
    /// The kinds the action applies to, in lookup order.
    pub fn kinds(self) -> &'static [Kind] {
        match self {
            Action::Refresh | Action::RotateKey => &[Kind::Registration],
            Action::Retry => &[Kind::Registration, Kind::Consent],
        }
    }
}

/// The annotation to set and what will happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Annotation key.
    pub annotation: &'static str,
    /// Its new value.
    pub value: String,
    /// What the operator does about it, for the user.
    pub explanation: String,
}

/// A value no earlier run set: the unix time with nanoseconds (`1712345678.123456789`).
pub fn fresh_value(now: SystemTime) -> String {
    let since = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:09}", since.as_secs(), since.subsec_nanos())
}

/// Decides the change `action` makes to `object`, with `value` as the annotation's value.
pub fn plan(action: Action, object: &Object, value: String) -> Result<Change, String> {
    if object.metadata().deletion_timestamp.is_some() {
        return Err(format!(
            "{} is being deleted; the operator only cleans it up now",
            object.reference()
        ));
    }
    let (annotation, explanation) = match (action, object) {
        (Action::Refresh, Object::Registration(r)) => (ANNOTATION_FORCE_REFRESH, refresh(r)),
        (Action::RotateKey, Object::Registration(r)) => {
            (ANNOTATION_ROTATE_SIGNING_KEY, rotate_key(r)?)
        }
        (Action::Retry, Object::Registration(r)) => {
            (ANNOTATION_RETRY_REGISTRATION, retry_registration(r)?)
        }
        (Action::Retry, Object::Consent(c)) => (ANNOTATION_RETRY_CREATION, retry_creation(c)?),
        (_, Object::Consent(_)) => {
            return Err(format!(
                "{} is an AccountConsent; this command works on TppRegistrations only",
                object.reference()
            ))
        }
    };
    Ok(Change {
        annotation,
        value,
        explanation,
    })
}

/// The authorisation URL of a consent, or why there is none.
pub fn authorisation_url(object: &Object) -> Result<String, String> {
    let Object::Consent(consent) = object else {
        return Err(format!(
            "{} is a TppRegistration; url works on AccountConsents only",
            object.reference()
        ));
    };
    let status = consent.status.as_ref();
    match status.and_then(|s| s.authorisation_url.as_deref()) {
        Some(url) if !url.trim().is_empty() => Ok(url.trim().to_string()),
        _ => {
            let ready = status
                .and_then(|s| find(&s.conditions, READY))
                .map(|c| format!(" (Ready={}, {}: {})", c.status, c.reason, c.message))
                .unwrap_or_default();
            Err(format!(
                "{} has no authorisation URL{ready}",
                object.reference()
            ))
        }
    }
}

fn name(metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
    metadata.name.as_deref().unwrap_or_default()
}

fn refresh(r: &TppRegistration) -> String {
    let name = name(&r.metadata);
    let has_credentials = r.status.as_ref().is_some_and(|s| s.client_id.is_some());
    let mut text = format!(
        "The operator fetches a new client token at its next reconcile (within seconds) and writes it to Secret {}; pods mounting it see it within about a minute.",
        r.token_secret_name()
    );
    if !has_credentials {
        text.push_str(" It has no client id yet: the first token comes once it is registered.");
    }
    text.push_str(&format!(" Follow it with: kubectl tpp status {name}"));
    text
}

fn rotate_key(r: &TppRegistration) -> Result<String, String> {
    let name = name(&r.metadata);
    if let Some(own) = &r.spec.signing_key_secret_ref {
        return Err(format!(
            "tpp/{name} signs with your own key from Secret {}; the operator never rotates it: put the new key (and kid) into that Secret yourself",
            own.name
        ));
    }
    Ok(format!(
        "The operator generates a new signing key into Secret {}, publishes it first in the JWKS and signs new request objects with it; the old public key stays published for 15 minutes. Follow it with: kubectl tpp status {name}",
        r.signing_key_secret_name()
    ))
}

fn ready_reason(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> &str {
    find(conditions, READY)
        .map(|c| c.reason.as_str())
        .unwrap_or_default()
}

fn retry_registration(r: &TppRegistration) -> Result<String, String> {
    let name = name(&r.metadata);
    let status = r.status.clone().unwrap_or_default();
    let credentials = r.credentials_secret_name();
    if status.registration_attempt_started_at.is_some() {
        return Ok(format!(
            "The operator makes one more registration call. If the earlier call did register at the provider, this makes a second registration there; if you have that client_id and certificate, create Secret {credentials} instead."
        ));
    }
    if ready_reason(&status.conditions) == reason::CREDENTIALS_LOST {
        return Ok(format!(
            "The operator registers again, as a new client: the credentials in Secret {credentials} are gone."
        ));
    }
    if status.registration.is_some() {
        // A value left set now would be acted on later, e.g. when the credentials Secret is
        // lost, and register again without anyone deciding to.
        return Err(format!(
            "nothing to retry: tpp/{name} is registered (client id {}); retry allows one more registration call only after an unconfirmed one ({}) or lost credentials ({}). For a new token: kubectl tpp refresh {name}",
            status.client_id.as_deref().unwrap_or("unknown"),
            reason::REGISTRATION_UNCONFIRMED,
            reason::CREDENTIALS_LOST
        ));
    }
    Ok(
        "The operator makes the registration call at its next reconcile, without waiting for its backoff."
            .to_string(),
    )
}

fn retry_creation(c: &AccountConsent) -> Result<String, String> {
    let name = name(&c.metadata);
    let status = c.status.clone().unwrap_or_default();
    if status.creation_attempt_started_at.is_some() {
        return Ok(
            "The operator makes one more consent-creation call. If the earlier call did create a consent at the provider, that one is left there unused."
                .to_string(),
        );
    }
    if let Some(id) = &status.consent_id {
        return Err(format!(
            "nothing to retry: consent/{name} was created at the provider (consent id {id}); retry allows one more creation call only after an unconfirmed one ({}). To start over, delete and re-create the AccountConsent",
            reason::CONSENT_CREATION_UNCONFIRMED
        ));
    }
    Ok(
        "The operator makes the consent-creation call at its next reconcile, without waiting for its backoff."
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
    use std::time::Duration;
    use tpp_operator::api::{
        AccountConsentStatus, RegistrationState, SigningKeySecretRef, TppRegistrationStatus,
    };

    use crate::plugin::samples::registration;

    fn consent(status: Option<AccountConsentStatus>) -> Object {
        crate::plugin::samples::consent("acc", status)
    }

    fn ready(reason: &str) -> Vec<Condition> {
        vec![Condition {
            type_: READY.into(),
            status: "False".into(),
            reason: reason.into(),
            message: "m".into(),
            observed_generation: None,
            last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
        }]
    }

    #[test]
    fn fresh_values_are_unix_time_with_nanoseconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_712_345_678, 5);
        assert_eq!(fresh_value(t), "1712345678.000000005");
        assert_ne!(
            fresh_value(t),
            fresh_value(t + Duration::from_nanos(1)),
            "two runs in a row set different values"
        );
    }

    #[test]
    fn each_action_sets_its_annotation() {
        let r = registration(None);
        let v = || "1.000000001".to_string();
        let refresh = plan(Action::Refresh, &r, v()).expect("refresh");
        assert_eq!(refresh.annotation, "tpp-operator.dev/force-refresh");
        assert_eq!(refresh.value, "1.000000001");
        assert!(
            refresh.explanation.contains("Secret cway-token"),
            "{}",
            refresh.explanation
        );
        assert_eq!(
            plan(Action::RotateKey, &r, v()).expect("rotate").annotation,
            "tpp-operator.dev/rotate-signing-key"
        );
        assert_eq!(
            plan(Action::Retry, &r, v()).expect("retry").annotation,
            "tpp-operator.dev/retry-registration"
        );
        assert_eq!(
            plan(Action::Retry, &consent(None), v())
                .expect("retry")
                .annotation,
            "tpp-operator.dev/retry-creation"
        );
    }

    #[test]
    fn registration_only_actions_refuse_consents() {
        for action in [Action::Refresh, Action::RotateKey] {
            let e = plan(action, &consent(None), "1".into()).expect_err("refused");
            assert!(e.contains("consent/acc is an AccountConsent"), "{e}");
        }
    }

    #[test]
    fn rotation_of_a_users_own_key_is_refused() {
        let Object::Registration(mut r) = registration(None) else {
            unreachable!()
        };
        r.spec.signing_key_secret_ref = Some(SigningKeySecretRef {
            name: "my-key".into(),
            private_key_key: "private_key".into(),
            kid_key: "kid".into(),
        });
        let e = plan(Action::RotateKey, &Object::Registration(r), "1".into()).expect_err("refused");
        assert!(e.contains("Secret my-key"), "{e}");
    }

    #[test]
    fn retry_registration_only_when_there_is_something_to_retry() {
        let registered = TppRegistrationStatus {
            registration: Some(RegistrationState::Registered),
            client_id: Some("client-1".into()),
            conditions: ready(reason::TOKEN_REFRESHED),
            ..Default::default()
        };
        let e = plan(
            Action::Retry,
            &registration(Some(registered.clone())),
            "1".into(),
        )
        .expect_err("nothing to retry");
        assert!(
            e.contains("nothing to retry") && e.contains("client-1"),
            "{e}"
        );

        let lost = TppRegistrationStatus {
            conditions: ready(reason::CREDENTIALS_LOST),
            ..registered.clone()
        };
        let ok = plan(Action::Retry, &registration(Some(lost)), "1".into()).expect("lost");
        assert!(ok.explanation.contains("new client"), "{}", ok.explanation);

        let unconfirmed = TppRegistrationStatus {
            registration_attempt_started_at: Some(Time(jiff::Timestamp::UNIX_EPOCH)),
            conditions: ready(reason::REGISTRATION_UNCONFIRMED),
            ..Default::default()
        };
        let ok =
            plan(Action::Retry, &registration(Some(unconfirmed)), "1".into()).expect("unconfirmed");
        assert!(
            ok.explanation.contains("second registration"),
            "{}",
            ok.explanation
        );
    }

    #[test]
    fn retry_creation_only_before_the_consent_exists() {
        let created = AccountConsentStatus {
            consent_id: Some("c-9".into()),
            ..Default::default()
        };
        let e = plan(Action::Retry, &consent(Some(created.clone())), "1".into())
            .expect_err("nothing to retry");
        assert!(e.contains("c-9"), "{e}");
        let unconfirmed = AccountConsentStatus {
            creation_attempt_started_at: Some(Time(jiff::Timestamp::UNIX_EPOCH)),
            ..Default::default()
        };
        assert!(plan(Action::Retry, &consent(Some(unconfirmed)), "1".into()).is_ok());
    }

    #[test]
    fn nothing_is_set_on_an_object_being_deleted() {
        let Object::Registration(mut r) = registration(None) else {
            unreachable!()
        };
        r.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        let e = plan(Action::Refresh, &Object::Registration(r), "1".into()).expect_err("deleting");
        assert!(e.contains("being deleted"), "{e}");
    }

    #[test]
    fn url_is_the_status_field_or_a_clear_error() {
        let with = AccountConsentStatus {
            authorisation_url: Some("https://bank.example/auth?request=x".into()),
            ..Default::default()
        };
        assert_eq!(
            authorisation_url(&consent(Some(with))),
            Ok("https://bank.example/auth?request=x".to_string())
        );
        let without = AccountConsentStatus {
            conditions: ready(reason::REGISTRATION_NOT_READY),
            ..Default::default()
        };
        let e = authorisation_url(&consent(Some(without))).expect_err("absent");
        assert!(
            e.contains("consent/acc has no authorisation URL")
                && e.contains("RegistrationNotReady"),
            "{e}"
        );
        assert!(authorisation_url(&consent(None)).is_err());
        assert!(authorisation_url(&registration(None)).is_err());
    }
}
