//! One handle's machine and the bookkeeping of its operations: which call each machine
//! operation answers, what a dropped handle or an abandoned call must give back.
//!
//! No lease logic lives here: every decision (renewal, loss, herd control, release order) is
//! the machine's. This decides only who is answered and what is released for whom.

use alloc::collections::BTreeMap;
use bytes::Bytes;
use core::time::Duration;

use super::{Answer, CallId, Create, Emit, HostOutput, LeaseChange, Op, Refused, Status};
use crate::client::{Completion, Notification, Requester};
use crate::edit::{Edit, EditEvent};
use crate::leader::{Leader, LeaderError, LeaderEvent};
use crate::lease::{Lease, LeaseError, LeaseEvent, LeaseOptions, LeaseState, OpId};
use crate::lock::{Lock, LockError, LockEvent};
use crate::machine::Machine;
use crate::time::{Instant, Now};

fn release_options(timeout: Duration) -> LeaseOptions {
    LeaseOptions {
        timeout: Some(timeout),
        ..LeaseOptions::default()
    }
}

fn status_of(lease: &Lease, now: Now) -> Status {
    match lease.state(now.mono) {
        LeaseState::Held { token, safe_until } => Status::Held { token, safe_until },
        _ => Status::NotHeld(lease.token(now.mono).err().unwrap_or(LeaseError::NoLease)),
    }
}

/// What a lease call waits for.
#[derive(Debug, Clone, Copy)]
enum LeaseCall {
    Acquire(CallId),
    Release(CallId),
    Holder(CallId),
    Observe(CallId),
}

#[derive(Debug)]
struct LeaseSlot {
    m: Lease,
    ops: BTreeMap<OpId, LeaseCall>,
    /// The last acquire: its call, operation, and whether we held before it.
    acquire: Option<(CallId, OpId, bool)>,
    /// The call whose observation is running.
    observe: Option<CallId>,
}

impl LeaseSlot {
    fn op(
        &mut self,
        call: CallId,
        op: Op,
        r: &mut dyn Requester,
        now: Now,
        timeout: Duration,
        out: &mut Emit<'_>,
    ) {
        match op {
            Op::Acquire { duration, options } => {
                let was_held = matches!(self.m.state(now.mono), LeaseState::Held { .. });
                match self.m.acquire(duration, &options, r, now) {
                    Ok(op) => {
                        self.ops.insert(op, LeaseCall::Acquire(call));
                        self.acquire = Some((call, op, was_held));
                    }
                    Err(e) => out.answer(call, Answer::Acquire(Err(e))),
                }
            }
            Op::Release { options } => match self.m.release(&options, r, now) {
                Ok(op) => {
                    self.ops.insert(op, LeaseCall::Release(call));
                }
                Err(e) => out.answer(call, Answer::Release(Err(e))),
            },
            Op::Holder { timeout } => match self.m.holder(timeout, r, now) {
                Ok(op) => {
                    self.ops.insert(op, LeaseCall::Holder(call));
                }
                Err(e) => out.answer(call, Answer::Holder(Err(e))),
            },
            Op::Observe => {
                if self.observe.is_some() {
                    out.answer(call, Answer::Observe(Err(LeaseError::AlreadyObserving)));
                    return;
                }
                match self.m.observe_start(Some(timeout), r, now) {
                    Ok(op) => {
                        self.ops.insert(op, LeaseCall::Observe(call));
                        self.observe = Some(call);
                    }
                    Err(e) => out.answer(call, Answer::Observe(Err(e))),
                }
            }
            _ => out.push(|handle| HostOutput::Refused(Refused::Op(handle, call))),
        }
    }

    fn abandon(&mut self, call: CallId, r: &mut dyn Requester, now: Now, timeout: Duration) {
        if self.observe == Some(call) {
            self.observe = None;
            let _ = self.m.observe_stop(Some(timeout), r, now);
        }
        self.ops.retain(
            |_, c| !matches!(c, LeaseCall::Holder(x) | LeaseCall::Release(x) if *x == call),
        );
        if let Some((c, op, was_held)) = self.acquire {
            if c == call {
                self.acquire = None;
                let pending = self.ops.remove(&op).is_some();
                let ours = matches!(
                    self.m.state(now.mono),
                    LeaseState::Held { .. } | LeaseState::MaybeHeld
                );
                // Whoever gave up on this acquire must not be left holding a lease it never
                // heard of: release what it may have taken.
                if pending || (ours && !was_held) {
                    let _ = self.m.release(&release_options(timeout), r, now);
                }
            }
        }
    }

