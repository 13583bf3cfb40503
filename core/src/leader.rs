//! The leader-election machine (sans-IO), built on [`Lock`] with auto-renew and a kept
//! observation.
//!
//! `campaign` waits for the lease (with the lock's herd control, reconnect re-checks and
//! fallback timer) and reports [`LeaderEvent::Elected`]; renewals keep it. A loss reports
//! [`LeaderEvent::Deposed`] and, unless configured otherwise, campaigns again. Every holder
//! change seen is reported as [`LeaderEvent::LeaderIs`]. `resign` while leading is "drain, then
//! release": [`LeaderEvent::Draining`] goes out (the lease is still renewed, so the token stays
//! valid), the application stops its leader work and calls [`Leader::drained`], then the lease
//! is released and [`LeaderEvent::Deposed`] `{ Resigned }` and [`LeaderEvent::Stopped`] follow.
//!
//! Event order: `Deposed` only after `Elected`, at most once per `Elected`; no `Renewed`
//! outside a term; `Stopped` ends the campaign.

use alloc::collections::VecDeque;
use bytes::Bytes;
use core::fmt;
use core::time::Duration;

use crate::client::{Completion, Notification, Requester};
use crate::hlc::Hlc;
use crate::lease::{ConfigRule, LeaseError, LeaseOptions, LostReason};
use crate::lock::{Lock, LockError, LockEvent, LockOptions};
use crate::time::{Instant, Now};

/// Options of [`Leader::campaign`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderOptions {
    /// Lock options; `lock.lease.renew` is required. `wait_timeout` bounds each candidacy
    /// (`None`: campaign until elected or resigned); `watch_holder` is always on.
    pub lock: LockOptions,
    /// Campaign again after losing the lease (default true).
    pub recampaign: bool,
}

impl Default for LeaderOptions {
    fn default() -> Self {
        LeaderOptions {
            lock: LockOptions::default(),
            recampaign: true,
        }
    }
}

/// Why a leader stopped being leader.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeposedReason {
    /// The lease was lost.
    Lost(LostReason),
    /// We resigned (after draining).
    Resigned,
}

/// Errors of the leader machine.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaderError {
    /// `campaign` while campaigning or leading.
    Busy,
    /// `resign` or `drained` with nothing to do.
    NotCampaigning,
    /// The options break a configuration rule.
    InvalidConfig(ConfigRule),
    /// The lock failed in a way retrying will not fix.
    Lock(LockError),
}

impl fmt::Display for LeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeaderError::Busy => f.write_str("already campaigning"),
            LeaderError::NotCampaigning => f.write_str("not campaigning"),
            LeaderError::InvalidConfig(rule) => write!(f, "invalid leader configuration: {rule}"),
            LeaderError::Lock(e) => write!(f, "{e}"),
        }
    }
}

/// What the leader machine reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaderEvent {
    /// We are the leader.
    Elected {
        /// Fencing token.
        token: Hlc,
        /// Until when acting as leader is safe.
        safe_until: Instant,
    },
    /// The term was extended.
    Renewed {
        /// The new fencing token.
        token: Hlc,
        /// The new safe-until.
        safe_until: Instant,
    },
    /// We are no longer the leader.
    Deposed {
        /// Why.
        reason: DeposedReason,
    },
    /// The leader seen in the store (`None`: nobody); repeated values are not reported twice.
    LeaderIs {
        /// The holder value.
        holder: Option<Bytes>,
    },
    /// `resign` while leading: stop leader work, then call [`Leader::drained`].
    Draining,
    /// The campaign ended (resigned, lost without recampaign, or failed).
    Stopped {
        /// Why, if it failed.
        error: Option<LeaderError>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Campaigning,
    Leading,
    Draining,
    Releasing,
}

/// The leader-election machine. See the module documentation.
#[derive(Debug, Clone)]
pub struct Leader {
    lock: Lock,
    phase: Phase,
    options: LeaderOptions,
    duration: Duration,
    elected: bool,
    resigning: bool,
    last_leader: Option<Option<Bytes>>,
    events: VecDeque<LeaderEvent>,
}

