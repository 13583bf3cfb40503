//! Tests of the points where users extend the simulator: their own invariants ([`Check`],
//! [`Ctx::fail`]), global time, the crash hook, and agents over the client host
//! ([`HostAgent`]).

use alloc::boxed::Box;
use alloc::collections::BTreeSet;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use bytes::Bytes;
use core::cell::RefCell;
use core::time::Duration;

use super::workload::{later, LeaseContention, Timing};
use super::*;
use crate::client::{Output, RequestOptions};
use crate::command::{Request, Response, SetCondition, SetOutcome};
use crate::hlc::Hlc;
use crate::host::{Answer, CallId, Create, HandleId, HostOutput, Op, Status};
use crate::lock::LockOptions;
use crate::server::Store;
use crate::time::Instant;

fn timing() -> Timing {
    Timing::new(Duration::from_secs(2), Duration::from_millis(500))
}

fn contention(seed: u64, faults: FaultMix) -> Sim {
    let t = timing();
    let run = Duration::from_secs(20);
    let mut config = SimConfig::new(seed, 3, run);
    config.request_timeout = t.timeout;
    config.faults = faults.config(t.lease, 3, run);
    Sim::new(
        config,
        LeaseContention::new(Bytes::from_static(b"lease"), t).unwrap(),
    )
}

/// Fails at the `n`th acquisition it sees.
struct NthAcquisition {
    n: u32,
    seen: u32,
}

impl Check for NthAcquisition {
    fn name(&self) -> &'static str {
        "at most n acquisitions"
    }

    fn on_report(&mut self, _at: Duration, who: Who, report: &Report) -> Result<(), String> {
        if let Report::Acquired { .. } = report {
            self.seen += 1;
            if self.seen >= self.n {
                return Err(format!("{who:?} made acquisition #{}", self.seen));
            }
        }
        Ok(())
    }
}

#[test]
fn a_custom_check_fails_the_run_with_seed_event_and_trace() {
    let v = contention(5, FaultMix::NONE)
        .with_check(NthAcquisition { n: 3, seen: 0 })
        .run()
        .unwrap_err();
    assert_eq!(
        v.invariant,
        Invariant::Custom("at most n acquisitions"),
        "{v}"
    );
    assert_eq!(v.seed, 5);
    assert!(v.event > 0 && v.time > Duration::ZERO, "{v}");
    assert!(v.message.contains("acquisition #3"), "{v}");
    assert!(!v.trace.is_empty());
    assert!(
        format!("{v}").contains("at most n acquisitions (custom invariant)"),
        "{v}"
    );
    // The same check with a bound never reached lets the run pass.
    contention(5, FaultMix::NONE)
        .with_check(NthAcquisition {
            n: u32::MAX,
            seen: 0,
        })
        .run()
        .unwrap_or_else(|v| panic!("{v}"));
}

/// Reads the lease key at the end: it must be gone (every holder released).
struct EndsFree {
    times: Rc<RefCell<Vec<Duration>>>,
}

impl Check for EndsFree {
    fn name(&self) -> &'static str {
        "lease ends free"
    }

    fn on_report(&mut self, at: Duration, _who: Who, _report: &Report) -> Result<(), String> {
        self.times.borrow_mut().push(at);
        Ok(())
    }

    fn at_end(&mut self, at: Duration, store: &Store) -> Result<(), String> {
        match store.get(b"lease") {
            None => Err(format!(
                "at {at:?} the lease is gone, as expected: fail on purpose"
            )),
            Some(info) => Err(format!("still held by {:?}", info.value)),
        }
    }
}

#[test]
fn a_custom_check_sees_global_time_in_order_and_judges_the_end() {
    let times = Rc::new(RefCell::new(Vec::new()));
    let v = contention(2, FaultMix::NONE)
        .with_check(EndsFree {
            times: times.clone(),
        })
        .run()
        .unwrap_err();
    assert_eq!(v.invariant, Invariant::Custom("lease ends free"));
    assert!(v.message.contains("fail on purpose"), "{v}");
    let times = times.borrow();
    assert!(times.len() > 3, "{times:?}");
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
}