    fn drop_handle(&mut self, release: bool, r: &mut dyn Requester, now: Now, timeout: Duration) {
        if self.observe.take().is_some() || self.m.is_observing() {
            let _ = self.m.observe_stop(Some(timeout), r, now);
        }
        let ours = matches!(
            self.m.state(now.mono),
            LeaseState::Held { .. } | LeaseState::MaybeHeld | LeaseState::Acquiring
        );
        if release && ours {
            let _ = self.m.release(&release_options(timeout), r, now);
        }
    }

    fn collect(&mut self, out: &mut Emit<'_>) {
        while let Some(event) = self.m.poll_event() {
            let take = |ops: &mut BTreeMap<OpId, LeaseCall>, op: &OpId| ops.remove(op);
            match event {
                LeaseEvent::Acquired { op, .. } => {
                    if let Some(LeaseCall::Acquire(c)) = take(&mut self.ops, &op) {
                        out.answer(c, Answer::Acquire(Ok(true)));
                    }
                }
                LeaseEvent::NotAcquired { op } => {
                    if let Some(LeaseCall::Acquire(c)) = take(&mut self.ops, &op) {
                        out.answer(c, Answer::Acquire(Ok(false)));
                    }
                }
                LeaseEvent::AcquireFailed { op, error } => {
                    if let Some(LeaseCall::Acquire(c)) = take(&mut self.ops, &op) {
                        out.answer(c, Answer::Acquire(Err(error)));
                    }
                }
                LeaseEvent::Released { op, result } => {
                    if let Some(LeaseCall::Release(c)) = take(&mut self.ops, &op) {
                        out.answer(c, Answer::Release(result));
                    }
                }
                LeaseEvent::Holder { op, result } => {
                    if let Some(LeaseCall::Holder(c)) = take(&mut self.ops, &op) {
                        out.answer(c, Answer::Holder(result));
                    }
                }
                LeaseEvent::ObserveStarted { op, result } => {
                    if result.is_err() {
                        self.observe = None;
                    }
                    if let Some(LeaseCall::Observe(c)) = take(&mut self.ops, &op) {
                        out.answer(c, Answer::Observe(result));
                    }
                }
                LeaseEvent::Change { held, holder } => {
                    if let Some(call) = self.observe {
                        out.push(|handle| HostOutput::LeaseChange {
                            handle,
                            call,
                            change: LeaseChange::Holder { held, holder },
                        });
                    }
                }
                _ => {}
            }
        }
    }

    fn on_reregistered(&mut self, key: &[u8], ok: bool, out: &mut Emit<'_>) {
        if let Some(call) = self
            .observe
            .filter(|_| !ok && key == self.m.name().as_ref())
        {
            out.push(|handle| HostOutput::LeaseChange {
                handle,
                call,
                change: LeaseChange::MayHaveMissed,
            });
        }
    }

    fn idle(&self, now: Now) -> bool {
        !self.m.is_observing()
            && !self.m.unregistration_pending()
            && matches!(self.m.state(now.mono), LeaseState::Idle)
    }
}

#[derive(Debug)]
struct LockSlot {
    m: Lock,
    /// The `lock` call waiting for the lock, while its caller waits.
    lock: Option<CallId>,
    /// The last `lock` call, answered or not.
    last_lock: Option<CallId>,
    unlock: Option<CallId>,
}

impl LockSlot {
    fn op(&mut self, call: CallId, op: Op, r: &mut dyn Requester, now: Now, out: &mut Emit<'_>) {
        match op {
            Op::Lock { duration, options } => match self.m.lock(duration, &options, r, now) {
                Ok(()) => {
                    self.lock = Some(call);
                    self.last_lock = Some(call);
                }
                Err(e) => out.answer(call, Answer::Lock(Err(e))),
            },
            Op::Unlock { options } => {
                if self.m.is_waiting() {
                    self.m.cancel(r, now);
                    out.answer(call, Answer::Unlock(Err(LockError::NotLocked)));
                    return;
                }
                match self.m.unlock(&options, r, now) {
                    Ok(()) => self.unlock = Some(call),
                    Err(e) => out.answer(call, Answer::Unlock(Err(e))),
                }
            }
            _ => out.push(|handle| HostOutput::Refused(Refused::Op(handle, call))),
        }
    }

