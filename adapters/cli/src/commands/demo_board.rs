//! The demo's scoreboard: every contender reports what it believes (acquired, renewed,
//! releasing, crashed) and the board checks the invariants from those beliefs, in one process
//! with one monotonic clock. It also keeps each contender's state for the live view and every
//! mark for the timeline picture.

use std::time::{Duration, Instant};

use leasedlock_tokio::Hlc;

use crate::commands::demo_timeline::{Mark, MarkKind, Timeline};
use crate::stats::Samples;

/// What a contender is doing, as the live view shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting in `lock()`.
    Waiting,
    /// Holding the lock.
    Holding,
    /// Released, resting before it waits again.
    Resting,
    /// Killed while holding.
    Killed,
    /// Stopped at the end of the run.
    Done,
}

impl Phase {
    /// The word the live view shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Waiting => "waiting",
            Phase::Holding => "holding",
            Phase::Resting => "resting",
            Phase::Killed => "KILLED",
            Phase::Done => "done",
        }
    }
}

/// One contender's state.
#[derive(Debug, Clone)]
pub struct Contender {
    /// What it is doing.
    pub phase: Phase,
    /// Its token while holding (and, once killed, the token it died with).
    pub token: Option<Hlc>,
    /// Until when it may act as the holder (kept after a kill: the lease runs out on the store).
    pub safe_until: Option<Instant>,
}

