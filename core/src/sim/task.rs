//! Async user code under the simulator: `async fn worker(node: Node)` runs on every node, on
//! a deterministic single-threaded executor, over the node's client host ([`Host`], what the
//! adapters run) in virtual time.
//!
//! [`Node`] is the connection the worker gets: [`Node::lock`] (a [`Held`] lock with its fencing
//! token), [`Node::get`], [`Node::set`] (fenced or not), [`Node::request`] for anything else,
//! [`Node::sleep`], the clocks, reports and [`Node::fail`]. Locks report to the built-in
//! checkers by themselves (acquired, renewed, lost, released), so S1 and S2 apply to the
//! worker's locks without a line of reporting.
//!
//! The executor has no wakers to get wrong: after every input of the node (a reply, a timer,
//! a connection change) it hands the host's outputs to the futures waiting for them and polls
//! the worker until it waits on something not yet there. Everything happens in the order of
//! the world's events, so a seed replays exactly. When the run stops, the worker's future is
//! dropped (as a cancelled task) and the connection closed: every lock is released.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;
use core::cell::RefCell;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use core::time::Duration;

use super::agent::{Agent, Ctx, Report, Workload};
use super::custom::Check;
use super::workload::Timing;
use crate::client::{Completion, Output, RequestError, RequestOptions};
use crate::command::{Request, Response, SetCondition, SetOutcome};
use crate::hlc::Hlc;
use crate::host::{Answer, CallId, Create, HandleId, Host, HostConfig, HostOutput, Op, Status};
use crate::lock::{LockError, LockOptions};
use crate::rng::Rng;
use crate::time::{Instant, Now};

/// Polls of the worker within one input beyond which it is spinning (it never waits).
const MAX_POLLS: u32 = 10_000;

/// A host input the worker asked for, applied by the executor.
enum Cmd {
    Create(HandleId, Create),
    Op(HandleId, CallId, Op),
    Abandon(HandleId, CallId),
    Request(CallId, Request, RequestOptions),
}

/// A lock handle's state as the worker's locks see it.
struct LockState {
    key: Bytes,
    /// The token of the hold the worker was given, while it lasts.
    held: Option<Hlc>,
    safe_until: Option<Instant>,
}

