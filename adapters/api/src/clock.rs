//! The bridge between the system clocks and the core's time inputs.
//!
//! The core and the [`Engine`](crate::Engine) never read a clock: the adapter reads the
//! monotonic and the wall clock through [`Clock::now`] and hands both in as [`Now`]. Core
//! deadlines map to [`std::time::Instant`]s with [`Clock::to_std`], which handles use to check
//! `safe_until` and adapters use for their runtime's timers.
//!
//! The core's monotonic axis must keep counting while the system is suspended: a lease's
//! `safe_until` is on it, and the store's TTL keeps running during a suspend. On Linux and
//! Android it is `CLOCK_BOOTTIME`. Elsewhere it is [`std::time::Instant`], which stops during
//! a suspend on some systems (macOS); the core then still notices a suspend through the wall
//! clock, which jumps ahead of the monotonic one, and ends the lease as lost.
//!
//! [`std::time::Instant`] (and the runtimes' timers built on it) may stop during a suspend
//! while the core's axis does not. So the two are related at the moment of each conversion,
//! never through a fixed origin: a deadline converted after a resume is where it belongs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use leasedlock_core::{Instant, Now};

/// The longest a driver sleeps without looking at the suspend-aware clock (see [`WakeCap`]).
pub const MAX_TIMER_SLEEP: Duration = Duration::from_secs(1);

/// When a driver's timer should wake it. Runtime timers run on the monotonic clock, which stands
/// still during a system suspend, so a timer armed before a suspend fires late by the suspend's
/// length; waking at least every [`MAX_TIMER_SLEEP`] bounds how late a deadline that passed
/// during the suspend (a lease's `safe_until`) is acted on after the resume. The cap moves only
/// once it has passed, so an unchanged core deadline gives an unchanged timer (no re-arming on
/// every turn of the loop).
#[derive(Debug, Clone, Copy)]
pub struct WakeCap {
    next: std::time::Instant,
}

impl Default for WakeCap {
    fn default() -> Self {
        WakeCap::new()
    }
}

impl WakeCap {
    /// A cap [`MAX_TIMER_SLEEP`] from now.
    pub fn new() -> WakeCap {
        let now = std::time::Instant::now();
        WakeCap {
            next: now.checked_add(MAX_TIMER_SLEEP).unwrap_or(now),
        }
    }

    /// The timer deadline for the core deadline `at` (`None`: none) on `clock`: `at`, but never
    /// later than the cap.
    pub fn deadline(&mut self, clock: Clock, at: Option<Instant>) -> std::time::Instant {
        let now = std::time::Instant::now();
        if self.next <= now {
            self.next = now.checked_add(MAX_TIMER_SLEEP).unwrap_or(now);
        }
        at.map_or(self.next, |t| clock.to_std(t).min(self.next))
    }
}

/// Maps the suspend-aware monotonic clock onto the core's nanosecond [`Instant`] axis, and
/// core instants onto [`std::time::Instant`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// The suspend-aware reading at the core's origin.
    base: Duration,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// A clock whose core origin is now.
    pub fn new() -> Clock {
        Clock {
            base: suspend_aware(),
        }
    }

    /// A clock whose core origin is `origin` (tests pick one to script time).
    pub fn with_origin(origin: std::time::Instant) -> Clock {
        let ago = std::time::Instant::now().saturating_duration_since(origin);
        Clock {
            base: suspend_aware().saturating_sub(ago),
        }
    }

    /// The current time as the core wants it.
    pub fn now(self) -> Now {
        Now::new(self.core_now(), wall_ms())
    }

    fn core_now(self) -> Instant {
        let nanos = (suspend_aware() + suspended::extra())
            .saturating_sub(self.base)
            .as_nanos();
        Instant::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// A standard instant on the core's axis (saturating; instants before the origin map to
    /// zero).
    pub fn to_core(self, at: std::time::Instant) -> Instant {
        let core = self.core_now();
        let std_now = std::time::Instant::now();
        match at.checked_duration_since(std_now) {
            Some(ahead) => core + ahead,
            None => core - std_now.saturating_duration_since(at),
        }
    }

    /// A core instant as a standard instant. A deadline too far away to represent becomes "far
    /// future", which only means a timer on it never fires before something else happens.
    pub fn to_std(self, at: Instant) -> std::time::Instant {
        let core = self.core_now();
        let std_now = std::time::Instant::now();
        if at >= core {
            std_now.checked_add(at - core).unwrap_or_else(far_future)
        } else {
            // Already past: any instant not after now will do if this one is unrepresentable.
            std_now.checked_sub(core - at).unwrap_or(std_now)
        }
    }
}

