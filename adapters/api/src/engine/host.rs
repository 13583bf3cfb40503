//! The engine side of the lease, lock, edit and leader handles: each handle owns one core
//! machine living in the engine; this module feeds the handle's operations into it and turns
//! the machine's events into answers, status updates and stream items.
//!
//! No lease logic lives here: every decision (renewal, loss, herd control, release order) is
//! the core machine's. This is bookkeeping of which waiting future gets which event.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures_channel::oneshot;
use leasedlock_core::client::{Client, Completion, Notification};
use leasedlock_core::edit::{Edit, EditDecision, EditEvent};
use leasedlock_core::hlc::Hlc;
use leasedlock_core::leader::{Leader, LeaderEvent, LeaderOptions};
use leasedlock_core::lease::{Lease, LeaseEvent, LeaseOptions, LeaseState, OpId, ReleaseOutcome};
use leasedlock_core::lock::{Lock, LockEvent, LockOptions};
use leasedlock_core::machine::Machine;
use leasedlock_core::{Instant, Now};
use tracing::{debug, info, warn};

use crate::cancel::CancellationToken;
use crate::clock::Clock;
use crate::leader::{LeaderError, LeaderView, Term};
use crate::lease::{Change, LeaseError};
use crate::lock::LockError;
use crate::state_store::ObserveError;
use crate::watch;

/// What a handle's status watch shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Status {
    /// Held until `safe_until`, on the core's suspend-aware axis: handles compare it with
    /// `clock`'s now, so a hold that ran out while the machine was suspended reads as over at
    /// once after the resume, before the engine's (monotonic, so late) timer has fired.
    Held {
        token: Hlc,
        safe_until: Instant,
        clock: Clock,
    },
    /// Not held, and why.
    NotHeld(LeaseError),
}

/// The machine a new handle wants, with the channels its events go to.
#[derive(Debug)]
pub(crate) enum MachineKind {
    Lease {
        name: Bytes,
        status: watch::Sender<Status>,
    },
    Lock {
        name: Bytes,
        status: watch::Sender<Status>,
    },
    /// An edit starts as soon as it is created.
    Edit {
        lock_name: Bytes,
        key: Bytes,
        duration: Duration,
        options: Box<LockOptions>,
        events: async_channel::Sender<EditEvent>,
    },
    Leader {
        name: Bytes,
        view: watch::Sender<LeaderView>,
    },
}

/// An operation on a handle's machine.
#[derive(Debug)]
pub(crate) enum Op {
    Acquire {
        seq: u64,
        duration: Duration,
        options: LeaseOptions,
        reply: oneshot::Sender<Result<bool, LeaseError>>,
    },
    Release {
        options: LeaseOptions,
        reply: oneshot::Sender<Result<ReleaseOutcome, LeaseError>>,
    },
    Holder {
        timeout: Option<Duration>,
        reply: oneshot::Sender<Result<Option<Bytes>, LeaseError>>,
    },
    ObserveStart {
        seq: u64,
        tx: async_channel::Sender<Result<Change, ObserveError>>,
        reply: oneshot::Sender<Result<(), LeaseError>>,
    },
    Lock {
        seq: u64,
        duration: Duration,
        options: LockOptions,
        reply: oneshot::Sender<Result<Hlc, LockError>>,
    },
    Unlock {
        options: LeaseOptions,
        reply: oneshot::Sender<Result<ReleaseOutcome, LockError>>,
    },
    EditDecide {
        decision: EditDecision,
    },
    Campaign {
        duration: Duration,
        options: LeaderOptions,
        reply: oneshot::Sender<Result<(), LeaderError>>,
    },
    /// Resign; with `drain_now` the lease is released as soon as draining starts.
    Resign {
        drain_now: bool,
        reply: oneshot::Sender<Result<(), LeaderError>>,
    },
    Drained,
    /// The future of operation `seq` (or the stream it made) was dropped unanswered.
    Abandon {
        seq: u64,
    },
    /// The handle is gone; release unless detached.
    Drop {
        release: bool,
    },
}

/// Answers a waiting future; a future that is gone just does not get it.
fn answer<T>(reply: Option<oneshot::Sender<T>>, value: T) -> bool {
    match reply {
        Some(r) => r.send(value).is_ok(),
        None => false,
    }
}

