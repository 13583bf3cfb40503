//! The bridge between tokio's clocks and the core's time inputs.
//!
//! The core never reads a clock: the driver reads tokio's monotonic clock and the system wall
//! clock here and hands both in as [`Now`]. Core deadlines come back as core [`Instant`]s, which
//! this module turns into tokio instants for `sleep_until`.

use std::time::{SystemTime, UNIX_EPOCH};

use leasedlock_core::{Instant, Now};

/// Maps tokio's monotonic clock onto the core's nanosecond [`Instant`] axis.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    origin: tokio::time::Instant,
}

impl Clock {
    /// A clock whose core origin is the current tokio instant.
    pub(crate) fn new() -> Clock {
        Clock {
            origin: tokio::time::Instant::now(),
        }
    }

    /// The current time as the core wants it.
    pub(crate) fn now(self) -> Now {
        Now::new(self.to_core(tokio::time::Instant::now()), wall_ms())
    }

    /// A tokio instant on the core's axis (saturating; instants before the origin map to zero).
    pub(crate) fn to_core(self, at: tokio::time::Instant) -> Instant {
        let nanos = at.saturating_duration_since(self.origin).as_nanos();
        Instant::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// A core instant as a tokio instant. A deadline too far away to represent becomes "far
    /// future", which only means the timer never fires before something else wakes the driver.
    pub(crate) fn to_tokio(self, at: Instant) -> tokio::time::Instant {
        let offset = std::time::Duration::from_nanos(at.as_nanos());
        self.origin.checked_add(offset).unwrap_or_else(far_future)
    }
}

/// About thirty years from now: the "never" of tokio timers.
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + std::time::Duration::from_secs(86_400 * 365 * 30)
}

/// Wall-clock milliseconds since the Unix epoch (0 if the system clock is before the epoch).
pub(crate) fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn core_and_tokio_instants_round_trip() {
        let clock = Clock::new();
        tokio::time::advance(Duration::from_millis(1500)).await;
        let now = clock.now();
        assert_eq!(now.mono, Instant::from_millis(1500));
        let back = clock.to_tokio(now.mono + Duration::from_millis(250));
        assert_eq!(
            back.saturating_duration_since(tokio::time::Instant::now()),
            Duration::from_millis(250)
        );
        // "Never" stays in the future instead of panicking on overflow.
        assert!(clock.to_tokio(Instant::MAX) > tokio::time::Instant::now());
    }

    #[test]
    fn wall_clock_is_after_2020() {
        assert!(wall_ms() > 1_577_836_800_000);
    }
}