/// Time since an arbitrary origin on a monotonic clock that keeps counting during system
/// suspend: `CLOCK_BOOTTIME`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn suspend_aware() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// Time since an arbitrary origin on [`std::time::Instant`]: no suspend-aware clock is used on
/// this system (see the module documentation).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn suspend_aware() -> Duration {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    ORIGIN.get_or_init(std::time::Instant::now).elapsed()
}

/// Suspensions simulated by tests: time the suspend-aware clock counted while the monotonic one
/// stood still. Per thread, so each test (and the engine it drives on its own thread) sees only
/// its own.
#[cfg(test)]
pub(crate) mod suspended {
    use std::cell::Cell;
    use std::time::Duration;

    thread_local! {
        static EXTRA: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    }

    /// Simulates a system suspend of `d` on this thread.
    pub(crate) fn simulate(d: Duration) {
        EXTRA.with(|e| e.set(e.get() + d));
    }

    pub(super) fn extra() -> Duration {
        EXTRA.with(Cell::get)
    }
}

#[cfg(not(test))]
mod suspended {
    use std::time::Duration;

    pub(super) fn extra() -> Duration {
        Duration::ZERO
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

    /// The distance between two instants, whichever comes first.
    fn gap(a: std::time::Instant, b: std::time::Instant) -> Duration {
        a.saturating_duration_since(b)
            .max(b.saturating_duration_since(a))
    }

    /// Conversions relate the two clocks at the moment they are made, so a round trip is off
    /// by at most the time the test takes (well under a second), never by an origin.
    #[test]
    fn the_wake_cap_bounds_every_sleep_and_stays_put_until_it_passes() {
        let clock = Clock::new();
        let mut cap = WakeCap::new();
        let far = clock.now().mono + Duration::from_secs(3600);
        let first = cap.deadline(clock, Some(far));
        assert!(first <= std::time::Instant::now() + MAX_TIMER_SLEEP);
        assert_eq!(
            cap.deadline(clock, None),
            first,
            "unchanged until it passes"
        );
        let soon = clock.now().mono + Duration::from_millis(10);
        assert!(
            cap.deadline(clock, Some(soon)) < first,
            "an earlier deadline wins"
        );
    }

    #[test]
    fn core_and_std_instants_round_trip() {
        let origin = std::time::Instant::now();
        let clock = Clock::with_origin(origin);
        let later = origin + Duration::from_millis(1500);
        let core = clock.to_core(later);
        assert!(core - Instant::from_millis(1500) < Duration::from_secs(1));
        assert!(Instant::from_millis(1500) - core < Duration::from_secs(1));
        assert!(gap(clock.to_std(core), later) < Duration::from_secs(1));
        // "Never" stays in the future instead of panicking on overflow.
        assert!(clock.to_std(Instant::MAX) > std::time::Instant::now());
        // The past maps to the past.
        assert!(clock.to_std(Instant::ZERO) <= std::time::Instant::now());
        if let Some(before) = origin.checked_sub(Duration::from_secs(5)) {
            assert_eq!(clock.to_core(before), Instant::ZERO);
        }
    }

    /// The core's clock never runs backwards.
    #[test]
    fn core_time_is_monotonic() {
        let clock = Clock::new();
        let mut last = clock.now().mono;
        for _ in 0..1000 {
            let now = clock.now().mono;
            assert!(now >= last);
            last = now;
        }
    }

    /// On Linux the core's axis is `CLOCK_BOOTTIME`, which counts suspended time: it is never
    /// behind `CLOCK_MONOTONIC` (what `std::time::Instant` reads there) by more than the two
    /// readings' distance.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn linux_core_clock_is_boottime() {
        let mono = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let boot = suspend_aware();
        let mono = Duration::new(
            u64::try_from(mono.tv_sec).unwrap(),
            u32::try_from(mono.tv_nsec).unwrap(),
        );
        assert!(
            boot + Duration::from_millis(10) >= mono,
            "{boot:?} < {mono:?}"
        );
    }

    #[test]
    fn wall_clock_is_after_2020() {
        assert!(wall_ms() > 1_577_836_800_000);
    }
}
