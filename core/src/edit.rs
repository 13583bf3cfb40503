//! The edit machine (sans-IO): change one key under a lock.
//!
//! lock → `GET key` → [`EditEvent::Requested`] (the current value goes out) → the user answers
//! with [`Edit::decide`] (set, delete or abort) → fenced `SET`/`DEL` with `__ft` = the lock's
//! token → unlock, always → [`EditEvent::Done`]. Deleting a key that is absent (`DEL` → 0) is
//! success: the official Go and .NET helpers loop forever there (docs/protocol.md §12).
//!
//! A write whose outcome is unknown (timed out after sending, connection lost) may still be
//! applied later, until the broker drops it: its deadline plus its Message Expiry (rounded up
//! to whole seconds), or that expiry counted from a reconnect that may publish it again. Were
//! the lock released before then, the next holder could read the key, the late write land
//! (its token is accepted: no higher one is stored yet), and the next holder's write be based
//! on a value that is no longer there. So the edit keeps the lock until the write can no
//! longer land: its own renewals when it auto-renews, else one re-acquire long enough to
//! cover that bound (retried while it fails for a transient reason). Only then does it unlock
//! and report [`EditError::OutcomeUnknown`]. If the lock is lost meanwhile nothing can keep
//! the write out any more, and the edit reports at once.

use alloc::collections::VecDeque;
use bytes::Bytes;
use core::fmt;
use core::time::Duration;

use crate::client::{Completion, Notification, RequestError, RequestId, RequestOptions, Requester};
use crate::command::{Request, Response, SetCondition, SetOutcome};
use crate::hlc::Hlc;
use crate::lease::exposure::Exposure;
use crate::lease::{classify, default_margin, LeaseOptions, LostReason};
use crate::lock::{Lock, LockError, LockEvent, LockOptions};
use crate::time::{Instant, Now};

/// The user's answer to [`EditEvent::Requested`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EditDecision {
    /// Store this value.
    Set(Bytes),
    /// Delete the key.
    Delete,
    /// Change nothing.
    Abort,
}

/// What a finished edit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EditOutcome {
    /// The new value was stored.
    Set,
    /// The key is gone; `existed` tells whether there was one to delete.
    Deleted {
        /// Whether DEL removed a key (1) or found none (0).
        existed: bool,
    },
    /// The user aborted; nothing was written.
    Aborted,
}

/// Errors of the edit machine.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EditError {
    /// An edit is already in progress.
    Busy,
    /// `decide` while no decision is awaited.
    NotDeciding,
    /// The key is empty.
    EmptyKey,
    /// The lock could not be taken.
    Lock(LockError),
    /// The lock was lost before the write was sent.
    Lost(LostReason),
    /// A GET or the write failed (a fencing rejection arrives as a service error).
    Request(RequestError),
    /// The store sent a reply this command cannot have.
    UnexpectedReply,
    /// The edit was cancelled before the write.
    Cancelled,
    /// The write failed with `error` in a way that leaves its outcome unknown: it may or may
    /// not have been applied.
    OutcomeUnknown {
        /// How the write failed.
        error: RequestError,
        /// `false`: the edit kept the lock until the write could no longer land, so nothing
        /// of it can happen any more. `true`: the lock was lost first, and the write may still
        /// land after another holder has read the key.
        may_still_land: bool,
    },
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EditError::Busy => f.write_str("an edit is already in progress"),
            EditError::NotDeciding => f.write_str("no edit decision is awaited"),
            EditError::EmptyKey => f.write_str("the key must not be empty"),
            EditError::Lock(e) => write!(f, "{e}"),
            EditError::Lost(reason) => write!(f, "lock lost during the edit: {reason}"),
            EditError::Request(e) => write!(f, "state store request failed: {e:?}"),
            EditError::UnexpectedReply => f.write_str("unexpected reply"),
            EditError::Cancelled => f.write_str("edit cancelled"),
            EditError::OutcomeUnknown {
                error,
                may_still_land,
            } => {
                write!(f, "the write may or may not have been applied: {error:?}")?;
                if *may_still_land {
                    f.write_str(" (and the lock was lost while it could still land)")?;
                }
                Ok(())
            }
        }
    }
}

