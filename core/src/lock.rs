//! The lock machine (sans-IO), built on [`Lease`]: `lock()` waits until the lease is held, the
//! wait times out, or it is cancelled.
//!
//! How the wait works (docs/protocol.md §10.3):
//! - KEYNOTIFY is registered *before* the first attempt, so no DELETE is missed.
//! - On refusal the machine waits for a DELETE. A DELETE (or a reconnect) that arrives while an
//!   attempt is still in flight is remembered, so it is not lost.
//! - Herd control: on a DELETE each waiter waits a seeded random jitter in `[0, J)` before
//!   attempting, and drops that pending attempt when it first sees someone else's SET. `J` is
//!   per wait: it starts at zero (herd control costs nothing until there is a herd: a lone
//!   waiter attempts as soon as it sees the DELETE), becomes [`DEFAULT_MIN_JITTER`] the first
//!   time an attempt after a DELETE lost to someone else's SET (refused, or cancelled by the
//!   winner's notification: that is contention) and doubles, up to
//!   [`LockOptions::max_jitter`], each time after that. The attempts per handover are about
//!   `1 + waiters × notification delay / J`.
//! - After a reconnect the machine re-checks with GET (free, or our own value: attempt).
//! - A fallback timer attempts again after [`LockOptions::fallback`] (plus a random spread of
//!   up to half of it, so that waiters refused together do not poll together) without news;
//!   every notification or GET result pushes it back. Transient failures are retried after a
//!   short back-off.
//! - When the wait ends (held, timed out, cancelled) the observation is stopped with
//!   `KEYNOTIFY STOP` on its own deadline, and the outcome of that STOP is never reported as a
//!   lock failure. A wait that ends without the lock also releases an attempt that may have
//!   been applied.

use alloc::collections::VecDeque;
use bytes::Bytes;
use core::fmt;
use core::time::Duration;

use crate::client::{Completion, Notification, Requester};
use crate::hlc::Hlc;
use crate::lease::{
    holder_value, validate, Lease, LeaseError, LeaseEvent, LeaseOptions, LeaseState, LostReason,
    OpId, ReleaseOutcome,
};
use crate::rng::Rng;
use crate::time::{Instant, Now};

/// Largest default upper bound of the random delay before attempting after a DELETE (the
/// default is the smaller of this and half the lease duration).
pub const DEFAULT_MAX_JITTER: Duration = Duration::from_secs(1);

/// The jitter window after a wait's first contention (a wait starts without jitter; the window
/// doubles under further contention).
pub const DEFAULT_MIN_JITTER: Duration = Duration::from_millis(1);

/// Default delay before retrying after a transient failure (plus jitter).
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_millis(500);

/// Options of [`Lock::lock`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LockOptions {
    /// Lease options: per-request timeout, auto-renew interval, session id, margin.
    pub lease: LeaseOptions,
    /// Deadline of the whole wait; `None` waits until held or cancelled.
    pub wait_timeout: Option<Duration>,
    /// Attempt again after this long without news (plus a random spread of up to half of
    /// it); `None` means the lease duration.
    pub fallback: Option<Duration>,
    /// Cap of the adaptive jitter window before attempting after a DELETE (the window starts
    /// at zero, becomes [`DEFAULT_MIN_JITTER`] (or the cap when that is smaller) at the first
    /// contention and doubles at each further one); `None` means the smaller of
    /// [`DEFAULT_MAX_JITTER`] and half the lease duration.
    pub max_jitter: Option<Duration>,
    /// Delay before retrying after a transient failure; `None` means [`DEFAULT_RETRY_DELAY`].
    pub retry_delay: Option<Duration>,
    /// Timeout of the final `KEYNOTIFY STOP`; `None` means the per-request timeout.
    pub unobserve_timeout: Option<Duration>,
    /// Keep observing while held and report every holder change as
    /// [`LockEvent::HolderChanged`] (also GETs the holder after a refusal). Used by the leader.
    pub watch_holder: bool,
}