/// An agent that fails the run from its own code once global time passes `at`.
struct FailAt {
    at: Duration,
    next: Option<Instant>,
    seen_global: Rc<RefCell<Vec<Duration>>>,
}

impl Agent for FailAt {
    fn start(&mut self, ctx: &mut Ctx<'_>) {
        self.next = Some(ctx.now().mono);
    }
    fn handle_output(&mut self, _output: &Output, _ctx: &mut Ctx<'_>) {}
    fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        let g = ctx.global_now();
        self.seen_global.borrow_mut().push(g);
        if g >= self.at {
            ctx.fail("deadline", format!("c{} reached {g:?}", ctx.node()));
            ctx.fail("second", "only the first failure counts");
        }
        self.next = Some(ctx.now().mono + Duration::from_millis(700));
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }
    fn stop(&mut self, _ctx: &mut Ctx<'_>) {
        self.next = None;
    }
    fn outstanding(&self) -> usize {
        0
    }
}

struct FailAtWorkload(Rc<RefCell<Vec<Duration>>>, Duration);

impl FailAtWorkload {
    fn new(seen: Rc<RefCell<Vec<Duration>>>) -> Self {
        FailAtWorkload(seen, Duration::from_secs(5))
    }

    /// Never fails (and reports nothing).
    fn never(self) -> Self {
        FailAtWorkload(self.0, Duration::MAX)
    }
}

impl Workload for FailAtWorkload {
    fn agent(&mut self, _node: usize, _inc: u32, _seed: u64) -> Box<dyn Agent> {
        Box::new(FailAt {
            at: self.1,
            next: None,
            seen_global: self.0.clone(),
        })
    }
    fn lease_keys(&self) -> Vec<Bytes> {
        Vec::new()
    }
    fn liveness_bound(&self) -> Option<Duration> {
        None
    }
    fn quiet_window(&self) -> Option<Duration> {
        None
    }
}

#[test]
fn agent_code_fails_a_run_at_the_event_it_runs_in() {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let config = SimConfig::new(11, 2, Duration::from_secs(20));
    let v = Sim::new(config, FailAtWorkload::new(seen.clone()))
        .run()
        .unwrap_err();
    assert_eq!(v.invariant, Invariant::Custom("deadline"), "{v}");
    assert_eq!(v.seed, 11);
    // Global time is the run's: the failure is at 5 s plus at most one period, whatever
    // the node clocks' offsets.
    assert!(v.time >= Duration::from_secs(5), "{v}");
    assert!(v.time < Duration::from_secs(6), "{v}");
    assert!(v.message.starts_with('c'), "{v}");
    let seen = seen.borrow();
    assert_eq!(*seen.last().unwrap(), v.time);
    assert!(!v.trace.is_empty());
}

/// Counts the crashes the world announces, and the agents it builds.
struct CrashCounting {
    inner: LeaseContention,
    crashes: Rc<RefCell<Vec<(usize, Duration)>>>,
    agents: Rc<RefCell<u32>>,
}

impl Workload for CrashCounting {
    fn agent(&mut self, node: usize, inc: u32, seed: u64) -> Box<dyn Agent> {
        *self.agents.borrow_mut() += 1;
        self.inner.agent(node, inc, seed)
    }
    fn lease_keys(&self) -> Vec<Bytes> {
        self.inner.lease_keys()
    }
    fn liveness_bound(&self) -> Option<Duration> {
        None
    }
    fn quiet_window(&self) -> Option<Duration> {
        None
    }
    fn crashed(&mut self, node: usize, at: Duration) {
        self.crashes.borrow_mut().push((node, at));
    }
}