/// What the edit machine reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EditEvent {
    /// The lock is held and the key read: answer with [`Edit::decide`].
    Requested {
        /// The current value, `None` when the key is absent.
        current: Option<Bytes>,
        /// The lock's fencing token now: that of its latest grant (a renewal replaces the
        /// token of the acquisition). It goes with the lock's current `safe_until`; the write
        /// carries the token current at [`Edit::decide`] (this one, or a later renewal's).
        token: Hlc,
    },
    /// The edit finished and the lock was released (or its release was attempted).
    Done {
        /// What was done, or why not.
        result: Result<EditOutcome, EditError>,
    },
}

#[derive(Debug, Clone)]
enum Phase {
    Idle,
    Locking,
    Reading {
        id: RequestId,
    },
    Deciding,
    Writing {
        id: RequestId,
        delete: bool,
        issued: Instant,
    },
    /// The write's outcome is unknown: the lock is kept until it can no longer land.
    Settling {
        error: RequestError,
        /// When to try extending the lock again after a failed attempt.
        retry_at: Option<Instant>,
        /// An extension is in flight.
        extending: bool,
    },
    Unlocking {
        result: Result<EditOutcome, EditError>,
    },
}

/// The edit machine. See the module documentation.
#[derive(Debug, Clone)]
pub struct Edit {
    lock: Lock,
    key: Bytes,
    timeout: Option<Duration>,
    phase: Phase,
    lease_options: LeaseOptions,
    lost: Option<LostReason>,
    /// The write of this edit: until when it may still land.
    write: Exposure,
    /// When the connection last came back, and whether drops are reported (as the lease).
    last_connect: Instant,
    disconnects_reported: bool,
    events: VecDeque<EditEvent>,
}

impl Edit {
    /// An edit of `key` under the lock `lock_name`; `seed` drives the lock's jitter.
    pub fn new(lock_name: Bytes, key: Bytes, seed: u64) -> Result<Edit, EditError> {
        if key.is_empty() {
            return Err(EditError::EmptyKey);
        }
        Ok(Edit {
            lock: Lock::new(lock_name, seed).map_err(EditError::Lock)?,
            key,
            timeout: None,
            phase: Phase::Idle,
            lease_options: LeaseOptions::default(),
            lost: None,
            write: Exposure::default(),
            last_connect: Instant::ZERO,
            disconnects_reported: false,
            events: VecDeque::new(),
        })
    }

    /// The lock used (token, state...).
    pub fn lock(&self) -> &Lock {
        &self.lock
    }

    /// Whether an edit is in progress.
    pub fn is_active(&self) -> bool {
        !matches!(self.phase, Phase::Idle)
    }

    /// Starts an edit: take the lock for `duration`, then read the key.
    pub fn start<R: Requester + ?Sized>(
        &mut self,
        duration: Duration,
        options: &LockOptions,
        r: &mut R,
        now: Now,
    ) -> Result<(), EditError> {
        if self.is_active() {
            return Err(EditError::Busy);
        }
        self.lock
            .lock(duration, options, r, now)
            .map_err(EditError::Lock)?;
        self.timeout = Some(options.lease.request_timeout());
        self.lease_options = options.lease.clone();
        self.write = Exposure::default();
        self.lost = None;
        self.phase = Phase::Locking;
        self.pump(r, now);
        Ok(())
    }

    /// The user's decision on the value handed out by [`EditEvent::Requested`].
    pub fn decide<R: Requester + ?Sized>(
        &mut self,
        decision: EditDecision,
        r: &mut R,
        now: Now,
    ) -> Result<(), EditError> {
        let Phase::Deciding = &self.phase else {
            return Err(EditError::NotDeciding);
        };
        // The token is only good while the lock is: do not write with an expired one.
        if let Some(reason) = self.lost.clone() {
            self.finish(Err(EditError::Lost(reason)), r, now);
            self.pump(r, now);
            return Ok(());
        }
        let Ok(token) = self.lock.token(now.mono) else {
            self.finish(Err(EditError::Lost(LostReason::Expired)), r, now);
            self.pump(r, now);
            return Ok(());
        };
        let (request, delete) = match decision {
            EditDecision::Abort => {
                self.finish(Ok(EditOutcome::Aborted), r, now);
                self.pump(r, now);
                return Ok(());
            }
            EditDecision::Set(value) => (
                Request::Set {
                    key: self.key.clone(),
                    value,
                    condition: SetCondition::Always,
                    px_ms: None,
                },
                false,
            ),
            EditDecision::Delete => (
                Request::Del {
                    key: self.key.clone(),
                },
                true,
            ),
        };
        let options = RequestOptions {
            timeout: self.timeout,
            fencing_token: Some(token),
            persist: false,
        };
        match r.request(request, options, now) {
            Ok(id) => {
                self.write.sent(now.mono, self.request_timeout());
                self.phase = Phase::Writing {
                    id,
                    delete,
                    issued: now.mono,
                };
            }
            Err(e) => self.finish(Err(EditError::Request(e)), r, now),
        }
        self.pump(r, now);
        Ok(())
    }

