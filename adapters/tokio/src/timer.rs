//! The driver's one timer, re-armed in place.
//!
//! A fresh `sleep_until` on every turn of the driver's loop registers and removes a timer-wheel
//! entry each time (under the timer driver's lock) while a request is in flight, although the
//! deadline rarely moves. This keeps one entry and resets it only when the deadline changes.
//!
//! tokio's timer counts whole milliseconds and rounds every deadline up to the next tick, so a
//! deadline 200 µs away fires 1–2 ms later: a waiter's sub-millisecond herd-control jitter
//! became a millisecond or two of handover latency. The timer therefore waits on tokio's wheel
//! only until [`PRECISE`] before the deadline, and sleeps the rest on a blocking-pool thread
//! (`nanosleep`, tens of µs of slack) so it fires close to the deadline itself.
//!
//! That hand-off costs two thread switches. A busy connection (thousands of auto-renewed leases)
//! has a deadline every few hundred microseconds and would pay it for nearly every one, and for
//! every turn of the driver's loop that drops a pending wait; there the wheel's rounding costs
//! nothing (deadlines that come due together run in one batch). So at most one precise sleep
//! starts per [`PRECISE_EVERY`]; the others wait on the wheel.

use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// How close to the deadline the wait moves from tokio's millisecond wheel to a precise sleep:
/// one tick of the wheel, whose rounding it absorbs.
pub(crate) const PRECISE: Duration = Duration::from_millis(1);

/// At most one precise sleep starts per this long: an idle connection always gets one, a busy
/// one uses the wheel.
pub(crate) const PRECISE_EVERY: Duration = Duration::from_millis(10);

/// A timer armed for at most one deadline.
#[derive(Debug)]
pub(crate) struct Timer {
    sleep: Pin<Box<Sleep>>,
    armed: Option<Instant>,
    /// When the last precise sleep started.
    last_precise: Option<std::time::Instant>,
    /// Precise sleeps started so far (read by the tests).
    precise_sleeps: u64,
}

impl Default for Timer {
    fn default() -> Timer {
        Timer::new()
    }
}

impl Timer {
    /// A disarmed timer.
    pub(crate) fn new() -> Timer {
        Timer {
            sleep: Box::pin(tokio::time::sleep_until(Instant::now())),
            armed: None,
            last_precise: None,
            precise_sleeps: 0,
        }
    }

    /// Arms the timer for `at`, or disarms it (`None`). Touches the timer wheel only when the
    /// deadline moves.
    pub(crate) fn set(&mut self, at: Option<Instant>) {
        if at != self.armed {
            if let Some(at) = at {
                // The wheel rounds up: aim one tick early and finish with a precise sleep.
                self.sleep
                    .as_mut()
                    .reset(at.checked_sub(PRECISE).unwrap_or(at));
            }
            self.armed = at;
        }
    }

    /// Resolves at the armed deadline (never while disarmed) and disarms. Cancel-safe.
    pub(crate) async fn fired(&mut self) {
        let Some(at) = self.armed else {
            return std::future::pending::<()>().await;
        };
        let precise = self
            .last_precise
            .is_none_or(|t| t.elapsed() >= PRECISE_EVERY);
        if !precise || at.saturating_duration_since(Instant::now()) > PRECISE {
            self.sleep.as_mut().await;
        }
        // What is left in real time; beyond one tick only if tokio's clock is not the real one
        // (paused in tests), where tokio's own sleep is exact.
        let left = at
            .into_std()
            .saturating_duration_since(std::time::Instant::now());
        if left > PRECISE || (!precise && !left.is_zero()) {
            // The wheel entry, moved to the deadline itself (cancel-safe: a later call waits
            // on it again).
            self.sleep.as_mut().reset(at);
            self.sleep.as_mut().await;
        } else if !left.is_zero() {
            self.last_precise = Some(std::time::Instant::now());
            self.precise_sleeps += 1;
            tracing::trace!(target: leasedlock_api::driver::HOP, left = ?left, "precise sleep");
            // A dropped wait leaves this sleep to finish on its own: at most one tick.
            let _ = tokio::task::spawn_blocking(move || std::thread::sleep(left)).await;
        }
        self.armed = None;
    }
}

impl leasedlock_api::driver::Timer for Timer {
    fn arm(&mut self, at: std::time::Instant) {
        self.set(Some(Instant::from_std(at)));
    }

    async fn fired(&mut self) {
        Timer::fired(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn fires_once_per_arming_and_never_when_disarmed() {
        let mut t = Timer::new();
        let never = tokio::time::timeout(Duration::from_secs(3600), t.fired()).await;
        assert!(never.is_err(), "a disarmed timer does not fire");
        let at = Instant::now() + Duration::from_millis(10);
        t.set(Some(at));
        t.fired().await;
        assert!(Instant::now() >= at);
        // Fired: disarmed until set again, even for the same instant.
        assert!(tokio::time::timeout(Duration::from_secs(1), t.fired())
            .await
            .is_err());
        t.set(Some(at));
        t.fired().await;
        // Moving the deadline later takes effect.
        let later = Instant::now() + Duration::from_millis(50);
        t.set(Some(Instant::now() + Duration::from_millis(5)));
        t.set(Some(later));
        t.fired().await;
        assert!(Instant::now() >= later);
    }

    /// The wheel entry is aimed one tick early (tokio rounds deadlines up to the next
    /// millisecond tick; the last stretch is a precise sleep), and the timer never fires early.
    /// How close to the deadline it fires is measured by the latency bench (default-jitter
    /// handover), not asserted here.
    #[tokio::test]
    async fn wheel_entry_aimed_a_tick_early_and_never_fires_early() {
        let mut t = Timer::new();
        let at = Instant::now() + Duration::from_millis(5);
        t.set(Some(at));
        assert_eq!(t.sleep.deadline(), at - PRECISE);
        t.fired().await;
        assert!(Instant::now() >= at, "never early");
        for micros in [0, 1, 300, 999, 1000, 1001, 2500] {
            let at = Instant::now() + Duration::from_micros(micros);
            t.set(Some(at));
            t.fired().await;
            assert!(Instant::now() >= at, "never early ({micros} µs)");
        }
    }

    /// A busy timer (deadlines a fraction of a millisecond apart, as thousands of renewals
    /// make) must not hand every one to the blocking pool: at most one precise sleep per
    /// `PRECISE_EVERY` of the time it ran, yet it never fires early.
    #[tokio::test]
    async fn a_busy_timer_starts_few_precise_sleeps() {
        let mut t = Timer::new();
        let start = std::time::Instant::now();
        let rounds = 40;
        for _ in 0..rounds {
            let at = Instant::now() + Duration::from_micros(300);
            t.set(Some(at));
            t.fired().await;
            assert!(Instant::now() >= at, "never early");
        }
        let allowed = 1 + (start.elapsed().as_millis() / PRECISE_EVERY.as_millis()) as u64;
        assert!(
            t.precise_sleeps <= allowed,
            "{} precise sleeps for {rounds} deadlines in {:?}",
            t.precise_sleeps,
            start.elapsed()
        );
    }
}