/// What the worker's futures and the executor share on one node.
struct Shared {
    now: Now,
    global: Duration,
    node: usize,
    timing: Timing,
    next_id: u64,
    cmds: VecDeque<Cmd>,
    /// Answers not yet taken by their future, by call.
    answers: BTreeMap<CallId, HostOutput>,
    /// Calls whose future is gone: their answers are dropped.
    detached: BTreeSet<CallId>,
    handles: BTreeMap<Bytes, HandleId>,
    locks: BTreeMap<HandleId, LockState>,
    /// Lock calls, so their answers can be reported.
    lock_calls: BTreeSet<CallId>,
    /// Sleeps registered: (deadline, id).
    sleeps: BTreeSet<(Instant, u64)>,
    reports: Vec<Report>,
    failure: Option<(&'static str, String)>,
    rng: Rng,
}

impl Shared {
    fn fresh(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The host's outputs become answers, lock reports and statuses.
    fn take_output(&mut self, out: HostOutput) {
        match out {
            HostOutput::Status { handle, status } => {
                let Some(l) = self.locks.get_mut(&handle) else {
                    return;
                };
                match status {
                    Status::Held { token, safe_until } => {
                        l.safe_until = Some(safe_until);
                        if l.held.as_ref().is_some_and(|t| *t != token) {
                            l.held = Some(token.clone());
                            let key = l.key.clone();
                            self.reports.push(Report::Renewed {
                                key,
                                token,
                                safe_until,
                            });
                        }
                    }
                    Status::NotHeld(_) => {
                        l.safe_until = None;
                        if l.held.take().is_some() {
                            let key = l.key.clone();
                            self.reports.push(Report::Lost { key });
                        }
                    }
                }
            }
            HostOutput::Answer {
                handle,
                call,
                answer,
            } => {
                if self.lock_calls.remove(&call) {
                    if let (Answer::Lock(Ok(token)), Some(l)) =
                        (&answer, self.locks.get_mut(&handle))
                    {
                        if !self.detached.contains(&call) {
                            l.held = Some(token.clone());
                            let safe_until = l.safe_until.unwrap_or(self.now.mono);
                            self.reports.push(Report::Acquired {
                                key: l.key.clone(),
                                token: token.clone(),
                                safe_until,
                                renewing: true,
                            });
                        }
                    }
                }
                self.answer(
                    call,
                    HostOutput::Answer {
                        handle,
                        call,
                        answer,
                    },
                );
            }
            HostOutput::Reply { call, result } => {
                self.answer(call, HostOutput::Reply { call, result });
            }
            HostOutput::Refused(r) => {
                if let crate::host::Refused::Op(_, call) | crate::host::Refused::Request(call) = r {
                    self.answer(call, HostOutput::Refused(r));
                }
            }
            _ => {}
        }
    }

    fn answer(&mut self, call: CallId, out: HostOutput) {
        if !self.detached.remove(&call) {
            self.answers.insert(call, out);
        }
    }

    fn lock_options(&self) -> LockOptions {
        LockOptions {
            lease: self.timing.lease_options(),
            ..LockOptions::default()
        }
    }
}

/// The future of one call: ready when the host answered it.
struct Answered {
    shared: Rc<RefCell<Shared>>,
    call: CallId,
    /// The handle, for an operation (a dropped wait is abandoned: the host gives back what it
    /// may have taken for it).
    handle: Option<HandleId>,
    done: bool,
}

impl Future for Answered {
    type Output = HostOutput;

    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<HostOutput> {
        let out = self.shared.borrow_mut().answers.remove(&self.call);
        match out {
            Some(out) => {
                self.done = true;
                Poll::Ready(out)
            }
            None => Poll::Pending,
        }
    }
}

impl Drop for Answered {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut s = self.shared.borrow_mut();
        if s.answers.remove(&self.call).is_none() {
            s.detached.insert(self.call);
        }
        if let Some(handle) = self.handle {
            s.cmds.push_back(Cmd::Abandon(handle, self.call));
        }
    }
}

/// The future of [`Node::sleep`].
struct Sleep {
    shared: Rc<RefCell<Shared>>,
    until: Instant,
    id: u64,
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.shared.borrow_mut();
        if s.now.mono >= self.until {
            s.sleeps.remove(&(self.until, self.id));
            Poll::Ready(())
        } else {
            s.sleeps.insert((self.until, self.id));
            Poll::Pending
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.shared
            .borrow_mut()
            .sleeps
            .remove(&(self.until, self.id));
    }
}

/// The connection an async worker gets (one per node; clone it freely).
#[derive(Clone)]
pub struct Node {
    shared: Rc<RefCell<Shared>>,
}

/// A lock held by the worker ([`Node::lock`]). Drop it (or [`Held::unlock`]) to release.
pub struct Held {
    node: Node,
    handle: HandleId,
    token: Hlc,
    unlocked: bool,
}

impl Held {
    /// The fencing token of this hold (pass it to [`Node::set`]).
    pub fn token(&self) -> &Hlc {
        &self.token
    }

    /// Whether acting as the holder is safe now: the lock is still held with this token and
    /// its safe end has not passed (on the node's clock). A worker that was paused, or whose
    /// reply came late, finds out here.
    pub fn is_safe(&self) -> bool {
        let s = self.node.shared.borrow();
        s.locks.get(&self.handle).is_some_and(|l| {
            l.held.as_ref() == Some(&self.token) && l.safe_until.is_some_and(|t| s.now.mono < t)
        })
    }

    /// Until when acting as the holder is safe, on the node's monotonic clock.
    pub fn safe_until(&self) -> Option<Instant> {
        let s = self.node.shared.borrow();
        s.locks.get(&self.handle).and_then(|l| l.safe_until)
    }

