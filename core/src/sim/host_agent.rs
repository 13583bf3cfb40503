//! The easy way to put code under test: a [`HostWorker`] drives a [`Host`] (the same client
//! host the adapters run) and gets its outputs (answers, status changes, replies), never the
//! raw client outputs; [`HostAgent`] does the plumbing an adapter does: it feeds the host the
//! client's outputs and timer ticks, hands the worker what comes out, keeps the deadlines and
//! closes the host when the run stops.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;
use core::time::Duration;

use super::agent::{Agent, Ctx, Report};
use crate::client::{Output, RequestOptions};
use crate::command::Request;
use crate::host::{CallId, Create, HandleId, Host, HostConfig, HostOutput, Op, StreamId};
use crate::rng::Rng;
use crate::time::{Instant, Now};

/// User code over a [`Host`]: what runs on one node. Wrap it in a [`HostAgent`] to run it.
///
/// Every callback gets a [`HostIo`]: the host's inputs (create a handle, start an operation,
/// send a request...) bound to the node's client and clock, plus the node's [`Ctx`] (reports,
/// time, randomness, [`Ctx::fail`]).
pub trait HostWorker {
    /// The node started (or restarted after a crash).
    fn start(&mut self, io: &mut HostIo<'_, '_>);

    /// Something came out of the host: an answer to an operation, a status change, the reply
    /// to a direct request, an event.
    fn on_output(&mut self, output: HostOutput, io: &mut HostIo<'_, '_>);

    /// The worker's own deadline ([`HostWorker::poll_timeout`]) passed (possibly called early:
    /// do what is due).
    fn on_timeout(&mut self, io: &mut HostIo<'_, '_>) {
        let _ = io;
    }

    /// The worker's own next deadline on the node's monotonic clock (think times, retries).
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// The run is ending. The host is closed right after this (every handle releases what it
    /// holds), so a worker with nothing of its own to finish can leave this empty.
    fn stop(&mut self, io: &mut HostIo<'_, '_>) {
        let _ = io;
    }

    /// Work of the worker's own still awaiting something (the host's machines and requests
    /// are counted already). After the drain it must be 0.
    fn outstanding(&self) -> usize {
        0
    }

    /// The node crashes now: facts the checkers must still count (see
    /// [`Agent::in_doubt_at_crash`]).
    fn in_doubt_at_crash(&self) -> Vec<Report> {
        Vec::new()
    }
}

/// The host's inputs bound to one node for one callback, and the node's [`Ctx`].
pub struct HostIo<'x, 'a> {
    host: &'x mut Host,
    ctx: &'x mut Ctx<'a>,
    next_id: &'x mut u64,
}

impl<'a> HostIo<'_, 'a> {
    /// The node's context: its clock, reports, randomness, [`Ctx::fail`].
    pub fn ctx(&mut self) -> &mut Ctx<'a> {
        self.ctx
    }

    /// The node's current time.
    pub fn now(&self) -> Now {
        self.ctx.now()
    }

    /// The node's seeded generator.
    pub fn rng(&mut self) -> &mut Rng {
        self.ctx.rng()
    }

    /// Tells the checkers something (see [`Ctx::report`]).
    pub fn report(&mut self, report: Report) {
        self.ctx.report(report);
    }

    /// Fails the run (see [`Ctx::fail`]).
    pub fn fail(&mut self, invariant: &'static str, message: impl Into<String>) {
        self.ctx.fail(invariant, message);
    }

    /// A number never handed out before by this node's agent, for a [`HandleId`], a
    /// [`CallId`] or a [`StreamId`].
    pub fn fresh_id(&mut self) -> u64 {
        *self.next_id += 1;
        *self.next_id
    }

    /// A new handle's machine ([`Host::create`]); returns its id.
    pub fn create(&mut self, create: Create) -> HandleId {
        let handle = HandleId(self.fresh_id());
        let now = self.ctx.now();
        self.host.create(handle, create, self.ctx.requester(), now);
        handle
    }

    /// An operation on a handle ([`Host::op`]); its [`HostOutput::Answer`] carries the id
    /// returned.
    pub fn op(&mut self, handle: HandleId, op: Op) -> CallId {
        let call = CallId(self.fresh_id());
        let now = self.ctx.now();
        self.host.op(handle, call, op, self.ctx.requester(), now);
        call
    }

    /// The caller of `call` stopped waiting ([`Host::abandon`]).
    pub fn abandon(&mut self, handle: HandleId, call: CallId) {
        let now = self.ctx.now();
        self.host.abandon(handle, call, self.ctx.requester(), now);
    }

    /// The handle is dropped ([`Host::drop_handle`]); `release` gives back what it holds.
    pub fn drop_handle(&mut self, handle: HandleId, release: bool) {
        let now = self.ctx.now();
        self.host
            .drop_handle(handle, release, self.ctx.requester(), now);
    }

    /// A direct state-store request ([`Host::request`]); its [`HostOutput::Reply`] carries
    /// the id returned. Put a fencing token in `options` for a fenced write.
    pub fn request(&mut self, request: Request, options: RequestOptions) -> CallId {
        let call = CallId(self.fresh_id());
        let now = self.ctx.now();
        self.host
            .request(call, request, options, self.ctx.requester(), now);
        call
    }

    /// Observes `key` ([`Host::observe`]); its changes come as [`HostOutput::KeyChange`].
    pub fn observe(&mut self, key: Bytes) -> StreamId {
        let stream = StreamId(self.fresh_id());
        let now = self.ctx.now();
        self.host.observe(stream, key, self.ctx.requester(), now);
        stream
    }

    /// Stops observing ([`Host::unobserve`]).
    pub fn unobserve(&mut self, stream: StreamId, key: &Bytes) {
        let now = self.ctx.now();
        self.host.unobserve(stream, key, self.ctx.requester(), now);
    }

    /// Closes the connection's host ([`Host::close`]): every handle releases what it holds.
    pub fn close(&mut self) {
        let now = self.ctx.now();
        self.host.close(self.ctx.requester(), now);
    }

    /// The host itself, for what the methods above do not cover.
    pub fn host(&mut self) -> &mut Host {
        self.host
    }
}