/// Errors of the lock machine.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockError {
    /// The wait deadline passed.
    Timeout,
    /// The wait was cancelled.
    Cancelled,
    /// `lock` while a wait is active.
    Busy,
    /// `lock` while the lock is already held.
    AlreadyHeld,
    /// `unlock` or a similar call with no lock.
    NotLocked,
    /// The lease failed in a way retrying will not fix.
    Lease(LeaseError),
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::Timeout => f.write_str("lock wait timed out"),
            LockError::Cancelled => f.write_str("lock wait cancelled"),
            LockError::Busy => f.write_str("a lock wait is already in progress"),
            LockError::AlreadyHeld => f.write_str("the lock is already held"),
            LockError::NotLocked => f.write_str("the lock is not held"),
            LockError::Lease(e) => write!(f, "lock failed: {e}"),
        }
    }
}

/// What the lock machine reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockEvent {
    /// The lock is held.
    Locked {
        /// Fencing token.
        token: Hlc,
        /// Until when acting as the holder is safe.
        safe_until: Instant,
    },
    /// The wait ended without the lock.
    LockFailed {
        /// Why.
        error: LockError,
    },
    /// An automatic renewal succeeded.
    Renewed {
        /// The new fencing token.
        token: Hlc,
        /// The new safe-until.
        safe_until: Instant,
    },
    /// The held lock ended without an unlock.
    Lost {
        /// Why.
        reason: LostReason,
    },
    /// Answer to `unlock`.
    Unlocked {
        /// What the VDEL found, or why it failed.
        result: Result<ReleaseOutcome, LeaseError>,
    },
    /// The holder changed (only with [`LockOptions::watch_holder`]); `None` means free.
    HolderChanged {
        /// The holder value.
        holder: Option<Bytes>,
    },
    /// Answer to [`Lock::extend`]: the re-acquire failed. The lock stays held until its
    /// (possibly lowered) `safe_until`, unless a [`LockEvent::Lost`] came first.
    ExtendFailed {
        /// Why.
        error: LeaseError,
    },
}

#[derive(Debug, Clone)]
enum Step {
    /// KEYNOTIFY in flight; the first attempt follows its answer.
    Registering,
    /// An acquire in flight; `woke` remembers a DELETE or reconnect seen meanwhile.
    Attempting { op: OpId, woke: bool },
    /// Refused; waiting for a DELETE, a re-check or a timer.
    Waiting {
        attempt_at: Option<Instant>,
        fallback_at: Instant,
    },
}

#[derive(Debug, Clone)]
struct Wait {
    duration: Duration,
    options: LockOptions,
    fallback: Duration,
    /// The current jitter window and its cap.
    jitter: Duration,
    max_jitter: Duration,
    /// The attempt in flight came from a jittered (or delayed) schedule, not the first
    /// attempt or a fallback poll.
    jittered: bool,
    deadline: Option<Instant>,
    step: Step,
    /// A GET re-check in flight, and whether another one is wanted after it.
    check: Option<OpId>,
    recheck: bool,
}

/// The lock machine. See the module documentation.
#[derive(Debug, Clone)]
pub struct Lock {
    lease: Lease,
    rng: Rng,
    wait: Option<Wait>,
    held: bool,
    watch_holder: bool,
    holder: Option<Bytes>,
    observe_op: Option<OpId>,
    unlock_op: Option<OpId>,
    /// A manual re-acquire from [`Lock::extend`] in flight.
    extend_op: Option<OpId>,
    events: VecDeque<LockEvent>,
}

impl Lock {
    /// A lock on the key `name`; `seed` drives the herd-control jitter.
    pub fn new(name: Bytes, seed: u64) -> Result<Lock, LockError> {
        Ok(Lock {
            lease: Lease::new(name).map_err(LockError::Lease)?,
            rng: Rng::new(seed),
            wait: None,
            held: false,
            watch_holder: false,
            holder: None,
            observe_op: None,
            unlock_op: None,
            extend_op: None,
            events: VecDeque::new(),
        })
    }

