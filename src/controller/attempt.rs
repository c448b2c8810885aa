//! The at-most-once rule for provider calls that are not idempotent (registration, consent
//! creation): the attempt is recorded in status before the call and cleared once its outcome is
//! known, so an attempt found still recorded (a crash, a timeout) is never repeated without a
//! human saying so through a retry annotation.

use jiff::Timestamp;

/// What the status says about earlier attempts of one non-idempotent call.
#[derive(Clone, Copy, Debug, Default)]
pub struct AttemptRecord<'a> {
    /// Set while an attempt is in flight or its outcome is unknown.
    pub started_at: Option<Timestamp>,
    /// The last value of the retry annotation that was acted on.
    pub handled_retry: Option<&'a str>,
    /// Failed attempts in a row (with a known outcome).
    pub failures: u32,
    /// When the next attempt is due after a failure.
    pub next_at: Option<Timestamp>,
}

/// What to do about the call now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptPlan {
    /// Make the call (record the attempt first).
    Attempt,
    /// A failed attempt is backing off; try again at this time.
    WaitUntil(Timestamp),
    /// An earlier call may have succeeded at the provider though its result was not saved: a
    /// human decides.
    Unconfirmed {
        /// When that call started.
        started_at: Timestamp,
    },
}

impl AttemptRecord<'_> {
    /// True when `retry` (the retry annotation's value) is one not acted on yet.
    pub fn retry_requested(&self, retry: Option<&str>) -> bool {
        retry.is_some_and(|r| self.handled_retry != Some(r))
    }
}

/// Decides about one more attempt; `retry` is the retry annotation's value, if set.
pub fn attempt_plan(
    record: &AttemptRecord<'_>,
    retry: Option<&str>,
    now: Timestamp,
) -> AttemptPlan {
    let retry_requested = record.retry_requested(retry);
    if let Some(started_at) = record.started_at {
        return if retry_requested {
            AttemptPlan::Attempt
        } else {
            AttemptPlan::Unconfirmed { started_at }
        };
    }
    match record.next_at {
        Some(t) if record.failures > 0 && t > now && !retry_requested => AttemptPlan::WaitUntil(t),
        _ => AttemptPlan::Attempt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::ts;

    #[test]
    fn first_attempt_goes_ahead() {
        assert_eq!(
            attempt_plan(&AttemptRecord::default(), None, ts(0)),
            AttemptPlan::Attempt
        );
    }

    #[test]
    fn an_unknown_outcome_waits_for_a_new_annotation_value() {
        let record = AttemptRecord {
            started_at: Some(ts(5)),
            ..Default::default()
        };
        assert_eq!(
            attempt_plan(&record, None, ts(100)),
            AttemptPlan::Unconfirmed { started_at: ts(5) }
        );
        assert_eq!(
            attempt_plan(&record, Some("1"), ts(100)),
            AttemptPlan::Attempt
        );
        let handled = AttemptRecord {
            handled_retry: Some("1"),
            ..record
        };
        assert_eq!(
            attempt_plan(&handled, Some("1"), ts(100)),
            AttemptPlan::Unconfirmed { started_at: ts(5) }
        );
    }

    #[test]
    fn failures_back_off_unless_a_retry_is_asked_for() {
        let record = AttemptRecord {
            failures: 2,
            next_at: Some(ts(50)),
            ..Default::default()
        };
        assert_eq!(
            attempt_plan(&record, None, ts(10)),
            AttemptPlan::WaitUntil(ts(50))
        );
        assert_eq!(attempt_plan(&record, None, ts(50)), AttemptPlan::Attempt);
        assert_eq!(
            attempt_plan(&record, Some("x"), ts(10)),
            AttemptPlan::Attempt
        );
    }
}
