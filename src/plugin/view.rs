//! `kubectl tpp status`: a few lines about one object and its last events, a pure function of
//! what the API server returned and the time (so that it is tested without a cluster).

use super::Object;
use jiff::Timestamp;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use std::fmt::Write;
use tpp_operator::api::{find, AccountConsent, TppRegistration, READY};

/// How many events are shown.
pub const EVENTS_SHOWN: usize = 5;

/// The status text of `object`; `events` are its events (any order) or why they could not be
/// read; `now` is the time relative times are counted from.
pub fn render(object: &Object, events: &Result<Vec<Event>, String>, now: Timestamp) -> String {
    let mut out = String::new();
    let meta = object.metadata();
    let _ = writeln!(
        out,
        "{} {} (namespace {})",
        object.kind().name(),
        clean(object.name()),
        clean(meta.namespace.as_deref().unwrap_or_default())
    );
    if let Some(Time(deleting)) = &meta.deletion_timestamp {
        line(
            &mut out,
            "Deleting",
            format!("since {}", when(*deleting, now)),
        );
    }
    match object {
        Object::Registration(r) => registration(&mut out, r, now),
        Object::Consent(c) => consent(&mut out, c, now),
    }
    render_events(&mut out, events, now);
    out
}

fn registration(out: &mut String, r: &TppRegistration, now: Timestamp) {
    let status = r.status.clone().unwrap_or_default();
    ready(out, &status.conditions);
    line(out, "Client ID", optional(status.client_id.as_deref()));
    line(
        out,
        "Token expires",
        optional_time(&status.token_expires_at, now),
    );
    line(
        out,
        "Next refresh",
        optional_time(&status.next_refresh_at, now),
    );
    failures(
        out,
        status.consecutive_failures,
        status.last_failure.as_deref(),
    );
    let keys = status
        .signing_keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let kid = clean(&key.kid);
            match &key.retire_at {
                Some(Time(t)) if *t > now => format!("{kid} (retires {})", relative(*t, now)),
                Some(Time(t)) => format!("{kid} (retired {})", relative(*t, now)),
                None if i == 0 => format!("{kid} (current)"),
                None => kid,
            }
        })
        .collect::<Vec<_>>();
    line(
        out,
        "Signing keys",
        if keys.is_empty() {
            "none yet".to_string()
        } else {
            keys.join(", ")
        },
    );
}

fn consent(out: &mut String, c: &AccountConsent, now: Timestamp) {
    let status = c.status.clone().unwrap_or_default();
    ready(out, &status.conditions);
    line(out, "Registration", clean(&c.spec.registration_ref.name));
    line(out, "Consent ID", optional(status.consent_id.as_deref()));
    line(
        out,
        "Consent status",
        optional(status.consent_status.as_ref().map(|s| s.as_str())),
    );
    let url = match status.authorisation_url.as_deref() {
        Some(u) if !u.trim().is_empty() => format!(
            "present (kubectl tpp url {})",
            clean(c.metadata.name.as_deref().unwrap_or_default())
        ),
        _ => "absent".to_string(),
    };
    line(out, "Authorisation URL", url);
    line(
        out,
        "Customer token",
        match &status.token_expires_at {
            Some(Time(t)) if *t > now => format!("expires {}", when(*t, now)),
            Some(Time(t)) => format!("expired {}", when(*t, now)),
            None => "none".to_string(),
        },
    );
    if status.consecutive_failures > 0 || status.last_failure.is_some() {
        failures(
            out,
            status.consecutive_failures,
            status.last_failure.as_deref(),
        );
    }
}

fn failures(out: &mut String, count: u32, last: Option<&str>) {
    line(out, "Failures", format!("{count} in a row"));
    line(out, "Last failure", optional(last));
}

fn ready(out: &mut String, conditions: &[Condition]) {
    let text = match find(conditions, READY) {
        Some(c) => {
            let mut text = format!("{}, {}", clean(&c.status), clean(&c.reason));
            if !c.message.trim().is_empty() {
                text.push_str(": ");
                text.push_str(&clean(&c.message));
            }
            text
        }
        None => "Unknown (no Ready condition yet: the operator has not reported on it)".to_string(),
    };
    line(out, "Ready", text);
}

fn render_events(out: &mut String, events: &Result<Vec<Event>, String>, now: Timestamp) {
    let events = match events {
        Ok(events) => events,
        Err(why) => {
            let _ = writeln!(out, "Events:             {}", clean(why));
            return;
        }
    };
    if events.is_empty() {
        out.push_str("Events:             none\n");
        return;
    }
    let mut sorted: Vec<(Option<Timestamp>, &Event)> =
        events.iter().map(|e| (event_time(e), e)).collect();
    // Newest first; events without any time last.
    sorted.sort_by_key(|(time, _)| std::cmp::Reverse(*time));
    let _ = writeln!(
        out,
        "Events (last {}, newest first):",
        EVENTS_SHOWN.min(sorted.len())
    );
    for (time, event) in sorted.into_iter().take(EVENTS_SHOWN) {
        let age = time
            .map(|t| relative(t, now))
            .unwrap_or_else(|| "-".to_string());
        let count = event
            .series
            .as_ref()
            .map(|s| s.count)
            .or(event.deprecated_count)
            .filter(|n| *n > 1)
            .map(|n| format!(" (x{n})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<10} {:<8} {:<26} {}{count}",
            age,
            clean(event.type_.as_deref().unwrap_or("-")),
            clean(event.reason.as_deref().unwrap_or("-")),
            clean(event.note.as_deref().unwrap_or_default()),
        );
    }
}

/// When the event last happened: the series' last observation, else the deprecated last
/// timestamp, the event time, the object's creation.
fn event_time(e: &Event) -> Option<Timestamp> {
    e.series
        .as_ref()
        .map(|s| s.last_observed_time.0)
        .or(e.deprecated_last_timestamp.as_ref().map(|t| t.0))
        .or(e.event_time.as_ref().map(|t| t.0))
        .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn line(out: &mut String, label: &str, value: String) {
    let _ = writeln!(out, "{:<20}{value}", format!("{label}:"));
}

fn optional(value: Option<&str>) -> String {
    match value {
        Some(v) if !v.trim().is_empty() => clean(v),
        _ => "-".to_string(),
    }
}

fn optional_time(t: &Option<Time>, now: Timestamp) -> String {
    t.as_ref()
        .map(|Time(t)| when(*t, now))
        .unwrap_or_else(|| "-".to_string())
}

/// `2025-01-02T03:04:05Z (in 3m12s)`.
fn when(t: Timestamp, now: Timestamp) -> String {
    format!("{t:.0} ({})", relative(t, now))
}

/// `in 3m12s`, `5s ago` or `now`: whole seconds, the two largest units.
pub fn relative(t: Timestamp, now: Timestamp) -> String {
    let seconds = t.duration_since(now).as_secs();
    let span = short_duration(seconds.unsigned_abs());
    match seconds {
        0 => "now".to_string(),
        s if s > 0 => format!("in {span}"),
        _ => format!("{span} ago"),
    }
}

fn short_duration(s: u64) -> String {
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s}s"),
        (0, _, _) => format!("{h}h{m}m"),
        _ => format!("{d}d{h}h"),
    }
}

/// Text from the API server on one terminal line: line breaks and tabs become spaces, other
/// control characters (terminal escapes in an event someone wrote) are shown escaped.
fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.trim().chars() {
        match c {
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