    /// The underlying lease (token, state, ...).
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// See [`Lease::stop_renewing`].
    pub fn stop_renewing(&mut self) {
        self.lease.stop_renewing();
    }

    /// See [`Lease::handle_unregistration_timeout`].
    pub fn handle_unregistration_timeout<R: Requester + ?Sized>(&mut self, r: &mut R, now: Now) {
        self.lease.handle_unregistration_timeout(r, now);
    }

    /// Whether a wait is active.
    pub fn is_waiting(&self) -> bool {
        self.wait.is_some()
    }

    /// Whether the lock is held at `now`.
    pub fn is_held(&self, now: Instant) -> bool {
        self.held && matches!(self.lease.state(now), LeaseState::Held { .. })
    }

    /// The fencing token of the held lock, or why there is none.
    pub fn token(&self, now: Instant) -> Result<Hlc, LeaseError> {
        self.lease.token(now)
    }

    /// Starts waiting for the lock. Answered by [`LockEvent::Locked`] or
    /// [`LockEvent::LockFailed`].
    pub fn lock<R: Requester + ?Sized>(
        &mut self,
        duration: Duration,
        options: &LockOptions,
        r: &mut R,
        now: Now,
    ) -> Result<(), LockError> {
        if self.wait.is_some() {
            return Err(LockError::Busy);
        }
        if self.is_held(now.mono) {
            return Err(LockError::AlreadyHeld);
        }
        let timing = validate(duration, &options.lease)
            .map_err(|rule| LockError::Lease(LeaseError::InvalidConfig(rule)))?;
        self.watch_holder = options.watch_holder;
        self.holder = Some(holder_value(
            r.client_id(),
            options.lease.session_id.as_deref(),
        ));
        let max_jitter = options.max_jitter.unwrap_or_else(|| {
            let half = timing.duration / 2;
            if half < DEFAULT_MAX_JITTER {
                half
            } else {
                DEFAULT_MAX_JITTER
            }
        });
        self.wait = Some(Wait {
            duration: timing.duration,
            options: options.clone(),
            fallback: options.fallback.unwrap_or(timing.duration),
            jitter: Duration::ZERO,
            max_jitter,
            jittered: false,
            deadline: options.wait_timeout.map(|t| now.mono + t),
            step: Step::Registering,
            check: None,
            recheck: false,
        });
        if self.lease.is_observing() {
            self.attempt(r, now);
        } else {
            match self
                .lease
                .observe_start(Some(options.lease.request_timeout()), r, now)
            {
                Ok(op) => self.observe_op = Some(op),
                // Without a registration the fallback timer still guarantees progress.
                Err(_) => self.attempt(r, now),
            }
        }
        self.pump(r, now);
        Ok(())
    }

    /// Cancels an active wait (answered by `LockFailed { Cancelled }`). Returns whether a wait
    /// was active.
    pub fn cancel<R: Requester + ?Sized>(&mut self, r: &mut R, now: Now) -> bool {
        if self.wait.is_none() {
            return false;
        }
        self.fail(LockError::Cancelled, r, now);
        self.pump(r, now);
        true
    }

    /// Releases the lock (the lease's release: stop renewing, clear the token, VDEL).
    /// Answered by [`LockEvent::Unlocked`]. An active wait is cancelled instead.
    pub fn unlock<R: Requester + ?Sized>(
        &mut self,
        options: &LeaseOptions,
        r: &mut R,
        now: Now,
    ) -> Result<(), LockError> {
        if self.wait.is_some() {
            self.cancel(r, now);
            return Ok(());
        }
        if self.unlock_op.is_some() {
            return Err(LockError::Busy);
        }
        let op = self
            .lease
            .release(options, r, now)
            .map_err(LockError::Lease)?;
        self.held = false;
        self.unlock_op = Some(op);
        self.pump(r, now);
        Ok(())
    }

