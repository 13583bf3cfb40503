//! The channels of the lease, lock, edit and leader handles: which waiting future gets which
//! answer of the core host, which watch shows a handle's status, where an edit's events and a
//! leader's view go. Every decision is the host's; this only delivers, and reports calls whose
//! caller turned out to be gone so the host can give back what was taken for them.

use std::collections::HashMap;

use futures_channel::oneshot;
use leasedlock_core::edit::EditEvent;
use leasedlock_core::host::{Answer, CallId, HandleId, LeaseChange, Status as HostStatus};
use leasedlock_core::leader::LeaderEvent;
use tracing::warn;

use super::protocol::{MachineKind, Op, Status};
use crate::cancel::CancellationToken;
use crate::clock::Clock;
use crate::error::{LeaderError, LeaseError, LockError, ObserveError};
use crate::view::{Change, LeaderView, Term};
use crate::watch;

/// A future waiting for the answer to a call.
#[derive(Debug)]
pub(crate) enum Waiter {
    Acquire(oneshot::Sender<Result<bool, LeaseError>>),
    Release(oneshot::Sender<Result<leasedlock_core::lease::ReleaseOutcome, LeaseError>>),
    Holder(oneshot::Sender<Result<Option<bytes::Bytes>, LeaseError>>),
    Observe(
        oneshot::Sender<Result<(), LeaseError>>,
        async_channel::Sender<Result<Change, ObserveError>>,
    ),
    Lock(oneshot::Sender<Result<leasedlock_core::hlc::Hlc, LockError>>),
    Unlock(oneshot::Sender<Result<leasedlock_core::lease::ReleaseOutcome, LockError>>),
    Campaign(oneshot::Sender<Result<(), LeaderError>>),
    Resign(oneshot::Sender<Result<(), LeaderError>>),
}

/// Where a handle's non-answer outputs go.
#[derive(Debug)]
enum Sink {
    Status(watch::Sender<Status>),
    Edit(async_channel::Sender<EditEvent>),
    Leader {
        view: watch::Sender<LeaderView>,
        /// The cancellation of the current term's work.
        term: Option<CancellationToken>,
    },
}

/// The channels of every handle.
#[derive(Debug, Default)]
pub(crate) struct Handles {
    sinks: HashMap<HandleId, Sink>,
    waiters: HashMap<(HandleId, CallId), Waiter>,
    /// Running holder observations of lease handles.
    observations: HashMap<(HandleId, CallId), async_channel::Sender<Result<Change, ObserveError>>>,
}

/// Splits a handle's machine request into the host's creation and the channels.
pub(crate) fn split_kind(kind: MachineKind) -> (leasedlock_core::host::Create, SinkInit) {
    use leasedlock_core::host::Create;
    match kind {
        MachineKind::Lease { name, status } => {
            (Create::Lease { name }, SinkInit(Sink::Status(status)))
        }
        MachineKind::Lock { name, status } => {
            (Create::Lock { name }, SinkInit(Sink::Status(status)))
        }
        MachineKind::Edit {
            lock_name,
            key,
            duration,
            options,
            events,
        } => (
            Create::Edit {
                lock_name,
                key,
                duration,
                options,
            },
            SinkInit(Sink::Edit(events)),
        ),
        MachineKind::Leader { name, view } => (
            Create::Leader { name },
            SinkInit(Sink::Leader { view, term: None }),
        ),
    }
}

/// The channels of a handle being created (opaque outside this module).
#[derive(Debug)]
pub(crate) struct SinkInit(Sink);