impl Leader {
    /// An election on the lease `name`; `seed` drives the herd-control jitter.
    pub fn new(name: Bytes, seed: u64) -> Result<Leader, LeaderError> {
        Ok(Leader {
            lock: Lock::new(name, seed).map_err(LeaderError::Lock)?,
            phase: Phase::Idle,
            options: LeaderOptions::default(),
            duration: Duration::ZERO,
            elected: false,
            resigning: false,
            last_leader: None,
            events: VecDeque::new(),
        })
    }

    /// Whether we lead at `now`.
    pub fn is_leader(&self, now: Instant) -> bool {
        self.elected && self.lock.is_held(now)
    }

    /// The fencing token of the current term, or why there is none.
    pub fn token(&self, now: Instant) -> Result<Hlc, LeaseError> {
        self.lock.token(now)
    }

    /// Starts campaigning for a lease of `duration`.
    pub fn campaign<R: Requester + ?Sized>(
        &mut self,
        duration: Duration,
        options: &LeaderOptions,
        r: &mut R,
        now: Now,
    ) -> Result<(), LeaderError> {
        if self.phase != Phase::Idle {
            return Err(LeaderError::Busy);
        }
        if options.lock.lease.renew.is_none() {
            return Err(LeaderError::InvalidConfig(
                ConfigRule::RenewIntervalRequired,
            ));
        }
        let mut options = options.clone();
        options.lock.watch_holder = true;
        self.lock
            .lock(duration, &options.lock, r, now)
            .map_err(|e| match e {
                LockError::Lease(LeaseError::InvalidConfig(rule)) => {
                    LeaderError::InvalidConfig(rule)
                }
                other => LeaderError::Lock(other),
            })?;
        self.options = options;
        self.duration = duration;
        self.resigning = false;
        self.phase = Phase::Campaigning;
        self.pump(r, now);
        Ok(())
    }

    /// Resigns. While campaigning the wait is cancelled; while leading this starts draining
    /// ([`LeaderEvent::Draining`]); call [`Leader::drained`] when leader work has stopped.
    pub fn resign<R: Requester + ?Sized>(
        &mut self,
        r: &mut R,
        now: Now,
    ) -> Result<(), LeaderError> {
        match self.phase {
            Phase::Campaigning => {
                self.resigning = true;
                self.lock.cancel(r, now);
            }
            Phase::Leading => {
                self.phase = Phase::Draining;
                self.events.push_back(LeaderEvent::Draining);
            }
            Phase::Draining | Phase::Releasing => return Err(LeaderError::Busy),
            Phase::Idle => return Err(LeaderError::NotCampaigning),
        }
        self.pump(r, now);
        Ok(())
    }

    /// The application has stopped its leader work: release the lease.
    pub fn drained<R: Requester + ?Sized>(
        &mut self,
        r: &mut R,
        now: Now,
    ) -> Result<(), LeaderError> {
        if self.phase != Phase::Draining {
            return Err(LeaderError::NotCampaigning);
        }
        let options = self.options.lock.lease.clone();
        match self.lock.unlock(&options, r, now) {
            Ok(()) => self.phase = Phase::Releasing,
            Err(e) => self.stop(Some(LeaderError::Lock(e)), r, now),
        }
        self.pump(r, now);
        Ok(())
    }

    /// Number of requests whose completion this machine still awaits.
    pub fn outstanding(&self) -> usize {
        self.lock.outstanding()
    }

    /// The next event, or `None` when drained.
    pub fn poll_event(&mut self) -> Option<LeaderEvent> {
        self.events.pop_front()
    }