    fn abandon(&mut self, call: CallId, r: &mut dyn Requester, now: Now, timeout: Duration) {
        if self.unlock == Some(call) {
            self.unlock = None;
        }
        if self.last_lock != Some(call) {
            return;
        }
        self.lock = None;
        if self.m.is_waiting() {
            // A dropped wait unregisters its KEYNOTIFY (the machine's cancel).
            self.m.cancel(r, now);
        } else if self.m.is_held(now.mono) {
            // Taken for a caller that is gone: do not keep it.
            let _ = self.m.unlock(&release_options(timeout), r, now);
        }
    }

    fn drop_handle(&mut self, release: bool, r: &mut dyn Requester, now: Now, timeout: Duration) {
        if self.m.is_waiting() {
            self.m.cancel(r, now);
        } else if release && !matches!(self.m.lease().state(now.mono), LeaseState::Idle) {
            let _ = self.m.unlock(&release_options(timeout), r, now);
        }
        // A holder watch outlives the hold (`LockOptions::watch_holder`): nobody reads it now.
        self.m.stop_watching(Some(timeout), r, now);
    }

    fn collect(&mut self, r: &mut dyn Requester, now: Now, timeout: Duration, out: &mut Emit<'_>) {
        while let Some(event) = self.m.poll_event() {
            match event {
                LockEvent::Locked { token, .. } => match self.lock.take() {
                    Some(call) => out.answer(call, Answer::Lock(Ok(token))),
                    // Nobody is waiting for this lock any more: do not keep it.
                    None => {
                        let _ = self.m.unlock(&release_options(timeout), r, now);
                    }
                },
                LockEvent::LockFailed { error } => {
                    if let Some(call) = self.lock.take() {
                        out.answer(call, Answer::Lock(Err(error)));
                    }
                }
                LockEvent::Unlocked { result } => {
                    if let Some(call) = self.unlock.take() {
                        out.answer(call, Answer::Unlock(result.map_err(LockError::Lease)));
                    }
                }
                _ => {}
            }
        }
    }

    fn idle(&self, now: Now) -> bool {
        !self.m.is_waiting()
            && !self.m.lease().is_observing()
            && !self.m.lease().unregistration_pending()
            && matches!(self.m.lease().state(now.mono), LeaseState::Idle)
    }
}

#[derive(Debug)]
struct EditSlot {
    m: Edit,
    /// The start failed: this `Done` is still to be given out.
    failed: Option<EditEvent>,
    done: bool,
}

impl EditSlot {
    fn op(&mut self, call: CallId, op: Op, r: &mut dyn Requester, now: Now, out: &mut Emit<'_>) {
        match op {
            Op::Decide { decision } => {
                if let Err(e) = self.m.decide(decision, r, now) {
                    self.done = true;
                    out.push(|handle| HostOutput::Edit {
                        handle,
                        event: EditEvent::Done { result: Err(e) },
                    });
                }
            }
            _ => out.push(|handle| HostOutput::Refused(Refused::Op(handle, call))),
        }
    }

    fn stop(&mut self, r: &mut dyn Requester, now: Now) {
        // Unless the write is already in flight (then the edit finishes and unlocks by
        // itself), stop and unlock.
        self.m.cancel(r, now);
    }

    fn collect(&mut self, out: &mut Emit<'_>) {
        if let Some(event) = self.failed.take() {
            self.done = true;
            out.push(|handle| HostOutput::Edit { handle, event });
        }
        while let Some(event) = self.m.poll_event() {
            if matches!(event, EditEvent::Done { .. }) {
                self.done = true;
            }
            out.push(|handle| HostOutput::Edit { handle, event });
        }
    }
}