#[test]
fn workloads_hear_of_every_crash() {
    let t = timing();
    let run = Duration::from_secs(30);
    let mut total = 0;
    for seed in 0..4 {
        let mut config = SimConfig::new(seed, 3, run);
        config.request_timeout = t.timeout;
        config.trace_capacity = usize::MAX;
        let crash_only = FaultMix {
            crash: true,
            ..FaultMix::NONE
        };
        config.faults = crash_only.config(t.lease, 3, run);
        let crashes = Rc::new(RefCell::new(Vec::new()));
        let agents = Rc::new(RefCell::new(0));
        let w = CrashCounting {
            inner: LeaseContention::new(Bytes::from_static(b"lease"), t).unwrap(),
            crashes: crashes.clone(),
            agents: agents.clone(),
        };
        let s = Sim::new(config, w).run().unwrap_or_else(|v| panic!("{v}"));
        let traced: Vec<(usize, Duration)> = s
            .trace
            .iter()
            .filter(|e| e.kind == TraceKind::Crashed)
            .map(|e| (e.node.unwrap(), Duration::from_nanos(e.time_ns)))
            .collect();
        assert_eq!(*crashes.borrow(), traced);
        // One agent per node at the start, one per restart (a crash near the end may not
        // restart).
        assert!(*agents.borrow() as usize <= 3 + traced.len());
        total += traced.len();
    }
    assert!(total > 0, "no crash in any seed: the test checks nothing");
}

/// The counter-under-lock worker over the client host: lock, read, write back + 1 (fenced
/// with the lock's token), unlock; `careful` checks that the lock is still safe before
/// writing, and fences the write.
struct Counter {
    careful: bool,
    think: Duration,
    lease: Duration,
    lock: Option<HandleId>,
    safe_until: Option<Instant>,
    token: Option<Hlc>,
    read: Option<CallId>,
    /// The value read, and when the work on it is done (the write goes out then).
    working: Option<(u64, Instant)>,
    write: Option<(CallId, u64)>,
    next: Option<Instant>,
}

const COUNTER: &[u8] = b"counter";

impl Counter {
    fn unlock(&mut self, io: &mut HostIo<'_, '_>) {
        if let Some(lock) = self.lock {
            io.op(
                lock,
                Op::Unlock {
                    options: timing().lease_options(),
                },
            );
        }
    }
}

impl HostWorker for Counter {
    fn start(&mut self, io: &mut HostIo<'_, '_>) {
        self.lock = Some(io.create(Create::Lock {
            name: Bytes::from_static(b"lock"),
        }));
        self.next = Some(io.now().mono);
    }

    fn on_output(&mut self, output: HostOutput, io: &mut HostIo<'_, '_>) {
        match output {
            HostOutput::Status { status, .. } => {
                self.safe_until = match status {
                    Status::Held { safe_until, .. } => Some(safe_until),
                    _ => None,
                }
            }
            HostOutput::Answer { answer, .. } => match answer {
                Answer::Lock(Ok(token)) => {
                    self.token = Some(token);
                    let get = Request::Get {
                        key: Bytes::from_static(COUNTER),
                    };
                    self.read = Some(io.request(get, RequestOptions::default()));
                }
                Answer::Lock(Err(_)) | Answer::Unlock(_) => {
                    let think = self.think;
                    let now = io.now();
                    self.next = Some(later(now, io.rng(), think));
                }
                _ => {}
            },
            HostOutput::Reply { call, result } if Some(call) == self.read => {
                self.read = None;
                let n = match &result.map(|c| c.result) {
                    Ok(Ok(Response::Get(v))) => v
                        .as_ref()
                        .and_then(|v| core::str::from_utf8(v).ok()?.parse::<u64>().ok())
                        .unwrap_or(0),
                    _ => return self.unlock(io),
                };
                // Some work on the value before writing it back.
                let now = io.now();
                let work = later(now, io.rng(), self.lease / 2);
                self.working = Some((n, work));
            }
            HostOutput::Reply { call, result } if self.write.is_some_and(|w| w.0 == call) => {
                let (_, value) = self.write.take().unwrap_or((call, 0));
                if let Ok(Ok(Response::Set(SetOutcome::Applied))) = result.map(|c| c.result) {
                    let key = Bytes::from_static(COUNTER);
                    io.report(Report::Custom {
                        key,
                        tag: "wrote",
                        value,
                    });
                }
                self.unlock(io);
            }
            _ => {}
        }
    }

