//! Several lock handles on one connection, driven through the client host ([`Host`]) exactly
//! as the adapters drive it: handles on the same and on different names, waits abandoned and
//! answers undelivered (a dropped future), handles dropped at random points, and the whole
//! connection closed during operations in flight. Feeds S1, S2, S4 and S6 per handle: every
//! handle is a holder of its own (`clientId:h<n>`), so two handles of one node are told apart.

use alloc::boxed::Box;
use alloc::format;
use alloc::vec::Vec;
use bytes::Bytes;
use core::time::Duration;

use super::{later, min_opt, Timing};
use crate::client::Output;
use crate::hlc::Hlc;
use crate::host::{Answer, CallId, Create, HandleId, Host, HostConfig, HostOutput, Op, Status};
use crate::lock::LockOptions;
use crate::sim::agent::{Agent, Ctx, Report, Workload};
use crate::time::Instant;

/// Handles per node: two on the first key, one on the second.
const HANDLES: usize = 3;

/// See the module documentation.
#[derive(Clone)]
pub struct SharedConnection {
    keys: [Bytes; 2],
    /// Timings.
    pub timing: Timing,
}

impl SharedConnection {
    /// Handles on `first` (two per node) and `second` (one per node).
    pub fn new(first: Bytes, second: Bytes, timing: Timing) -> SharedConnection {
        SharedConnection {
            keys: [first, second],
            timing,
        }
    }

    fn key_of(&self, slot: usize) -> Bytes {
        self.keys[usize::from(slot == HANDLES - 1)].clone()
    }
}

/// Where one handle slot of the node is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// No handle.
    Empty,
    /// A handle, not held, no call.
    Idle,
    /// `lock` in flight.
    Locking(CallId),
    /// Held, as far as the handle knows.
    Held { token: Hlc },
    /// `unlock` in flight.
    Unlocking(CallId),
}

struct HandleSlot {
    handle: HandleId,
    /// The holder number (`h<n>`), unique per node across incarnations.
    holder: u32,
    phase: Phase,
    /// The last safe end its status showed.
    safe_until: Option<Instant>,
    /// After a loss, the command of the lost hold is being stopped until at most this (its
    /// last safe end): the handle does nothing that could delete the key before then.
    stopping_until: Option<Instant>,
}

struct SharedAgent {
    w: SharedConnection,
    host: Host,
    slots: Vec<HandleSlot>,
    next_handle: u64,
    next_holder: u32,
    next_call: u64,
    act_at: Option<Instant>,
    stopped: bool,
}

impl SharedAgent {
    fn options(&self, holder: u32) -> LockOptions {
        let mut options = LockOptions {
            lease: self.w.timing.lease_options(),
            ..LockOptions::default()
        };
        options.lease.session_id = Some(format!("h{holder}"));
        options
    }

    fn call(&mut self) -> CallId {
        self.next_call += 1;
        CallId(self.next_call)
    }

    /// One random user action on one random handle slot.
    fn act(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        let i = ctx.rng().below(HANDLES as u64) as usize;
        let roll = ctx.rng().below(100);
        let phase = self.slots[i].phase.clone();
        let handle = self.slots[i].handle;
        // The CLI's supervisor releases only after the command is dead (S6): after a loss,
        // that is when SIGKILL has gone out, at most the last safe end. Until then a handle
        // whose hold was lost neither locks again (an attempt abandoned later is VDELed with
        // the same holder value, which deletes the old grant) nor is dropped or closed (a
        // release VDELs it as well): the old grant keeps others out while the command stops.
        let stopping = |s: &HandleSlot| s.stopping_until.is_some_and(|t| now.mono < t);
        if stopping(&self.slots[i]) || (roll >= 95 && self.slots.iter().any(stopping)) {
            return;
        }
        match phase {
            Phase::Empty => {
                self.next_handle += 1;
                self.next_holder += 1;
                let handle = HandleId(self.next_handle);
                let name = self.w.key_of(i);
                self.slots[i] = HandleSlot {
                    handle,
                    holder: self.next_holder,
                    phase: Phase::Idle,
                    safe_until: None,
                    stopping_until: None,
                };
                self.host
                    .create(handle, Create::Lock { name }, ctx.requester(), now);
            }
            Phase::Idle if roll < 85 => {
                let call = self.call();
                let options = self.options(self.slots[i].holder);
                // Varied durations: re-acquire with a shorter or a longer lease.
                let lease = self.w.timing.lease + self.w.timing.lease * (roll % 3) as u32 / 2;
                self.slots[i].phase = Phase::Locking(call);
                let op = Op::Lock {
                    duration: lease,
                    options,
                };
                self.host.op(handle, call, op, ctx.requester(), now);
            }
            Phase::Locking(call) if roll < 30 => {
                // The waiting future is dropped.
                self.slots[i].phase = Phase::Idle;
                self.host.abandon(handle, call, ctx.requester(), now);
            }
            Phase::Held { .. } if roll < 60 => {
                let call = self.call();
                // The critical section ends when the user calls unlock, before the VDEL.
                let key = self.w.key_of(i);
                ctx.report_as(self.slots[i].holder, Report::Released { key });
                self.slots[i].phase = Phase::Unlocking(call);
                let options = self.options(self.slots[i].holder).lease;
                self.host
                    .op(handle, call, Op::Unlock { options }, ctx.requester(), now);
            }
            Phase::Unlocking(_) => {}
            _ if roll < 95 => {
                // The handle is dropped, whatever it is doing.
                self.forget(i, ctx);
                self.host.drop_handle(handle, true, ctx.requester(), now);
            }
            _ => self.close(ctx),
        }
    }

