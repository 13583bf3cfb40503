//! Reconnect back-off: exponential with full jitter, reset after a successful connection.

use std::time::Duration;

use leasedlock_core::rng::Rng;

#[derive(Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
    rng: Rng,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            current: min,
            rng: Rng::new(seed),
        }
    }

    /// The next delay: uniformly in [min, current], then `current` doubles up to `max`.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let span = self.current.saturating_sub(self.min).as_millis();
        let span = u64::try_from(span).unwrap_or(u64::MAX);
        let jitter = if span == 0 {
            0
        } else {
            self.rng.next_u64() % (span + 1)
        };
        let delay = self.min + Duration::from_millis(jitter);
        self.current = (self.current * 2).min(self.max);
        delay
    }

    /// A connection succeeded.
    pub(crate) fn reset(&mut self) {
        self.current = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_max_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800), 7);
        let mut last_cap = Duration::from_millis(100);
        for _ in 0..10 {
            let d = b.next_delay();
            assert!(d >= Duration::from_millis(100) && d <= last_cap, "{d:?}");
            last_cap = (last_cap * 2).min(Duration::from_millis(800));
        }
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
