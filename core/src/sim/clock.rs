//! Per-node clocks: how a node's monotonic and wall clocks read at a given global (true) time.
//!
//! Global time is the simulator's own timeline (nanoseconds since the run began). Every node
//! reads it through its own clock: a monotonic origin offset, a rate error in parts per million
//! and a wall-clock skew. Lease code that mixes clocks of different nodes, or whose safety
//! margin does not cover the rate error, shows up as a checker violation.

use crate::time::{Instant, Now};

/// Unix time (ms) at global time zero: 2024-01-01T00:00:00Z.
pub const BASE_WALL_MS: u64 = 1_704_067_200_000;

/// One node's view of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeClock {
    /// Monotonic reading (ns) at global time zero.
    pub offset_ns: u64,
    /// Rate error: the clock advances `1 + rate_ppm / 1e6` seconds per true second.
    pub rate_ppm: i32,
    /// Wall-clock error in milliseconds (positive = ahead of true time).
    pub wall_skew_ms: i64,
}

const MILLION: i128 = 1_000_000;

impl NodeClock {
    /// A perfect clock (the store's).
    pub const IDEAL: NodeClock = NodeClock {
        offset_ns: 0,
        rate_ppm: 0,
        wall_skew_ms: 0,
    };

    fn rate(&self) -> i128 {
        // A clock that runs backwards or stands still is not a clock.
        MILLION + i128::from(self.rate_ppm.clamp(-999_999, 999_999))
    }

    /// Nanoseconds elapsed on this clock after `global_ns` true nanoseconds.
    fn elapsed(&self, global_ns: u64) -> u64 {
        let v = i128::from(global_ns) * self.rate() / MILLION;
        u64::try_from(v).unwrap_or(u64::MAX)
    }

    /// The monotonic reading at global time `global_ns`.
    pub fn mono(&self, global_ns: u64) -> Instant {
        Instant::from_nanos(self.offset_ns.saturating_add(self.elapsed(global_ns)))
    }

    /// Both readings at global time `global_ns`.
    pub fn now(&self, global_ns: u64) -> Now {
        let elapsed_ms = self.elapsed(global_ns) / 1_000_000;
        let wall =
            i128::from(BASE_WALL_MS) + i128::from(self.wall_skew_ms) + i128::from(elapsed_ms);
        Now {
            mono: self.mono(global_ns),
            wall_ms: u64::try_from(wall.max(0)).unwrap_or(0),
        }
    }

    /// The earliest global time at which this clock reads at least `local`.
    pub fn global_at(&self, local: Instant) -> u64 {
        let Some(since) = local.as_nanos().checked_sub(self.offset_ns) else {
            return 0;
        };
        // ceil(since * 1e6 / rate), then step over rounding in `elapsed`.
        let rate = self.rate();
        let g = (i128::from(since) * MILLION + rate - 1) / rate;
        let mut g = u64::try_from(g).unwrap_or(u64::MAX);
        while g < u64::MAX && self.elapsed(g) < since {
            g += 1;
        }
        g
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ideal_clock_is_identity() {
        let c = NodeClock::IDEAL;
        assert_eq!(c.mono(5_000_000), Instant::from_nanos(5_000_000));
        assert_eq!(c.now(5_000_000).wall_ms, BASE_WALL_MS + 5);
        assert_eq!(c.global_at(Instant::from_nanos(77)), 77);
    }

    #[test]
    fn fast_clock_reaches_deadlines_early() {
        let c = NodeClock {
            offset_ns: 1_000,
            rate_ppm: 10_000,
            wall_skew_ms: -20,
        };
        // 1 % fast: one true second reads 1.01 s.
        assert_eq!(c.mono(1_000_000_000), Instant::from_nanos(1_010_001_000));
        assert_eq!(c.now(1_000_000_000).wall_ms, BASE_WALL_MS - 20 + 1_010);
        assert!(c.global_at(Instant::from_nanos(1_010_001_000)) <= 1_000_000_000);
        assert_eq!(c.global_at(Instant::from_nanos(10)), 0);
    }

    proptest! {
        #[test]
        fn global_at_is_the_earliest_time_reading_the_deadline(
            offset in 0u64..1 << 40,
            ppm in -50_000i32..50_000,
            local in 0u64..1 << 50,
        ) {
            let c = NodeClock { offset_ns: offset, rate_ppm: ppm, wall_skew_ms: 0 };
            let deadline = Instant::from_nanos(local);
            let g = c.global_at(deadline);
            prop_assert!(c.mono(g) >= deadline);
            if g > 0 {
                prop_assert!(c.mono(g - 1) < deadline);
            }
        }
    }
}
