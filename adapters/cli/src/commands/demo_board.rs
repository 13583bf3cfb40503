//! The demo's scoreboard: every contender reports what it believes (acquired, releasing,
//! crashed) and the board checks the invariants from those beliefs, in one process with one
//! monotonic clock.

use std::time::{Duration, Instant};

use leasedlock_tokio::Hlc;

use crate::stats::Samples;

/// What the live view shows and the summary reports.
#[derive(Debug, Clone)]
pub struct Board {
    started: Instant,
    /// The contender that currently believes it holds the lock.
    pub holder: Option<usize>,
    /// Its token.
    pub token: Option<Hlc>,
    last_holder: Option<usize>,
    last_token: Option<Hlc>,
    last_release: Option<(usize, Instant)>,
    crash: Option<(usize, Instant)>,
    /// Acquisitions (lock() returned).
    pub acquisitions: u64,
    /// Acquisitions by a different contender than the previous one.
    pub handovers: u64,
    /// Release (start of unlock) to the next contender's acquisition.
    pub handover_latency: Samples,
    /// Crash of a holder to the next acquisition.
    pub failover: Option<Duration>,
    /// Who was killed, and with which token.
    pub crashed: Option<(usize, Hlc)>,
    /// An acquisition while another contender still believed it held the lock.
    pub overlaps: u64,
    /// Whether every acquisition's token was greater than the one before.
    pub tokens_strictly_increasing: bool,
    /// Fenced writes the store accepted.
    pub fenced_writes: u64,
    /// Fenced writes of a holder the store refused (must stay 0).
    pub fenced_rejected: u64,
}

/// A notable moment, for the live view's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Contender `who` was killed while holding the lock.
    Crashed {
        /// The contender.
        who: usize,
    },
    /// Contender `who` took over after the crash, `after` later.
    FailedOver {
        /// The new holder.
        who: usize,
        /// Crash to acquisition.
        after: Duration,
    },
    /// An acquisition overlapped another holder.
    Overlap {
        /// The new holder.
        who: usize,
        /// The one that still believed it held the lock.
        other: usize,
    },
    /// A token did not increase.
    TokenNotIncreasing {
        /// The new holder.
        who: usize,
    },
}

impl Board {
    /// An empty board; `started` is the demo's time zero.
    pub fn new(started: Instant) -> Board {
        Board {
            started,
            holder: None,
            token: None,
            last_holder: None,
            last_token: None,
            last_release: None,
            crash: None,
            acquisitions: 0,
            handovers: 0,
            handover_latency: Samples::new(),
            failover: None,
            crashed: None,
            overlaps: 0,
            tokens_strictly_increasing: true,
            fenced_writes: 0,
            fenced_rejected: 0,
        }
    }

    /// Time since the start.
    pub fn elapsed(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }

    /// Contender `who` returned from `lock()` with `token` at `at`.
    pub fn acquired(&mut self, who: usize, token: Hlc, at: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        if let Some(other) = self.holder {
            self.overlaps += 1;
            events.push(Event::Overlap { who, other });
        }
        if let Some(previous) = &self.last_token {
            if token <= *previous {
                self.tokens_strictly_increasing = false;
                events.push(Event::TokenNotIncreasing { who });
            }
        }
        self.acquisitions += 1;
        if self.last_holder.is_some_and(|p| p != who) {
            self.handovers += 1;
        }
        if let Some((released_by, released_at)) = self.last_release.take() {
            if released_by != who {
                self.handover_latency
                    .push(at.saturating_duration_since(released_at));
            }
        }
        if let Some((crashed, crashed_at)) = self.crash {
            if self.failover.is_none() && crashed != who {
                let after = at.saturating_duration_since(crashed_at);
                self.failover = Some(after);
                events.push(Event::FailedOver { who, after });
            }
        }
        self.holder = Some(who);
        self.last_holder = Some(who);
        self.token = Some(token.clone());
        self.last_token = Some(token);
        events
    }

    /// Contender `who` is about to unlock (it stops acting as the holder now).
    pub fn releasing(&mut self, who: usize, at: Instant) {
        if self.holder == Some(who) {
            self.holder = None;
            self.token = None;
        }
        self.last_release = Some((who, at));
    }

    /// Contender `who` dies while holding (its connection is cut, nothing is released).
    pub fn crashing(&mut self, who: usize, at: Instant) -> Vec<Event> {
        if let (Some(token), true) = (&self.token, self.holder == Some(who)) {
            self.crashed = Some((who, token.clone()));
        }
        if self.holder == Some(who) {
            self.holder = None;
            self.token = None;
        }
        self.last_release = None;
        self.crash = Some((who, at));
        vec![Event::Crashed { who }]
    }

    /// The token of the latest acquisition.
    pub fn last_token(&self) -> Option<&Hlc> {
        self.last_token.as_ref()
    }

    /// Whether the demo holds no violation.
    pub fn passed(&self) -> bool {
        self.overlaps == 0 && self.tokens_strictly_increasing && self.fenced_rejected == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(counter: u64) -> Hlc {
        Hlc::new(1_700_000_000_000, counter, "n").expect("valid hlc")
    }

    #[test]
    fn clean_handovers_and_a_failover() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut b = Board::new(t0);
        assert!(b.acquired(0, token(1), ms(0)).is_empty());
        b.releasing(0, ms(10));
        assert!(b.acquired(1, token(2), ms(12)).is_empty());
        assert_eq!(b.crashing(1, ms(20)), vec![Event::Crashed { who: 1 }]);
        assert_eq!(b.crashed, Some((1, token(2))));
        let events = b.acquired(2, token(3), ms(1020));
        assert_eq!(
            events,
            vec![Event::FailedOver {
                who: 2,
                after: Duration::from_millis(1000)
            }]
        );
        assert_eq!(b.handovers, 2);
        assert_eq!(b.handover_latency.percentile_ms(0.5), Some(2.0));
        assert_eq!(b.failover, Some(Duration::from_millis(1000)));
        assert!(b.passed());
    }

    #[test]
    fn overlap_and_stale_token_are_caught() {
        let t0 = Instant::now();
        let mut b = Board::new(t0);
        b.acquired(0, token(5), t0);
        let events = b.acquired(1, token(5), t0);
        assert!(events.contains(&Event::Overlap { who: 1, other: 0 }));
        assert!(events.contains(&Event::TokenNotIncreasing { who: 1 }));
        assert_eq!(b.overlaps, 1);
        assert!(!b.tokens_strictly_increasing);
        assert!(!b.passed());
    }

    #[test]
    fn reacquiring_by_the_same_contender_is_not_a_handover() {
        let t0 = Instant::now();
        let mut b = Board::new(t0);
        b.acquired(0, token(1), t0);
        b.releasing(0, t0);
        b.acquired(0, token(2), t0);
        assert_eq!(b.handovers, 0);
        assert!(b.handover_latency.is_empty());
    }
}