fn status_of(lease: &Lease, now: Now, clock: Clock) -> Status {
    match lease.state(now.mono) {
        LeaseState::Held { token, safe_until } => Status::Held {
            token,
            safe_until,
            clock,
        },
        _ => Status::NotHeld(
            lease
                .token(now.mono)
                .err()
                .map(LeaseError::from)
                .unwrap_or(LeaseError::NoLease),
        ),
    }
}

/// Updates a status watch, waking watchers only on a change.
fn publish(tx: &watch::Sender<Status>, status: Status) {
    tx.send_if_modified(|s| {
        let changed = *s != status;
        *s = status;
        changed
    });
}

fn release_options(timeout: Duration) -> LeaseOptions {
    LeaseOptions {
        timeout: Some(timeout),
        ..LeaseOptions::default()
    }
}

enum LeaseReply {
    Acquire(oneshot::Sender<Result<bool, LeaseError>>),
    Release(oneshot::Sender<Result<ReleaseOutcome, LeaseError>>),
    Holder(oneshot::Sender<Result<Option<Bytes>, LeaseError>>),
    Observe(oneshot::Sender<Result<(), LeaseError>>),
}

struct LeaseHost {
    m: Lease,
    status: watch::Sender<Status>,
    ops: HashMap<OpId, LeaseReply>,
    /// The last acquire: its sequence number, operation, and whether we held before it.
    acquire: Option<(u64, OpId, bool)>,
    /// The observation: its sequence number and stream.
    observe: Option<(u64, async_channel::Sender<Result<Change, ObserveError>>)>,
}

