//! The polling phase: follow a consent's status at the provider (`GET
//! /account-access-consents/{id}`) on an in-memory schedule that backs off while nothing changes
//! and keeps all consents together within a share of the provider's rate limit.

use super::registration_view::{not_ready, RegistrationView};
use super::ConsentRun;
use crate::api::{reason, ConsentStatus};
use crate::controller::error::Step;
use crate::controller::report::Outcome;
use crate::controller::schedule::{backoff, FailureKind};
use crate::controller::time::add;
use jiff::Timestamp;
use kube::runtime::events::EventType;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Longest wait between two status polls while nothing changes.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(300);

/// Where one consent is in its poll schedule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PollState {
    /// When to poll next.
    pub next: Timestamp,
    /// Polls in a row that saw no change.
    pub unchanged: u32,
    /// Failed polls in a row.
    pub failures: u32,
}

/// What the provider said when asked to confirm a redirect.
pub(super) enum Confirmation {
    /// The consent's status as the provider holds it.
    Status(Option<ConsentStatus>),
    /// The provider cannot be asked (it has no GET on consents).
    Unknown,
    /// Not now: what to report meanwhile (the hand-off waits).
    Wait(Outcome),
}

/// The poll states of every tracked consent, by uid. In memory on purpose: a poll that finds
/// nothing new costs no API-server write, and after a restart polls are spread anew.
#[derive(Default)]
pub struct PollBook(Mutex<HashMap<String, PollState>>);

impl PollBook {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, PollState>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state of one consent.
    pub fn get(&self, uid: &str) -> Option<PollState> {
        self.map().get(uid).copied()
    }

    /// Sets the state of one consent.
    pub fn set(&self, uid: &str, state: PollState) {
        self.map().insert(uid.to_string(), state);
    }

    /// Stops tracking one consent.
    pub fn forget(&self, uid: &str) {
        self.map().remove(uid);
    }

    /// How many consents are tracked.
    pub fn tracked(&self) -> usize {
        self.map().len()
    }
}

/// The pure poll timing: a first interval that doubles while nothing changes, and a budget of
/// polls per second shared by every tracked consent.
#[derive(Clone, Copy, Debug)]
pub struct PollSchedule {
    /// First interval between two polls.
    pub base: Duration,
    /// Polls per second all consents together may use.
    pub rate: f64,
}

impl PollSchedule {
    /// The shortest interval at which `tracked` consents can each be polled within the budget,
    /// so that many consents never crowd out registrations and token refreshes.
    pub fn budget_interval(&self, tracked: usize) -> Duration {
        Duration::from_secs_f64(tracked as f64 / self.rate.max(0.01))
    }

    /// The first poll after a start, spread over one interval (`sample` in [0, 1]) instead of
    /// polling every consent at once.
    pub fn first(&self, now: Timestamp, tracked: usize, sample: f64) -> PollState {
        let spread = self.base.max(self.budget_interval(tracked));
        PollState {
            next: add(now, spread.mul_f64(sample.clamp(0.0, 1.0))),
            unchanged: 0,
            failures: 0,
        }
    }

    /// The next poll after one that saw `unchanged` unchanged polls in a row or `failures`
    /// failures; `jitter` in [-1, 1] and `sample` in [0, 1] spread the times.
    pub fn after(
        &self,
        now: Timestamp,
        tracked: usize,
        unchanged: u32,
        failures: u32,
        jitter: f64,
        sample: f64,
    ) -> PollState {
        let delay = if failures > 0 {
            backoff(failures, FailureKind::Transient, None, sample)
        } else {
            poll_delay(self.base, unchanged, jitter).max(
                self.budget_interval(tracked)
                    .mul_f64(1.0 + 0.1 * jitter.clamp(-1.0, 1.0)),
            )
        };
        PollState {
            next: add(now, delay),
            unchanged,
            failures,
        }
    }
}

/// Delay before the next status poll after `unchanged_polls` polls that saw no change:
/// `base` doubling up to five minutes, spread by up to ±10% (`jitter` in [-1, 1]) so that
/// consents created together do not poll together forever.
pub fn poll_delay(base: Duration, unchanged_polls: u32, jitter: f64) -> Duration {
    let doubled = base.as_secs_f64() * 2f64.powi(unchanged_polls.min(16) as i32);
    let capped = doubled.min(MAX_POLL_INTERVAL.as_secs_f64().max(base.as_secs_f64()));
    Duration::from_secs_f64((capped * (1.0 + 0.1 * jitter.clamp(-1.0, 1.0))).max(0.0))
}