/// An [`Agent`] that runs a [`HostWorker`] over a [`Host`], as an adapter runs user code.
///
/// In [`Workload::agent`](super::Workload::agent):
/// `Box::new(HostAgent::new(seed, timeout, MyWorker::new(..)))`.
pub struct HostAgent<W> {
    host: Host,
    worker: W,
    next_id: u64,
    stopped: bool,
}

impl<W: HostWorker> HostAgent<W> {
    /// `worker` over a fresh host; `seed` seeds the machines' jitter (pass the agent seed the
    /// world gives), `request_timeout` bounds the host's own requests (releases on drop).
    pub fn new(seed: u64, request_timeout: Duration, worker: W) -> HostAgent<W> {
        HostAgent {
            host: Host::new(HostConfig {
                seed,
                request_timeout,
            }),
            worker,
            next_id: 0,
            stopped: false,
        }
    }

    /// The worker.
    pub fn worker(&self) -> &W {
        &self.worker
    }

    /// Runs `f` on the worker, then hands it every host output until there are none.
    fn with_worker(&mut self, ctx: &mut Ctx<'_>, f: impl FnOnce(&mut W, &mut HostIo<'_, '_>)) {
        let mut io = HostIo {
            host: &mut self.host,
            ctx,
            next_id: &mut self.next_id,
        };
        f(&mut self.worker, &mut io);
        self.pump(ctx);
    }

    fn pump(&mut self, ctx: &mut Ctx<'_>) {
        while let Some(out) = self.host.poll_output() {
            let mut io = HostIo {
                host: &mut self.host,
                ctx,
                next_id: &mut self.next_id,
            };
            self.worker.on_output(out, &mut io);
        }
        // A closed host whose work is over (or whose grace ran out) is replaced by an idle
        // one (the next connection, for a worker that closed it itself), so its closing
        // deadline does not stay armed; what is still in flight is the client's to finish.
        if self.host.is_done(ctx.now()) {
            self.host = Host::new(*self.host.config());
        }
    }
}

impl<W: HostWorker> Agent for HostAgent<W> {
    fn start(&mut self, ctx: &mut Ctx<'_>) {
        self.with_worker(ctx, |w, io| w.start(io));
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
        if self.worker.poll_timeout().is_some_and(|t| t <= now.mono) {
            self.with_worker(ctx, |w, io| w.on_timeout(io));
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let worker = self.worker.poll_timeout();
        match (self.host.poll_timeout(), worker) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn stop(&mut self, ctx: &mut Ctx<'_>) {
        self.with_worker(ctx, |w, io| w.stop(io));
        self.stopped = true;
        let now = ctx.now();
        self.host.close(ctx.requester(), now);
        self.pump(ctx);
    }

    fn outstanding(&self) -> usize {
        self.worker.outstanding() + self.host.machines() + usize::from(!self.host.is_idle())
    }

    fn in_doubt_at_crash(&self) -> Vec<Report> {
        self.worker.in_doubt_at_crash()
    }
}

impl<W> core::fmt::Debug for HostAgent<W> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HostAgent")
            .field("host", &self.host)
            .field("stopped", &self.stopped)
            .finish_non_exhaustive()
    }
}

/// Boxes a [`HostAgent`] of `worker` (what [`Workload::agent`](super::Workload::agent)
/// returns).
pub fn host_agent<W: HostWorker + 'static>(
    seed: u64,
    request_timeout: Duration,
    worker: W,
) -> Box<dyn Agent> {
    Box::new(HostAgent::new(seed, request_timeout, worker))
}