#[derive(Debug)]
struct LeaderSlot {
    m: Leader,
    resign: alloc::vec::Vec<CallId>,
    drain_now: bool,
    stopped: bool,
}

impl LeaderSlot {
    fn op(&mut self, call: CallId, op: Op, r: &mut dyn Requester, now: Now, out: &mut Emit<'_>) {
        match op {
            Op::Campaign { duration, options } => {
                let result = self.m.campaign(duration, &options, r, now);
                if result.is_ok() {
                    self.stopped = false;
                }
                out.answer(call, Answer::Campaign(result));
            }
            Op::Resign { drain_now } => match self.m.resign(r, now) {
                Ok(()) => {
                    self.drain_now |= drain_now;
                    self.resign.push(call);
                }
                Err(e) => out.answer(call, Answer::Resign(Err(e))),
            },
            Op::Drained => {
                let _ = self.m.drained(r, now);
            }
            _ => out.push(|handle| HostOutput::Refused(Refused::Op(handle, call))),
        }
    }

    fn stop(&mut self, r: &mut dyn Requester, now: Now) {
        if !self.stopped {
            self.drain_now = true;
            if self.m.resign(r, now).is_err() {
                // Already draining: release now.
                let _ = self.m.drained(r, now);
            }
        }
    }

    fn collect(&mut self, r: &mut dyn Requester, now: Now, out: &mut Emit<'_>) {
        while let Some(event) = self.m.poll_event() {
            match &event {
                LeaderEvent::Draining if self.drain_now => {
                    let _ = self.m.drained(r, now);
                }
                LeaderEvent::Stopped { error } => {
                    self.stopped = true;
                    self.drain_now = false;
                    for call in self.resign.drain(..) {
                        let result = match error {
                            None => Ok(()),
                            Some(e) => Err::<(), LeaderError>(e.clone()),
                        };
                        out.answer(call, Answer::Resign(result));
                    }
                }
                _ => {}
            }
            out.push(|handle| HostOutput::Leader { handle, event });
        }
    }
}

#[derive(Debug)]
enum Kind {
    Lease(LeaseSlot),
    Lock(LockSlot),
    Edit(EditSlot),
    Leader(LeaderSlot),
}

/// One machine and the bookkeeping of its handle.
#[derive(Debug)]
pub(super) struct Slot {
    kind: Kind,
    key: Bytes,
    /// The last status given out (lease and lock).
    status: Option<Status>,
    /// The deadline entered in the host's timer table.
    armed: Option<Instant>,
    /// The handle is gone: remove the machine once it has nothing left to do.
    dropping: bool,
    /// The handle was detached: nothing is released.
    detached: bool,
}

impl Slot {
    /// The machine for a new handle (an edit starts at once). An edit that cannot even be
    /// made gives its `Done` event instead; another machine that cannot be made (an empty
    /// name: the handles check it first) gives nothing.
    pub(super) fn new(
        create: Create,
        seed: u64,
        r: &mut dyn Requester,
        now: Now,
    ) -> Result<Slot, Option<EditEvent>> {
        let done = |e| Some(EditEvent::Done { result: Err(e) });
        let (kind, key) = match create {
            Create::Lease { name } => {
                let m = Lease::new(name.clone()).map_err(|_| None)?;
                let slot = LeaseSlot {
                    m,
                    ops: BTreeMap::new(),
                    acquire: None,
                    observe: None,
                };
                (Kind::Lease(slot), name)
            }
            Create::Lock { name } => {
                let m = Lock::new(name.clone(), seed).map_err(|_| None)?;
                let slot = LockSlot {
                    m,
                    lock: None,
                    last_lock: None,
                    unlock: None,
                };
                (Kind::Lock(slot), name)
            }
            Create::Edit {
                lock_name,
                key,
                duration,
                options,
            } => {
                let mut m = Edit::new(lock_name.clone(), key, seed).map_err(done)?;
                let failed = m
                    .start(duration, options.as_ref(), r, now)
                    .err()
                    .and_then(done);
                let slot = EditSlot {
                    m,
                    failed,
                    done: false,
                };
                (Kind::Edit(slot), lock_name)
            }
            Create::Leader { name } => {
                let m = Leader::new(name.clone(), seed).map_err(|_| None)?;
                let slot = LeaderSlot {
                    m,
                    resign: alloc::vec::Vec::new(),
                    drain_now: false,
                    stopped: true,
                };
                (Kind::Leader(slot), name)
            }
        };
        Ok(Slot {
            kind,
            key,
            status: None,
            armed: None,
            dropping: false,
            detached: false,
        })
    }