    /// Releases the lock and waits for the store's answer.
    pub async fn unlock(mut self) {
        self.unlocked = true;
        let wait = self.node.release(self.handle);
        let _ = wait.await;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if !self.unlocked {
            // Released in the background, as a dropped guard does.
            let wait = self.node.release(self.handle);
            drop(wait);
        }
    }
}

impl Node {
    fn op(&self, handle: HandleId, op: Op) -> Answered {
        let mut s = self.shared.borrow_mut();
        let call = CallId(s.fresh());
        s.cmds.push_back(Cmd::Op(handle, call, op));
        Answered {
            shared: self.shared.clone(),
            call,
            handle: Some(handle),
            done: false,
        }
    }

    /// Reports the end of the hold and sends the unlock (its answer ignored by a drop).
    fn release(&self, handle: HandleId) -> Answered {
        let options = {
            let mut s = self.shared.borrow_mut();
            if let Some(l) = s.locks.get_mut(&handle) {
                if l.held.take().is_some() {
                    let key = l.key.clone();
                    // The critical section ends here, before the store hears of it.
                    s.reports.push(Report::Released { key });
                }
            }
            s.timing.lease_options()
        };
        let mut wait = self.op(handle, Op::Unlock { options });
        // An unlock is never abandoned: dropping its future only ignores the answer.
        wait.handle = None;
        wait
    }

    /// Takes the lock `name` with a lease of `duration` (renewed automatically while held),
    /// waiting as long as it takes. `name` must be among the workload's
    /// [`AsyncWorkload::leases`].
    pub async fn lock(
        &self,
        name: impl Into<Bytes>,
        duration: Duration,
    ) -> Result<Held, LockError> {
        let name = name.into();
        let (handle, options) = {
            let mut s = self.shared.borrow_mut();
            let handle = match s.handles.get(&name) {
                Some(h) => *h,
                None => {
                    let h = HandleId(s.fresh());
                    s.handles.insert(name.clone(), h);
                    s.locks.insert(
                        h,
                        LockState {
                            key: name.clone(),
                            held: None,
                            safe_until: None,
                        },
                    );
                    s.cmds.push_back(Cmd::Create(h, Create::Lock { name }));
                    h
                }
            };
            (handle, s.lock_options())
        };
        let wait = self.op(handle, Op::Lock { duration, options });
        self.shared.borrow_mut().lock_calls.insert(wait.call);
        match wait.await {
            HostOutput::Answer {
                answer: Answer::Lock(Ok(token)),
                ..
            } => Ok(Held {
                node: self.clone(),
                handle,
                token,
                unlocked: false,
            }),
            HostOutput::Answer {
                answer: Answer::Lock(Err(e)),
                ..
            } => Err(e),
            _ => Err(LockError::Cancelled),
        }
    }

    /// Any state-store request; the completion, or why there is none.
    pub async fn request(
        &self,
        request: Request,
        options: RequestOptions,
    ) -> Result<Completion, RequestError> {
        let wait = {
            let mut s = self.shared.borrow_mut();
            let call = CallId(s.fresh());
            s.cmds.push_back(Cmd::Request(call, request, options));
            Answered {
                shared: self.shared.clone(),
                call,
                handle: None,
                done: false,
            }
        };
        match wait.await {
            HostOutput::Reply { result, .. } => result,
            // Refused: the connection is closing; the request never left.
            _ => Err(RequestError::Busy),
        }
    }

    /// `GET key`: the value, `None` when absent.
    pub async fn get(&self, key: impl Into<Bytes>) -> Result<Option<Bytes>, RequestError> {
        let get = Request::Get { key: key.into() };
        match self.request(get, RequestOptions::default()).await?.result? {
            Response::Get(v) => Ok(v),
            _ => Err(RequestError::BadReply),
        }
    }

    /// `SET key value`, fenced with `fence` when given (the store refuses a token lower than
    /// the one that last wrote the key). `Ok` means the store applied it.
    pub async fn set(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        fence: Option<&Hlc>,
    ) -> Result<(), RequestError> {
        let set = Request::Set {
            key: key.into(),
            value: value.into(),
            condition: SetCondition::Always,
            px_ms: None,
        };
        let options = RequestOptions {
            fencing_token: fence.cloned(),
            ..RequestOptions::default()
        };
        match self.request(set, options).await?.result? {
            Response::Set(SetOutcome::Applied) => Ok(()),
            _ => Err(RequestError::BadReply),
        }
    }