    /// Slot `i`'s handle is gone for its user: a hold ends now.
    fn forget(&mut self, i: usize, ctx: &mut Ctx<'_>) {
        if matches!(self.slots[i].phase, Phase::Held { .. }) {
            let key = self.w.key_of(i);
            ctx.report_as(self.slots[i].holder, Report::Released { key });
        }
        self.slots[i].phase = Phase::Empty;
        self.slots[i].safe_until = None;
    }

    /// The connection closes: every handle goes, whatever is in flight.
    fn close(&mut self, ctx: &mut Ctx<'_>) {
        for i in 0..HANDLES {
            self.forget(i, ctx);
        }
        let now = ctx.now();
        self.host.close(ctx.requester(), now);
    }

    fn slot_of(&self, handle: HandleId) -> Option<usize> {
        self.slots.iter().position(|s| s.handle == handle)
    }

    fn on_host_output(&mut self, out: HostOutput, ctx: &mut Ctx<'_>) {
        match out {
            HostOutput::Status { handle, status } => {
                let Some(i) = self.slot_of(handle) else {
                    return;
                };
                let key = self.w.key_of(i);
                let holder = self.slots[i].holder;
                match (status, self.slots[i].phase.clone()) {
                    (Status::Held { token, safe_until }, Phase::Held { token: old }) => {
                        if token != old {
                            self.slots[i].phase = Phase::Held {
                                token: token.clone(),
                            };
                            ctx.report_as(
                                holder,
                                Report::Renewed {
                                    key,
                                    token,
                                    safe_until,
                                },
                            );
                        }
                        self.slots[i].safe_until = Some(safe_until);
                    }
                    (Status::Held { safe_until, .. }, _) => {
                        self.slots[i].safe_until = Some(safe_until)
                    }
                    (Status::NotHeld(_), Phase::Held { .. }) => {
                        self.slots[i].phase = Phase::Idle;
                        self.slots[i].stopping_until = self.slots[i].safe_until;
                        ctx.report_as(holder, Report::Lost { key });
                    }
                    _ => {}
                }
            }
            HostOutput::Answer {
                handle,
                call,
                answer,
            } => {
                let Some(i) = self.slot_of(handle) else {
                    return;
                };
                let key = self.w.key_of(i);
                let holder = self.slots[i].holder;
                match (answer, self.slots[i].phase.clone()) {
                    (Answer::Lock(Ok(token)), Phase::Locking(c)) if c == call => {
                        if ctx.rng().below(10) == 0 {
                            // The answer finds its future gone: the host gives the lock back.
                            self.slots[i].phase = Phase::Idle;
                            let now = ctx.now();
                            self.host.abandon(handle, call, ctx.requester(), now);
                            return;
                        }
                        let safe_until = self.slots[i].safe_until.unwrap_or(ctx.now().mono);
                        self.slots[i].phase = Phase::Held {
                            token: token.clone(),
                        };
                        ctx.report_as(
                            holder,
                            Report::Acquired {
                                key,
                                token,
                                safe_until,
                                renewing: true,
                            },
                        );
                    }
                    (Answer::Lock(Err(_)), Phase::Locking(c)) if c == call => {
                        self.slots[i].phase = Phase::Idle;
                    }
                    (Answer::Unlock(_), Phase::Unlocking(c)) if c == call => {
                        self.slots[i].phase = Phase::Idle;
                    }
                    _ => {}
                }
            }
            HostOutput::Gone { handle } => {
                if let Some(i) = self.slot_of(handle) {
                    self.forget(i, ctx);
                }
            }
            _ => {}
        }
    }

