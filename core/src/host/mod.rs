//! The client host: everything one connection does for its users, as a pure state machine.
//!
//! A [`Host`] owns every lease, lock, edit and leader machine of one connection (in an ordered
//! map keyed by [`HandleId`], so a fixed seed gives a fixed order), the direct requests of
//! callers, and the fan-out of key notifications to observation streams. It is what the
//! adapters run and exactly what the simulator and the fuzz targets drive.
//!
//! Inputs are plain values: user operations ([`Host::create`], [`Host::op`],
//! [`Host::abandon`], [`Host::drop_handle`], [`Host::request`], [`Host::observe`],
//! [`Host::unobserve`], [`Host::close`]) and the state-store client's outputs
//! ([`Host::handle_output`]) and timer ticks ([`Host::handle_timeout`]), each with the time.
//! Outputs are plain values too ([`Host::poll_output`]): answers to operations, status
//! changes, stream items, machines that are gone. No channels, no wakers, no clock.
//!
//! The host does not own the [`Client`](crate::client::Client): every input that may send
//! takes the requester, so the adapters keep the client next to their transport and the
//! simulator keeps it next to its network (with its request tracking). The client's network
//! outputs (publish, subscribe) go to the transport; every other output goes to
//! [`Host::handle_output`].
//!
//! Routing is by owner, never by asking every machine: each request a machine or a caller
//! sends is recorded with its owner when it leaves, so a completion goes straight to it;
//! notifications and re-registrations go to the machines named after the key; timers sit in
//! one ordered table. Only a reconnect or a disconnect reaches every machine.

mod slot;
mod streams;
#[cfg(test)]
mod tests;

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use bytes::Bytes;
use core::time::Duration;

use crate::client::{
    Completion, Output, Recording, RequestError, RequestId, RequestOptions, Requester,
};
use crate::command::Request;
use crate::edit::{EditDecision, EditEvent};
use crate::hlc::Hlc;
use crate::leader::{LeaderError, LeaderEvent, LeaderOptions};
use crate::lease::{LeaseError, LeaseOptions, ReleaseOutcome};
use crate::lock::{LockError, LockOptions};
use crate::observe;
use crate::time::{Instant, Now};

use slot::Slot;
use streams::Streams;

/// A user handle (lease, lock, edit or leader), chosen by the caller; unique per host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HandleId(pub u64);

/// One operation of a caller, chosen by the caller; its answer carries it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallId(pub u64);

/// One observation stream of a key, chosen by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(pub u64);

/// Settings of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostConfig {
    /// Seeds each machine's randomness (jitter), mixed with its handle id.
    pub seed: u64,
    /// The timeout of the requests the host makes by itself: releases when a handle is
    /// dropped or an operation abandoned, KEYNOTIFY STOPs, re-reads after a reconnect. It is
    /// also the grace period of [`Host::close`].
    pub request_timeout: Duration,
}

/// The machine a new handle wants.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Create {
    /// A lease on `name`.
    Lease {
        /// The lease key.
        name: Bytes,
    },
    /// A lock on `name`.
    Lock {
        /// The lock's lease key.
        name: Bytes,
    },
    /// An edit of `key` under the lock `lock_name`; it starts at once.
    Edit {
        /// The lock's lease key.
        lock_name: Bytes,
        /// The key edited.
        key: Bytes,
        /// The lock's lease duration.
        duration: Duration,
        /// The lock's options.
        options: alloc::boxed::Box<LockOptions>,
    },
    /// A leader election on `name`.
    Leader {
        /// The election's lease key.
        name: Bytes,
    },
}