    /// Waits `d` of the node's time.
    pub fn sleep(&self, d: Duration) -> impl Future<Output = ()> {
        let mut s = self.shared.borrow_mut();
        let id = s.fresh();
        Sleep {
            shared: self.shared.clone(),
            until: s.now.mono.saturating_add(d),
            id,
        }
    }

    /// Waits a random time up to `upto` (drawn from the node's seeded generator).
    pub fn sleep_random(&self, upto: Duration) -> impl Future<Output = ()> {
        let ns = u64::try_from(upto.as_nanos()).unwrap_or(u64::MAX);
        let d = Duration::from_nanos(self.shared.borrow_mut().rng.below(ns.max(1)));
        self.sleep(d)
    }

    /// A random number below `n` from the node's seeded generator.
    pub fn random_below(&self, n: u64) -> u64 {
        self.shared.borrow_mut().rng.below(n)
    }

    /// The node's clocks now.
    pub fn now(&self) -> Now {
        self.shared.borrow().now
    }

    /// Global time since the start of the run (the same on every node).
    pub fn global_now(&self) -> Duration {
        self.shared.borrow().global
    }

    /// The node's index.
    pub fn index(&self) -> usize {
        self.shared.borrow().node
    }

    /// Tells the checkers something (see [`Ctx::report`]).
    pub fn report(&self, report: Report) {
        self.shared.borrow_mut().reports.push(report);
    }

    /// Records a fact of the worker's own for a [`Check`]: a [`Report::Custom`] with an empty
    /// key.
    pub fn note(&self, tag: &'static str, value: u64) {
        self.report(Report::Custom {
            key: Bytes::new(),
            tag,
            value,
        });
    }

    /// Fails the run with the invariant `invariant` (see [`Ctx::fail`]).
    pub fn fail(&self, invariant: &'static str, message: impl Into<String>) {
        let mut s = self.shared.borrow_mut();
        if s.failure.is_none() {
            s.failure = Some((invariant, message.into()));
        }
    }
}

/// A node's worker, started.
type Task = Pin<Box<dyn Future<Output = ()>>>;

/// The agent that runs one node's worker.
struct TaskAgent {
    shared: Rc<RefCell<Shared>>,
    host: Host,
    task: Option<Task>,
    /// Builds the task at the start (the worker needs the node's clock first).
    make: Option<Box<dyn FnOnce(Node) -> Task>>,
}

impl TaskAgent {
    /// Brings the shared state to the node's present, then applies commands, hands out host
    /// outputs and polls the worker until nothing moves.
    fn drive(&mut self, ctx: &mut Ctx<'_>) {
        {
            let mut s = self.shared.borrow_mut();
            s.now = ctx.now();
            s.global = ctx.global_now();
        }
        let mut polls = 0;
        loop {
            let mut moved = false;
            loop {
                let cmd = self.shared.borrow_mut().cmds.pop_front();
                let Some(cmd) = cmd else { break };
                moved = true;
                let now = ctx.now();
                match cmd {
                    Cmd::Create(h, c) => self.host.create(h, c, ctx.requester(), now),
                    Cmd::Op(h, call, op) => self.host.op(h, call, op, ctx.requester(), now),
                    Cmd::Abandon(h, call) => self.host.abandon(h, call, ctx.requester(), now),
                    Cmd::Request(call, r, o) => self.host.request(call, r, o, ctx.requester(), now),
                }
            }
            while let Some(out) = self.host.poll_output() {
                moved = true;
                self.shared.borrow_mut().take_output(out);
            }
            if polls > 0 && !moved {
                break;
            }
            polls += 1;
            if polls > MAX_POLLS {
                ctx.fail(
                    "worker waits",
                    "the worker was polled 10000 times in one event without waiting on anything",
                );
                self.task = None;
                break;
            }
            if let Some(task) = self.task.as_mut() {
                let mut cx = Context::from_waker(Waker::noop());
                if task.as_mut().poll(&mut cx).is_ready() {
                    self.task = None;
                }
            }
        }
        let mut s = self.shared.borrow_mut();
        for r in s.reports.drain(..) {
            ctx.report(r);
        }
        if let Some((name, message)) = s.failure.take() {
            ctx.fail(name, message);
        }
        drop(s);
        if self.host.is_done(ctx.now()) {
            self.host = Host::new(*self.host.config());
        }
    }
}

impl Agent for TaskAgent {
    fn start(&mut self, ctx: &mut Ctx<'_>) {
        if let Some(make) = self.make.take() {
            self.shared.borrow_mut().now = ctx.now();
            self.task = Some(make(Node {
                shared: self.shared.clone(),
            }));
        }
        self.drive(ctx);
    }