    fn on_timeout(&mut self, io: &mut HostIo<'_, '_>) {
        let now = io.now().mono;
        if let Some((n, at)) = self.working.filter(|w| w.1 <= now) {
            self.working = None;
            let _ = at;
            let safe = self.safe_until.is_some_and(|t| now < t);
            if self.careful && !safe {
                return self.unlock(io);
            }
            let set = Request::Set {
                key: Bytes::from_static(COUNTER),
                value: Bytes::from(format!("{}", n + 1)),
                condition: SetCondition::Always,
                px_ms: None,
            };
            let options = RequestOptions {
                fencing_token: self.token.clone().filter(|_| self.careful),
                ..RequestOptions::default()
            };
            self.write = Some((io.request(set, options), n + 1));
        }
        if self.next.is_some_and(|t| t <= io.now().mono) {
            self.next = None;
            if let Some(lock) = self.lock {
                let op = Op::Lock {
                    duration: self.lease,
                    options: LockOptions {
                        lease: timing().lease_options(),
                        ..LockOptions::default()
                    },
                };
                io.op(lock, op);
            }
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        super::workload::min_opt(self.next, self.working.map(|w| w.1))
    }

    fn stop(&mut self, _io: &mut HostIo<'_, '_>) {
        self.next = None;
        self.working = None;
    }

    fn outstanding(&self) -> usize {
        usize::from(self.read.is_some()) + usize::from(self.write.is_some())
    }
}

/// No increment is lost: every accepted write writes a value nobody wrote before.
#[derive(Default)]
struct NoLostIncrement(BTreeSet<u64>);

impl Check for NoLostIncrement {
    fn name(&self) -> &'static str {
        "no lost increment"
    }

    fn on_report(&mut self, _at: Duration, who: Who, report: &Report) -> Result<(), String> {
        match report {
            Report::Custom {
                tag: "wrote",
                value,
                ..
            } if !self.0.insert(*value) => Err(format!(
                "c{} wrote {value}, which another write already wrote: an increment was lost",
                who.node
            )),
            _ => Ok(()),
        }
    }
}

struct Counters {
    careful: bool,
}

impl Workload for Counters {
    fn agent(&mut self, _node: usize, _inc: u32, seed: u64) -> Box<dyn Agent> {
        let t = timing();
        let worker = Counter {
            careful: self.careful,
            think: t.think,
            lease: t.lease,
            lock: None,
            safe_until: None,
            token: None,
            read: None,
            working: None,
            write: None,
            next: None,
        };
        host_agent(seed, t.timeout, worker)
    }
    fn lease_keys(&self) -> Vec<Bytes> {
        vec![Bytes::from_static(b"lock")]
    }
    fn liveness_bound(&self) -> Option<Duration> {
        None
    }
    fn quiet_window(&self) -> Option<Duration> {
        None
    }
    fn checks(&mut self) -> Vec<Box<dyn Check>> {
        vec![Box::new(NoLostIncrement::default())]
    }
}

fn counters(seed: u64, careful: bool) -> Result<Summary, Box<Violation>> {
    Sim::new(counter_config(seed), Counters { careful }).run()
}

#[test]
fn a_host_worker_runs_and_a_careless_one_loses_an_increment() {
    let mut caught = 0;
    for seed in 0..8 {
        let s = counters(seed, true).unwrap_or_else(|v| panic!("careful, seed {seed}: {v}"));
        assert!(s.checks.custom > 20, "seed {seed}: {:?}", s.checks);
        if let Err(v) = counters(seed, false) {
            assert_eq!(v.invariant, Invariant::Custom("no lost increment"), "{v}");
            caught += 1;
        }
    }
    assert!(caught > 0, "the careless worker never lost an increment");
}

fn scripted_run(script: Vec<Scripted>) -> Sim {
    let t = timing();
    let run = Duration::from_secs(30);
    let mut config = SimConfig::new(3, 3, run).with_script(script);
    config.request_timeout = t.timeout;
    config.trace_capacity = usize::MAX;
    Sim::new(
        config,
        LeaseContention::new(Bytes::from_static(b"lease"), t).unwrap(),
    )
}

fn at(e: &TraceEntry) -> Duration {
    Duration::from_nanos(e.time_ns)
}

