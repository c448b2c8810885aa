//! Whether this replica is ready (`/readyz`): the one place that says so. A standby is ready
//! (it serves the JWKS and callbacks); a leader is ready once every watch it started has listed
//! its objects, so that it never answers for objects it has not seen yet.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Readiness of this replica.
#[derive(Debug, Default)]
pub struct Readiness {
    ready: AtomicBool,
    /// Watches that have not listed their objects yet.
    unsynced: AtomicUsize,
}

impl Readiness {
    /// True when `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// A standby: it serves, but reconciles nothing.
    pub(crate) fn standby(&self) {
        self.unsynced.store(0, Ordering::SeqCst);
        self.ready.store(true, Ordering::SeqCst);
    }

    /// Reconciling starts with `watches` watches that must list their objects first.
    pub(crate) fn syncing(&self, watches: usize) {
        self.ready.store(false, Ordering::SeqCst);
        self.unsynced.store(watches, Ordering::SeqCst);
        if watches == 0 {
            self.ready.store(true, Ordering::SeqCst);
        }
    }

    /// One watch has listed its objects; the last one makes the replica ready.
    pub(crate) fn synced(&self) {
        let left = self
            .unsynced
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .map(|before| before - 1);
        if left == Ok(0) {
            self.ready.store(true, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_is_ready_once_every_watch_listed() {
        let r = Readiness::default();
        assert!(!r.is_ready());
        r.standby();
        assert!(r.is_ready());
        r.syncing(2);
        assert!(!r.is_ready());
        r.synced();
        assert!(!r.is_ready());
        r.synced();
        assert!(r.is_ready());
        // A late report after a restart of syncing changes nothing it should not.
        r.synced();
        assert!(r.is_ready());
    }
}
