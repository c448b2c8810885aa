//! How a Secret conflict of the token phase (`token.rs`) is looked at again.

use std::time::Duration;

/// Delay before looking again at a Secret name taken by someone else: 5 s doubling to 30 s, so
/// the object recovers within half a minute of the user freeing the name, and the count of
/// failures grows slowly.
pub fn conflict_retry_delay(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(10);
    Duration::from_secs((5u64 << exp).min(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_are_looked_at_again_within_half_a_minute() {
        assert_eq!(conflict_retry_delay(1), Duration::from_secs(5));
        assert_eq!(conflict_retry_delay(2), Duration::from_secs(10));
        assert_eq!(conflict_retry_delay(3), Duration::from_secs(20));
        assert_eq!(conflict_retry_delay(4), Duration::from_secs(30));
        assert_eq!(conflict_retry_delay(u32::MAX), Duration::from_secs(30));
    }
}