/// Splits a handle's operation into the host's operation and its waiter. `None` for the
/// operations that are not host operations (abandon, drop): the engine handles those.
pub(crate) fn split_op(op: Op) -> Option<(leasedlock_core::host::Op, Option<Waiter>)> {
    use leasedlock_core::host::Op as H;
    Some(match op {
        Op::Acquire {
            duration,
            options,
            reply,
            ..
        } => (
            H::Acquire { duration, options },
            Some(Waiter::Acquire(reply)),
        ),
        Op::Release { options, reply } => (H::Release { options }, Some(Waiter::Release(reply))),
        Op::Holder { timeout, reply } => (H::Holder { timeout }, Some(Waiter::Holder(reply))),
        Op::ObserveStart { tx, reply, .. } => (H::Observe, Some(Waiter::Observe(reply, tx))),
        Op::Lock {
            duration,
            options,
            reply,
            ..
        } => (H::Lock { duration, options }, Some(Waiter::Lock(reply))),
        Op::Unlock { options, reply } => (H::Unlock { options }, Some(Waiter::Unlock(reply))),
        Op::EditDecide { decision } => (H::Decide { decision }, None),
        Op::Campaign {
            duration,
            options,
            reply,
        } => (
            H::Campaign { duration, options },
            Some(Waiter::Campaign(reply)),
        ),
        Op::Resign { drain_now, reply } => (H::Resign { drain_now }, Some(Waiter::Resign(reply))),
        Op::Drained => (H::Drained, None),
        Op::Abandon { .. } | Op::Drop { .. } => return None,
    })
}

fn status(s: HostStatus, clock: Clock) -> Status {
    match s {
        HostStatus::Held { token, safe_until } => Status::Held {
            token,
            safe_until,
            clock,
        },
        HostStatus::NotHeld(e) => Status::NotHeld(e.into()),
        _ => Status::NotHeld(LeaseError::NoLease),
    }
}

impl Handles {
    /// A handle's machine was created in the host.
    pub(crate) fn created(&mut self, handle: HandleId, sink: SinkInit) {
        self.sinks.insert(handle, sink.0);
    }

    /// A call waits for its answer.
    pub(crate) fn wait(&mut self, handle: HandleId, call: CallId, waiter: Waiter) {
        self.waiters.insert((handle, call), waiter);
    }

    /// The caller of `call` gave up: its waiter and its stream go.
    pub(crate) fn abandoned(&mut self, handle: HandleId, call: CallId) {
        self.waiters.remove(&(handle, call));
        self.observations.remove(&(handle, call));
    }

    /// A refused call: its caller gets `Closed` (the dropped waiter).
    pub(crate) fn refused(&mut self, handle: HandleId, call: CallId) {
        self.waiters.remove(&(handle, call));
    }

    /// A refused creation: the handle's channels close.
    pub(crate) fn gone(&mut self, handle: HandleId) {
        self.sinks.remove(&handle);
        self.waiters.retain(|(h, _), _| *h != handle);
        self.observations.retain(|(h, _), _| *h != handle);
    }

    /// Delivers an answer; returns `false` when its caller is gone (the host must hear it).
    pub(crate) fn answer(&mut self, handle: HandleId, call: CallId, answer: Answer) -> bool {
        let Some(waiter) = self.waiters.remove(&(handle, call)) else {
            return false;
        };
        match (waiter, answer) {
            (Waiter::Acquire(w), Answer::Acquire(r)) => w.send(r.map_err(Into::into)).is_ok(),
            (Waiter::Release(w), Answer::Release(r)) => w.send(r.map_err(Into::into)).is_ok(),
            (Waiter::Holder(w), Answer::Holder(r)) => w.send(r.map_err(Into::into)).is_ok(),
            (Waiter::Observe(w, tx), Answer::Observe(r)) => {
                if r.is_ok() {
                    self.observations.insert((handle, call), tx);
                }
                w.send(r.map_err(Into::into)).is_ok()
            }
            (Waiter::Lock(w), Answer::Lock(r)) => w.send(r.map_err(Into::into)).is_ok(),
            (Waiter::Unlock(w), Answer::Unlock(r)) => w.send(r.map_err(Into::into)).is_ok(),
            (Waiter::Campaign(w), Answer::Campaign(r)) => {
                if r.is_ok() {
                    self.campaigning(handle);
                }
                w.send(r.map_err(Into::into)).is_ok()
            }
            (Waiter::Resign(w), Answer::Resign(r)) => w.send(r.map_err(Into::into)).is_ok(),
            (waiter, answer) => {
                warn!(
                    ?waiter,
                    ?answer,
                    "answer of another kind than its call: dropped"
                );
                true
            }
        }
    }

