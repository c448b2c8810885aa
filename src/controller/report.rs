//! What one reconcile concluded (`Outcome`) and how it becomes the Ready condition.

use crate::api::{condition, find, reason, READY};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::events::EventType;

/// What one reconcile concluded, turned into the Ready condition, an event and a requeue.
#[derive(Clone, Debug)]
pub(crate) struct Outcome {
    /// Ready status.
    pub ready: bool,
    /// Ready reason.
    pub reason: &'static str,
    /// Ready message: a sentence saying what to do.
    pub message: String,
    /// When to look again.
    pub next: Option<Timestamp>,
    /// Whether the outcome deserves an event (a change, not a routine wait).
    pub event: Option<EventType>,
}

impl Outcome {
    /// A Ready=False outcome with a warning event.
    pub fn failed(reason: &'static str, message: String, next: Option<Timestamp>) -> Self {
        Outcome {
            ready: false,
            reason,
            message,
            next,
            event: Some(EventType::Warning),
        }
    }

    /// The same outcome without an event.
    pub fn quiet(self) -> Self {
        Outcome {
            event: None,
            ..self
        }
    }

    /// The same outcome with a warning event.
    pub fn with_event(self) -> Self {
        Outcome {
            event: Some(EventType::Warning),
            ..self
        }
    }

    /// The same outcome, looked at again at `next`.
    pub fn until(self, next: Option<Timestamp>) -> Self {
        Outcome { next, ..self }
    }
}

/// The Ready condition stored in `written` as an outcome without an event, for reconciles that
/// change nothing.
pub(crate) fn unchanged(written: &[Condition], next: Option<Timestamp>) -> Outcome {
    match find(written, READY) {
        Some(c) => Outcome {
            ready: c.status == "True",
            reason: known_reason(&c.reason),
            message: c.message.clone(),
            next,
            event: None,
        },
        None => Outcome {
            ready: false,
            reason: reason::PROGRESSING,
            message: "Waiting for the first attempt.".into(),
            next,
            event: None,
        },
    }
}

/// Puts the outcome's Ready condition into `conditions` (keeping its transition time when the
/// status stays); true when its status or reason changed since `written`.
pub(crate) fn set_ready(
    conditions: &mut Vec<Condition>,
    written: &[Condition],
    outcome: &Outcome,
    generation: Option<i64>,
    now: Timestamp,
) -> bool {
    let previous = find(written, READY);
    let ready = condition(
        previous,
        READY,
        outcome.ready,
        outcome.reason,
        outcome.message.clone(),
        generation,
        now,
    );
    let changed = previous.is_none_or(|p| p.status != ready.status || p.reason != ready.reason);
    conditions.retain(|c| c.type_ != READY);
    conditions.push(ready);
    changed
}

/// Maps a stored reason back to the static set (unknown reasons become Progressing).
pub(crate) fn known_reason(stored: &str) -> &'static str {
    reason::ALL
        .iter()
        .find(|r| **r == stored)
        .copied()
        .unwrap_or(reason::PROGRESSING)
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub(crate) fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_changes_only_with_status_or_reason() {
        let t = Timestamp::from_second(1_000).unwrap();
        let ok = Outcome {
            ready: true,
            reason: reason::TOKEN_REFRESHED,
            message: "a".into(),
            next: None,
            event: None,
        };
        let mut conditions = Vec::new();
        assert!(set_ready(&mut conditions, &[], &ok, Some(1), t));
        let written = conditions.clone();
        let same = Outcome {
            message: "b".into(),
            ..ok.clone()
        };
        assert!(!set_ready(&mut conditions, &written, &same, Some(1), t));
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].message, "b");
        let failed = Outcome::failed(reason::TOKEN_EXPIRED, "c".into(), None);
        assert!(set_ready(&mut conditions, &written, &failed, Some(1), t));
        assert_eq!(unchanged(&written, None).reason, reason::TOKEN_REFRESHED);
        assert_eq!(unchanged(&[], None).reason, reason::PROGRESSING);
    }

    #[test]
    fn truncation_respects_characters() {
        assert_eq!(truncate("héllo".into(), 2), "h");
        assert_eq!(truncate("abc".into(), 10), "abc");
    }
}