    /// Cancels the edit unless its write is already in flight. Returns whether it did.
    pub fn cancel<R: Requester + ?Sized>(&mut self, r: &mut R, now: Now) -> bool {
        let cancelled = match self.phase {
            Phase::Locking => self.lock.cancel(r, now),
            Phase::Reading { .. } | Phase::Deciding => {
                self.finish(Err(EditError::Cancelled), r, now);
                true
            }
            _ => false,
        };
        self.pump(r, now);
        cancelled
    }

    fn request_timeout(&self) -> Duration {
        self.timeout
            .unwrap_or(crate::lease::DEFAULT_REQUEST_TIMEOUT)
    }

    /// Number of requests whose completion this machine still awaits.
    pub fn outstanding(&self) -> usize {
        self.lock.outstanding()
            + usize::from(matches!(
                self.phase,
                Phase::Reading { .. } | Phase::Writing { .. }
            ))
    }

    /// The next event, or `None` when drained.
    pub fn poll_event(&mut self) -> Option<EditEvent> {
        self.events.pop_front()
    }

    /// The earliest instant at which [`Edit::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let lock = self.lock.poll_timeout();
        let Phase::Settling { retry_at, .. } = &self.phase else {
            return lock;
        };
        [lock, Some(self.write.until()), *retry_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Time passed.
    pub fn handle_timeout<R: Requester + ?Sized>(&mut self, r: &mut R, now: Now) {
        self.lock.handle_timeout(r, now);
        self.pump(r, now);
        self.settle(r, now);
    }

    /// While settling: ends the edit once the write can no longer land (or the lock is gone),
    /// else makes sure the lock lasts until then.
    fn settle<R: Requester + ?Sized>(&mut self, r: &mut R, now: Now) {
        let Phase::Settling {
            error,
            retry_at,
            extending,
        } = &self.phase
        else {
            return;
        };
        let (error, retry_at, extending) = (error.clone(), *retry_at, *extending);
        let until = self.write.until();
        if now.mono >= until || !self.lock.is_held(now.mono) {
            let result = Err(EditError::OutcomeUnknown {
                error,
                may_still_land: now.mono < until,
            });
            self.finish(result, r, now);
            self.pump(r, now);
            return;
        }
        let lasts = match self.lock.lease().state(now.mono) {
            crate::lease::LeaseState::Held { safe_until, .. } => safe_until >= until,
            _ => false,
        };
        if lasts
            || extending
            || self.lock.lease().is_renewing()
            || retry_at.is_some_and(|t| now.mono < t)
        {
            return;
        }
        // One re-acquire whose own safety rule covers the bound: `now + duration − margin`.
        let span = until - now.mono;
        let margin = self
            .lease_options
            .margin
            .unwrap_or_else(|| default_margin(span));
        let duration = span + margin + Duration::from_millis(1);
        let options = LeaseOptions {
            margin: Some(margin),
            renew: None,
            ..self.lease_options.clone()
        };
        let started = self.lock.extend(duration, &options, r, now).is_ok();
        if let Phase::Settling {
            retry_at,
            extending,
            ..
        } = &mut self.phase
        {
            *extending = started;
            *retry_at = (!started).then(|| now.mono + EXTEND_RETRY);
        }
        self.pump(r, now);
    }

    /// A completion; returns whether it was ours.
    pub fn handle_completion<R: Requester + ?Sized>(
        &mut self,
        c: &Completion,
        r: &mut R,
        now: Now,
    ) -> bool {
        match self.phase.clone() {
            Phase::Reading { id } if id == c.id => {
                match (&c.result, self.lost.clone()) {
                    (_, Some(reason)) => self.finish(Err(EditError::Lost(reason)), r, now),
                    // The token of the latest grant, not the acquisition's: a renewal may have
                    // replaced it while the GET was out, and the token must go with the
                    // lock's current `safe_until` (that grant's expiry bounds it).
                    (Ok(Response::Get(current)), None) => match self.lock.token(now.mono) {
                        Ok(token) => {
                            self.phase = Phase::Deciding;
                            self.events.push_back(EditEvent::Requested {
                                current: current.clone(),
                                token,
                            });
                        }
                        Err(_) => self.finish(Err(EditError::Lost(LostReason::Expired)), r, now),
                    },
                    (Ok(_), None) => self.finish(Err(EditError::UnexpectedReply), r, now),
                    (Err(e), None) => self.finish(Err(EditError::Request(e.clone())), r, now),
                }
                self.pump(r, now);
                true
            }
            Phase::Writing { id, delete, issued } if id == c.id => {
                let result = match (&c.result, delete) {
                    (Ok(Response::Set(SetOutcome::Applied)), false) => Ok(EditOutcome::Set),
                    // Deleting an absent key is success, not a reason to loop.
                    (Ok(Response::Del(n)), true) => Ok(EditOutcome::Deleted { existed: *n > 0 }),
                    (Ok(_), _) => Err(EditError::UnexpectedReply),
                    (Err(e), _) if classify(e).maybe_applied => {
                        self.write.unknown(issued, self.request_timeout(), now.mono);
                        self.phase = Phase::Settling {
                            error: e.clone(),
                            retry_at: None,
                            extending: false,
                        };
                        self.pump(r, now);
                        self.settle(r, now);
                        return true;
                    }
                    (Err(e), _) => Err(EditError::Request(e.clone())),
                };
                self.finish(result, r, now);
                self.pump(r, now);
                true
            }
            _ => {
                let mine = self.lock.handle_completion(c, r, now);
                self.pump(r, now);
                mine
            }
        }
    }

    /// A key notification; returns whether it was for the lock.
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
        // A write still on its way at the drop may be published again, landing until the
        // reconnect + its expiry.
        let last = core::mem::replace(&mut self.last_connect, now.mono);
        let last = (!self.disconnects_reported).then_some(last);
        self.write.reconnected(last, now.mono);
        self.lock.handle_connected(r, now);
        self.pump(r, now);
        self.settle(r, now);
    }