    /// Extends a held lock that does not auto-renew: a manual re-acquire (same holder) for
    /// `duration`, counted from now. Answered by [`LockEvent::Renewed`] or
    /// [`LockEvent::ExtendFailed`] (or [`LockEvent::Lost`] when the store refuses it).
    pub fn extend<R: Requester + ?Sized>(
        &mut self,
        duration: Duration,
        options: &LeaseOptions,
        r: &mut R,
        now: Now,
    ) -> Result<(), LockError> {
        if !self.is_held(now.mono) {
            return Err(LockError::Lease(LeaseError::NoLease));
        }
        if self.extend_op.is_some() || self.unlock_op.is_some() {
            return Err(LockError::Busy);
        }
        let op = self
            .lease
            .acquire(duration, options, r, now)
            .map_err(LockError::Lease)?;
        self.extend_op = Some(op);
        self.pump(r, now);
        Ok(())
    }

    /// Stops the observation kept by [`LockOptions::watch_holder`] (KEYNOTIFY STOP; its
    /// outcome is not reported).
    pub fn stop_watching<R: Requester + ?Sized>(
        &mut self,
        timeout: Option<Duration>,
        r: &mut R,
        now: Now,
    ) {
        self.watch_holder = false;
        if self.wait.is_none() && self.lease.is_observing() {
            let _ = self.lease.observe_stop(timeout, r, now);
        }
        self.pump(r, now);
    }

    /// Number of requests whose completion this machine still awaits.
    pub fn outstanding(&self) -> usize {
        self.lease.outstanding()
    }

    /// The next event, or `None` when drained.
    pub fn poll_event(&mut self) -> Option<LockEvent> {
        self.events.pop_front()
    }

