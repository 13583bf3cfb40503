//! One timer re-armed in place: the driver loop sets its next deadline on every turn, and a new
//! `async_io::Timer` per turn would insert into (and remove from) the reactor's timer table
//! each time, under its lock, even when the deadline did not move.

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
    /// Sets the deadline; touches the reactor only when it changed.
    pub(crate) fn arm(&mut self, at: Option<Instant>) {
        if at == self.at {
            return;
        }
        match at {
            Some(at) => self.timer.set_at(at),
            None => self.timer = Timer::never(),
        }
        self.at = at;
    }

    /// Resolves when the deadline passes (never while there is none); the deadline is then
    /// cleared. Cancel-safe.
    pub(crate) async fn fired(&mut self) {
        if self.at.is_none() {
            return future::pending().await;
        }
        (&mut self.timer).await;
        self.at = None;
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
        d.arm(None);
        assert_eq!(d.at, None);
    }
}
