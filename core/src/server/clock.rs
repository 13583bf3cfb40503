//! The store's version clock: a hybrid logical clock whose node id is the store's own, so only
//! milliseconds and counter are kept.
//!
//! It follows the update rule of docs/protocol.md §6.2 except that it never refuses to advance: the
//! store must hand out a strictly greater version for every write even if its wall clock steps back
//! or a counter would overflow, so instead of failing it carries into the milliseconds.

use super::table::Version;
use crate::hlc::Hlc;

/// Monotonic source of key versions.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ServerClock {
    current: Version,
}

impl ServerClock {
    pub(crate) fn current(&self) -> Version {
        self.current
    }

    /// Folds in a timestamp the store has received (a request `__ts` or `__ft`, or a restored
    /// version), so every later version is strictly greater than it. The node id is ignored:
    /// being strictly greater in (milliseconds, counter) makes the result greater whatever it is.
    pub(crate) fn observe(&mut self, millis: u64, counter: u64) {
        let counter = u32::try_from(counter).unwrap_or(u32::MAX);
        let other = Version { millis, counter };
        if other > self.current {
            self.current = other;
        }
    }

    /// Folds in an HLC (see [`ServerClock::observe`]).
    pub(crate) fn observe_hlc(&mut self, h: &Hlc) {
        self.observe(h.millis, h.counter);
    }

    /// The next version: "tick" of docs/protocol.md §6.2, never failing.
    pub(crate) fn next(&mut self, wall_ms: u64) -> Version {
        let c = self.current;
        self.current = if wall_ms > c.millis {
            Version {
                millis: wall_ms,
                counter: 0,
            }
        } else if c.counter < u32::MAX {
            Version {
                millis: c.millis,
                counter: c.counter + 1,
            }
        } else {
            Version {
                millis: c.millis.saturating_add(1),
                counter: 0,
            }
        };
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictly_increasing_and_above_observed() {
        let mut c = ServerClock::default();
        let a = c.next(100);
        assert_eq!((a.millis, a.counter), (100, 0));
        let b = c.next(100);
        assert_eq!((b.millis, b.counter), (100, 1));
        let back = c.next(50);
        assert!(back > b);
        c.observe(5_000, 7);
        let d = c.next(100);
        assert_eq!((d.millis, d.counter), (5_000, 8));
        c.observe(1, 1);
        assert!(c.next(0) > d);
        c.observe(6_000, u64::MAX);
        let e = c.next(6_000);
        assert_eq!((e.millis, e.counter), (6_001, 0));
        // Wall ahead of everything resets the counter (docs/protocol.md §6.2 rule 2).
        let f = c.next(10_000);
        assert_eq!((f.millis, f.counter), (10_000, 0));
    }
}
