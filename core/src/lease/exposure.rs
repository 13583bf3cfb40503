//! How long requests of one kind may still be applied by the store after this machine stopped
//! waiting for them.
//!
//! The client sets Message Expiry = the wait remaining at publish, rounded up to whole seconds,
//! and a compliant broker drops a request once that passes. So a request issued at `issued`
//! with timeout `t` cannot be applied after `issued + t + 1 s` (it leaves at the latest at its
//! deadline, with less than one second of rounding) — on the connection it was published on.
//! A reconnect that keeps the MQTT session publishes unacknowledged requests again, each with
//! its full Message Expiry counted from that moment, and a duplicate copy can be among them
//! even when the first copy was answered. So:
//! - an answered request is *exposed* until its copies can no longer arrive, and an unanswered
//!   one (timeout after sending, `Unknown`) also *blocks* until then;
//! - a reconnect while something is still exposed extends both to `reconnect + expiry`.
//!
//! A copy can be held for publishing again only if it was on its way when the connection
//! dropped, so the drop is what counts: a request still exposed at the disconnect is exposed
//! again at the reconnect. A driver that never reports disconnects gets a conservative
//! approximation: "exposed after the previous reconnect". One acknowledged by the broker yet
//! redelivered after its exposure ended (a lost PUBACK discovered only after a full expiry) is
//! outside what any client can bound.

use core::time::Duration;

use crate::time::Instant;

/// Slack added to every bound: the broker counts Message Expiry on its own clock, and the
/// clocks' rates differ (a few hundred ppm over seconds is well under this).
pub(crate) const CLOCK_SLACK: Duration = Duration::from_millis(100);

/// The Message Expiry the client sends for a wait of `timeout` at most: whole seconds,
/// rounded up, at least one.
pub(crate) fn message_expiry(timeout: Duration) -> Duration {
    let secs = timeout.as_secs();
    if timeout.subsec_nanos() > 0 || secs == 0 {
        Duration::from_secs(secs.saturating_add(1))
    } else {
        timeout
    }
}

fn later(a: Instant, b: Instant) -> Instant {
    if a > b {
        a
    } else {
        b
    }
}

/// The latest instant at which a request issued at `issued` with `timeout`, which this machine
/// stopped waiting for at `now`, may be applied.
pub(crate) fn apply_bound(issued: Instant, timeout: Duration, now: Instant) -> Instant {
    later(issued + timeout, now) + message_expiry(timeout) + CLOCK_SLACK
}

/// Requests of one kind that may still reach the store. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exposure {
    /// Until when a request of this kind whose outcome is unknown may still be applied.
    until: Instant,
    /// Until when a copy of any request of this kind may still be on its way.
    exposed: Instant,
    /// The longest Message Expiry among them: what a copy published again gets.
    expiry: Duration,
    /// The connection dropped while a copy may have been on its way.
    held: bool,
}

impl Default for Exposure {
    fn default() -> Self {
        Exposure {
            until: Instant::ZERO,
            exposed: Instant::ZERO,
            expiry: Duration::ZERO,
            held: false,
        }
    }
}

impl Exposure {
    /// A request was handed to the client at `issued`.
    pub(crate) fn sent(&mut self, issued: Instant, timeout: Duration) {
        self.exposed = later(self.exposed, apply_bound(issued, timeout, issued));
        self.expiry = self.expiry.max(message_expiry(timeout));
    }

    /// A request issued at `issued` ended at `now` without a reply that proves its outcome.
    pub(crate) fn unknown(&mut self, issued: Instant, timeout: Duration, now: Instant) {
        let bound = apply_bound(issued, timeout, now);
        self.until = later(self.until, bound);
        self.exposed = later(self.exposed, bound);
        self.expiry = self.expiry.max(message_expiry(timeout));
    }

    /// The connection dropped at `now`.
    pub(crate) fn disconnected(&mut self, now: Instant) {
        self.held |= self.exposed > now;
    }

    /// The connection came back at `now`. `last` is the previous reconnect when disconnects
    /// are not reported, else `None`. Returns whether a copy may be published again (the
    /// bounds then start over from `now`).
    pub(crate) fn reconnected(&mut self, last: Option<Instant>, now: Instant) -> bool {
        let held = match last {
            None => core::mem::take(&mut self.held),
            Some(last) => self.exposed > last,
        };
        if !held || self.expiry.is_zero() {
            return false;
        }
        self.until = later(self.until, now + self.expiry + CLOCK_SLACK);
        self.exposed = later(self.exposed, self.until);
        true
    }

    /// Whether a copy was on its way at a reported disconnect: the next reconnect that keeps
    /// the session may publish it again.
    pub(crate) fn held_for_reconnect(&self) -> bool {
        self.held
    }

    /// Whether a request of this kind may still be applied at `now`.
    pub(crate) fn blocks(&self, now: Instant) -> bool {
        now < self.until
    }

    /// Until when a request of this kind may still be applied.
    pub(crate) fn until(&self) -> Instant {
        self.until
    }

    /// Whether no request of this kind can be applied from `now` on, nor be published again by
    /// a later reconnect. `last_connect` is the previous reconnect when disconnects are not
    /// reported (a copy exposed after it counts), else `None`.
    pub(crate) fn settled(&self, now: Instant, last_connect: Option<Instant>) -> bool {
        let republishable = match last_connect {
            None => self.held,
            Some(last) => self.exposed > last,
        };
        now >= self.until && now >= self.exposed && !republishable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    #[test]
    fn expiry_rounds_up_to_whole_seconds() {
        assert_eq!(
            message_expiry(Duration::from_millis(300)),
            Duration::from_secs(1)
        );
        assert_eq!(
            message_expiry(Duration::from_secs(2)),
            Duration::from_secs(2)
        );
        assert_eq!(
            message_expiry(Duration::from_millis(2001)),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn answered_requests_do_not_block_until_a_reconnect() {
        let mut e = Exposure::default();
        e.sent(ms(0), Duration::from_millis(500));
        assert!(!e.blocks(ms(1)));
        // A drop while a copy may be in flight: it may be published again at the reconnect.
        e.disconnected(ms(100));
        assert!(e.reconnected(None, ms(200)));
        assert!(e.blocks(ms(1_299)));
        assert!(!e.blocks(ms(1_300)));
        // A later drop, after everything ended, exposes nothing.
        e.disconnected(ms(4_000));
        assert!(!e.reconnected(None, ms(5_000)));
        assert!(!e.blocks(ms(5_001)));
    }

    #[test]
    fn without_disconnects_reported_any_reconnect_within_exposure_counts() {
        let mut e = Exposure::default();
        e.sent(ms(0), Duration::from_millis(500));
        assert!(e.reconnected(Some(Instant::ZERO), ms(1_000)));
        assert!(e.blocks(ms(2_000)));
        assert!(!e.reconnected(Some(ms(5_000)), ms(6_000)));
    }

    #[test]
    fn unknown_outcome_blocks_until_deadline_plus_expiry() {
        let mut e = Exposure::default();
        e.sent(ms(0), Duration::from_millis(500));
        e.unknown(ms(0), Duration::from_millis(500), ms(500));
        assert!(e.blocks(ms(1_599)));
        assert!(!e.blocks(ms(1_600)));
        assert_eq!(e.until(), ms(1_600));
    }
}
