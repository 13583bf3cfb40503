//! The driver's clock: the core's monotonic [`Instant`] mapped onto [`std::time::Instant`],
//! and the wall clock for the HLC.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use leasedlock_core::{Instant, Now};

/// Reads both clocks; the monotonic origin is the moment the clock was made.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    origin: std::time::Instant,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock {
            origin: std::time::Instant::now(),
        }
    }

    /// The current time for the core.
    pub(crate) fn now(&self) -> Now {
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Now::new(self.to_core(std::time::Instant::now()), wall_ms)
    }

    /// A std instant as a core instant (saturating at the origin).
    pub(crate) fn to_core(self, t: std::time::Instant) -> Instant {
        let nanos = t.saturating_duration_since(self.origin).as_nanos();
        Instant::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// A core instant as a std instant (far-future instants are clamped to a year from now, so
    /// a timer can always be armed).
    pub(crate) fn to_std(self, t: Instant) -> std::time::Instant {
        let limit = std::time::Instant::now() + Duration::from_secs(365 * 24 * 3600);
        self.origin
            .checked_add(Duration::from_nanos(t.as_nanos()))
            .map_or(limit, |s| s.min(limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_clamps() {
        let clock = Clock::new();
        let now = std::time::Instant::now();
        let core = clock.to_core(now);
        let back = clock.to_std(core);
        assert!(back <= now && now - back < Duration::from_micros(1));
        assert!(clock.to_std(Instant::MAX) > now);
        assert!(clock.now().wall_ms > 1_600_000_000_000);
    }
}
