//! The suite's one clock: `CLOCK_MONOTONIC` in nanoseconds. Every process on the machine reads
//! the same clock, so stamps written by different participants can be compared directly. It is
//! also the clock `std::time::Instant` (and so each client's `safe_until`) runs on under Linux.

use nix::time::{clock_gettime, ClockId};

/// Nanoseconds on `CLOCK_MONOTONIC`.
pub fn now_ns() -> u64 {
    // CLOCK_MONOTONIC is always available on Linux; a failure here is a broken system.
    let t = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is readable");
    let secs = u64::try_from(t.tv_sec()).unwrap_or(0);
    let nanos = u64::try_from(t.tv_nsec()).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_std_instant_ordering() {
        let a = now_ns();
        let before = std::time::Instant::now();
        while before.elapsed() < std::time::Duration::from_millis(2) {}
        let b = now_ns();
        assert!(b >= a + 2_000_000, "{a} then {b}");
    }
}
