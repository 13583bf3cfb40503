//! Reconnect back-off: exponential with full jitter, reset by a successful connection.

use std::time::Duration;

use leasedlock_core::rng::Rng;

/// Exponential back-off with jitter between reconnect attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
    rng: Rng,
}

impl Backoff {
    /// A back-off starting at `initial` and capped at `max` (`max` is raised to `initial` when
    /// smaller).
    pub fn new(initial: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff {
            initial,
            max: max.max(initial),
            attempt: 0,
            rng: Rng::new(seed),
        }
    }

    /// The delay before the next attempt: the exponential step for this attempt, jittered to
    /// between half and all of it so that clients cut off together do not reconnect in lock step.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(20)).unwrap_or(u32::MAX);
        let step = self.initial.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = step / 2;
        let half_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(self.rng.below(half_nanos.saturating_add(1)))
    }

    /// A connection succeeded: the next failure starts from the initial delay again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2), 7);
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        let mut last = first;
        for _ in 0..30 {
            last = b.next_delay();
            assert!(last <= Duration::from_secs(2));
        }
        assert!(
            last >= Duration::from_secs(1),
            "capped step is jittered within [max/2, max]"
        );
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn zero_initial_never_panics() {
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO, 1);
        for _ in 0..50 {
            assert_eq!(b.next_delay(), Duration::ZERO);
        }
    }
}