/// An operation on a handle's machine.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Op {
    /// Lease: acquire for `duration`. Answered by [`Answer::Acquire`].
    Acquire {
        /// Lease duration.
        duration: Duration,
        /// Options.
        options: LeaseOptions,
    },
    /// Lease: release. Answered by [`Answer::Release`].
    Release {
        /// Options.
        options: LeaseOptions,
    },
    /// Lease: read the holder. Answered by [`Answer::Holder`].
    Holder {
        /// Request timeout.
        timeout: Option<Duration>,
    },
    /// Lease: observe its holder. Answered by [`Answer::Observe`]; the changes follow as
    /// [`HostOutput::LeaseChange`] until the call is abandoned or the handle dropped.
    Observe,
    /// Lock: wait for the lock. Answered by [`Answer::Lock`].
    Lock {
        /// Lease duration.
        duration: Duration,
        /// Options.
        options: LockOptions,
    },
    /// Lock: unlock (or cancel the wait). Answered by [`Answer::Unlock`].
    Unlock {
        /// Options.
        options: LeaseOptions,
    },
    /// Edit: the decision on the value handed out by [`EditEvent::Requested`]. No answer: the
    /// edit goes on with [`HostOutput::Edit`] events.
    Decide {
        /// The decision.
        decision: EditDecision,
    },
    /// Leader: campaign. Answered at once by [`Answer::Campaign`].
    Campaign {
        /// Lease duration.
        duration: Duration,
        /// Options.
        options: LeaderOptions,
    },
    /// Leader: resign; with `drain_now` the lease is released as soon as draining starts.
    /// Answered by [`Answer::Resign`] when the campaign has stopped.
    Resign {
        /// Release without waiting for [`Op::Drained`].
        drain_now: bool,
    },
    /// Leader: the term's work has stopped; release. No answer.
    Drained,
}

/// The answer to an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Answer {
    /// [`Op::Acquire`]: held (`true`) or held by someone else (`false`).
    Acquire(Result<bool, LeaseError>),
    /// [`Op::Release`].
    Release(Result<ReleaseOutcome, LeaseError>),
    /// [`Op::Holder`]: the holder, `None` when free.
    Holder(Result<Option<Bytes>, LeaseError>),
    /// [`Op::Observe`]: observing.
    Observe(Result<(), LeaseError>),
    /// [`Op::Lock`]: the fencing token of the lock.
    Lock(Result<Hlc, LockError>),
    /// [`Op::Unlock`].
    Unlock(Result<ReleaseOutcome, LockError>),
    /// [`Op::Campaign`].
    Campaign(Result<(), LeaderError>),
    /// [`Op::Resign`]: the campaign stopped (with its error, if it failed).
    Resign(Result<(), LeaderError>),
}

/// What a lease or lock handle shows without a round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Held until `safe_until`, on the clock the host is fed.
    Held {
        /// Fencing token.
        token: Hlc,
        /// Until when acting as the holder is safe.
        safe_until: Instant,
    },
    /// Not held, and why.
    NotHeld(LeaseError),
}

/// An item of a lease's holder observation ([`Op::Observe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LeaseChange {
    /// The holder changed.
    Holder {
        /// Whether someone holds it.
        held: bool,
        /// The holder value, if held.
        holder: Option<Bytes>,
    },
    /// The key's registration lapsed after a reconnect: changes may go unseen until it is
    /// renewed.
    MayHaveMissed,
}

/// What the host tells its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostOutput {
    /// The answer to operation `call` of `handle`.
    Answer {
        /// The handle.
        handle: HandleId,
        /// The operation.
        call: CallId,
        /// The answer.
        answer: Answer,
    },
    /// Something was refused without running: the host is closing, the handle is unknown or
    /// gone, or the operation does not apply to it.
    Refused(Refused),
    /// The status of a lease or lock handle changed. Given before any answer that follows
    /// from the same input, so a woken caller already sees it.
    Status {
        /// The handle.
        handle: HandleId,
        /// The new status.
        status: Status,
    },
    /// An item of the holder observation started by `call` of `handle`.
    LeaseChange {
        /// The handle.
        handle: HandleId,
        /// The observe call.
        call: CallId,
        /// The item.
        change: LeaseChange,
    },
    /// An edit's event.
    Edit {
        /// The handle.
        handle: HandleId,
        /// The event.
        event: EditEvent,
    },
    /// A leader's event.
    Leader {
        /// The handle.
        handle: HandleId,
        /// The event.
        event: LeaderEvent,
    },
    /// The machine of a dropped handle (or a finished edit) has nothing left to do and is
    /// gone; nothing more comes for `handle`. Its calls still unanswered (a detached
    /// handle's, say) end with it.
    Gone {
        /// The handle.
        handle: HandleId,
    },
    /// The completion of a caller's direct request ([`Host::request`]).
    Reply {
        /// The request's call.
        call: CallId,
        /// The completion, or why the request could not be started.
        result: Result<Completion, RequestError>,
    },
    /// The outcome of [`Host::observe`]: the key's notifications now reach `stream`, or the
    /// registration failed (the stream is then gone).
    Observed {
        /// The stream.
        stream: StreamId,
        /// Registered, or why not.
        result: Result<(), RequestError>,
    },
    /// A change of the key observed by `stream`.
    KeyChange {
        /// The stream.
        stream: StreamId,
        /// The key.
        key: Bytes,
        /// The change.
        change: observe::Change,
    },
    /// The registration of the key of `stream` lapsed after a reconnect: changes may go
    /// unseen until it is renewed (the re-read after the renewal delivers what was missed).
    KeyMayHaveMissed {
        /// The stream.
        stream: StreamId,
        /// The key.
        key: Bytes,
    },
}