    /// The connection dropped (see [`crate::lease::Lease::handle_disconnected`]).
    pub fn handle_disconnected(&mut self, now: Now) {
        self.disconnects_reported = true;
        self.write.disconnected(now.mono);
        self.lock.handle_disconnected(now);
    }

    /// The client re-registered `key` after a reconnect; returns whether it was the lock's.
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

    /// Ends the edit: unlock, always, then report.
    fn finish<R: Requester + ?Sized>(
        &mut self,
        result: Result<EditOutcome, EditError>,
        r: &mut R,
        now: Now,
    ) {
        let options = LeaseOptions {
            timeout: self.timeout,
            ..Default::default()
        };
        match self.lock.unlock(&options, r, now) {
            Ok(()) => self.phase = Phase::Unlocking { result },
            Err(_) => {
                self.phase = Phase::Idle;
                self.events.push_back(EditEvent::Done { result });
            }
        }
    }

    fn pump<R: Requester + ?Sized>(&mut self, r: &mut R, now: Now) {
        while let Some(ev) = self.lock.poll_event() {
            match ev {
                LockEvent::Locked { .. } if matches!(self.phase, Phase::Locking) => {
                    let get = Request::Get {
                        key: self.key.clone(),
                    };
                    let options = RequestOptions {
                        timeout: self.timeout,
                        ..RequestOptions::default()
                    };
                    match r.request(get, options, now) {
                        Ok(id) => self.phase = Phase::Reading { id },
                        Err(e) => self.finish(Err(EditError::Request(e)), r, now),
                    }
                }
                LockEvent::LockFailed { error } if matches!(self.phase, Phase::Locking) => {
                    self.phase = Phase::Idle;
                    self.events.push_back(EditEvent::Done {
                        result: Err(EditError::Lock(error)),
                    });
                }
                LockEvent::ExtendFailed { error } => {
                    if let Phase::Settling {
                        retry_at,
                        extending,
                        ..
                    } = &mut self.phase
                    {
                        *extending = false;
                        // A transient failure is retried while the lock lasts; otherwise
                        // the lock runs out and the edit ends then.
                        *retry_at = Some(if error.is_transient() {
                            now.mono + EXTEND_RETRY
                        } else {
                            Instant::MAX
                        });
                    }
                }
                LockEvent::Renewed { .. } => {
                    if let Phase::Settling { extending, .. } = &mut self.phase {
                        *extending = false;
                    }
                }
                LockEvent::Lost { reason } => match self.phase {
                    Phase::Deciding => {
                        self.finish(Err(EditError::Lost(reason)), r, now);
                    }
                    // Nothing keeps the write out any more: report now.
                    Phase::Settling { ref error, .. } => {
                        let result = Err(EditError::OutcomeUnknown {
                            error: error.clone(),
                            may_still_land: now.mono < self.write.until(),
                        });
                        self.finish(result, r, now);
                    }
                    // A GET in flight finishes first; a write in flight is fenced by the store.
                    _ => self.lost = Some(reason),
                },
                LockEvent::Unlocked { .. } if matches!(self.phase, Phase::Unlocking { .. }) => {
                    if let Phase::Unlocking { result } =
                        core::mem::replace(&mut self.phase, Phase::Idle)
                    {
                        self.events.push_back(EditEvent::Done { result });
                    }
                }
                _ => {}
            }
        }
    }
}