#[test]
fn scripted_faults_happen_when_and_where_they_are_written() {
    let secs = Duration::from_secs;
    let mut script = vec![Scripted::pause(0, secs(12), secs(3))];
    // After the heal (15 s): scripted faults still happen.
    script.extend(Scripted::partition(&[1, 2], secs(20), secs(25)));
    script.push(Scripted::crash(2, secs(27), secs(1)));
    let s = scripted_run(script).run().unwrap_or_else(|v| panic!("{v}"));
    let find = |node: usize, f: &dyn Fn(&TraceKind) -> bool| -> Vec<Duration> {
        s.trace
            .iter()
            .filter(|e| e.node == Some(node) && f(&e.kind))
            .map(at)
            .collect()
    };
    assert_eq!(
        find(0, &|k| matches!(k, TraceKind::Paused { ms: 3000 })),
        vec![secs(12)]
    );
    assert_eq!(find(0, &|k| *k == TraceKind::Resumed), vec![secs(15)]);
    for node in [1, 2] {
        let cut = TraceKind::PartitionStart {
            to_store: true,
            to_client: true,
        };
        assert_eq!(find(node, &|k| *k == cut), vec![secs(20)], "c{node}");
        assert_eq!(
            find(node, &|k| *k == TraceKind::PartitionEnd),
            vec![secs(25)],
            "c{node}"
        );
    }
    assert_eq!(find(2, &|k| *k == TraceKind::Crashed), vec![secs(27)]);
    // Nothing random: no other fault.
    assert!(s
        .trace
        .iter()
        .all(|e| e.node != Some(1)
            || !matches!(e.kind, TraceKind::Paused { .. } | TraceKind::Crashed)));
}

#[test]
fn a_scripted_fault_on_a_missing_node_is_a_setup_error() {
    let v = scripted_run(vec![Scripted::pause(
        3,
        Duration::ZERO,
        Duration::from_secs(1),
    )])
    .run()
    .unwrap_err();
    assert_eq!(v.invariant, Invariant::Setup);
    assert!(v.message.contains("pause:3@0s+1s"), "{v}");
}

#[test]
fn stepping_sees_the_run_mid_way_and_changes_nothing() {
    let secs = Duration::from_secs;
    let script = || vec![Scripted::pause(0, secs(12), secs(3))];
    let whole = scripted_run(script()).run().unwrap();
    let mut running = scripted_run(script()).start().unwrap();
    running.run_until(secs(13)).unwrap();
    assert!(running.now() <= secs(13) && running.now() > secs(12));
    // Mid-pause: the paused node's lease may have expired; the store is there to look at.
    let mid = running.events();
    assert!(mid > 0);
    assert!(running
        .trace_lines(1000)
        .iter()
        .any(|l| l.contains("Paused")));
    assert!(running.step().unwrap());
    assert_eq!(running.events(), mid + 1);
    let _ = running.store().get(b"lease");
    let stepped = running.finish().unwrap();
    assert_eq!(stepped.trace_hash, whole.trace_hash);
    assert_eq!(stepped.events, whole.events);
}

fn counter_config(seed: u64) -> SimConfig {
    let t = timing();
    let run = Duration::from_secs(30);
    let mut config = SimConfig::new(seed, 3, run);
    config.request_timeout = t.timeout;
    let pauses = FaultMix {
        pause: true,
        ..FaultMix::NONE
    };
    config.faults = pauses.config(t.lease, 3, run);
    config
}

#[test]
fn a_sweep_stops_at_the_first_failure_and_its_line_alone_replays_it() {
    let report = sweep(
        0..1_000,
        std::time::Duration::from_secs(600),
        counter_config,
        |c| Sim::new(c, Counters { careful: false }),
    );
    let failure = report.failure.as_ref().expect("the careless worker fails");
    assert_eq!(report.runs, failure.config.seed + 1);
    assert!(!report.replayed);
    let line = failure.replay_line();
    assert!(line.starts_with("LEASEDLOCK_REPLAY=\"seed="), "{line}");
    // The printed line, and nothing else, gives the same run and the same violation.
    let config: SimConfig = line
        .trim_start_matches("LEASEDLOCK_REPLAY=\"")
        .trim_end_matches('"')
        .parse()
        .unwrap();
    let again = Sim::new(config, Counters { careful: false })
        .run()
        .unwrap_err();
    assert_eq!(again, failure.violation);
    assert_eq!(again.invariant, Invariant::Custom("no lost increment"));
    // A careful worker passes the same seeds.
    let ok = sweep(
        0..failure.config.seed + 1,
        std::time::Duration::from_secs(600),
        counter_config,
        |c| Sim::new(c, Counters { careful: true }),
    );
    assert!(
        ok.failure.is_none(),
        "{:?}",
        ok.failure.map(|f| format!("{f}"))
    );
    assert_eq!(ok.runs, failure.config.seed + 1);
}