/// What [`HostOutput::Refused`] refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refused {
    /// The creation of `handle` ([`Host::create`]).
    Create(HandleId),
    /// Operation `call` of `handle` ([`Host::op`]).
    Op(HandleId, CallId),
    /// The direct request `call` ([`Host::request`]).
    Request(CallId),
    /// The observation `stream` ([`Host::observe`]).
    Observe(StreamId),
}

/// Who a request in flight belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    /// A handle's machine.
    Handle(HandleId),
    /// A caller's direct request.
    Call(CallId),
    /// The KEYNOTIFY of an observed key.
    Register(Bytes),
    /// The GET that re-reads an observed key after a reconnect.
    Resync(Bytes),
    /// Fire and forget (the KEYNOTIFY STOP of a key nobody observes any more).
    Discard,
}

/// A requester that records `owner` as the owner of every request it sends.
fn tagged<'a>(
    inner: &'a mut dyn Requester,
    routes: &'a mut BTreeMap<RequestId, Owner>,
    owner: Owner,
) -> Recording<'a, impl FnMut(RequestId) + 'a> {
    Recording::new(inner, move |id| {
        routes.insert(id, owner.clone());
    })
}

/// The host; see the module documentation.
#[derive(Debug)]
pub struct Host {
    config: HostConfig,
    slots: BTreeMap<HandleId, Slot>,
    /// The handles whose machine is named after a key: notifications and re-registrations of
    /// the key go to them only.
    by_key: BTreeMap<Bytes, BTreeSet<HandleId>>,
    /// Each armed machine deadline, and each slot's entry in it.
    timers: BTreeSet<(Instant, HandleId)>,
    routes: BTreeMap<RequestId, Owner>,
    streams: Streams,
    /// Slots that got an input since their events were last collected.
    touched: BTreeSet<HandleId>,
    outputs: VecDeque<HostOutput>,
    /// Closing: no new work; in-flight work may run until then.
    closing_until: Option<Instant>,
    /// The end of the grace period as a deadline, until a timer tick at or after it has been
    /// handled (then [`Host::grace_over`] says it).
    grace_alarm: Option<Instant>,
}

impl Host {
    /// An empty host.
    pub fn new(config: HostConfig) -> Host {
        Host {
            config,
            slots: BTreeMap::new(),
            by_key: BTreeMap::new(),
            timers: BTreeSet::new(),
            routes: BTreeMap::new(),
            streams: Streams::default(),
            touched: BTreeSet::new(),
            outputs: VecDeque::new(),
            closing_until: None,
            grace_alarm: None,
        }
    }

    /// Its settings.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// A new handle's machine. Refused while closing or when `handle` is taken. An edit
    /// starts at once; its failure to start comes as its `Done` event.
    pub fn create(&mut self, handle: HandleId, create: Create, r: &mut dyn Requester, now: Now) {
        if self.closing_until.is_some() || self.slots.contains_key(&handle) {
            self.outputs
                .push_back(HostOutput::Refused(Refused::Create(handle)));
            return;
        }
        let seed = self.config.seed ^ handle.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let made = Slot::new(
            create,
            seed,
            &mut tagged(r, &mut self.routes, Owner::Handle(handle)),
            now,
        );
        match made {
            Ok(slot) => {
                self.by_key
                    .entry(slot.key().clone())
                    .or_default()
                    .insert(handle);
                self.slots.insert(handle, slot);
                self.touched.insert(handle);
            }
            Err(Some(event)) => self.outputs.push_back(HostOutput::Edit { handle, event }),
            Err(None) => self
                .outputs
                .push_back(HostOutput::Refused(Refused::Create(handle))),
        }
        self.settle(r, now);
    }

