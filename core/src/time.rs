//! Time as an input: a monotonic [`Instant`] and the wall clock, both supplied by the caller.
//!
//! The core never reads a clock. Adapters pass [`Now`] into every `handle_*` call; the simulator
//! passes virtual time. Monotonic time drives timers and lease safety; the wall clock (Unix
//! milliseconds) is only used by the hybrid logical clock.

use core::ops::{Add, Sub};

pub use core::time::Duration;

/// A point on the caller's monotonic clock, in nanoseconds since an arbitrary origin.
///
/// Arithmetic saturates instead of overflowing, so hostile durations cannot panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The origin of the monotonic clock.
    pub const ZERO: Instant = Instant(0);
    /// The latest representable instant; used as "never".
    pub const MAX: Instant = Instant(u64::MAX);

    /// An instant `nanos` nanoseconds after the origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        Instant(nanos)
    }

    /// An instant `millis` milliseconds after the origin (saturating).
    pub const fn from_millis(millis: u64) -> Self {
        Instant(millis.saturating_mul(1_000_000))
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// The time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at [`Instant::MAX`].
    pub fn saturating_add(self, d: Duration) -> Instant {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(nanos))
    }

    /// `self - d`, saturating at [`Instant::ZERO`].
    pub fn saturating_sub(self, d: Duration) -> Instant {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_sub(nanos))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, d: Duration) -> Instant {
        self.saturating_sub(d)
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

/// The current time as the caller sees it: monotonic time for timers and safety, and the wall
/// clock (milliseconds since the Unix epoch) for the hybrid logical clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Now {
    /// Monotonic time.
    pub mono: Instant,
    /// Wall-clock time in milliseconds since the Unix epoch.
    pub wall_ms: u64,
}

impl Now {
    /// A `Now` from both readings.
    pub const fn new(mono: Instant, wall_ms: u64) -> Self {
        Now { mono, wall_ms }
    }

    /// The same moment advanced by `d` on both clocks (used by tests and the simulator).
    pub fn advanced(self, d: Duration) -> Now {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Now {
            mono: self.mono + d,
            wall_ms: self.wall_ms.saturating_add(ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Instant::MAX + Duration::from_secs(1), Instant::MAX);
        assert_eq!(Instant::ZERO - Duration::from_secs(1), Instant::ZERO);
        assert_eq!(Instant::ZERO - Instant::from_millis(5), Duration::ZERO);
        assert_eq!(
            Instant::from_millis(7) - Instant::from_millis(2),
            Duration::from_millis(5)
        );
        assert_eq!(Instant::ZERO + Duration::MAX, Instant::MAX);
    }

    #[test]
    fn now_advances_both_clocks() {
        let n = Now::new(Instant::from_millis(10), 1_000).advanced(Duration::from_millis(250));
        assert_eq!(n.mono, Instant::from_millis(260));
        assert_eq!(n.wall_ms, 1_250);
    }
}