    fn pump(&mut self, ctx: &mut Ctx<'_>) {
        while let Some(out) = self.host.poll_output() {
            self.on_host_output(out, ctx);
        }
        // A closed connection's successor: new handles on a fresh host once the old one has
        // nothing left in flight. Not at the end of the grace period, as an adapter would:
        // an adapter then disconnects, and the store drops the registrations with the
        // session; this node's client stays connected, so its old host must finish (and stop
        // its KEYNOTIFYs) by itself.
        if self.host.is_closing() && self.host.is_idle() {
            self.host = Host::new(*self.host.config());
        }
    }
}

impl Agent for SharedAgent {
    fn start(&mut self, ctx: &mut Ctx<'_>) {
        self.act_at = Some(ctx.now().mono);
    }

    fn handle_output(&mut self, output: &Output, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        self.host
            .handle_output(output.clone(), ctx.requester(), now);
        self.pump(ctx);
    }

    fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        self.host.handle_timeout(ctx.requester(), now);
        self.pump(ctx);
        if !self.stopped && self.act_at.is_some_and(|t| t <= now.mono) {
            self.act(ctx);
            self.pump(ctx);
            let think = self.w.timing.think;
            self.act_at = Some(later(now, ctx.rng(), think));
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let act = if self.stopped { None } else { self.act_at };
        min_opt(self.host.poll_timeout(), act)
    }

    fn stop(&mut self, ctx: &mut Ctx<'_>) {
        self.stopped = true;
        self.close(ctx);
        self.pump(ctx);
    }

    fn outstanding(&self) -> usize {
        self.host.machines() + usize::from(!self.host.is_idle())
    }
}

impl Workload for SharedConnection {
    fn agent(&mut self, _node: usize, incarnation: u32, seed: u64) -> Box<dyn Agent> {
        let host = Host::new(HostConfig {
            seed,
            request_timeout: self.timing.timeout,
        });
        let empty = |_| HandleSlot {
            handle: HandleId(0),
            holder: 0,
            phase: Phase::Empty,
            safe_until: None,
            stopping_until: None,
        };
        Box::new(SharedAgent {
            w: self.clone(),
            host,
            slots: (0..HANDLES).map(empty).collect(),
            next_handle: 0,
            // Holder numbers never repeat on a node, across restarts too.
            next_holder: incarnation.saturating_mul(100_000),
            next_call: 0,
            act_at: None,
            stopped: false,
        })
    }

    fn lease_keys(&self) -> Vec<Bytes> {
        self.keys.to_vec()
    }

    fn liveness_bound(&self) -> Option<Duration> {
        None
    }

    fn quiet_window(&self) -> Option<Duration> {
        None
    }

    fn lease_timing(&self) -> Option<Timing> {
        Some(self.timing)
    }
}

#[cfg(test)]
mod tests {
    use crate::sim::{FaultMix, Scenario, WorkloadKind};

    /// Seeds of the shared-connection workload, with and without faults: no invariant breaks,
    /// and the handles really take turns (the run is not vacuous).
    #[test]
    fn handles_of_one_connection_never_overlap() {
        let mut acquisitions = 0;
        for seed in 0..12u64 {
            let mut s = Scenario::from_seed(seed);
            s.workload = WorkloadKind::Shared;
            s.clients = 2 + (seed % 2) as usize;
            if seed % 3 == 0 {
                s.faults = FaultMix::NONE;
            }
            match s.run() {
                Ok(summary) => acquisitions += summary.checks.acquisitions,
                Err(v) => panic!("{s}: {v}"),
            }
        }
        assert!(acquisitions > 50, "only {acquisitions} acquisitions");
    }
}