    /// Operation `call` on `handle`'s machine.
    pub fn op(&mut self, handle: HandleId, call: CallId, op: Op, r: &mut dyn Requester, now: Now) {
        let timeout = self.config.request_timeout;
        let refused = self.closing_until.is_some()
            || !self.with_slot(handle, r, |slot, r, out| {
                slot.op(call, op, r, now, timeout, out)
            });
        if refused {
            self.outputs
                .push_back(HostOutput::Refused(Refused::Op(handle, call)));
        }
        self.settle(r, now);
    }

    /// The caller of operation `call` stopped waiting (its future or stream was dropped), or
    /// its answer could not be delivered: whatever it may have taken is given back (a lease
    /// acquired for it is released, a lock wait cancelled, an observation stopped).
    pub fn abandon(&mut self, handle: HandleId, call: CallId, r: &mut dyn Requester, now: Now) {
        let timeout = self.config.request_timeout;
        self.with_slot(handle, r, |slot, r, _| slot.abandon(call, r, now, timeout));
        self.settle(r, now);
    }

    /// The handle is gone: release what it holds (`release`), or leave it to expire
    /// (detached). Its machine stays until nothing is left in flight (detached: until no
    /// KEYNOTIFY of its own can be left registered), then [`HostOutput::Gone`] follows.
    pub fn drop_handle(
        &mut self,
        handle: HandleId,
        release: bool,
        r: &mut dyn Requester,
        now: Now,
    ) {
        let timeout = self.config.request_timeout;
        self.with_slot(handle, r, |slot, r, _| {
            slot.drop_handle(release, r, now, timeout)
        });
        self.settle(r, now);
    }

    /// A direct state-store request of a caller; answered by [`HostOutput::Reply`].
    pub fn request(
        &mut self,
        call: CallId,
        request: Request,
        options: RequestOptions,
        r: &mut dyn Requester,
        now: Now,
    ) {
        if self.closing_until.is_some() {
            self.outputs
                .push_back(HostOutput::Refused(Refused::Request(call)));
            return;
        }
        let mut tagged = tagged(r, &mut self.routes, Owner::Call(call));
        if let Err(e) = tagged.request(request, options, now) {
            self.outputs.push_back(HostOutput::Reply {
                call,
                result: Err(e),
            });
        }
    }

    /// Stream `stream` wants the changes of `key`; answered by [`HostOutput::Observed`].
    pub fn observe(&mut self, stream: StreamId, key: Bytes, r: &mut dyn Requester, now: Now) {
        if self.closing_until.is_some() {
            self.outputs
                .push_back(HostOutput::Refused(Refused::Observe(stream)));
            return;
        }
        self.streams.add(key, stream);
        self.settle_streams(None, r, now);
    }

    /// Stream `stream` of `key` is gone (dropped, or found closed when delivering).
    pub fn unobserve(&mut self, stream: StreamId, key: &Bytes, r: &mut dyn Requester, now: Now) {
        self.streams.remove(key, stream);
        self.settle_streams(None, r, now);
    }

    /// Closes: every handle releases what it holds, as if dropped; new work is refused; the
    /// work in flight may run until `now` + the request timeout ([`Host::is_done`]).
    pub fn close(&mut self, r: &mut dyn Requester, now: Now) {
        if self.closing_until.is_some() {
            return;
        }
        let until = now.mono.saturating_add(self.config.request_timeout);
        self.closing_until = Some(until);
        self.grace_alarm = Some(until);
        let handles: alloc::vec::Vec<HandleId> = self.slots.keys().copied().collect();
        for handle in handles {
            self.drop_handle(handle, true, r, now);
        }
    }

    /// Whether closing started.
    pub fn is_closing(&self) -> bool {
        self.closing_until.is_some()
    }