    /// A new status of a lease or lock handle.
    pub(crate) fn status(&mut self, handle: HandleId, s: HostStatus, clock: Clock) {
        if let Some(Sink::Status(tx)) = self.sinks.get(&handle) {
            let s = status(s, clock);
            tx.send_if_modified(|old| {
                let changed = *old != s;
                *old = s;
                changed
            });
        }
    }

    /// An item of a lease's holder observation; returns `false` when the stream is gone
    /// (the host must stop the observation).
    pub(crate) fn lease_change(
        &mut self,
        handle: HandleId,
        call: CallId,
        change: LeaseChange,
    ) -> bool {
        let Some(tx) = self.observations.get(&(handle, call)) else {
            return true;
        };
        let item = match change {
            LeaseChange::Holder { held, holder } => Ok(Change { held, holder }),
            LeaseChange::MayHaveMissed => Err(ObserveError::MayHaveMissed),
            other => {
                warn!(?other, "unknown lease observation item");
                return true;
            }
        };
        match tx.try_send(item) {
            Ok(()) => true,
            Err(async_channel::TrySendError::Full(_)) => {
                warn!(?handle, "observer too slow; change dropped");
                true
            }
            Err(async_channel::TrySendError::Closed(_)) => {
                self.observations.remove(&(handle, call));
                false
            }
        }
    }

    /// An edit's event.
    pub(crate) fn edit(&mut self, handle: HandleId, event: EditEvent) {
        if let Some(Sink::Edit(tx)) = self.sinks.get(&handle) {
            let _ = tx.try_send(event);
        }
    }

    /// A leader's event, shown in its view.
    pub(crate) fn leader(&mut self, handle: HandleId, event: LeaderEvent, clock: Clock) {
        let Some(Sink::Leader { view, term }) = self.sinks.get_mut(&handle) else {
            return;
        };
        match event {
            LeaderEvent::Elected { token, safe_until } => {
                let cancel = CancellationToken::new();
                *term = Some(cancel.clone());
                view.send_modify(|v| {
                    v.terms += 1;
                    v.term = Some(Term::new(token, safe_until, clock, cancel, v.terms));
                });
            }
            LeaderEvent::Renewed { token, safe_until } => view.send_modify(|v| {
                if let Some(t) = &mut v.term {
                    t.renewed(token, safe_until);
                }
            }),
            LeaderEvent::Deposed { reason } => {
                warn!(?reason, "deposed");
                if let Some(t) = term.take() {
                    t.cancel();
                }
                view.send_modify(|v| {
                    v.term = None;
                    v.deposed = Some((v.terms, reason));
                });
            }
            LeaderEvent::LeaderIs { holder } => view.send_modify(|v| v.leader = holder),
            LeaderEvent::Draining => {
                // The term's work must stop now; the lease is still renewed meanwhile.
                if let Some(t) = term.as_ref() {
                    t.cancel();
                }
            }
            LeaderEvent::Stopped { error } => {
                if let Some(t) = term.take() {
                    t.cancel();
                }
                let error = error.map(LeaderError::from);
                view.send_modify(|v| {
                    v.term = None;
                    v.stopped = Some(error);
                });
            }
            other => warn!(event = ?other, "unknown leader event"),
        }
    }

    /// A campaign started: the view no longer shows it stopped.
    pub(crate) fn campaigning(&mut self, handle: HandleId) {
        if let Some(Sink::Leader { view, .. }) = self.sinks.get(&handle) {
            view.send_modify(|v| v.stopped = None);
        }
    }
}