    /// The key the machine is named after: its notifications are this key's.
    pub(super) fn key(&self) -> &Bytes {
        &self.key
    }

    fn machine(&mut self) -> &mut dyn Machine {
        match &mut self.kind {
            Kind::Lease(s) => &mut s.m,
            Kind::Lock(s) => &mut s.m,
            Kind::Edit(s) => &mut s.m,
            Kind::Leader(s) => &mut s.m,
        }
    }

    pub(super) fn op(
        &mut self,
        call: CallId,
        op: Op,
        r: &mut dyn Requester,
        now: Now,
        timeout: Duration,
        out: &mut Emit<'_>,
    ) {
        if self.dropping {
            out.push(|handle| HostOutput::Refused(Refused::Op(handle, call)));
            return;
        }
        match &mut self.kind {
            Kind::Lease(s) => s.op(call, op, r, now, timeout, out),
            Kind::Lock(s) => s.op(call, op, r, now, out),
            Kind::Edit(s) => s.op(call, op, r, now, out),
            Kind::Leader(s) => s.op(call, op, r, now, out),
        }
    }

    pub(super) fn abandon(
        &mut self,
        call: CallId,
        r: &mut dyn Requester,
        now: Now,
        timeout: Duration,
    ) {
        match &mut self.kind {
            Kind::Lease(s) => s.abandon(call, r, now, timeout),
            Kind::Lock(s) => s.abandon(call, r, now, timeout),
            Kind::Edit(s) => s.stop(r, now),
            Kind::Leader(s) => s.stop(r, now),
        }
    }

    pub(super) fn drop_handle(
        &mut self,
        release: bool,
        r: &mut dyn Requester,
        now: Now,
        timeout: Duration,
    ) {
        if self.dropping {
            return;
        }
        self.dropping = true;
        // Only a lease or a lock can be left to expire: an edit or a campaign has no lease
        // of its own to leave behind, so dropping one always stops it.
        if !release && matches!(self.kind, Kind::Lease(_) | Kind::Lock(_)) {
            self.detached = true;
            // Detached: leave the lease to expire, but leave no wait and no registration
            // behind.
            // The machine may stay for its cleanup STOP, through a reconnect: nothing of it
            // may renew the lease meanwhile.
            match &mut self.kind {
                Kind::Lease(s) => {
                    s.m.stop_renewing();
                    if s.m.is_observing() {
                        let _ = s.m.observe_stop(Some(timeout), r, now);
                    }
                }
                Kind::Lock(s) => {
                    s.m.stop_renewing();
                    if s.m.is_waiting() {
                        s.m.cancel(r, now);
                    }
                    s.m.stop_watching(Some(timeout), r, now);
                }
                _ => {}
            }
            return;
        }
        match &mut self.kind {
            Kind::Lease(s) => s.drop_handle(true, r, now, timeout),
            Kind::Lock(s) => s.drop_handle(true, r, now, timeout),
            Kind::Edit(s) => s.stop(r, now),
            Kind::Leader(s) => s.stop(r, now),
        }
    }

    /// Turns the machine's events into outputs: the status first (a caller woken by an
    /// answer must already see it), then the answers, then the status again if answering
    /// changed it.
    pub(super) fn collect(
        &mut self,
        r: &mut dyn Requester,
        now: Now,
        timeout: Duration,
        out: &mut Emit<'_>,
    ) {
        self.publish_status(now, out);
        match &mut self.kind {
            Kind::Lease(s) => s.collect(out),
            Kind::Lock(s) => s.collect(r, now, timeout, out),
            Kind::Edit(s) => s.collect(out),
            Kind::Leader(s) => s.collect(r, now, out),
        }
        self.publish_status(now, out);
    }