/// A lease workload that forgets to declare its key.
struct Undeclared(LeaseContention);

impl Workload for Undeclared {
    fn agent(&mut self, node: usize, inc: u32, seed: u64) -> Box<dyn Agent> {
        self.0.agent(node, inc, seed)
    }
    fn lease_keys(&self) -> Vec<Bytes> {
        Vec::new()
    }
    fn liveness_bound(&self) -> Option<Duration> {
        None
    }
    fn quiet_window(&self) -> Option<Duration> {
        None
    }
}

#[test]
fn a_lease_key_missing_from_lease_keys_is_a_setup_error_not_s2() {
    let t = timing();
    let mut config = SimConfig::new(1, 2, Duration::from_secs(10));
    config.request_timeout = t.timeout;
    let w = Undeclared(LeaseContention::new(Bytes::from_static(b"lease"), t).unwrap());
    let v = Sim::new(config, w).run().unwrap_err();
    assert_eq!(v.invariant, Invariant::Setup, "{v}");
    assert!(v.message.contains("lease_keys"), "{v}");
}

#[test]
fn a_run_without_reports_warns_and_one_with_reports_does_not() {
    let config = SimConfig::new(1, 2, Duration::from_secs(5));
    let s = Sim::new(config, FailAtWorkload::new(Rc::default()).never())
        .run()
        .unwrap();
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    assert!(s.warnings[0].contains("no agent reported anything"));
    let s = contention(1, FaultMix::NONE).run().unwrap();
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
}

#[test]
fn trace_lines_show_ids_in_one_base_and_safe_until_in_global_time() {
    let mut sim = contention(4, FaultMix::NONE);
    let lease = timing().lease;
    let s = {
        let mut c = sim.config().clone();
        c.trace_capacity = usize::MAX;
        sim = Sim::new(
            c,
            LeaseContention::new(Bytes::from_static(b"lease"), timing()).unwrap(),
        );
        sim.run().unwrap()
    };
    let lines: Vec<String> = s.trace.iter().map(|e| format!("{e}")).collect();
    // Every delivered message's id is printed as it was when sent.
    let sent: BTreeSet<&str> = lines
        .iter()
        .filter(|l| l.contains(" send "))
        .filter_map(|l| l.split("corr=").nth(1)?.split(' ').next())
        .collect();
    let delivered: Vec<&str> = lines
        .iter()
        .filter(|l| l.contains(" deliver "))
        .filter_map(|l| l.split("corr=").nth(1))
        .collect();
    assert!(!delivered.is_empty());
    assert!(delivered.iter().all(|c| sent.contains(c)), "{delivered:?}");
    // An acquisition is safe from about now until at most a lease later, in the trace's time.
    let mut acquired = 0;
    for e in &s.trace {
        if let TraceKind::Report(r) = &e.kind {
            if let Report::Acquired { safe_until, .. } = **r {
                let (now, until) = (e.time_ns, safe_until.as_nanos());
                assert!(until > now && until <= now + lease.as_nanos() as u64, "{e}");
                assert!(format!("{e}").contains("safe_until="), "{e}");
                acquired += 1;
            }
        }
    }
    assert!(acquired > 0);
}

#[test]
fn a_stepped_run_that_fails_reports_the_same_violation_at_finish() {
    let whole = contention(5, FaultMix::NONE)
        .with_check(NthAcquisition { n: 3, seen: 0 })
        .run()
        .unwrap_err();
    let mut running = contention(5, FaultMix::NONE)
        .with_check(NthAcquisition { n: 3, seen: 0 })
        .start()
        .unwrap();
    let stepped = running.run_until(Duration::from_secs(3_600)).unwrap_err();
    assert_eq!(stepped, whole);
    assert!(!running.step().unwrap(), "a failed run does not go on");
    assert_eq!(running.finish().unwrap_err(), whole);
}