impl ConsentRun<'_> {
    fn schedule(&self) -> PollSchedule {
        PollSchedule {
            base: self.ctx.settings.consent_poll_interval,
            rate: self.ctx.settings.consent_poll_rate,
        }
    }

    /// Schedules the next poll (backing off after failures) and returns its time.
    pub(super) fn schedule_poll(&self, unchanged: u32, failures: u32) -> Timestamp {
        let state = self.schedule().after(
            self.now,
            self.ctx.consent_polls.tracked(),
            unchanged,
            failures,
            rand::random_range(-1.0..=1.0),
            rand::random_range(0.0..=1.0),
        );
        self.ctx.consent_polls.set(&self.uid, state);
        state.next
    }

    /// Polls the provider for the consent's status when due; returns when to poll next.
    pub(super) async fn poll(
        &mut self,
        registration: &RegistrationView,
    ) -> Step<Option<Timestamp>> {
        if self.status.status_polling_supported == Some(false) {
            return Ok(None);
        }
        let Some(consent_id) = self.status.consent_id.clone() else {
            return Ok(None);
        };
        let state = match self.ctx.consent_polls.get(&self.uid) {
            Some(s) if s.next > self.now => return Ok(Some(s.next)),
            Some(s) => s,
            None => {
                let first = self.schedule().first(
                    self.now,
                    self.ctx.consent_polls.tracked(),
                    rand::random_range(0.0..=1.0),
                );
                self.ctx.consent_polls.set(&self.uid, first);
                return Ok(Some(first.next));
            }
        };
        let Some(token) = registration.client_token(self.ctx).await? else {
            return Ok(Some(
                self.schedule_poll(state.unchanged, state.failures + 1),
            ));
        };
        match self
            .ctx
            .provider
            .get_consent(registration.target(), &token, &consent_id)
            .await
        {
            Ok(response) => {
                let changed = self.record_consent(&response);
                let unchanged = if changed { 0 } else { state.unchanged + 1 };
                Ok(Some(self.schedule_poll(unchanged, 0)))
            }
            Err(e) if matches!(e.status(), Some(404 | 405)) => {
                // A provider without GET: the status is known from the callback only.
                self.status.status_polling_supported = Some(false);
                self.ctx.consent_polls.forget(&self.uid);
                self.event(
                    EventType::Normal,
                    "StatusPollingUnsupported",
                    "PollConsent",
                    format!("The provider does not offer GET on consents ({e}); the consent's status is taken from the authorisation callback only."),
                )
                .await;
                Ok(None)
            }
            Err(e) => {
                tracing::warn!(error = %e, "polling the consent's status failed");
                Ok(Some(
                    self.schedule_poll(state.unchanged, state.failures + 1),
                ))
            }
        }
    }

    /// What the provider says of the consent now, to confirm what a redirect claims (see
    /// `Confirmation`).
    pub(super) async fn provider_status(
        &mut self,
        registration: &RegistrationView,
    ) -> Step<Confirmation> {
        let Some(consent_id) = self.status.consent_id.clone() else {
            return Ok(Confirmation::Unknown);
        };
        if self.status.status_polling_supported == Some(false) {
            return Ok(Confirmation::Unknown);
        }
        let Some(token) = registration.client_token(self.ctx).await? else {
            return Ok(Confirmation::Wait(not_ready(
                format!("TppRegistration {} has no client token yet; the refusal is confirmed with the provider once it has.", registration.name()),
                self.now,
            )));
        };
        match self
            .ctx
            .provider
            .get_consent(registration.target(), &token, &consent_id)
            .await
        {
            Ok(response) => {
                self.record_consent(&response);
                Ok(Confirmation::Status(self.status.consent_status.clone()))
            }
            Err(e) if matches!(e.status(), Some(404 | 405)) => {
                self.status.status_polling_supported = Some(false);
                self.ctx.consent_polls.forget(&self.uid);
                Ok(Confirmation::Unknown)
            }
            Err(e) if e.is_throttled() => Ok(Confirmation::Wait(
                self.deferred(e.retry_after().unwrap_or_default()),
            )),
            Err(e) => Ok(Confirmation::Wait(self.failure(
                reason::PROVIDER_UNAVAILABLE,
                format!("Confirming the customer's refusal with the provider failed: {e}."),
                FailureKind::of(&e),
                e.retry_after(),
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::fixtures::ts;

    #[test]
    fn polling_backs_off_to_five_minutes_with_bounded_jitter() {
        let base = Duration::from_secs(5);
        assert_eq!(poll_delay(base, 0, 0.0), Duration::from_secs(5));
        assert_eq!(poll_delay(base, 3, 0.0), Duration::from_secs(40));
        assert_eq!(poll_delay(base, 30, 0.0), MAX_POLL_INTERVAL);
        assert_eq!(poll_delay(base, 30, 1.0), Duration::from_secs(330));
        assert_eq!(poll_delay(base, 0, -1.0), Duration::from_secs_f64(4.5));
        // A base above the cap is honoured rather than silently shortened.
        assert_eq!(
            poll_delay(Duration::from_secs(600), 2, 0.0),
            Duration::from_secs(600)
        );
    }

    #[test]
    fn many_consents_share_the_poll_budget() {
        let schedule = PollSchedule {
            base: Duration::from_secs(10),
            rate: 25.0,
        };
        // 10 000 consents at 25 polls/s: each one every 400 s at the earliest.
        assert_eq!(schedule.budget_interval(10_000), Duration::from_secs(400));
        let next = schedule.after(ts(0), 10_000, 0, 0, 0.0, 0.5).next;
        assert_eq!(next, ts(400));
        // Few consents: the doubling interval rules.
        assert_eq!(schedule.after(ts(0), 1, 2, 0, 0.0, 0.5).next, ts(40));
        // Failures back off like provider failures (5 s doubling, equal jitter).
        assert_eq!(schedule.after(ts(0), 1, 2, 1, 0.0, 1.0).next, ts(5));
        // After a start, first polls spread over one interval.
        assert_eq!(schedule.first(ts(0), 10_000, 0.5).next, ts(200));
        assert_eq!(schedule.first(ts(0), 1, 1.0).next, ts(10));
    }

    #[test]
    fn the_book_tracks_consents_by_uid() {
        let book = PollBook::default();
        assert_eq!(book.tracked(), 0);
        let state = PollState {
            next: ts(1),
            unchanged: 0,
            failures: 0,
        };
        book.set("a", state);
        assert_eq!(book.get("a"), Some(state));
        book.forget("a");
        assert_eq!(book.get("a"), None);
    }
}