    /// The earliest instant at which [`Leader::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.lock.poll_timeout()
    }

    /// Time passed.
    pub fn handle_timeout<R: Requester + ?Sized>(&mut self, r: &mut R, now: Now) {
        self.lock.handle_timeout(r, now);
        self.pump(r, now);
    }

    /// A completion; returns whether it was ours.
    pub fn handle_completion<R: Requester + ?Sized>(
        &mut self,
        c: &Completion,
        r: &mut R,
        now: Now,
    ) -> bool {
        let mine = self.lock.handle_completion(c, r, now);
        self.pump(r, now);
        mine
    }

    /// A key notification; returns whether it was for this election.
    pub fn handle_notification<R: Requester + ?Sized>(
        &mut self,
        n: &Notification,
        r: &mut R,
        now: Now,
    ) -> bool {
        let mine = self.lock.handle_notification(n, r, now);
        self.pump(r, now);
        mine
    }

    /// The connection is up again.
    pub fn handle_connected<R: Requester + ?Sized>(&mut self, r: &mut R, now: Now) {
        self.lock.handle_connected(r, now);
        self.pump(r, now);
    }

    /// The connection dropped (see [`crate::lease::Lease::handle_disconnected`]).
    pub fn handle_disconnected(&mut self, now: Now) {
        self.lock.handle_disconnected(now);
    }

    /// The client re-registered `key` after a reconnect; returns whether it was ours.
    pub fn handle_reregistered<R: Requester + ?Sized>(
        &mut self,
        key: &[u8],
        ok: bool,
        r: &mut R,
        now: Now,
    ) -> bool {
        let mine = self.lock.handle_reregistered(key, ok, r, now);
        self.pump(r, now);
        mine
    }

    fn stop<R: Requester + ?Sized>(&mut self, error: Option<LeaderError>, r: &mut R, now: Now) {
        self.phase = Phase::Idle;
        self.lock
            .stop_watching(self.options.lock.unobserve_timeout, r, now);
        self.events.push_back(LeaderEvent::Stopped { error });
    }

    fn depose(&mut self, reason: DeposedReason) {
        if self.elected {
            self.elected = false;
            self.events.push_back(LeaderEvent::Deposed { reason });
        }
    }

    fn pump<R: Requester + ?Sized>(&mut self, r: &mut R, now: Now) {
        while let Some(ev) = self.lock.poll_event() {
            match ev {
                LockEvent::Locked { token, safe_until } => {
                    self.phase = Phase::Leading;
                    self.elected = true;
                    self.events
                        .push_back(LeaderEvent::Elected { token, safe_until });
                }
                LockEvent::Renewed { token, safe_until } if self.elected => {
                    self.events
                        .push_back(LeaderEvent::Renewed { token, safe_until });
                }
                LockEvent::Lost { reason } => {
                    self.depose(DeposedReason::Lost(reason));
                    if self.phase == Phase::Leading {
                        if self.options.recampaign {
                            let options = self.options.lock.clone();
                            match self.lock.lock(self.duration, &options, r, now) {
                                Ok(()) => self.phase = Phase::Campaigning,
                                Err(e) => self.stop(Some(LeaderError::Lock(e)), r, now),
                            }
                        } else {
                            self.stop(None, r, now);
                        }
                    }
                    // While draining, the application still calls `drained`; the release then
                    // cleans up whatever may remain.
                }
                LockEvent::LockFailed { error } if self.phase == Phase::Campaigning => {
                    let error = if self.resigning {
                        None
                    } else {
                        Some(LeaderError::Lock(error))
                    };
                    self.stop(error, r, now);
                }
                LockEvent::Unlocked { .. } if self.phase == Phase::Releasing => {
                    self.depose(DeposedReason::Resigned);
                    self.stop(None, r, now);
                }
                LockEvent::HolderChanged { holder }
                    if self.last_leader.as_ref() != Some(&holder) =>
                {
                    self.last_leader = Some(holder.clone());
                    self.events.push_back(LeaderEvent::LeaderIs { holder });
                }
                _ => {}
            }
        }
    }
}