    fn handle_output(&mut self, output: &Output, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        self.host
            .handle_output(output.clone(), ctx.requester(), now);
        self.drive(ctx);
    }

    fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now();
        self.host.handle_timeout(ctx.requester(), now);
        self.drive(ctx);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let sleep = self.shared.borrow().sleeps.first().map(|(t, _)| *t);
        super::workload::min_opt(self.host.poll_timeout(), sleep)
    }

    fn stop(&mut self, ctx: &mut Ctx<'_>) {
        // The task is cancelled: its futures drop (a held lock reports its release).
        self.task = None;
        self.make = None;
        self.drive(ctx);
        let now = ctx.now();
        self.host.close(ctx.requester(), now);
        self.drive(ctx);
    }

    fn outstanding(&self) -> usize {
        self.host.machines() + usize::from(!self.host.is_idle())
    }
}

type Make = Rc<RefCell<dyn FnMut(Node) -> Task>>;

/// A workload of async workers: `worker(node)` runs on every node (again after a crash).
/// Clones share the worker and the checks' constructors (one clone per run of a sweep).
#[derive(Clone)]
pub struct AsyncWorkload {
    make: Make,
    timing: Timing,
    leases: Vec<Bytes>,
    checks: Vec<Rc<dyn Fn() -> Box<dyn Check>>>,
}

impl AsyncWorkload {
    /// Runs `worker` on every node; its locks use `timing` (lease options, request timeout).
    pub fn new<F, Fut>(timing: Timing, mut worker: F) -> AsyncWorkload
    where
        F: FnMut(Node) -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let make: Make = Rc::new(RefCell::new(move |node: Node| -> Task {
            Box::pin(worker(node))
        }));
        AsyncWorkload {
            make,
            timing,
            leases: Vec::new(),
            checks: Vec::new(),
        }
    }

    /// The lock names the workers use (the checkers follow their grants).
    pub fn leases<K: Into<Bytes>>(mut self, names: impl IntoIterator<Item = K>) -> AsyncWorkload {
        self.leases.extend(names.into_iter().map(Into::into));
        self
    }

    /// An invariant of the user's own; `make` builds a fresh one for each run.
    pub fn check<C: Check + 'static>(mut self, make: impl Fn() -> C + 'static) -> AsyncWorkload {
        self.checks
            .push(Rc::new(move || -> Box<dyn Check> { Box::new(make()) }));
        self
    }
}

impl Workload for AsyncWorkload {
    fn agent(&mut self, node: usize, _incarnation: u32, seed: u64) -> Box<dyn Agent> {
        let shared = Rc::new(RefCell::new(Shared {
            now: Now {
                mono: Instant::from_nanos(0),
                wall_ms: 0,
            },
            global: Duration::ZERO,
            node,
            timing: self.timing,
            next_id: 0,
            cmds: VecDeque::new(),
            answers: BTreeMap::new(),
            detached: BTreeSet::new(),
            handles: BTreeMap::new(),
            locks: BTreeMap::new(),
            lock_calls: BTreeSet::new(),
            sleeps: BTreeSet::new(),
            reports: Vec::new(),
            failure: None,
            rng: Rng::new(seed ^ 0xA5A5_5A5A),
        }));
        let make = self.make.clone();
        Box::new(TaskAgent {
            shared,
            host: Host::new(HostConfig {
                seed,
                request_timeout: self.timing.timeout,
            }),
            task: None,
            make: Some(Box::new(move |n| (make.borrow_mut())(n))),
        })
    }