    fn publish_status(&mut self, now: Now, out: &mut Emit<'_>) {
        let status = match &self.kind {
            Kind::Lease(s) => status_of(&s.m, now),
            Kind::Lock(s) => status_of(s.m.lease(), now),
            Kind::Edit(_) | Kind::Leader(_) => return,
        };
        if self.status.as_ref() != Some(&status) {
            self.status = Some(status.clone());
            out.push(|handle| HostOutput::Status { handle, status });
        }
    }

    /// Whether the machine can go: its handle is gone (or it is an edit that finished) and
    /// it awaits nothing.
    pub(super) fn finished(&self, now: Now) -> bool {
        let outstanding = match &self.kind {
            Kind::Lease(s) => s.m.outstanding(),
            Kind::Lock(s) => s.m.outstanding(),
            Kind::Edit(s) => s.m.outstanding(),
            Kind::Leader(s) => s.m.outstanding(),
        };
        match &self.kind {
            Kind::Edit(s) => s.done && s.failed.is_none() && outstanding == 0,
            _ if !self.dropping => false,
            // A detached lease runs no timer of its own (renewals stop, the store lets it
            // expire); it stays only while a KEYNOTIFY of its wait may still land and need
            // its STOP, or the store keeps that registration for the connection's lifetime.
            _ if self.detached => !self.unregistration_pending(),
            Kind::Lease(s) => outstanding == 0 && s.idle(now),
            Kind::Lock(s) => outstanding == 0 && s.idle(now),
            Kind::Leader(s) => outstanding == 0 && s.stopped,
        }
    }

    pub(super) fn on_completion(
        &mut self,
        c: &Completion,
        r: &mut dyn Requester,
        now: Now,
        _out: &mut Emit<'_>,
    ) {
        self.machine().on_completion(c, r, now);
    }

    pub(super) fn on_notification(
        &mut self,
        n: &Notification,
        r: &mut dyn Requester,
        now: Now,
        _out: &mut Emit<'_>,
    ) {
        self.machine().on_notification(n, r, now);
    }

    pub(super) fn on_reregistered(
        &mut self,
        key: &[u8],
        ok: bool,
        r: &mut dyn Requester,
        now: Now,
        out: &mut Emit<'_>,
    ) {
        if let Kind::Lease(s) = &mut self.kind {
            s.on_reregistered(key, ok, out);
        }
        self.machine().on_reregistered(key, ok, r, now);
    }

    pub(super) fn on_connected(&mut self, r: &mut dyn Requester, now: Now) {
        self.machine().on_connected(r, now);
    }

    pub(super) fn on_disconnected(&mut self, now: Now) {
        self.machine().on_disconnected(now);
    }

    pub(super) fn on_timeout(&mut self, r: &mut dyn Requester, now: Now) {
        if self.detached {
            match &mut self.kind {
                Kind::Lease(s) => s.m.handle_unregistration_timeout(r, now),
                Kind::Lock(s) => s.m.handle_unregistration_timeout(r, now),
                Kind::Edit(_) | Kind::Leader(_) => {}
            }
            return;
        }
        let m = self.machine();
        if m.next_timeout().is_some_and(|t| t <= now.mono) {
            m.on_timeout(r, now);
        }
    }

    /// The deadline entered in the timer table, if any.
    pub(super) fn armed(&self) -> Option<Instant> {
        self.armed
    }

    /// Its entry left the timer table.
    pub(super) fn disarm(&mut self) {
        self.armed = None;
    }

    /// A detached lease's or lock's cleanup STOP is still to come (see [`Slot::finished`]).
    fn unregistration_pending(&self) -> bool {
        match &self.kind {
            Kind::Lease(s) => s.m.unregistration_pending(),
            Kind::Lock(s) => s.m.lease().unregistration_pending(),
            Kind::Edit(_) | Kind::Leader(_) => false,
        }
    }

    /// Reads the machine's deadline for the timer table (a detached machine keeps only its
    /// cleanup STOP's).
    pub(super) fn arm(&mut self) -> Option<Instant> {
        self.armed = if self.detached {
            match &self.kind {
                Kind::Lease(s) => s.m.unregistration_at(),
                Kind::Lock(s) => s.m.lease().unregistration_at(),
                Kind::Edit(_) | Kind::Leader(_) => None,
            }
        } else {
            self.machine().next_timeout()
        };
        self.armed
    }
}
