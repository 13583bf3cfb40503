//! The driver's one timer, re-armed in place.
//!
//! A fresh `sleep_until` on every turn of the driver's loop registers and removes a timer-wheel
//! entry each time (under the timer driver's lock) while a request is in flight, although the
//! deadline rarely moves. This keeps one entry and resets it only when the deadline changes.

use std::pin::Pin;

use tokio::time::{Instant, Sleep};

/// A timer armed for at most one deadline.
#[derive(Debug)]
pub(crate) struct Timer {
    sleep: Pin<Box<Sleep>>,
    armed: Option<Instant>,
}

impl Timer {
    /// A disarmed timer.
    pub(crate) fn new() -> Timer {
        Timer {
            sleep: Box::pin(tokio::time::sleep_until(Instant::now())),
            armed: None,
        }
    }

    /// Arms the timer for `at`, or disarms it (`None`). Touches the timer wheel only when the
    /// deadline moves.
    pub(crate) fn set(&mut self, at: Option<Instant>) {
        if at != self.armed {
            if let Some(at) = at {
                self.sleep.as_mut().reset(at);
            }
            self.armed = at;
        }
    }

    /// Resolves at the armed deadline (never while disarmed) and disarms. Cancel-safe.
    pub(crate) async fn fired(&mut self) {
        if self.armed.is_none() {
            std::future::pending::<()>().await;
        }
        self.sleep.as_mut().await;
        self.armed = None;
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
}