/// Delay before another attempt to extend the lock while a write may still land.
const EXTEND_RETRY: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{RequestKind, VdelOutcome};
    use crate::testkit::*;
    use alloc::vec::Vec;

    const LOCK: &[u8] = b"lock1";
    const KEY: &[u8] = b"data";

    /// An edit with a 1 s lock renewed every 200 ms: registered (t = 1 ms), the lock taken with
    /// token 5 (t = 2 ms), its GET sent. Returns the edit, the requester, the lock's SET and the
    /// GET.
    fn locked_with_renewals_reading() -> (Edit, FakeRequester, Sent, Sent) {
        let mut o = opts();
        o.lease.renew = Some(Duration::from_millis(200));
        let mut e = Edit::new(Bytes::from_static(LOCK), Bytes::from_static(KEY), 1).unwrap();
        let mut r = FakeRequester::new("client1");
        e.start(Duration::from_secs(1), &o, &mut r, at(0)).unwrap();
        let reg = r.last();
        answer(&mut e, &mut r, &reg, Ok(Response::KeyNotify), None, 1);
        let set = r.last_of(RequestKind::Set);
        answer(&mut e, &mut r, &set, ok_set(), Some(tok(5)), 2);
        let g = r.last_of(RequestKind::Get);
        (e, r, set, g)
    }

    fn opts() -> LockOptions {
        LockOptions {
            lease: LeaseOptions {
                timeout: Some(Duration::from_millis(300)),
                margin: Some(Duration::from_millis(100)),
                ..LeaseOptions::default()
            },
            ..LockOptions::default()
        }
    }

    fn answer(
        e: &mut Edit,
        r: &mut FakeRequester,
        s: &Sent,
        res: Result<Response, RequestError>,
        v: Option<Hlc>,
        t: u64,
    ) {
        let c = r.answer(s.id, res, v);
        assert!(e.handle_completion(&c, r, at(t)));
    }

    fn drain(e: &mut Edit) -> Vec<EditEvent> {
        core::iter::from_fn(|| e.poll_event()).collect()
    }

    /// Starts an edit and brings it to the decision with `current` stored.
    fn deciding(current: Option<&'static [u8]>) -> (Edit, FakeRequester) {
        let mut e = Edit::new(Bytes::from_static(LOCK), Bytes::from_static(KEY), 1).unwrap();
        let mut r = FakeRequester::new("client1");
        e.start(Duration::from_secs(1), &opts(), &mut r, at(0))
            .unwrap();
        let reg = r.last();
        answer(&mut e, &mut r, &reg, Ok(Response::KeyNotify), None, 1);
        let set = r.last_of(RequestKind::Set);
        answer(&mut e, &mut r, &set, ok_set(), Some(tok(5)), 2);
        let g = r.last_of(RequestKind::Get);
        assert_eq!(g.key, Bytes::from_static(KEY));
        answer(&mut e, &mut r, &g, get(current), current.map(|_| tok(3)), 3);
        assert_eq!(
            drain(&mut e),
            [EditEvent::Requested {
                current: current.map(Bytes::from_static),
                token: tok(5)
            }]
        );
        (e, r)
    }

    fn finish_unlock(e: &mut Edit, r: &mut FakeRequester, t: u64) {
        let v = r.last_of(RequestKind::Vdel);
        assert_eq!(v.key, Bytes::from_static(LOCK));
        answer(e, r, &v, vdel(VdelOutcome::Deleted), None, t);
    }

    #[test]
    fn set_is_fenced_and_unlocks() {
        let (mut e, mut r) = deciding(Some(b"old"));
        e.decide(EditDecision::Set(Bytes::from_static(b"new")), &mut r, at(4))
            .unwrap();
        let w = r.last();
        assert_eq!(w.kind, RequestKind::Set);
        assert_eq!(w.value(), Some(&Bytes::from_static(b"new")));
        assert_eq!(w.options.fencing_token, Some(tok(5)));
        assert_eq!(w.px(), None);
        answer(&mut e, &mut r, &w, ok_set(), Some(tok(6)), 5);
        assert!(drain(&mut e).is_empty());
        finish_unlock(&mut e, &mut r, 6);
        assert_eq!(
            drain(&mut e),
            [EditEvent::Done {
                result: Ok(EditOutcome::Set)
            }]
        );
        assert!(!e.is_active());
        let stop = r.last_of(RequestKind::KeyNotifyStop);
        answer(
            &mut e,
            &mut r,
            &stop,
            Ok(Response::KeyNotifyStop(true)),
            None,
            7,
        );
        assert_eq!(e.outstanding(), 0);
        assert!(r.open.is_empty());
    }

    /// Simulator finding (seed 64, S2): the GET reply came back after a renewal had replaced
    /// the acquisition's token; `Requested` handed out the old token while the lock's
    /// `safe_until` was the renewal's, so token and `safe_until` belonged to different grants
    /// and the pair claimed the old grant past its store expiry. Both must be the latest grant's.
    #[test]
    fn requested_token_is_the_latest_grant_after_a_renewal() {
        let (mut e, mut r, set, g) = locked_with_renewals_reading();
        // The GET is slow; the lock renews meanwhile.
        e.handle_timeout(&mut r, at(250));
        let renew = r.last_of(RequestKind::Set);
        assert_ne!(renew.id, set.id);
        answer(&mut e, &mut r, &renew, ok_set(), Some(tok(7)), 251);
        answer(&mut e, &mut r, &g, get(Some(b"1")), Some(tok(3)), 260);
        assert_eq!(
            drain(&mut e),
            [EditEvent::Requested {
                current: Some(Bytes::from_static(b"1")),
                token: tok(7)
            }]
        );
        assert_eq!(e.lock().token(at(260).mono), Ok(tok(7)));
        e.decide(EditDecision::Set(Bytes::from_static(b"2")), &mut r, at(270))
            .unwrap();
        assert_eq!(r.last().options.fencing_token, Some(tok(7)));
    }

    /// A GET reply that arrives after the lock's `safe_until` hands out nothing.
    #[test]
    fn get_reply_after_safe_until_ends_the_edit_as_lost() {
        let mut e = Edit::new(Bytes::from_static(LOCK), Bytes::from_static(KEY), 1).unwrap();
        let mut r = FakeRequester::new("client1");
        e.start(Duration::from_secs(1), &opts(), &mut r, at(0))
            .unwrap();
        let reg = r.last();
        answer(&mut e, &mut r, &reg, Ok(Response::KeyNotify), None, 1);
        let set = r.last_of(RequestKind::Set);
        answer(&mut e, &mut r, &set, ok_set(), Some(tok(5)), 2);
        let g = r.last_of(RequestKind::Get);
        // safe_until = 0 + 1000 - 100; no timer ran before the reply.
        answer(&mut e, &mut r, &g, get(Some(b"1")), Some(tok(3)), 950);
        assert!(drain(&mut e).is_empty());
        assert_eq!(
            e.decide(EditDecision::Abort, &mut r, at(951)),
            Err(EditError::NotDeciding)
        );
    }

    /// Go 3 / .NET: deleting an absent key ends the edit instead of looping.
    #[test]
    fn edit_delete_absent_key_terminates() {
        let (mut e, mut r) = deciding(None);
        e.decide(EditDecision::Delete, &mut r, at(4)).unwrap();
        let w = r.last();
        assert_eq!(w.kind, RequestKind::Del);
        assert_eq!(w.options.fencing_token, Some(tok(5)));
        answer(&mut e, &mut r, &w, Ok(Response::Del(0)), None, 5);
        finish_unlock(&mut e, &mut r, 6);
        assert_eq!(
            drain(&mut e),
            [EditEvent::Done {
                result: Ok(EditOutcome::Deleted { existed: false })
            }]
        );
        assert_eq!(r.count(RequestKind::Del), 1);
        assert_eq!(r.count(RequestKind::Set), 1);
        for t in (10..5000).step_by(100) {
            e.handle_timeout(&mut r, at(t));
        }
        assert_eq!(r.count(RequestKind::Del), 1);
        assert_eq!(e.poll_timeout(), None);
    }

    #[test]
    fn abort_writes_nothing_and_unlocks() {
        let (mut e, mut r) = deciding(Some(b"v"));
        e.decide(EditDecision::Abort, &mut r, at(4)).unwrap();
        assert_eq!(r.last().kind, RequestKind::Vdel);
        finish_unlock(&mut e, &mut r, 5);
        assert_eq!(
            drain(&mut e),
            [EditEvent::Done {
                result: Ok(EditOutcome::Aborted)
            }]
        );
        assert_eq!(
            e.decide(EditDecision::Delete, &mut r, at(6)),
            Err(EditError::NotDeciding)
        );
    }

    #[test]
    fn lock_lost_before_the_decision_writes_nothing() {
        let (mut e, mut r) = deciding(Some(b"v"));
        // No renewal: the lock expires at 2 + 1000 - 100.
        e.handle_timeout(&mut r, at(902));
        assert_eq!(r.last().kind, RequestKind::Vdel);
        finish_unlock(&mut e, &mut r, 903);
        assert_eq!(
            drain(&mut e),
            [EditEvent::Done {
                result: Err(EditError::Lost(LostReason::Expired))
            }]
        );
        assert_eq!(r.count(RequestKind::Del), 0);
        assert_eq!(r.count(RequestKind::Set), 1);
    }

    #[test]
    fn failed_write_still_unlocks() {
        let (mut e, mut r) = deciding(Some(b"v"));
        e.decide(EditDecision::Set(Bytes::from_static(b"x")), &mut r, at(4))
            .unwrap();
        let w = r.last();
        let err = RequestError::Service(crate::command::ServiceError::FencingTokenLowerVersion);
        answer(&mut e, &mut r, &w, Err(err.clone()), None, 5);
        finish_unlock(&mut e, &mut r, 6);
        assert_eq!(
            drain(&mut e),
            [EditEvent::Done {
                result: Err(EditError::Request(err))
            }]
        );
    }

    /// A write whose outcome is unknown may land late: were the lock released at once, the
    /// next holder could read, then the late write land on top. The edit keeps the lock (one
    /// re-acquire long enough, as it does not auto-renew) until the write can no longer land
    /// (deadline 304 + 1 s expiry + slack = 1 404), then unlocks and reports the outcome as
    /// unknown.
    #[test]
    fn write_with_unknown_outcome_keeps_the_lock_until_it_cannot_land() {
        let (mut e, mut r) = deciding(Some(b"v"));
        e.decide(EditDecision::Set(Bytes::from_static(b"x")), &mut r, at(4))
            .unwrap();
        let w = r.last();
        let timeout = RequestError::Timeout { sent: true };
        answer(&mut e, &mut r, &w, Err(timeout.clone()), None, 304);
        assert_eq!(
            r.count(RequestKind::Vdel),
            0,
            "released while the write may land"
        );
        assert!(drain(&mut e).is_empty());
        // The lock (safe until 901) is extended to cover 1 404.
        let ext = r.last_of(RequestKind::Set);
        assert_ne!(ext.id, w.id);
        assert_eq!(ext.key, Bytes::from_static(LOCK));
        assert_eq!(ext.px(), Some(1_201));
        answer(&mut e, &mut r, &ext, ok_set(), Some(tok(6)), 310);
        assert!(e.lock().is_held(Instant::from_millis(1_403)));
        for t in (400..1_404).step_by(50) {
            e.handle_timeout(&mut r, at(t));
        }
        assert_eq!(r.count(RequestKind::Vdel), 0);
        assert_eq!(e.poll_timeout(), Some(Instant::from_millis(1_404)));
        e.handle_timeout(&mut r, at(1_404));
        finish_unlock(&mut e, &mut r, 1_405);
        assert_eq!(
            drain(&mut e),
            [EditEvent::Done {
                result: Err(EditError::OutcomeUnknown {
                    error: timeout,
                    may_still_land: false
                })
            }]
        );
    }

    /// With auto-renew the lock's own renewals keep it; no extra re-acquire is sent.
    #[test]
    fn write_with_unknown_outcome_relies_on_auto_renew() {
        let (mut e, mut r, _, g) = locked_with_renewals_reading();
        answer(&mut e, &mut r, &g, get(Some(b"1")), Some(tok(3)), 3);
        drain(&mut e);
        e.decide(EditDecision::Set(Bytes::from_static(b"2")), &mut r, at(4))
            .unwrap();
        let w = r.last();
        answer(&mut e, &mut r, &w, Err(RequestError::Unknown), None, 50);
        let mut t = 50;
        while t < 1_400 {
            t += 10;
            e.handle_timeout(&mut r, at(t));
            if let Some(s) = r
                .open_sent()
                .into_iter()
                .find(|s| s.kind == RequestKind::Set)
            {
                assert_eq!(s.px(), Some(1_000), "only the lock's own renewals");
                answer(&mut e, &mut r, &s, ok_set(), Some(tok(t)), t + 1);
            }
            assert_eq!(r.count(RequestKind::Vdel), 0, "released at {t}");
        }
        // Its deadline 4 + 300, + 1 s expiry + slack = 1 404.
        assert_eq!(e.poll_timeout(), Some(Instant::from_millis(1_404)));
        e.handle_timeout(&mut r, at(1_404));
        finish_unlock(&mut e, &mut r, 1_405);
        assert_eq!(
            drain(&mut e),
            [EditEvent::Done {
                result: Err(EditError::OutcomeUnknown {
                    error: RequestError::Unknown,
                    may_still_land: false
                })
            }]
        );
    }

    /// If the lock is lost while the write may still land, nothing keeps it out any more: the
    /// edit reports the unknown outcome at once.
    #[test]
    fn lock_lost_while_settling_reports_unknown_at_once() {
        let (mut e, mut r) = deciding(Some(b"v"));
        e.decide(EditDecision::Delete, &mut r, at(4)).unwrap();
        let w = r.last();
        answer(
            &mut e,
            &mut r,
            &w,
            Err(RequestError::Timeout { sent: true }),
            None,
            304,
        );
        let ext = r.last_of(RequestKind::Set);
        answer(&mut e, &mut r, &ext, refused_set(), None, 310);
        finish_unlock(&mut e, &mut r, 311);
        assert_eq!(
            drain(&mut e),
            [EditEvent::Done {
                result: Err(EditError::OutcomeUnknown {
                    error: RequestError::Timeout { sent: true },
                    may_still_land: true
                })
            }]
        );
    }

    /// A write that was never sent cannot land: reported at once as a request error.
    #[test]
    fn unsent_write_is_a_plain_failure() {
        let (mut e, mut r) = deciding(Some(b"v"));
        e.decide(EditDecision::Set(Bytes::from_static(b"x")), &mut r, at(4))
            .unwrap();
        let w = r.last();
        let unsent = RequestError::Timeout { sent: false };
        answer(&mut e, &mut r, &w, Err(unsent.clone()), None, 304);
        finish_unlock(&mut e, &mut r, 305);
        assert_eq!(
            drain(&mut e),
            [EditEvent::Done {
                result: Err(EditError::Request(unsent))
            }]
        );
    }

    #[test]
    fn failed_lock_is_reported() {
        let mut e = Edit::new(Bytes::from_static(LOCK), Bytes::from_static(KEY), 1).unwrap();
        let mut r = FakeRequester::new("client1");
        let mut o = opts();
        o.wait_timeout = Some(Duration::from_millis(50));
        e.start(Duration::from_secs(1), &o, &mut r, at(0)).unwrap();
        e.handle_timeout(&mut r, at(50));
        assert_eq!(
            drain(&mut e),
            [EditEvent::Done {
                result: Err(EditError::Lock(LockError::Timeout))
            }]
        );
        assert!(Edit::new(Bytes::from_static(LOCK), Bytes::new(), 1).is_err());
    }
}
