//! The bridge between the standard clocks and the core's time inputs.
//!
//! The core and the [`Engine`](crate::Engine) never read a clock: the adapter reads the
//! monotonic and the wall clock through [`Clock::now`] and hands both in as [`Now`]. Core
//! deadlines map back to [`std::time::Instant`]s with [`Clock::to_std`], which handles use to
//! check `safe_until` and adapters use for their runtime's timers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use leasedlock_core::{Instant, Now};

/// Maps the standard monotonic clock onto the core's nanosecond [`Instant`] axis.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: std::time::Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// A clock whose core origin is now.
    pub fn new() -> Clock {
        Clock::with_origin(std::time::Instant::now())
    }

    /// A clock whose core origin is `origin` (tests pick one to script time).
    pub fn with_origin(origin: std::time::Instant) -> Clock {
        Clock { origin }
    }

    /// The current time as the core wants it.
    pub fn now(self) -> Now {
        Now::new(self.to_core(std::time::Instant::now()), wall_ms())
    }

    /// A standard instant on the core's axis (saturating; instants before the origin map to
    /// zero).
    pub fn to_core(self, at: std::time::Instant) -> Instant {
        let nanos = at.saturating_duration_since(self.origin).as_nanos();
        Instant::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// A core instant as a standard instant. A deadline too far away to represent becomes "far
    /// future", which only means a timer on it never fires before something else happens.
    pub fn to_std(self, at: Instant) -> std::time::Instant {
        let offset = Duration::from_nanos(at.as_nanos());
        self.origin.checked_add(offset).unwrap_or_else(far_future)
    }
}

/// About thirty years from now: the "never" of timers.
fn far_future() -> std::time::Instant {
    let now = std::time::Instant::now();
    now.checked_add(Duration::from_secs(86_400 * 365 * 30))
        .unwrap_or(now)
}

/// Wall-clock milliseconds since the Unix epoch (0 if the system clock is before the epoch).
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_and_std_instants_round_trip() {
        let origin = std::time::Instant::now();
        let clock = Clock::with_origin(origin);
        let later = origin + Duration::from_millis(1500);
        assert_eq!(clock.to_core(later), Instant::from_millis(1500));
        assert_eq!(clock.to_std(Instant::from_millis(1500)), later);
        // "Never" stays in the future instead of panicking on overflow.
        assert!(clock.to_std(Instant::MAX) > std::time::Instant::now());
        if let Some(before) = origin.checked_sub(Duration::from_millis(1)) {
            assert_eq!(clock.to_core(before), Instant::ZERO);
        }
    }

    #[test]
    fn wall_clock_is_after_2020() {
        assert!(wall_ms() > 1_577_836_800_000);
    }
}