    /// Whether a closing host may stop now: nothing is left in flight, or the grace period
    /// is over.
    pub fn is_done(&self, now: Now) -> bool {
        match self.closing_until {
            Some(until) => self.is_idle() || now.mono >= until,
            None => false,
        }
    }

    /// Whether closing started and its grace period is over.
    pub fn grace_over(&self, now: Now) -> bool {
        self.closing_until.is_some_and(|until| now.mono >= until)
    }

    /// Whether no machine is left and no request of the host is in flight.
    pub fn is_idle(&self) -> bool {
        self.slots.is_empty() && self.routes.is_empty()
    }

    /// Number of machines hosted.
    pub fn machines(&self) -> usize {
        self.slots.len()
    }

    /// Number of observed keys.
    pub fn observed_keys(&self) -> usize {
        self.streams.len()
    }

    /// A client output other than the network ones ([`Output::Publish`],
    /// [`Output::Subscribe`], [`Output::Unsubscribe`], which go to the transport and are
    /// ignored here).
    pub fn handle_output(&mut self, output: Output, r: &mut dyn Requester, now: Now) {
        match output {
            Output::Completion(c) => self.on_completion(c, r, now),
            Output::Notification(n) => {
                for handle in self.keyed(&n.key) {
                    self.with_slot(handle, r, |slot, r, out| {
                        slot.on_notification(&n, r, now, out)
                    });
                }
                self.streams.notification(&n.key, n.value, n.version);
                self.settle_streams(None, r, now);
            }
            Output::Reregistered { key, result } => {
                let ok = result.is_ok();
                for handle in self.keyed(&key) {
                    self.with_slot(handle, r, |slot, r, out| {
                        slot.on_reregistered(&key, ok, r, now, out)
                    });
                }
                self.streams.reregistered(&key, ok);
                self.settle_streams(None, r, now);
            }
            Output::Connected { .. } => {
                for handle in self.all() {
                    self.with_slot(handle, r, |slot, r, _| slot.on_connected(r, now));
                }
            }
            Output::Disconnected => {
                for handle in self.all() {
                    self.with_slot(handle, r, |slot, _, _| slot.on_disconnected(now));
                }
            }
            _ => {}
        }
        self.settle(r, now);
    }

    /// Time passed: runs the machine deadlines due at `now` (calling it early is harmless).
    pub fn handle_timeout(&mut self, r: &mut dyn Requester, now: Now) {
        if self.grace_alarm.is_some_and(|at| at <= now.mono) {
            self.grace_alarm = None;
        }
        while let Some(&(at, handle)) = self.timers.first() {
            if at > now.mono {
                break;
            }
            self.timers.pop_first();
            self.with_slot(handle, r, |slot, r, _| {
                slot.disarm();
                slot.on_timeout(r, now);
            });
        }
        self.settle(r, now);
    }

    /// The earliest machine deadline, or the end of the closing grace period (until a tick
    /// at or after it was handled).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timer = self.timers.first().map(|(at, _)| *at);
        match (timer, self.grace_alarm) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next output, in order.
    pub fn poll_output(&mut self) -> Option<HostOutput> {
        self.outputs.pop_front()
    }

    /// The handles whose machine is named after `key`.
    fn keyed(&self, key: &Bytes) -> alloc::vec::Vec<HandleId> {
        self.by_key
            .get(key)
            .map(|set| set.iter().copied().collect())
            .unwrap_or_default()
    }

    fn all(&self) -> alloc::vec::Vec<HandleId> {
        self.slots.keys().copied().collect()
    }