    /// The earliest instant at which [`Lock::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.lease.poll_timeout();
        if let Some(w) = &self.wait {
            t = min_opt(t, w.deadline);
            if let Step::Waiting {
                attempt_at,
                fallback_at,
            } = &w.step
            {
                t = min_opt(t, *attempt_at);
                t = min_opt(t, Some(*fallback_at));
            }
        }
        t
    }

    /// Time passed.
    pub fn handle_timeout<R: Requester + ?Sized>(&mut self, r: &mut R, now: Now) {
        self.lease.handle_timeout(r, now);
        self.pump(r, now);
        self.check_timers(r, now);
        self.pump(r, now);
        // A wait that ended just now stopped its observation after the lease's own timers
        // ran; a cleanup STOP that became due with it goes now, so no deadline is left due
        // when this returns (found by the `client_machines` fuzz target).
        self.lease.handle_unregistration_timeout(r, now);
    }

    /// A completion; returns whether it was ours.
    pub fn handle_completion<R: Requester + ?Sized>(
        &mut self,
        c: &Completion,
        r: &mut R,
        now: Now,
    ) -> bool {
        let mine = self.lease.handle_completion(c, r, now);
        self.pump(r, now);
        self.check_timers(r, now);
        self.pump(r, now);
        mine
    }

    /// A key notification; returns whether it was for this lock while observing.
    pub fn handle_notification<R: Requester + ?Sized>(
        &mut self,
        n: &Notification,
        r: &mut R,
        now: Now,
    ) -> bool {
        let mine = self.lease.handle_notification(n, now);
        self.pump(r, now);
        self.check_timers(r, now);
        self.pump(r, now);
        mine
    }

    /// The connection is up again: a waiting lock re-checks with GET (notifications may have
    /// been missed); an attempt in flight is followed by another one if refused.
    pub fn handle_connected<R: Requester + ?Sized>(&mut self, r: &mut R, now: Now) {
        self.lease.handle_connected(r, now);
        let waiting = match self.wait.as_mut().map(|w| &mut w.step) {
            Some(Step::Attempting { woke, .. }) => {
                *woke = true;
                false
            }
            Some(Step::Waiting { .. }) => true,
            _ => false,
        };
        if waiting {
            self.recheck(r, now);
        }
        self.pump(r, now);
    }

    /// The connection dropped (see [`Lease::handle_disconnected`]).
    pub fn handle_disconnected(&mut self, now: Now) {
        self.lease.handle_disconnected(now);
    }

    /// The client re-registered `key` after a reconnect. The lease GETs the key and reports a
    /// change, which wakes a waiting lock when the lease is free. Returns whether it was ours.
    pub fn handle_reregistered<R: Requester + ?Sized>(
        &mut self,
        key: &[u8],
        ok: bool,
        r: &mut R,
        now: Now,
    ) -> bool {
        let mine = self.lease.handle_reregistered(key, ok, r, now);
        self.pump(r, now);
        mine
    }

    /// A random delay in `[0, max)`.
    fn jitter(&mut self, max: Duration) -> Duration {
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.rng.below(nanos))
    }

    /// The wait's current jitter window (zero without a wait).
    fn window(&self) -> Duration {
        self.wait.as_ref().map_or(Duration::ZERO, |w| w.jitter)
    }

    /// A jittered attempt lost to someone else's SET: open the window, or widen it (up to its
    /// cap).
    fn widen(&mut self) {
        if let Some(w) = self.wait.as_mut() {
            let doubled = if w.jitter.is_zero() {
                DEFAULT_MIN_JITTER
            } else {
                w.jitter.saturating_mul(2)
            };
            w.jitter = if doubled < w.max_jitter {
                doubled
            } else {
                w.max_jitter
            };
        }
    }

    /// The next fallback attempt, `fallback` plus a random spread of up to half of it, from
    /// `from`.
    fn fallback_from(&mut self, from: Instant) -> Instant {
        let fallback = self.wait.as_ref().map_or(Duration::ZERO, |w| w.fallback);
        from + fallback + self.jitter(fallback / 2)
    }

    /// News of the key (a notification, a GET result): the fallback is for silence only.
    fn push_fallback(&mut self, now: Now) {
        let at = self.fallback_from(now.mono);
        if let Some(Wait {
            step: Step::Waiting { fallback_at, .. },
            ..
        }) = self.wait.as_mut()
        {
            *fallback_at = at;
        }
    }

    fn recheck<R: Requester + ?Sized>(&mut self, r: &mut R, now: Now) {
        let Some(w) = self.wait.as_mut() else {
            return;
        };
        if w.check.is_some() {
            w.recheck = true;
            return;
        }
        let timeout = Some(w.options.lease.request_timeout());
        if let Ok(op) = self.lease.holder(timeout, r, now) {
            if let Some(w) = self.wait.as_mut() {
                w.check = Some(op);
            }
        }
    }

    fn attempt<R: Requester + ?Sized>(&mut self, r: &mut R, now: Now) {
        let Some(w) = self.wait.as_ref() else {
            return;
        };
        let (duration, lease_options) = (w.duration, w.options.lease.clone());
        match self.lease.acquire(duration, &lease_options, r, now) {
            Ok(op) => {
                if let Some(w) = self.wait.as_mut() {
                    w.step = Step::Attempting { op, woke: false };
                }
            }
            Err(LeaseError::ReleasePending { until }) => self.retry_at(until, now),
            Err(e) if e.is_transient() => self.retry_later(r, now),
            Err(e) => self.fail(LockError::Lease(e), r, now),
        }
    }

    /// An earlier release of ours may still be applied until `until`: attempt right after
    /// it (with jitter), since an attempt before then is refused by the lease anyway.
    fn retry_at(&mut self, until: Instant, now: Now) {
        if self.wait.is_none() {
            return;
        }
        let window = self.window();
        let at = if until > now.mono { until } else { now.mono } + self.jitter(window);
        let fallback_at = self.fallback_from(at);
        if let Some(w) = self.wait.as_mut() {
            w.step = Step::Waiting {
                attempt_at: Some(at),
                fallback_at,
            };
        }
    }

    fn retry_later<R: Requester + ?Sized>(&mut self, r: &mut R, now: Now) {
        let _ = r;
        let Some(w) = self.wait.as_ref() else {
            return;
        };
        let (window, delay) = (
            w.max_jitter,
            w.options.retry_delay.unwrap_or(DEFAULT_RETRY_DELAY),
        );
        let jitter = self.jitter(window);
        let fallback_at = self.fallback_from(now.mono);
        if let Some(w) = self.wait.as_mut() {
            w.step = Step::Waiting {
                attempt_at: Some(now.mono + delay + jitter),
                fallback_at,
            };
        }
    }

    /// Schedules an attempt after a jitter (keeping an earlier one).
    fn wake(&mut self, now: Now) {
        if self.wait.is_none() {
            return;
        }
        let window = self.window();
        let at = now.mono + self.jitter(window);
        if let Some(Wait {
            step: Step::Waiting { attempt_at, .. },
            ..
        }) = self.wait.as_mut()
        {
            *attempt_at = min_opt(*attempt_at, Some(at));
        }
    }

    fn check_timers<R: Requester + ?Sized>(&mut self, r: &mut R, now: Now) {
        let Some(w) = self.wait.as_ref() else {
            return;
        };
        if w.deadline.is_some_and(|d| now.mono >= d) {
            self.fail(LockError::Timeout, r, now);
            return;
        }
        if let Step::Waiting {
            attempt_at,
            fallback_at,
        } = &w.step
        {
            let scheduled = attempt_at.is_some_and(|t| now.mono >= t);
            if scheduled || now.mono >= *fallback_at {
                if let Some(w) = self.wait.as_mut() {
                    w.jittered = scheduled;
                }
                self.attempt(r, now);
            }
        }
    }

    /// Ends the wait without the lock.
    fn fail<R: Requester + ?Sized>(&mut self, error: LockError, r: &mut R, now: Now) {
        let Some(w) = self.wait.take() else {
            return;
        };
        // An attempt in flight (or one whose outcome is unknown) may have been applied:
        // release it so that the store does not keep a lock nobody waits for.
        let attempting = matches!(w.step, Step::Attempting { .. });
        if attempting || matches!(self.lease.state(now.mono), LeaseState::MaybeHeld) {
            let _ = self.lease.release(&w.options.lease, r, now);
        }
        self.stop_observing(&w, r, now);
        self.events.push_back(LockEvent::LockFailed { error });
    }

    fn stop_observing<R: Requester + ?Sized>(&mut self, w: &Wait, r: &mut R, now: Now) {
        self.observe_op = None;
        if self.lease.is_observing() {
            let timeout = w
                .options
                .unobserve_timeout
                .or(Some(w.options.lease.request_timeout()));
            // Its outcome is deliberately ignored: the lock's result does not depend on it.
            let _ = self.lease.observe_stop(timeout, r, now);
        }
    }

    fn pump<R: Requester + ?Sized>(&mut self, r: &mut R, now: Now) {
        while let Some(ev) = self.lease.poll_event() {
            self.on_lease_event(ev, r, now);
        }
    }

    fn on_lease_event<R: Requester + ?Sized>(&mut self, ev: LeaseEvent, r: &mut R, now: Now) {
        let attempting = match self.wait.as_ref().map(|w| &w.step) {
            Some(Step::Attempting { op, woke }) => Some((*op, *woke)),
            _ => None,
        };
        match ev {
            LeaseEvent::Acquired {
                op,
                token,
                safe_until,
            } if attempting.is_some_and(|(a, _)| a == op) => {
                if let Some(w) = self.wait.take() {
                    if !self.watch_holder {
                        self.stop_observing(&w, r, now);
                    }
                }
                self.held = true;
                self.events
                    .push_back(LockEvent::Locked { token, safe_until });
            }
            LeaseEvent::NotAcquired { op } if attempting.is_some_and(|(a, _)| a == op) => {
                let woke = attempting.is_some_and(|(_, w)| w);
                // Refused: someone else's SET won (contention, unless it is the first attempt
                // of the wait, which no jitter preceded).
                if self.wait.as_ref().is_some_and(|w| w.jittered) {
                    self.widen();
                }
                let fallback_at = self.fallback_from(now.mono);
                if let Some(w) = self.wait.as_mut() {
                    w.jittered = false;
                    w.step = Step::Waiting {
                        attempt_at: None,
                        fallback_at,
                    };
                }
                if woke {
                    self.wake(now);
                }
                if self.watch_holder || self.wait.as_ref().is_some_and(|w| w.recheck) {
                    if let Some(w) = self.wait.as_mut() {
                        w.recheck = false;
                    }
                    self.recheck(r, now);
                }
            }
            LeaseEvent::AcquireFailed { op, error } if attempting.is_some_and(|(a, _)| a == op) => {
                if error.is_transient() {
                    self.retry_later(r, now);
                } else {
                    self.fail(LockError::Lease(error), r, now);
                }
            }
            LeaseEvent::Acquired {
                op,
                token,
                safe_until,
            } if self.extend_op == Some(op) => {
                self.extend_op = None;
                if self.held {
                    self.events
                        .push_back(LockEvent::Renewed { token, safe_until });
                }
            }
            LeaseEvent::NotAcquired { op } if self.extend_op == Some(op) => {
                // The refusal ended the hold (`Lost` came before this answer).
                self.extend_op = None;
            }
            LeaseEvent::AcquireFailed { op, error } if self.extend_op == Some(op) => {
                self.extend_op = None;
                self.events.push_back(LockEvent::ExtendFailed { error });
            }
            LeaseEvent::Renewed { token, safe_until } if self.held => {
                self.events
                    .push_back(LockEvent::Renewed { token, safe_until });
            }
            LeaseEvent::Lost { reason } if self.held => {
                self.held = false;
                self.events.push_back(LockEvent::Lost { reason });
            }
            LeaseEvent::Released { op, result } if self.unlock_op == Some(op) => {
                self.unlock_op = None;
                self.events.push_back(LockEvent::Unlocked { result });
            }
            LeaseEvent::ObserveStarted { op, result } if self.observe_op == Some(op) => {
                self.observe_op = None;
                if result.is_ok() {
                    self.push_fallback(now);
                }
                // A failed registration is not fatal: the fallback timer keeps the wait alive.
                if matches!(self.wait.as_ref().map(|w| &w.step), Some(Step::Registering)) {
                    self.attempt(r, now);
                }
            }
            LeaseEvent::Holder { op, result } => {
                let is_check = self.wait.as_ref().and_then(|w| w.check) == Some(op);
                if !is_check {
                    return;
                }
                if let Ok(holder) = &result {
                    if self.watch_holder {
                        self.events.push_back(LockEvent::HolderChanged {
                            holder: holder.clone(),
                        });
                    }
                }
                let recheck = self.wait.as_mut().is_some_and(|w| {
                    w.check = None;
                    core::mem::take(&mut w.recheck)
                });
                if let Ok(holder) = result {
                    self.on_holder_seen(holder, now);
                }
                if recheck {
                    self.recheck(r, now);
                }
            }
            LeaseEvent::Change { holder, .. } => {
                if self.watch_holder {
                    self.events.push_back(LockEvent::HolderChanged {
                        holder: holder.clone(),
                    });
                }
                self.on_holder_seen(holder, now);
            }
            // Answers to operations the lock no longer waits for (cleanup releases, STOPs,
            // cancelled attempts) are deliberately swallowed.
            _ => {}
        }
    }

    /// The store showed `holder` (a notification or a GET): free or ours wakes the wait;
    /// someone else's value cancels a pending jittered attempt.
    fn on_holder_seen(&mut self, holder: Option<Bytes>, now: Now) {
        let free_or_ours = holder.is_none() || holder == self.holder;
        let mut cancelled = false;
        match self.wait.as_mut().map(|w| &mut w.step) {
            Some(Step::Attempting { woke, .. }) => *woke = free_or_ours,
            Some(Step::Waiting { attempt_at, .. }) => {
                if free_or_ours {
                    self.wake(now);
                } else {
                    // A pending jittered attempt lost to the winner's SET: contention.
                    cancelled = attempt_at.take().is_some();
                }
                self.push_fallback(now);
            }
            _ => {}
        }
        if cancelled {
            self.widen();
        }
    }
}

fn min_opt(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if x < y { x } else { y }),
        (x, None) => x,
        (None, y) => y,
    }
}

#[cfg(test)]
mod tests;
