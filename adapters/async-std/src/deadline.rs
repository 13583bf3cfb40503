//! One timer, re-armed only when a deadline comes earlier. The driver loop sets its next
//! deadline on every turn, and the keep-alive and request deadlines move later with nearly every
//! packet; each (re-)insertion into async-io's timer table also wakes the reactor thread, which
//! on a busy machine costs more than the occasional early wake-up this saves (the session and
//! the engine treat an early `handle_timeout` as a no-op).

use std::time::Instant;

use async_io::Timer;
use futures_lite::future;

/// A timer for the current deadline, if any.
#[derive(Debug)]
pub(crate) struct Deadline {
    timer: Timer,
    at: Option<Instant>,
}

impl Default for Deadline {
    fn default() -> Deadline {
        Deadline {
            timer: Timer::never(),
            at: None,
        }
    }
}

impl Deadline {
    /// Makes sure the timer fires no later than `at`. A later (or no) deadline keeps the
    /// timer already armed: it may then fire early, once, and the caller re-arms.
    pub(crate) fn arm(&mut self, at: Option<Instant>) {
        match (at, self.at) {
            (Some(new), Some(armed)) if armed <= new => {}
            (Some(new), _) => {
                self.timer.set_at(new);
                self.at = Some(new);
            }
            (None, _) => {}
        }
    }

    /// Resolves when the armed time passes (never while nothing is armed); the timer is then
    /// disarmed. Cancel-safe.
    pub(crate) async fn fired(&mut self) {
        if self.at.is_none() {
            return future::pending().await;
        }
        (&mut self.timer).await;
        self.at = None;
    }
}

impl leasedlock_api::driver::Timer for Deadline {
    fn arm(&mut self, at: Instant) {
        Deadline::arm(self, Some(at));
    }

    fn fired(&mut self) -> impl std::future::Future<Output = ()> + Send {
        Deadline::fired(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[async_std::test]
    async fn fires_once_per_deadline_and_follows_changes() {
        let mut d = Deadline::default();
        let never = future::or(
            async {
                d.fired().await;
                true
            },
            async {
                Timer::after(Duration::from_millis(30)).await;
                false
            },
        )
        .await;
        assert!(!never, "no deadline, no wake-up");
        let start = Instant::now();
        d.arm(Some(start + Duration::from_secs(60)));
        // Moved earlier: the new deadline counts.
        d.arm(Some(start + Duration::from_millis(20)));
        d.fired().await;
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert_eq!(d.at, None, "cleared once fired");
        // The same instant again re-arms (it was cleared), and a past one fires at once.
        d.arm(Some(start));
        d.fired().await;
        // A later deadline (or none) keeps the earlier timer: it fires early, not late.
        let soon = Instant::now() + Duration::from_millis(20);
        d.arm(Some(soon));
        d.arm(Some(soon + Duration::from_secs(60)));
        d.arm(None);
        assert_eq!(d.at, Some(soon));
        d.fired().await;
        assert!(Instant::now() >= soon);
        assert_eq!(d.at, None);
    }
}