    fn lease_keys(&self) -> Vec<Bytes> {
        self.leases.clone()
    }

    fn liveness_bound(&self) -> Option<Duration> {
        None
    }

    fn quiet_window(&self) -> Option<Duration> {
        None
    }

    fn checks(&mut self) -> Vec<Box<dyn Check>> {
        self.checks.iter().map(|make| make()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{FaultMix, Invariant, Sim, SimConfig};

    fn timing() -> Timing {
        Timing::new(Duration::from_secs(2), Duration::from_millis(500))
    }

    /// Locks, reads, writes back fenced, unlocks; sometimes drops the lock without unlocking
    /// or abandons a wait half-way (a dropped future).
    async fn worker(node: Node) {
        loop {
            let wait = node.lock("lock", Duration::from_secs(2));
            let lock = if node.random_below(8) == 0 {
                // Give up waiting after a while: the wait's future is dropped.
                let mut wait = Box::pin(wait);
                let poll_once = core::future::poll_fn(|cx| Poll::Ready(wait.as_mut().poll(cx)));
                match poll_once.await {
                    Poll::Ready(Ok(lock)) => lock,
                    _ => {
                        node.sleep_random(Duration::from_millis(500)).await;
                        continue;
                    }
                }
            } else {
                match wait.await {
                    Ok(lock) => lock,
                    Err(_) => continue,
                }
            };
            let value = node.get("data").await;
            if value.is_ok() && lock.is_safe() {
                let _ = node.set("data", "x", Some(lock.token())).await;
            }
            if node.random_below(4) == 0 {
                drop(lock);
            } else {
                lock.unlock().await;
            }
            node.sleep_random(Duration::from_secs(1)).await;
        }
    }

    fn run(seed: u64, faults: FaultMix) -> Result<crate::sim::Summary, Box<crate::sim::Violation>> {
        let t = timing();
        let mut c = SimConfig::new(seed, 3, Duration::from_secs(30)).with_faults(faults, t.lease);
        c.request_timeout = t.timeout;
        Sim::new(c, AsyncWorkload::new(t, worker).leases(["lock"])).run()
    }

    #[test]
    fn async_workers_keep_every_built_in_invariant_under_every_fault() {
        let mut acquisitions = 0;
        for seed in 0..10 {
            let faults = if seed % 3 == 0 {
                FaultMix::NONE
            } else {
                FaultMix::ALL
            };
            let s = run(seed, faults).unwrap_or_else(|v| panic!("seed {seed}: {v}"));
            acquisitions += s.checks.acquisitions;
            assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        }
        assert!(acquisitions > 50, "only {acquisitions} acquisitions");
    }

    #[test]
    fn the_same_seed_replays_the_same_async_run() {
        let a = run(4, FaultMix::ALL).unwrap();
        let b = run(4, FaultMix::ALL).unwrap();
        assert_eq!(a.trace_hash, b.trace_hash);
        assert_eq!(a.events, b.events);
    }

    #[test]
    fn a_worker_failing_its_own_check_stops_the_run() {
        let t = timing();
        let c = SimConfig::new(1, 2, Duration::from_secs(5));
        let w = AsyncWorkload::new(t, |node: Node| async move {
            node.sleep(Duration::from_secs(1)).await;
            node.fail(
                "worker checks",
                alloc::format!("c{} saw something wrong", node.index()),
            );
        });
        let v = Sim::new(c, w).run().unwrap_err();
        assert_eq!(v.invariant, Invariant::Custom("worker checks"));
        assert!(v.time >= Duration::from_secs(1), "{v}");
    }

    #[test]
    fn a_worker_that_never_really_waits_is_stopped() {
        let t = timing();
        let c = SimConfig::new(1, 1, Duration::from_secs(5));
        // A request with an empty key is refused at once: every await is ready, forever.
        let w = AsyncWorkload::new(t, |node: Node| async move {
            loop {
                let _ = node.get(Bytes::new()).await;
            }
        });
        let v = Sim::new(c, w).run().unwrap_err();
        assert_eq!(v.invariant, Invariant::Custom("worker waits"), "{v}");
    }
}
