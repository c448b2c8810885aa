//! Unit tests of the status view.
use super::*;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::EventSeries;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use tpp_operator::api::{
    AccountConsentStatus, ConsentStatus, PublishedKey, RegistrationState, TppRegistrationStatus,
};

const NOW: i64 = 1_750_000_000;

fn at(offset: i64) -> Timestamp {
    Timestamp::from_second(NOW + offset).expect("time")
}

fn now() -> Timestamp {
    at(0)
}

use crate::plugin::samples::registration;

fn consent(status: Option<AccountConsentStatus>) -> Object {
    crate::plugin::samples::consent("cway-accounts", status)
}

fn condition(status: &str, reason: &str, message: &str) -> Vec<Condition> {
    vec![Condition {
        type_: READY.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: Some(1),
        last_transition_time: Time(at(-600)),
    }]
}

fn event(reason: &str, offset: i64) -> Event {
    Event {
        metadata: ObjectMeta {
            name: Some(format!("e-{reason}")),
            ..Default::default()
        },
        event_time: Some(MicroTime(at(offset))),
        type_: Some("Normal".into()),
        reason: Some(reason.into()),
        note: Some(format!("note of {reason}")),
        regarding: Some(ObjectReference {
            kind: Some("TppRegistration".into()),
            name: Some("cway".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn relative_times() {
    assert_eq!(relative(at(192), now()), "in 3m12s");
    assert_eq!(relative(at(-5), now()), "5s ago");
    assert_eq!(relative(at(0), now()), "now");
    assert_eq!(relative(at(59), now()), "in 59s");
    assert_eq!(relative(at(-3600 * 2 - 60 * 5 - 7), now()), "2h5m ago");
    assert_eq!(relative(at(86_400 * 3 + 3600), now()), "in 3d1h");
    // Sub-second parts do not count.
    let almost = now()
        .checked_add(jiff::SignedDuration::from_millis(999))
        .expect("t");
    assert_eq!(relative(almost, now()), "now");
}

#[test]
fn a_healthy_registration() {
    let status = TppRegistrationStatus {
        conditions: condition(
            "True",
            "TokenRefreshed",
            "Token valid until 2025-06-15T15:10:00Z.",
        ),
        client_id: Some("client-123".into()),
        registration: Some(RegistrationState::Registered),
        token_expires_at: Some(Time(at(300))),
        next_refresh_at: Some(Time(at(192))),
        signing_keys: vec![
            PublishedKey {
                kid: "new-kid".into(),
                modulus: "AQAB".into(),
                exponent: "AQAB".into(),
                retire_at: None,
            },
            PublishedKey {
                kid: "old-kid".into(),
                modulus: "AQAB".into(),
                exponent: "AQAB".into(),
                retire_at: Some(Time(at(840))),
            },
        ],
        ..Default::default()
    };
    let text = render(&registration(Some(status)), &Ok(vec![]), now());
    assert_eq!(
        lines(&text),
        [
            "TppRegistration cway (namespace team-a)",
            "Ready:              True, TokenRefreshed: Token valid until 2025-06-15T15:10:00Z.",
            "Client ID:          client-123",
            "Token expires:      2025-06-15T15:11:40Z (in 5m0s)",
            "Next refresh:       2025-06-15T15:09:52Z (in 3m12s)",
            "Failures:           0 in a row",
            "Last failure:       -",
            "Signing keys:       new-kid (current), old-kid (retires in 14m0s)",
            "Events:             none",
        ],
        "{text}"
    );
}

#[test]
fn a_failing_registration_without_keys() {
    let status = TppRegistrationStatus {
        conditions: condition(
            "False",
            "ProviderUnavailable",
            "The provider answered 503.\nRetrying.",
        ),
        token_expires_at: Some(Time(at(-5))),
        next_refresh_at: Some(Time(at(8))),
        consecutive_failures: 4,
        last_failure: Some("token endpoint: 503 Service Unavailable".into()),
        ..Default::default()
    };
    let text = render(&registration(Some(status)), &Ok(vec![]), now());
    assert!(
        text.contains("Ready:              False, ProviderUnavailable: The provider answered 503. Retrying.\n"),
        "{text}"
    );
    assert!(text.contains("Client ID:          -\n"), "{text}");
    assert!(text.contains("(5s ago)"), "{text}");
    assert!(
        text.contains("Next refresh:       2025-06-15T15:06:48Z (in 8s)"),
        "{text}"
    );
    assert!(text.contains("Failures:           4 in a row"), "{text}");
    assert!(
        text.contains("Last failure:       token endpoint: 503 Service Unavailable"),
        "{text}"
    );
    assert!(text.contains("Signing keys:       none yet"), "{text}");
}

#[test]
fn an_object_without_status() {
    let text = render(&registration(None), &Ok(vec![]), now());
    assert!(
        text.contains("Ready:              Unknown (no Ready condition"),
        "{text}"
    );
    assert!(text.contains("Token expires:      -"), "{text}");
}

#[test]
fn a_consent_awaiting_its_customer() {
    let status = AccountConsentStatus {
        conditions: condition(
            "False",
            "AwaitingAuthorisation",
            "Send the customer to the URL.",
        ),
        consent_id: Some("c-42".into()),
        consent_status: Some(ConsentStatus::AwaitingAuthorisation),
        authorisation_url: Some("https://bank.example/auth?x=1".into()),
        ..Default::default()
    };
    let text = render(&consent(Some(status)), &Ok(vec![]), now());
    assert_eq!(
        lines(&text),
        [
            "AccountConsent cway-accounts (namespace team-a)",
            "Ready:              False, AwaitingAuthorisation: Send the customer to the URL.",
            "Registration:       cway",
            "Consent ID:         c-42",
            "Consent status:     AwaitingAuthorisation",
            "Authorisation URL:  present (kubectl tpp url cway-accounts)",
            "Customer token:     none",
            "Events:             none",
        ],
        "{text}"
    );
}

#[test]
fn an_authorised_consent_and_an_expired_one() {
    let authorised = AccountConsentStatus {
        conditions: condition("True", "Authorised", "ok"),
        consent_status: Some(ConsentStatus::Authorised),
        token_expires_at: Some(Time(at(3600))),
        ..Default::default()
    };
    let text = render(&consent(Some(authorised.clone())), &Ok(vec![]), now());
    assert!(text.contains("Authorisation URL:  absent"), "{text}");
    assert!(
        text.contains("Customer token:     expires 2025-06-15T16:06:40Z (in 1h0m)"),
        "{text}"
    );
    assert!(!text.contains("Failures"), "{text}");
    let expired = AccountConsentStatus {
        token_expires_at: Some(Time(at(-90))),
        consecutive_failures: 1,
        last_failure: Some("exchange refused".into()),
        ..authorised
    };
    let text = render(&consent(Some(expired)), &Ok(vec![]), now());
    assert!(
        text.contains("expired 2025-06-15T15:05:10Z (1m30s ago)"),
        "{text}"
    );
    assert!(
        text.contains("Last failure:       exchange refused"),
        "{text}"
    );
}

#[test]
fn the_last_five_events_newest_first() {
    let mut events: Vec<Event> = (1..=7)
        .map(|i| event(&format!("Reason{i}"), -10 * i))
        .collect();
    // Repeated: the series' last observation counts.
    events[6].series = Some(EventSeries {
        count: 3,
        last_observed_time: MicroTime(at(-1)),
    });
    events.swap(0, 4);
    let text = render(&registration(None), &Ok(events), now());
    let shown: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("Events"))
        .collect();
    assert_eq!(shown.len(), 6, "{text}");
    assert_eq!(shown[0], "Events (last 5, newest first):");
    assert!(
        shown[1].starts_with("  1s ago     Normal   Reason7"),
        "{text}"
    );
    assert!(shown[1].ends_with("note of Reason7 (x3)"), "{text}");
    assert!(shown[2].contains("Reason1"), "{text}");
    assert!(shown[3].contains("Reason2"), "{text}");
    assert!(shown[5].starts_with("  40s ago"), "{text}");
    assert!(
        !text.contains("Reason5") && !text.contains("Reason6"),
        "{text}"
    );
}

#[test]
fn unreadable_events_and_hostile_text() {
    let mut e = event("Evil", -3);
    e.note = Some("line1\nline2 \u{1b}[31mred".into());
    let text = render(&registration(None), &Ok(vec![e]), now());
    assert!(!text.contains('\u{1b}'), "{text:?}");
    assert!(text.contains("line1 line2 \\u{1b}[31mred"), "{text}");
    let text = render(
        &registration(None),
        &Err("cannot list events: forbidden".into()),
        now(),
    );
    assert!(
        text.ends_with("Events:             cannot list events: forbidden\n"),
        "{text}"
    );
}

#[test]
fn an_object_being_deleted() {
    let Object::Registration(mut r) = registration(None) else {
        unreachable!()
    };
    r.metadata.deletion_timestamp = Some(Time(at(-30)));
    let text = render(&Object::Registration(r), &Ok(vec![]), now());
    assert!(
        text.contains("Deleting:           since 2025-06-15T15:06:10Z (30s ago)"),
        "{text}"
    );
}