impl LeaseHost {
    fn op(&mut self, op: Op, r: &mut Client, now: Now, timeout: Duration) {
        match op {
            Op::Acquire {
                seq,
                duration,
                options,
                reply,
            } => {
                let was_held = matches!(self.m.state(now.mono), LeaseState::Held { .. });
                match self.m.acquire(duration, &options, r, now) {
                    Ok(op) => {
                        debug!(lease = ?self.m.name(), ?duration, "acquire");
                        self.ops.insert(op, LeaseReply::Acquire(reply));
                        self.acquire = Some((seq, op, was_held));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            Op::Release { options, reply } => match self.m.release(&options, r, now) {
                Ok(op) => {
                    debug!(lease = ?self.m.name(), "release");
                    self.ops.insert(op, LeaseReply::Release(reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            },
            Op::Holder { timeout, reply } => match self.m.holder(timeout, r, now) {
                Ok(op) => {
                    self.ops.insert(op, LeaseReply::Holder(reply));
                }
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            },
            Op::ObserveStart { seq, tx, reply } => {
                if self.observe.is_some() {
                    let _ = reply.send(Err(LeaseError::AlreadyObserving));
                    return;
                }
                match self.m.observe_start(Some(timeout), r, now) {
                    Ok(op) => {
                        self.ops.insert(op, LeaseReply::Observe(reply));
                        self.observe = Some((seq, tx));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            Op::Abandon { seq } => {
                if self.observe.as_ref().is_some_and(|(s, _)| *s == seq) {
                    self.observe = None;
                    let _ = self.m.observe_stop(Some(timeout), r, now);
                }
                if let Some((s, op, was_held)) = self.acquire {
                    if s == seq {
                        self.acquire = None;
                        let pending = self.ops.remove(&op).is_some();
                        let state = self.m.state(now.mono);
                        let ours = matches!(state, LeaseState::Held { .. } | LeaseState::MaybeHeld);
                        // Whoever gave up on this acquire must not be left holding a lease it
                        // never heard of: release what it may have taken.
                        if pending || (ours && !was_held) {
                            debug!(lease = ?self.m.name(), "abandoned acquire: releasing");
                            let _ = self.m.release(&release_options(timeout), r, now);
                        }
                    }
                }
            }
            Op::Drop { release } => {
                if self.observe.take().is_some() || self.m.is_observing() {
                    let _ = self.m.observe_stop(Some(timeout), r, now);
                }
                let state = self.m.state(now.mono);
                let ours = matches!(
                    state,
                    LeaseState::Held { .. } | LeaseState::MaybeHeld | LeaseState::Acquiring
                );
                if release && ours {
                    debug!(lease = ?self.m.name(), "handle dropped: releasing");
                    let _ = self.m.release(&release_options(timeout), r, now);
                }
            }
            other => debug!(op = ?other, "operation not supported by a lease"),
        }
    }

    fn events(&mut self, now: Now, clock: Clock) -> bool {
        // Status first: a caller woken by an answer below must already see the new state.
        publish(&self.status, status_of(&self.m, now, clock));
        let mut any = false;
        while let Some(event) = self.m.poll_event() {
            any = true;
            match event {
                LeaseEvent::Acquired { op, token, .. } => {
                    info!(lease = ?self.m.name(), %token, "acquired");
                    if let Some(LeaseReply::Acquire(r)) = self.ops.remove(&op) {
                        let _ = r.send(Ok(true));
                    }
                }
                LeaseEvent::NotAcquired { op } => {
                    if let Some(LeaseReply::Acquire(r)) = self.ops.remove(&op) {
                        let _ = r.send(Ok(false));
                    }
                }
                LeaseEvent::AcquireFailed { op, error } => {
                    if let Some(LeaseReply::Acquire(r)) = self.ops.remove(&op) {
                        let _ = r.send(Err(error.into()));
                    }
                }
                LeaseEvent::Released { op, result } => {
                    info!(lease = ?self.m.name(), ?result, "released");
                    if let Some(LeaseReply::Release(r)) = self.ops.remove(&op) {
                        let _ = r.send(result.map_err(LeaseError::from));
                    }
                }
                LeaseEvent::Holder { op, result } => {
                    if let Some(LeaseReply::Holder(r)) = self.ops.remove(&op) {
                        let _ = r.send(result.map_err(LeaseError::from));
                    }
                }
                LeaseEvent::ObserveStarted { op, result } => {
                    if result.is_err() {
                        self.observe = None;
                    }
                    if let Some(LeaseReply::Observe(r)) = self.ops.remove(&op) {
                        let _ = r.send(result.map_err(LeaseError::from));
                    }
                }
                LeaseEvent::Change { held, holder } => {
                    if let Some((_, tx)) = &self.observe {
                        if tx.try_send(Ok(Change { held, holder })).is_err() {
                            warn!(lease = ?self.m.name(), "observer too slow or gone; change dropped");
                        }
                    }
                }
                LeaseEvent::Renewed { token, .. } => {
                    debug!(lease = ?self.m.name(), %token, "renewed")
                }
                LeaseEvent::Lost { reason } => warn!(lease = ?self.m.name(), %reason, "lost"),
                other => debug!(event = ?other, "lease event"),
            }
        }
        any
    }

    fn idle(&self, now: Now) -> bool {
        !self.m.is_observing() && matches!(self.m.state(now.mono), LeaseState::Idle)
    }
}

struct LockHost {
    m: Lock,
    status: watch::Sender<Status>,
    lock: Option<oneshot::Sender<Result<Hlc, LockError>>>,
    last_lock_seq: u64,
    unlock: Option<oneshot::Sender<Result<ReleaseOutcome, LockError>>>,
}

impl LockHost {
    fn op(&mut self, op: Op, r: &mut Client, now: Now, timeout: Duration) {
        match op {
            Op::Lock {
                seq,
                duration,
                options,
                reply,
            } => match self.m.lock(duration, &options, r, now) {
                Ok(()) => {
                    debug!(lock = ?self.m.lease().name(), ?duration, "lock wait");
                    self.lock = Some(reply);
                    self.last_lock_seq = seq;
                }
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            },
            Op::Unlock { options, reply } => {
                if self.m.is_waiting() {
                    self.m.cancel(r, now);
                    let _ = reply.send(Err(LockError::NotLocked));
                    return;
                }
                match self.m.unlock(&options, r, now) {
                    Ok(()) => self.unlock = Some(reply),
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            Op::Abandon { seq } if seq == self.last_lock_seq => {
                if self.m.is_waiting() {
                    // A dropped `lock()` wait unregisters its KEYNOTIFY (the machine's cancel).
                    debug!(lock = ?self.m.lease().name(), "lock wait abandoned");
                    self.lock = None;
                    self.m.cancel(r, now);
                } else if self.m.is_held(now.mono) {
                    debug!(lock = ?self.m.lease().name(), "lock taken by an abandoned wait: unlocking");
                    let _ = self.m.unlock(&release_options(timeout), r, now);
                }
            }
            Op::Drop { release } => {
                if self.m.is_waiting() {
                    self.m.cancel(r, now);
                } else if release && !matches!(self.m.lease().state(now.mono), LeaseState::Idle) {
                    debug!(lock = ?self.m.lease().name(), "handle dropped: unlocking");
                    let _ = self.m.unlock(&release_options(timeout), r, now);
                }
            }
            other => debug!(op = ?other, "operation not supported by a lock"),
        }
    }

    fn events(&mut self, r: &mut Client, now: Now, clock: Clock, timeout: Duration) -> bool {
        publish(&self.status, status_of(self.m.lease(), now, clock));
        let mut any = false;
        while let Some(event) = self.m.poll_event() {
            any = true;
            match event {
                LockEvent::Locked { token, .. } => {
                    info!(lock = ?self.m.lease().name(), %token, "locked");
                    if !answer(self.lock.take(), Ok(token)) {
                        // Nobody is waiting for this lock any more: do not keep it.
                        let _ = self.m.unlock(&release_options(timeout), r, now);
                    }
                }
                LockEvent::LockFailed { error } => {
                    answer(self.lock.take(), Err(error.into()));
                }
                LockEvent::Unlocked { result } => {
                    info!(lock = ?self.m.lease().name(), ?result, "unlocked");
                    answer(
                        self.unlock.take(),
                        result.map_err(|e| LockError::Lease(e.into())),
                    );
                }
                LockEvent::Renewed { token, .. } => {
                    debug!(lock = ?self.m.lease().name(), %token, "renewed")
                }
                LockEvent::Lost { reason } => warn!(lock = ?self.m.lease().name(), %reason, "lost"),
                other => debug!(event = ?other, "lock event"),
            }
        }
        // Answers above may have changed the state (an unlock of an unwanted lock).
        publish(&self.status, status_of(self.m.lease(), now, clock));
        any
    }

    fn idle(&self, now: Now) -> bool {
        !self.m.is_waiting()
            && !self.m.lease().is_observing()
            && matches!(self.m.lease().state(now.mono), LeaseState::Idle)
    }
}

struct EditHost {
    m: Edit,
    events: async_channel::Sender<EditEvent>,
    done: bool,
}

impl EditHost {
    fn op(&mut self, op: Op, r: &mut Client, now: Now) {
        match op {
            Op::EditDecide { decision } => {
                if let Err(e) = self.m.decide(decision, r, now) {
                    let _ = self.events.try_send(EditEvent::Done { result: Err(e) });
                    self.done = true;
                }
            }
            Op::Abandon { .. } | Op::Drop { .. } => {
                // Unless the write is already in flight (then the edit finishes and unlocks by
                // itself), stop and unlock.
                self.m.cancel(r, now);
            }
            other => debug!(op = ?other, "operation not supported by an edit"),
        }
    }

    fn events(&mut self) -> bool {
        let mut any = false;
        while let Some(event) = self.m.poll_event() {
            any = true;
            if matches!(event, EditEvent::Done { .. }) {
                self.done = true;
            }
            let _ = self.events.try_send(event);
        }
        any
    }
}

struct LeaderHost {
    m: Leader,
    view: watch::Sender<LeaderView>,
    resign: Vec<oneshot::Sender<Result<(), LeaderError>>>,
    drain_now: bool,
    term: Option<CancellationToken>,
    stopped: bool,
}

impl LeaderHost {
    fn op(&mut self, op: Op, r: &mut Client, now: Now) {
        match op {
            Op::Campaign {
                duration,
                options,
                reply,
            } => {
                let result = self.m.campaign(duration, &options, r, now);
                if result.is_ok() {
                    info!(?duration, "campaigning");
                    self.stopped = false;
                    self.view.send_modify(|v| v.stopped = None);
                }
                let _ = reply.send(result.map_err(LeaderError::from));
            }
            Op::Resign { drain_now, reply } => match self.m.resign(r, now) {
                Ok(()) => {
                    self.drain_now |= drain_now;
                    self.resign.push(reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            },
            Op::Drained => {
                let _ = self.m.drained(r, now);
            }
            Op::Drop { .. } | Op::Abandon { .. } => {
                if !self.stopped {
                    self.drain_now = true;
                    if self.m.resign(r, now).is_err() {
                        // Already draining: release now.
                        let _ = self.m.drained(r, now);
                    }
                }
            }
            other => debug!(op = ?other, "operation not supported by a leader"),
        }
    }

    fn events(&mut self, r: &mut Client, now: Now, clock: Clock) -> bool {
        let mut any = false;
        while let Some(event) = self.m.poll_event() {
            any = true;
            match event {
                LeaderEvent::Elected { token, safe_until } => {
                    info!(%token, "elected");
                    let cancel = CancellationToken::new();
                    self.term = Some(cancel.clone());
                    self.view.send_modify(|v| {
                        v.terms += 1;
                        v.term = Some(Term::new(token, safe_until, clock, cancel, v.terms));
                    });
                }
                LeaderEvent::Renewed { token, safe_until } => {
                    self.view.send_modify(|v| {
                        if let Some(t) = &mut v.term {
                            t.renewed(token, safe_until);
                        }
                    });
                }
                LeaderEvent::Deposed { reason } => {
                    warn!(?reason, "deposed");
                    if let Some(t) = self.term.take() {
                        t.cancel();
                    }
                    self.view.send_modify(|v| {
                        v.term = None;
                        v.deposed = Some((v.terms, reason));
                    });
                }
                LeaderEvent::LeaderIs { holder } => {
                    self.view.send_modify(|v| v.leader = holder);
                }
                LeaderEvent::Draining => {
                    // The term's work must stop now; the lease is still renewed meanwhile.
                    if let Some(t) = &self.term {
                        t.cancel();
                    }
                    if self.drain_now {
                        let _ = self.m.drained(r, now);
                    }
                }
                LeaderEvent::Stopped { error } => {
                    info!(?error, "campaign stopped");
                    self.stopped = true;
                    self.drain_now = false;
                    if let Some(t) = self.term.take() {
                        t.cancel();
                    }
                    for w in self.resign.drain(..) {
                        let _ = w.send(match &error {
                            None => Ok(()),
                            Some(e) => Err(e.clone().into()),
                        });
                    }
                    let error = error.map(LeaderError::from);
                    self.view.send_modify(|v| {
                        v.term = None;
                        v.stopped = Some(error);
                    });
                }
                other => debug!(event = ?other, "leader event"),
            }
        }
        any
    }
}

enum Kind {
    Lease(LeaseHost),
    Lock(LockHost),
    Edit(EditHost),
    Leader(LeaderHost),
}

/// One machine and the bookkeeping of its handle.
pub(crate) struct Hosted {
    kind: Kind,
    /// The handle is gone: remove the machine once it has nothing left to do.
    dropping: bool,
    /// The handle was detached: nothing is released.
    detached: bool,
}

impl Hosted {
    /// The machine for a new handle (an edit starts at once).
    pub(crate) fn new(kind: MachineKind, seed: u64, r: &mut Client, now: Now) -> Option<Hosted> {
        let kind = match kind {
            MachineKind::Lease { name, status } => Kind::Lease(LeaseHost {
                m: Lease::new(name).ok()?,
                status,
                ops: HashMap::new(),
                acquire: None,
                observe: None,
            }),
            MachineKind::Lock { name, status } => Kind::Lock(LockHost {
                m: Lock::new(name, seed).ok()?,
                status,
                lock: None,
                last_lock_seq: 0,
                unlock: None,
            }),
            MachineKind::Edit {
                lock_name,
                key,
                duration,
                options,
                events,
            } => {
                let mut m = match Edit::new(lock_name, key, seed) {
                    Ok(m) => m,
                    Err(e) => {
                        let _ = events.try_send(EditEvent::Done { result: Err(e) });
                        return None;
                    }
                };
                let mut done = false;
                if let Err(e) = m.start(duration, &options, r, now) {
                    let _ = events.try_send(EditEvent::Done { result: Err(e) });
                    done = true;
                }
                Kind::Edit(EditHost { m, events, done })
            }
            MachineKind::Leader { name, view } => Kind::Leader(LeaderHost {
                m: Leader::new(name, seed).ok()?,
                view,
                resign: Vec::new(),
                drain_now: false,
                term: None,
                stopped: true,
            }),
        };
        Some(Hosted {
            kind,
            dropping: false,
            detached: false,
        })
    }

    fn machine(&mut self) -> &mut dyn Machine {
        match &mut self.kind {
            Kind::Lease(h) => &mut h.m,
            Kind::Lock(h) => &mut h.m,
            Kind::Edit(h) => &mut h.m,
            Kind::Leader(h) => &mut h.m,
        }
    }

    /// An operation from the handle.
    pub(crate) fn op(&mut self, op: Op, r: &mut Client, now: Now, timeout: Duration) {
        if let Op::Drop { release } = &op {
            self.dropping = true;
            if !release {
                self.detached = true;
                // Detached: leave the lease to expire, but leave no registration behind.
                if let Kind::Lease(h) = &mut self.kind {
                    if h.m.is_observing() {
                        let _ = h.m.observe_stop(Some(timeout), r, now);
                    }
                }
                return;
            }
        }
        match &mut self.kind {
            Kind::Lease(h) => h.op(op, r, now, timeout),
            Kind::Lock(h) => h.op(op, r, now, timeout),
            Kind::Edit(h) => h.op(op, r, now),
            Kind::Leader(h) => h.op(op, r, now),
        }
    }

    /// Answers futures and updates status from the machine's events; returns whether there
    /// were any.
    pub(crate) fn events(
        &mut self,
        r: &mut Client,
        now: Now,
        clock: Clock,
        timeout: Duration,
    ) -> bool {
        match &mut self.kind {
            Kind::Lease(h) => h.events(now, clock),
            Kind::Lock(h) => h.events(r, now, clock, timeout),
            Kind::Edit(h) => h.events(),
            Kind::Leader(h) => h.events(r, now, clock),
        }
    }

    /// Whether the machine can go: its handle is gone (or it was an edit that finished) and it
    /// awaits nothing.
    pub(crate) fn finished(&self, now: Now) -> bool {
        let outstanding = self.machine_outstanding();
        match &self.kind {
            Kind::Edit(h) => h.done && outstanding == 0,
            _ if !self.dropping => false,
            // A detached lease keeps no timer: renewals stop, the store lets it expire.
            _ if self.detached => true,
            Kind::Lease(h) => outstanding == 0 && h.idle(now),
            Kind::Lock(h) => outstanding == 0 && h.idle(now),
            Kind::Leader(h) => outstanding == 0 && h.stopped,
        }
    }

    fn machine_outstanding(&self) -> usize {
        match &self.kind {
            Kind::Lease(h) => h.m.outstanding(),
            Kind::Lock(h) => h.m.outstanding(),
            Kind::Edit(h) => h.m.outstanding(),
            Kind::Leader(h) => h.m.outstanding(),
        }
    }

    pub(crate) fn on_completion(&mut self, c: &Completion, r: &mut Client, now: Now) -> bool {
        self.machine().on_completion(c, r, now)
    }

    pub(crate) fn on_notification(&mut self, n: &Notification, r: &mut Client, now: Now) -> bool {
        self.machine().on_notification(n, r, now)
    }

    pub(crate) fn on_connected(&mut self, r: &mut Client, now: Now) {
        self.machine().on_connected(r, now);
    }

    pub(crate) fn on_disconnected(&mut self, now: Now) {
        self.machine().on_disconnected(now);
    }

    pub(crate) fn on_reregistered(&mut self, key: &[u8], ok: bool, r: &mut Client, now: Now) {
        if let Kind::Lease(h) = &self.kind {
            if let Some((_, tx)) = h.observe.as_ref().filter(|_| !ok) {
                if key == h.m.name().as_ref()
                    && tx.try_send(Err(ObserveError::MayHaveMissed)).is_err()
                {
                    warn!(lease = ?h.m.name(), "observer too slow or gone; lapse not reported");
                }
            }
        }
        self.machine().on_reregistered(key, ok, r, now);
    }

    pub(crate) fn on_timeout(&mut self, r: &mut Client, now: Now) {
        let m = self.machine();
        if m.next_timeout().is_some_and(|t| t <= now.mono) {
            m.on_timeout(r, now);
        }
    }

    pub(crate) fn next_timeout(&mut self) -> Option<Instant> {
        self.machine().next_timeout()
    }
}