/// The lease options of a leader whose renew interval is a third of `duration` and whose
/// per-request timeout is a quarter of it (a client-go-like split that passes validation
/// with the default margin).
pub fn suggested_lease_options(duration: Duration) -> LeaseOptions {
    LeaseOptions {
        timeout: Some(duration / 4),
        renew: Some(duration / 3),
        session_id: None,
        margin: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::RequestError;
    use crate::command::{RequestKind, Response, VdelOutcome};
    use crate::testkit::*;
    use alloc::vec::Vec;

    const NAME: &[u8] = b"leader";
    const DUR: Duration = Duration::from_millis(1000);

    fn opts(recampaign: bool) -> LeaderOptions {
        LeaderOptions {
            lock: LockOptions {
                lease: LeaseOptions {
                    timeout: Some(Duration::from_millis(300)),
                    renew: Some(Duration::from_millis(200)),
                    margin: Some(Duration::from_millis(100)),
                    ..LeaseOptions::default()
                },
                max_jitter: Some(Duration::from_millis(10)),
                ..LockOptions::default()
            },
            recampaign,
        }
    }

    fn answer(
        l: &mut Leader,
        r: &mut FakeRequester,
        s: &Sent,
        res: Result<Response, RequestError>,
        v: Option<Hlc>,
        t: u64,
    ) {
        let c = r.answer(s.id, res, v);
        assert!(l.handle_completion(&c, r, at(t)));
    }

    fn drain(l: &mut Leader) -> Vec<LeaderEvent> {
        core::iter::from_fn(|| l.poll_event()).collect()
    }

    fn elected(recampaign: bool) -> (Leader, FakeRequester) {
        let mut l = Leader::new(Bytes::from_static(NAME), 3).unwrap();
        let mut r = FakeRequester::new("c1");
        l.campaign(DUR, &opts(recampaign), &mut r, at(0)).unwrap();
        let reg = r.last();
        answer(&mut l, &mut r, &reg, Ok(Response::KeyNotify), None, 1);
        let set = r.last();
        answer(&mut l, &mut r, &set, ok_set(), Some(tok(1)), 2);
        assert_eq!(
            drain(&mut l),
            [LeaderEvent::Elected {
                token: tok(1),
                safe_until: Instant::from_millis(901)
            }]
        );
        (l, r)
    }

    #[test]
    fn renew_interval_is_required() {
        let mut l = Leader::new(Bytes::from_static(NAME), 3).unwrap();
        let mut r = FakeRequester::new("c1");
        let mut o = opts(true);
        o.lock.lease.renew = None;
        assert_eq!(
            l.campaign(DUR, &o, &mut r, at(0)),
            Err(LeaderError::InvalidConfig(
                ConfigRule::RenewIntervalRequired
            ))
        );
        assert!(r.log.is_empty());
    }

    #[test]
    fn elected_leader_keeps_observing_and_renews() {
        let (mut l, mut r) = elected(true);
        // The observation is kept while leading (no STOP).
        assert_eq!(r.count(RequestKind::KeyNotifyStop), 0);
        assert!(l.is_leader(Instant::from_millis(10)));
        l.handle_timeout(&mut r, at(201));
        let renew = r.last();
        answer(&mut l, &mut r, &renew, ok_set(), Some(tok(2)), 210);
        assert_eq!(
            drain(&mut l),
            [LeaderEvent::Renewed {
                token: tok(2),
                safe_until: Instant::from_millis(1101)
            }]
        );
    }

    #[test]
    fn candidate_learns_the_leader_and_dedups() {
        let mut l = Leader::new(Bytes::from_static(NAME), 3).unwrap();
        let mut r = FakeRequester::new("c1");
        l.campaign(DUR, &opts(true), &mut r, at(0)).unwrap();
        let reg = r.last();
        answer(&mut l, &mut r, &reg, Ok(Response::KeyNotify), None, 1);
        let set = r.last();
        answer(&mut l, &mut r, &set, refused_set(), Some(tok(1)), 2);
        let g = r.last();
        assert_eq!(g.kind, RequestKind::Get);
        answer(&mut l, &mut r, &g, get(Some(b"c2")), Some(tok(1)), 3);
        l.handle_notification(&note_set(NAME, b"c2", tok(2)), &mut r, at(4));
        assert_eq!(
            drain(&mut l),
            [LeaderEvent::LeaderIs {
                holder: Some(Bytes::from_static(b"c2"))
            }]
        );
        // Resigning a candidate stops without Deposed (never elected).
        l.resign(&mut r, at(5)).unwrap();
        assert_eq!(drain(&mut l), [LeaderEvent::Stopped { error: None }]);
        assert_eq!(r.last().kind, RequestKind::KeyNotifyStop);
    }

    #[test]
    fn loss_deposes_then_campaigns_again() {
        let (mut l, mut r) = elected(true);
        l.handle_timeout(&mut r, at(201));
        let renew = r.last();
        answer(&mut l, &mut r, &renew, refused_set(), Some(tok(3)), 210);
        assert_eq!(
            drain(&mut l),
            [LeaderEvent::Deposed {
                reason: DeposedReason::Lost(LostReason::Taken)
            }]
        );
        // Back to candidacy: observing already, so it attempts at once.
        assert_eq!(r.last().kind, RequestKind::Set);
        assert_eq!(r.count(RequestKind::Set), 3);
    }

    #[test]
    fn loss_without_recampaign_stops() {
        let (mut l, mut r) = elected(false);
        l.handle_timeout(&mut r, at(901));
        assert_eq!(
            drain(&mut l),
            [
                LeaderEvent::Deposed {
                    reason: DeposedReason::Lost(LostReason::Expired)
                },
                LeaderEvent::Stopped { error: None }
            ]
        );
        assert_eq!(r.last().kind, RequestKind::KeyNotifyStop);
    }

    #[test]
    fn resign_drains_then_releases() {
        let (mut l, mut r) = elected(true);
        l.resign(&mut r, at(50)).unwrap();
        assert_eq!(drain(&mut l), [LeaderEvent::Draining]);
        // Still leader and still renewing while draining.
        assert!(l.is_leader(Instant::from_millis(60)));
        assert_eq!(r.count(RequestKind::Vdel), 0);
        l.drained(&mut r, at(100)).unwrap();
        let v = r.last();
        assert_eq!(v.kind, RequestKind::Vdel);
        answer(&mut l, &mut r, &v, vdel(VdelOutcome::Deleted), None, 101);
        assert_eq!(
            drain(&mut l),
            [
                LeaderEvent::Deposed {
                    reason: DeposedReason::Resigned
                },
                LeaderEvent::Stopped { error: None }
            ]
        );
        assert_eq!(r.last().kind, RequestKind::KeyNotifyStop);
        for t in (200..3000).step_by(100) {
            l.handle_timeout(&mut r, at(t));
        }
        assert_eq!(r.count(RequestKind::Set), 1);
        assert!(drain(&mut l).is_empty());
    }

    #[test]
    fn loss_while_draining_deposes_once() {
        let (mut l, mut r) = elected(true);
        l.resign(&mut r, at(50)).unwrap();
        l.handle_timeout(&mut r, at(1000));
        l.drained(&mut r, at(1001)).unwrap();
        let v = r.last_of(RequestKind::Vdel);
        answer(&mut l, &mut r, &v, vdel(VdelOutcome::NotFound), None, 1002);
        let events = drain(&mut l);
        let deposed = events
            .iter()
            .filter(|e| matches!(e, LeaderEvent::Deposed { .. }))
            .count();
        assert_eq!(deposed, 1);
        assert_eq!(events.last(), Some(&LeaderEvent::Stopped { error: None }));
    }

    #[test]
    fn suggested_options_validate() {
        for secs in [1, 10, 60] {
            let d = Duration::from_secs(secs);
            assert!(crate::lease::validate(d, &suggested_lease_options(d)).is_ok());
        }
    }
}
