//! What one reconcile concluded, and the small helpers every reconciler uses to report it:
//! status writes, events and timestamps.

use super::{Context, Error};
use crate::api::{condition, find, reason, READY};
use crate::secrets::FIELD_MANAGER;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::Resource;
use serde::Serialize;
use std::time::Duration;

/// What one reconcile concluded, turned into the Ready condition, an event and a requeue.
#[derive(Clone)]
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

/// Writes `status` with server-side apply under the operator's field manager, only when it
/// differs from `written` (what is stored), which it then becomes: status writes stay rare.
pub(crate) async fn persist_status<K, S>(
    api: &Api<K>,
    name: &str,
    status: &S,
    written: &mut S,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: Serialize + PartialEq + Clone,
{
    if status == written {
        return Ok(());
    }
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(patch),
    )
    .await?;
    *written = status.clone();
    Ok(())
}

/// Publishes an event about `obj`; a failure is logged, never fatal.
pub(crate) async fn publish_event<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(truncate(note, 1000)),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &obj.object_ref(&())).await {
        let meta = obj.meta();
        tracing::warn!(
            namespace = meta.namespace.as_deref().unwrap_or_default(),
            name = meta.name.as_deref().unwrap_or_default(),
            error = %e,
            "could not publish event"
        );
    }
}

/// The requeue delay until `next` (at most `max`; `max` when there is nothing scheduled).
pub(crate) fn wait_until(next: Option<Timestamp>, now: Timestamp, max: Duration) -> Duration {
    next.map(|t| Duration::try_from(t.duration_since(now)).unwrap_or(Duration::ZERO))
        .unwrap_or(max)
        .min(max)
}

/// Maps a stored reason back to the static set (unknown reasons become Progressing).
pub(crate) fn known_reason(stored: &str) -> &'static str {
    reason::ALL
        .iter()
        .find(|r| **r == stored)
        .copied()
        .unwrap_or(reason::PROGRESSING)
}

/// The earlier of two optional times.
pub(crate) fn earliest(a: Option<Timestamp>, b: Option<Timestamp>) -> Option<Timestamp> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `t + d`, saturating at `t` when out of range.
pub(crate) fn add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(t)
}

/// RFC 3339 in UTC with whole seconds, as written to `expires_at`.
/// Sub-seconds are cut, never rounded up, so the written expiry is never later than the real one.
pub fn rfc3339(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
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
    fn rfc3339_cuts_sub_seconds() {
        let t = Timestamp::from_millisecond(1_700_000_000_999).unwrap();
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn wait_is_capped_and_never_negative() {
        let now = Timestamp::from_second(100).unwrap();
        let max = Duration::from_secs(60);
        assert_eq!(wait_until(None, now, max), max);
        assert_eq!(
            wait_until(Some(add(now, Duration::from_secs(5))), now, max),
            Duration::from_secs(5)
        );
        assert_eq!(
            wait_until(Some(Timestamp::from_second(1).unwrap()), now, max),
            Duration::ZERO
        );
        assert_eq!(
            wait_until(Some(add(now, Duration::from_secs(500))), now, max),
            max
        );
        assert_eq!(truncate("héllo".into(), 2), "h");
    }
}