/// How a token is shown: milliseconds and counter identify it; the node id would only widen
/// every line it appears on.
pub fn short_token(token: &Hlc) -> String {
    format!("{}:{}", token.millis, token.counter)
}

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
    /// Every contender's state, by index.
    pub contenders: Vec<Contender>,
    /// What happened when, for the timeline.
    marks: Vec<Mark>,
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
    /// An empty board for `clients` contenders, all waiting; `started` is the demo's time zero.
    pub fn new(started: Instant, clients: usize) -> Board {
        let waiting = Contender {
            phase: Phase::Waiting,
            token: None,
            safe_until: None,
        };
        Board {
            contenders: vec![waiting; clients],
            marks: Vec::new(),
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

    /// Contender `who` returned from `lock()` with `token` at `at`, safe until `safe_until`.
    pub fn acquired(
        &mut self,
        who: usize,
        token: Hlc,
        safe_until: Option<Instant>,
        at: Instant,
    ) -> Vec<Event> {
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
        self.mark(
            who,
            at,
            MarkKind::Acquired {
                token: short_token(&token),
                safe_until: safe_until.map(|s| self.elapsed(s)),
            },
        );
        if let Some(c) = self.contenders.get_mut(who) {
            *c = Contender {
                phase: Phase::Holding,
                token: Some(token.clone()),
                safe_until,
            };
        }
        self.holder = Some(who);
        self.last_holder = Some(who);
        self.token = Some(token.clone());
        self.last_token = Some(token);
        events
    }

    /// A renewal of `who`'s hold moved its safe end to `safe_until`.
    pub fn renewed(&mut self, who: usize, safe_until: Instant, at: Instant) {
        if let Some(c) = self.contenders.get_mut(who) {
            c.safe_until = Some(safe_until);
        }
        self.mark(who, at, MarkKind::Renewed);
    }

    /// Contender `who` starts waiting in `lock()`.
    pub fn waiting(&mut self, who: usize) {
        self.set_phase(who, Phase::Waiting);
    }

    /// Contender `who` stopped at the end of the run.
    pub fn done(&mut self, who: usize) {
        self.set_phase(who, Phase::Done);
    }

    /// The store refused a write of `who` as stale at `at`: a holder's own write
    /// (`stale_probe` false: a violation) or the probe with the killed holder's token.
    pub fn write_refused(&mut self, who: usize, stale_probe: bool, at: Instant) {
        if !stale_probe {
            self.fenced_rejected += 1;
        }
        self.mark(who, at, MarkKind::WriteRefused { stale_probe });
    }

    /// Contender `who` is about to unlock (it stops acting as the holder now).
    pub fn releasing(&mut self, who: usize, at: Instant) {
        self.mark(who, at, MarkKind::Released);
        self.set_phase(who, Phase::Resting);
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
        let could_act_until = self
            .contenders
            .get(who)
            .and_then(|c| c.safe_until)
            .map(|s| self.elapsed(s));
        self.mark(who, at, MarkKind::Killed { could_act_until });
        self.set_phase(who, Phase::Killed);
        if self.holder == Some(who) {
            self.holder = None;
            self.token = None;
        }
        self.last_release = None;
        self.crash = Some((who, at));
        vec![Event::Crashed { who }]
    }

    /// The picture of the run so far, with `title` and the contenders named by `name`.
    pub fn timeline(
        &self,
        title: String,
        name: impl Fn(usize) -> String,
        now: Instant,
    ) -> Timeline {
        Timeline {
            title,
            lanes: (0..self.contenders.len()).map(name).collect(),
            end: self.elapsed(now),
            marks: self.marks.clone(),
        }
    }

    fn mark(&mut self, who: usize, at: Instant, kind: MarkKind) {
        let at = self.elapsed(at);
        self.marks.push(Mark { at, who, kind });
    }

    fn set_phase(&mut self, who: usize, phase: Phase) {
        if let Some(c) = self.contenders.get_mut(who) {
            c.phase = phase;
            if phase != Phase::Killed {
                c.token = None;
                c.safe_until = None;
            }
        }
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
        let mut b = Board::new(t0, 3);
        assert!(b.acquired(0, token(1), None, ms(0)).is_empty());
        b.releasing(0, ms(10));
        assert!(b.acquired(1, token(2), None, ms(12)).is_empty());
        assert_eq!(b.crashing(1, ms(20)), vec![Event::Crashed { who: 1 }]);
        assert_eq!(b.crashed, Some((1, token(2))));
        let events = b.acquired(2, token(3), None, ms(1020));
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
        let mut b = Board::new(t0, 3);
        b.acquired(0, token(5), None, t0);
        let events = b.acquired(1, token(5), None, t0);
        assert!(events.contains(&Event::Overlap { who: 1, other: 0 }));
        assert!(events.contains(&Event::TokenNotIncreasing { who: 1 }));
        assert_eq!(b.overlaps, 1);
        assert!(!b.tokens_strictly_increasing);
        assert!(!b.passed());
    }

    #[test]
    fn reacquiring_by_the_same_contender_is_not_a_handover() {
        let t0 = Instant::now();
        let mut b = Board::new(t0, 3);
        b.acquired(0, token(1), None, t0);
        b.releasing(0, t0);
        b.acquired(0, token(2), None, t0);
        assert_eq!(b.handovers, 0);
        assert!(b.handover_latency.is_empty());
    }

    #[test]
    fn contenders_states_and_the_timeline_follow_the_run() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut b = Board::new(t0, 2);
        assert!(b.contenders.iter().all(|c| c.phase == Phase::Waiting));
        b.acquired(0, token(1), Some(ms(950)), ms(0));
        assert_eq!(b.contenders[0].phase, Phase::Holding);
        assert_eq!(b.contenders[0].token, Some(token(1)));
        b.renewed(0, ms(1_300), ms(350));
        assert_eq!(b.contenders[0].safe_until, Some(ms(1_300)));
        b.crashing(0, ms(400));
        // Killed keeps its token and safe end: the lease still runs out on the store.
        assert_eq!(b.contenders[0].phase, Phase::Killed);
        assert_eq!(b.contenders[0].safe_until, Some(ms(1_300)));
        b.acquired(1, token(2), Some(ms(2_350)), ms(1_400));
        b.write_refused(1, false, ms(1_500));
        b.write_refused(0, true, ms(1_600));
        assert_eq!(b.fenced_rejected, 1, "the probe is not a holder's write");
        b.releasing(1, ms(1_700));
        assert_eq!(b.contenders[1].phase, Phase::Resting);
        assert_eq!(b.contenders[1].token, None);
        b.done(1);
        assert_eq!(b.contenders[1].phase, Phase::Done);

        let timeline = b.timeline("t".into(), |i| format!("c{i}"), ms(2_000));
        assert_eq!(timeline.lanes, vec!["c0".to_string(), "c1".to_string()]);
        assert_eq!(timeline.end, Duration::from_millis(2_000));
        let kinds: Vec<(u64, usize, MarkKind)> = timeline
            .marks
            .iter()
            .map(|m| (m.at.as_millis() as u64, m.who, m.kind.clone()))
            .collect();
        let d = Duration::from_millis;
        assert_eq!(
            kinds,
            vec![
                (
                    0,
                    0,
                    MarkKind::Acquired {
                        token: "1700000000000:1".into(),
                        safe_until: Some(d(950))
                    }
                ),
                (350, 0, MarkKind::Renewed),
                (
                    400,
                    0,
                    MarkKind::Killed {
                        could_act_until: Some(d(1_300))
                    }
                ),
                (
                    1_400,
                    1,
                    MarkKind::Acquired {
                        token: "1700000000000:2".into(),
                        safe_until: Some(d(2_350))
                    }
                ),
                (1_500, 1, MarkKind::WriteRefused { stale_probe: false }),
                (1_600, 0, MarkKind::WriteRefused { stale_probe: true }),
                (1_700, 1, MarkKind::Released),
            ]
        );
    }
}