    /// Runs `f` on the slot of `handle` with a requester that records the handle as the
    /// owner of what it sends; returns whether the slot exists.
    fn with_slot(
        &mut self,
        handle: HandleId,
        r: &mut dyn Requester,
        f: impl FnOnce(&mut Slot, &mut dyn Requester, &mut Emit<'_>),
    ) -> bool {
        let Some(slot) = self.slots.get_mut(&handle) else {
            return false;
        };
        let mut tagged = tagged(r, &mut self.routes, Owner::Handle(handle));
        let mut emit = Emit {
            handle,
            outputs: &mut self.outputs,
        };
        f(slot, &mut tagged, &mut emit);
        self.touched.insert(handle);
        true
    }

    fn on_completion(&mut self, c: Completion, r: &mut dyn Requester, now: Now) {
        // A completion without a route is nobody's (a late reply, or a request of a machine
        // whose handle is gone): dropped.
        let Some(owner) = self.routes.remove(&c.id) else {
            return;
        };
        match owner {
            Owner::Handle(handle) => {
                self.with_slot(handle, r, |slot, r, out| {
                    slot.on_completion(&c, r, now, out)
                });
            }
            Owner::Call(call) => self.outputs.push_back(HostOutput::Reply {
                call,
                result: Ok(c),
            }),
            Owner::Register(key) => {
                let failure = c.result.err();
                self.streams.registered(&key, failure.is_none());
                self.settle_streams(failure.map(|e| (key, e)), r, now);
            }
            Owner::Resync(key) => {
                if let Ok(crate::command::Response::Get(value)) = c.result {
                    self.streams.resynced(&key, value, c.version);
                    self.settle_streams(None, r, now);
                }
            }
            Owner::Discard => {}
        }
    }

    /// Carries out what the observation fan-out decided; `failure` is the error of the
    /// registration of a key that just failed.
    fn settle_streams(
        &mut self,
        failure: Option<(Bytes, RequestError)>,
        r: &mut dyn Requester,
        now: Now,
    ) {
        let mut failure = failure;
        let options = RequestOptions {
            timeout: Some(self.config.request_timeout),
            ..RequestOptions::default()
        };
        while let Some(send) = self.streams.next_send(&mut self.outputs, failure.as_ref()) {
            let (owner, sent) = match send {
                streams::Send::Register(key) => {
                    let mut tagged = tagged(r, &mut self.routes, Owner::Register(key.clone()));
                    match tagged.observe(key.clone(), RequestOptions::default(), now) {
                        Ok(_) => {}
                        Err(e) => {
                            // Nothing was sent: nothing to stop, the subscribers fail.
                            self.streams.not_sent(&key);
                            failure = Some((key, e));
                        }
                    }
                    continue;
                }
                streams::Send::Unregister(key) => {
                    let get = Owner::Discard;
                    (get, Err(key))
                }
                streams::Send::Resync(key) => (Owner::Resync(key.clone()), Ok(key)),
            };
            let mut tagged = tagged(r, &mut self.routes, owner);
            // Fire and forget: a STOP or a re-read that cannot start leaves nothing to undo.
            let _ = match sent {
                Err(stop) => tagged.unobserve(stop, options.clone(), now),
                Ok(read) => tagged.request(Request::Get { key: read }, options.clone(), now),
            };
        }
    }

    /// Collects the events of every slot that got an input, re-arms its timer, and removes
    /// the ones that are finished.
    fn settle(&mut self, r: &mut dyn Requester, now: Now) {
        let timeout = self.config.request_timeout;
        while let Some(handle) = self.touched.pop_first() {
            let Some(slot) = self.slots.get_mut(&handle) else {
                continue;
            };
            let mut tagged = tagged(r, &mut self.routes, Owner::Handle(handle));
            let mut emit = Emit {
                handle,
                outputs: &mut self.outputs,
            };
            slot.collect(&mut tagged, now, timeout, &mut emit);
            if let Some(old) = slot.armed() {
                self.timers.remove(&(old, handle));
            }
            if slot.finished(now) {
                let key = slot.key().clone();
                self.slots.remove(&handle);
                if let Some(set) = self.by_key.get_mut(&key) {
                    set.remove(&handle);
                    if set.is_empty() {
                        self.by_key.remove(&key);
                    }
                }
                self.outputs.push_back(HostOutput::Gone { handle });
                continue;
            }
            if let Some(at) = slot.arm() {
                self.timers.insert((at, handle));
            }
        }
    }
}

/// Where a slot puts its outputs.
pub(crate) struct Emit<'a> {
    handle: HandleId,
    outputs: &'a mut VecDeque<HostOutput>,
}

impl Emit<'_> {
    fn answer(&mut self, call: CallId, answer: Answer) {
        self.outputs.push_back(HostOutput::Answer {
            handle: self.handle,
            call,
            answer,
        });
    }

    fn push(&mut self, make: impl FnOnce(HandleId) -> HostOutput) {
        let out = make(self.handle);
        self.outputs.push_back(out);
    }
}
